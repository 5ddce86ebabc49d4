/* fault_guard.h — reads through a file mapping that may fault (SIGBUS: a disk I/O error under the mapping,
 * or the file truncated behind the reader's back), turned into an error where the application opted in with
 * msa_catch_mapping_faults() (msa.h). */
#ifndef MSA_UTIL_FAULT_GUARD_H
#define MSA_UTIL_FAULT_GUARD_H

#include <stdbool.h>
#include <stddef.h>

/* Runs fn(arg) with SIGBUS on this thread armed to return here. Returns true when fn completed, false when a
 * SIGBUS hit inside it (fn's work is abandoned at the faulting read). fn must not allocate, free or take a lock
 * while it reads mapped memory, so that abandoning it leaks nothing. Without msa_catch_mapping_faults() a
 * SIGBUS keeps its default action (the process dies) and this always returns true. Nests. */
bool fault_guard_run(void (*fn)(void *arg), void *arg);

/* memcpy(dst, src, n) where src may be a mapping: false if it faulted (dst then partly written). */
bool fault_guard_copy(void *dst, const void *src, size_t n);

#endif
