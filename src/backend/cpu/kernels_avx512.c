/* kernels_avx512.c — matmul kernels for CPUs with AVX-512 F/BW/VL/DQ and VNNI (Ice Lake, Sapphire Rapids,
 * Zen 4 ...), compiled for that target per function and chosen at run time. bf16 weights use vdpbf16ps
 * where the CPU has AVX512-BF16 (else the AVX2 kernel stays in the table).
 *
 * Each gemm walks tiles of up to 4 weight rows x 4 tokens (3 for Q4_1, which needs more registers): a weight
 * vector is loaded and decoded once per tile and used for every token of it; prefill gets its reuse from
 * that and from the dispatcher's cache blocking, decode (one token) from keeping 4 rows in flight.
 *
 * Quantized weights x q8 activations (vpdpbusd multiplies unsigned by signed bytes): Q4_x nibbles are
 * already unsigned; Q8_0 weights are made unsigned by flipping the sign bit (w + 128). The offsets (8 for
 * Q4_0, 128 for Q8_0) are taken back out in the integer domain with the activation block sums, so the
 * result is the exact integer dot product of the scalar definition. Two blocks fill one 512-bit vector. */
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define INLINE_BF16 static inline __attribute__((always_inline)) TARGET_BF16

/* ---- activation preparation (byte-identical to the scalar definitions) ---- */

TARGET static void prep_q8(const float *x, int64_t n_in, void *out) {
    int64_t nb = n_in / MSA_QK;
    int8_t *q = out;
    float *d = (float *)((uint8_t *)out + n_in);
    int32_t *sum = (int32_t *)((uint8_t *)out + n_in + nb * 4);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * MSA_QK;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float db = amax / 127.0f;
        float id = db != 0 ? 1.0f / db : 0.0f;
        __m512 idv = _mm512_set1_ps(id);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
        _mm_storeu_si128((__m128i *)(q + b * MSA_QK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + b * MSA_QK + 16), _mm512_cvtsepi32_epi8(i1));
        d[b] = db;
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}

static size_t prep_bf16_bytes(int64_t n_in) { return ((size_t)n_in * 2 + 63) & ~(size_t)63; }

TARGET static void prep_bf16(const float *x, int64_t n_in, void *out) {
    uint16_t *o = out;
    int64_t i = 0;
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x400000);
    for (; i + 16 <= n_in; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512i b = _mm512_castps_si512(v);
        __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(b, 16), one)));
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_or_epi32(r, nan, b, quiet);
        _mm256_storeu_si256((__m256i *)(o + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
    for (; i < n_in; i++) o[i] = msa_f32_to_bf16(x[i]);
}

/* ---- float weights (f32, f16): 16-wide f32 FMA, masked tail ---- */

enum { W_F32, W_F16 };

INLINE __m512 load_w16(int kind, const uint8_t *p, __mmask16 m) {
    if (kind == W_F32) return _mm512_maskz_loadu_ps(m, p);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

INLINE void tile_float(int kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                       size_t as, float *y, int64_t ldy) {
    int es = kind == W_F32 ? 4 : 2;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n_in; i += 16) {
        __mmask16 m = n_in - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n_in - i)) - 1);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) wv[r] = load_w16(kind, w + (size_t)r * rb + (size_t)i * es, m);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(act + (size_t)t * as) + i);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* ---- bf16 weights x bf16 activations: vdpbf16ps, 32 pairs per instruction ---- */

INLINE_BF16 void tile_bf16(int kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                           size_t as, float *y, int64_t ldy) {
    (void)kind;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n_in; i += 32) {
        __mmask32 m = n_in - i >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (n_in - i)) - 1);
        __m512i wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) wv[r] = _mm512_maskz_loadu_epi16(m, w + (size_t)r * rb + (size_t)i * 2);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, act + (size_t)t * as + (size_t)i * 2);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* ---- quantized weights x q8 activations ---- */

/* Lanes 0-7 take element 0 of a 2-element vector, lanes 8-15 element 1 (one value per block of a pair). */
INLINE __m512i pair_idx(void) { return _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1); }

INLINE __m512 f16_pair(const uint8_t *p0, const uint8_t *p1) {
    uint16_t h0, h1;
    memcpy(&h0, p0, 2);
    memcpy(&h1, p1, 2);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
    return _mm512_permutexvar_ps(pair_idx(), _mm512_castps128_ps512(f));
}

/* Two consecutive Q4 blocks' 16-byte nibble arrays as 64 unsigned bytes in element order. */
INLINE __m512i q4_pair(const uint8_t *qs0, const uint8_t *qs1) {
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                           _mm_loadu_si128((const __m128i *)qs1), 1);
    __m512i v = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(both));
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                             0x0004000400040004LL, 0x0004000400040004LL);
    return _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(0x0f));
}

/* One block (the odd last one) in the low half; the high half is zero. */
INLINE __m512i q4_one(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i lh = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0f));
    return _mm512_zextsi256_si512(lh);
}

