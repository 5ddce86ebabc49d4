/* route_resident.c — read mode's routing keys resident in a backend's memory, and the host scan's key norms (see
 * route_resident.h). The cache holds one bank snapshot at a time: read mode routes one bank per question, and a
 * new snapshot (the bank refreshed or another bank) makes the old keys unreachable anyway. */
#include "memory/route_resident.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/ask.h"
#include "model/model.h"
#include "util/error.h"
#include "util/fault_guard.h"

enum { BOUNCE_BYTES = 64 << 20 }; /* host staging of one upload step */

/* upload_fill's source: a span's keys read through the bank's mapping, where a read may fault (SIGBUS) */
typedef struct key_source {
    const uint8_t *keys;
    bool faulted;
} key_source;

static bool fill_keys(void *ctx, void *piece, size_t off, size_t n) {
    key_source *ks = ctx;
    if (!fault_guard_copy(piece, ks->keys + off, n)) ks->faulted = true;
    return !ks->faulted;
}

/* bytes of a key source into dst at off: through the backend's own staging (upload_fill) where it has one, else
 * through bounce (bounce_bytes) and upload */
static msa_status upload_filled(msa_backend *be, msa_buf *dst, size_t off, size_t bytes, key_source *ks,
                                uint8_t *bounce, size_t bounce_bytes) {
    if (!bytes) return MSA_OK;
    if (be->ops->upload_fill) return be->ops->upload_fill(be, dst, off, bytes, fill_keys, ks);
    msa_status st = MSA_OK;
    for (size_t o = 0; !st && o < bytes; o += bounce_bytes) {
        const size_t n = bytes - o < bounce_bytes ? bytes - o : bounce_bytes;
        st = fill_keys(ks, bounce, o, n) ? be->ops->upload(be, dst, off + o, bounce, n) : MSA_ERR_IO;
    }
    return st;
}

void msa_read_keys_free(msa_backend *be, msa_read_keys *k) {
    if (k->keys) be->ops->free(be, k->keys);
    if (k->doc) be->ops->free(be, k->doc);
    memset(k, 0, sizeof *k);
}

msa_status msa_read_keys_upload(msa_backend *be, const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype,
                                int dim, uint64_t n_index, msa_read_keys *out) {
    memset(out, 0, sizeof *out);
    const size_t esz = dtype == MSA_ROUTE_F32 ? 4 : 2, row = (size_t)dim * esz;
    uint64_t n = 0;
    for (size_t s = 0; s < n_spans; s++) n += spans[s].n_chunks;
    if (n > INT32_MAX || n > SIZE_MAX / row) return msa_fail(MSA_ERR_LIMIT, "routing: %llu chunks in one router slot",
                                                              (unsigned long long)n);
    if (n_index > INT32_MAX) /* the device's document table is int32 */
        return msa_fail(MSA_ERR_LIMIT, "routing: %llu documents", (unsigned long long)n_index);
    out->n_chunks = n, out->dim = dim, out->bf16 = dtype == MSA_ROUTE_BF16;
    out->keys = be->ops->alloc(be, n ? (size_t)n * row : 1);
    out->doc = out->keys ? be->ops->alloc(be, n ? (size_t)n * sizeof(int32_t) : 1) : NULL;
    const size_t step_rows = BOUNCE_BYTES / row ? BOUNCE_BYTES / row : 1;
    uint8_t *bounce = malloc(step_rows * (row > sizeof(int32_t) ? row : sizeof(int32_t)));
    msa_status st = out->keys && out->doc ? MSA_OK : MSA_ERR_NOMEM; /* alloc recorded why */
    if (!st && !bounce) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    uint64_t at = 0;
    for (size_t s = 0; !st && s < n_spans; s++) {
        const msa_route_span *sp = &spans[s];
        key_source ks = {sp->keys, false};
        st = upload_filled(be, out->keys, (size_t)at * row, (size_t)sp->n_chunks * row, &ks, bounce, step_rows * row);
        if (ks.faulted) st = msa_fail(MSA_ERR_IO, "routing: I/O error reading the bank's keys (SIGBUS)");
        /* the document table: readmode.c's skip rule (a document's first chunk, unless it is its only one) */
        int32_t *d = (int32_t *)bounce;
        for (uint64_t c0 = 0; !st && c0 < sp->n_chunks; c0 += step_rows) {
            const size_t m = sp->n_chunks - c0 < step_rows ? (size_t)(sp->n_chunks - c0) : step_rows;
            for (size_t i = 0; i < m; i++) {
                const uint64_t c = c0 + i;
                const uint32_t di = sp->doc_index[c];
                if (di >= n_index) {
                    st = msa_fail(MSA_ERR_BAD_DATA, "routing: chunk of document %u beyond the bank's %llu", di,
                                  (unsigned long long)n_index);
                    break;
                }
                const bool first = c == 0 || sp->doc_index[c - 1] != di;
                const bool more = c + 1 < sp->n_chunks && sp->doc_index[c + 1] == di;
                d[i] = first && more ? -1 : (int32_t)di;
            }
            if (!st) st = be->ops->upload(be, out->doc, (size_t)(at + c0) * sizeof(int32_t), d, m * sizeof(int32_t));
        }
        at += sp->n_chunks;
    }
    free(bounce);
    if (!st) st = be->ops->sync(be);
    if (st) msa_read_keys_free(be, out);
    return st;
}

