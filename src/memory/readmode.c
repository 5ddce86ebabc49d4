/* readmode.c — read mode (design.md §2): route the question with the bank's keys (the identity router of a
 * read-mode bank: the model's own pre-RoPE q/k in the upper half of its layers; or an MSA checkpoint's trained
 * router over a native bank), fuse the per-layer document scores, inject the original text of the best
 * documents into an ordinary chat prompt and let the model answer. For models with no MSA training.
 *
 * Routing query: "<|im_start|>" (not routed) followed by the question's own tokens (routed, positions from 0),
 * mirroring how documents are encoded. Fusion: a document's score is the sum over router layers of its
 * per-layer score (context.c: scaled dot, head mean, per-token z-score over the bank, mean over tokens, mean
 * over chunks); top-k by that sum, ties by lower index.
 * Document text goes in as plain text (it can never become special tokens). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory/ask.h"
#include "memory/bm25.h"
#include "memory/route.h"
#include "memory/route_scan.h"
#include "model/tensor.h"
#include "model/model.h"
#include "util/error.h"
#include "util/fault_guard.h"

/* ---- routing scores (see ask.h) */

typedef struct read_job {
    const msa_route_query *q;      /* rows unit-normalised (a private copy) */
    const msa_route_span *spans;
    size_t n_spans;
    msa_route_dtype dtype;
    uint64_t n_index;
    const float *inv;              /* [chunks of every span, in span order] 1/|key| (msa_read_inv_norms), or NULL:
                                    * computed here */
    float *inv_out;                /* msa_read_inv_norms: where to store them, no scoring */
    float *best;                   /* [n_index][q->n] best cosine per document and token (document-major, so that a
                                    * chunk updates one contiguous row); -inf: none */
    atomic_bool faulted;           /* a worker's read of the bank's mapping raised SIGBUS (fault_guard.h) */
} read_job;

/* chunk c of span sp is its document's first chunk and the document has more chunks after it */
static bool skip_chunk(const msa_route_span *sp, uint64_t c) {
    const uint32_t d = sp->doc_index[c];
    return (c == 0 || sp->doc_index[c - 1] != d) && c + 1 < sp->n_chunks && sp->doc_index[c + 1] == d;
}

/* Thread ith takes the ith of nth parts of every span's chunks, cut at document starts, and scores its chunks
 * against every routing token: each key is widened and its norm summed once in all (a split by tokens made
 * every thread repeat that for every key, so the scan did not speed up with threads), and each document belongs
 * to one thread, so its bests need no lock. Keys are scored a block of chunks at a time with the routing scan's
 * SIMD dot kernel (route_scan.h: one canonical summation order on every ISA). */
enum { READ_BLOCK = 64 };
typedef struct read_task {
    read_job *j;
    int ith, nth;
    float *key, *y; /* [READ_BLOCK][dim] widened keys, [READ_BLOCK][q->n] dots */
} read_task;

/* the start of part i of nth of span sp's chunks: i * n / nth moved forward to a document's first chunk */
static uint64_t part_start(const msa_route_span *sp, int i, int nth) {
    uint64_t c = sp->n_chunks * (uint64_t)i / (uint64_t)nth; /* n_chunks < 2^40: no overflow */
    while (c > 0 && c < sp->n_chunks && sp->doc_index[c] == sp->doc_index[c - 1]) c++;
    return c;
}

/* 1/|k| as read mode scales a key's dot products: the sum of squares in double in element order (the GPU
 * kernel's order too) */
static float inv_norm(const float *k, int dim) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)k[i] * k[i];
    return ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
}

/* reads keys and chunk tables through the bank's mapping: allocates nothing (read_range does), so a SIGBUS
 * may abandon it */
