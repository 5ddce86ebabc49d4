/* bank_io.c — the write-side I/O shim of the bank (see bank_io.h), the process-wide fsync poison, path
 * normalisation, the temp-name scheme and the regular-file open. */
#include "bank/bank_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

static int real_open(const char *path, int flags, int mode) { return open(path, flags, (mode_t)mode); }
static ssize_t real_pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }
static int real_fsync(int fd) { return fsync(fd); }
static int real_rename(const char *from, const char *to) { return rename(from, to); }
static int real_unlink(const char *path) { return unlink(path); }
static int real_mkdir(const char *path, int mode) { return mkdir(path, (mode_t)mode); }
static int real_rmdir(const char *path) { return rmdir(path); }
static int real_close(int fd) { return close(fd); }

static const bank_io_ops real_ops = {real_open,   real_pwrite, real_fsync, real_rename,
                                     real_unlink, real_mkdir,  real_rmdir, real_close};
static bank_io_ops installed;
static _Atomic(const bank_io_ops *) active_ops = &real_ops;
static atomic_int poisoned;

const bank_io_ops *bank_io(void) { return atomic_load(&active_ops); }
const bank_io_ops *bank_io_real(void) { return &real_ops; }
void bank_io_set(const bank_io_ops *ops) {
    if (!ops) {
        atomic_store(&active_ops, &real_ops);
        return;
    }
    installed = *ops;
    if (!installed.open) installed.open = real_open;
    if (!installed.pwrite) installed.pwrite = real_pwrite;
    if (!installed.fsync) installed.fsync = real_fsync;
    if (!installed.rename) installed.rename = real_rename;
    if (!installed.unlink) installed.unlink = real_unlink;
    if (!installed.mkdir) installed.mkdir = real_mkdir;
    if (!installed.rmdir) installed.rmdir = real_rmdir;
    if (!installed.close) installed.close = real_close;
    atomic_store(&active_ops, &installed);
}
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
    int fd = bank_io()->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    msa_status st = bank_fsync(fd, dir);
    bank_io()->close(fd);
    return st;
}

msa_status bank_fsync_file(const char *path) {
    int fd = bank_io()->open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    msa_status st = bank_fsync(fd, path);
    bank_io()->close(fd);
    return st;
}

/* ----------------------------------------------------------------------------------------------- paths */

msa_status bank_path_norm(const char *in, char *out, size_t size, const char *what) {
    if (!in || !in[0]) return msa_fail(MSA_ERR_INVALID_ARG, "%s: empty path", what);
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '/' && n > 0 && out[n - 1] == '/') continue; /* "a//b" is "a/b" */
        if (n + 1 >= size || n >= BANK_PATH_MAX) return msa_fail(MSA_ERR_INVALID_ARG, "%s: path too long", what);
        out[n++] = *p;
    }
    while (n > 1 && out[n - 1] == '/') n--; /* "bank/" is "bank"; "/" stays "/" */
    out[n] = '\0';
    return MSA_OK;
}

void bank_parent_dir(const char *norm, char *out, size_t size) {
    snprintf(out, size, "%s", norm);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, size, ".");
    else if (slash == out) slash[1] = '\0';
    else *slash = '\0';
}

const char *bank_base_name(const char *norm) {
    const char *slash = strrchr(norm, '/');
    return slash ? slash + 1 : norm;
}

void bank_tmp_name(char *out, size_t size, const char *dir, const char *base, const char *what) {
    static atomic_uint counter;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) r = (uint32_t)(uintptr_t)out ^ (uint32_t)getpid();
    snprintf(out, size, "%s/.%s.%s-%ld-%u-%08x", dir, base, what, (long)getpid(), atomic_fetch_add(&counter, 1) + 1,
             r);
}

int bank_is_tmp_name(const char *name, const char *base) {
    size_t bl = strlen(base);
    return name[0] == '.' && !strncmp(name + 1, base, bl) && name[1 + bl] == '.' && strchr(name + 1 + bl, '-');
}

msa_status bank_open_regular(const char *path, int *fd_out, uint64_t *st_size) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file", path);
        if (e == ELOOP) return msa_fail(MSA_ERR_BAD_DATA, "%s: is a symbolic link (bank files must be regular files)", path);
        return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file (bank files must be regular files)", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (st_size) *st_size = (uint64_t)sb.st_size;
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------ allocation faults */

static atomic_int alloc_countdown;

void bank_fault_alloc_after(int n) { atomic_store(&alloc_countdown, n); }

void *bank_stage_realloc(void *p, size_t n) {
    int c = atomic_load(&alloc_countdown);
    if (c > 0) {
        atomic_store(&alloc_countdown, c - 1);
        if (c == 1) return NULL;
    }
    return realloc(p, n ? n : 1);
}
