/* forward.c — the decoder forward pass (Qwen3 / Llama) over a session's KV cache: embedding, per layer
 * RMSNorm -> q/k/v projections -> (Qwen3) per-head q/k RMSNorm -> RoPE -> attention with seq/block/valid
 * visibility and per-layer extra K/V -> o_proj -> residual -> RMSNorm -> SiLU-gated MLP -> residual; final
 * RMSNorm and lm_head for the requested rows. Semantics and numerics: forward.h.
 *
 * Every computation is an operation of the model's backend (backend.h): this file decides what runs in which
 * order and keeps the batch bookkeeping (positions, sequences, blocks, visibility) on the host; the backend
 * owns the activations, the KV cache and the arithmetic. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util/error.h"

struct msa_session {
    msa_model *model;
    msa_backend *be;      /* the model's backend; every msa_buf below is one of its buffers */
    int n_ctx;            /* cache capacity in slots */
    int n_cached;         /* slots in use */
    int next_pos;         /* RoPE position of the next default-position valid token */
    msa_buf **k_cache;    /* [n_layer] -> [n_head_kv][n_ctx][head_dim] f32 */
    msa_buf **v_cache;    /* [n_layer] -> [n_head_kv][n_ctx][head_dim] f32 */
    msa_buf *d_slot_seq;  /* [n_ctx] int32, the backend's copy of slot_seq */
    msa_buf *d_slot_valid; /* [n_ctx] uint8, the backend's copy of slot_valid */
    int32_t *slot_seq;    /* [n_ctx] host */
    int32_t *slot_block;  /* [n_ctx] absolute block ids, non-decreasing over slots */
    uint8_t *slot_valid;  /* [n_ctx] */
    msa_buf **ex_k, **ex_v; /* [n_layer] -> [n_head_kv][ex_n[l]][head_dim] f32 extra K/V, or NULL */
    int *ex_n;            /* [n_layer] */
    /* scratch for a batch of up to cap tokens (grown, never per token); backend buffers */
    int cap;
    msa_buf *x;           /* [cap x n_embd] residual stream */
    msa_buf *xn;          /* [cap x n_embd] normed input of the current sub-block */
    msa_buf *q;           /* [cap x n_head*head_dim] */
    msa_buf *k, *v;       /* [cap x n_head_kv*head_dim] */
    msa_buf *att;         /* [cap x n_head*head_dim] attention output before o_proj */
    msa_buf *gate, *up;   /* [cap x n_ff] */
    msa_buf *tmp;         /* [cap x n_embd] projection output before the residual add */
    msa_buf *kr;          /* [cap x n_head*head_dim] a layer's router projection (msa_fwd_pool, attn_proj) */
    msa_buf *pooled;      /* [cap x n_head_kv*head_dim] chunk means before they are copied out */
    msa_buf *d_crow0, *d_clen; /* [cap] int32 chunk row ranges of msa_fwd_pool */
    msa_buf *logits;      /* [cap x n_vocab] f32 (backends without host memory; grown on demand) */
    int logits_cap;       /* rows of logits */
    msa_buf *rope_cos, *rope_sin; /* [cap x head_dim/2] f32 */
    msa_buf *d_ids, *d_rows; /* [cap] int32 token ids, logit rows */
    msa_buf *d_seq, *d_begin, *d_end; /* [cap] int32 per-row attention controls (msa_attn_args) */
    /* host side of the batch */
    float *h_cos, *h_sin; /* [cap x head_dim/2] */
    int32_t *b_pos, *b_seq, *b_block, *b_begin, *b_end; /* [cap] resolved per-token controls */
    bool b_shared_keys; /* the batch's rows share their keys (msa_attn_args.shared_keys) */
    uint8_t *b_valid;
    float *h_view[3];     /* [cap x max(n_embd, n_head*head_dim)] host copies for hooks and taps (device
                           * backends only) */
    float *inv_freq;      /* [head_dim/2] RoPE inverse frequencies */
    float *const *taps;   /* test taps, see msa_fwd_set_layer_taps */
    /* First cache slot of each sequence id (open addressing, seq -1 = empty; seq_cap a power of two). An entry
     * counts while its slot is below the cache's fill or it was made by the batch being resolved (gen), so
     * truncation and failed batches need no cleanup: for every sequence with a slot below n_cached, the
     * entry holds its lowest slot. */
    struct seq_first { int32_t seq, slot; uint32_t gen; } *seq_tab;
    int seq_cap, seq_used;
    uint32_t gen;
};

