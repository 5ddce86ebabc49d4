/* test_threadpool.c — the pool runs every ith exactly once per job with the right nth, through both the
 * spinning and the sleeping hand-off, and shuts down cleanly (also right after creation and while idle). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "util/threadpool.h"

#define MAX_TH 8

typedef struct counts {
    _Atomic int per_ith[MAX_TH];
    _Atomic int bad_nth;
    int nth;
    int sleep_us; /* ith 1 sleeps this long (forces the caller to wait on the futex) */
    int job;      /* checked by every thread: the job's fields are visible to workers */
    _Atomic int bad_job;
    int expect_job;
} counts;

static void sleep_us(int us) {
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void count_fn(void *arg, int ith, int nth) {
    counts *c = arg;
    if (nth != c->nth || ith < 0 || ith >= nth) atomic_fetch_add(&c->bad_nth, 1);
    else atomic_fetch_add(&c->per_ith[ith], 1);
    if (c->job != c->expect_job) atomic_fetch_add(&c->bad_job, 1);
    if (c->sleep_us && ith == 1) sleep_us(c->sleep_us);
}

static int asan(void) {
    const char *s = getenv("MSA_SUITE");
    return s && !strcmp(s, "asan");
}

TEST(threadpool_every_ith_once_per_job) {
    for (int nth = 1; nth <= 4; nth++) {
        int n_jobs = (asan() ? 1000 : 10000) / (nth > 2 ? 10 : 1); /* CI has 2 CPUs: 3-4 threads sleep-hand off */
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        CHECK_EQ_INT(msa_threadpool_size(tp), nth);
        counts c;
        memset(&c, 0, sizeof c);
        c.nth = nth;
        for (int j = 0; j < n_jobs; j++) {
            c.job = c.expect_job = j;
            msa_threadpool_run(tp, count_fn, &c);
            /* After run returns, every thread has finished this job. */
            int done = 0;
            for (int i = 0; i < nth; i++) done += atomic_load(&c.per_ith[i]) == j + 1;
            if (done != nth) {
                fprintf(stderr, "  nth=%d job %d: only %d threads had finished\n", nth, j, done);
                test_case_failed = 1;
                break;
            }
        }
        CHECK_EQ_INT(atomic_load(&c.bad_nth), 0);
        CHECK_EQ_INT(atomic_load(&c.bad_job), 0);
        msa_threadpool_free(tp);
    }
}

TEST(threadpool_sleeping_handoff) {
    /* Idle gaps longer than the spin window put workers to sleep; slow jobs put the caller to sleep. */
    for (int nth = 2; nth <= 4; nth++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        counts c;
        memset(&c, 0, sizeof c);
        c.nth = nth;
        int n_jobs = 12;
        for (int j = 0; j < n_jobs; j++) {
            c.sleep_us = (j % 3 == 0) ? 2000 : 0;
            msa_threadpool_run(tp, count_fn, &c);
            if (j % 2) sleep_us(3000);
        }
        for (int i = 0; i < nth; i++) CHECK_EQ_INT(atomic_load(&c.per_ith[i]), n_jobs);
        msa_threadpool_free(tp);
    }
}

TEST(threadpool_null_and_single) {
    counts c;
    memset(&c, 0, sizeof c);
    c.nth = 1;
    msa_threadpool_run(NULL, count_fn, &c);
    CHECK_EQ_INT(atomic_load(&c.per_ith[0]), 1);
    CHECK_EQ_INT(msa_threadpool_size(NULL), 1);
    msa_threadpool *tp = NULL;
    CHECK(msa_threadpool_new(0, &tp) == MSA_OK); /* 0 = online CPUs */
    CHECK(tp && msa_threadpool_size(tp) >= 1);
    msa_threadpool_free(tp);
    msa_threadpool_free(NULL);
    CHECK(msa_threadpool_new(100000, &tp) != MSA_OK);
}

TEST(threadpool_clean_shutdown) {
    /* Free right after creation (workers may not have started), after one job, and after going idle. */
    for (int i = 0; i < (asan() ? 20 : 100); i++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(1 + i % 4, &tp) == MSA_OK);
        if (!tp) return;
        if (i % 3 == 1) {
            counts c;
            memset(&c, 0, sizeof c);
            c.nth = 1 + i % 4;
            msa_threadpool_run(tp, count_fn, &c);
            CHECK_EQ_INT(atomic_load(&c.per_ith[0]), 1);
        }
        if (i % 10 == 2) sleep_us(1000);
        msa_threadpool_free(tp);
    }
}

/* Shared-work jobs interleaved with ordinary ones: every item of a shared job is done exactly once, by the
 * caller alone if no worker arrives in time, and no worker ever runs a job twice or after it closed (the
 * ordinary jobs' every-ith-once check would catch a stray participant). */
typedef struct {
    _Atomic int next;
    int n_items;
    _Atomic int *done; /* [n_items] */
    _Atomic int callers[8];
} shared_ctx;

static void shared_fn(void *p, int ith, int nth) {
    shared_ctx *c = p;
    (void)nth;
    atomic_fetch_add(&c->callers[ith], 1);
    for (;;) {
        int i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n_items) break;
        atomic_fetch_add(&c->done[i], 1);
    }
}

typedef struct {
    _Atomic int hits[8];
} every_ctx;

static void every_fn(void *p, int ith, int nth) {
    (void)nth;
    atomic_fetch_add(&((every_ctx *)p)->hits[ith], 1);
}

TEST(threadpool_shared_jobs) {
    const char *suite = getenv("MSA_SUITE");
    int rounds = suite && *suite && strcmp(suite, "plain") ? 2000 : 20000;
    for (int nth = 2; nth <= 4; nth++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        int bad = 0;
        for (int r = 0; r < rounds && !bad; r++) {
            shared_ctx c = {.n_items = 1 + r % 37};
            c.done = calloc((size_t)c.n_items, sizeof *c.done);
            msa_threadpool_run_shared(tp, shared_fn, &c);
            for (int i = 0; i < c.n_items; i++) bad += atomic_load(&c.done[i]) != 1;
            for (int t = 0; t < nth; t++) bad += atomic_load(&c.callers[t]) > 1;
            bad += atomic_load(&c.callers[0]) != 1; /* the caller always runs it */
            free(c.done);
            if (r % 3 == 0) {
                every_ctx e = {0};
                msa_threadpool_run(tp, every_fn, &e);
                for (int t = 0; t < nth; t++) bad += atomic_load(&e.hits[t]) != 1;
            }
        }
        CHECK(bad == 0);
        msa_threadpool_free(tp);
    }
}

int main(void) {
    RUN(threadpool_every_ith_once_per_job);
    RUN(threadpool_sleeping_handoff);
    RUN(threadpool_null_and_single);
    RUN(threadpool_clean_shutdown);
    RUN(threadpool_shared_jobs);
    return test_summary();
}
