/* writer.c — changing a bank: staging documents, tombstones and the template; commit (segment written and
 * fsynced, then the manifest switched atomically); compaction; the atomic manifest write; cleaning files a
 * crashed writer left behind. Every byte goes through the I/O shim (bank_io.h). Any I/O failure poisons the
 * handle: staged changes are dropped and nothing more is acknowledged by it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "bank/bank.h"
#include "bank/bank_io.h"
#include "util/error.h"

#define PATH_MAX_BANK (4096 + 64)

typedef struct bank_buf {
    uint8_t *p;
    size_t len, cap;
} bank_buf;

static msa_status buf_append(bank_buf *b, const void *data, size_t n) {
    if (n > SIZE_MAX - b->len) return msa_fail(MSA_ERR_NOMEM, "bank staging buffer overflow");
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *p = bank_stage_realloc(b->p, cap);
        if (!p) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------------ segment writer */

typedef struct seg_writer {
    int fd;
    uint64_t base, pos;     /* absolute file offsets */
    const char *name;
    bank_section secs[BANK_MAX_SECTIONS];
    uint32_t n;
    XXH3_state_t hs;
} seg_writer;

static void sw_init(seg_writer *w, int fd, uint64_t base, const char *name) {
    memset(w, 0, sizeof *w);
    w->fd = fd;
    w->base = base;
    w->pos = base + BANK_SEG_HEADER_SIZE;
    w->name = name;
}

static msa_status sw_begin(seg_writer *w, uint32_t type, uint32_t layer) {
    static const uint8_t zeros[BANK_ALIGN];
    uint64_t rel = w->pos - w->base, pad = bank_align_up(rel) - rel;
    if (pad) { /* written, not skipped: the file must end exactly where its last section ends */
        MSA_TRY(bank_write_all(w->fd, zeros, pad, w->pos, w->name));
        w->pos += pad;
    }
    if (w->n >= BANK_MAX_SECTIONS) return msa_fail(MSA_ERR_INTERNAL, "%s: too many sections", w->name);
    w->secs[w->n] = (bank_section){type, layer, w->pos - w->base, 0, 0};
    XXH3_64bits_reset(&w->hs);
    return MSA_OK;
}

static msa_status sw_write(seg_writer *w, const void *buf, uint64_t n) {
    MSA_TRY(bank_write_all(w->fd, buf, n, w->pos, w->name));
    XXH3_64bits_update(&w->hs, buf, n);
    w->pos += n;
    w->secs[w->n].size += n;
    return MSA_OK;
}

static void sw_end(seg_writer *w) {
    w->secs[w->n].hash = XXH3_64bits_digest(&w->hs);
    w->n++;
}

static msa_status sw_finish(seg_writer *w, uint32_t kind, uint64_t seg_id, uint64_t n_docs, uint64_t n_chunks,
                            const bank_manifest *m, bank_seg_ref *ref) {
    uint8_t h[BANK_SEG_HEADER_SIZE];
    memset(h, 0, sizeof h);
    memcpy(h, BANK_SEGMENT_MAGIC, 8);
    wr16(h + 8, BANK_MAJOR);
    wr16(h + 10, BANK_MINOR);
    wr32(h + 12, BANK_SEG_HEADER_SIZE);
    wr64(h + 16, seg_id);
    wr32(h + 24, kind);
    wr32(h + 28, w->n);
    wr64(h + 32, n_docs);
    wr64(h + 40, n_chunks);
    wr64(h + 48, w->pos - w->base);
    memcpy(h + 56, m->uuid, 16);
    wr32(h + 72, (uint32_t)m->shape.dtype);
    wr32(h + 76, (uint32_t)m->shape.n_router);
    for (uint32_t i = 0; i < w->n; i++) {
        uint8_t *e = h + 104 + 32 * i;
        wr32(e, w->secs[i].type);
        wr32(e + 4, w->secs[i].layer);
        wr64(e + 8, w->secs[i].offset);
        wr64(e + 16, w->secs[i].size);
        wr64(e + 24, w->secs[i].hash);
    }
    uint64_t hh = bank_seg_header_hash(h);
    wr64(h + BANK_SEG_HEADER_SIZE - 8, hh);
    MSA_TRY(bank_write_all(w->fd, h, sizeof h, w->base, w->name));
    *ref = (bank_seg_ref){seg_id, w->pos - w->base, hh, n_docs, n_chunks};
    return MSA_OK;
}

/* -------------------------------------------------------------------------------------------------- staging */

struct bank_pending {
    int fd;                 /* the segment file being written, -1 until the first document */
    uint64_t seg_id;
    char path[PATH_MAX_BANK];
    seg_writer w;           /* CONTENT section open while documents arrive */
    bank_doc_rec *recs;
    size_t n_recs, cap_recs;
    bank_buf strings, text, route[MSA_BANK_MAX_LAYERS];
    uint64_t n_chunks, content_bytes, route_bytes;
    uint64_t *ids;          /* open addressing over recs (position + 1) */
    uint64_t ids_cap;
    uint64_t *tomb;
    size_t n_tomb, cap_tomb;
    uint64_t *tset;         /* open addressing over tomb values (index + 1): membership in O(1), not a scan */
    size_t tset_cap;
    uint8_t *tmpl;          /* staged template image (n_layers x (K, V)) or NULL */
    ZSTD_CCtx *zc;
    bool has_copy;          /* a whole document segment copied in by import (bank_stage_segment_copy) */
    bank_seg_ref copy;
    char copy_path[PATH_MAX_BANK];
};

void bank_pending_free(bank_pending *p) {
    if (!p) return;
    if (p->fd >= 0) {
        bank_io()->close(p->fd);
        bank_io()->unlink(p->path); /* never referenced by a manifest */
    }
    free(p->recs);
    free(p->strings.p);
    free(p->text.p);
    for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) free(p->route[l].p);
    free(p->ids);
    free(p->tomb);
    free(p->tset);
    free(p->tmpl);
    ZSTD_freeCCtx(p->zc);
    if (p->has_copy) bank_io()->unlink(p->copy_path); /* never referenced by a manifest */
    free(p);
}

