/* forward.c — the decoder forward pass (Qwen3 / Llama) over a session's KV cache: embedding, per layer
 * RMSNorm -> q/k/v projections -> (Qwen3) per-head q/k RMSNorm -> RoPE -> attention with seq/block/valid
 * visibility and per-layer extra K/V -> o_proj -> residual -> RMSNorm -> SiLU-gated MLP -> residual; final
 * RMSNorm and lm_head for the requested rows. Semantics and numerics: forward.h. Matrix products go through
 * msa_matmul (thread pool, SIMD, stored dtype); attention is parallel over (token, head) pairs. */
#include "model/forward.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "util/error.h"

struct msa_session {
    msa_model *model;
    int n_ctx;            /* cache capacity in slots */
    int n_cached;         /* slots in use */
    int next_pos;         /* RoPE position of the next default-position valid token */
    float **k_cache;      /* [n_layer] -> [n_head_kv][n_ctx][head_dim] */
    float **v_cache;      /* [n_layer] -> [n_head_kv][n_ctx][head_dim] */
    int32_t *slot_seq;    /* [n_ctx] */
    int32_t *slot_block;  /* [n_ctx] absolute block ids, non-decreasing over slots */
    uint8_t *slot_valid;  /* [n_ctx] */
    float **ex_k, **ex_v; /* [n_layer] -> [n_head_kv][ex_n[l]][head_dim] extra K/V, or NULL */
    int *ex_n;            /* [n_layer] */
    int ex_max;           /* max over layers of ex_n */
    /* scratch for a batch of up to cap tokens (grown, never per token) */
    int cap;
    float *x;             /* [cap x n_embd] residual stream */
    float *xn;            /* [cap x max(n_embd, ...)] normed input of the current sub-block */
    float *q;             /* [cap x n_head*head_dim] */
    float *k, *v;         /* [cap x n_head_kv*head_dim] */
    float *att;           /* [cap x n_head*head_dim] attention output before o_proj */
    float *gate, *up;     /* [cap x n_ff] */
    float *tmp;           /* [cap x n_embd] projection output before the residual add */
    float *rope_cos, *rope_sin; /* [cap x head_dim/2] */
    int32_t *b_pos, *b_seq, *b_block, *b_end; /* [cap] resolved per-token controls; b_end: visible slot end */
    uint8_t *b_valid;
    int scores_cap;       /* per-thread floats in scores */
    float *scores;        /* [n_threads x scores_cap] */
    float *inv_freq;      /* [head_dim/2] RoPE inverse frequencies */
    float *const *taps;   /* test taps, see msa_fwd_set_layer_taps */
};

/* ----------------------------------------------------------------------------------------- numerics */

static inline float bf16_round(float f) { return msa_bf16_to_f32(msa_f32_to_bf16(f)); }

static inline float f16_round(float f) { return msa_f16_to_f32(msa_f32_to_f16(f)); }

static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}

/* y = w * (x / rms(x)); statistics in f32/f64 as transformers' fp32 upcast; bf16: normalised value rounded,
 * then the product rounded (Qwen3RMSNorm: weight * hidden.to(bf16)). */
static void rmsnorm(float *y, const float *x, const float *w, int n, float eps, bool bf16) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]); /* f32 squares, as torch's x.pow(2) and ggml */
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    if (bf16) {
        for (int i = 0; i < n; i++) y[i] = bf16_round(w[i] * bf16_round(x[i] * scale));
    } else {
        for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * scale);
    }
}

