/* tier.c — placement of bank data: segments are memory-mapped read-only; routing keys (the data every query
 * scans) can be copied to RAM at open; a document's content K̄/V̄ is served from the mapping or read on
 * demand with one pread (for callers that fill pinned or device staging buffers). GPU placement is the CUDA
 * backend's business: it uploads from these same pointers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include "bank/bank.h"
#include "bank/bank_io.h"
#include "util/error.h"
#include "util/fault_guard.h"

void bank_seg_path(char *buf, size_t size, const char *dir, uint64_t seg_id) {
    snprintf(buf, size, "%s/seg-%016llx.msab", dir, (unsigned long long)seg_id);
}

typedef struct seg_parse {
    const uint8_t *map;
    uint64_t size;
    const msa_bank_shape *shape;
    const uint8_t *uuid;
    const char *path;
    bank_segment *out;
    msa_status st;
} seg_parse;

static void seg_parse_body(void *arg) {
    seg_parse *p = arg;
    p->st = bank_segment_parse(p->map, p->size, p->shape, p->uuid, p->path, p->out);
}

msa_status bank_seg_map(const char *dir, const bank_seg_ref *ref, const msa_bank_shape *shape,
                        const uint8_t uuid[16], bool routing_in_ram, bank_seg_view **out) {
    char path[4096 + 64];
    bank_seg_path(path, sizeof path, dir, ref->seg_id);
    int fd;
    uint64_t fsize;
    msa_status ost = bank_open_regular(path, &fd, &fsize); /* a FIFO or symlink in place of a segment: 65 */
    if (ost == MSA_ERR_NOT_FOUND)
        return msa_fail(MSA_ERR_NOT_FOUND, "%s: segment file named by the manifest is missing", path);
    if (ost) return ost;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size != ref->file_size) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment is %llu bytes, the manifest says %llu (truncated or replaced)",
                        path, (unsigned long long)st.st_size, (unsigned long long)ref->file_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return msa_fail(MSA_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    }
    bank_seg_view *sv = calloc(1, sizeof *sv);
    char *name = strdup(path);
    if (!sv || !name) {
        free(sv);
        free(name);
        munmap(map, (size_t)st.st_size);
        close(fd);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", path);
    }
    sv->map = map;
    sv->map_len = (size_t)st.st_size;
    /* the mapping keeps the file (and a compacted-away segment's blocks) alive without a descriptor: open
     * files stay bounded however many segments a bank has; msa_bank_read_content opens on demand */
    close(fd);
    sv->fd = -1;
    sv->dev = st.st_dev;
    sv->ino = st.st_ino;
    sv->file = true;
    sv->name = name;
    sv->refs = 1;
    /* the parse reads (and hashes) the mapping and allocates nothing: a SIGBUS may abandon it */
    seg_parse pa = {map, (uint64_t)st.st_size, shape, uuid, path, &sv->seg, MSA_OK};
    msa_status s = fault_guard_run(seg_parse_body, &pa)
                       ? pa.st
                       : msa_fail(MSA_ERR_IO, "%s: I/O error reading the segment (SIGBUS)", path);
    if (!s && (sv->seg.seg_id != ref->seg_id || sv->seg.header_hash != ref->header_hash ||
               sv->seg.n_docs != ref->n_docs || sv->seg.n_chunks != ref->n_chunks))
        s = msa_fail(MSA_ERR_BAD_DATA, "%s: segment header does not match the manifest (replaced or corrupt)", path);
    if (!s && routing_in_ram && sv->seg.kind == BANK_SEG_DOCS) {
        for (int l = 0; l < shape->n_router && !s; l++) {
            uint64_t n = sv->seg.n_chunks * bank_route_row_bytes(shape, l);
            sv->route_ram[l] = malloc(n ? n : 1);
            if (!sv->route_ram[l]) s = msa_fail(MSA_ERR_NOMEM, "%s: no RAM for routing keys", path);
            else if (!fault_guard_copy(sv->route_ram[l], sv->seg.route[l], n))
                s = msa_fail(MSA_ERR_IO, "%s: I/O error reading routing keys (SIGBUS)", path);
        }
    }
    if (s) {
        bank_seg_unref(sv);
        return s;
    }
    *out = sv;
    return MSA_OK;
}