static void read_blocks(void *arg) {
    const read_task *tk = arg;
    const read_job *j = tk->j;
    const int dim = j->q->dim, nt = j->q->n;
    float *key = tk->key, *y = tk->y;
    float inv[READ_BLOCK];
    uint32_t doc[READ_BLOCK];
    uint64_t base = 0; /* the span's first chunk in j->inv */
    for (size_t si = 0; si < j->n_spans; base += j->spans[si++].n_chunks) {
        const msa_route_span *sp = &j->spans[si];
        const uint64_t end = part_start(sp, tk->ith + 1, tk->nth);
        for (uint64_t c0 = part_start(sp, tk->ith, tk->nth); c0 < end;) {
            int m = 0;
            for (; c0 < end && m < READ_BLOCK; c0++) {
                const uint32_t d = sp->doc_index[c0];
                if (j->inv_out) { /* the norms only, of every chunk */
                    float *k = key;
                    if (j->dtype == MSA_ROUTE_F32) k = (float *)((const float *)sp->keys + c0 * (uint64_t)dim);
                    else msa_route_widen_bf16((const uint16_t *)sp->keys + c0 * (uint64_t)dim, (size_t)dim, k);
                    j->inv_out[base + c0] = inv_norm(k, dim);
                    continue;
                }
                if (d >= j->n_index || skip_chunk(sp, c0)) continue;
                float *k = key + (size_t)m * dim;
                if (j->dtype == MSA_ROUTE_F32) memcpy(k, (const float *)sp->keys + c0 * (uint64_t)dim, (size_t)dim * sizeof *k);
                else msa_route_widen_bf16((const uint16_t *)sp->keys + c0 * (uint64_t)dim, (size_t)dim, k);
                inv[m] = j->inv ? j->inv[base + c0] : inv_norm(k, dim);
                doc[m++] = d;
            }
            if (m == 0) continue;
            msa_route_dots(key, (size_t)dim, m, j->q->q, (size_t)dim, nt, dim, y, (size_t)nt);
            msa_route_max_scaled(y, inv, doc, m, nt, j->best);
        }
    }
}

static void read_range(void *ctx, int ith, int nth) {
    read_job *j = ctx;
    const int dim = j->q->dim, nq = j->q->n;
    read_task tk = {j, ith, nth, malloc((size_t)READ_BLOCK * dim * sizeof(float)),
                    malloc((size_t)READ_BLOCK * (nq ? nq : 1) * sizeof(float))};
    /* no memory (unreachable for supported shapes): this thread's documents keep -inf scores */
    if (tk.key && tk.y && !fault_guard_run(read_blocks, &tk)) atomic_store(&j->faulted, true);
    free(tk.key), free(tk.y);
}

msa_status msa_read_inv_norms(const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype, int dim, float *inv,
                              msa_threadpool *tp) {
    const msa_route_query none = {.n = 0, .dim = dim};
    read_job j = {.q = &none, .spans = spans, .n_spans = n_spans, .dtype = dtype, .inv_out = inv};
    msa_threadpool_run(tp, read_range, &j); /* inline when tp is NULL */
    if (atomic_load(&j.faulted)) return msa_fail(MSA_ERR_IO, "routing: I/O error reading the bank's keys (SIGBUS)");
    return MSA_OK;
}

msa_status msa_read_doc_scores(const msa_route_query *q, const msa_route_span *spans, size_t n_spans,
                               msa_route_dtype dtype, uint64_t n_index, float *doc_scores, msa_threadpool *tp) {
    return msa_read_doc_scores_inv(q, spans, n_spans, dtype, n_index, NULL, doc_scores, tp);
}

msa_status msa_read_doc_scores_inv(const msa_route_query *q, const msa_route_span *spans, size_t n_spans,
                                   msa_route_dtype dtype, uint64_t n_index, const float *inv, float *doc_scores,
                                   msa_threadpool *tp) {
    for (uint64_t d = 0; d < n_index; d++) doc_scores[d] = -INFINITY;
    if (n_index == 0 || q->n == 0) return MSA_OK;
    for (size_t si = 0; si < n_spans; si++)
        for (uint64_t c = 0; c < spans[si].n_chunks; c++)
            if (spans[si].doc_index[c] >= n_index)
                return msa_fail(MSA_ERR_BAD_DATA, "routing: chunk of document %u beyond the bank's %llu",
                                spans[si].doc_index[c], (unsigned long long)n_index);
    if ((uint64_t)q->n > SIZE_MAX / sizeof(float) / n_index)
        return msa_fail(MSA_ERR_LIMIT, "routing: %d tokens x %llu documents is too large", q->n,
                        (unsigned long long)n_index);
    float *qn = malloc((size_t)q->n * q->dim * sizeof *qn);
    float *best = malloc((size_t)q->n * n_index * sizeof *best);
    if (!qn || !best) {
        free(qn), free(best);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for %d tokens x %llu documents", q->n,
                        (unsigned long long)n_index);
    }
    memcpy(qn, q->q, (size_t)q->n * q->dim * sizeof *qn);
    msa_l2_normalize_rows(qn, (size_t)q->n, q->dim);
    for (size_t i = 0; i < (size_t)q->n * n_index; i++) best[i] = -INFINITY;
    msa_route_query qq = {.n = q->n, .dim = q->dim, .q = qn};
    read_job j = {.q = &qq, .spans = spans, .n_spans = n_spans, .dtype = dtype, .n_index = n_index, .inv = inv,
                  .best = best};
    msa_threadpool_run(tp, read_range, &j); /* inline when tp is NULL */
    if (atomic_load(&j.faulted)) {
        free(qn), free(best);
        return msa_fail(MSA_ERR_IO, "routing: I/O error reading the bank's keys (SIGBUS)");
    }
    free(qn);
    msa_status st = msa_read_center(best, q->n, n_index, 1, (size_t)q->n, doc_scores, tp); /* document-major */
    free(best);
    return st;
}

