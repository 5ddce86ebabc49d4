/* kernels_avx512.c — matmul kernels for CPUs with AVX-512 F/BW/VL/DQ and VNNI (Ice Lake, Sapphire Rapids,
 * Zen 4 ...), compiled for that target per function and chosen at run time. bf16 weights have their own
 * kernels (kernels_bf16_avx512.c, and kernels_amx.c on the amx level); the float ones here serve f32/f16.
 *
 * Float weights: tiles of up to 4 rows x 4 tokens, one 16-lane accumulator per output. Quantized weights:
 * llama.cpp's vec_dot order (kernels_impl.h) with two rows side by side per vector (see tile_q); vpdpbusd
 * multiplies unsigned by signed bytes, so Q4_x nibbles are used as they are and Q8_0 weights are made
 * unsigned by flipping the sign bit (w + 128); the offsets (8 for Q4_0, 128 for Q8_0) are taken back out in
 * the integer domain per 4-element lane, so each lane holds the exact integer dot of the scalar definition. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

/* ---- activation preparation (byte-identical to the scalar definitions) ---- */

TARGET static void prep_q8(const float *x, int64_t n_in, void *out) {
    int64_t nb = n_in / MSA_QK;
    int8_t *q = out;
    float *d = (float *)((uint8_t *)out + n_in);
    float *sx = d + nb;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * MSA_QK;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float db = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        __m512 idv = _mm512_set1_ps(id);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
        _mm_storeu_si128((__m128i *)(q + b * MSA_QK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + b * MSA_QK + 16), _mm512_cvtsepi32_epi8(i1));
        d[b] = _cvtsh_ss(_cvtss_sh(db, 0));
        sx[b] = _cvtsh_ss(_cvtss_sh(db * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1)), 0));
    }
}

/* ---- float weights (f32, f16, bf16) x f32 activations: 16-wide f32 FMA, masked tail ---- */

enum { W_F32, W_F16, W_BF16 };

INLINE __m512 load_w16(int kind, const uint8_t *p, __mmask16 m) {
    if (kind == W_F32) return _mm512_maskz_loadu_ps(m, p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (kind == W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
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

/* ---- quantized weights x q8 activations ----
 * msa_q_dot's order (kernels_impl.h) with two weight rows side by side in a vector: lanes 0-7 are row r's 8
 * lane accumulators, lanes 8-15 row r+1's, for one token; the activation block is broadcast to both halves.
 * A lone last row takes both halves (the upper result is dropped), so every (row, token) sees the same
 * operations whatever tile it falls in. */

/* Every fp16 value as f32 (vcvtph2ps of each, so bit-identical to converting in registers), filled once when
 * the table of kernels is built: a block scale then costs a 2-byte load and a broadcast from this table,
 * which use the load ports, instead of a move, a conversion and a permute on the vector ports. */
static float g_f16_f32[1 << 16];

TARGET static void fill_f16_table(void) {
    for (int i = 0; i < (1 << 16); i += 16) {
        __m256i h = _mm256_add_epi16(_mm256_set1_epi16((short)i),
                                     _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        _mm512_storeu_ps(g_f16_f32 + i, _mm512_cvtph_ps(h));
    }
}

/* The fp16 at p0 in lanes 0-7 and the one at p1 in lanes 8-15, as f32. */
INLINE __m512 f16_pair(const uint8_t *p0, const uint8_t *p1) {
    uint16_t h0, h1;
    memcpy(&h0, p0, 2);
    memcpy(&h1, p1, 2);
    return _mm512_mask_broadcastss_ps(_mm512_set1_ps(g_f16_f32[h0]), (__mmask16)0xff00, _mm_load_ss(&g_f16_f32[h1]));
}

/* Two Q4 blocks' 16-byte nibble arrays as 64 unsigned bytes, each block in element order. */
INLINE __m512i q4_pair(const uint8_t *qs0, const uint8_t *qs1) {
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                           _mm_loadu_si128((const __m128i *)qs1), 1);
    __m512i v = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(both));
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                             0x0004000400040004LL, 0x0004000400040004LL);
    return _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi8(0x0f));
}

