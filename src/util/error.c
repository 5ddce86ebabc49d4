/* error.c — status names, exit codes and the thread-local error message of the public API. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MSA_ERROR_MAX 1024

static _Thread_local char error_message[MSA_ERROR_MAX];

const char *msa_version(void) { return "0.1.0"; }

const char *msa_strerror(msa_status status) {
    switch (status) {
    case MSA_OK: return "ok";
    case MSA_ERR_INVALID_ARG: return "invalid argument";
    case MSA_ERR_NOT_FOUND: return "not found";
    case MSA_ERR_BAD_DATA: return "bad data";
    case MSA_ERR_UNSUPPORTED: return "unsupported";
    case MSA_ERR_IO: return "I/O error";
    case MSA_ERR_NOMEM: return "out of memory";
    case MSA_ERR_CONFLICT: return "conflict";
    case MSA_ERR_LOCKED: return "locked";
    case MSA_ERR_MISMATCH: return "model mismatch";
    case MSA_ERR_LIMIT: return "limit exceeded";
    case MSA_ERR_INTERNAL: return "internal error";
    case MSA_STATUS_COUNT: break;
    }
    return "unknown status";
}

int msa_status_exit_code(msa_status status) {
    switch (status) {
    case MSA_OK: return 0;
    case MSA_ERR_INVALID_ARG: return 64;
    case MSA_ERR_BAD_DATA: return 65;
    case MSA_ERR_MISMATCH: return 65;
    case MSA_ERR_NOT_FOUND: return 66;
    case MSA_ERR_UNSUPPORTED: return 69;
    case MSA_ERR_LIMIT: return 65;
    case MSA_ERR_CONFLICT: return 73;
    case MSA_ERR_LOCKED: return 75;
    case MSA_ERR_IO: return 74;
    case MSA_ERR_NOMEM: return 71;
    case MSA_ERR_INTERNAL: return 70;
    case MSA_STATUS_COUNT: break;
    }
    return 70;
}

const char *msa_last_error(void) { return error_message; }

void msa_clear_error(void) { error_message[0] = '\0'; }

msa_status msa_fail(msa_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    /* one line: a message quoting user data must not spill over lines */
    for (char *p = error_message; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return status;
}

msa_status msa_fail_prefix(msa_status status, const char *fmt, ...) {
    char prefix[MSA_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[MSA_ERROR_MAX];
    memcpy(old, error_message, sizeof old);
    if (old[0])
        return msa_fail(status, "%s: %s", prefix, old);
    return msa_fail(status, "%s", prefix);
}