/* Rotate one head vector in place with per-pair cos/sin. NEOX pairs (i, i+d/2); NORM pairs (2i, 2i+1). */
static void rope_apply(float *v, const float *c, const float *s, int d, msa_rope_style style, bool bf16,
                       bool ggml) {
    int half = d / 2;
    for (int i = 0; i < half; i++) {
        int i0 = style == MSA_ROPE_NEOX ? i : 2 * i, i1 = style == MSA_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = v[i0], x1 = v[i1];
        if (bf16) { /* q*cos + rotate_half(q)*sin, every elementwise op rounded */
            v[i0] = bf16_round(bf16_round(x0 * c[i]) + bf16_round(-x1 * s[i]));
            v[i1] = bf16_round(bf16_round(x1 * c[i]) + bf16_round(x0 * s[i]));
        } else if (ggml) { /* ggml's rotate_pairs as gcc contracts it (-ffp-contract=fast) */
            v[i0] = fmaf(x0, c[i], -(x1 * s[i]));
            v[i1] = fmaf(x0, s[i], x1 * c[i]);
        } else {
            v[i0] = x0 * c[i] - x1 * s[i];
            v[i1] = x1 * c[i] + x0 * s[i];
        }
    }
}

/* ggml's vectorised expf (ggml_v_expf, AVX-512 build: 1.5 ulp) and silu, written out per element with the
 * same fma steps so that GGUF models' SwiGLU rounds as llama.cpp's does. */
static float ggml_expf(float x) {
    const float r = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, r);
    float n = z - r;
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    float u = b * b;
    float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                   fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192) return n <= 0 ? 0.0f : INFINITY;
    return ldexpf(j, (int)n);
}

static float ggml_silu(float x) { return x / (1.0f + ggml_expf(0.0f - x)); }

/* g[i] = silu(g[i]) * u[i] over one row as ggml_vec_swiglu_f32 does it: 16 at a time with ggml_v_expf, the
 * last n % 16 with libm's expf. */
static void swiglu_ggml_scalar(float *g, const float *u, int n) {
    int i = 0;
    for (; i < (n & ~15); i++) g[i] = ggml_silu(g[i]) * u[i];
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ggml_vec_dot_f16's order (AVX-512 build) for n a multiple of 64: 4 x 16 lanes of products summed per lane
 * over the 64-element steps, lanes folded (x0+x2, x1+x3, then +), then _mm512_reduce_add_ps's tree; the
 * rest (n % 64) added one by one in double, as ggml does. */
static float dot_ggml_f16(const float *a, const float *b, int n) {
    float acc[64] = {0};
    int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int l = 0; l < 64; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    double sum = 0;
    if (np) {
        float r[16], t8[8], t4[4];
        for (int l = 0; l < 16; l++) r[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
        for (int l = 0; l < 8; l++) t8[l] = r[l] + r[l + 8];
        for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
        sum = (t4[0] + t4[2]) + (t4[1] + t4[3]);
    }
    for (int i = np; i < n; i++) sum += (double)(a[i] * b[i]);
    return (float)sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TARGET512 __attribute__((target("avx512f,avx512dq,fma")))
/* The same two with AVX-512 (ggml_v_expf / ggml_v_silu literally; results identical to the scalar forms). */
TARGET512 static __m512 ggml_v_expf512(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0F)));
    const __m512 res = _mm512_scalef_ps(j, n);
    if (_mm512_kortestz(d, d)) return res;
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                           _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(d, res, alt);
}

TARGET512 static void swiglu_ggml_avx512(float *g, const float *u, int n) {
    int i = 0;
    for (; i + 15 < n; i += 16) {
        __m512 x = _mm512_loadu_ps(g + i);
        __m512 e = ggml_v_expf512(_mm512_sub_ps(_mm512_setzero_ps(), x));
        __m512 silu = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1), e));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(silu, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

TARGET512 static float dot_ggml_f16_avx512(const float *a, const float *b, int n) {
    int np = n & ~63;
    double sum = 0;
    if (np) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i < np; i += 64) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
        }
        __m512 v = _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
        __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        sum = _mm_cvtss_f32(q);
    }
    for (int i = np; i < n; i++) sum += (double)(a[i] * b[i]);
    return (float)sum;
}
#endif