static inline float bf16_round(float f) { return msa_bf16_to_f32(msa_f32_to_bf16(f)); }

/* ------------------------------------------------------------------------------------------ session */

msa_session_params msa_session_default_params(void) {
    msa_session_params p = {.n_ctx = 0};
    return p;
}

#define BE(s) ((s)->be->ops)

static void buf_free(msa_session *s, msa_buf **b) {
    if (*b) BE(s)->free(s->be, *b);
    *b = NULL;
}

static void free_scratch(msa_session *s) {
    msa_buf **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->gate, &s->up, &s->tmp, &s->kr,
                        &s->pooled, &s->d_crow0, &s->d_clen, &s->rope_cos, &s->rope_sin, &s->d_ids, &s->d_rows,
                        &s->d_seq, &s->d_begin, &s->d_end};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(s, bufs[i]);
    free(s->h_cos); free(s->h_sin);
    free(s->b_pos); free(s->b_seq); free(s->b_block); free(s->b_begin); free(s->b_end); free(s->b_valid);
    for (int i = 0; i < 3; i++) free(s->h_view[i]);
    s->h_cos = s->h_sin = NULL;
    s->b_pos = s->b_seq = s->b_block = s->b_begin = s->b_end = NULL;
    s->b_valid = NULL;
    s->h_view[0] = s->h_view[1] = s->h_view[2] = NULL;
    s->cap = 0;
}

static msa_status ensure_scratch(msa_session *s, int n) {
    if (n <= s->cap) return MSA_OK;
    free_scratch(s);
    const msa_hparams *hp = &s->model->hp;
    size_t N = (size_t)n, E = (size_t)hp->n_embd, Dq = (size_t)hp->n_head * hp->head_dim,
           Dkv = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff, H2 = (size_t)hp->head_dim / 2;
    msa_backend *be = s->be;
    const size_t f4 = sizeof(float);
    s->x = BE(s)->alloc(be, N * E * f4);
    s->xn = BE(s)->alloc(be, N * E * f4);
    s->q = BE(s)->alloc(be, N * Dq * f4);
    s->k = BE(s)->alloc(be, N * Dkv * f4);
    s->v = BE(s)->alloc(be, N * Dkv * f4);
    s->att = BE(s)->alloc(be, N * Dq * f4);
    s->gate = BE(s)->alloc(be, N * F * f4);
    s->up = BE(s)->alloc(be, N * F * f4);
    s->tmp = BE(s)->alloc(be, N * E * f4);
    s->kr = BE(s)->alloc(be, N * (Dq > Dkv ? Dq : Dkv) * f4);
    s->pooled = BE(s)->alloc(be, N * Dkv * f4);
    s->d_crow0 = BE(s)->alloc(be, N * 4);
    s->d_clen = BE(s)->alloc(be, N * 4);
    s->rope_cos = BE(s)->alloc(be, N * H2 * f4);
    s->rope_sin = BE(s)->alloc(be, N * H2 * f4);
    s->d_ids = BE(s)->alloc(be, N * 4);
    s->d_rows = BE(s)->alloc(be, N * 4);
    s->d_seq = BE(s)->alloc(be, N * 4);
    s->d_begin = BE(s)->alloc(be, N * 4);
    s->d_end = BE(s)->alloc(be, N * 4);
    s->h_cos = malloc(N * H2 * f4);
    s->h_sin = malloc(N * H2 * f4);
    s->b_pos = malloc(N * sizeof(int32_t));
    s->b_seq = malloc(N * sizeof(int32_t));
    s->b_block = malloc(N * sizeof(int32_t));
    s->b_begin = malloc(N * sizeof(int32_t));
    s->b_end = malloc(N * sizeof(int32_t));
    s->b_valid = malloc(N);
    bool ok = true;
    if (!BE(s)->host_memory)
        for (int i = 0; i < 3; i++) ok = ok && (s->h_view[i] = malloc(N * (E > Dq ? E : Dq) * f4)) != NULL;
    if (!ok || !s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->gate || !s->up || !s->tmp || !s->kr ||
        !s->pooled || !s->d_crow0 || !s->d_clen ||
        !s->rope_cos || !s->rope_sin || !s->d_ids || !s->d_rows || !s->d_seq || !s->d_begin || !s->d_end ||
        !s->h_cos || !s->h_sin || !s->b_pos || !s->b_seq || !s->b_block || !s->b_begin || !s->b_end ||
        !s->b_valid) {
        free_scratch(s);
        return msa_fail(MSA_ERR_NOMEM, "out of memory for a batch of %d tokens", n);
    }
    s->cap = n;
    return MSA_OK;
}

