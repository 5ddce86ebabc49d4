/* test.h — a minimal test harness for the unit test programs in tests/unit/.
 * Each TEST(name) is a case; CHECK failures mark the case failed and continue. A program prints one line
 * "PASS name" or "FAIL name" per case (tests/run.sh counts them) and exits 1 if any failed.
 *
 *   TEST(tokenizer_roundtrip) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(tokenizer_roundtrip); return test_summary(); }
 */
#ifndef MSA_TEST_H
#define MSA_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_cases, test_passed_cases, test_case_failed;

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);     \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
    do {                                                                                   \
        long long ta_ = (long long)(a), tb_ = (long long)(b);                              \
        if (ta_ != tb_) {                                                                  \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #a, ta_, #b, tb_);                                                     \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double ta_ = (double)(a), tb_ = (double)(b);                                       \
        if (!(fabs(ta_ - tb_) <= (tol))) {                                                 \
            fprintf(stderr, "  %s:%d: %s = %g, expected %g (tol %g)\n", __FILE__, __LINE__, \
                    #a, ta_, tb_, (double)(tol));                                          \
            test_case_failed = 1;                                                          \
        }                                                                                  \
    } while (0)

/* A case that cannot run here (missing optional input) prints SKIP with a reason; it is not a pass. */
#define SKIP(reason)                                                                       \
    do {                                                                                   \
        test_case_failed = -1;                                                             \
        fprintf(stderr, "  skipped: %s\n", reason);                                        \
        return;                                                                            \
    } while (0)

#define RUN(name)                                                                          \
    do {                                                                                   \
        test_case_failed = 0;                                                              \
        test_##name();                                                                     \
        if (test_case_failed < 0) {                                                        \
            printf("SKIP %s\n", #name);                                                    \
        } else if (test_case_failed) {                                                     \
            printf("FAIL %s\n", #name);                                                    \
            test_failed_cases++;                                                           \
        } else {                                                                           \
            printf("PASS %s\n", #name);                                                    \
            test_passed_cases++;                                                           \
        }                                                                                  \
        fflush(stdout);                                                                    \
    } while (0)

static inline int test_summary(void) { return test_failed_cases ? 1 : 0; }

/* The device the model tests load on: MSA_TEST_DEVICE (tests/gpu/run.sh sets "cuda"), else the CPU, so a
 * CUDA build's plain suite still checks the CPU backend. */
static inline const char *test_device(void) {
    const char *d = getenv("MSA_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

#endif