static msa_status writer_check(const msa_bank *b) {
    if (!b->writable) return msa_fail(MSA_ERR_INVALID_ARG, "%s: bank was opened read-only", b->path);
    if (b->poisoned || bank_io_poisoned())
        return msa_fail(MSA_ERR_IO, "%s: an earlier I/O failure poisoned this writer; nothing more is acknowledged "
                        "(reopen the bank in a new process)", b->path);
    return MSA_OK;
}

static msa_status pending_get(msa_bank *b, bank_pending **out) {
    if (!b->pend) {
        bank_pending *p = calloc(1, sizeof *p);
        if (!p) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", b->path);
        p->fd = -1;
        b->pend = p;
    }
    *out = b->pend;
    return MSA_OK;
}

static const char *pending_id(const bank_pending *p, uint64_t i) {
    return (const char *)p->strings.p + p->recs[i].id_off;
}

static uint64_t pending_find(const bank_pending *p, const char *id) {
    if (!p || !p->ids_cap) return UINT64_MAX;
    uint64_t mask = p->ids_cap - 1;
    for (uint64_t h = XXH3_64bits(id, strlen(id)) & mask;; h = (h + 1) & mask) {
        if (!p->ids[h]) return UINT64_MAX;
        if (!strcmp(pending_id(p, p->ids[h] - 1), id)) return p->ids[h] - 1;
    }
}

static uint64_t id_slot_hash(const char *id) { return XXH3_64bits(id, strlen(id)); }

/* Make room in the id table for one more record (the only allocation of indexing; done before anything of
 * the document is appended, so a failure leaves nothing behind). */
static msa_status pending_reserve_id(bank_pending *p) {
    if (2 * (p->n_recs + 1) <= p->ids_cap) return MSA_OK;
    uint64_t cap = p->ids_cap ? p->ids_cap * 2 : 64;
    uint64_t *t = bank_stage_realloc(NULL, cap * sizeof *t);
    if (!t) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
    memset(t, 0, cap * sizeof *t);
    for (uint64_t i = 0; i < p->ids_cap; i++)
        if (p->ids[i]) {
            uint64_t h = id_slot_hash(pending_id(p, p->ids[i] - 1)) & (cap - 1);
            while (t[h]) h = (h + 1) & (cap - 1);
            t[h] = p->ids[i];
        }
    free(p->ids);
    p->ids = t;
    p->ids_cap = cap;
    return MSA_OK;
}

static void pending_index_id(bank_pending *p, uint64_t pos) { /* room reserved by pending_reserve_id */
    uint64_t h = id_slot_hash(pending_id(p, pos)) & (p->ids_cap - 1);
    while (p->ids[h]) h = (h + 1) & (p->ids_cap - 1);
    p->ids[h] = pos + 1;
}

static uint64_t tomb_hash(uint64_t x) { return XXH3_64bits(&x, sizeof x); }

static bool pending_tombstoned(const bank_pending *p, uint64_t index) {
    if (!p || !p->tset_cap) return false;
    for (uint64_t h = tomb_hash(index) & (p->tset_cap - 1);; h = (h + 1) & (p->tset_cap - 1)) {
        if (!p->tset[h]) return false;
        if (p->tset[h] == index + 1) return true;
    }
}

/* Room for one more tombstone (list and set), allocated before the change it belongs to is staged. */
static msa_status pending_reserve_tomb(bank_pending *p) {
    if (p->n_tomb == p->cap_tomb) {
        size_t cap = p->cap_tomb ? p->cap_tomb * 2 : 16;
        uint64_t *t = bank_stage_realloc(p->tomb, cap * sizeof *t);
        if (!t) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
        p->tomb = t;
        p->cap_tomb = cap;
    }
    if (2 * (p->n_tomb + 1) > p->tset_cap) {
        size_t cap = p->tset_cap ? p->tset_cap * 2 : 64;
        uint64_t *t = bank_stage_realloc(NULL, cap * sizeof *t);
        if (!t) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
        memset(t, 0, cap * sizeof *t);
        for (size_t i = 0; i < p->n_tomb; i++) {
            uint64_t h = tomb_hash(p->tomb[i]) & (cap - 1);
            while (t[h]) h = (h + 1) & (cap - 1);
            t[h] = p->tomb[i] + 1;
        }
        free(p->tset);
        p->tset = t;
        p->tset_cap = cap;
    }
    return MSA_OK;
}

static void pending_tombstone(bank_pending *p, uint64_t index) { /* room reserved by pending_reserve_tomb */
    p->tomb[p->n_tomb++] = index;
    uint64_t h = tomb_hash(index) & (p->tset_cap - 1);
    while (p->tset[h]) h = (h + 1) & (p->tset_cap - 1);
    p->tset[h] = index + 1;
}

msa_bank_doc_state msa_bank_doc_state_of(const msa_bank *b, const char *id, const uint8_t hash[16]) {
    uint64_t pp = pending_find(b->pend, id);
    if (pp != UINT64_MAX)
        return memcmp(b->pend->recs[pp].hash, hash, 16) ? MSA_BANK_DOC_DIFFERENT : MSA_BANK_DOC_UNCHANGED;
    uint64_t pos = bank_version_find_id(b->v, id);
    if (pos == UINT64_MAX || pending_tombstoned(b->pend, b->v->live[pos].index)) return MSA_BANK_DOC_NEW;
    bank_doc_rec r;
    bank_version_doc(b->v, pos, &r, NULL);
    return memcmp(r.hash, hash, 16) ? MSA_BANK_DOC_DIFFERENT : MSA_BANK_DOC_UNCHANGED;
}

uint32_t msa_bank_next_index(const msa_bank *b) {
    return (uint32_t)(b->writable ? b->work.next_index : b->v->man.next_index);
}

size_t msa_bank_n_pending(const msa_bank *b) {
    return b->pend ? b->pend->n_recs + b->pend->n_tomb + (b->pend->tmpl != NULL) + b->pend->has_copy : 0;
}