msa_status msa_session_new(msa_model *model, const msa_session_params *params, msa_session **out) {
    *out = NULL;
    if (!model) return msa_fail(MSA_ERR_INVALID_ARG, "msa_session_new: model is NULL");
    msa_session_params defaults = msa_session_default_params();
    if (!params) params = &defaults;
    const msa_hparams *hp = &model->hp;
    int n_ctx = params->n_ctx;
    if (n_ctx < 0 || n_ctx > (1 << 24)) return msa_fail(MSA_ERR_INVALID_ARG, "n_ctx %d is out of range", n_ctx);
    if (n_ctx == 0) n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    msa_session *s = calloc(1, sizeof *s);
    if (!s) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    s->model = model;
    s->be = model->be;
    s->n_ctx = n_ctx;
    int L = hp->n_layer;
    size_t per_layer = (size_t)hp->n_head_kv * (size_t)n_ctx * (size_t)hp->head_dim * sizeof(float);
    s->k_cache = calloc((size_t)L, sizeof(msa_buf *));
    s->v_cache = calloc((size_t)L, sizeof(msa_buf *));
    s->ex_k = calloc((size_t)L, sizeof(msa_buf *));
    s->ex_v = calloc((size_t)L, sizeof(msa_buf *));
    s->ex_n = calloc((size_t)L, sizeof(int));
    s->slot_seq = malloc((size_t)n_ctx * sizeof(int32_t));
    s->slot_block = malloc((size_t)n_ctx * sizeof(int32_t));
    s->slot_valid = malloc((size_t)n_ctx);
    s->inv_freq = malloc((size_t)(hp->head_dim / 2) * sizeof(float));
    bool ok = s->k_cache && s->v_cache && s->ex_k && s->ex_v && s->ex_n && s->slot_seq && s->slot_block &&
              s->slot_valid && s->inv_freq;
    if (ok) {
        s->d_slot_seq = BE(s)->alloc(s->be, (size_t)n_ctx * sizeof(int32_t));
        s->d_slot_valid = BE(s)->alloc(s->be, (size_t)n_ctx);
        ok = s->d_slot_seq && s->d_slot_valid;
    }
    /* zeroed allocations: on the CPU the cache's pages are only touched as slots fill */
    for (int l = 0; ok && l < L; l++) {
        s->k_cache[l] = BE(s)->alloc(s->be, per_layer);
        s->v_cache[l] = BE(s)->alloc(s->be, per_layer);
        ok = s->k_cache[l] && s->v_cache[l];
    }
    if (!ok) {
        msa_session_free(s);
        return msa_fail(MSA_ERR_NOMEM, "out of memory for a KV cache of %d tokens", n_ctx);
    }
    /* transformers: inv_freq = 1 / base^(arange(0, d, 2) / d) in float32 */
    for (int i = 0; i < hp->head_dim / 2; i++)
        s->inv_freq[i] = 1.0f / powf(hp->rope_theta, (float)(2 * i) / (float)hp->head_dim);
    *out = s;
    return MSA_OK;
}

void msa_session_free(msa_session *s) {
    if (!s) return;
    int L = s->model->hp.n_layer;
    for (int l = 0; l < L; l++) {
        if (s->k_cache) buf_free(s, &s->k_cache[l]);
        if (s->v_cache) buf_free(s, &s->v_cache[l]);
        if (s->ex_k) buf_free(s, &s->ex_k[l]);
        if (s->ex_v) buf_free(s, &s->ex_v[l]);
    }
    buf_free(s, &s->d_slot_seq);
    buf_free(s, &s->d_slot_valid);
    buf_free(s, &s->logits);
    free(s->k_cache); free(s->v_cache); free(s->ex_k); free(s->ex_v); free(s->ex_n);
    free(s->slot_seq); free(s->slot_block); free(s->slot_valid); free(s->inv_freq); free(s->seq_tab);
    free_scratch(s);
    free(s);
}

void msa_session_reset(msa_session *s) {
    s->n_cached = 0;
    s->next_pos = 0;
    for (int i = 0; i < s->seq_cap; i++) s->seq_tab[i].seq = -1;
    s->seq_used = 0;
}

