/* kernels_avx2.c — matmul kernels for x86-64 CPUs with AVX2, FMA and F16C (compiled for that target per
 * function, chosen at run time). Each gemm walks tiles of up to 4 weight rows x 2 tokens so a weight vector
 * loaded (and decoded) once is used for both tokens, and 4 rows are in flight for memory parallelism.
 * Numerics follow kernels_scalar.c exactly in the activation formats; only the summation order differs. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

enum { R = 4, T = 2 };

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float f16_load(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* ---- activation preparation ---- */

/* q8 blocks, byte-identical to the scalar prep (and to llama.cpp's quantize_row_q8_1 on x86). */
TARGET static void prep_q8(const float *x, int64_t n_in, void *out) {
    int64_t nb = n_in / MSA_QK;
    int8_t *q = out;
    float *d = (float *)((uint8_t *)out + n_in);
    float *sx = d + nb;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * MSA_QK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float db = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        __m256 idv = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, idv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, idv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, idv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, idv));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        /* pack 32 int32 to int8 in order: packs interleave 128-bit lanes, the permute restores the order */
        __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * MSA_QK), p);
        d[b] = _cvtsh_ss(_cvtss_sh(db, 0));
        sx[b] = _cvtsh_ss(_cvtss_sh(db * (float)_mm_cvtsi128_si32(s4), 0));
    }
}

/* ---- float weights: f32, f16, bf16 share one tile loop over 8-wide f32 vectors ---- */

enum { W_F32, W_F16, W_BF16 };

INLINE __m256 load_w8(int kind, const uint8_t *p) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (kind == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The last n_in % 8 elements, padded with zeros through a small buffer. */
INLINE __m256 load_w8_tail(int kind, const uint8_t *p, int n) {
    int es = kind == W_F32 ? 4 : 2;
    _Alignas(32) uint8_t buf[32] = {0};
    memcpy(buf, p, (size_t)n * (size_t)es);
    return load_w8(kind, buf);
}

INLINE __m256 load_x8_tail(const float *p, int n) {
    _Alignas(32) float buf[8] = {0};
    memcpy(buf, p, (size_t)n * 4);
    return _mm256_load_ps(buf);
}

INLINE void tile_float(int kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                       size_t as, float *y, int64_t ldy) {
    int es = kind == W_F32 ? 4 : 2;
    __m256 acc[R][T];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n_in; i += 8) {
        __m256 wv[R], xv[T];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) wv[r] = load_w8(kind, w + (size_t)r * rb + (size_t)i * es);
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) xv[t] = _mm256_loadu_ps((const float *)(act + (size_t)t * as) + i);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
            for (int t = 0; t < nt; t++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv[t], acc[r][t]);
    }
    if (i < n_in) {
        int n = (int)(n_in - i);
        __m256 wv[R], xv[T];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) wv[r] = load_w8_tail(kind, w + (size_t)r * rb + (size_t)i * es, n);
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) xv[t] = load_x8_tail((const float *)(act + (size_t)t * as) + i, n);
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
            for (int t = 0; t < nt; t++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv[t], acc[r][t]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) y[t * ldy + r] = hsum(acc[r][t]);
}

/* ---- quantized weights against q8 activations ---- */

/* 32 Q4 weights of one block as unsigned bytes in element order (low nibbles, then high nibbles). */
INLINE __m256i q4_bytes(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    const __m256i m = _mm256_set1_epi8(0x0f);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), m);
}

