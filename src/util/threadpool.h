/* threadpool.h — a fixed pool of worker threads for data-parallel loops (one job at a time). */
#ifndef MSA_UTIL_THREADPOOL_H
#define MSA_UTIL_THREADPOOL_H

#include "msa.h"

typedef struct msa_threadpool msa_threadpool;

/* n_threads total including the caller (n_threads-1 workers are started); 0 = the CPUs this process may use (msa_cpu_count: affinity, cgroup quota).
 * On success *out is owned by the caller (msa_threadpool_free). */
msa_status msa_threadpool_new(int n_threads, msa_threadpool **out);
void msa_threadpool_free(msa_threadpool *tp);
int msa_threadpool_size(const msa_threadpool *tp);

/* Run fn(ctx, ith, nth) on every thread (ith = 0..nth-1, the caller is ith 0) and wait for all.
 * Each fn splits its own work by ith/nth. tp may be NULL: then fn(ctx, 0, 1) runs inline. */
typedef void (*msa_parallel_fn)(void *ctx, int ith, int nth);
void msa_threadpool_run(msa_threadpool *tp, msa_parallel_fn fn, void *ctx);

/* The same for jobs whose fn takes its work from a shared counter (work sharing): fn runs on the caller and on
 * every worker that arrives before the caller has finished its own call; a worker that arrives later skips
 * the job. So a worker that another process keeps off its CPU does not hold up the job: the caller only
 * waits for workers that have started. fn must not rely on every ith running (each ith runs at most once). */
void msa_threadpool_run_shared(msa_threadpool *tp, msa_parallel_fn fn, void *ctx);

#endif
