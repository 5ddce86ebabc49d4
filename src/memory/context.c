/* context.c — the memory session: routing inside the router layers and the sparse attention context
 * (see context.h). */
#include "memory/context.h"

#include "memory/ask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "bank/bank.h"
#include "memory/route_resident.h"
#include "model/forward.h"
#include "model/tensor.h"
#include "util/error.h"

struct msa_memctx {
    msa_model *model;
    msa_bank *bank;
    msa_bank_info info;
    msa_memctx_params p;
    msa_session *sess;
    msa_route_params rp;
    int slot_of_layer[MSA_MAX_LAYERS];
    float *tmpl_k, *tmpl_v;      /* [n_layer][n_kv][T][hd] f32 (native) */
    float *qr;                   /* [n_ctx][n_head*head_dim] scratch */
    float *logits;               /* [n_vocab] */
    uint64_t rng;
    msa_memctx_layer *layers;    /* [n_router] */
    bool own_q;                  /* native without router projectors (decouple_router false): route with the
                                  * attention's own q (post q_norm, post RoPE; msa-reference.md §2.2) */
    bool unit_q;                 /* own_q + "INFONCE": unit-normalise q, then still scale by 1/sqrt(hd) */
    const int8_t *roles;         /* of the prefill in progress */
    uint8_t *mask;               /* [n_ctx] */
};

static float elem(msa_bank_dtype dt, const void *p, size_t i) {
    return dt == MSA_BANK_F32 ? ((const float *)p)[i] : msa_bf16_to_f32(((const uint16_t *)p)[i]);
}

