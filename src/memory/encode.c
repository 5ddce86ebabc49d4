/* encode.c — stage-1 memory encoding over the model's forward pass (see encode.h). */
#include "memory/encode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "backend/cpu/kernels.h"
#include "memory/route.h"
#include "model/forward.h"
#include "util/error.h"

struct msa_encoder {
    msa_model *model;
    msa_bank_shape shape;
    int slot_of_layer[MSA_MAX_LAYERS]; /* router slot of a model layer, -1 elsewhere */
    int batch_tokens;
    int n_ctx;                         /* session capacity: max(batch_tokens, model context) */
    msa_session *sess;
    float *kr;                         /* [n_ctx][n_head_kv*head_dim] scratch: router keys of a batch */
    bool cosine;                       /* native + aux_loss_method == "INFONCE": normalise pooled K̄_R */
    bool own_keys;                     /* native without router projectors (decouple_router false):
                                        * K̄_R = K̄ itself (msa-reference.md §2.1, §3.3) */
    bool pooled_by_forward;            /* the forward pools K, V and the router projection where the model runs
                                        * (msa_fwd_pool): every case but read mode's identity router on an
                                        * architecture with k_norm */
    float *stage;                      /* [3][n_router][max chunks][route_dim] pooled outputs of one batch */
    size_t stage_chunks;               /* chunks the stage holds */
    /* the batch being encoded */
    int n_docs;
    const int *row0, *len;
    msa_encoded_doc *out;
    float *tmpl_k, *tmpl_v;            /* template capture target, or NULL */
};

size_t msa_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len) {
    char *o = malloc(len * 3 + 1); /* each bad byte becomes at most 3 bytes */
    size_t n = 0, bad = 0;
    if (!o) {
        *out = NULL;
        return 0;
    }
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k < 1) {
            memcpy(o + n, "\xEF\xBF\xBD", 3);
            n += 3, i += 1, bad++;
        } else {
            memcpy(o + n, text + i, (size_t)k);
            n += (size_t)k, i += (size_t)k;
        }
    }
    o[n] = 0;
    *out = o;
    *out_len = n;
    return bad;
}

