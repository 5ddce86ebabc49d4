/* cpu_count.h — how many CPUs this process may use, for default thread counts: the affinity mask (taskset,
 * cpuset) capped by a cgroup CPU quota (docker --cpus, Kubernetes CPU limits), not the host's CPU count. */
#ifndef MSA_UTIL_CPU_COUNT_H
#define MSA_UTIL_CPU_COUNT_H

/* The CPUs this process may run on, at most the cgroup CPU quota rounded up; at least 1. Read once and cached
 * (a quota changed later is not seen). */
int msa_cpu_count(void);

/* The cgroup CPU quota in CPUs (rounded up) seen from proc_cgroup (the format of /proc/self/cgroup) under the
 * cgroup file system mounted at root (/sys/fs/cgroup): the smallest limit of the process's cgroup and its
 * parents, cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us / cpu.cfs_period_us). 0 when there is none or nothing
 * could be read. For msa_cpu_count and its test. */
int msa_cgroup_cpu_quota(const char *proc_cgroup, const char *root);

#endif