void bank_seg_unref(bank_seg_view *sv) {
    if (!sv || --sv->refs > 0) return;
    for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) free(sv->route_ram[l]);
    if (sv->map) munmap(sv->map, sv->map_len);
    if (sv->fd >= 0) close(sv->fd);
    free(sv->name);
    free(sv);
}

const uint8_t *bank_seg_route(const bank_seg_view *sv, int slot) {
    return sv->route_ram[slot] ? sv->route_ram[slot] : sv->seg.route[slot];
}

msa_status msa_bank_read_content(const msa_bank *bank, uint32_t index, int slot, void *k_out, void *v_out) {
    const bank_version *v = bank->v;
    const msa_bank_shape *sh = &v->man.shape;
    if (sh->mode != MSA_BANK_NATIVE) return msa_fail(MSA_ERR_UNSUPPORTED, "%s: read-mode bank stores no K/V", bank->path);
    if (slot < 0 || slot >= sh->n_router) return msa_fail(MSA_ERR_INVALID_ARG, "router slot %d out of range", slot);
    uint64_t pos = bank_version_find_index(v, index);
    if (pos == UINT64_MAX) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document [%u]", bank->path, index);
    bank_doc_rec r;
    const bank_seg_view *sv;
    bank_version_doc(v, pos, &r, &sv);
    uint64_t half = (uint64_t)r.n_chunks * bank_kv_row_bytes(sh);
    uint64_t off = (uint64_t)(sv->seg.content - sv->seg.base) + r.content_off + (uint64_t)slot * 2 * half;
    /* a pread, not the mapping, where it matters: an I/O error is then an error (exit 74), not SIGBUS. The
     * file is opened on demand (no descriptor is kept per segment); if it is gone (compacted away after this
     * version was pinned) or replaced, the pinned mapping is the only copy and is read instead. */
    int fd = -1;
    if (sv->file) {
        fd = open(sv->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat sb;
        if (fd >= 0 && (fstat(fd, &sb) != 0 || sb.st_dev != sv->dev || sb.st_ino != sv->ino)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) { /* borrowed image, or the file is gone: copy from memory */
        memcpy(k_out, sv->seg.base + off, half);
        memcpy(v_out, sv->seg.base + off + half, half);
        return MSA_OK;
    }
    /* K̄ and V̄ are adjacent: one preadv fills both buffers (a short read continues where it stopped) */
    uint64_t done = 0;
    while (done < 2 * half) {
        struct iovec iov[2];
        int n_iov = 0;
        if (done < half) iov[n_iov++] = (struct iovec){(uint8_t *)k_out + done, half - done};
        uint64_t vdone = done < half ? 0 : done - half;
        iov[n_iov++] = (struct iovec){(uint8_t *)v_out + vdone, half - vdone};
        ssize_t n = preadv(fd, iov, n_iov, (off_t)(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            return msa_fail(MSA_ERR_IO, "%s: read of document [%u] failed: %s", sv->name, index,
                            n < 0 ? strerror(e) : "end of file");
        }
        done += (uint64_t)n;
    }
    close(fd);
    return MSA_OK;
}

typedef struct text_job {
    ZSTD_DCtx *dctx;
    char *dst;
    const uint8_t *src;
    size_t len, zlen, n; /* n: zstd's result */
} text_job;

static void text_body(void *arg) {
    text_job *t = arg;
    t->n = ZSTD_decompressDCtx(t->dctx, t->dst, t->len, t->src, t->zlen);
}

msa_status bank_seg_text(const bank_seg_view *sv, const bank_doc_rec *r, char *buf) {
    /* our own context, so that a fault inside zstd (reading the mapping) abandons nothing it allocated */
    text_job t = {ZSTD_createDCtx(), buf, sv->seg.text + r->text_off, r->text_len, r->text_zlen, 0};
    if (!t.dctx) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory for a decompressor", sv->name);
    bool done = fault_guard_run(text_body, &t);
    ZSTD_freeDCtx(t.dctx);
    if (!done)
        return msa_fail(MSA_ERR_IO, "%s: I/O error reading the text of document [%llu] (SIGBUS)", sv->name,
                        (unsigned long long)r->index);
    if (ZSTD_isError(t.n) || t.n != r->text_len)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: text of document [%llu] is corrupt (%s)", sv->name,
                        (unsigned long long)r->index, ZSTD_isError(t.n) ? ZSTD_getErrorName(t.n) : "wrong length");
    return MSA_OK;
}
