/* bank_io.c — the write-side I/O shim of the bank (see bank_io.h) and the process-wide fsync poison. */
#include "bank/bank_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

static int real_open(const char *path, int flags, int mode) { return open(path, flags, (mode_t)mode); }
static ssize_t real_pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }
static int real_fsync(int fd) { return fsync(fd); }
static int real_rename(const char *from, const char *to) { return rename(from, to); }
static int real_unlink(const char *path) { return unlink(path); }
static int real_mkdir(const char *path, int mode) { return mkdir(path, (mode_t)mode); }

static const bank_io_ops real_ops = {real_open, real_pwrite, real_fsync, real_rename, real_unlink, real_mkdir};
static _Atomic(const bank_io_ops *) active_ops = &real_ops;
static atomic_int poisoned;

const bank_io_ops *bank_io(void) { return atomic_load(&active_ops); }
const bank_io_ops *bank_io_real(void) { return &real_ops; }
void bank_io_set(const bank_io_ops *ops) { atomic_store(&active_ops, ops ? ops : &real_ops); }
int bank_io_poisoned(void) { return atomic_load(&poisoned); }
void bank_io_reset_poison(void) { atomic_store(&poisoned, 0); }

msa_status bank_write_all(int fd, const void *buf, size_t n, uint64_t off, const char *what) {
    const uint8_t *p = buf;
    while (n > 0) {
        size_t step = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = bank_io()->pwrite(fd, p, step, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return msa_fail(MSA_ERR_IO, "%s: write failed: %s", what, strerror(errno));
        }
        if (w == 0) return msa_fail(MSA_ERR_IO, "%s: write made no progress", what);
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return MSA_OK;
}

msa_status bank_fsync(int fd, const char *what) {
    if (bank_io()->fsync(fd) != 0) {
        int e = errno;
        atomic_store(&poisoned, 1);
        return msa_fail(MSA_ERR_IO, "%s: fsync failed: %s (nothing more is acknowledged in this process)", what,
                        strerror(e));
    }
    return MSA_OK;
}

msa_status bank_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    msa_status st = bank_fsync(fd, dir);
    close(fd);
    return st;
}