/* msa_read_center's two passes, split over threads without changing a sum's order: each token's mean is one
 * thread's sum over the documents in index order, and each document's centred sum one thread's over the tokens
 * in order, so the result has the single-thread bits on any thread count. */
typedef struct center_job {
    const float *best;
    int nq;
    uint64_t n_index;
    size_t ts, ds;
    double *mu;  /* [nq] each token's mean best over the documents that have chunks */
    double *acc; /* [n_index] */
    float *out;  /* [n_index] */
} center_job;

static void center_means(void *ctx, int ith, int nth) {
    const center_job *j = ctx;
    for (int t = ith; t < j->nq; t += nth) {
        const float *b = j->best + (size_t)t * j->ts;
        double sum = 0;
        uint64_t n = 0;
        for (uint64_t d = 0; d < j->n_index; d++)
            if (isfinite(b[d * j->ds])) sum += b[d * j->ds], n++;
        j->mu[t] = n ? sum / (double)n : 0;
    }
}

static void center_docs(void *ctx, int ith, int nth) {
    const center_job *j = ctx;
    const uint64_t d0 = j->n_index * (uint64_t)ith / (uint64_t)nth, d1 = j->n_index * (uint64_t)(ith + 1) / (uint64_t)nth;
    for (uint64_t d = d0; d < d1; d++) j->acc[d] = 0;
    for (int t = 0; t < j->nq; t++) {
        const float *b = j->best + (size_t)t * j->ts;
        const double mu = j->mu[t];
        for (uint64_t d = d0; d < d1; d++)
            if (isfinite(b[d * j->ds])) j->acc[d] += b[d * j->ds] - mu;
    }
    for (uint64_t d = d0; d < d1; d++)
        j->out[d] = isfinite(j->best[d * j->ds]) ? (float)(j->acc[d] / j->nq) : -INFINITY;
}

msa_status msa_read_center(const float *best, int nq, uint64_t n_index, size_t ts, size_t ds, float *doc_scores,
                           msa_threadpool *tp) {
    center_job j = {best, nq, n_index, ts, ds, malloc((nq > 0 ? (size_t)nq : 1) * sizeof(double)),
                    malloc((n_index ? n_index : 1) * sizeof(double)), doc_scores};
    if (!j.mu || !j.acc) {
        free(j.mu), free(j.acc);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory");
    }
    msa_threadpool_run(tp, center_means, &j); /* inline when tp is NULL */
    msa_threadpool_run(tp, center_docs, &j);
    free(j.mu), free(j.acc);
    return MSA_OK;
}

/* ---- the answer */

#define READ_KEEP_FRACTION 0.5f
#define READ_INSTRUCTION "Answer the question using the documents below.\n\n"

typedef struct tbuf { int32_t *v; size_t n, cap; } tbuf;

static msa_status tb_add(tbuf *b, int32_t *ids, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->n + n) cap *= 2;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) {
            free(ids);
            return msa_fail(MSA_ERR_NOMEM, "out of memory");
        }
        b->v = v;
        b->cap = cap;
    }
    if (n) memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    free(ids);
    return MSA_OK;
}

static msa_status tb_tok(tbuf *b, const msa_tokenizer *tok, const char *s, size_t len, bool special) {
    int32_t *ids = NULL;
    size_t n = 0;
    MSA_TRY(msa_tokenize(tok, s, len, special, &ids, &n));
    return tb_add(b, ids, n);
}

/* The answer prompt: the model's chat template around the previous turns (history, oldest first) and one
 * user message; every message's content is tokenized as plain text (never special tokens), the template's
 * own text around it with special tokens. */