INLINE void tile_q(msa_dtype kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                   size_t as, float *y, int64_t ldy) {
    int64_t nb = n_in / MSA_QK;
    size_t bb = kind == MSA_DTYPE_Q8_0 ? 34 : kind == MSA_DTYPE_Q4_0 ? 18 : 20;
    const int8_t *xq[4];
    const float *xd[4];
    const int32_t *xs[4];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) msa_q8_prep_layout(act + (size_t)t * as, n_in, &xq[t], &xd[t], &xs[t]);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    const __m512i idx = pair_idx();
    for (int64_t b = 0; b < nb; b += 2) {
        int two = b + 1 < nb;
        __m512i wv[4];
        __m512 dwv[4], mwv[4];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            const uint8_t *p0 = w + (size_t)r * rb + (size_t)b * bb, *p1 = two ? p0 + bb : p0;
            dwv[r] = f16_pair(p0, p1);
            if (kind == MSA_DTYPE_Q8_0) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(p0 + 2));
                __m256i hi = two ? _mm256_loadu_si256((const __m256i *)(p1 + 2)) : _mm256_set1_epi8((char)0x80);
                wv[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8((char)0x80));
            } else if (kind == MSA_DTYPE_Q4_0) {
                wv[r] = two ? q4_pair(p0 + 2, p1 + 2) : q4_one(p0 + 2);
            } else {
                mwv[r] = f16_pair(p0 + 2, p1 + 2);
                wv[r] = two ? q4_pair(p0 + 4, p1 + 4) : q4_one(p0 + 4);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            /* The odd last block: activation bytes and scales of the missing half are zero. */
            __mmask64 mq = two ? ~(__mmask64)0 : (__mmask64)0xffffffffu;
            __mmask8 md = two ? 3 : 1;
            __m512i xv = _mm512_maskz_loadu_epi8(mq, xq[t] + b * MSA_QK);
            __m512 dxv = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_maskz_loadu_ps(md, xd[t] + b)));
            __m512i sv = _mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(_mm_maskz_loadu_epi32(md, xs[t] + b)));
            __m512i init;  /* the offset correction, spread over the 8 lanes of each block */
            __m512 sxv = _mm512_setzero_ps();
            if (kind == MSA_DTYPE_Q8_0) init = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sv, 4));
            else if (kind == MSA_DTYPE_Q4_0) init = _mm512_sub_epi32(_mm512_setzero_si512(), sv);
            else {
                init = _mm512_setzero_si512();
                sxv = _mm512_mul_ps(dxv, _mm512_mul_ps(_mm512_cvtepi32_ps(sv), _mm512_set1_ps(0.125f)));
            }
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                __m512i dot = _mm512_dpbusd_epi32(init, wv[r], xv);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dwv[r], dxv), acc[r][t]);
                if (kind == MSA_DTYPE_Q4_1) acc[r][t] = _mm512_fmadd_ps(mwv[r], sxv, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* ---- drivers: every (row, token) tile shape gets its own unrolled copy ---- */

#define DRIVER(name, attr, tile, kind, R, T)                                                                    \
    attr static void name(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,       \
                          size_t as, int n_tok, float *y, int64_t ldy) {                                        \
        int64_t r = 0;                                                                                          \
        for (; r + R <= n_rows; r += R) {                                                                       \
            int t = 0;                                                                                          \
            for (; t + T <= n_tok; t += T)                                                                      \
                tile(kind, R, T, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);                 \
            for (; t < n_tok; t++) tile(kind, R, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy); \
        }                                                                                                       \
        for (; r < n_rows; r++) {                                                                               \
            int t = 0;                                                                                          \
            for (; t + T <= n_tok; t += T)                                                                      \
                tile(kind, 1, T, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);                 \
            for (; t < n_tok; t++) tile(kind, 1, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy); \
        }                                                                                                       \
    }

DRIVER(gemm_f32, TARGET, tile_float, W_F32, 4, 4)
DRIVER(gemm_f16, TARGET, tile_float, W_F16, 4, 4)
DRIVER(gemm_bf16, TARGET_BF16, tile_bf16, 0, 4, 4)
DRIVER(gemm_q8_0, TARGET, tile_q, MSA_DTYPE_Q8_0, 4, 4)
DRIVER(gemm_q4_0, TARGET, tile_q, MSA_DTYPE_Q4_0, 4, 4)
DRIVER(gemm_q4_1, TARGET, tile_q, MSA_DTYPE_Q4_1, 4, 3)

int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vnni"))
        return 0;
    table[MSA_DTYPE_F32] = (msa_kernel){NULL, NULL, gemm_f32};
    table[MSA_DTYPE_F16] = (msa_kernel){NULL, NULL, gemm_f16};
    if (__builtin_cpu_supports("avx512bf16")) table[MSA_DTYPE_BF16] = (msa_kernel){prep_bf16_bytes, prep_bf16, gemm_bf16};
    table[MSA_DTYPE_Q8_0] = (msa_kernel){msa_q8_prep_bytes, prep_q8, gemm_q8_0};
    table[MSA_DTYPE_Q4_0] = (msa_kernel){msa_q8_prep_bytes, prep_q8, gemm_q4_0};
    table[MSA_DTYPE_Q4_1] = (msa_kernel){msa_q8_prep_bytes, prep_q8, gemm_q4_1};
    return 1;
}

#else
int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]) {
    (void)table;
    return 0;
}
#endif
