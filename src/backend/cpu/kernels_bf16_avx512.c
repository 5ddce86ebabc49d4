/* kernels_bf16_avx512.c — bf16 weights x bf16 activations with AVX-512 f32 FMAs (the "avx512" level's bf16
 * kernel); kernels.c measures it against vdpbf16ps (kernels_bf16dp_avx512.c) and AMX (kernels_amx.c) and
 * uses whichever is fastest on the CPU at hand.
 *
 * Why f32 FMA and not vdpbf16ps on Intel (on AMD Zen 4/5 vdpbf16ps runs at full rate and is measured
 * faster): on the Sapphire Rapids machine of docs/perf.md vdpbf16ps retires one per two cycles (32
 * multiply-adds per cycle at best) while two f32 FMAs retire per cycle (32 as well, with the widening of the
 * weights included about 27): measured, a prefill matmul ran 25-30% faster this way. The
 * widening is two bit operations per 32 weights: a 32-bit lane holding the bf16 pair (w[2i], w[2i+1]) is
 * w[2i+1] as f32 once its low half is masked off, and w[2i] once shifted left by 16. The activations are
 * prepared once per call in the matching split layout.
 *
 * Numerics: activations are rounded to bf16 (round-half-even) as on every path for bf16 weights (llama.cpp
 * does the same; for Hugging Face bf16 checkpoints the rounding is the identity). Products of two bf16
 * values are exact in f32. Each output is one 16-lane accumulator: per 32-input step, lane i adds
 * w[2i+1]*x[2i+1] then w[2i]*x[2i] (two fused multiply-adds), steps in increasing order, then one fixed
 * horizontal sum. Tiles (rows x tokens), k-blocks and the thread split only change when an accumulator is
 * parked in memory, never the sequence of operations on it, so a token's result does not depend on its
 * batch. */
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "backend/cpu/bf16_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* Prepared row: per block of 32 inputs, 16 f32 "odd" values x[2i+1] then 16 "even" values x[2i], each rounded
 * to bf16 (round-half-even, as msa_f32_to_bf16) and widened back; padding zero. */
static size_t prep_bytes_split(int64_t n_in) { return (size_t)((n_in + 31) / 32 * 32) * 4; }

TARGET static void prep_split(const float *x, int64_t n_in, void *out) {
    float *o = out;
    const __m512i odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t n_pad = (n_in + 31) / 32 * 32;
    for (int64_t i = 0; i < n_pad; i += 32) {
        __mmask16 m0 = n_in - i >= 16 ? (__mmask16)0xffff : n_in > i ? (__mmask16)((1u << (n_in - i)) - 1) : 0;
        __mmask16 m1 = n_in - i >= 32 ? (__mmask16)0xffff : n_in > i + 16 ? (__mmask16)((1u << (n_in - i - 16)) - 1) : 0;
        __m512i a = _mm512_slli_epi32(msa_bf16_bits_avx512(_mm512_maskz_loadu_ps(m0, x + i)), 16);
        __m512i b = _mm512_slli_epi32(msa_bf16_bits_avx512(_mm512_maskz_loadu_ps(m1, x + i + 16)), 16);
        _mm512_store_si512((__m512i *)(o + i), _mm512_permutex2var_epi32(a, odd_idx, b));
        _mm512_store_si512((__m512i *)(o + i + 16), _mm512_permutex2var_epi32(a, even_idx, b));
    }
}

/* Each lane accumulates fma(w_odd, x_odd) then fma(w_even, x_even) per 32-element step, in increasing i, whatever
 * R and T and however the row is cut into k-blocks. w and act point at the block's first element; n inputs of
 * which n_valid (>= n, or the row's end) exist in w. acc holds R*T partial vectors between blocks. pf: bytes
 * ahead of each weight row to prefetch into L2 (0: none). */
