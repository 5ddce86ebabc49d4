/* kernels_bf16dp_avx512.c — bf16 weights x bf16 activations with AVX512-BF16's vdpbf16ps, the "avx512bf16"
 * level; kernels.c measures it against the f32-FMA kernel (kernels_bf16_avx512.c) and AMX and keeps the
 * fastest for this CPU.
 *
 * Why: one vdpbf16ps does 32 bf16 multiply-adds into 16 f32 lanes with no widening of the weights. Where it
 * runs at the rate of an f32 FMA (AMD Zen 4 and Zen 5) that is twice the multiply-adds of the FMA kernel per
 * instruction, plus the two bit operations per 32 weights the FMA kernel spends widening; where it runs at half
 * rate (Intel Sapphire Rapids) the FMA kernel wins. The choice is measured, not assumed (docs/perf.md).
 *
 * Numerics: activations are rounded to bf16 (round-half-even, msa_f32_to_bf16) as on every path for bf16
 * weights. vdpbf16ps adds, per lane and 32-input step, w[2i+1]*x[2i+1] then w[2i]*x[2i] to the accumulator,
 * each product exact in f32 and each sum rounded to nearest even: the same sequence as the FMA kernel, so the
 * two agree bit for bit except where the instruction flushes a subnormal input or result to zero (DAZ/FTZ,
 * which the FMA kernel does not). Each output is one accumulator over steps in increasing order, then one
 * fixed horizontal sum; tiles, k-blocks, n_tok and the thread split never change that sequence, so a token's
 * result does not depend on its batch. */
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "backend/cpu/bf16_avx512.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* Prepared row: n_in bf16 values (round-half-even, as msa_f32_to_bf16), zero-padded to a multiple of 32. */
static size_t prep_bytes_bf16(int64_t n_in) { return (size_t)((n_in + 31) / 32 * 32) * 2; }

TARGET static void prep_bf16(const float *x, int64_t n_in, void *out) {
    uint16_t *o = out;
    int64_t n_pad = (n_in + 31) / 32 * 32;
    for (int64_t i = 0; i < n_pad; i += 16) {
        __mmask16 m = n_in - i >= 16 ? (__mmask16)0xffff : n_in > i ? (__mmask16)((1u << (n_in - i)) - 1) : 0;
        __m512i b = msa_bf16_bits_avx512(_mm512_maskz_loadu_ps(m, x + i));
        _mm256_store_si256((__m256i *)(o + i), _mm512_cvtepi32_epi16(_mm512_maskz_mov_epi32(m, b)));
    }
}

INLINE __m512 dp(__m512 acc, __m512i w, __m512i x) {
    return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
}

/* R rows x T tokens over inputs [0, n) of a k-block; w and act point at the block's first input; n_valid
 * (>= n, or the row's end) inputs exist in w. Between k-blocks the partial sum of (row r, token t) of the
 * tile is parked at accbuf[r * n_tok + t] (one slot per output of the call, so tiles of any shape never overlap).
 * Prefetches, which only the first token tile over some weights asks for (the others find them in cache):
 *   pf_seq: R*rb bytes from w + pf_seq walked in address order, R lines per step, into L1; consecutive tiles'
 *           walks join into one sequential stream ahead of the reads. R rows read side by side look like R
 *           short streams to the hardware prefetchers, which measured 20-30% slower for decode (docs/perf.md).
 *   pf_row: each row's data pf_row bytes ahead (the next k-block), into L2.
 *   pf_l1:  each row's data pf_l1 bytes ahead (the same k-block of the next row tile), into L1; every prefill
 *           tile asks for it: +10-12% on Qwen3-4B shapes x 64 tokens on Zen 5 (one tile ahead measured better
 *           than two). */
INLINE void tile_dp(int R, int T, const uint8_t *w, size_t rb, int64_t n, int64_t n_valid, const uint8_t *act,
                    size_t as, __m512 *accbuf, int n_tok, int first, int last, float *y, int64_t ldy,
                    int64_t pf_seq, int64_t pf_row, int64_t pf_l1) {
    __m512 acc[8][12];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) acc[r][t] = first ? _mm512_setzero_ps() : _mm512_load_ps((float *)&accbuf[r * n_tok + t]);
    for (int64_t i = 0; i < n; i += 32) {
        __mmask32 m = n_valid - i >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (n_valid - i)) - 1);
        __m512i wv[8];
        if (pf_seq)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w + pf_seq + (size_t)i * 2 * R + (size_t)r * 64), _MM_HINT_T0);
        if (pf_row)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w + (size_t)r * rb + (size_t)i * 2 + pf_row), _MM_HINT_T1);
        if (pf_l1)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)(w + (size_t)r * rb + (size_t)i * 2 + pf_l1), _MM_HINT_T0);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) wv[r] = _mm512_maskz_loadu_epi16(m, w + (size_t)r * rb + (size_t)i * 2);
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) {
            __m512i xv = _mm512_load_si512((const void *)(act + (size_t)t * as + (size_t)i * 2));
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t] = dp(acc[r][t], wv[r], xv);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) {
            if (last) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
            else _mm512_store_ps((float *)&accbuf[r * n_tok + t], acc[r][t]);
        }
}