/* msa_q_hsum8 of each 8-lane half: the result in lanes 0 and 8. */
INLINE __m512 hsum8_halves(__m512 a) {
    a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, _MM_SHUFFLE(2, 3, 0, 1)));
    a = _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_add_ps(a, _mm512_permute_ps(a, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* nr rows (1..2*MAXP) x nt tokens. */
enum { MAXP = 4, MAXT = 4 };

INLINE void tile_q(msa_dtype kind, int nr, int nt, const uint8_t *w, size_t rb, int64_t n_in, const uint8_t *act,
                   size_t as, float *y, int64_t ldy) {
    int64_t nb = n_in / MSA_QK;
    int np = (nr + 1) / 2;
    size_t bb = kind == MSA_DTYPE_Q8_0 ? 34 : kind == MSA_DTYPE_Q4_0 ? 18 : 20;
    const int8_t *xq[MAXT];
    const float *xd[MAXT], *xs[MAXT];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) msa_q8_prep_layout(act + (size_t)t * as, n_in, &xq[t], &xd[t], &xs[t]);
    const uint8_t *row0[MAXP], *row1[MAXP];
#pragma GCC unroll 4
    for (int k = 0; k < np; k++) {
        row0[k] = w + (size_t)(2 * k) * rb;
        row1[k] = 2 * k + 1 < nr ? row0[k] + rb : row0[k];
    }
    __m512 acc[MAXP][MAXT], macc[MAXP][MAXT];
#pragma GCC unroll 4
    for (int k = 0; k < np; k++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) acc[k][t] = macc[k][t] = _mm512_setzero_ps();
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        __m512i wv[MAXP];
        __m512 dwv[MAXP], mwv[MAXP];
        size_t off = (size_t)b * bb;
#pragma GCC unroll 4
        for (int k = 0; k < np; k++) {
            const uint8_t *p0 = row0[k] + off, *p1 = row1[k] + off;
            if (nt == 1) { /* decode streams the matrix once: ask for the next tile's rows early */
                _mm_prefetch((const char *)(p0 + (size_t)nr * rb), _MM_HINT_T0);
                _mm_prefetch((const char *)(p1 + (size_t)nr * rb), _MM_HINT_T0);
            }
            dwv[k] = f16_pair(p0, p1);
            if (kind == MSA_DTYPE_Q8_0) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(p0 + 2));
                __m256i hi = _mm256_loadu_si256((const __m256i *)(p1 + 2));
                wv[k] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), flip);
            } else if (kind == MSA_DTYPE_Q4_0) {
                wv[k] = q4_pair(p0 + 2, p1 + 2);
            } else {
                mwv[k] = f16_pair(p0 + 2, p1 + 2);
                wv[k] = q4_pair(p0 + 4, p1 + 4);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq[t] + b * MSA_QK)));
            __m512 dxv = _mm512_set1_ps(xd[t][b]);
            /* Unsigned weights w' + c (c = 128 for Q8_0, 8 for Q4_0): start each lane at -c * (its 4 q's). */
            __m512i init = _mm512_setzero_si512();
            if (kind == MSA_DTYPE_Q8_0) init = _mm512_sub_epi32(init, _mm512_dpbusd_epi32(init, flip, xv));
            else if (kind == MSA_DTYPE_Q4_0) init = _mm512_sub_epi32(init, _mm512_dpbusd_epi32(init, _mm512_set1_epi8(8), xv));
            __m512 sxv = kind == MSA_DTYPE_Q4_1 ? _mm512_set1_ps(xs[t][b]) : _mm512_setzero_ps();
#pragma GCC unroll 4
            for (int k = 0; k < np; k++) {
                __m512i dot = _mm512_dpbusd_epi32(init, wv[k], xv);
                acc[k][t] = _mm512_fmadd_ps(_mm512_mul_ps(dwv[k], dxv), _mm512_cvtepi32_ps(dot), acc[k][t]);
                if (kind == MSA_DTYPE_Q4_1) macc[k][t] = _mm512_fmadd_ps(mwv[k], sxv, macc[k][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < np; k++)
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m512 r = _mm512_add_ps(hsum8_halves(acc[k][t]), macc[k][t]);
            y[t * ldy + 2 * k] = _mm512_cvtss_f32(r);
            if (2 * k + 1 < nr) y[t * ldy + 2 * k + 1] = _mm_cvtss_f32(_mm512_extractf32x4_ps(r, 2));
        }
}