int msa_session_n_past(const msa_session *s) { return s->n_cached; }
int msa_fwd_n_cached(const msa_session *s) { return s->n_cached; }
int msa_fwd_next_pos(const msa_session *s) { return s->next_pos; }
void msa_fwd_set_next_pos(msa_session *s, int pos) { s->next_pos = pos; }
int msa_fwd_capacity(const msa_session *s) { return s->n_ctx; }
const msa_model *msa_session_model(const msa_session *s) { return s->model; }
void msa_fwd_set_layer_taps(msa_session *s, float *const *per_layer) { s->taps = per_layer; }

void msa_fwd_truncate(msa_session *s, int n) {
    if (n >= 0 && n < s->n_cached) s->n_cached = n;
}

msa_status msa_fwd_set_extra_kv(msa_session *s, int layer, const float *k, const float *v, int n) {
    const msa_hparams *hp = &s->model->hp;
    if (layer < 0 || layer >= hp->n_layer || n < 0 || n > (1 << 22) || (n > 0 && (!k || !v)))
        return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_set_extra_kv: bad layer %d or count %d", layer, n);
    buf_free(s, &s->ex_k[layer]);
    buf_free(s, &s->ex_v[layer]);
    s->ex_n[layer] = 0;
    if (n > 0) {
        size_t sz = (size_t)hp->n_head_kv * (size_t)n * (size_t)hp->head_dim * sizeof(float);
        s->ex_k[layer] = BE(s)->alloc(s->be, sz);
        s->ex_v[layer] = BE(s)->alloc(s->be, sz);
        msa_status st = !s->ex_k[layer] || !s->ex_v[layer]
                            ? msa_fail(MSA_ERR_NOMEM, "out of memory for %d extra K/V entries", n)
                            : BE(s)->upload(s->be, s->ex_k[layer], 0, k, sz);
        if (st == MSA_OK) st = BE(s)->upload(s->be, s->ex_v[layer], 0, v, sz);
        if (st != MSA_OK) {
            buf_free(s, &s->ex_k[layer]);
            buf_free(s, &s->ex_v[layer]);
            return st;
        }
        s->ex_n[layer] = n;
    }
    return MSA_OK;
}

void msa_fwd_clear_extra_kv(msa_session *s) {
    for (int l = 0; l < s->model->hp.n_layer; l++) msa_fwd_set_extra_kv(s, l, NULL, NULL, 0);
}

/* -------------------------------------------------------------------------------------------- eval */

static struct seq_first *seq_slot(struct seq_first *tab, int cap, int32_t seq) {
    uint32_t i = ((uint32_t)seq * 2654435761u) & (uint32_t)(cap - 1);
    while (tab[i].seq != -1 && tab[i].seq != seq) i = (i + 1) & (uint32_t)(cap - 1);
    return &tab[i];
}

/* The lowest cache slot of seq among slots < base and the current batch's rows, or -1. */
static int seq_first_slot(const msa_session *s, int32_t seq, int base) {
    if (!s->seq_cap) return -1;
    const struct seq_first *e = seq_slot(s->seq_tab, s->seq_cap, seq);
    return e->seq == seq && (e->slot < base || e->gen == s->gen) ? e->slot : -1;
}

static msa_status seq_note_first(msa_session *s, int32_t seq, int slot) {
    if (2 * (s->seq_used + 1) > s->seq_cap) {
        int cap = s->seq_cap ? 2 * s->seq_cap : 64;
        struct seq_first *t = malloc((size_t)cap * sizeof *t);
        if (!t) return msa_fail(MSA_ERR_NOMEM, "out of memory for %d sequence ids", s->seq_used + 1);
        for (int i = 0; i < cap; i++) t[i].seq = -1;
        for (int i = 0; i < s->seq_cap; i++)
            if (s->seq_tab[i].seq != -1) *seq_slot(t, cap, s->seq_tab[i].seq) = s->seq_tab[i];
        free(s->seq_tab);
        s->seq_tab = t;
        s->seq_cap = cap;
    }
    struct seq_first *e = seq_slot(s->seq_tab, s->seq_cap, seq);
    if (e->seq == -1) s->seq_used++;
    *e = (struct seq_first){seq, slot, s->gen};
    return MSA_OK;
}