static msa_status validate_doc(const msa_bank *b, const msa_bank_doc *d) {
    const msa_bank_shape *sh = &b->v->man.shape;
    if (!d || !d->id) return msa_fail(MSA_ERR_INVALID_ARG, "bank add: document without an id");
    if (msa_bank_check_id(d->id)) {
        char why[256]; /* a copy: the message buffer cannot be formatted into itself */
        snprintf(why, sizeof why, "%s", msa_last_error());
        return msa_fail(MSA_ERR_INVALID_ARG, "bank add: %s", why);
    }
    if (!d->text && d->text_len) return msa_fail(MSA_ERR_INVALID_ARG, "bank add '%.200s': NULL text", d->id);
    if ((uint64_t)d->text_len > BANK_MAX_TEXT_LEN)
        return msa_fail(MSA_ERR_LIMIT, "bank add '%.200s': text longer than 4 GiB", d->id);
    if (d->meta_json && strlen(d->meta_json) > BANK_MAX_META_LEN)
        return msa_fail(MSA_ERR_LIMIT, "bank add '%.200s': metadata longer than 16 MiB", d->id);
    uint64_t want = d->n_tokens / (uint64_t)sh->pooling + (d->n_tokens % (uint64_t)sh->pooling != 0);
    if (d->n_tokens < 1 || d->n_tokens > ((uint64_t)1 << 40) || d->n_chunks != want)
        return msa_fail(MSA_ERR_INVALID_ARG, "bank add '%.200s': %" PRIu64 " tokens need %" PRIu64 " chunks, got %u",
                        d->id, d->n_tokens, want, d->n_chunks);
    if (!d->route_keys) return msa_fail(MSA_ERR_INVALID_ARG, "bank add '%.200s': no routing keys", d->id);
    for (int l = 0; l < sh->n_router; l++) {
        if (!d->route_keys[l]) return msa_fail(MSA_ERR_INVALID_ARG, "bank add '%.200s': no routing keys for slot %d", d->id, l);
        if (sh->mode == MSA_BANK_NATIVE && (!d->k_mean || !d->v_mean || !d->k_mean[l] || !d->v_mean[l]))
            return msa_fail(MSA_ERR_INVALID_ARG, "bank add '%.200s': no K/V for slot %d", d->id, l);
    }
    return MSA_OK;
}

/* Stage doc with a given index (>= the next index). Used by add and import. All-or-nothing: every allocation
 * (record slot, id table room, tombstone room when extra_tomb, text/strings/routing-key bytes) happens before
 * the content is written to the segment file, and what was appended is rolled back on failure, so an
 * out-of-memory leaves the staging exactly as it was (no bytes without their record, which a later commit
 * would publish as an unopenable segment). A failed write of the content is an I/O failure: it poisons. */