typedef float (*dot_ggml_fn)(const float *a, const float *b, int n);
typedef void (*swiglu_fn)(float *g, const float *u, int n);
static dot_ggml_fn dot_ggml = dot_ggml_f16;
static swiglu_fn swiglu_ggml = swiglu_ggml_scalar;

static void pick_vector_helpers(void);

/* ------------------------------------------------------------------------------------------ session */

msa_session_params msa_session_default_params(void) {
    msa_session_params p = {.n_ctx = 0};
    return p;
}

static void free_scratch(msa_session *s) {
    free(s->x); free(s->xn); free(s->q); free(s->k); free(s->v); free(s->att);
    free(s->gate); free(s->up); free(s->tmp); free(s->rope_cos); free(s->rope_sin);
    free(s->b_pos); free(s->b_seq); free(s->b_block); free(s->b_end); free(s->b_valid);
    s->x = s->xn = s->q = s->k = s->v = s->att = s->gate = s->up = s->tmp = s->rope_cos = s->rope_sin = NULL;
    s->b_pos = s->b_seq = s->b_block = s->b_end = NULL;
    s->b_valid = NULL;
    s->cap = 0;
}

static msa_status ensure_scratch(msa_session *s, int n) {
    if (n <= s->cap) return MSA_OK;
    free_scratch(s);
    const msa_hparams *hp = &s->model->hp;
    size_t N = (size_t)n, E = (size_t)hp->n_embd, Dq = (size_t)hp->n_head * hp->head_dim,
           Dkv = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff, H2 = (size_t)hp->head_dim / 2;
    s->x = malloc(N * E * sizeof(float));
    s->xn = malloc(N * E * sizeof(float));
    s->q = malloc(N * Dq * sizeof(float));
    s->k = malloc(N * Dkv * sizeof(float));
    s->v = malloc(N * Dkv * sizeof(float));
    s->att = malloc(N * Dq * sizeof(float));
    s->gate = malloc(N * F * sizeof(float));
    s->up = malloc(N * F * sizeof(float));
    s->tmp = malloc(N * E * sizeof(float));
    s->rope_cos = malloc(N * H2 * sizeof(float));
    s->rope_sin = malloc(N * H2 * sizeof(float));
    s->b_pos = malloc(N * sizeof(int32_t));
    s->b_seq = malloc(N * sizeof(int32_t));
    s->b_block = malloc(N * sizeof(int32_t));
    s->b_end = malloc(N * sizeof(int32_t));
    s->b_valid = malloc(N);
    if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->gate || !s->up || !s->tmp || !s->rope_cos ||
        !s->rope_sin || !s->b_pos || !s->b_seq || !s->b_block || !s->b_end || !s->b_valid) {
        free_scratch(s);
        return msa_fail(MSA_ERR_NOMEM, "out of memory for a batch of %d tokens", n);
    }
    s->cap = n;
    return MSA_OK;
}

