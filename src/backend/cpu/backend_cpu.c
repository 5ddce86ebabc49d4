/* backend_cpu.c — the CPU backend (backend.h): the numerical reference every other backend is checked
 * against. Buffers are plain host memory; matrix products go through msa_matmul (kernels.h: thread pool,
 * SIMD, stored dtype); attention is parallel over (token, head) pairs; the element-wise operations are the
 * scalar definitions of forward.h's numerics (transformers' bf16 rounding points, llama.cpp's f16/ggml
 * arithmetic for GGUF models), unchanged from when they lived in forward.c. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "model/model.h"
#include "util/error.h"

typedef struct {
    msa_backend base;
    msa_threadpool *tp;
    double *pool_acc;     /* [pool_acc_n] column sums of cpu_pool */
    size_t pool_acc_n;
} cpu_backend;

/* A CPU buffer is its own first byte. */
static inline float *F(msa_buf *b) { return (float *)(void *)b; }
static inline const float *CF(const msa_buf *b) { return (const float *)(const void *)b; }
static inline const int32_t *CI(const msa_buf *b) { return (const int32_t *)(const void *)b; }

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
    const msa_attn_args *a;
    int H, KV, D;
    int per_claim;      /* (token, head) items taken at a time */
    int scores_cap;     /* floats of scratch per thread */
    float *scores;      /* [n_threads][scores_cap] */
    _Atomic int next;   /* next item to take: threads share the work (msa_threadpool_run_shared) */
} attn_job;

/* Is key slot t visible to the query at slot qslot of sequence qseq? */
static inline bool key_visible(const msa_attn_args *a, int t, int qslot, int qseq) {
    return CI(a->slot_seq)[t] == qseq && (((const uint8_t *)(const void *)a->slot_valid)[t] || t == qslot);
}

/* llama.cpp's CPU flash attention for fewer than 64 query rows (ggml_compute_forward_flash_attn_ext_f16,
 * one_chunk path; GGUF models): q rounded to f16, online softmax over the keys in order, the V accumulator
 * held in f16 (scaled and fma'd per key, each element rounded to f16), divided by the sum at the end. Used so
 * that greedy tokens on GGUF models follow llama.cpp's. */
