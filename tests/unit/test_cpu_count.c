/* test_cpu_count.c — the default thread count follows the CPUs the process may use: cgroup v2 and v1 quotas are
 * read from the process's cgroup and its parents (the smallest wins), a host path missing inside a container
 * falls back to the mount's own files, no limit or unreadable files give 0, and msa_cpu_count() / a default
 * thread pool agree with the affinity mask and this machine's real quota. */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "util/cpu_count.h"
#include "util/threadpool.h"

static char root[64];

/* root/rel := text, creating the directories on the way */
static void put(const char *rel, const char *text) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0700);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static int quota(void) {
    char proc[PATH_MAX];
    snprintf(proc, sizeof proc, "%s/proc-cgroup", root);
    return msa_cgroup_cpu_quota(proc, root);
}

static void fresh_root(void) {
    char cmd[128];
    if (root[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    snprintf(root, sizeof root, "/tmp/msa-cpu-count-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
}

TEST(cgroup_v2_smallest_limit_on_the_path) {
    fresh_root();
    put("proc-cgroup", "0::/a/b\n");
    put("a/b/cpu.max", "max 100000\n");  /* no limit on the process's own cgroup */
    put("a/cpu.max", "250000 100000\n"); /* 2.5 CPUs on the parent: 3 threads */
    put("cpu.max", "800000 100000\n");
    CHECK_EQ_INT(quota(), 3);
    put("cpu.max", "150000 100000\n"); /* a smaller limit higher up wins */
    CHECK_EQ_INT(quota(), 2);
    put("a/b/cpu.max", "50000 100000\n"); /* half a CPU: one thread */
    CHECK_EQ_INT(quota(), 1);
}

TEST(cgroup_v2_no_limit) {
    fresh_root();
    put("proc-cgroup", "0::/\n");
    put("cpu.max", "max 100000\n");
    CHECK_EQ_INT(quota(), 0);
    char path[PATH_MAX]; /* no cpu.max at all (the controller not enabled) */
    snprintf(path, sizeof path, "%s/cpu.max", root);
    CHECK(remove(path) == 0);
    CHECK_EQ_INT(quota(), 0);
}

TEST(cgroup_host_path_missing_in_container) {
    fresh_root(); /* no cgroup namespace: the path is the host's; the mount's own files are the container's */
    put("proc-cgroup", "0::/system.slice/docker-1234.scope\n");
    put("cpu.max", "400000 100000\n");
    CHECK_EQ_INT(quota(), 4);
}

TEST(cgroup_v1_cpu_controller) {
    fresh_root();
    put("proc-cgroup", "9:name=systemd:/\n4:memory:/m\n3:cpuacct:/x\n2:cpuset:/y\n1:cpu,cpuacct:/docker/abc\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    CHECK_EQ_INT(quota(), 2);
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n"); /* unlimited */
    CHECK_EQ_INT(quota(), 0);
    put("cpu/docker/abc/cpu.cfs_quota_us", "700000\n"); /* the plain "cpu" mount is tried first */
    put("cpu/docker/abc/cpu.cfs_period_us", "100000\n");
    CHECK_EQ_INT(quota(), 7);
    fresh_root(); /* cpuacct and cpuset alone are not the cpu controller */
    put("proc-cgroup", "3:cpuacct:/\n2:cpuset:/\n");
    put("cpuacct/cpu.cfs_quota_us", "100000\n");
    put("cpuacct/cpu.cfs_period_us", "100000\n");
    CHECK_EQ_INT(quota(), 0);
}

TEST(cgroup_hostile_files) {
    fresh_root();
    CHECK_EQ_INT(quota(), 0); /* no /proc file */
    put("proc-cgroup", "garbage without colons\n::\n0:\n0::relative\n0::/\n");
    put("cpu.max", "lots 100000\n");
    CHECK_EQ_INT(quota(), 0);
    put("cpu.max", "100000 0\n"); /* period 0 */
    CHECK_EQ_INT(quota(), 0);
    put("cpu.max", "-5 100000\n");
    CHECK_EQ_INT(quota(), 0);
    put("cpu.max", "100000 100000");  /* no newline: still read */
    CHECK_EQ_INT(quota(), 1);
    char big[20000];
    memset(big, 'x', sizeof big - 1), big[sizeof big - 1] = 0;
    put("proc-cgroup", big); /* larger than the reader takes: ignored, not truncated and misread */
    CHECK_EQ_INT(quota(), 0);
}

TEST(default_threads_follow_the_usable_cpus) {
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    int want = CPU_COUNT(&set);
    const int q = msa_cgroup_cpu_quota("/proc/self/cgroup", "/sys/fs/cgroup");
    if (q > 0 && q < want) want = q;
    CHECK_EQ_INT(msa_cpu_count(), want);
    CHECK(msa_cpu_count() >= 1 && msa_cpu_count() <= sysconf(_SC_NPROCESSORS_ONLN));
    msa_threadpool *tp = NULL;
    CHECK_EQ_INT(msa_threadpool_new(0, &tp), MSA_OK);
    CHECK_EQ_INT(msa_threadpool_size(tp), want);
    msa_threadpool_free(tp);
    printf("  this machine: %d usable CPUs (affinity %d, cgroup quota %d), %ld online\n", msa_cpu_count(),
           CPU_COUNT(&set), q, sysconf(_SC_NPROCESSORS_ONLN));
}

int main(void) {
    RUN(cgroup_v2_smallest_limit_on_the_path);
    RUN(cgroup_v2_no_limit);
    RUN(cgroup_host_path_missing_in_container);
    RUN(cgroup_v1_cpu_controller);
    RUN(cgroup_hostile_files);
    RUN(default_threads_follow_the_usable_cpus);
    if (root[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    return test_summary();
}