static msa_status ensure_scores(msa_session *s) {
    int need = s->n_ctx + s->ex_max + 2 * s->model->hp.head_dim; /* scores, then two head vectors */
    if (need <= s->scores_cap) return MSA_OK;
    int nth = msa_threadpool_size(s->model->tp);
    if (nth < 1) nth = 1;
    float *p = realloc(s->scores, (size_t)nth * (size_t)need * sizeof(float));
    if (!p) return msa_fail(MSA_ERR_NOMEM, "out of memory for attention scores");
    s->scores = p;
    s->scores_cap = need;
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
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pick_vector_helpers);
    s->model = model;
    s->n_ctx = n_ctx;
    int L = hp->n_layer;
    size_t per_layer = (size_t)hp->n_head_kv * (size_t)n_ctx * (size_t)hp->head_dim;
    s->k_cache = calloc((size_t)L, sizeof(float *));
    s->v_cache = calloc((size_t)L, sizeof(float *));
    s->ex_k = calloc((size_t)L, sizeof(float *));
    s->ex_v = calloc((size_t)L, sizeof(float *));
    s->ex_n = calloc((size_t)L, sizeof(int));
    s->slot_seq = malloc((size_t)n_ctx * sizeof(int32_t));
    s->slot_block = malloc((size_t)n_ctx * sizeof(int32_t));
    s->slot_valid = malloc((size_t)n_ctx);
    s->inv_freq = malloc((size_t)(hp->head_dim / 2) * sizeof(float));
    bool ok = s->k_cache && s->v_cache && s->ex_k && s->ex_v && s->ex_n && s->slot_seq && s->slot_block &&
              s->slot_valid && s->inv_freq;
    /* calloc: pages of the cache are only touched as slots fill */
    for (int l = 0; ok && l < L; l++) {
        s->k_cache[l] = calloc(per_layer, sizeof(float));
        s->v_cache[l] = calloc(per_layer, sizeof(float));
        ok = s->k_cache[l] && s->v_cache[l];
    }
    if (!ok) {
        msa_session_free(s);
        return msa_fail(MSA_ERR_NOMEM, "out of memory for a KV cache of %d tokens", n_ctx);
    }
    /* transformers: inv_freq = 1 / base^(arange(0, d, 2) / d) in float32 */
    for (int i = 0; i < hp->head_dim / 2; i++)
        s->inv_freq[i] = 1.0f / powf(hp->rope_theta, (float)(2 * i) / (float)hp->head_dim);
    msa_status st = ensure_scores(s);
    if (st != MSA_OK) {
        msa_session_free(s);
        return st;
    }
    *out = s;
    return MSA_OK;
}

void msa_session_free(msa_session *s) {
    if (!s) return;
    int L = s->model->hp.n_layer;
    for (int l = 0; l < L; l++) {
        if (s->k_cache) free(s->k_cache[l]);
        if (s->v_cache) free(s->v_cache[l]);
        if (s->ex_k) free(s->ex_k[l]);
        if (s->ex_v) free(s->ex_v[l]);
    }
    free(s->k_cache); free(s->v_cache); free(s->ex_k); free(s->ex_v); free(s->ex_n);
    free(s->slot_seq); free(s->slot_block); free(s->slot_valid); free(s->inv_freq); free(s->scores);
    free_scratch(s);
    free(s);
}

void msa_session_reset(msa_session *s) {
    s->n_cached = 0;
    s->next_pos = 0;
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
    free(s->ex_k[layer]);
    free(s->ex_v[layer]);
    s->ex_k[layer] = s->ex_v[layer] = NULL;
    s->ex_n[layer] = 0;
    if (n > 0) {
        size_t sz = (size_t)hp->n_head_kv * (size_t)n * (size_t)hp->head_dim * sizeof(float);
        s->ex_k[layer] = malloc(sz);
        s->ex_v[layer] = malloc(sz);
        if (!s->ex_k[layer] || !s->ex_v[layer]) {
            free(s->ex_k[layer]);
            free(s->ex_v[layer]);
            s->ex_k[layer] = s->ex_v[layer] = NULL;
            return msa_fail(MSA_ERR_NOMEM, "out of memory for %d extra K/V entries", n);
        }
        memcpy(s->ex_k[layer], k, sz);
        memcpy(s->ex_v[layer], v, sz);
        s->ex_n[layer] = n;
    }
    s->ex_max = 0;
    for (int l = 0; l < hp->n_layer; l++)
        if (s->ex_n[l] > s->ex_max) s->ex_max = s->ex_n[l];
    return ensure_scores(s);
}

void msa_fwd_clear_extra_kv(msa_session *s) {
    for (int l = 0; l < s->model->hp.n_layer; l++) msa_fwd_set_extra_kv(s, l, NULL, NULL, 0);
}

/* ---------------------------------------------------------------------------------------- attention */

/* Vector helpers of the attention inner loops; AVX2+FMA where the CPU has it (chosen once at run time). */
typedef float (*dot_fn)(const float *a, const float *b, int n);
typedef void (*axpy_fn)(float *y, float a, const float *x, int n);