msa_status bank_stage_doc_ex(msa_bank *b, const msa_bank_doc *d, const uint8_t hash[16], uint64_t index,
                             bool extra_tomb) {
    const msa_bank_shape *sh = &b->v->man.shape;
    if (index < b->work.next_index || index >= MSA_BANK_NO_DOC)
        return msa_fail(MSA_ERR_INTERNAL, "%s: document index %llu below the next index", b->path,
                        (unsigned long long)index);
    bank_pending *p = NULL;
    MSA_TRY(pending_get(b, &p));
    msa_status st = MSA_OK;
    if (!p->zc && !(p->zc = ZSTD_createCCtx())) return msa_fail(MSA_ERR_NOMEM, "zstd: out of memory");
    ZSTD_CCtx_setParameter(p->zc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(p->zc, ZSTD_c_checksumFlag, 1);
    if (p->n_recs == p->cap_recs) {
        size_t cap = p->cap_recs ? p->cap_recs * 2 : 64;
        bank_doc_rec *r = bank_stage_realloc(p->recs, cap * sizeof *r);
        if (!r) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
        p->recs = r;
        p->cap_recs = cap;
    }
    MSA_TRY(pending_reserve_id(p));
    if (extra_tomb) MSA_TRY(pending_reserve_tomb(p));
    if (p->fd < 0) {
        p->seg_id = b->work.next_seg_id;
        bank_seg_path(p->path, sizeof p->path, b->path, p->seg_id);
        p->fd = bank_io()->open(p->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (p->fd < 0) {
            b->poisoned = true;
            return msa_fail(MSA_ERR_IO, "%s: cannot create segment: %s", p->path, strerror(errno));
        }
        b->work.next_seg_id++;
        sw_init(&p->w, p->fd, 0, p->path);
        if (sh->mode == MSA_BANK_NATIVE && (st = sw_begin(&p->w, BANK_SEC_CONTENT, 0))) goto io_fail;
    }
    bank_doc_rec rec = {0};
    rec.index = index;
    rec.n_tokens = d->n_tokens;
    rec.n_chunks = d->n_chunks;
    rec.chunk_first = p->n_chunks;
    memcpy(rec.hash, hash, 16);
    /* text, strings, routing keys: appended, rolled back together on failure */
    size_t t0 = p->text.len, s0 = p->strings.len, r0[MSA_BANK_MAX_LAYERS];
    for (int l = 0; l < sh->n_router; l++) r0[l] = p->route[l].len;
    size_t bound = ZSTD_compressBound(d->text_len);
    if (p->text.cap - p->text.len < bound) {
        size_t need = p->text.len + bound;
        uint8_t *np = bank_stage_realloc(p->text.p, need);
        if (!np) return msa_fail(MSA_ERR_NOMEM, "bank staging: out of memory");
        p->text.p = np;
        p->text.cap = need;
    }
    size_t z = ZSTD_compress2(p->zc, p->text.p + t0, bound, d->text ? d->text : "", d->text_len);
    if (ZSTD_isError(z)) return msa_fail(MSA_ERR_INTERNAL, "zstd: %s", ZSTD_getErrorName(z));
    p->text.len = t0 + z;
    rec.text_off = t0;
    rec.text_zlen = z;
    rec.text_len = d->text_len;
    rec.id_off = s0;
    rec.id_len = (uint32_t)strlen(d->id);
    const char *meta = d->meta_json ? d->meta_json : "";
    rec.meta_len = (uint32_t)strlen(meta);
    rec.meta_off = s0 + rec.id_len + 1;
    if (!(st = buf_append(&p->strings, d->id, rec.id_len + 1))) st = buf_append(&p->strings, meta, rec.meta_len + 1);
    for (int l = 0; l < sh->n_router && !st; l++)
        st = buf_append(&p->route[l], d->route_keys[l], d->n_chunks * bank_route_row_bytes(sh, l));
    if (st) {
        for (int l = 0; l < sh->n_router; l++) p->route[l].len = r0[l];
        p->strings.len = s0;
        p->text.len = t0;
        return st;
    }
    /* content: written now, straight into the segment file (nothing below allocates) */
    if (sh->mode == MSA_BANK_NATIVE) {
        uint64_t half = (uint64_t)d->n_chunks * bank_kv_row_bytes(sh);
        XXH3_state_t hs;
        XXH3_64bits_reset(&hs);
        rec.content_off = p->content_bytes;
        for (int l = 0; l < sh->n_router && !st; l++) {
            if (!(st = sw_write(&p->w, d->k_mean[l], half))) st = sw_write(&p->w, d->v_mean[l], half);
            XXH3_64bits_update(&hs, d->k_mean[l], half);
            XXH3_64bits_update(&hs, d->v_mean[l], half);
        }
        if (st) goto io_fail;
        rec.content_hash = XXH3_64bits_digest(&hs);
        p->content_bytes += 2 * half * (uint64_t)sh->n_router;
    }
    p->recs[p->n_recs] = rec;
    pending_index_id(p, p->n_recs);
    p->n_recs++;
    p->n_chunks += d->n_chunks;
    for (int l = 0; l < sh->n_router; l++) p->route_bytes += d->n_chunks * bank_route_row_bytes(sh, l);
    if (index >= b->work.next_index) b->work.next_index = index + 1;
    return MSA_OK;
io_fail:
    b->poisoned = true;
    return st;
}

msa_status bank_stage_doc(msa_bank *b, const msa_bank_doc *d, const uint8_t hash[16], uint64_t index) {
    return bank_stage_doc_ex(b, d, hash, index, false);
}

/* Import: a whole document segment, already verified (export.c), copied into the bank as a new segment file
 * straight from img (the export's mapping: no buffer, so memory does not grow with the segment), with this
 * bank's segment id and uuid patched into its header; fsynced, and published by the next commit together
 * with whatever else is staged — or unlinked with the staging if that commit never happens. Its documents
 * must not be staged on this writer too (import stages none). drop_pages: img is a read-only shared file
 * mapping whose copied pages can be given back as the copy goes (they are page cache, not needed again). */
msa_status bank_stage_segment_copy(msa_bank *b, const uint8_t *img, uint64_t size, uint64_t n_docs, uint64_t n_chunks,
                                   uint64_t max_index, bool drop_pages) {
    MSA_TRY(writer_check(b));
    if (size < BANK_SEG_HEADER_SIZE) return msa_fail(MSA_ERR_INTERNAL, "bank import: segment too short");
    bank_pending *p = NULL;
    MSA_TRY(pending_get(b, &p));
    if (p->has_copy || p->n_recs) return msa_fail(MSA_ERR_INTERNAL, "bank import: documents already staged");
    uint64_t seg_id = b->work.next_seg_id;
    bank_seg_path(p->copy_path, sizeof p->copy_path, b->path, seg_id);
    int fd = bank_io()->open(p->copy_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        b->poisoned = true;
        return msa_fail(MSA_ERR_IO, "%s: cannot create segment: %s", p->copy_path, strerror(errno));
    }
    b->work.next_seg_id++;
    p->has_copy = true; /* from here on the file is the staging's: unlinked unless a commit names it */
    uint8_t h[BANK_SEG_HEADER_SIZE];
    memcpy(h, img, sizeof h);
    wr64(h + 16, seg_id);
    memcpy(h + 56, b->v->man.uuid, 16);
    uint64_t hh = bank_seg_header_hash(h);
    wr64(h + BANK_SEG_HEADER_SIZE - 8, hh);
    msa_status st = bank_write_all(fd, h, sizeof h, 0, p->copy_path);
    const uint64_t window = (uint64_t)8 << 20;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (uint64_t off = BANK_SEG_HEADER_SIZE; !st && off < size; off += window) {
        uint64_t n = size - off < window ? size - off : window;
        st = bank_write_all(fd, img + off, (size_t)n, off, p->copy_path);
        if (drop_pages && page) { /* whole pages inside [off, off + n) only: never a byte of anything else */
            uintptr_t a = ((uintptr_t)(img + off) + page - 1) & ~(page - 1), e = (uintptr_t)(img + off + n) & ~(page - 1);
            if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
        }
    }
    if (!st) st = bank_fsync(fd, p->copy_path);
    bank_io()->close(fd);
    if (st) {
        b->poisoned = true;
        return st;
    }
    p->copy = (bank_seg_ref){seg_id, size, hh, n_docs, n_chunks};
    if (n_docs && max_index + 1 > b->work.next_index) b->work.next_index = max_index + 1;
    return MSA_OK;
}

msa_status msa_bank_add(msa_bank *b, const msa_bank_doc *d, bool replace, msa_bank_doc_state *state,
                        uint32_t *index_out) {
    MSA_TRY(writer_check(b));
    MSA_TRY(validate_doc(b, d));
    uint8_t hash[16];
    msa_bank_content_hash(d->text ? d->text : "", d->text_len, d->meta_json, hash);
    uint64_t pp = pending_find(b->pend, d->id);
    if (pp != UINT64_MAX) {
        if (!memcmp(b->pend->recs[pp].hash, hash, 16)) {
            if (state) *state = MSA_BANK_DOC_UNCHANGED;
            if (index_out) *index_out = (uint32_t)b->pend->recs[pp].index;
            return MSA_OK;
        }
        if (!replace)
            return msa_fail(MSA_ERR_CONFLICT, "%s: document '%.200s' already exists with different content "
                            "(use replace)", b->path, d->id);
        MSA_TRY(msa_bank_commit(b)); /* replacing a staged document: commit it, then tombstone it below */
    }
    uint64_t pos = bank_version_find_id(b->v, d->id);
    msa_bank_doc_state s = MSA_BANK_DOC_NEW;
    if (pos != UINT64_MAX && !pending_tombstoned(b->pend, b->v->live[pos].index)) {
        bank_doc_rec r;
        bank_version_doc(b->v, pos, &r, NULL);
        if (!memcmp(r.hash, hash, 16)) {
            if (state) *state = MSA_BANK_DOC_UNCHANGED;
            if (index_out) *index_out = (uint32_t)r.index;
            return MSA_OK;
        }
        if (!replace)
            return msa_fail(MSA_ERR_CONFLICT, "%s: document '%.200s' already exists with different content "
                            "(use replace)", b->path, d->id);
        s = MSA_BANK_DOC_DIFFERENT;
    }
    if (b->work.next_index >= MSA_BANK_NO_DOC - 1)
        return msa_fail(MSA_ERR_LIMIT, "%s: document index space exhausted", b->path);
    uint64_t index = b->work.next_index;
    /* the replaced document's tombstone has its room reserved with the new document: both or neither */
    MSA_TRY(bank_stage_doc_ex(b, d, hash, index, s == MSA_BANK_DOC_DIFFERENT));
    if (s == MSA_BANK_DOC_DIFFERENT) pending_tombstone(b->pend, b->v->live[pos].index);
    if (state) *state = s;
    if (index_out) *index_out = (uint32_t)index;
    /* everything the staging holds in memory counts: routing keys, compressed text, strings and records
     * (text-heavy documents with small keys must not grow the staging without bound) */
    const bank_pending *pp2 = b->pend;
    uint64_t staged = pp2->route_bytes + pp2->text.len + pp2->strings.len + pp2->n_recs * sizeof(bank_doc_rec);
    if (staged >= b->params.max_pending_bytes) return msa_bank_commit(b);
    return MSA_OK;
}

msa_status msa_bank_remove(msa_bank *b, const char *id) {
    MSA_TRY(writer_check(b));
    if (!id) return msa_fail(MSA_ERR_INVALID_ARG, "bank remove: NULL id");
    if (pending_find(b->pend, id) != UINT64_MAX) MSA_TRY(msa_bank_commit(b));
    uint64_t pos = bank_version_find_id(b->v, id);
    if (pos == UINT64_MAX || pending_tombstoned(b->pend, b->v->live[pos].index))
        return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document '%.200s'", b->path, id);
    bank_pending *p = NULL;
    MSA_TRY(pending_get(b, &p));
    MSA_TRY(pending_reserve_tomb(p));
    pending_tombstone(p, b->v->live[pos].index);
    return MSA_OK;
}

msa_status msa_bank_set_template(msa_bank *b, const void *k, const void *v) {
    MSA_TRY(writer_check(b));
    const msa_bank_shape *sh = &b->v->man.shape;
    if (!k || !v) return msa_fail(MSA_ERR_INVALID_ARG, "bank template: NULL K or V");
    uint64_t total = bank_template_bytes(sh), half = total / 2 / (uint64_t)sh->n_layers;
    uint8_t *img = malloc(total ? total : 1);
    if (!img) return msa_fail(MSA_ERR_NOMEM, "bank template: out of memory");
    for (int l = 0; l < sh->n_layers; l++) { /* stored per layer: K then V */
        memcpy(img + (uint64_t)l * 2 * half, (const uint8_t *)k + (uint64_t)l * half, half);
        memcpy(img + (uint64_t)l * 2 * half + half, (const uint8_t *)v + (uint64_t)l * half, half);
    }
    const uint8_t *existing = b->pend && b->pend->tmpl ? b->pend->tmpl : b->v->tmpl ? b->v->tmpl->seg.tmpl : NULL;
    if (existing) {
        int same = !memcmp(existing, img, total);
        free(img);
        return same ? MSA_OK : msa_fail(MSA_ERR_CONFLICT, "%s: a different template prefix is already stored", b->path);
    }
    bank_pending *p = NULL;
    msa_status st = pending_get(b, &p);
    if (st) {
        free(img);
        return st;
    }
    p->tmpl = img;
    return MSA_OK;
}

/* ---------------------------------------------------------------------------------------------- manifest */

msa_status bank_write_manifest(const char *dir, const bank_manifest *m, bool *renamed) {
    if (renamed) *renamed = false;
    uint8_t *buf;
    size_t len;
    MSA_TRY(bank_manifest_encode(m, &buf, &len));
    char tmp[PATH_MAX_BANK], final[PATH_MAX_BANK];
    bank_tmp_name(tmp, sizeof tmp, dir, "MANIFEST", "tmp"); /* the one temp scheme: no other operation's name */
    snprintf(final, sizeof final, "%s/MANIFEST", dir);
    msa_status st = MSA_OK;
    int fd = bank_io()->open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) st = msa_fail(MSA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (!st) st = bank_write_all(fd, buf, len, 0, tmp);
    if (!st) st = bank_fsync(fd, tmp); /* the content must be durable before the name points at it */
    if (fd >= 0) bank_io()->close(fd);
    free(buf);
    if (!st && bank_io()->rename(tmp, final) != 0) st = msa_fail(MSA_ERR_IO, "%s: rename failed: %s", final, strerror(errno));
    if (st) {
        if (fd >= 0) bank_io()->unlink(tmp);
        return st;
    }
    if (renamed) *renamed = true;
    return bank_fsync_dir(dir); /* the rename is durable only once the directory is */
}

/* --------------------------------------------------------------------------------------------- commit */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static msa_status write_template_segment(msa_bank *b, const uint8_t *img, bank_seg_ref *ref) {
    char path[PATH_MAX_BANK];
    uint64_t seg_id = b->work.next_seg_id++;
    bank_seg_path(path, sizeof path, b->path, seg_id);
    int fd = bank_io()->open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    seg_writer w;
    sw_init(&w, fd, 0, path);
    msa_status st = sw_begin(&w, BANK_SEC_TEMPLATE, 0);
    if (!st) st = sw_write(&w, img, bank_template_bytes(&b->v->man.shape));
    if (!st) {
        sw_end(&w);
        st = sw_finish(&w, BANK_SEG_TEMPLATE, seg_id, 0, 0, &b->work, ref);
    }
    if (!st) st = bank_fsync(fd, path);
    bank_io()->close(fd);
    if (st) bank_io()->unlink(path);
    return st;
}

/* finish the pending document segment: remaining sections, header, fsync */
static msa_status finish_doc_segment(msa_bank *b, bank_seg_ref *ref) {
    bank_pending *p = b->pend;
    const msa_bank_shape *sh = &b->v->man.shape;
    seg_writer *w = &p->w;
    msa_status st = MSA_OK;
    if (sh->mode == MSA_BANK_NATIVE) sw_end(w);
    if ((st = sw_begin(w, BANK_SEC_TEXT, 0)) || (st = sw_write(w, p->text.p, p->text.len))) return st;
    sw_end(w);
    if ((st = sw_begin(w, BANK_SEC_STRINGS, 0)) || (st = sw_write(w, p->strings.p, p->strings.len))) return st;
    sw_end(w);
    if ((st = sw_begin(w, BANK_SEC_DOCS, 0))) return st;
    uint8_t *recs = malloc(p->n_recs * BANK_DOC_RECORD_SIZE + 1);
    if (!recs) return msa_fail(MSA_ERR_NOMEM, "bank commit: out of memory");
    for (size_t i = 0; i < p->n_recs; i++) bank_doc_rec_encode(&p->recs[i], recs + i * BANK_DOC_RECORD_SIZE);
    st = sw_write(w, recs, p->n_recs * BANK_DOC_RECORD_SIZE);
    free(recs);
    if (st) return st;
    sw_end(w);
    for (int l = 0; l < sh->n_router; l++) {
        if ((st = sw_begin(w, BANK_SEC_ROUTE, (uint32_t)l)) || (st = sw_write(w, p->route[l].p, p->route[l].len))) return st;
        sw_end(w);
    }
    MSA_TRY(sw_finish(w, BANK_SEG_DOCS, p->seg_id, p->n_recs, p->n_chunks, &b->work, ref));
    return bank_fsync(p->fd, p->path);
}

/* Switch to manifest m (already durable) on this handle. */
static msa_status adopt(msa_bank *b, const bank_manifest *m) {
    bank_manifest copy;
    MSA_TRY(bank_manifest_copy(m, &copy));
    bank_version *v;
    /* incremental: a commit re-indexes what it changed, not the whole bank */
    MSA_TRY(bank_version_next(b->path, &copy, b->v, b->params.routing_in_ram, &v));
    bank_version_free(b->v);
    b->v = v;
    return MSA_OK;
}

static msa_status fail_commit(msa_bank *b, msa_status st, const char *extra_unlink) {
    /* keep the message of the failure; drop the staged changes; this writer acknowledges nothing more */
    b->poisoned = true;
    bank_pending_free(b->pend); /* also unlinks the unreferenced segment file */
    b->pend = NULL;
    if (extra_unlink) bank_io()->unlink(extra_unlink);
    return st;
}

static bool auto_compact_off;
static msa_status merge_policy(msa_bank *b);

msa_status msa_bank_commit(msa_bank *b) {
    MSA_TRY(writer_check(b));
    bank_pending *p = b->pend;
    if (!p || msa_bank_n_pending(b) == 0) return MSA_OK;
    bank_seg_ref refs[3];
    int n_refs = 0;
    char tmpl_path[PATH_MAX_BANK] = "";
    msa_status st = MSA_OK;
    if (p->n_recs) {
        if ((st = finish_doc_segment(b, &refs[n_refs]))) return fail_commit(b, st, NULL);
        n_refs++;
    }
    if (p->has_copy) refs[n_refs++] = p->copy; /* written and fsynced when it was staged */
    if (p->tmpl) {
        if ((st = write_template_segment(b, p->tmpl, &refs[n_refs]))) return fail_commit(b, st, NULL);
        bank_seg_path(tmpl_path, sizeof tmpl_path, b->path, refs[n_refs].seg_id);
        b->work.template_seg = refs[n_refs].seg_id;
        n_refs++;
    }
    bank_manifest *m = &b->work;
    bank_seg_ref *segs = realloc(m->segs, (m->n_segs + (size_t)n_refs + 1) * sizeof *segs);
    uint64_t *tomb = realloc(m->tombstones, (m->n_tombstones + p->n_tomb + 1) * sizeof *tomb);
    if (segs) m->segs = segs;
    if (tomb) m->tombstones = tomb;
    if (!segs || !tomb) return fail_commit(b, msa_fail(MSA_ERR_NOMEM, "bank commit: out of memory"), tmpl_path);
    for (int i = 0; i < n_refs; i++) m->segs[m->n_segs++] = refs[i];
    qsort(m->segs, m->n_segs, sizeof *m->segs, cmp_u64); /* seg_id is the first field */
    /* the staged tombstones sorted, then merged into the sorted list from its end: O(list), not a sort of it */
    if (p->n_tomb) qsort(p->tomb, p->n_tomb, sizeof *p->tomb, cmp_u64);
    for (size_t i = m->n_tombstones, j = p->n_tomb, k = m->n_tombstones + p->n_tomb; j > 0;) {
        if (i > 0 && m->tombstones[i - 1] > p->tomb[j - 1]) m->tombstones[--k] = m->tombstones[--i];
        else m->tombstones[--k] = p->tomb[--j];
    }
    m->n_tombstones += p->n_tomb;
    m->generation++;
    bool renamed;
    st = bank_write_manifest(b->path, m, &renamed);
    if (st) {
        /* before the rename the old manifest stands and the new files are garbage; after it (directory fsync
         * failed) the new version may be visible, so its files stay, but it is not acknowledged */
        if (renamed && p->fd >= 0) {
            bank_io()->close(p->fd);
            p->fd = -1;
        }
        if (renamed) p->has_copy = false;
        return fail_commit(b, st, renamed ? NULL : tmpl_path[0] ? tmpl_path : NULL);
    }
    if (p->fd >= 0) {
        bank_io()->close(p->fd);
        p->fd = -1; /* referenced now: keep the file */
    }
    p->has_copy = false; /* likewise */
    bank_pending_free(p);
    b->pend = NULL;
    st = adopt(b, m);
    if (st) {
        b->poisoned = true;
        return st;
    }
    /* the commit is durable and acknowledged whatever the merge does: a failed merge poisons this writer
     * (its message stays in msa_last_error) but the documents above are on disk */
    if (!auto_compact_off && merge_policy(b) != MSA_OK) b->poisoned = true;
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------------- compaction */

static int cmp_live_index(const void *a, const void *b) {
    const bank_live *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

msa_status bank_write_compacted(const bank_version *v, uint64_t min_seg_id, int fd, uint64_t base, uint64_t seg_id,
                                const char *name, bank_seg_ref *ref) {
    const msa_bank_shape *sh = &v->man.shape;
    seg_writer w;
    sw_init(&w, fd, base, name);
    /* the live documents of the chosen segments (ids >= min_seg_id), in index order, found through those
     * segments alone: a merge of the newest segments costs their size, not the bank's */
    uint64_t cand = 0;
    for (size_t i = 0; i < v->man.n_segs; i++)
        if (v->segs[i]->seg.kind == BANK_SEG_DOCS && v->segs[i]->seg.seg_id >= min_seg_id) cand += v->segs[i]->seg.n_docs;
    bank_live *sel = malloc((cand + 1) * sizeof *sel);
    bank_doc_rec *recs = malloc((cand + 1) * sizeof *recs);
    if (!sel || !recs) {
        free(sel);
        free(recs);
        return msa_fail(MSA_ERR_NOMEM, "bank compact: out of memory");
    }
    uint64_t n = 0;
    bool sorted = true;
    for (size_t i = 0; i < v->man.n_segs; i++) {
        const bank_segment *sg = &v->segs[i]->seg;
        if (sg->kind != BANK_SEG_DOCS || sg->seg_id < min_seg_id) continue;
        for (uint64_t r = 0; r < sg->n_docs; r++) {
            bank_doc_rec rec;
            bank_segment_doc(sg, r, &rec);
            if (v->chunk_doc[i][rec.chunk_first] == MSA_BANK_NO_DOC) continue; /* deleted */
            if (n && sel[n - 1].index > rec.index) sorted = false;
            sel[n++] = (bank_live){(uint32_t)rec.index, (uint32_t)i, (uint32_t)r, 0};
        }
    }
    if (!sorted) qsort(sel, n, sizeof *sel, cmp_live_index);
    msa_status st = MSA_OK;
    uint64_t chunk = 0, content = 0, text = 0, strings = 0;
    for (uint64_t j = 0; j < n; j++) bank_segment_doc(&v->segs[sel[j].seg]->seg, sel[j].rec, &recs[j]);
#define SV(j) (v->segs[sel[j].seg])
    if (sh->mode == MSA_BANK_NATIVE) {
        if ((st = sw_begin(&w, BANK_SEC_CONTENT, 0))) goto done;
        for (uint64_t j = 0; j < n && !st; j++) {
            uint64_t cb = bank_doc_content_bytes(sh, recs[j].n_chunks);
            st = sw_write(&w, SV(j)->seg.content + recs[j].content_off, cb);
            recs[j].content_off = content;
            content += cb;
        }
        if (st) goto done;
        sw_end(&w);
    }
    if ((st = sw_begin(&w, BANK_SEC_TEXT, 0))) goto done;
    for (uint64_t j = 0; j < n && !st; j++) {
        st = sw_write(&w, SV(j)->seg.text + recs[j].text_off, recs[j].text_zlen);
        recs[j].text_off = text;
        text += recs[j].text_zlen;
    }
    if (st) goto done;
    sw_end(&w);
    if ((st = sw_begin(&w, BANK_SEC_STRINGS, 0))) goto done;
    for (uint64_t j = 0; j < n && !st; j++) {
        st = sw_write(&w, SV(j)->seg.strings + recs[j].id_off, recs[j].id_len + 1);
        if (!st) st = sw_write(&w, SV(j)->seg.strings + recs[j].meta_off, recs[j].meta_len + 1);
        recs[j].id_off = strings;
        recs[j].meta_off = strings + recs[j].id_len + 1;
        strings += recs[j].id_len + 1 + recs[j].meta_len + 1;
    }
    if (st) goto done;
    sw_end(&w);
    /* routing keys read before the records are renumbered */
    for (int l = 0; l < sh->n_router && !st; l++) {
        if ((st = sw_begin(&w, BANK_SEC_ROUTE, (uint32_t)l))) goto done;
        for (uint64_t j = 0; j < n && !st; j++) {
            bank_doc_rec orig;
            bank_segment_doc(&SV(j)->seg, sel[j].rec, &orig);
            uint64_t row = bank_route_row_bytes(sh, l);
            st = sw_write(&w, SV(j)->seg.route[l] + orig.chunk_first * row, (uint64_t)orig.n_chunks * row);
        }
        if (st) goto done;
        sw_end(&w);
    }
#undef SV
    for (uint64_t j = 0; j < n; j++) {
        recs[j].chunk_first = chunk;
        chunk += recs[j].n_chunks;
    }
    if ((st = sw_begin(&w, BANK_SEC_DOCS, 0))) goto done;
    for (uint64_t j = 0; j < n && !st; j++) {
        uint8_t enc[BANK_DOC_RECORD_SIZE];
        bank_doc_rec_encode(&recs[j], enc);
        st = sw_write(&w, enc, sizeof enc);
    }
    if (st) goto done;
    sw_end(&w);
    st = sw_finish(&w, BANK_SEG_DOCS, seg_id, n, chunk, &v->man, ref);
done:
    free(sel);
    free(recs);
    return st;
}

static bool u64_sorted_has(const uint64_t *a, size_t n, uint64_t x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == x;
}

/* Rewrite the document segments with ids >= min_seg_id (0: all of them) into one, dropping their deleted
 * documents and those documents' tombstones; the new manifest is made durable, adopted, and only then are
 * the replaced files unlinked (readers that mapped them keep their mappings). Compaction and the automatic
 * merge at commit are both this. */
static msa_status rewrite_segments(msa_bank *b, uint64_t min_seg_id) {
    const bank_version *v = b->v;
    bank_manifest m;
    MSA_TRY(bank_manifest_copy(&b->work, &m));
    char path[PATH_MAX_BANK] = "";
    msa_status st = MSA_OK;
    /* tombstones of the rewritten segments' documents go with them (the rest stay) */
    uint64_t *drop = malloc((m.n_tombstones + 1) * sizeof *drop);
    size_t n_drop = 0;
    if (!drop) st = msa_fail(MSA_ERR_NOMEM, "bank compact: out of memory");
    for (size_t i = 0; !st && i < v->man.n_segs; i++) {
        const bank_segment *sg = &v->segs[i]->seg;
        if (sg->kind != BANK_SEG_DOCS || sg->seg_id < min_seg_id) continue;
        for (uint64_t r = 0; r < sg->n_docs; r++) {
            bank_doc_rec rec;
            bank_segment_doc(sg, r, &rec);
            if (u64_sorted_has(m.tombstones, m.n_tombstones, rec.index)) drop[n_drop++] = rec.index;
        }
    }
    if (!st) {
        qsort(drop, n_drop, sizeof *drop, cmp_u64);
        size_t k = 0;
        for (size_t i = 0; i < m.n_tombstones; i++)
            if (min_seg_id > 0 && !u64_sorted_has(drop, n_drop, m.tombstones[i])) m.tombstones[k++] = m.tombstones[i];
        m.n_tombstones = k;
    }
    free(drop);
    size_t n = 0;
    for (size_t i = 0; i < b->work.n_segs; i++)
        if (b->work.segs[i].seg_id == b->work.template_seg || b->work.segs[i].seg_id < min_seg_id)
            m.segs[n++] = b->work.segs[i];
    bool any_live = false; /* per segment, not per document */
    for (size_t i = 0; i < v->man.n_segs && !any_live; i++)
        any_live = v->segs[i]->seg.kind == BANK_SEG_DOCS && v->segs[i]->seg.seg_id >= min_seg_id &&
                   v->sst[i].n_ent > v->sst[i].n_dead;
    if (!st && any_live) {
        uint64_t seg_id = m.next_seg_id++;
        bank_seg_path(path, sizeof path, b->path, seg_id);
        int fd = bank_io()->open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) st = msa_fail(MSA_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        if (!st) st = bank_write_compacted(v, min_seg_id, fd, 0, seg_id, path, &m.segs[n]);
        if (!st) st = bank_fsync(fd, path);
        if (fd >= 0) bank_io()->close(fd);
        n++;
    }
    m.n_segs = n;
    qsort(m.segs, m.n_segs, sizeof *m.segs, cmp_u64);
    m.generation++;
    bool renamed = false;
    if (!st) st = bank_write_manifest(b->path, &m, &renamed);
    if (st) {
        bank_manifest_free(&m);
        b->poisoned = true;
        if (path[0] && !renamed) bank_io()->unlink(path);
        return st;
    }
    bank_manifest old;
    st = bank_manifest_copy(&b->work, &old);
    if (st) {
        bank_manifest_free(&m);
        b->poisoned = true;
        return st;
    }
    bank_manifest_free(&b->work);
    b->work = m;
    st = adopt(b, &b->work);
    for (size_t i = 0, j = 0; i < old.n_segs; i++) { /* both lists sorted by id */
        while (j < b->work.n_segs && b->work.segs[j].seg_id < old.segs[i].seg_id) j++;
        if (j < b->work.n_segs && b->work.segs[j].seg_id == old.segs[i].seg_id) continue;
        char p[PATH_MAX_BANK];
        bank_seg_path(p, sizeof p, b->path, old.segs[i].seg_id);
        bank_io()->unlink(p);
    }
    bank_manifest_free(&old);
    if (st) b->poisoned = true;
    return st;
}

msa_status msa_bank_compact(msa_bank *b) {
    MSA_TRY(msa_bank_commit(b));
    MSA_TRY(writer_check(b));
    const bank_version *v = b->v;
    if (v->n_deleted == 0 && v->man.n_tombstones == 0 && v->man.n_segs - (v->tmpl != NULL) <= 1)
        return MSA_OK; /* already compact */
    return rewrite_segments(b, 0);
}

/* The automatic compaction policy (size-tiered, at commit, no background thread). Document segments in id
 * order (oldest first); the mergeable tail is the longest run of newest segments in which each segment is at
 * most twice the size of all newer ones together. When that tail holds MERGE_FAN_IN or more segments it is
 * rewritten as one. Afterwards the tail has fewer than MERGE_FAN_IN segments and the segment before it is
 * more than twice everything newer, so a bank of N bytes keeps at most about 3·log2(N / smallest commit) + 3
 * segments, and each byte is rewritten O(log N) times over the bank's life. */
#define MERGE_FAN_IN 4
void bank_set_auto_compact(bool on) { auto_compact_off = !on; }

static msa_status merge_policy(msa_bank *b) {
    const bank_manifest *m = &b->work;
    uint64_t newer = 0, min_id = 0;
    size_t n_merge = 0;
    for (size_t i = m->n_segs; i-- > 0;) {
        if (m->segs[i].seg_id == m->template_seg) continue;
        if (n_merge > 0 && m->segs[i].file_size > 2 * newer) break;
        newer += m->segs[i].file_size;
        min_id = m->segs[i].seg_id;
        n_merge++;
    }
    if (n_merge < MERGE_FAN_IN) return MSA_OK;
    return rewrite_segments(b, min_id);
}

/* Remove files a crashed writer left: segments no manifest names and a stale MANIFEST.tmp. Readers never
 * open a file the current manifest does not name (and retry when one vanishes), so this is safe under the
 * writer lock. */
void bank_clean_orphans(msa_bank *b) {
    DIR *d = opendir(b->path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long id;
        char tail[8];
        char p[PATH_MAX_BANK];
        if (!strcmp(e->d_name, "MANIFEST.tmp") || bank_is_tmp_name(e->d_name, "MANIFEST")) { /* old and new scheme */
            snprintf(p, sizeof p, "%s/%s", b->path, e->d_name);
            bank_io()->unlink(p);
            continue;
        }
        if (sscanf(e->d_name, "seg-%16llx.%7s", &id, tail) != 2 || strcmp(tail, "msab")) continue;
        bool named = false;
        for (size_t i = 0; i < b->work.n_segs; i++) named |= b->work.segs[i].seg_id == id;
        if (!named) {
            snprintf(p, sizeof p, "%s/%s", b->path, e->d_name);
            bank_io()->unlink(p);
        }
    }
    closedir(d);
}