static msa_status build_prompt(msa_model *model, msa_bank *bank, const uint32_t *docs, size_t n_docs,
                               const char *question, size_t len, const char *const *h_roles,
                               const char *const *h_contents, size_t n_hist, tbuf *out, char **text_out) {
    const msa_tokenizer *tok = msa_model_tokenizer(model);
    const char **roles = malloc((n_hist + 1) * sizeof *roles), **contents = malloc((n_hist + 1) * sizeof *contents);
    if (!roles || !contents) {
        free(roles), free(contents);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n_hist; i++) roles[i] = h_roles[i], contents[i] = "\x01";
    roles[n_hist] = "user", contents[n_hist] = "\x01";
    char *tmpl = NULL;
    msa_status tst = msa_chat_render(model, roles, contents, n_hist + 1, true, &tmpl);
    free(roles), free(contents);
    MSA_TRY(tst);
    size_t n_holes = 0;
    for (const char *c = tmpl; *c; c++) n_holes += *c == '\x01';
    char *hole = strrchr(tmpl, '\x01');
    if (!hole || n_holes != n_hist + 1) {
        free(tmpl);
        return msa_fail(MSA_ERR_INTERNAL, "chat template lost the message content");
    }
    /* content: instruction, documents, question */
    size_t cap = 256 + len, n = 0;
    char *content = malloc(cap);
    msa_status st = content ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
#define ADD(s, l)                                                                          \
    do {                                                                                   \
        size_t l_ = (l);                                                                   \
        if (!st && n + l_ + 1 > cap) {                                                     \
            while (n + l_ + 1 > cap) cap *= 2;                                             \
            char *c_ = realloc(content, cap);                                              \
            if (!c_) st = msa_fail(MSA_ERR_NOMEM, "out of memory");                        \
            else content = c_;                                                             \
        }                                                                                  \
        if (!st) memcpy(content + n, (s), l_), n += l_;                                    \
    } while (0)
    ADD(READ_INSTRUCTION, strlen(READ_INSTRUCTION));
    for (size_t r = 0; r < n_docs && !st; r++) { /* best document last, next to the question */
        const size_t i = n_docs - 1 - r;
        char *t = NULL;
        size_t tl = 0;
        st = msa_bank_doc_text(bank, docs[i], &t, &tl);
        char head[32];
        int hn = snprintf(head, sizeof head, "[%u]. ", docs[i]);
        ADD(head, (size_t)hn);
        ADD(t, tl);
        ADD("\n\n", 2);
        free(t);
    }
    ADD("Question: ", 10);
    ADD(question, len);
#undef ADD
    if (!st) {
        content[n] = 0;
        if (msa_model_add_bos(model) && msa_model_hparams(model)->bos_id >= 0) {
            int32_t *bos = malloc(sizeof *bos);
            if (!bos) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            else {
                *bos = msa_model_hparams(model)->bos_id;
                st = tb_add(out, bos, 1);
            }
        }
        /* template text up to each history hole, then that message's content as plain text */
        const char *seg = tmpl;
        for (size_t i = 0; i < n_hist && !st; i++) {
            const char *h = strchr(seg, '\x01');
            st = tb_tok(out, tok, seg, (size_t)(h - seg), true);
            if (!st) st = tb_tok(out, tok, h_contents[i], strlen(h_contents[i]), false);
            seg = h + 1;
        }
        if (!st) st = tb_tok(out, tok, seg, (size_t)(hole - seg), true);
        if (!st) st = tb_tok(out, tok, content, n, false);
        if (!st) st = tb_tok(out, tok, hole + 1, strlen(hole + 1), true);
        if (!st && text_out) { /* the transcript: holes filled in */
            size_t total = strlen(tmpl) + n + 1;
            for (size_t i = 0; i < n_hist; i++) total += strlen(h_contents[i]);
            char *t = *text_out = malloc(total);
            if (!t) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            size_t k = 0, hi = 0;
            for (const char *c = tmpl; t && *c; c++) {
                if (*c != '\x01') {
                    t[k++] = *c;
                    continue;
                }
                const char *fill = hi < n_hist ? h_contents[hi] : content;
                size_t fl = hi < n_hist ? strlen(fill) : n;
                memcpy(t + k, fill, fl);
                k += fl;
                hi++;
            }
            if (t) t[k] = 0;
        }
    }
    free(content);
    free(tmpl);
    return st;
}

/* The routing prefill of a question: "<|im_start|>" (not routed) + the question's tokens (routed). On success
 * *mc holds the routing (msa_memctx_routing); the caller frees it. */
