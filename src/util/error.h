/* error.h — setting the thread-local one-line error message behind msa_last_error().
 * Every failing path calls msa_fail(status, "what: why", ...) once, at the point that knows the cause,
 * and returns its result; callers higher up pass the status through without rewriting the message
 * (or prepend context with msa_fail_prefix). */
#ifndef MSA_UTIL_ERROR_H
#define MSA_UTIL_ERROR_H

#include "msa.h"

/* Record a formatted message for this thread and return status (so `return msa_fail(...)` reads well). */
msa_status msa_fail(msa_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepend "prefix: " to the current message, keep status. */
msa_status msa_fail_prefix(msa_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear the message (used at the start of public entry points that may succeed after internal retries). */
void msa_clear_error(void);

#define MSA_TRY(expr)                                  \
    do {                                               \
        msa_status msa_try_st_ = (expr);               \
        if (msa_try_st_ != MSA_OK) return msa_try_st_; \
    } while (0)

#endif