static float dot_scalar(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_scalar(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* llama.cpp's f16 accumulator steps: acc = f16(acc * a) and acc = f16(fma(x, a, acc)), element-wise. */
typedef void (*f16acc_fn)(float *acc, const float *x, float a, int n);

static void f16_scale_scalar(float *acc, const float *x, float a, int n) {
    (void)x;
    for (int i = 0; i < n; i++) acc[i] = msa_f16_to_f32(msa_f32_to_f16(acc[i] * a));
}

static void f16_fma_scalar(float *acc, const float *x, float a, int n) {
    for (int i = 0; i < n; i++) acc[i] = msa_f16_to_f32(msa_f32_to_f16(fmaf(x[i], a, acc[i])));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* F16C conversions round to nearest-even like msa_f32_to_f16 */
__attribute__((target("avx2,fma,f16c"))) static void f16_scale_f16c(float *acc, const float *x, float a, int n) {
    (void)x;
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(acc + i), va), _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_ps(acc + i, _mm256_cvtph_ps(h));
    }
    f16_scale_scalar(acc + i, NULL, a, n - i);
}

__attribute__((target("avx2,fma,f16c"))) static void f16_fma_f16c(float *acc, const float *x, float a, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 r = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, _mm256_loadu_ps(acc + i));
        _mm256_storeu_ps(acc + i, _mm256_cvtph_ps(_mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT)));
    }
    f16_fma_scalar(acc + i, x + i, a, n - i);
}
#endif
#endif

static dot_fn vec_dot = dot_scalar;
static axpy_fn vec_axpy = axpy_scalar;
static f16acc_fn vec_f16_scale = f16_scale_scalar, vec_f16_fma = f16_fma_scalar;

static void pick_vector_helpers(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *force = getenv("MSA_SIMD");
    if (!(force && !strcmp(force, "scalar")) && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        vec_dot = dot_avx2;
        vec_axpy = axpy_avx2;
        unsigned a, b, c, d; /* clang's __builtin_cpu_supports does not know "f16c": ask cpuid (leaf 1, ecx) */
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C)) {
            vec_f16_scale = f16_scale_f16c;
            vec_f16_fma = f16_fma_f16c;
        }
    }
    if (!(force && (!strcmp(force, "scalar") || !strcmp(force, "avx2"))) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq")) {
        dot_ggml = dot_ggml_f16_avx512;
        swiglu_ggml = swiglu_ggml_avx512;
    }
#endif
}

typedef struct {
    msa_session *s;
    int layer, n, base; /* batch of n tokens at slots base.. */
    int per_claim;      /* (token, head) items taken at a time */
    _Atomic int next;   /* next item to take: threads share the work (msa_threadpool_run_shared) */
} attn_job;

/* Is key slot t (or extra entry) visible to query i of the batch? */
static inline bool key_visible(const msa_session *s, int t, int qslot, int qseq) {
    return s->slot_seq[t] == qseq && (s->slot_valid[t] || t == qslot);
}

/* llama.cpp's CPU flash attention for fewer than 64 query rows (ggml_compute_forward_flash_attn_ext_f16,
 * one_chunk path; GGUF models): q rounded to f16, online softmax over the keys in order, the V accumulator
 * held in f16 (scaled and fma'd per key, each element rounded to f16), divided by the sum at the end. Used so
 * that greedy tokens on GGUF models follow llama.cpp's. */
