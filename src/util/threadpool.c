/* threadpool.c — a fixed pool of workers for data-parallel loops, tuned for many tiny jobs.
 *
 * Decode runs a few hundred small matrix products per token, so the cost of one msa_threadpool_run matters
 * as much as the kernels. Workers therefore spin (with a pause instruction) for a short time after each job
 * and only then sleep on a futex; the caller spins the same way while it waits for the last worker. An idle
 * pool costs no CPU after the spin window (MSA_SPIN_US, default 200 µs; none when the pool has more threads
 * than there are CPUs, where spinning only steals time from the threads that have work).
 *
 * Protocol: run() publishes fn/ctx, sets `pending` to the number of workers and bumps the `generation`
 * counter (release). A worker that sees a new generation runs fn and decrements `pending`; the one that brings
 * it to zero wakes the caller if the caller went to sleep. Jobs never overlap, so one slot is enough. */
#include "util/threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/cpu_count.h"
#include "util/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 512

struct msa_threadpool {
    int n_threads;                 /* including the caller */
    pthread_t *workers;            /* [n_threads - 1] */
    int n_started;
    msa_parallel_fn fn;            /* the current job; written before generation is bumped */
    void *ctx;
    _Atomic uint32_t generation;   /* futex word: bumped once per job (and once at shutdown) */
    _Atomic uint32_t pending;      /* workers still running the current job */
    _Atomic uint32_t done_word;    /* futex word the caller sleeps on when a job runs long */
    _Atomic int caller_sleeping;
    _Atomic int n_sleeping;        /* workers blocked in futex wait (run() skips the wake syscall if 0) */
    _Atomic int stop;
    int64_t spin_ns;
    /* shared-work jobs (msa_threadpool_run_shared) have an odd generation, so a worker knows the kind of
     * job from the generation it saw, without reading anything the caller may already be rewriting. */
    _Atomic uint32_t shared_open;  /* generation of the shared job still open to late workers (0: none) */
    _Atomic uint32_t active;       /* workers inside the current shared job */
};

struct worker_arg {
    msa_threadpool *tp;
    int ith;
};

static long futex(_Atomic uint32_t *addr, int op, uint32_t val) {
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin until *word != old or the spin window ends; returns whether it changed. */
static int spin_while_equal(_Atomic uint32_t *word, uint32_t old, int64_t spin_ns) {
    int64_t deadline = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != old) return 1;
        cpu_relax();
        if ((i & 63) == 63) {
            if ((i & 4095) == 4095) sched_yield(); /* let a thread that shares this CPU make progress */
            int64_t t = now_ns();
            if (!deadline) deadline = t + spin_ns;
            else if (t >= deadline) return 0;
        }
    }
}

static void *worker_main(void *p) {
    struct worker_arg arg = *(struct worker_arg *)p;
    free(p);
    msa_threadpool *tp = arg.tp;
    uint32_t seen = 0; /* the generation at creation: a job may be published before this thread runs */
    for (;;) {
        if (!spin_while_equal(&tp->generation, seen, tp->spin_ns)) {
            atomic_fetch_add(&tp->n_sleeping, 1);
            while (atomic_load_explicit(&tp->generation, memory_order_seq_cst) == seen)
                futex(&tp->generation, FUTEX_WAIT_PRIVATE, seen);
            atomic_fetch_sub(&tp->n_sleeping, 1);
        }
        seen = atomic_load_explicit(&tp->generation, memory_order_acquire);
        if (atomic_load_explicit(&tp->stop, memory_order_acquire)) break;
        if (seen & 1) {
            /* Join only while the caller has not closed the job; the caller waits for everyone who joined. */
            atomic_fetch_add_explicit(&tp->active, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&tp->shared_open, memory_order_seq_cst) == seen) tp->fn(tp->ctx, arg.ith, tp->n_threads);
            /* a late worker did nothing: the caller may already be publishing the next job */
            if (atomic_fetch_sub_explicit(&tp->active, 1, memory_order_seq_cst) == 1) {
                atomic_fetch_add_explicit(&tp->done_word, 1, memory_order_seq_cst);
                if (atomic_load_explicit(&tp->caller_sleeping, memory_order_seq_cst)) futex(&tp->done_word, FUTEX_WAKE_PRIVATE, 1);
            }
            continue;
        }
        tp->fn(tp->ctx, arg.ith, tp->n_threads);
        if (atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel) == 1) {
            atomic_fetch_add_explicit(&tp->done_word, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&tp->caller_sleeping, memory_order_seq_cst)) futex(&tp->done_word, FUTEX_WAKE_PRIVATE, 1);
        }
    }
    return NULL;
}