static msa_status route_question(msa_model *model, msa_bank *bank, const char *question, size_t len, int top_k,
                                 msa_memctx **mc_out, double *seconds) {
    const msa_tokenizer *tok = msa_model_tokenizer(model);
    tbuf q = {0};
    msa_status st = MSA_OK;
    *mc_out = NULL;
    int32_t im_start = msa_tokenizer_find(tok, "<|im_start|>");
    if (im_start >= 0) {
        q.v = malloc(sizeof *q.v);
        if (!q.v) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        q.v[0] = im_start;
        q.n = q.cap = 1;
    }
    size_t n_head = q.n;
    st = tb_tok(&q, tok, question, len, false);
    int8_t *roles = st ? NULL : malloc(q.n ? q.n : 1);
    if (!st && !roles) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < q.n; i++) roles[i] = i < n_head ? -1 : 0;
    msa_memctx_params mp = {.top_k = top_k > 0 ? top_k : 3, .attend_memory = false, .n_ctx = (int)q.n + 1};
    if (mp.top_k > 1024) mp.top_k = 1024;
    mp.sampler = msa_sampler_default_params();
    msa_memctx *mc = NULL;
    if (!st) st = msa_memctx_new(model, bank, &mp, &mc);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!st) st = msa_memctx_prefill(mc, q.v, roles, (int)q.n, 0, false, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (seconds) *seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    free(q.v), free(roles);
    if (st) msa_memctx_free(mc);
    else *mc_out = mc;
    return st;
}

/* Fused read-mode score: the sum of the per-layer scores (plus the lexical score, read_fusion.c, when the bank
 * has a lexical index and fusion is on). fused [n_index]. */
static void fuse_layers(const msa_memctx_layer *L, int nl, uint64_t n_index, float *fused) {
    for (uint64_t d = 0; d < n_index; d++) {
        double s = 0;
        for (int l = 0; l < nl && isfinite(s); l++) s += L[l].all_scores[d];
        fused[d] = (float)s;
    }
}

msa_status msa_read_route(msa_model *model, msa_bank *bank, const char *question, size_t len, msa_read_scores *out) {
    memset(out, 0, sizeof *out);
    msa_memctx *mc = NULL;
    MSA_TRY(route_question(model, bank, question, len, 1, &mc, &out->seconds));
    const msa_memctx_layer *L;
    int nl;
    uint64_t n_index;
    msa_memctx_routing(mc, &L, &nl, &n_index);
    msa_status st = MSA_OK;
    out->n_layers = nl;
    out->n_index = n_index;
    out->layer = malloc((size_t)(nl ? nl : 1) * sizeof *out->layer);
    out->per_layer = malloc(((size_t)nl * n_index + 1) * sizeof *out->per_layer);
    out->fused = malloc((n_index + 1) * sizeof *out->fused);
    if (!out->layer || !out->per_layer || !out->fused) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (int l = 0; !st && l < nl; l++) {
        out->layer[l] = L[l].layer;
        memcpy(out->per_layer + (size_t)l * n_index, L[l].all_scores, n_index * sizeof(float));
    }
    if (!st) fuse_layers(L, nl, n_index, out->fused);
    msa_memctx_free(mc);
    if (st) msa_read_scores_free(out);
    return st;
}

static void zscore(float *x, uint64_t n, const float *mask) {
    double sum = 0, ss = 0;
    uint64_t k = 0;
    for (uint64_t d = 0; d < n; d++)
        if (isfinite(mask[d])) sum += x[d], k++;
    const double mu = k ? sum / (double)k : 0;
    for (uint64_t d = 0; d < n; d++)
        if (isfinite(mask[d])) ss += (x[d] - mu) * (x[d] - mu);
    const double sd = k && ss > 0 ? sqrt(ss / (double)k) : 1;
    for (uint64_t d = 0; d < n; d++) x[d] = isfinite(mask[d]) ? (float)((x[d] - mu) / sd) : -INFINITY;
}