static msa_status resolve_batch(msa_session *s, const msa_fwd_batch *b) {
    const msa_hparams *hp = &s->model->hp;
    const int n = b->n_tokens, base = s->n_cached;
    int pos = s->next_pos;
    for (int i = 0; i < n; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= hp->n_vocab)
            return msa_fail(MSA_ERR_INVALID_ARG, "token id %d is outside the vocabulary (%d)", b->ids[i], hp->n_vocab);
        s->b_valid[i] = b->valid ? (b->valid[i] != 0) : 1;
        s->b_seq[i] = b->seq ? b->seq[i] : 0;
        if (s->b_seq[i] < 0) return msa_fail(MSA_ERR_INVALID_ARG, "negative sequence id at token %d", i);
        if (b->pos) {
            s->b_pos[i] = b->pos[i];
        } else {
            s->b_pos[i] = pos; /* masked tokens take the next position without advancing it */
            pos += s->b_valid[i];
        }
        int blk = b->block ? b->block[i] : i;
        if (blk < 0 || blk > i || (i > 0 && blk < s->b_block[i - 1] - base))
            return msa_fail(MSA_ERR_INVALID_ARG, "block id %d at token %d is not non-decreasing within [0, %d]",
                            blk, i, i);
        s->b_block[i] = base + blk;
    }
    /* visible slot range: keys up to the last slot whose block <= the query's block (blocks non-decreasing) */
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (j < i) j = i;
        while (j + 1 < n && s->b_block[j + 1] <= s->b_block[i]) j++;
        s->b_end[i] = base + j + 1;
    }
    /* first cache slot of each row's sequence: the slots below hold only other sequences, attention skips
     * them unread (stage-1 batches of many documents and batched decoding stay linear, not quadratic) */
    s->gen++;
    for (int i = 0; i < n; i++) {
        if (i > 0 && s->b_seq[i] == s->b_seq[i - 1]) {
            s->b_begin[i] = s->b_begin[i - 1];
            continue;
        }
        int first = seq_first_slot(s, s->b_seq[i], base);
        if (first < 0) {
            first = base + i;
            MSA_TRY(seq_note_first(s, s->b_seq[i], first));
        }
        s->b_begin[i] = first;
    }
    bool one_seq = true, all_new = true;
    for (int i = 0; i < n; i++) {
        one_seq = one_seq && s->b_seq[i] == s->b_seq[0];
        all_new = all_new && s->b_begin[i] >= base;
    }
    s->b_shared_keys = one_seq || all_new;
    if (!b->pos) s->next_pos = pos;
    return MSA_OK;
}

static void rope_tables(msa_session *s, int n) {
    const msa_hparams *hp = &s->model->hp;
    const int h2 = hp->head_dim / 2;
    const bool bf16 = s->model->bf16_acts;
    /* GGUF: ggml_rope_cache_init's angle, theta = p * theta_scale^k by repeated f32 multiplication */
    const float theta_scale = powf(s->model->hp.rope_theta, -2.0f / (float)hp->head_dim);
    for (int i = 0; i < n; i++) {
        float p = (float)s->b_pos[i], theta = p;
        for (int k = 0; k < h2; k++, theta *= theta_scale) {
            float a = s->model->llamacpp_attn ? theta : s->inv_freq[k] * p; /* transformers: inv_freq @ position_ids */
            float c = cosf(a), sn = sinf(a);
            s->h_cos[(size_t)i * h2 + k] = bf16 ? bf16_round(c) : c;
            s->h_sin[(size_t)i * h2 + k] = bf16 ? bf16_round(sn) : sn;
        }
    }
}

/* A host pointer to the first `floats` values of buffer b (the buffer itself on a host backend, a copy in
 * h_view[which] otherwise). NULL after a failed transfer (the message is recorded). */
static const float *host_view(msa_session *s, const msa_buf *b, size_t floats, int which) {
    return BE(s)->view(s->be, b, 0, floats * sizeof(float), s->h_view[which]);
}

#define VIEW_OR_FAIL(var, s, b, floats, which)                                                               \
    const float *var = host_view(s, b, floats, which);                                                      \
    if (!var) return msa_fail_prefix(MSA_ERR_IO, "reading the %s activations back", s->be->ops->name)