void msa_read_scratch_free(msa_backend *be, msa_read_scratch *s) {
    if (s->q) be->ops->free(be, s->q);
    if (s->best) be->ops->free(be, s->best);
    free(s->host_q), free(s->host_best);
    memset(s, 0, sizeof *s);
}

/* a device buffer and its host twin of at least bytes bytes (cap: their size now) */
static msa_status reserve_pair(msa_backend *be, msa_buf **dev, float **host, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return MSA_OK;
    if (*dev) be->ops->free(be, *dev);
    free(*host);
    *cap = 0;
    *host = malloc(bytes);
    *dev = *host ? be->ops->alloc(be, bytes) : NULL;
    if (!*host) return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for %zu bytes", bytes);
    if (!*dev) return MSA_ERR_NOMEM; /* alloc recorded why */
    *cap = bytes;
    return MSA_OK;
}

msa_status msa_read_keys_scores(msa_backend *be, const msa_read_keys *k, const msa_route_query *q, uint64_t n_index,
                                float *doc_scores, msa_read_scratch *scratch, msa_threadpool *tp) {
    if (!be->ops->route_maxsim) return msa_fail(MSA_ERR_UNSUPPORTED, "the %s backend has no routing scan", be->ops->name);
    if (q->dim != k->dim) return msa_fail(MSA_ERR_INVALID_ARG, "routing: query rows of %d, keys of %d", q->dim, k->dim);
    for (uint64_t d = 0; d < n_index; d++) doc_scores[d] = -INFINITY;
    if (n_index == 0 || q->n == 0) return MSA_OK;
    if ((uint64_t)q->n > SIZE_MAX / sizeof(float) / n_index)
        return msa_fail(MSA_ERR_LIMIT, "routing: %d tokens x %llu documents is too large", q->n,
                        (unsigned long long)n_index);
    const size_t qb = (size_t)q->n * q->dim * sizeof(float), bb = (size_t)q->n * n_index * sizeof(float);
    msa_read_scratch own = {0}, *s = scratch ? scratch : &own;
    msa_status st = reserve_pair(be, &s->q, &s->host_q, &s->q_bytes, qb);
    if (!st) st = reserve_pair(be, &s->best, &s->host_best, &s->best_bytes, bb);
    if (!st) {
        memcpy(s->host_q, q->q, qb);
        msa_l2_normalize_rows(s->host_q, (size_t)q->n, q->dim);
        st = be->ops->upload(be, s->q, 0, s->host_q, qb);
    }
    if (!st) st = be->ops->route_maxsim(be, k->keys, k->bf16, k->doc, k->n_chunks, k->dim, s->q, q->n, s->best, n_index);
    if (!st) st = be->ops->download(be, s->host_best, s->best, 0, bb);
    if (!st) st = msa_read_center(s->host_best, q->n, n_index, (size_t)n_index, 1, doc_scores, tp);
    if (!scratch) msa_read_scratch_free(be, &own);
    return st;
}

/* ---- the model's cache */

typedef struct resident_cache {
    uint64_t snapshot;
    int n_slots;
    bool off;             /* this snapshot routes on the CPU (no scan, or the keys did not fit) */
    msa_read_keys *slot;  /* [n_slots]; keys == NULL until uploaded */
    float **inv;          /* [n_slots] host 1/|key| for the CPU scan (msa_read_inv_norms), NULL until made */
    msa_read_scratch scratch; /* the scans' buffers, shared by the slots (a question routes them in turn) */
} resident_cache;

static void cache_clear(msa_backend *be, resident_cache *rc) {
    for (int s = 0; s < rc->n_slots; s++) {
        if (rc->slot) msa_read_keys_free(be, &rc->slot[s]);
        if (rc->inv) free(rc->inv[s]);
    }
    free(rc->slot), free(rc->inv);
    msa_read_scratch_free(be, &rc->scratch);
    memset(rc, 0, sizeof *rc);
}