INLINE void tile_fma(int R, int T, const uint8_t *w, size_t rb, int64_t n, int64_t n_valid, const uint8_t *act,
                     size_t as, __m512 *accbuf, int first, int last, int64_t pf, float *y, int64_t ldy) {
    __m512 acc[4][6];
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) acc[r][t] = first ? _mm512_setzero_ps() : _mm512_load_ps((float *)&accbuf[r * T + t]);
    for (int64_t i = 0; i < n; i += 32) {
        __mmask32 m = n_valid - i >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (n_valid - i)) - 1);
        __m512 wv[4];
        if (pf)
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w + (size_t)r * rb + (size_t)i * 2 + pf), _MM_HINT_T1);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_maskz_loadu_epi16(m, w + (size_t)r * rb + (size_t)i * 2), hi));
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_load_ps((const float *)(act + (size_t)t * as) + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_maskz_loadu_epi16(m, w + (size_t)r * rb + (size_t)i * 2), 16));
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            __m512 xv = _mm512_load_ps((const float *)(act + (size_t)t * as) + i + 16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            if (last) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
            else _mm512_store_ps((float *)&accbuf[r * T + t], acc[r][t]);
        }
}

enum { KBLOCK = 512 }; /* inputs per k-block: a 5-token tile's activations (10 KB) stay in L1 across row groups */

/* One k-block of every (row, token) tile; w and act point at the block's first input. Partial sums for rows
 * [r, r+R) and tokens [t, t+T) live at accbuf[r * n_tok + t * R ...] (R*T vectors), disjoint for the tiles of
 * one call. pf is passed to the first token tile only: the others find the rows in cache. */
TARGET static void gemm_fma_block(const uint8_t *w, size_t rb, int64_t n, int64_t n_valid, int64_t n_rows,
                                  const uint8_t *act, size_t as, int n_tok, __m512 *accbuf, int first, int last,
                                  int64_t pf, float *y, int64_t ldy) {
#define TILE(R, T) tile_fma(R, T, w + r * rb, rb, n, n_valid, act + t * as, as, accbuf ? accbuf + r * n_tok + t * (R) : NULL, first, last, t == 0 ? pf : 0, y + t * ldy + r, ldy)
    int t = 0;
    for (; t + 5 <= n_tok; t += 5) {
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4) TILE(4, 5);
        for (; r < n_rows; r++) TILE(1, 5);
    }
    if (t == n_tok) return;
    /* the remaining 1..4 tokens as one tile */
    int64_t r = 0;
    switch (n_tok - t) {
    case 4:
        for (; r + 4 <= n_rows; r += 4) TILE(4, 4);
        for (; r < n_rows; r++) TILE(1, 4);
        break;
    case 3:
        for (; r + 4 <= n_rows; r += 4) TILE(4, 3);
        for (; r < n_rows; r++) TILE(1, 3);
        break;
    case 2:
        for (; r + 4 <= n_rows; r += 4) TILE(4, 2);
        for (; r < n_rows; r++) TILE(1, 2);
        break;
    default:
        for (; r + 4 <= n_rows; r += 4) TILE(4, 1);
        for (; r < n_rows; r++) TILE(1, 1);
        break;
    }
#undef TILE
}

TARGET static void gemm_bf16_fma(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                                 size_t as, int n_tok, float *y, int64_t ldy) {
    __m512 *accbuf = NULL;
    if (n_tok > 5 && n_in > KBLOCK) accbuf = msa_thread_scratch(1, (size_t)n_rows * (size_t)n_tok * sizeof(__m512));
    if (!accbuf) {
        gemm_fma_block(w, rb, n_in, n_in, n_rows, act, as, n_tok, NULL, 1, 1, 0, y, ldy);
        return;
    }
    for (int64_t i0 = 0; i0 < n_in; i0 += KBLOCK) {
        int64_t n = n_in - i0 > KBLOCK ? KBLOCK : n_in - i0;
        gemm_fma_block(w + i0 * 2, rb, n, n_in - i0, n_rows, act + i0 * 4, as, n_tok, accbuf, i0 == 0, i0 + n == n_in,
                       i0 + n < n_in ? KBLOCK * 2 : 0, y, ldy);
    }
}

int msa_kernels_avx512_bf16(msa_kernel *entry) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) return 0;
    *entry = (msa_kernel){.prep_bytes = prep_bytes_split, .prep = prep_split, .gemm = gemm_bf16_fma, .tile_tokens = 5};
    return 1;
}

#else
int msa_kernels_avx512_bf16(msa_kernel *entry) {
    (void)entry;
    return 0;
}
#endif