msa_status msa_memctx_new(msa_model *model, msa_bank *bank, const msa_memctx_params *p, msa_memctx **out) {
    const msa_hparams *hp = msa_model_hparams(model);
    msa_memctx *c = calloc(1, sizeof *c);
    if (!c) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    c->model = model;
    c->bank = bank;
    c->p = *p;
    if (c->p.top_k < 1) c->p.top_k = 1;
    msa_bank_get_info(bank, &c->info);
    const msa_bank_shape *sh = &c->info.shape;
    msa_status st = MSA_OK;
    if (sh->n_kv_heads != hp->n_head_kv || sh->head_dim != hp->head_dim || sh->n_layers != hp->n_layer)
        st = msa_fail(MSA_ERR_MISMATCH, "the bank's shape does not fit the model");
    for (int l = 0; l < MSA_MAX_LAYERS; l++) c->slot_of_layer[l] = -1;
    for (int s = 0; s < sh->n_router && !st; s++) {
        if (sh->router_layers[s] < 0 || sh->router_layers[s] >= hp->n_layer) {
            st = msa_fail(MSA_ERR_BAD_DATA, "bank router layer %d outside the model", sh->router_layers[s]);
            break;
        }
        c->slot_of_layer[sh->router_layers[s]] = s;
        if (sh->mode == MSA_BANK_NATIVE && hp->msa.decouple_router && !msa_model_router_q(model, sh->router_layers[s]))
            st = msa_fail(MSA_ERR_UNSUPPORTED, "layer %d has no router_q_proj", sh->router_layers[s]);
    }
    c->rp.n_head = hp->n_head;
    c->rp.n_head_kv = hp->n_head_kv;
    c->rp.head_dim = hp->head_dim;
    if (sh->mode == MSA_BANK_NATIVE) {
        c->rp.head_reduce = hp->msa.head_reduce;
        c->rp.query_reduce = hp->msa.query_reduce;
        c->rp.chunk_reduce = hp->msa.chunk_reduce;
        /* The reference's scale (MSAService.scaling) is 1 only for "INFONCE" with router projectors; without
         * them the unit-normalised q is still scaled by 1/sqrt(head_dim) (same ranking, scores / sqrt(hd)). */
        const bool infonce = !strcmp(hp->msa.aux_loss_method, "INFONCE");
        c->own_q = !hp->msa.decouple_router;
        c->rp.cosine = infonce && !c->own_q;
        c->unit_q = infonce && c->own_q;
    } else {
        /* Read mode: query rows are the head-mean-folded vectors of every routing token; the scores are
         * readmode.c's (msa_read_doc_scores: per-token max-sim, centred over the documents). */
        c->rp.head_reduce = MSA_REDUCE_MEAN;
        c->rp.query_reduce = MSA_REDUCE_MEAN;
        c->rp.chunk_reduce = MSA_REDUCE_MEAN;
        c->rp.cosine = false;
    }
    if (!st && c->p.attend_memory && sh->mode != MSA_BANK_NATIVE)
        st = msa_fail(MSA_ERR_UNSUPPORTED, "this bank was built for read mode (routing keys only): ask with --mode read");
    if (!st) {
        msa_session_params sp = msa_session_default_params();
        sp.n_ctx = c->p.n_ctx;
        st = msa_session_new(model, &sp, &c->sess);
    }
    if (!st) {
        c->qr = malloc((size_t)c->p.n_ctx * hp->n_head * hp->head_dim * sizeof *c->qr);
        c->mask = malloc((size_t)c->p.n_ctx);
        c->logits = malloc((size_t)hp->n_vocab * sizeof *c->logits);
        c->layers = calloc((size_t)sh->n_router, sizeof *c->layers);
        if (!c->qr || !c->mask || !c->logits || !c->layers) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        for (int s = 0; s < sh->n_router && !st; s++) {
            c->layers[s].layer = sh->router_layers[s];
            c->layers[s].index = malloc((size_t)c->p.top_k * sizeof(uint32_t));
            c->layers[s].score = malloc((size_t)c->p.top_k * sizeof(float));
            c->layers[s].all_scores = malloc((c->info.next_index ? c->info.next_index : 1) * sizeof(float));
            if (!c->layers[s].index || !c->layers[s].score || !c->layers[s].all_scores)
                st = msa_fail(MSA_ERR_NOMEM, "out of memory for routing scores of %llu documents",
                              (unsigned long long)c->info.next_index);
        }
    }
    if (!st && c->p.attend_memory) {
        const int T = sh->n_template, KV = hp->n_head_kv, D = hp->head_dim;
        size_t per = (size_t)KV * T * D;
        c->tmpl_k = malloc(per * hp->n_layer * sizeof(float));
        c->tmpl_v = malloc(per * hp->n_layer * sizeof(float));
        if (!c->tmpl_k || !c->tmpl_v) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        if (!st && !c->info.has_template && c->info.n_docs > 0)
            st = msa_fail(MSA_ERR_BAD_DATA, "the bank has documents but no template prefix");
        for (int l = 0; l < hp->n_layer && !st && c->info.has_template; l++) {
            const void *k, *v;
            st = msa_bank_template(bank, l, &k, &v);
            for (size_t i = 0; i < per && !st; i++) {
                c->tmpl_k[(size_t)l * per + i] = elem(sh->dtype, k, i);
                c->tmpl_v[(size_t)l * per + i] = elem(sh->dtype, v, i);
            }
        }
        if (!st && !c->info.has_template) { /* an empty bank: compute no template, attend to none */
            free(c->tmpl_k), free(c->tmpl_v);
            c->tmpl_k = c->tmpl_v = NULL;
        }
    }
    c->rng = msa_sampler_seed(c->p.sampler.seed);
    if (st) {
        msa_memctx_free(c);
        return st;
    }
    *out = c;
    return MSA_OK;
}

void msa_memctx_free(msa_memctx *c) {
    if (!c) return;
    if (c->sess) msa_session_free(c->sess);
    if (c->layers)
        for (int s = 0; s < c->info.shape.n_router; s++)
            free(c->layers[s].index), free(c->layers[s].score), free(c->layers[s].all_scores);
    free(c->layers);
    free(c->tmpl_k), free(c->tmpl_v), free(c->qr), free(c->mask), free(c->logits);
    free(c);
}

const float *msa_memctx_logits(const msa_memctx *c) { return c->logits; }

void msa_memctx_routing(const msa_memctx *c, const msa_memctx_layer **layers, int *n_layers, uint64_t *n_index) {
    *layers = c->layers;
    *n_layers = c->info.shape.n_router;
    *n_index = c->info.next_index;
}

