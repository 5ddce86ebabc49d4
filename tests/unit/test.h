/* test.h — a minimal test harness for the unit test programs in tests/unit/.
 * Each TEST(name) is a case; CHECK failures mark the case failed and continue. A program prints one line
 * "PASS name" or "FAIL name" per case (tests/run.sh counts them) and exits 1 if any failed.
 *
 *   TEST(tokenizer_roundtrip) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(tokenizer_roundtrip); return test_summary(); }
 *
 * What makes a result trustworthy (issue 13) — none of it needs a program to change:
 *   - every TEST registers itself before main (a constructor), so the program knows how many cases it
 *     declares; test_summary prints "# cases: declared N ran M" (tests/run.sh requires that line) and fails
 *     the program when fewer ran; a program that exits (even with status 0) before test_summary reports
 *     "FAIL <program>" from an atexit handler and exits 1;
 *   - a case that runs no CHECK at all is a FAIL ("no assertion"): a case has to prove something;
 *   - SKIP after a failed CHECK stays a FAIL (the skip does not hide the failure);
 *   - each case runs under an alarm (MSA_TEST_CASE_TIMEOUT seconds, default 900; 0 turns it off): a hung
 *     case prints "FAIL name (timed out ...)" and the program exits 1.
 * Crashes, sanitizer reports and missing lines are the runner's to see (tests/run.sh).
 */
#ifndef MSA_TEST_H
#define MSA_TEST_H

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failed_cases, test_passed_cases, test_case_failed;
static int test_declared_cases, test_ran_cases, test_summary_done;
static long test_checks_; /* assertions evaluated in the current case (atomic: CHECKs run on worker threads) */
static const char *volatile test_current_case;

#define TEST_COUNT_CHECK_() __atomic_fetch_add(&test_checks_, 1, __ATOMIC_RELAXED)

/* The constructor counts the case before main runs; static functions that are never RUN would not compile
 * (-Wunused-function -Werror), so "declared" is what main is meant to run. */
#define TEST(name)                                                                         \
    static void test_##name(void);                                                         \
    __attribute__((constructor)) static void msa_test_register_##name(void) {                  \
        test_declared_cases++;                                                             \
    }                                                                                      \
    static void test_##name(void)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        TEST_COUNT_CHECK_();                                                               \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);     \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
    do {                                                                                   \
        long long ta_ = (long long)(a), tb_ = (long long)(b);                              \
        TEST_COUNT_CHECK_();                                                               \
        if (ta_ != tb_) {                                                                  \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #a, ta_, #b, tb_);                                                     \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double ta_ = (double)(a), tb_ = (double)(b);                                       \
        TEST_COUNT_CHECK_();                                                               \
        if (!(fabs(ta_ - tb_) <= (tol))) {                                                 \
            fprintf(stderr, "  %s:%d: %s = %g, expected %g (tol %g)\n", __FILE__, __LINE__, \
                    #a, ta_, tb_, (double)(tol));                                          \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

/* A case that cannot run here (missing optional input) prints SKIP with a reason; it is not a pass. The
 * reason must name a capability this machine lacks; an input CI has or generates is never a reason. A SKIP
 * after a failed CHECK keeps the case failed. */
#define SKIP(reason)                                                                       \
    do {                                                                                   \
        fprintf(stderr, "  skipped: %s\n", reason);                                        \
        if (test_case_failed <= 0) test_case_failed = -1;                                  \
        return;                                                                            \
    } while (0)

/* An input that is absent is a SKIP (reason: what to install); one that is there but did not load is a
 * FAIL — a default model that exists and does not load must never turn its cases into skips. */
#define SKIP_UNLESS_LOADED(ptr, path, reason)                                              \
    do {                                                                                   \
        if (!(ptr)) {                                                                      \
            if (access((path), F_OK) != 0) SKIP(reason);                                   \
            fprintf(stderr, "  %s is there but did not load\n", (path));                   \
            CHECK((ptr) != NULL);                                                          \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* async-signal-safe: the alarm's report is made of write(2) calls only */
static inline void test_write_(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static inline void test_on_alarm_(int sig) {
    (void)sig;
    test_write_("FAIL ");
    test_write_(test_current_case ? test_current_case : "?");
    test_write_(" (timed out: MSA_TEST_CASE_TIMEOUT)\n");
    _exit(1);
}

/* exit() before test_summary: the cases after this point never ran, whatever the exit status said */
static pid_t test_main_pid_;

static inline void test_at_exit_(void) {
    /* a forked child's exit is its own business; the TSan suite lets a program skip itself whole */
    if (test_summary_done || getpid() != test_main_pid_) return;
    if (test_ran_cases == 0 && getenv("MSA_TEST_ONLY_CONCURRENCY")) return;
    fflush(stdout);
    printf("FAIL program exited after %d of %d declared cases (during %s)\n", test_ran_cases,
           test_declared_cases, test_current_case ? test_current_case : "no case");
    fflush(stdout);
    _exit(1);
}

static inline void test_start_(const char *name) {
    static int armed;
    if (!armed) {
        armed = 1;
        test_main_pid_ = getpid();
        atexit(test_at_exit_);
        signal(SIGALRM, test_on_alarm_);
    }
    const char *t = getenv("MSA_TEST_CASE_TIMEOUT");
    test_current_case = name;
    test_case_failed = 0;
    __atomic_store_n(&test_checks_, 0, __ATOMIC_RELAXED);
    alarm(t && *t ? (unsigned)atoi(t) : 900u);
}

static inline void test_finish_(const char *name) {
    alarm(0);
    test_ran_cases++;
    if (test_case_failed < 0) {
        printf("SKIP %s\n", name);
    } else if (test_case_failed) {
        printf("FAIL %s\n", name);
        test_failed_cases++;
    } else if (__atomic_load_n(&test_checks_, __ATOMIC_RELAXED) == 0) {
        printf("FAIL %s (no assertion ran: a case must check something)\n", name);
        test_failed_cases++;
    } else {
        printf("PASS %s\n", name);
        test_passed_cases++;
    }
    fflush(stdout);
}

#define RUN(name)                                                                          \
    do {                                                                                   \
        test_start_(#name);                                                                \
        test_##name();                                                                     \
        test_finish_(#name);                                                               \
    } while (0)

/* The program's last line: the runner requires it, and compares the counts. The TSan suite
 * (MSA_TEST_ONLY_CONCURRENCY) lets a program skip itself whole before any case. */
static inline int test_summary(void) {
    int short_run = test_ran_cases < test_declared_cases &&
                    !(test_ran_cases == 0 && getenv("MSA_TEST_ONLY_CONCURRENCY"));
    test_summary_done = 1;
    if (short_run) {
        printf("FAIL cases_declared_vs_ran (%d declared, %d ran)\n", test_declared_cases, test_ran_cases);
        test_failed_cases++;
    }
    printf("# cases: declared %d ran %d\n", test_declared_cases, test_ran_cases);
    fflush(stdout);
    return test_failed_cases ? 1 : 0;
}

/* The device the model tests load on: MSA_TEST_DEVICE (tests/gpu/run.sh sets "cuda"), else the CPU, so a
 * CUDA build's plain suite still checks the CPU backend. */
static inline const char *test_device(void) {
    const char *d = getenv("MSA_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

#endif