/* ---- drivers: every (row, token) tile shape gets its own unrolled copy ---- */

#define DRIVER(name, attr, tile, kind, R, T, DR)                                                                  \
    attr static void name(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,       \
                          size_t as, int n_tok, float *y, int64_t ldy) {                                        \
        int64_t r = 0;                                                                                          \
        if (n_tok == 1) {                                                                                       \
            for (; r + DR <= n_rows; r += DR) tile(kind, DR, 1, w + r * rb, rb, n_in, act, as, y + r, ldy);         \
        }                                                                                                       \
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

DRIVER(gemm_f32, TARGET, tile_float, W_F32, 4, 4, 4)
DRIVER(gemm_f16, TARGET, tile_float, W_F16, 4, 4, 4)
DRIVER(gemm_bf16, TARGET, tile_float, W_BF16, 4, 4, 4)
DRIVER(gemm_q8_0, TARGET, tile_q, MSA_DTYPE_Q8_0, 4, 4, 8)
DRIVER(gemm_q4_0, TARGET, tile_q, MSA_DTYPE_Q4_0, 4, 4, 8)
DRIVER(gemm_q4_1, TARGET, tile_q, MSA_DTYPE_Q4_1, 4, 4, 8)

/* ---- float prefill panels (MSA_PANEL=1 only): lanes = 16 tokens ----
 * The activations are transposed once per call (prep_group, in kernels.c's parallel prep) into
 * xt[n_in][16 tokens] f32; each weight row is widened once per token block and used, element by element
 * broadcast, against every group of 16 tokens. Each output is one sequential f32 chain over k, not the
 * 16-lane order of tile_float, so results depend on the batch: off by default. */

enum { TG = MSA_PANEL_TOKENS, PRF = 12 };

static uint8_t *panel_scratch(size_t bytes) {
    uint8_t *p = msa_thread_scratch(1, bytes);
    if (!p) abort(); /* a few hundred KB per thread; nothing sensible to do without it */
    return p;
}

INLINE __m512i token_stride_idx(int64_t ldy) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)ldy));
}

#define GEMM_PANEL(name, fn, kind)                                                                              \
    TARGET static void name(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,     \
                            size_t as, int n_tok, float *y, int64_t ldy) {                                      \
        fn(kind, w, rb, n_in, n_rows, act, as, n_tok, y, ldy);                                                  \
    }
/* Float panel: xt[n_in][16 tokens] f32; weight rows widened to f32 once, then one FMA per element and row
 * with the weight broadcast. */
static size_t panel_f_bytes(int64_t n_in) { return (size_t)n_in * TG * 4; }

TARGET static void prep_group_f(const float *x, int64_t n_in, int nt, void *out) {
    float *xt = out;
    for (int64_t k = 0; k < n_in; k += 16) {
        int n = n_in - k < 16 ? (int)(n_in - k) : 16;
        __mmask16 mk = (__mmask16)((1u << n) - 1);
        __m512 rows[TG];
        for (int l = 0; l < TG; l++) rows[l] = l < nt ? _mm512_maskz_loadu_ps(mk, x + (size_t)l * n_in + k) : _mm512_setzero_ps();
        _Alignas(64) float tile[TG][16];
        for (int l = 0; l < TG; l++) _mm512_store_ps(tile[l], rows[l]);
        for (int kk = 0; kk < n; kk++) {
            __m512 col = _mm512_i32gather_ps(_mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176,
                                                               192, 208, 224, 240), &tile[0][kk], 4);
            _mm512_store_ps(xt + (k + kk) * TG, col);
        }
    }
}