/* The model's cache, holding snapshot `snapshot` (an older one's contents released); NULL when out of memory. */
static resident_cache *cache_for(msa_model *model, uint64_t snapshot, int n_slots) {
    resident_cache *rc = model->read_resident;
    if (!rc) {
        rc = calloc(1, sizeof *rc);
        if (!rc) return NULL;
        model->read_resident = rc;
    }
    if (rc->snapshot != snapshot || rc->n_slots != n_slots) { /* snapshot ids start at 1 */
        cache_clear(model->be, rc);
        rc->snapshot = snapshot;
        rc->n_slots = n_slots;
        rc->slot = calloc((size_t)n_slots, sizeof *rc->slot);
        rc->inv = calloc((size_t)n_slots, sizeof *rc->inv);
        if (!rc->slot || !rc->inv) {
            cache_clear(model->be, rc);
            return NULL;
        }
    }
    return rc;
}

/* Whether every router slot's keys can go to the device and leave room for the forward pass (the answer's
 * prompt and KV cache): at least a tenth of its memory, and 2 GiB, stay free. Checked once per snapshot, before
 * the first upload, so that a bank that does not fit is not half uploaded first. */
static bool fits(msa_backend *be, const resident_cache *rc, const msa_route_span *spans, size_t n_spans,
                 msa_route_dtype dtype, int dim) {
    for (int s = 0; s < rc->n_slots; s++)
        if (rc->slot[s].keys) return true; /* checked when the first slot went up */
    if (!be->ops->memory) return true;     /* unknown: an upload that does not fit fails cleanly anyway */
    size_t used = 0, total = 0;
    be->ops->memory(be, &used, &total);
    uint64_t n = 0;
    for (size_t i = 0; i < n_spans; i++) n += spans[i].n_chunks;
    const double need = (double)rc->n_slots * (double)n * ((double)dim * (dtype == MSA_ROUTE_F32 ? 4 : 2) + 4);
    const double reserve = (double)total / 10 > 2.0 * (1 << 30) ? (double)total / 10 : 2.0 * (1 << 30);
    return (double)used + need + reserve <= (double)total;
}

const float *msa_read_resident_norms(msa_model *model, uint64_t snapshot, int slot, int n_slots,
                                     const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype, int dim,
                                     msa_status *st) {
    *st = MSA_OK;
    if (slot < 0 || slot >= n_slots) return NULL;
    resident_cache *rc = cache_for(model, snapshot, n_slots);
    if (!rc) return NULL;
    if (!rc->inv[slot]) {
        uint64_t n = 0;
        for (size_t s = 0; s < n_spans; s++) n += spans[s].n_chunks;
        float *inv = n < SIZE_MAX / sizeof(float) ? malloc((n ? n : 1) * sizeof *inv) : NULL;
        if (!inv) return NULL; /* computed per question instead */
        *st = msa_read_inv_norms(spans, n_spans, dtype, dim, inv, msa_model_threadpool(model));
        if (*st) {
            free(inv);
            return NULL;
        }
        rc->inv[slot] = inv;
    }
    return rc->inv[slot];
}

void msa_read_resident_free(msa_model *model) {
    resident_cache *rc = model->read_resident;
    if (!rc) return;
    cache_clear(model->be, rc);
    free(rc);
    model->read_resident = NULL;
}

msa_status msa_read_resident_scores(msa_model *model, uint64_t snapshot, int slot, int n_slots,
                                    const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype,
                                    const msa_route_query *q, uint64_t n_index, float *doc_scores, bool *done) {
    *done = false;
    msa_backend *be = model->be;
    const char *env = getenv("MSA_ROUTE_ON_HOST"); /* benchmarks: the CPU scan on a GPU build, same process */
    if (!be || !be->ops->route_maxsim || (env && *env && strcmp(env, "0")) || slot < 0 || slot >= n_slots)
        return MSA_OK;
    resident_cache *rc = cache_for(model, snapshot, n_slots);
    if (!rc || rc->off) return MSA_OK; /* the CPU scan */
    msa_read_keys *k = &rc->slot[slot];
    if (!k->keys && !fits(be, rc, spans, n_spans, dtype, q->dim)) {
        rc->off = true;
        return MSA_OK;
    }
    msa_status st = k->keys ? MSA_OK : msa_read_keys_upload(be, spans, n_spans, dtype, q->dim, n_index, k);
    if (!st) st = msa_read_keys_scores(be, k, q, n_index, doc_scores, &rc->scratch, msa_model_threadpool(model));
    /* the keys do not fit (NOMEM, LIMIT) or the scan refuses their length: this snapshot routes on the CPU */
    if (st == MSA_ERR_NOMEM || st == MSA_ERR_LIMIT || st == MSA_ERR_UNSUPPORTED) {
        for (int s = 0; s < n_slots; s++) msa_read_keys_free(be, &rc->slot[s]);
        msa_read_scratch_free(be, &rc->scratch);
        rc->off = true;
        msa_clear_error();
        return MSA_OK;
    }
    if (!st) *done = true;
    return st;
}
