/* mmap.c — read-only whole-file mappings and small-file reads with uniform error messages. */
#include "util/mmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

static msa_status open_error(const char *path, int err) {
    if (err == ENOENT || err == ENOTDIR) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file", path);
    if (err == EACCES || err == EPERM) return msa_fail(MSA_ERR_IO, "%s: permission denied", path);
    return msa_fail(MSA_ERR_IO, "%s: cannot open: %s", path, strerror(err));
}

/* Open path and check it is a regular, non-empty (unless allow_empty) file within max_size. */
static msa_status open_checked(const char *path, size_t max_size, int allow_empty, int *fd_out,
                               size_t *size_out) {
    /* O_NONBLOCK: opening a FIFO or device must not hang; regular files ignore the flag */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return open_error(path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return msa_fail(MSA_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: is a directory, expected a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file", path);
    }
    if (st.st_size == 0 && !allow_empty) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: file is empty", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2 ||
        (max_size && (uint64_t)st.st_size > max_size)) {
        close(fd);
        return msa_fail(MSA_ERR_LIMIT, "%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size,
                        max_size ? max_size : (size_t)SIZE_MAX / 2);
    }
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return MSA_OK;
}

msa_status msa_map_file(const char *path, size_t max_size, msa_mapped_file *out) {
    out->data = NULL;
    out->size = 0;
    int fd;
    size_t size;
    MSA_TRY(open_checked(path, max_size, 0, &fd, &size));
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd); /* the mapping keeps the file referenced */
    if (p == MAP_FAILED) return msa_fail(MSA_ERR_IO, "%s: mmap failed: %s", path, strerror(err));
    out->data = p;
    out->size = size;
    return MSA_OK;
}

void msa_unmap_file(msa_mapped_file *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

msa_status msa_read_file(const char *path, size_t max_size, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd;
    size_t size;
    MSA_TRY(open_checked(path, max_size, 1, &fd, &size));
    char *b = malloc(size + 1);
    if (!b) {
        close(fd);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int err = r < 0 ? errno : 0;
            close(fd);
            free(b);
            return msa_fail(MSA_ERR_IO, "%s: read failed: %s", path, err ? strerror(err) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    b[size] = '\0';
    *buf = b;
    *len = size;
    return MSA_OK;
}

int msa_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int msa_path_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
