/* cpu_count.c — the CPUs this process may use (cpu_count.h).
 *
 * sysconf(_SC_NPROCESSORS_ONLN) counts the host's CPUs. In a container limited to a few of them, a thread pool of
 * that size runs many more threads than the quota allows; the pool's workers spin briefly between jobs, so they
 * burn the quota and the whole process is throttled for the rest of each period (routing on a 16-CPU GPU host ran
 * slower than on a 2-core machine). So the default is the affinity mask's size capped by the cgroup quota. */
#include "util/cpu_count.h"
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the whole of a small file, NUL-terminated; false if it cannot be read or is larger than the buffer */
static bool read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    const size_t n = fread(buf, 1, cap - 1, f);
    const bool whole = !ferror(f) && fgetc(f) == EOF;
    fclose(f);
    buf[n] = 0;
    return whole;
}

/* CPUs (rounded up) of quota us per period us; 0 for no limit or nonsense */
static int quota_cpus(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    const long long n = (quota + period - 1) / period;
    return n > INT_MAX ? INT_MAX : (int)n;
}

static bool parse_ll(const char *s, long long *v) {
    char *end;
    *v = strtoll(s, &end, 10);
    return end != s && (*end == 0 || *end == '\n' || *end == ' ');
}

/* the limit set in one cgroup directory, 0 if none */
static int dir_quota(const char *dir, bool v2) {
    char path[PATH_MAX], buf[256];
    long long quota, period;
    if (v2) {
        if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path || !read_small(path, buf, sizeof buf))
            return 0;
        const char *sp = strchr(buf, ' '); /* "max 100000" or "150000 100000" */
        if (!sp || !strncmp(buf, "max", 3) || !parse_ll(buf, &quota) || !parse_ll(sp + 1, &period)) return 0;
        return quota_cpus(quota, period);
    }
    if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= (int)sizeof path || !read_small(path, buf, sizeof buf) ||
        !parse_ll(buf, &quota))
        return 0;
    if (snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= (int)sizeof path ||
        !read_small(path, buf, sizeof buf) || !parse_ll(buf, &period))
        return 0;
    return quota_cpus(quota, period);
}

/* the smallest limit of mount/rel and its parents up to mount itself (a limit may sit on any ancestor; inside a
 * container without a cgroup namespace rel names a host path that does not exist, and the mount's own files
 * are the container's) */
static int walk_up(const char *mount, const char *rel, bool v2) {
    char r[PATH_MAX], dir[PATH_MAX];
    if (snprintf(r, sizeof r, "%s", rel) >= (int)sizeof r) r[0] = 0;
    int best = 0;
    for (;;) {
        while (r[0] && r[strlen(r) - 1] == '/') r[strlen(r) - 1] = 0;
        if (snprintf(dir, sizeof dir, "%s%s", mount, r) < (int)sizeof dir) {
            const int q = dir_quota(dir, v2);
            if (q > 0 && (best == 0 || q < best)) best = q;
        }
        if (!r[0]) break;
        char *slash = strrchr(r, '/');
        if (!slash) break;
        *slash = 0;
    }
    return best;
}

int msa_cgroup_cpu_quota(const char *proc_cgroup, const char *root) {
    char buf[8192];
    if (!read_small(proc_cgroup, buf, sizeof buf)) return 0;
    int best = 0;
    for (char *line = buf, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        /* ID:CONTROLLERS:PATH */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c1 = *c2 = 0;
        const char *controllers = c1 + 1, *rel = c2 + 1;
        int q = 0;
        char mount[PATH_MAX];
        if (!strcmp(line, "0") && !controllers[0]) { /* cgroup v2 */
            q = walk_up(root, rel, true);
        } else {
            bool cpu = false; /* "cpu" among the comma-separated controllers (not "cpuacct", "cpuset") */
            for (const char *p = controllers; *p;) {
                const size_t n = strcspn(p, ",");
                if (n == 3 && !strncmp(p, "cpu", 3)) cpu = true;
                p += n + (p[n] == ',');
            }
            if (!cpu) continue;
            /* v1 mounts the controller at root/cpu, or root/<controllers> (cpu,cpuacct) with cpu a link to it */
            if (snprintf(mount, sizeof mount, "%s/cpu", root) < (int)sizeof mount) q = walk_up(mount, rel, false);
            if (!q && snprintf(mount, sizeof mount, "%s/%s", root, controllers) < (int)sizeof mount)
                q = walk_up(mount, rel, false);
        }
        if (q > 0 && (best == 0 || q < best)) best = q;
    }
    return best;
}

int msa_cpu_count(void) {
    static atomic_int cached;
    int n = atomic_load(&cached);
    if (n > 0) return n;
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n <= 0) {
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 && online < INT_MAX ? (int)online : 1;
    }
    const int q = msa_cgroup_cpu_quota("/proc/self/cgroup", "/sys/fs/cgroup");
    if (q > 0 && q < n) n = q;
    atomic_store(&cached, n);
    return n;
}