msa_status msa_read_fuse_lexical(msa_read_scores *s, const msa_bm25 *ix, const char *question, size_t len) {
    const uint64_t n = s->n_index;
    float *lex = malloc((n ? n : 1) * sizeof *lex), *r = malloc((n ? n : 1) * sizeof *r);
    if (!lex || !r) {
        free(lex), free(r);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    msa_status st = msa_bm25_score(ix, question, len, lex, n);
    if (!st) {
        memcpy(r, s->fused, n * sizeof *r);
        zscore(lex, n, s->fused);
        zscore(r, n, s->fused);
        const float w = msa_bm25_weight(ix);
        for (uint64_t d = 0; d < n; d++) s->fused[d] = isfinite(r[d]) ? w * r[d] + (1 - w) * lex[d] : -INFINITY;
        s->lexical = true;
    }
    free(lex), free(r);
    return st;
}

/* Whether text s[0..n) has the word w[0..k) (as msa_bm25_next_word gives it, by lex's word rule). */
static bool has_word(const msa_bm25 *lex, const char *s, size_t n, const char *w, size_t k) {
    char x[MSA_BM25_MAX_WORD];
    size_t m;
    for (size_t p = 0; (m = msa_bm25_next_word(lex, s, n, &p, x, NULL)) > 0;)
        if (m == k && !memcmp(x, w, k)) return true;
    return false;
}
/* Sum over the distinct words (3+ bytes) a sentence shares with the question of their idf. */
static double shared_words(const msa_bm25 *lex, const char *q, size_t ql, const char *s, size_t sl) {
    double n = 0;
    char w[MSA_BM25_MAX_WORD];
    size_t k, c;
    for (size_t j = 0; (k = msa_bm25_next_word(lex, q, ql, &j, w, &c)) > 0;) /* each question word once */
        if (k >= 3 && !has_word(lex, q, c, w, k) && has_word(lex, s, sl, w, k))
            n += lex ? msa_bm25_idf(lex, w, k) : 1.0;
    return n;
}
/* The sentence of text sharing the most (idf-weighted) words with the question: [*a, *b). */
static void best_sentence(const msa_bm25 *lex, const char *q, size_t ql, const char *t, size_t tl, size_t *a_out,
                          size_t *b_out) {
    double best = -1;
    *a_out = 0, *b_out = tl;
    for (size_t a = 0; a < tl;) {
        size_t b = a;
        while (b < tl && !((t[b] == '.' || t[b] == '!' || t[b] == '?') && (b + 1 == tl || t[b + 1] == ' '))) b++;
        if (b < tl) b++;
        double n = shared_words(lex, q, ql, t + a, b - a);
        if (n > best) best = n, *a_out = a, *b_out = b;
        a = b;
        while (a < tl && t[a] == ' ') a++;
    }
}

msa_status msa_read_route_rounds(msa_model *model, msa_bank *bank, const msa_bm25 *lex, const char *question,
                                 size_t len, int rounds, msa_read_scores *out) {
    MSA_TRY(msa_read_route(model, bank, question, len, out));
    msa_status st = lex ? msa_read_fuse_lexical(out, lex, question, len) : MSA_OK;
    for (int r = 1; r < rounds && !st && out->n_index > 1; r++) {
        /* the documents chosen so far: those ranked above every other (scores >= keep) */
        uint32_t top[64];
        float ts[64];
        const size_t k = msa_route_topk(out->fused, out->n_index, (size_t)(r < 64 ? r : 64), top, ts);
        if (k == 0 || !isfinite(ts[0])) break;
        /* next query: the sentence of the best document not yet expanded (rank r-1) that shares the most words
         * with the question (the fact that names the next hop; with the question itself the words already matched
         * in round 1 outweigh the new name) */
        char *t = NULL;
        size_t tl = 0, sa = 0, sb = 0;
        st = msa_bank_doc_text(bank, top[k - 1], &t, &tl);
        if (!st) best_sentence(lex, question, len, t, tl, &sa, &sb);
        /* ... without the words the question already has: what is left names the next hop */
        char *q2 = st ? NULL : malloc(sb - sa + 1);
        size_t n2 = 0;
        if (!st && !q2) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        char w[MSA_BM25_MAX_WORD];
        size_t m, a;
        for (size_t i = sa; !st && (m = msa_bm25_next_word(lex, t, sb, &i, w, &a)) > 0;) {
            if (m >= 3 && has_word(lex, question, len, w, m)) continue;
            if (n2) q2[n2++] = ' ';
            memcpy(q2 + n2, t + a, i - a);
            n2 += i - a;
        }
        msa_read_scores s2 = {0};
        if (!st && n2 == 0) { /* nothing new: the whole sentence */
            memcpy(q2, t + sa, sb - sa);
            n2 = sb - sa;
        }
        if (!st) st = msa_read_route(model, bank, q2, n2, &s2);
        if (!st && lex) st = msa_read_fuse_lexical(&s2, lex, q2, n2);
        if (!st) { /* kept: the first k documents in their order; then the new round's ranking */
            float hi = -INFINITY;
            for (uint64_t d = 0; d < s2.n_index; d++) hi = isfinite(s2.fused[d]) && s2.fused[d] > hi ? s2.fused[d] : hi;
            for (size_t i = 0; i < k; i++) s2.fused[top[i]] = hi + 1.0f + (float)(k - i);
            memcpy(out->fused, s2.fused, out->n_index * sizeof *out->fused);
            out->seconds += s2.seconds;
        }
        msa_read_scores_free(&s2);
        free(t), free(q2);
    }
    if (st) msa_read_scores_free(out);
    return st;
}

void msa_read_scores_free(msa_read_scores *s) {
    free(s->layer), free(s->per_layer), free(s->fused);
    memset(s, 0, sizeof *s);
}

msa_status msa_read_answer(msa_model *model, msa_bank *bank, const char *question, size_t len,
                           const msa_ask_params *p, msa_ask_result *out) {
    msa_status st = MSA_OK;
    const int top_k = p->top_k > 0 ? (p->top_k > 1024 ? 1024 : p->top_k) : 3;
    out->rounds = calloc(1, sizeof *out->rounds);
    if (!out->rounds) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    out->n_rounds = 1;
    msa_memctx *mc = NULL;
    st = route_question(model, bank, question, len, top_k, &mc, &out->seconds_route);
    uint32_t *best = NULL;
    size_t n_best = 0;
    if (!st) st = msa_ask_record_routing(mc, bank, &out->rounds[0]);
    if (!st) { /* fuse: sum of per-layer scores */
        const msa_memctx_layer *L;
        int nl;
        uint64_t n_index;
        msa_memctx_routing(mc, &L, &nl, &n_index);
        float *fused = malloc((n_index ? n_index : 1) * sizeof *fused);
        best = malloc((size_t)top_k * sizeof *best);
        float *bs = malloc((size_t)top_k * sizeof *bs);
        if (!fused || !best || !bs) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        if (!st) fuse_layers(L, nl, n_index, fused);
        msa_bm25 *ix = NULL; /* the bank's LEXICAL_BM25, when it has a current one (bm25.h); else routing alone */
        if (!st) {
            if (msa_bm25_load(bank, msa_bm25_bank_dir(bank), &ix) == MSA_OK) {
                msa_read_scores rs = {.n_index = n_index, .fused = fused};
                st = msa_read_fuse_lexical(&rs, ix, question, len);
                msa_bm25_free(ix);
            } else {
                msa_clear_error(); /* absent, stale or unreadable: routing alone */
            }
        }
        if (!st) n_best = msa_route_topk(fused, n_index, (size_t)top_k, best, bs);
        /* Scores are centred (0 = an average document): of the top-k, inject those that match at least half
         * as well as the best one; weaker matches only distract a small model (docs/msa-deviations.md). */
        while (!st && n_best > 1 && bs[0] > 0 && bs[n_best - 1] < READ_KEEP_FRACTION * bs[0]) n_best--;
        free(fused), free(bs);
    }
    msa_memctx_free(mc);
    if (!st) st = msa_ask_record_injected(bank, best, n_best, &out->rounds[0]);
    if (!st) st = msa_read_answer_docs(model, bank, best, n_best, question, len, p, out);
    free(best);
    return st;
}

msa_status msa_read_prompt_tokens(msa_model *model, msa_bank *bank, const uint32_t *docs, size_t n_docs,
                                  const char *question, size_t len, size_t *n_tokens, char **text) {
    tbuf pr = {0};
    char *ptext = NULL;
    msa_status st = build_prompt(model, bank, docs, n_docs, question, len, NULL, NULL, 0, &pr, &ptext);
    if (!st) {
        *n_tokens = pr.n;
        if (text) *text = ptext, ptext = NULL;
    }
    free(pr.v), free(ptext);
    return st;
}

msa_status msa_read_answer_docs(msa_model *model, msa_bank *bank, const uint32_t *best, size_t n_best,
                                const char *question, size_t len, const msa_ask_params *p, msa_ask_result *out) {
    const msa_hparams *hp = msa_model_hparams(model);
    const msa_tokenizer *tok = msa_model_tokenizer(model);
    msa_status st = MSA_OK;
    /* answer */
    tbuf pr = {0};
    char *ptext = NULL;
    int max_new = p->max_new_tokens > 0 ? p->max_new_tokens : 512;
    /* history: drop the oldest pair until the prompt leaves room for an answer (at least min(max_new, 256)) */
    size_t n_hist = p->history_roles && p->history_contents ? p->n_history : 0, h0 = 0;
    const int room = max_new < 256 ? max_new : 256;
    for (;;) {
        if (!st) st = build_prompt(model, bank, best, n_best, question, len, p->history_roles ? p->history_roles + h0 : NULL,
                                   p->history_contents ? p->history_contents + h0 : NULL, n_hist - h0, &pr, &ptext);
        if (st || h0 >= n_hist || pr.n + (size_t)room <= (size_t)hp->n_ctx_train) break;
        h0 += n_hist - h0 >= 2 ? 2 : 1;
        pr.n = 0;
        free(ptext);
        ptext = NULL;
    }
    out->n_history_used = n_hist - h0;
    msa_session *s = NULL;
    if (!st && pr.n + (size_t)max_new > (size_t)hp->n_ctx_train) {
        if (pr.n >= (size_t)hp->n_ctx_train)
            st = msa_fail(MSA_ERR_LIMIT, "the prompt with %zu documents is %zu tokens, over the model's context %d",
                          n_best, pr.n, hp->n_ctx_train);
        else
            max_new = hp->n_ctx_train - (int)pr.n;
    }
    if (!st) {
        msa_session_params sp = msa_session_default_params();
        sp.n_ctx = (int)pr.n + max_new;
        st = msa_session_new(model, &sp, &s);
    }
    float *logits = st ? NULL : malloc((size_t)hp->n_vocab * sizeof *logits);
    if (!st && !logits) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (!st) st = msa_session_eval(s, pr.v, pr.n, false, logits);
    char *ans = NULL;
    size_t an = 0, acap = 0;
    msa_sampler_params spar = msa_sampler_default_params();
    spar.temperature = p->temperature;
    spar.seed = p->seed;
    spar.top_p = p->top_p > 0 && p->top_p <= 1 ? p->top_p : 1.0f;
    spar.min_p = p->min_p;
    spar.repeat_penalty = p->repeat_penalty > 0 ? p->repeat_penalty : 1.0f;
    uint64_t rng = msa_sampler_seed(p->seed);
    /* --repeat-penalty window over the generated answer (the prompt's documents are meant to be repeated) */
    size_t win = p->repeat_last_n > 0 ? (size_t)p->repeat_last_n : 0, n_recent = 0;
    int32_t *recent = win && !st ? malloc(win * sizeof *recent) : NULL;
    int n_gen = 0;
    bool ended = false;
    for (; !st && n_gen < max_new; n_gen++) {
        if (p->cancel && *p->cancel) {
            out->cancelled = true;
            ended = true;
            break;
        }
        int32_t y = msa_sample_recent(logits, hp->n_vocab, &spar, &rng, recent, n_recent);
        if (recent) {
            if (n_recent == win) memmove(recent, recent + 1, (win - 1) * sizeof *recent), n_recent--;
            recent[n_recent++] = y;
        }
        bool eos = false;
        for (int i = 0; i < hp->n_eos; i++) eos |= hp->eos_ids[i] == y;
        if (eos) {
            ended = true;
            break;
        }
        char buf[256];
        int k = msa_token_to_piece(tok, y, buf, sizeof buf);
        if (k > 0 && k <= (int)sizeof buf && p->on_text) p->on_text(buf, (size_t)k, p->user);
        if (k > 0 && k <= (int)sizeof buf) {
            if (an + (size_t)k + 1 > acap) {
                acap = acap ? acap * 2 : 1024;
                while (an + (size_t)k + 1 > acap) acap *= 2;
                char *a = realloc(ans, acap);
                if (!a) {
                    st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                    break;
                }
                ans = a;
            }
            memcpy(ans + an, buf, (size_t)k);
            an += (size_t)k;
        }
        if (n_gen + 1 < max_new) st = msa_session_eval(s, &y, 1, false, logits);
    }
    out->truncated = !st && !ended && n_gen >= max_new;
    free(recent);
    free(logits);
    if (s) msa_session_free(s);
    if (!st) {
        /* trim */
        size_t a = 0;
        while (a < an && (ans[a] == ' ' || ans[a] == '\n')) a++;
        while (an > a && (ans[an - 1] == ' ' || ans[an - 1] == '\n')) an--;
        out->answer = malloc(an - a + 1);
        char *gen = out->n_rounds > 0 ? malloc(an - a + 1) : NULL;
        if (!out->answer || (out->n_rounds > 0 && !gen)) {
            free(gen);
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        } else {
            if (an > a) memcpy(out->answer, ans + a, an - a);
            out->answer[an - a] = 0;
            if (gen) {
                memcpy(gen, out->answer, an - a + 1);
                out->rounds[0].generated = gen;
            }
        }
        out->transcript = ptext;
        ptext = NULL;
        out->n_prompt_tokens = pr.n;
        out->n_generated_tokens = (uint64_t)n_gen;
    }
    free(ans), free(ptext), free(pr.v);
    return st;
}