/* Extra K/V of layer l: template (if any) then every chunk of the chosen documents in ascending index. */
static msa_status set_context(msa_memctx *c, int l, const uint32_t *chosen, size_t n_chosen) {
    const msa_bank_shape *sh = &c->info.shape;
    const int KV = sh->n_kv_heads, D = sh->head_dim, T = c->tmpl_k ? sh->n_template : 0;
    const int s = c->slot_of_layer[l];
    uint32_t sorted[1024];
    size_t ns = n_chosen < 1024 ? n_chosen : 1024;
    if (ns) memcpy(sorted, chosen, ns * sizeof *sorted);
    for (size_t i = 1; i < ns; i++) /* insertion sort: ascending index (the reference's single-GPU order) */
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            uint32_t t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    size_t total = (size_t)T;
    uint32_t nch[1024];
    for (size_t i = 0; i < ns && s >= 0; i++) {
        msa_bank_doc_info di;
        MSA_TRY(msa_bank_doc_by_index(c->bank, sorted[i], &di));
        nch[i] = di.n_chunks;
        total += di.n_chunks;
    }
    if (total == 0) return msa_fwd_set_extra_kv(c->sess, l, NULL, NULL, 0);
    if (total > (size_t)INT32_MAX / ((size_t)KV * D))
        return msa_fail(MSA_ERR_LIMIT, "selected memory of %zu chunks is too large", total);
    float *k = malloc(total * KV * D * sizeof *k), *v = malloc(total * KV * D * sizeof *v);
    if (!k || !v) {
        free(k), free(v);
        return msa_fail(MSA_ERR_NOMEM, "out of memory for %zu memory chunks", total);
    }
    /* layout [kv_head][entry][hd] */
    for (int h = 0; h < KV; h++)
        for (int t = 0; t < T; t++) {
            size_t src = (((size_t)l * KV + h) * T + t) * D, dst = ((size_t)h * total + t) * D;
            memcpy(k + dst, c->tmpl_k + src, (size_t)D * sizeof *k);
            memcpy(v + dst, c->tmpl_v + src, (size_t)D * sizeof *v);
        }
    msa_status st = MSA_OK;
    size_t at = (size_t)T;
    for (size_t i = 0; i < ns && s >= 0 && !st; i++) {
        const void *bk, *bv;
        st = msa_bank_doc_content(c->bank, sorted[i], s, &bk, &bv);
        for (uint32_t ch = 0; ch < nch[i] && !st; ch++, at++)
            for (int h = 0; h < KV; h++)
                for (int d = 0; d < D; d++) {
                    size_t src = ((size_t)ch * KV + h) * D + d, dst = ((size_t)h * total + at) * D + d;
                    k[dst] = elem(sh->dtype, bk, src);
                    v[dst] = elem(sh->dtype, bv, src);
                }
    }
    if (!st) st = msa_fwd_set_extra_kv(c->sess, l, k, v, (int)total);
    free(k), free(v);
    return st;
}

/* Route layer l (slot s) with the n query tokens' routing vectors: q_own, the attention's own queries
 * (own_q); or q_proj, router_q_proj(xn) computed by the forward's backend; else computed here from xn (the
 * identity router of read mode). */