/* Lane j = exact integer sum of u[k] * s[k], k = 4j..4j+3 (|u*s| pair sums stay below 2^15 for these inputs). */
INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* msa_q_dot's order (kernels_impl.h): one 8-lane accumulator per (row, token), exactly as llama.cpp. */
INLINE void tile_q(msa_dtype kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                   size_t as, float *y, int64_t ldy) {
    int64_t nb = n_in / MSA_QK;
    const int8_t *xq[T];
    const float *xd[T], *xs[T];
#pragma GCC unroll 2
    for (int t = 0; t < nt; t++) msa_q8_prep_layout(act + (size_t)t * as, n_in, &xq[t], &xd[t], &xs[t]);
    __m256 acc[R][T];
    float msum[R][T];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) {
            acc[r][t] = _mm256_setzero_ps();
            msum[r][t] = 0;
        }
    size_t bb = kind == MSA_DTYPE_Q8_0 ? 34 : kind == MSA_DTYPE_Q4_0 ? 18 : 20;
    for (int64_t b = 0; b < nb; b++) {
        __m256i wv[R], wabs[R];
        float dw[R], mw[R];
        __m256i xv[T];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const uint8_t *p = w + (size_t)r * rb + (size_t)b * bb;
            dw[r] = f16_load(p);
            if (kind == MSA_DTYPE_Q8_0) {
                wv[r] = _mm256_loadu_si256((const __m256i *)(p + 2));
                wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);
            } else if (kind == MSA_DTYPE_Q4_0) {
                wv[r] = _mm256_sub_epi8(q4_bytes(p + 2), _mm256_set1_epi8(8));
                wabs[r] = _mm256_sign_epi8(wv[r], wv[r]);
            } else {
                mw[r] = f16_load(p + 2);
                wv[r] = q4_bytes(p + 4);
            }
        }
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) xv[t] = _mm256_loadu_si256((const __m256i *)(xq[t] + b * MSA_QK));
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
            for (int t = 0; t < nt; t++) {
                __m256i dot;
                if (kind == MSA_DTYPE_Q4_1) {
                    dot = dot_u8s8(wv[r], xv[t]);
                    msum[r][t] = fmaf(mw[r], xs[t][b], msum[r][t]);
                } else {
                    dot = dot_u8s8(wabs[r], _mm256_sign_epi8(xv[t], wv[r]));
                }
                float scale = dw[r] * xd[t][b];
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(dot), acc[r][t]);
            }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 2
        for (int t = 0; t < nt; t++) y[t * ldy + r] = hsum(acc[r][t]) + msum[r][t];
}

/* ---- drivers: every (row, token) tile shape gets its own unrolled copy ---- */

#define DRIVER(name, tile, kind)                                                                                \
    TARGET static void name(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,     \
                            size_t as, int n_tok, float *y, int64_t ldy) {                                      \
        int64_t r = 0;                                                                                          \
        for (; r + R <= n_rows; r += R) {                                                                       \
            int t = 0;                                                                                          \
            for (; t + T <= n_tok; t += T)                                                                      \
                tile(kind, R, T, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);                 \
            if (t < n_tok) tile(kind, R, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);      \
        }                                                                                                       \
        for (; r < n_rows; r++) {                                                                               \
            int t = 0;                                                                                          \
            for (; t + T <= n_tok; t += T)                                                                      \
                tile(kind, 1, T, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);                 \
            if (t < n_tok) tile(kind, 1, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);      \
        }                                                                                                       \
    }

DRIVER(gemm_f32, tile_float, W_F32)
DRIVER(gemm_f16, tile_float, W_F16)
DRIVER(gemm_bf16, tile_float, W_BF16)
DRIVER(gemm_q8_0, tile_q, MSA_DTYPE_Q8_0)
DRIVER(gemm_q4_0, tile_q, MSA_DTYPE_Q4_0)
DRIVER(gemm_q4_1, tile_q, MSA_DTYPE_Q4_1)

int msa_kernels_avx2(msa_kernel table[MSA_DTYPE_COUNT]) {
    __builtin_cpu_init();
    /* F16C by cpuid (leaf 1, ecx bit 29): clang's __builtin_cpu_supports does not know it. */
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !f16c) return 0;
    table[MSA_DTYPE_F32] = (msa_kernel){.gemm = gemm_f32};
    table[MSA_DTYPE_F16] = (msa_kernel){.gemm = gemm_f16};
    table[MSA_DTYPE_BF16] = (msa_kernel){.gemm = gemm_bf16};
    table[MSA_DTYPE_Q8_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q8_0};
    table[MSA_DTYPE_Q4_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q4_0};
    table[MSA_DTYPE_Q4_1] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q4_1};
    return 1;
}

#else
int msa_kernels_avx2(msa_kernel table[MSA_DTYPE_COUNT]) {
    (void)table;
    return 0;
}
#endif