/* Chunk means of src [n][Dkv] into the host array out [n_chunks][Dkv] (msa_fwd_pool). */
static msa_status pool_out(msa_session *s, const msa_buf *src, const msa_fwd_pool *p, float *out) {
    const size_t Dkv = (size_t)s->model->hp.n_head_kv * s->model->hp.head_dim;
    MSA_TRY(BE(s)->pool(s->be, src, (int)Dkv, s->d_crow0, s->d_clen, p->n_chunks, s->pooled));
    return BE(s)->download(s->be, out, s->pooled, 0, (size_t)p->n_chunks * Dkv * sizeof(float));
}

static msa_status run_layer(msa_session *s, int l, int n, const msa_fwd_hooks *hooks, const msa_fwd_pool *pool) {
    msa_model *m = s->model;
    const msa_hparams *hp = &m->hp;
    const msa_layer *L = &m->layers[l];
    const msa_backend_ops *ops = BE(s);
    msa_backend *be = s->be;
    const int E = hp->n_embd, H = hp->n_head, KV = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const size_t Dq = (size_t)H * D, Dkv = (size_t)KV * D;
    const bool bf16 = m->bf16_acts;

    ops->rmsnorm(be, s->xn, s->x, NULL, L->attn_norm, n, E, hp->rms_eps, bf16);
    if (hooks && hooks->attn_input) {
        VIEW_OR_FAIL(xn, s, s->xn, (size_t)n * E, 0);
        MSA_TRY(hooks->attn_input(hooks->user, l, xn, n));
    }

    ops->matmul(be, 3, (const msa_tensor *const[]){L->wq, L->wk, L->wv}, s->xn, (msa_buf *const[]){s->q, s->k, s->v},
                n);
    const msa_tensor *proj = hooks && hooks->attn_proj && hooks->attn_input_proj ? hooks->attn_proj(hooks->user, l) : NULL;
    if (proj) {
        if (proj->n_dims != 2 || proj->shape[1] != E || proj->shape[0] > (int64_t)Dq)
            return msa_fail(MSA_ERR_INVALID_ARG, "layer %d: a hook's projection is not [<= %zu, %d]", l, Dq, E);
        ops->matmul(be, 1, &proj, s->xn, &s->kr, n);
        VIEW_OR_FAIL(y, s, s->kr, (size_t)n * proj->shape[0], 0);
        MSA_TRY(hooks->attn_input_proj(hooks->user, l, y, n));
    }
    if (pool && pool->r[l]) { /* the router projection of the same normed input, pooled where it is */
        ops->matmul(be, 1, &pool->proj[l], s->xn, &s->kr, n);
        MSA_TRY(pool_out(s, s->kr, pool, pool->r[l]));
    }
    if (bf16) {
        ops->round(be, s->q, (size_t)n * Dq, false);
        ops->round(be, s->k, (size_t)n * Dkv, false);
        ops->round(be, s->v, (size_t)n * Dkv, false);
    }
    ops->norm_rope(be, s->q, n, H, D, L->q_norm, hp->rms_eps, s->rope_cos, s->rope_sin, hp->rope_style, bf16,
                   m->llamacpp_attn);
    ops->norm_rope(be, s->k, n, KV, D, L->k_norm, hp->rms_eps, s->rope_cos, s->rope_sin, hp->rope_style, bf16,
                   m->llamacpp_attn);
    if (m->llamacpp_attn) { /* llama.cpp keeps its KV cache in f16 */
        ops->round(be, s->k, (size_t)n * Dkv, true);
        ops->round(be, s->v, (size_t)n * Dkv, true);
    }
    if (hooks && hooks->q) {
        VIEW_OR_FAIL(q, s, s->q, (size_t)n * Dq, 0);
        MSA_TRY(hooks->q(hooks->user, l, q, n));
    }
    if (hooks && hooks->kv) {
        VIEW_OR_FAIL(k, s, s->k, (size_t)n * Dkv, 1);
        VIEW_OR_FAIL(v, s, s->v, (size_t)n * Dkv, 2);
        MSA_TRY(hooks->kv(hooks->user, l, k, v, n));
    }

    if (pool && pool->k[l]) MSA_TRY(pool_out(s, s->k, pool, pool->k[l]));
    if (pool && pool->v[l]) MSA_TRY(pool_out(s, s->v, pool, pool->v[l]));

    const int base = s->n_cached;
    ops->kv_store(be, s->k_cache[l], s->v_cache[l], s->k, s->v, base, n, KV, D, s->n_ctx);
    msa_attn_args a = {
        .n = n, .base = base, .n_ctx = s->n_ctx, .q = s->q, .out = s->att,
        .k_cache = s->k_cache[l], .v_cache = s->v_cache[l],
        .ex_k = s->ex_k[l], .ex_v = s->ex_v[l], .n_ex = s->ex_n[l],
        .slot_seq = s->d_slot_seq, .slot_valid = s->d_slot_valid,
        .q_seq = s->d_seq, .q_begin = s->d_begin, .q_end = s->d_end,
        .bf16 = bf16, .llamacpp = m->llamacpp_attn, .shared_keys = s->b_shared_keys,
    };
    MSA_TRY(ops->attention(be, &a, H, KV, D));

    ops->matmul(be, 1, &L->wo, s->att, &s->tmp, n);
    ops->add(be, s->x, s->tmp, (size_t)n * E, bf16);

    ops->rmsnorm(be, s->xn, s->x, NULL, L->ffn_norm, n, E, hp->rms_eps, bf16);
    ops->matmul(be, 2, (const msa_tensor *const[]){L->w_gate, L->w_up}, s->xn, (msa_buf *const[]){s->gate, s->up}, n);
    ops->swiglu(be, s->gate, s->up, n, F,
                m->llamacpp_attn && !bf16 ? MSA_SWIGLU_GGML : bf16 ? MSA_SWIGLU_BF16 : MSA_SWIGLU_F32);
    ops->matmul(be, 1, &L->w_down, s->gate, &s->tmp, n);
    ops->add(be, s->x, s->tmp, (size_t)n * E, bf16);
    return MSA_OK;
}