static msa_status route_layer(msa_memctx *c, int l, int s, const float *xn, const float *q_own, const float *q_proj,
                              int n) {
    const msa_hparams *hp = msa_model_hparams(c->model);
    const msa_layer *L = &c->model->layers[l];
    msa_memctx_layer *R = &c->layers[s];
    R->n = 0;
    const uint64_t n_index = c->info.next_index;
    for (uint64_t i = 0; i < n_index; i++) R->all_scores[i] = -INFINITY;
    if (c->info.n_chunks > 0) {
        const int hd = hp->head_dim;
        if (q_own) {
            memcpy(c->qr, q_own, (size_t)n * hp->n_head * hd * sizeof *c->qr);
            if (c->unit_q) msa_l2_normalize_rows(c->qr, (size_t)n * hp->n_head, hd);
        } else if (q_proj) { /* router_q_proj (native, or --router in read mode) */
            memcpy(c->qr, q_proj, (size_t)msa_model_router_q(c->model, l)->shape[0] * n * sizeof *c->qr);
        } else {
            /* identity router in read mode: the question's own pre-RoPE KEYS k_norm(k_proj(h)) against the
             * documents' (key-key similarity: q.k says where to attend, k.k that two tokens carry the same
             * content; measured in docs/msa-deviations.md) */
            /* a query-side router (router_file.c) maps the question in place of k_proj, no k_norm */
            msa_matmul(msa_model_threadpool(c->model), L->router_qr ? L->router_qr : L->wk, xn, c->qr, n);
            if (L->k_norm && !L->router_qr)
                for (int t = 0; t < n * hp->n_head_kv; t++) {
                    float *x = c->qr + (size_t)t * hd;
                    double ss = 0;
                    for (int i = 0; i < hd; i++) ss += (double)x[i] * x[i];
                    float r = (float)(1.0 / sqrt(ss / hd + hp->rms_eps));
                    for (int i = 0; i < hd; i++) x[i] = x[i] * r * L->k_norm[i];
                }
        }
        for (int t = 0; t < n; t++) c->mask[t] = c->roles[t] == 0;
        msa_route_query q;
        if (c->info.shape.mode == MSA_BANK_READ && !(c->model->router_st && msa_model_router_q(c->model, l))) {
            /* key rows as they are: [routing tokens][n_head_kv*head_dim] */
            const int dim = hp->n_head_kv * hd;
            int rows = 0;
            for (int t = 0; t < n; t++) rows += c->mask[t];
            if (rows == 0) return msa_fail(MSA_ERR_INVALID_ARG, "routing: the query has no routing tokens");
            q.n = rows;
            q.dim = dim;
            q.q = malloc((size_t)rows * dim * sizeof *q.q);
            if (!q.q) return msa_fail(MSA_ERR_NOMEM, "out of memory");
            for (int t = 0, r = 0; t < n; t++)
                if (c->mask[t]) memcpy(q.q + (size_t)r++ * dim, c->qr + (size_t)t * dim, (size_t)dim * sizeof *q.q);
        } else {
            MSA_TRY(msa_route_query_prepare(&c->rp, c->qr, c->mask, n, &q));
        }
        const msa_bank_span *bs;
        size_t nsp;
        msa_status st = msa_bank_route_spans(c->bank, s, &bs, &nsp);
        msa_route_span *sp = st ? NULL : malloc((nsp ? nsp : 1) * sizeof *sp);
        if (!st && !sp) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !st && i < nsp; i++) {
            sp[i].keys = bs[i].keys;
            sp[i].doc_index = bs[i].doc_index;
            sp[i].n_chunks = bs[i].n_chunks;
        }
        const msa_route_dtype dt = c->info.shape.dtype == MSA_BANK_F32 ? MSA_ROUTE_F32 : MSA_ROUTE_BF16;
        if (!st && c->info.shape.mode == MSA_BANK_READ) { /* read mode's own scoring (readmode.c) */
            bool on_backend = false; /* keys resident on a GPU, else the CPU scan (the same bits) */
            st = msa_read_resident_scores(c->model, msa_bank_snapshot_id(c->bank), s, c->info.shape.n_router, sp, nsp,
                                          dt, &q, n_index, R->all_scores, &on_backend);
            if (!st && !on_backend) { /* the host scan, with the keys' norms kept from earlier questions */
                const float *inv = msa_read_resident_norms(c->model, msa_bank_snapshot_id(c->bank), s,
                                                           c->info.shape.n_router, sp, nsp, dt, q.dim, &st);
                if (!st)
                    st = msa_read_doc_scores_inv(&q, sp, nsp, dt, n_index, inv, R->all_scores,
                                                 msa_model_threadpool(c->model));
            }
        } else if (!st)
            st = msa_route_doc_scores(&c->rp, &q, sp, nsp, dt, n_index, R->all_scores, msa_model_threadpool(c->model));
        free(sp);
        msa_route_query_free(&q);
        if (st) return st;
        R->n = msa_route_topk(R->all_scores, n_index, (size_t)c->p.top_k, R->index, R->score);
    }
    if (c->p.attend_memory) return set_context(c, l, R->index, R->n);
    return MSA_OK;
}

