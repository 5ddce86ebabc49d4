/* threadpool.h — a fixed pool of worker threads for data-parallel loops (one job at a time). */
#ifndef MSA_UTIL_THREADPOOL_H
#define MSA_UTIL_THREADPOOL_H

#include "msa.h"

typedef struct msa_threadpool msa_threadpool;

/* n_threads total including the caller (n_threads-1 workers are started); 0 = online CPUs.
 * On success *out is owned by the caller (msa_threadpool_free). */
msa_status msa_threadpool_new(int n_threads, msa_threadpool **out);
void msa_threadpool_free(msa_threadpool *tp);
int msa_threadpool_size(const msa_threadpool *tp);

/* Run fn(ctx, ith, nth) on every thread (ith = 0..nth-1, the caller is ith 0) and wait for all.
 * Each fn splits its own work by ith/nth. tp may be NULL: then fn(ctx, 0, 1) runs inline. */
typedef void (*msa_parallel_fn)(void *ctx, int ith, int nth);
void msa_threadpool_run(msa_threadpool *tp, msa_parallel_fn fn, void *ctx);

#endif