/* Send the batch's host-side controls to the backend: ids, RoPE tables, per-row attention controls and the
 * new cache slots' sequence/validity. */
static msa_status upload_batch(msa_session *s, const msa_fwd_batch *b, int base) {
    const msa_backend_ops *ops = BE(s);
    const size_t n = (size_t)b->n_tokens, h2 = (size_t)s->model->hp.head_dim / 2;
    MSA_TRY(ops->upload(s->be, s->d_ids, 0, b->ids, n * sizeof(int32_t)));
    MSA_TRY(ops->upload(s->be, s->rope_cos, 0, s->h_cos, n * h2 * sizeof(float)));
    MSA_TRY(ops->upload(s->be, s->rope_sin, 0, s->h_sin, n * h2 * sizeof(float)));
    MSA_TRY(ops->upload(s->be, s->d_seq, 0, s->b_seq, n * sizeof(int32_t)));
    MSA_TRY(ops->upload(s->be, s->d_begin, 0, s->b_begin, n * sizeof(int32_t)));
    MSA_TRY(ops->upload(s->be, s->d_end, 0, s->b_end, n * sizeof(int32_t)));
    MSA_TRY(ops->upload(s->be, s->d_slot_seq, (size_t)base * sizeof(int32_t), s->slot_seq + base,
                        n * sizeof(int32_t)));
    return ops->upload(s->be, s->d_slot_valid, (size_t)base, s->slot_valid + base, n);
}

static msa_status run_logits(msa_session *s, const msa_fwd_batch *b) {
    const msa_model *m = s->model;
    const msa_backend_ops *ops = BE(s);
    const int E = m->hp.n_embd, V = m->hp.n_vocab, R = b->n_logit_rows;
    MSA_TRY(ops->upload(s->be, s->d_rows, 0, b->logit_rows, (size_t)R * sizeof(int32_t)));
    ops->rmsnorm(s->be, s->xn, s->x, s->d_rows, m->output_norm, R, E, m->hp.rms_eps, m->bf16_acts);
    /* host backends write straight into the caller's array; otherwise the session's device buffer */
    msa_buf *out = (msa_buf *)(void *)b->logits;
    if (!ops->host_memory || !b->logits) {
        if (R > s->logits_cap) {
            buf_free(s, &s->logits);
            s->logits_cap = 0;
            if (!(s->logits = ops->alloc(s->be, (size_t)R * (size_t)V * sizeof(float)))) return MSA_ERR_NOMEM;
            s->logits_cap = R;
        }
        out = s->logits;
    }
    ops->matmul(s->be, 1, &m->output, s->xn, &out, R);
    if (m->bf16_acts) ops->round(s->be, out, (size_t)R * V, false);
    if (b->argmax) {
        ops->argmax(s->be, out, R, V, s->d_rows); /* the rows were uploaded above and are no longer needed */
        MSA_TRY(ops->download(s->be, b->argmax, s->d_rows, 0, (size_t)R * sizeof(int32_t)));
    }
    if (b->logits && out != (msa_buf *)(void *)b->logits)
        MSA_TRY(ops->download(s->be, b->logits, out, 0, (size_t)R * V * sizeof(float)));
    return MSA_OK;
}