msa_status msa_render_doc(const msa_model *model, uint32_t index, const char *text, size_t len, int32_t **ids,
                          size_t *n) {
    const msa_tokenizer *tok = msa_model_tokenizer(model);
    int32_t im_start = msa_tokenizer_find(tok, "<|im_start|>"), im_end = msa_tokenizer_find(tok, "<|im_end|>");
    if (im_start < 0 || im_end < 0)
        return msa_fail(MSA_ERR_UNSUPPORTED, "the model's vocabulary has no <|im_start|>/<|im_end|> (needed for memory)");
    char head[24], tail[16];
    int hn = snprintf(head, sizeof head, "[%u]. ", index), tn = snprintf(tail, sizeof tail, "[%u]", index);
    char *mid = malloc((size_t)hn + len + (size_t)tn + 1);
    if (!mid) return msa_fail(MSA_ERR_NOMEM, "out of memory rendering a %zu-byte document", len);
    memcpy(mid, head, (size_t)hn);
    if (len) memcpy(mid + hn, text, len);
    memcpy(mid + hn + len, tail, (size_t)tn);
    int32_t *t = NULL;
    size_t nt = 0;
    msa_status st = msa_tokenize(tok, mid, (size_t)hn + len + (size_t)tn, false, &t, &nt);
    free(mid);
    if (st) return st;
    int32_t *r = malloc((nt + 2) * sizeof *r);
    if (!r) {
        free(t);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    r[0] = im_start;
    if (nt) memcpy(r + 1, t, nt * sizeof *r);
    r[nt + 1] = im_end;
    free(t);
    *ids = r;
    *n = nt + 2;
    return MSA_OK;
}

static msa_status reserve(msa_encoder *e, int n);

msa_status msa_encoder_new(msa_model *model, const msa_bank_shape *shape, int batch_tokens, msa_encoder **out) {
    const msa_hparams *hp = msa_model_hparams(model);
    if (shape->n_kv_heads != hp->n_head_kv || shape->head_dim != hp->head_dim || shape->n_layers != hp->n_layer)
        return msa_fail(MSA_ERR_MISMATCH, "bank shape (%d layers, %dx%d) does not fit the model (%d layers, %dx%d)",
                        shape->n_layers, shape->n_kv_heads, shape->head_dim, hp->n_layer, hp->n_head_kv, hp->head_dim);
    msa_encoder *e = calloc(1, sizeof *e);
    if (!e) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    e->model = model;
    e->shape = *shape;
    for (int l = 0; l < MSA_MAX_LAYERS; l++) e->slot_of_layer[l] = -1;
    for (int s = 0; s < shape->n_router; s++) {
        int l = shape->router_layers[s];
        if (l < 0 || l >= hp->n_layer || shape->route_dim[s] != hp->n_head_kv * hp->head_dim) {
            free(e);
            return msa_fail(MSA_ERR_MISMATCH, "bank router slot %d (layer %d) does not fit the model", s, l);
        }
        if (shape->mode == MSA_BANK_NATIVE && hp->msa.decouple_router && !msa_model_router_k(model, l)) {
            free(e);
            return msa_fail(MSA_ERR_UNSUPPORTED,
                            "layer %d has no router_k_proj: native memory needs an MSA checkpoint with "
                            "decouple_router (use --mode read)", l);
        }
        e->slot_of_layer[l] = s;
    }
    e->cosine = shape->mode == MSA_BANK_NATIVE && !strcmp(hp->msa.aux_loss_method, "INFONCE");
    e->own_keys = shape->mode == MSA_BANK_NATIVE && !hp->msa.decouple_router;
    /* Read mode's identity router (no router_k_proj) keys are the layer's own pre-RoPE k_proj(x): the forward
     * pools them where the model runs, with k_proj as the projection. Only where the architecture has a k_norm
     * do the hooks compute them on the host (the forward's pooled projection has no norm). With the hooks a GPU
     * encode downloaded every layer's input and K/V and ran the router layers' k_proj on the host's CPU: about
     * 8K tokens/s on an H100 for 100-token passages. */
    e->pooled_by_forward = true;
    if (shape->mode != MSA_BANK_NATIVE)
        for (int s = 0; s < shape->n_router; s++) {
            const int l = shape->router_layers[s];
            if (!(model->router_st && msa_model_router_k(model, l)) && model->layers[l].k_norm)
                e->pooled_by_forward = false;
        }
    e->batch_tokens = batch_tokens > 0 ? batch_tokens : 2048;
    msa_status st = reserve(e, e->batch_tokens);
    if (st) {
        msa_encoder_free(e);
        return st;
    }
    *out = e;
    return MSA_OK;
}

/* A session (and scratch) for batches of up to n tokens. */
static msa_status reserve(msa_encoder *e, int n) {
    if (e->sess && n <= e->n_ctx) return MSA_OK;
    const msa_hparams *hp = msa_model_hparams(e->model);
    if (e->sess) msa_session_free(e->sess);
    e->sess = NULL;
    free(e->kr);
    e->n_ctx = n;
    msa_session_params sp = msa_session_default_params();
    sp.n_ctx = n;
    MSA_TRY(msa_session_new(e->model, &sp, &e->sess));
    e->kr = malloc((size_t)n * hp->n_head_kv * hp->head_dim * sizeof *e->kr);
    if (!e->kr) return msa_fail(MSA_ERR_NOMEM, "out of memory for encoder scratch (%d tokens)", n);
    return MSA_OK;
}

void msa_encoder_free(msa_encoder *e) {
    if (!e) return;
    if (e->sess) msa_session_free(e->sess);
    free(e->kr);
    free(e->stage);
    free(e);
}

void msa_encoded_doc_free(msa_encoded_doc *d) {
    if (!d) return;
    free(d->route); /* k and v live in the same allocation */
    memset(d, 0, sizeof *d);
}

/* dst[c] = mean of src rows [c*P, min((c+1)*P, len)) for c < ceil(len/P); rows of D floats. */
static void pool(const float *src, int len, int P, int D, float *dst) {
    double *acc = calloc((size_t)D, sizeof *acc);
    if (!acc) return; /* caller pre-zeroed dst; unreachable in practice for D <= 64K */
    for (int c0 = 0, c = 0; c0 < len; c0 += P, c++) {
        int n = len - c0 < P ? len - c0 : P;
        memset(acc, 0, (size_t)D * sizeof *acc);
        for (int r = 0; r < n; r++)
            for (int i = 0; i < D; i++) acc[i] += src[(size_t)(c0 + r) * D + i];
        for (int i = 0; i < D; i++) dst[(size_t)c * D + i] = (float)(acc[i] / n);
    }
    free(acc);
}

static msa_status hook_attn_input(void *user, int layer, const float *xn, int n) {
    msa_encoder *e = user;
    int s = e->slot_of_layer[layer];
    if (s < 0 || !e->out || e->own_keys) return MSA_OK;
    const msa_hparams *hp = msa_model_hparams(e->model);
    const int hd = hp->head_dim, D = hp->n_head_kv * hd;
    const msa_layer *L = &e->model->layers[layer];
    if (e->shape.mode == MSA_BANK_NATIVE || (e->model->router_st && msa_model_router_k(e->model, layer))) { /* --router */
        msa_matmul(msa_model_threadpool(e->model), msa_model_router_k(e->model, layer), xn, e->kr, n);
    } else { /* identity router: pre-RoPE keys, k_norm'd where the architecture has it */
        msa_matmul(msa_model_threadpool(e->model), L->wk, xn, e->kr, n);
        if (L->k_norm)
            for (int t = 0; t < n * hp->n_head_kv; t++) {
                float *x = e->kr + (size_t)t * hd;
                double ss = 0;
                for (int i = 0; i < hd; i++) ss += (double)x[i] * x[i];
                float r = (float)(1.0 / sqrt(ss / hd + hp->rms_eps));
                for (int i = 0; i < hd; i++) x[i] = x[i] * r * L->k_norm[i];
            }
    }
    for (int d = 0; d < e->n_docs; d++) {
        msa_encoded_doc *o = &e->out[d];
        pool(e->kr + (size_t)e->row0[d] * D, e->len[d], e->shape.pooling, D, o->route[s]);
        if (e->cosine) msa_l2_normalize_rows(o->route[s], (size_t)o->n_chunks * hp->n_head_kv, hd);
    }
    return MSA_OK;
}

static msa_status hook_kv(void *user, int layer, const float *k, const float *v, int n) {
    msa_encoder *e = user;
    const msa_hparams *hp = msa_model_hparams(e->model);
    const int hd = hp->head_dim, KV = hp->n_head_kv, D = KV * hd;
    if (e->tmpl_k) { /* template capture: [layer][kv_head][token][hd] */
        const int T = e->shape.n_template;
        for (int t = 0; t < T && t < n; t++)
            for (int h = 0; h < KV; h++) {
                size_t dst = (((size_t)layer * KV + h) * T + t) * hd;
                memcpy(e->tmpl_k + dst, k + (size_t)t * D + (size_t)h * hd, (size_t)hd * sizeof *k);
                memcpy(e->tmpl_v + dst, v + (size_t)t * D + (size_t)h * hd, (size_t)hd * sizeof *v);
            }
        return MSA_OK;
    }
    int s = e->slot_of_layer[layer];
    if (s < 0 || !e->out || e->shape.mode != MSA_BANK_NATIVE) return MSA_OK;
    for (int d = 0; d < e->n_docs; d++) {
        msa_encoded_doc *o = &e->out[d];
        pool(k + (size_t)e->row0[d] * D, e->len[d], e->shape.pooling, D, o->k[s]);
        pool(v + (size_t)e->row0[d] * D, e->len[d], e->shape.pooling, D, o->v[s]);
        if (e->own_keys) { /* no router projector: route with K̄ (normalised after pooling iff "INFONCE") */
            memcpy(o->route[s], o->k[s], (size_t)o->n_chunks * D * sizeof(float));
            if (e->cosine) msa_l2_normalize_rows(o->route[s], (size_t)o->n_chunks * KV, hd);
        }
    }
    return MSA_OK;
}

static msa_status alloc_doc(const msa_bank_shape *sh, uint64_t n_tokens, msa_encoded_doc *o) {
    memset(o, 0, sizeof *o);
    o->n_tokens = n_tokens;
    o->n_chunks = (uint32_t)((n_tokens + (uint64_t)sh->pooling - 1) / (uint64_t)sh->pooling);
    const size_t per = (size_t)o->n_chunks * sh->n_kv_heads * sh->head_dim;
    const int nr = sh->n_router, kv = sh->mode == MSA_BANK_NATIVE ? 2 : 0;
    /* one allocation: pointer tables, then nr*(1+kv) arrays of per floats */
    size_t bytes = (size_t)3 * nr * sizeof(float *) + (size_t)nr * (1 + kv) * per * sizeof(float);
    char *mem = calloc(1, bytes);
    if (!mem) return msa_fail(MSA_ERR_NOMEM, "out of memory for %u encoded chunks", o->n_chunks);
    o->route = (float **)mem;
    float *f = (float *)(mem + (size_t)3 * nr * sizeof(float *));
    for (int s = 0; s < nr; s++) o->route[s] = f, f += per;
    if (kv) {
        o->k = o->route + nr;
        o->v = o->route + 2 * nr;
        for (int s = 0; s < nr; s++) o->k[s] = f, f += per, o->v[s] = f, f += per;
    }
    /* route/k/v share the block that route points to; free(route) releases everything */
    return MSA_OK;
}

/* One batch through the forward with the pooling done where the model runs (msa_fwd_pool), then the chunk
 * means scattered into each document's arrays. Same numbers as the hooks' pool(): double sums in row order. */
static msa_status run_pooled_batch(msa_encoder *e, msa_fwd_batch *b) {
    const msa_hparams *hp = msa_model_hparams(e->model);
    const int P = e->shape.pooling, D = hp->n_head_kv * hp->head_dim, NR = e->shape.n_router;
    int total = 0;
    for (int d = 0; d < e->n_docs; d++) total += (e->len[d] + P - 1) / P;
    if ((size_t)total > e->stage_chunks) {
        free(e->stage);
        e->stage_chunks = 0;
        e->stage = malloc((size_t)3 * NR * total * D * sizeof(float));
        if (!e->stage) return msa_fail(MSA_ERR_NOMEM, "out of memory for %d pooled chunks", total);
        e->stage_chunks = (size_t)total;
    }
    int32_t *row0 = malloc((size_t)total * sizeof *row0), *len = malloc((size_t)total * sizeof *len);
    float **k = calloc((size_t)hp->n_layer, sizeof *k), **v = calloc((size_t)hp->n_layer, sizeof *v),
          **r = calloc((size_t)hp->n_layer, sizeof *r);
    const msa_tensor **proj = calloc((size_t)hp->n_layer, sizeof *proj);
    msa_status st = row0 && len && k && v && r && proj ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (st == MSA_OK) {
        int c = 0;
        for (int d = 0; d < e->n_docs; d++)
            for (int c0 = 0; c0 < e->len[d]; c0 += P, c++) {
                row0[c] = e->row0[d] + c0;
                len[c] = e->len[d] - c0 < P ? e->len[d] - c0 : P;
            }
        const bool native = e->shape.mode == MSA_BANK_NATIVE;
        for (int sl = 0; sl < NR; sl++) {
            const int l = e->shape.router_layers[sl];
            float *base = e->stage + (size_t)sl * total * D;
            if (native) k[l] = base + (size_t)NR * total * D, v[l] = base + (size_t)2 * NR * total * D;
            if (!e->own_keys) {
                /* native: the checkpoint's router_k_proj; read mode: a --router file's, else the identity router's
                 * k_proj (read mode ignores a checkpoint's own router, as hook_attn_input does) */
                const msa_tensor *rk = native || e->model->router_st ? msa_model_router_k(e->model, l) : NULL;
                r[l] = base, proj[l] = rk ? rk : e->model->layers[l].wk;
            }
        }
        msa_fwd_pool pool = {.n_chunks = total, .chunk_row0 = row0, .chunk_len = len, .k = k, .v = v, .r = r,
                             .proj = proj};
        b->pool = &pool;
        b->hooks = NULL;
        st = msa_fwd_eval(e->sess, b);
        b->pool = NULL;
    }
    for (int d = 0, c = 0; st == MSA_OK && d < e->n_docs; d++) {
        msa_encoded_doc *o = &e->out[d];
        const size_t bytes = (size_t)o->n_chunks * D * sizeof(float);
        for (int sl = 0; sl < NR; sl++) {
            const float *base = e->stage + (size_t)sl * total * D + (size_t)c * D;
            if (o->k) {
                memcpy(o->k[sl], base + (size_t)NR * total * D, bytes);
                memcpy(o->v[sl], base + (size_t)2 * NR * total * D, bytes);
            }
            /* no router projector: route with K̄ itself */
            memcpy(o->route[sl], e->own_keys ? o->k[sl] : base, bytes);
            if (e->cosine) msa_l2_normalize_rows(o->route[sl], (size_t)o->n_chunks * hp->n_head_kv, hp->head_dim);
        }
        c += (int)o->n_chunks;
    }
    free(row0), free(len), free(k), free(v), free(r), free(proj);
    return st;
}

static int last_router_layer(const msa_encoder *e) {
    int m = 0;
    for (int s = 0; s < e->shape.n_router; s++)
        if (e->shape.router_layers[s] > m) m = e->shape.router_layers[s];
    return m;
}

msa_status msa_encoder_run(msa_encoder *e, const int32_t *const *tokens, const size_t *n_tokens, size_t n_docs,
                           msa_encoded_doc *out) {
    const msa_hparams *hp = msa_model_hparams(e->model);
    size_t longest = 0;
    for (size_t i = 0; i < n_docs; i++) {
        if (n_tokens[i] == 0) return msa_fail(MSA_ERR_INVALID_ARG, "encode: document %zu has no tokens", i);
        if (n_tokens[i] > (size_t)hp->n_ctx_train)
            return msa_fail(MSA_ERR_LIMIT, "encode: document %zu has %zu tokens, more than the model's context %d",
                            i, n_tokens[i], hp->n_ctx_train);
        if (n_tokens[i] > longest) longest = n_tokens[i];
    }
    MSA_TRY(reserve(e, (int)longest));
    memset(out, 0, n_docs * sizeof *out);
    int *row0 = malloc((n_docs + 1) * sizeof *row0), *len = malloc((n_docs + 1) * sizeof *len);
    int32_t *ids = malloc((size_t)e->n_ctx * sizeof *ids), *pos = malloc((size_t)e->n_ctx * sizeof *pos),
            *seq = malloc((size_t)e->n_ctx * sizeof *seq);
    msa_status st = (row0 && len && ids && pos && seq) ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_fwd_hooks hooks = {.user = e, .attn_input = hook_attn_input, .kv = hook_kv};
    for (size_t i = 0; i < n_docs && !st;) {
        /* pack documents [i, j) into one batch */
        size_t j = i;
        int n = 0;
        while (j < n_docs && (j == i || n + (int)n_tokens[j] <= e->n_ctx)) {
            row0[j - i] = n;
            len[j - i] = (int)n_tokens[j];
            for (size_t t = 0; t < n_tokens[j]; t++) {
                ids[n + (int)t] = tokens[j][t];
                pos[n + (int)t] = (int32_t)t;            /* document-wise RoPE: every document from 0 */
                seq[n + (int)t] = (int32_t)(j - i);      /* each document attends only to itself */
            }
            n += (int)n_tokens[j];
            j++;
        }
        for (size_t d = i; d < j && !st; d++) st = alloc_doc(&e->shape, n_tokens[d], &out[d]);
        if (st) break;
        e->n_docs = (int)(j - i);
        e->row0 = row0;
        e->len = len;
        e->out = out + i;
        msa_session_reset(e->sess);
        msa_fwd_batch b = {.n_tokens = n, .ids = ids, .pos = pos, .seq = seq,
                           .n_layers = last_router_layer(e) + 1, .hooks = &hooks};
        st = e->pooled_by_forward ? run_pooled_batch(e, &b) : msa_fwd_eval(e->sess, &b);
        e->out = NULL;
        i = j;
    }
    free(row0), free(len), free(ids), free(pos), free(seq);
    if (st)
        for (size_t i = 0; i < n_docs; i++) msa_encoded_doc_free(&out[i]);
    return st;
}

msa_status msa_encoder_template(msa_encoder *e, float **k_out, float **v_out) {
    const msa_hparams *hp = msa_model_hparams(e->model);
    const msa_tokenizer *tok = msa_model_tokenizer(e->model);
    int32_t *ids = NULL;
    size_t n = 0;
    MSA_TRY(msa_tokenize(tok, "<|im_start|>user\n", 17, true, &ids, &n));
    if ((int)n != e->shape.n_template) {
        free(ids);
        return msa_fail(MSA_ERR_UNSUPPORTED, "template prefix '<|im_start|>user\\n' is %zu tokens, the bank expects %d",
                        n, e->shape.n_template);
    }
    size_t sz = (size_t)hp->n_layer * hp->n_head_kv * n * hp->head_dim;
    float *k = malloc(sz * sizeof *k), *v = malloc(sz * sizeof *v);
    int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    msa_status st = (k && v && n <= 8) ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (!st) {
        msa_fwd_hooks hooks = {.user = e, .kv = hook_kv};
        e->tmpl_k = k;
        e->tmpl_v = v;
        msa_session_reset(e->sess);
        msa_fwd_batch b = {.n_tokens = (int)n, .ids = ids, .pos = pos, .hooks = &hooks};
        st = msa_fwd_eval(e->sess, &b);
        e->tmpl_k = e->tmpl_v = NULL;
    }
    free(ids);
    if (st) {
        free(k), free(v);
        return st;
    }
    *k_out = k;
    *v_out = v;
    return MSA_OK;
}