INLINE void widen_row(int kind, const uint8_t *p, int64_t n_in, float *out) {
    for (int64_t i = 0; i < n_in; i += 16) {
        __mmask16 m = n_in - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n_in - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, load_w16(kind, p + (size_t)i * (kind == W_F32 ? 4 : 2), m));
    }
}

/* wf is interleaved: wf[k * PRF + r] (rows of the tile side by side), so one pointer serves all rows.
 * With add, the tile continues sums already in y (k is processed in chunks that stay in L2). */
INLINE void panel_tile_f(int R, const float *wf, int64_t nk, const float *xt, float *y, int64_t ldy, __mmask16 mask,
                         int add) {
    const __m512i vidx = token_stride_idx(ldy);
    __m512 acc[PRF];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
        acc[r] = add ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, vidx, y + r, 4) : _mm512_setzero_ps();
    for (int64_t k = 0; k < nk; k++) {
        __m512 xv = _mm512_load_ps(xt + k * TG);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(xv, _mm512_set1_ps(wf[k * PRF + r]), acc[r]);
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) _mm512_mask_i32scatter_ps(y + r, mask, vidx, acc[r], 4);
}

enum { KC = 1024 }; /* elements of k per pass: 8 token groups of xt (512 KB) stay in L2 */

INLINE void gemm_panel_float(int kind, const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                             size_t as, int n_tok, float *y, int64_t ldy) {
    int n_groups = (n_tok + TG - 1) / TG;
    size_t gb = as * TG;
    int es = kind == W_F32 ? 4 : 2;
    float *wf = (float *)panel_scratch((size_t)(PRF + 1) * KC * 4 + 64);
    float *tmp = wf + (size_t)PRF * KC;
    for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
        int64_t nk = n_in - k0 < KC ? n_in - k0 : KC;
        for (int64_t r = 0; r < n_rows;) {
            int R = n_rows - r >= PRF ? PRF : 1;
            for (int k = 0; k < R; k++) {
                widen_row(kind, w + (size_t)(r + k) * rb + (size_t)k0 * es, nk, tmp);
                for (int64_t i = 0; i < nk; i++) wf[i * PRF + k] = tmp[i];
            }
            for (int g = 0; g < n_groups; g++) {
                int nt = n_tok - g * TG < TG ? n_tok - g * TG : TG;
                const float *xt = (const float *)(act + (size_t)g * gb) + k0 * TG;
                float *yg = y + (size_t)g * TG * ldy + r;
                __mmask16 m = (__mmask16)((1u << nt) - 1);
                if (R == PRF) panel_tile_f(PRF, wf, nk, xt, yg, ldy, m, k0 > 0);
                else panel_tile_f(1, wf, nk, xt, yg, ldy, m, k0 > 0);
            }
            r += R;
        }
    }
}

GEMM_PANEL(gemm_panel_f32, gemm_panel_float, W_F32)
GEMM_PANEL(gemm_panel_f16, gemm_panel_float, W_F16)
GEMM_PANEL(gemm_panel_bf16, gemm_panel_float, W_BF16)

int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vnni"))
        return 0;
    fill_f16_table();
    table[MSA_DTYPE_F32] = (msa_kernel){.gemm = gemm_f32, .panel_bytes = panel_f_bytes, .prep_group = prep_group_f, .gemm_panel = gemm_panel_f32, .tile_rows = 48};
    table[MSA_DTYPE_F16] = (msa_kernel){.gemm = gemm_f16, .panel_bytes = panel_f_bytes, .prep_group = prep_group_f, .gemm_panel = gemm_panel_f16, .tile_rows = 48};
    table[MSA_DTYPE_BF16] = (msa_kernel){.gemm = gemm_bf16, .panel_bytes = panel_f_bytes, .prep_group = prep_group_f, .gemm_panel = gemm_panel_bf16, .tile_rows = 48};
    table[MSA_DTYPE_Q8_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q8_0};
    table[MSA_DTYPE_Q4_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q4_0};
    table[MSA_DTYPE_Q4_1] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8, .gemm = gemm_q4_1};
    return 1;
}

#else
int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]) {
    (void)table;
    return 0;
}
#endif