msa_status msa_fwd_eval(msa_session *s, const msa_fwd_batch *b) {
    const msa_model *m = s->model;
    const msa_hparams *hp = &m->hp;
    const int n = b->n_tokens, E = hp->n_embd;
    if (n <= 0) return MSA_OK;
    if (!b->ids) return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: ids is NULL");
    if (n > s->n_ctx - s->n_cached)
        return msa_fail(MSA_ERR_LIMIT, "context full: %d cached + %d new tokens > capacity %d", s->n_cached, n,
                        s->n_ctx);
    int n_layers = b->n_layers > 0 && b->n_layers < hp->n_layer ? b->n_layers : hp->n_layer;
    if (b->n_logit_rows > 0) {
        if (n_layers != hp->n_layer || !b->logit_rows || (!b->logits && !b->argmax))
            return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: logits need all layers, rows and a buffer");
        for (int r = 0; r < b->n_logit_rows; r++)
            if (b->logit_rows[r] < 0 || b->logit_rows[r] >= n)
                return msa_fail(MSA_ERR_INVALID_ARG, "logit row %d is outside the batch", b->logit_rows[r]);
    }
    if (b->pool) {
        const msa_fwd_pool *p = b->pool;
        const int64_t Dkv = (int64_t)hp->n_head_kv * hp->head_dim;
        if (p->n_chunks < 0 || p->n_chunks > n || (p->n_chunks && (!p->chunk_row0 || !p->chunk_len)) || !p->k ||
            !p->v || !p->r)
            return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: malformed pooling request");
        for (int c = 0; c < p->n_chunks; c++)
            if (p->chunk_row0[c] < 0 || p->chunk_len[c] < 1 || p->chunk_row0[c] > n - p->chunk_len[c])
                return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: pooled chunk %d is outside the batch", c);
        for (int l = 0; l < n_layers; l++)
            if (p->r[l] && (!p->proj || !p->proj[l] || p->proj[l]->shape[0] != Dkv || p->proj[l]->shape[1] != E))
                return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: layer %d's pooled projection is not [%lld, %d]",
                                l, (long long)Dkv, E);
    }
    int big = n > b->n_logit_rows ? n : b->n_logit_rows;
    MSA_TRY(ensure_scratch(s, big));
    const int saved_pos = s->next_pos;
    MSA_TRY(resolve_batch(s, b));
    const int base = s->n_cached;
    for (int i = 0; i < n; i++) {
        s->slot_seq[base + i] = s->b_seq[i];
        s->slot_block[base + i] = s->b_block[i];
        s->slot_valid[base + i] = s->b_valid[i];
    }
    rope_tables(s, n);
    msa_status st = upload_batch(s, b, base);
    if (st == MSA_OK && b->pool && b->pool->n_chunks) {
        const size_t cb = (size_t)b->pool->n_chunks * sizeof(int32_t);
        st = BE(s)->upload(s->be, s->d_crow0, 0, b->pool->chunk_row0, cb);
        if (st == MSA_OK) st = BE(s)->upload(s->be, s->d_clen, 0, b->pool->chunk_len, cb);
    }
    if (st == MSA_OK) BE(s)->embed(s->be, m->tok_embd, s->d_ids, n, s->x);
    for (int l = 0; st == MSA_OK && l < n_layers; l++) {
        st = run_layer(s, l, n, b->hooks, b->pool);
        if (st == MSA_OK && s->taps && s->taps[l])
            st = BE(s)->download(s->be, s->taps[l], s->x, 0, (size_t)n * E * sizeof(float));
    }
    if (st == MSA_OK && b->hidden) st = BE(s)->download(s->be, b->hidden, s->x, 0, (size_t)n * E * sizeof(float));
    if (st == MSA_OK && b->n_logit_rows > 0) st = run_logits(s, b);
    if (st == MSA_OK) st = BE(s)->sync(s->be);
    if (st != MSA_OK) {
        s->next_pos = saved_pos;
        return st;
    }
    s->n_cached = base + n;
    return MSA_OK;
}