static void attention_llamacpp_one(const msa_session *s, const float *q, float *out, float *q16, float *acc,
                                   const float *ek, const float *ev, int nex, const float *kc, const float *vc,
                                   int end, int qslot, int qseq) {
    const int D = s->model->hp.head_dim;
    const float scale = 1.0f / sqrtf((float)D);
    for (int u = 0; u < D; u++) q16[u] = f16_round(q[u]);
    memset(acc, 0, (size_t)D * sizeof(float));
    float M = -INFINITY, S = 0.0f;
    for (int e = 0; e < nex + end; e++) {
        if (e >= nex && !key_visible(s, e - nex, qslot, qseq)) continue;
        const float *kk = e < nex ? ek + (size_t)e * D : kc + (size_t)(e - nex) * D;
        const float *vv = e < nex ? ev + (size_t)e * D : vc + (size_t)(e - nex) * D;
        float sc = dot_ggml(q16, kk, D) * scale, ms = 1.0f, vs = 1.0f;
        if (sc > M) {
            ms = expf(M - sc);
            M = sc;
            vec_f16_scale(acc, NULL, ms, D);
        } else {
            vs = expf(sc - M);
        }
        vec_f16_fma(acc, vv, vs, D);
        S = fmaf(S, ms, vs); /* S*ms + vs, contracted in ggml's build */
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int u = 0; u < D; u++) out[u] = acc[u] * inv;
}

/* One (token, head) item per iteration: scores over [extra K/V ; visible cache slots], softmax, weighted V.
 * bf16 checkpoints follow transformers' eager attention in bf16: q.k rounded, times the scale rounded,
 * softmax in f32 rounded to bf16, then P.V accumulated in f32 and rounded. */
static void attention_worker(void *ctx, int ith, int nth) {
    attn_job *j = ctx;
    msa_session *s = j->s;
    const msa_hparams *hp = &s->model->hp;
    const int H = hp->n_head, D = hp->head_dim, group = hp->n_head / hp->n_head_kv, n_ctx = s->n_ctx;
    const int nex = s->ex_n[j->layer];
    const float scale = 1.0f / sqrtf((float)D);
    const bool bf16 = s->model->bf16_acts;
    float *sc = s->scores + (size_t)ith * (size_t)s->scores_cap;
    const int total = j->n * H;
    for (;;) {
        const int lo = atomic_fetch_add_explicit(&j->next, j->per_claim, memory_order_relaxed);
        if (lo >= total) break;
        const int hi = lo + j->per_claim < total ? lo + j->per_claim : total;
        for (int it = lo; it < hi; it++) {
            const int i = it / H, h = it % H, kvh = h / group;
            const float *q = s->q + ((size_t)i * H + h) * D;
            const int qslot = j->base + i, qseq = s->b_seq[i], end = s->b_end[i];
            const float *ek = s->ex_k[j->layer] ? s->ex_k[j->layer] + (size_t)kvh * nex * D : NULL;
            const float *ev = s->ex_v[j->layer] ? s->ex_v[j->layer] + (size_t)kvh * nex * D : NULL;
            const float *kc = s->k_cache[j->layer] + (size_t)kvh * n_ctx * D;
            const float *vc = s->v_cache[j->layer] + (size_t)kvh * n_ctx * D;
            const int nk = nex + end;
            float *out = s->att + ((size_t)i * H + h) * D;
            if (s->model->llamacpp_attn && j->n < 64) {
                float *q16 = sc + s->n_ctx + s->ex_max, *acc = q16 + D;
                attention_llamacpp_one(s, q, out, q16, acc, ek, ev, nex, kc, vc, end, qslot, qseq);
                continue;
            }
            float mx = -INFINITY;
            for (int e = 0; e < nk; e++) {
                if (e >= nex) {
                    const int t = e - nex;
                    if (!key_visible(s, t, qslot, qseq)) {
                        sc[e] = -INFINITY;
                        continue;
                    }
                }
                const float *kk = e < nex ? ek + (size_t)e * D : kc + (size_t)(e - nex) * D;
                float d = vec_dot(q, kk, D);
                d = bf16 ? bf16_round(bf16_round(d) * scale) : d * scale;
                sc[e] = d;
                if (d > mx) mx = d;
            }
            float sum = 0.0f;
            for (int e = 0; e < nk; e++) {
                float p = sc[e] == -INFINITY ? 0.0f : expf(sc[e] - mx);
                sc[e] = p;
                sum += p;
            }
            memset(out, 0, (size_t)D * sizeof(float));
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            for (int e = 0; e < nk; e++) {
                if (sc[e] == 0.0f) continue;
                const float *vv = e < nex ? ev + (size_t)e * D : vc + (size_t)(e - nex) * D;
                vec_axpy(out, bf16 ? bf16_round(sc[e] / sum) : sc[e], vv, D);
            }
            if (bf16) {
                for (int u = 0; u < D; u++) out[u] = bf16_round(out[u]);
            } else {
                for (int u = 0; u < D; u++) out[u] *= inv;
            }
        }
    }
}

