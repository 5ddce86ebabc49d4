/* bank_io.h — the bank's write-side I/O shim. Every call that changes files on disk (open for writing,
 * pwrite, fsync, rename, unlink, mkdir, rmdir, close) goes through a table of function pointers so that tests
 * can inject short writes, EIO and ENOSPC at any call (tests/unit/test_bank_faults.c) or model the page
 * cache and cut the power at every sync point (tests/unit/test_bank_powerloss.c). Also the process-wide
 * "poisoned" flag: after a failed fsync the page cache state is unknown, so nothing more is acknowledged
 * in this process; the one path-normalisation helper, the one temp-name scheme and the regular-file open
 * every bank path goes through. */
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
    /* appended later: a table that leaves these NULL gets the real calls */
    int (*rmdir)(const char *path);
    int (*close)(int fd);
} bank_io_ops;

/* The active table (the real system calls unless a test installed another). */
const bank_io_ops *bank_io(void);
/* Install ops (NULL restores the real calls; NULL members mean the real call). Not thread-safe against
 * concurrent bank writes. */
void bank_io_set(const bank_io_ops *ops);
/* The real system calls, for injectors that wrap them. */
const bank_io_ops *bank_io_real(void);

/* Write all n bytes at off (looping over short writes); on failure sets an msa error naming what. */
msa_status bank_write_all(int fd, const void *buf, size_t n, uint64_t off, const char *what);
/* fsync through the shim; a failure poisons the process (see bank_io_poisoned). */
msa_status bank_fsync(int fd, const char *what);
/* Open a directory and fsync it (makes new names in it durable). */
msa_status bank_fsync_dir(const char *dir);
/* Open an existing file and fsync it (a writer making what it found durable before acknowledging). */
msa_status bank_fsync_file(const char *path);

/* Whether a failed fsync happened in this process (then every commit fails). */
int bank_io_poisoned(void);
/* Tests only: forget an earlier fsync failure. */
void bank_io_reset_poison(void);

/* Paths. Every bank entry point normalises its path once (trailing and repeated slashes removed, "" refused)
 * so that the parent directory fsynced and the sibling temp names are those of the bank itself. */
#define BANK_PATH_MAX 4000
msa_status bank_path_norm(const char *in, char *out, size_t size, const char *what);
/* Parent directory of a normalised path ("." when it has no slash, "/" for "/x"). */
void bank_parent_dir(const char *norm, char *out, size_t size);
/* Last component of a normalised path. */
const char *bank_base_name(const char *norm);
/* The one temp-name scheme: "<dir>/.<base>.<what>-<pid>-<counter>-<random>". Unique per operation (pid,
 * a process counter and 32 random bits), hidden, and never the name of a bank file, so no two operations —
 * a writer's manifest, an export, a create, an import — can ever share one. Callers create it exclusively
 * (O_EXCL or mkdir). */
void bank_tmp_name(char *out, size_t size, const char *dir, const char *base, const char *what);
/* Whether name (a directory entry) is a temp file of the scheme above for base. */
int bank_is_tmp_name(const char *name, const char *base);

/* Open an existing bank file for reading: O_NOFOLLOW|O_NONBLOCK (a FIFO or device put in place of a bank file
 * never blocks the open), then fstat: anything but a regular file is MSA_ERR_BAD_DATA. *st_size gets the size.
 * ENOENT is MSA_ERR_NOT_FOUND (callers decide what a missing file means). */
msa_status bank_open_regular(const char *path, int *fd, uint64_t *st_size);

/* Tests only: make the n-th staging allocation from now fail (0 = never). Staging allocations go through
 * bank_stage_alloc so that an out-of-memory in the middle of msa_bank_add can be tested at every point. */
void bank_fault_alloc_after(int n);
void *bank_stage_realloc(void *p, size_t n);

#endif