/* The prefill tile: RT rows x TT tokens, 24 accumulators of the 32 registers, RT + TT loads per 24 dot
 * products; k-blocks of KBLOCK inputs keep a tile's activations (16 KB) in L1. Measured on Zen 5 (single
 * thread, Qwen3-4B shapes x 64 tokens, CPU time): 2x12 230-240 GFLOP/s, 3x8 285-305, 4x6 250-295; k-blocks of
 * 512-4096 within noise of each other (docs/perf.md). The source's MSA_DP_RT picks another shape for such
 * comparisons: TT = 24 / RT. */
#ifndef MSA_DP_RT
#define MSA_DP_RT 3
#endif
enum { RT = MSA_DP_RT, TT = 24 / MSA_DP_RT, KBLOCK = 1024, DECODE_LEAD = 10240 };

/* One k-block of every (row, token) tile. pf_next: bytes from a row's k-block to its next one (0 on the last
 * k-block). */
TARGET static void gemm_dp_block(const uint8_t *w, size_t rb, int64_t n, int64_t n_valid, int64_t n_rows,
                                 const uint8_t *act, size_t as, int n_tok, __m512 *accbuf, int first, int last,
                                 int64_t pf_next, float *y, int64_t ldy) {
    /* The first token tile prefetches: the next k-block of its rows when there is one, else the next rows. */
#define PF_SEQ(R) (t == 0 && !accbuf ? (int64_t)((R) * rb) : 0)
#define PF_ROW (t == 0 ? pf_next : 0)
#define TILE(R, T) tile_dp(R, T, w + r * rb, rb, n, n_valid, act + t * as, as, accbuf ? accbuf + r * n_tok + t : NULL, n_tok, first, last, y + t * ldy + r, ldy, PF_SEQ(R), PF_ROW, (int64_t)((R) * rb))
#define ROWS(T)                                                                                               \
    do {                                                                                                      \
        int64_t r = 0;                                                                                        \
        for (; r + RT <= n_rows; r += RT) TILE(RT, T);                                                        \
        for (; r < n_rows; r++) TILE(1, T);                                                                   \
    } while (0)
    int t = 0;
    if (n_tok == 1 && !accbuf) {
        /* Decode streams the weights once: 2 rows per tile, and a software prefetch stream running DECODE_LEAD
         * bytes past the end of the current tile. Measured on Zen 5 (1 thread, 400 MB of bf16 rows of 5 KB,
         * against a plain streaming read of 37-41 GB/s): 8-row tiles without prefetch 26-28 GB/s, with the
         * stream one 8-row tile ahead 30-34, 4-row 33-36, 2-row tiles 36-38 (docs/perf.md). */
        int64_t r = 0;
        for (; r + 2 <= n_rows; r += 2) tile_dp(2, 1, w + r * rb, rb, n, n_valid, act, as, NULL, 1, 1, 1, y + r, ldy, (int64_t)(2 * rb) + DECODE_LEAD, 0, 0);
        for (; r < n_rows; r++) tile_dp(1, 1, w + r * rb, rb, n, n_valid, act, as, NULL, 1, 1, 1, y + r, ldy, 0, 0, 0);
        return;
    }
    for (; t + TT <= n_tok; t += TT) ROWS(TT);
    switch (n_tok - t) { /* the remaining tokens as one tile */
#if 24 / MSA_DP_RT > 8
    case 11: ROWS(11); break;
    case 10: ROWS(10); break;
    case 9: ROWS(9); break;
    case 8: ROWS(8); break;
#endif
#if 24 / MSA_DP_RT > 7
    case 7: ROWS(7); break;
    case 6: ROWS(6); break;
#endif
    case 5: ROWS(5); break;
    case 4: ROWS(4); break;
    case 3: ROWS(3); break;
    case 2: ROWS(2); break;
    case 1: ROWS(1); break;
    default: break;
    }
#undef TILE
#undef ROWS
#undef PF_SEQ
#undef PF_ROW
}

TARGET static void gemm_bf16_dp(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                                size_t as, int n_tok, float *y, int64_t ldy) {
    __m512 *accbuf = NULL;
    if (n_tok > TT && n_in > KBLOCK) accbuf = msa_thread_scratch(1, (size_t)n_rows * (size_t)n_tok * sizeof(__m512));
    if (!accbuf) {
        gemm_dp_block(w, rb, n_in, n_in, n_rows, act, as, n_tok, NULL, 1, 1, 0, y, ldy);
        return;
    }
    for (int64_t i0 = 0; i0 < n_in; i0 += KBLOCK) {
        int64_t n = n_in - i0 > KBLOCK ? KBLOCK : n_in - i0;
        gemm_dp_block(w + i0 * 2, rb, n, n_in - i0, n_rows, act + i0 * 2, as, n_tok, accbuf, i0 == 0,
                      i0 + n == n_in, i0 + n < n_in ? KBLOCK * 2 : 0, y, ldy);
    }
}

int msa_kernels_avx512bf16_bf16(msa_kernel *entry) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512bf16"))
        return 0;
    *entry = (msa_kernel){.prep_bytes = prep_bytes_bf16, .prep = prep_bf16, .gemm = gemm_bf16_dp, .tile_tokens = TT, .tile_rows = RT};
    return 1;
}

#else
int msa_kernels_avx512bf16_bf16(msa_kernel *entry) {
    (void)entry;
    return 0;
}
#endif