/* The router projection of layer l when routing uses one (native memory, or --router weights in read mode). */
static const msa_tensor *route_proj(void *user, int l) {
    msa_memctx *c = user;
    if (c->slot_of_layer[l] < 0 || c->own_q) return NULL;
    const bool trained = c->info.shape.mode == MSA_BANK_NATIVE || c->model->router_st;
    return trained ? msa_model_router_q(c->model, l) : NULL;
}

static msa_status hook_route_proj(void *user, int l, const float *y, int n) {
    msa_memctx *c = user;
    return route_layer(c, l, c->slot_of_layer[l], NULL, NULL, y, n);
}

static msa_status hook_route(void *user, int l, const float *xn, int n) {
    msa_memctx *c = user;
    const int s = c->slot_of_layer[l];
    if (s < 0 || c->own_q || route_proj(user, l)) return MSA_OK; /* routed by hook_route_proj */
    return route_layer(c, l, s, xn, NULL, NULL, n);
}

static msa_status hook_route_q(void *user, int l, const float *q, int n) {
    msa_memctx *c = user;
    const int s = c->slot_of_layer[l];
    if (s < 0 || !c->own_q) return MSA_OK;
    return route_layer(c, l, s, NULL, q, NULL, n);
}

static msa_status sample(msa_memctx *c, int32_t *next) {
    const msa_hparams *hp = msa_model_hparams(c->model);
    *next = msa_sample(c->logits, hp->n_vocab, &c->p.sampler, &c->rng);
    return MSA_OK;
}

msa_status msa_memctx_prefill(msa_memctx *c, const int32_t *ids, const int8_t *roles, int n, int pos0,
                              bool run_all_layers, int32_t *next) {
    const msa_hparams *hp = msa_model_hparams(c->model);
    if (n < 1) return msa_fail(MSA_ERR_INVALID_ARG, "empty query");
    if (n > c->p.n_ctx)
        return msa_fail(MSA_ERR_LIMIT, "the query is %d tokens, more than the context of %d", n, c->p.n_ctx);
    msa_session_reset(c->sess);
    msa_fwd_clear_extra_kv(c->sess);
    if (c->p.attend_memory && c->tmpl_k)
        for (int l = 0; l < hp->n_layer; l++)
            if (c->slot_of_layer[l] < 0) MSA_TRY(set_context(c, l, NULL, 0));
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) pos[i] = pos0 + i;
    int last_router = 0;
    for (int s = 0; s < c->info.shape.n_router; s++)
        if (c->info.shape.router_layers[s] > last_router) last_router = c->info.shape.router_layers[s];
    c->roles = roles;
    msa_fwd_hooks hooks = {.user = c, .attn_input = hook_route, .q = hook_route_q, .attn_proj = route_proj,
                           .attn_input_proj = hook_route_proj};
    int32_t row = n - 1;
    msa_fwd_batch b = {.n_tokens = n, .ids = ids, .pos = pos, .hooks = &hooks};
    if (run_all_layers) {
        b.logit_rows = &row;
        b.n_logit_rows = 1;
        b.logits = c->logits;
    } else {
        b.n_layers = last_router + 1;
    }
    msa_status st = msa_fwd_eval(c->sess, &b);
    c->roles = NULL;
    free(pos);
    if (st) return st;
    msa_fwd_set_next_pos(c->sess, pos0 + n);
    return run_all_layers && next ? sample(c, next) : MSA_OK;
}

msa_status msa_memctx_feed(msa_memctx *c, const int32_t *ids, int n, int32_t *next) {
    if (n < 1) return msa_fail(MSA_ERR_INVALID_ARG, "nothing to feed");
    if (msa_fwd_n_cached(c->sess) + n > msa_fwd_capacity(c->sess))
        return msa_fail(MSA_ERR_LIMIT, "the conversation reached the context limit of %d tokens",
                        msa_fwd_capacity(c->sess));
    int32_t *block = calloc((size_t)n, sizeof *block); /* all 0: one block, bidirectional within itself */
    if (!block) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    int32_t row = n - 1;
    msa_fwd_batch b = {.n_tokens = n, .ids = ids, .block = n > 1 ? block : NULL, .logit_rows = &row,
                       .n_logit_rows = 1, .logits = c->logits};
    msa_status st = msa_fwd_eval(c->sess, &b);
    free(block);
    if (st) return st;
    return sample(c, next);
}
