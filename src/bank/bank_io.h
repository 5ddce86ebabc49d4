/* bank_io.h — the bank's write-side I/O shim. Every call that changes files on disk (open for writing,
 * pwrite, fsync, rename, unlink, mkdir) goes through a table of function pointers so that tests can inject
 * short writes, EIO and ENOSPC at any call (tests/unit/test_bank_faults.c). Also the process-wide
 * "poisoned" flag: after a failed fsync the page cache state is unknown, so nothing more is acknowledged
 * in this process. */
#ifndef MSA_BANK_IO_H
#define MSA_BANK_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msa.h"

typedef struct bank_io_ops {
    int (*open)(const char *path, int flags, int mode);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fsync)(int fd);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*mkdir)(const char *path, int mode);
} bank_io_ops;

/* The active table (the real system calls unless a test installed another). */
const bank_io_ops *bank_io(void);
/* Install ops (NULL restores the real calls). Not thread-safe against concurrent bank writes. */
void bank_io_set(const bank_io_ops *ops);
/* The real system calls, for injectors that wrap them. */
const bank_io_ops *bank_io_real(void);

/* Write all n bytes at off (looping over short writes); on failure sets an msa error naming what. */
msa_status bank_write_all(int fd, const void *buf, size_t n, uint64_t off, const char *what);
/* fsync through the shim; a failure poisons the process (see bank_io_poisoned). */
msa_status bank_fsync(int fd, const char *what);
/* Open a directory and fsync it (makes new names in it durable). */
msa_status bank_fsync_dir(const char *dir);

/* Whether a failed fsync happened in this process (then every commit fails). */
int bank_io_poisoned(void);
/* Tests only: forget an earlier fsync failure. */
void bank_io_reset_poison(void);

#endif
