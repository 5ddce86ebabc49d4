/* kernels_bf16_avx512.c — bf16 weights x bf16 activations with AVX512-BF16 (vdpbf16ps), for CPUs that have
 * it (Cooper Lake, Sapphire Rapids, Zen 4 ...); chosen at run time by kernels.c.
 *
 * Why a separate kernel: a prefill against bf16 weights is compute-bound, and widening every weight to f32
 * before an f32 FMA spends a shuffle per 16 elements on the same port as the FMAs. vdpbf16ps multiplies 32
 * bf16 pairs per instruction straight from memory layout. Its inputs must be bf16, so activations are rounded
 * to bf16 (round-half-even) once per call: that is what llama.cpp does for bf16 weights (vec_dot_type bf16),
 * and for Hugging Face bf16 checkpoints the activations entering a matmul are bf16 already (the rounding is
 * then the identity). kernels.c gives the scalar and AVX2 paths the same rounding.
 *
 * Numerics: products of two bf16 values are exact in f32; vdpbf16ps adds them pairwise into f32 lanes
 * (round-to-nearest-even, denormal inputs and outputs flushed to zero). Each output is one 16-lane
 * accumulator over the row in steps of 32 elements, then one fixed horizontal sum, whatever the tile shape
 * and the number of tokens: a token's result does not depend on its batch. */
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* Prepared row: n_in rounded up to a multiple of 32 bf16 values, the padding zero. */
static size_t prep_bytes_bf16(int64_t n_in) { return (size_t)((n_in + 31) / 32 * 32) * 2; }

/* Byte-identical to msa_f32_to_bf16 per element (round-half-even, NaN kept quiet), 16 at a time. */
TARGET static void prep_bf16(const float *x, int64_t n_in, void *out) {
    uint16_t *o = out;
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff), absmask = _mm512_set1_epi32(0x7fffffff);
    const __m512i inf = _mm512_set1_epi32(0x7f800000), quiet = _mm512_set1_epi32(0x40);
    int64_t n_pad = (n_in + 31) / 32 * 32;
    for (int64_t i = 0; i < n_pad; i += 16) {
        __mmask16 m = n_in - i >= 16 ? (__mmask16)0xffff : n_in > i ? (__mmask16)((1u << (n_in - i)) - 1) : 0;
        __m512i v = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(v, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(v, 16), one))), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(v, absmask), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(v, 16), quiet));
        _mm256_storeu_si256((__m256i *)(o + i), _mm512_cvtepi32_epi16(r));
    }
}

/* R weight rows x T tokens; every (row, token) accumulates in the same order for any R and T. */
INLINE void tile(int R, int T, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act, size_t as, float *y,
                 int64_t ldy) {
    __m512 acc[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n_in; i += 32) {
        /* the weight row has no padding: mask its tail (the activation padding is zero anyway) */
        __mmask32 m = n_in - i >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (n_in - i)) - 1);
        __m512bh wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + (size_t)r * rb + (size_t)i * 2);
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            __m512bh xv = (__m512bh)_mm512_load_si512(act + (size_t)t * as + (size_t)i * 2);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

/* Tiles of 4 rows x 6 tokens (24 accumulators + 4 weight vectors + 1 activation of the 32 registers). */
TARGET static void gemm_bf16_dp(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                                size_t as, int n_tok, float *y, int64_t ldy) {
    int64_t r = 0;
    for (; r + 4 <= n_rows; r += 4) {
        int t = 0;
        for (; t + 6 <= n_tok; t += 6) tile(4, 6, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);
        for (; t + 2 <= n_tok; t += 2) tile(4, 2, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);
        for (; t < n_tok; t++) tile(4, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);
    }
    for (; r < n_rows; r++) {
        int t = 0;
        for (; t + 6 <= n_tok; t += 6) tile(1, 6, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);
        for (; t < n_tok; t++) tile(1, 1, w + r * rb, rb, n_in, act + t * as, as, y + t * ldy + r, ldy);
    }
}

int msa_kernels_avx512_bf16(msa_kernel *entry) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512bf16"))
        return 0;
    *entry = (msa_kernel){.prep_bytes = prep_bytes_bf16, .prep = prep_bf16, .gemm = gemm_bf16_dp};
    return 1;
}

#else
int msa_kernels_avx512_bf16(msa_kernel *entry) {
    (void)entry;
    return 0;
}
#endif