/* -------------------------------------------------------------------------------------------- eval */

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
            s->rope_cos[(size_t)i * h2 + k] = bf16 ? bf16_round(c) : c;
            s->rope_sin[(size_t)i * h2 + k] = bf16 ? bf16_round(sn) : sn;
        }
    }
}

static msa_status run_layer(msa_session *s, int l, int n, const msa_fwd_hooks *hooks) {
    msa_model *m = s->model;
    const msa_hparams *hp = &m->hp;
    const msa_layer *L = &m->layers[l];
    const int E = hp->n_embd, H = hp->n_head, KV = hp->n_head_kv, D = hp->head_dim, F = hp->n_ff;
    const size_t Dq = (size_t)H * D, Dkv = (size_t)KV * D;
    const bool bf16 = m->bf16_acts;
    msa_threadpool *tp = m->tp;

    for (int i = 0; i < n; i++)
        rmsnorm(s->xn + (size_t)i * E, s->x + (size_t)i * E, L->attn_norm, E, hp->rms_eps, bf16);
    if (hooks && hooks->attn_input) MSA_TRY(hooks->attn_input(hooks->user, l, s->xn, n));

    msa_matmul_multi(tp, 3, (const msa_tensor *const[]){L->wq, L->wk, L->wv}, s->xn,
                     (float *const[]){s->q, s->k, s->v}, n);
    if (bf16) {
        round_bf16(s->q, (size_t)n * Dq);
        round_bf16(s->k, (size_t)n * Dkv);
        round_bf16(s->v, (size_t)n * Dkv);
    }
    const int h2 = D / 2;
    for (int i = 0; i < n; i++) {
        const float *c = s->rope_cos + (size_t)i * h2, *sn = s->rope_sin + (size_t)i * h2;
        for (int h = 0; h < H; h++) {
            float *qh = s->q + (size_t)i * Dq + (size_t)h * D;
            if (L->q_norm) rmsnorm(qh, qh, L->q_norm, D, hp->rms_eps, bf16);
            rope_apply(qh, c, sn, D, hp->rope_style, bf16, m->llamacpp_attn);
        }
        for (int h = 0; h < KV; h++) {
            float *kh = s->k + (size_t)i * Dkv + (size_t)h * D;
            if (L->k_norm) rmsnorm(kh, kh, L->k_norm, D, hp->rms_eps, bf16);
            rope_apply(kh, c, sn, D, hp->rope_style, bf16, m->llamacpp_attn);
        }
    }
    if (m->llamacpp_attn) /* llama.cpp keeps its KV cache in f16 */
        for (size_t i = 0; i < (size_t)n * Dkv; i++) {
            s->k[i] = f16_round(s->k[i]);
            s->v[i] = f16_round(s->v[i]);
        }
    if (hooks && hooks->q) MSA_TRY(hooks->q(hooks->user, l, s->q, n));
    if (hooks && hooks->kv) MSA_TRY(hooks->kv(hooks->user, l, s->k, s->v, n));

    const int base = s->n_cached;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < KV; h++) {
            size_t dst = ((size_t)h * s->n_ctx + (size_t)(base + i)) * D, src = (size_t)i * Dkv + (size_t)h * D;
            memcpy(s->k_cache[l] + dst, s->k + src, (size_t)D * sizeof(float));
            memcpy(s->v_cache[l] + dst, s->v + src, (size_t)D * sizeof(float));
        }
    attn_job job = {.s = s, .layer = l, .n = n, .base = base};
    job.per_claim = n * hp->n_head / (8 * msa_threadpool_size(tp)) + 1;
    atomic_init(&job.next, 0);
    msa_threadpool_run_shared(tp, attention_worker, &job);

    msa_matmul(tp, L->wo, s->att, s->tmp, n);
    for (size_t i = 0; i < (size_t)n * E; i++)
        s->x[i] = bf16 ? bf16_round(s->x[i] + bf16_round(s->tmp[i])) : s->x[i] + s->tmp[i];

    for (int i = 0; i < n; i++)
        rmsnorm(s->xn + (size_t)i * E, s->x + (size_t)i * E, L->ffn_norm, E, hp->rms_eps, bf16);
    msa_matmul_multi(tp, 2, (const msa_tensor *const[]){L->w_gate, L->w_up}, s->xn, (float *const[]){s->gate, s->up},
                     n);
    if (m->llamacpp_attn && !bf16) /* GGUF: ggml's SwiGLU, row by row */
        for (int i = 0; i < n; i++) swiglu_ggml(s->gate + (size_t)i * F, s->up + (size_t)i * F, F);
    else
        for (size_t i = 0; i < (size_t)n * F; i++) {
            float g = s->gate[i], u = s->up[i];
            if (bf16) {
                g = bf16_round(g);
                g = bf16_round(g / (1.0f + expf(-g)));
                s->gate[i] = bf16_round(g * bf16_round(u));
            } else {
                s->gate[i] = g / (1.0f + expf(-g)) * u;
            }
        }
    msa_matmul(tp, L->w_down, s->gate, s->tmp, n);
    for (size_t i = 0; i < (size_t)n * E; i++)
        s->x[i] = bf16 ? bf16_round(s->x[i] + bf16_round(s->tmp[i])) : s->x[i] + s->tmp[i];
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
        if (n_layers != hp->n_layer || !b->logit_rows || !b->logits)
            return msa_fail(MSA_ERR_INVALID_ARG, "msa_fwd_eval: logits need all layers, rows and a buffer");
        for (int r = 0; r < b->n_logit_rows; r++)
            if (b->logit_rows[r] < 0 || b->logit_rows[r] >= n)
                return msa_fail(MSA_ERR_INVALID_ARG, "logit row %d is outside the batch", b->logit_rows[r]);
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
    for (int i = 0; i < n; i++) {
        float *xi = s->x + (size_t)i * E;
        const msa_tensor *te = m->tok_embd;
        msa_row_to_f32(te->dtype, (const uint8_t *)te->data + (size_t)b->ids[i] * msa_dtype_row_bytes(te->dtype, E),
                       xi, E);
    }
    for (int l = 0; l < n_layers; l++) {
        msa_status st = run_layer(s, l, n, b->hooks);
        if (st != MSA_OK) {
            s->next_pos = saved_pos;
            return st;
        }
        if (s->taps && s->taps[l]) memcpy(s->taps[l], s->x, (size_t)n * E * sizeof(float));
    }
    s->n_cached = base + n;
    if (b->hidden) memcpy(b->hidden, s->x, (size_t)n * E * sizeof(float));
    if (b->n_logit_rows > 0) {
        for (int r = 0; r < b->n_logit_rows; r++)
            rmsnorm(s->xn + (size_t)r * E, s->x + (size_t)b->logit_rows[r] * E, m->output_norm, E, hp->rms_eps,
                    m->bf16_acts);
        msa_matmul(m->tp, m->output, s->xn, b->logits, b->n_logit_rows);
        if (m->bf16_acts) round_bf16(b->logits, (size_t)b->n_logit_rows * hp->n_vocab);
    }
    return MSA_OK;
}