msa_status msa_threadpool_new(int n_threads, msa_threadpool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = msa_cpu_count();
    if (n_threads > MAX_THREADS) return msa_fail(MSA_ERR_INVALID_ARG, "thread pool: %d threads (at most %d)", n_threads, MAX_THREADS);
    msa_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return msa_fail(MSA_ERR_NOMEM, "thread pool: out of memory");
    tp->n_threads = n_threads;
    /* More threads than the CPUs this process may use (affinity, cgroup quota): a spinning thread would take the
     * CPU, or the quota, from one with work, so sleep at once. */
    tp->spin_ns = n_threads > msa_cpu_count() ? 0 : 200 * 1000;
    const char *env = getenv("MSA_SPIN_US");
    if (env && *env) {
        long us = strtol(env, NULL, 10);
        if (us >= 0 && us < 10L * 1000 * 1000) tp->spin_ns = (int64_t)us * 1000;
    }
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            free(tp);
            return msa_fail(MSA_ERR_NOMEM, "thread pool: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *arg = malloc(sizeof *arg);
        if (!arg) {
            msa_threadpool_free(tp);
            return msa_fail(MSA_ERR_NOMEM, "thread pool: out of memory");
        }
        arg->tp = tp;
        arg->ith = i;
        if (pthread_create(&tp->workers[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            msa_threadpool_free(tp);
            return msa_fail(MSA_ERR_INTERNAL, "thread pool: cannot start thread %d of %d", i + 1, n_threads);
        }
        tp->n_started++;
    }
    *out = tp;
    return MSA_OK;
}

void msa_threadpool_free(msa_threadpool *tp) {
    if (!tp) return;
    atomic_store_explicit(&tp->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&tp->generation, 2, memory_order_release);
    futex(&tp->generation, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (int i = 0; i < tp->n_started; i++) pthread_join(tp->workers[i], NULL);
    free(tp->workers);
    free(tp);
}

int msa_threadpool_size(const msa_threadpool *tp) { return tp ? tp->n_threads : 1; }

/* Spin, then sleep, until *count is 0 (`pending` or `active`). done_word only gives the caller something to
 * sleep on (a late bump from an earlier job merely causes a spurious wake-up). */
static void wait_for_zero(msa_threadpool *tp, _Atomic uint32_t *count) {
    int64_t deadline = 0;
    for (unsigned i = 0; atomic_load_explicit(count, memory_order_seq_cst) != 0; i++) {
        cpu_relax();
        if ((i & 63) != 63) continue;
        if ((i & 4095) == 4095) sched_yield();
        int64_t t = now_ns();
        if (!deadline) {
            deadline = t + tp->spin_ns;
        } else if (t >= deadline) {
            atomic_store_explicit(&tp->caller_sleeping, 1, memory_order_seq_cst);
            for (;;) {
                uint32_t d = atomic_load_explicit(&tp->done_word, memory_order_seq_cst);
                if (atomic_load_explicit(count, memory_order_seq_cst) == 0) break;
                futex(&tp->done_word, FUTEX_WAIT_PRIVATE, d);
            }
            atomic_store_explicit(&tp->caller_sleeping, 0, memory_order_relaxed);
            break;
        }
    }
}

/* Publish a job: workers see the new generation (and are woken if asleep). */
static void publish(msa_threadpool *tp, msa_parallel_fn fn, void *ctx, int shared) {
    tp->fn = fn;
    tp->ctx = ctx;
    uint32_t gen = ((atomic_load_explicit(&tp->generation, memory_order_relaxed) >> 1) + 1) << 1 | (uint32_t)shared;
    if (shared) atomic_store_explicit(&tp->shared_open, gen, memory_order_seq_cst);
    else atomic_store_explicit(&tp->pending, (uint32_t)tp->n_threads - 1, memory_order_relaxed);
    atomic_store_explicit(&tp->generation, gen, memory_order_seq_cst); /* only the caller writes it */
    if (atomic_load_explicit(&tp->n_sleeping, memory_order_seq_cst) > 0)
        futex(&tp->generation, FUTEX_WAKE_PRIVATE, INT_MAX);
}

void msa_threadpool_run(msa_threadpool *tp, msa_parallel_fn fn, void *ctx) {
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    publish(tp, fn, ctx, 0);
    fn(ctx, 0, tp->n_threads);
    wait_for_zero(tp, &tp->pending);
}

void msa_threadpool_run_shared(msa_threadpool *tp, msa_parallel_fn fn, void *ctx) {
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    publish(tp, fn, ctx, 1);
    fn(ctx, 0, tp->n_threads);
    /* Close the job: a worker joins (active++) and then checks shared_open, so it either sees the job closed
     * or is counted before this thread reads `active` (all seq_cst). */
    atomic_store_explicit(&tp->shared_open, 0, memory_order_seq_cst);
    wait_for_zero(tp, &tp->active);
}