static void attention_llamacpp_one(const msa_attn_args *a, int D, const float *q, float *out, float *q16, float *acc,
                                   const float *ek, const float *ev, int nex, const float *kc, const float *vc,
                                   int begin, int end, int qslot, int qseq) {
    const float scale = 1.0f / sqrtf((float)D);
    for (int u = 0; u < D; u++) q16[u] = f16_round(q[u]);
    memset(acc, 0, (size_t)D * sizeof(float));
    float M = -INFINITY, S = 0.0f;
    for (int e = 0; e < nex + end; e++) {
        if (e == nex && begin > 0) e += begin; /* slots below begin belong to other sequences */
        if (e >= nex + end) break;
        if (e >= nex && !key_visible(a, e - nex, qslot, qseq)) continue;
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
 * softmax in f32 rounded to bf16, then P.V accumulated in f32 and rounded. Keys below the row's q_begin are
 * of other sequences: they would score -inf and add exact zeros, so skipping them changes no bit. */
static void attention_worker(void *ctx, int ith, int nth) {
    (void)nth;
    attn_job *j = ctx;
    const msa_attn_args *a = j->a;
    const int H = j->H, D = j->D, group = j->H / j->KV, n_ctx = a->n_ctx;
    const int nex = a->n_ex;
    const float scale = 1.0f / sqrtf((float)D);
    const bool bf16 = a->bf16;
    float *sc = j->scores + (size_t)ith * (size_t)j->scores_cap;
    const int32_t *q_seq = CI(a->q_seq), *q_begin = CI(a->q_begin), *q_end = CI(a->q_end);
    const int total = a->n * H;
    for (;;) {
        const int lo = atomic_fetch_add_explicit(&j->next, j->per_claim, memory_order_relaxed);
        if (lo >= total) break;
        const int hi = lo + j->per_claim < total ? lo + j->per_claim : total;
        for (int it = lo; it < hi; it++) {
            const int i = it / H, h = it % H, kvh = h / group;
            const float *q = CF(a->q) + ((size_t)i * H + h) * D;
            const int qslot = a->base + i, qseq = q_seq[i], begin = q_begin[i], end = q_end[i];
            const float *ek = nex ? CF(a->ex_k) + (size_t)kvh * nex * D : NULL;
            const float *ev = nex ? CF(a->ex_v) + (size_t)kvh * nex * D : NULL;
            const float *kc = CF(a->k_cache) + (size_t)kvh * n_ctx * D;
            const float *vc = CF(a->v_cache) + (size_t)kvh * n_ctx * D;
            float *out = F(a->out) + ((size_t)i * H + h) * D;
            if (a->llamacpp && a->n < 64) {
                float *q16 = sc + n_ctx + nex, *acc = q16 + D;
                attention_llamacpp_one(a, D, q, out, q16, acc, ek, ev, nex, kc, vc, begin, end, qslot, qseq);
                continue;
            }
            /* sc[0 .. nex) extra entries, sc[nex + t - begin] cache slot t */
            const int nk = nex + end - begin;
            float mx = -INFINITY;
            for (int e = 0; e < nk; e++) {
                const float *kk;
                if (e >= nex) {
                    const int t = begin + e - nex;
                    if (!key_visible(a, t, qslot, qseq)) {
                        sc[e] = -INFINITY;
                        continue;
                    }
                    kk = kc + (size_t)t * D;
                } else {
                    kk = ek + (size_t)e * D;
                }
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
                const float *vv = e < nex ? ev + (size_t)e * D : vc + (size_t)(begin + e - nex) * D;
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

static msa_status cpu_attention(msa_backend *be, const msa_attn_args *a, int n_head, int n_head_kv,
                                int head_dim) {
    cpu_backend *c = (cpu_backend *)be;
    if (a->n <= 0) return MSA_OK;
    const int32_t *q_begin = CI(a->q_begin), *q_end = CI(a->q_end);
    int widest = 0;
    for (int i = 0; i < a->n; i++)
        if (q_end[i] - q_begin[i] > widest) widest = q_end[i] - q_begin[i];
    int nth = msa_threadpool_size(c->tp);
    if (nth < 1) nth = 1;
    attn_job job = {.a = a, .H = n_head, .KV = n_head_kv, .D = head_dim};
    /* scores of the row's keys, then the llama.cpp path's q16 and accumulator (indexed from n_ctx + n_ex) */
    job.scores_cap = (a->n_ctx > widest ? a->n_ctx : widest) + a->n_ex + 2 * head_dim;
    job.scores = malloc((size_t)nth * (size_t)job.scores_cap * sizeof(float));
    if (!job.scores) return msa_fail(MSA_ERR_NOMEM, "out of memory for attention scores");
    job.per_claim = a->n * n_head / (8 * nth) + 1;
    atomic_init(&job.next, 0);
    msa_threadpool_run_shared(c->tp, attention_worker, &job);
    free(job.scores);
    return MSA_OK;
}

/* ------------------------------------------------------------------------------ element-wise operations */

static void cpu_embed(msa_backend *be, const msa_tensor *table, const msa_buf *ids, int n, msa_buf *x) {
    (void)be;
    const int E = (int)table->shape[1];
    const size_t row = msa_dtype_row_bytes(table->dtype, E);
    for (int i = 0; i < n; i++)
        msa_row_to_f32(table->dtype, (const uint8_t *)table->data + (size_t)CI(ids)[i] * row, F(x) + (size_t)i * E, E);
}

static void cpu_rmsnorm(msa_backend *be, msa_buf *y, const msa_buf *x, const msa_buf *rows, const float *w, int n,
                        int dim, float eps, bool bf16) {
    (void)be;
    for (int r = 0; r < n; r++) {
        const int src = rows ? CI(rows)[r] : r;
        rmsnorm(F(y) + (size_t)r * dim, CF(x) + (size_t)src * dim, w, dim, eps, bf16);
    }
}

static void cpu_matmul(msa_backend *be, int n_w, const msa_tensor *const *ws, const msa_buf *x, msa_buf *const *ys,
                       int n) {
    cpu_backend *c = (cpu_backend *)be;
    float *y[MSA_MATMUL_MULTI_MAX];
    for (int i = 0; i < n_w; i++) y[i] = F(ys[i]);
    if (n_w == 1)
        msa_matmul(c->tp, ws[0], CF(x), y[0], n);
    else
        msa_matmul_multi(c->tp, n_w, ws, CF(x), y, n);
}

static void cpu_round(msa_backend *be, msa_buf *x, size_t count, bool f16) {
    (void)be;
    float *v = F(x);
    if (f16)
        for (size_t i = 0; i < count; i++) v[i] = f16_round(v[i]);
    else
        round_bf16(v, count);
}

static void cpu_norm_rope(msa_backend *be, msa_buf *x, int n, int n_heads, int head_dim, const float *w, float eps,
                          const msa_buf *cos, const msa_buf *sin, msa_rope_style style, bool bf16, bool ggml) {
    (void)be;
    const int h2 = head_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = CF(cos) + (size_t)i * h2, *sn = CF(sin) + (size_t)i * h2;
        for (int h = 0; h < n_heads; h++) {
            float *v = F(x) + ((size_t)i * n_heads + h) * head_dim;
            if (w) rmsnorm(v, v, w, head_dim, eps, bf16);
            rope_apply(v, c, sn, head_dim, style, bf16, ggml);
        }
    }
}

static void cpu_kv_store(msa_backend *be, msa_buf *k_cache, msa_buf *v_cache, const msa_buf *k, const msa_buf *v,
                         int base, int n, int n_head_kv, int head_dim, int n_ctx) {
    (void)be;
    const size_t D = (size_t)head_dim, Dkv = (size_t)n_head_kv * D;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < n_head_kv; h++) {
            size_t dst = ((size_t)h * n_ctx + (size_t)(base + i)) * D, src = (size_t)i * Dkv + (size_t)h * D;
            memcpy(F(k_cache) + dst, CF(k) + src, D * sizeof(float));
            memcpy(F(v_cache) + dst, CF(v) + src, D * sizeof(float));
        }
}

static void cpu_add(msa_backend *be, msa_buf *x, const msa_buf *y, size_t count, bool bf16) {
    (void)be;
    float *a = F(x);
    const float *b = CF(y);
    for (size_t i = 0; i < count; i++) a[i] = bf16 ? bf16_round(a[i] + bf16_round(b[i])) : a[i] + b[i];
}

static void cpu_swiglu(msa_backend *be, msa_buf *gate, const msa_buf *up, int n, int F_, msa_swiglu_kind kind) {
    (void)be;
    float *g = F(gate);
    const float *u = CF(up);
    if (kind == MSA_SWIGLU_GGML) { /* ggml's SwiGLU, row by row */
        for (int i = 0; i < n; i++) swiglu_ggml(g + (size_t)i * F_, u + (size_t)i * F_, F_);
        return;
    }
    for (size_t i = 0; i < (size_t)n * F_; i++) {
        float gi = g[i], ui = u[i];
        if (kind == MSA_SWIGLU_BF16) {
            gi = bf16_round(gi);
            gi = bf16_round(gi / (1.0f + expf(-gi)));
            g[i] = bf16_round(gi * bf16_round(ui));
        } else {
            g[i] = gi / (1.0f + expf(-gi)) * ui;
        }
    }
}

static msa_status cpu_pool(msa_backend *be, const msa_buf *src, int D, const msa_buf *row0, const msa_buf *len,
                           int n_chunks, msa_buf *dst) {
    cpu_backend *c = (cpu_backend *)be;
    double *acc = c->pool_acc_n >= (size_t)D ? c->pool_acc : NULL;
    if (!acc) {
        free(c->pool_acc);
        c->pool_acc = acc = malloc((size_t)D * sizeof *acc);
        c->pool_acc_n = acc ? (size_t)D : 0;
        if (!acc) return msa_fail(MSA_ERR_NOMEM, "out of memory for chunk pooling");
    }
    for (int ch = 0; ch < n_chunks; ch++) {
        const int r0 = CI(row0)[ch], n = CI(len)[ch];
        memset(acc, 0, (size_t)D * sizeof *acc);
        for (int r = 0; r < n; r++)
            for (int i = 0; i < D; i++) acc[i] += CF(src)[(size_t)(r0 + r) * D + i];
        for (int i = 0; i < D; i++) F(dst)[(size_t)ch * D + i] = n > 0 ? (float)(acc[i] / n) : 0.0f;
    }
    return MSA_OK;
}

static void cpu_argmax(msa_backend *be, const msa_buf *x, int rows, int cols, msa_buf *ids) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *v = CF(x) + (size_t)r * cols;
        int best = 0;
        for (int i = 1; i < cols; i++)
            if (v[i] > v[best] || (isnan(v[best]) && !isnan(v[i]))) best = i;
        ((int32_t *)(void *)ids)[r] = best;
    }
}

/* -------------------------------------------------------------------------------------------- memory */

static msa_buf *cpu_alloc(msa_backend *be, size_t bytes) {
    (void)be;
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) {
        msa_fail(MSA_ERR_NOMEM, "out of memory for %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, n ? n : 64);
    return (msa_buf *)p;
}

static void cpu_free(msa_backend *be, msa_buf *b) {
    (void)be;
    free(b);
}

static msa_status cpu_upload(msa_backend *be, msa_buf *dst, size_t off, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy((uint8_t *)(void *)dst + off, src, bytes);
    return MSA_OK;
}

static msa_status cpu_download(msa_backend *be, void *dst, const msa_buf *src, size_t off, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, (const uint8_t *)(const void *)src + off, bytes);
    return MSA_OK;
}

static const void *cpu_view(msa_backend *be, const msa_buf *b, size_t off, size_t bytes, void *scratch) {
    (void)be, (void)bytes, (void)scratch;
    return (const uint8_t *)(const void *)b + off;
}

static void cpu_copy(msa_backend *be, msa_buf *dst, size_t doff, const msa_buf *src, size_t soff, size_t bytes) {
    (void)be;
    if (bytes) memmove((uint8_t *)(void *)dst + doff, (const uint8_t *)(const void *)src + soff, bytes);
}

static msa_status cpu_sync(msa_backend *be) {
    (void)be;
    return MSA_OK;
}

static void cpu_destroy(msa_backend *be) {
    free(((cpu_backend *)be)->pool_acc);
    free(be);
}

static const msa_backend_ops cpu_ops = {
    .name = "cpu",
    .host_memory = true,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .view = cpu_view,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .round = cpu_round,
    .norm_rope = cpu_norm_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
    .pool = cpu_pool,
    .argmax = cpu_argmax,
    .destroy = cpu_destroy,
};

msa_status msa_backend_cpu_new(struct msa_model *model, msa_backend **out) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pick_vector_helpers);
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    c->base.ops = &cpu_ops;
    c->base.device = (msa_device){MSA_DEVICE_CPU, 0};
    c->tp = model ? model->tp : NULL; /* no model: a bare backend for op tests, one thread */
    *out = &c->base;
    return MSA_OK;
}
