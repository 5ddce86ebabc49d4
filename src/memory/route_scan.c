/* route_scan.c — the routing scan's inner products (see route_scan.h for the canonical order): a scalar
 * reference, an AVX2 kernel and an AVX-512 kernel, chosen at run time.
 *
 * The kernels compute a register tile of chunks x query tokens at once: each 16-element slice of a chunk's
 * key is loaded once and multiplied into every token of the tile (GQA head folding has already made one
 * query row per token per kv group, route.c), so the keys stream through the core once per token tile
 * while they sit in L1. */
#include "memory/route_scan.h"

#include <math.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

float msa_route_dot_ref(const float *q, const float *k, int len) {
    float a[16] = {0};
    for (int i = 0; i < len; i++) a[i & 15] = fmaf(q[i], k[i], a[i & 15]);
    for (int j = 0; j < 8; j++) a[j] += a[j + 8];
    for (int j = 0; j < 4; j++) a[j] += a[j + 4];
    for (int j = 0; j < 2; j++) a[j] += a[j + 2];
    return a[0] + a[1];
}

static void dots_scalar(const float *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len, float *out,
                        size_t ldo) {
    for (int c = 0; c < nc; c++)
        for (int t = 0; t < nt; t++) out[(size_t)c * ldo + (size_t)t] = msa_route_dot_ref(q + (size_t)t * qs, k + (size_t)c * ks, len);
}

static void max_row_scalar(const float *y, float s, int n, float *best) {
    for (int t = 0; t < n; t++) {
        const float v = y[t] * s;
        if (v > best[t]) best[t] = v;
    }
}

static void widen_scalar(const uint16_t *src, size_t n, float *dst) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* The tile loops must be fully unrolled so that the accumulators live in registers. */
#define UNROLL _Pragma("GCC unroll 8")

/* ---- AVX-512: tiles of 6 chunks x up to 4 tokens, 24 accumulators (+ 6 key registers + 1 query): the shape
 * that measured fastest here (about 90% of the FMA peak with the keys in L1/L2, against 65-70% for 4 x 6,
 * whose 6 query streams per step cost more than 6 keys held in registers) ---- */

#define T512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define MR512 6
#define NR512 4

/* The canonical reduction (route_scan.h) of 16 vectors at once: r[i] = the halving sum of v[i]'s 16 lanes (lanes j
 * and j+8, then j+4, j+2, then 0 and 1, each addition's operands in that order; checked against the canonical tree
 * symbolically, and bit for bit by test_msa_route), with the
 * vectors interleaved across lanes so that one addition serves 16 dots instead of one: the per-dot reduction took
 * about a third of the kernel's time. The sums come out in lane order 0,4,8,12,1,5,... and are put back in order. */
static inline __attribute__((always_inline)) T512 __m512 hsum512x16(const __m512 v[16]) {
    __m512 w[8], x[4], y[2];
    UNROLL
    for (int i = 0; i < 8; i++) /* j + j+8: the 256-bit halves of v[2i] and v[2i+1] */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    UNROLL
    for (int i = 0; i < 4; i++) /* j + j+4: 128-bit quarters */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    UNROLL
    for (int i = 0; i < 2; i++) /* j + j+2: pairs within each 128-bit lane */
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD)); /* 0 + 1 */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

/* A 16-float slice of a key at element i: f32, or bf16 widened in the register (exact) when BF. */
static inline __attribute__((always_inline)) T512 __m512 key16(const void *p, int i, const int BF) {
    if (BF)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i))), 16));
    return _mm512_loadu_ps((const float *)p + i);
}

static inline __attribute__((always_inline)) T512 __m512 key16_masked(const void *p, int i, const int BF, __mmask16 m) {
    if (BF)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i)), 16));
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* kp: MR512 key rows (duplicates past nc), f32 or (BF) bf16; NT: compile-time token count of the tile. */
static inline __attribute__((always_inline)) T512 void tile512(const void *const kp[MR512], const int BF, int nc,
                                                              const float *q, size_t qs, const int NT, int len,
                                                              float *out, size_t ldo) {
    __m512 acc[MR512][NR512];
    UNROLL
    for (int c = 0; c < MR512; c++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[c][t] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512 kv[MR512];
        UNROLL
        for (int c = 0; c < MR512; c++) kv[c] = key16(kp[c], i, BF);
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m512 qv = _mm512_loadu_ps(q + (size_t)t * qs + i);
            UNROLL
            for (int c = 0; c < MR512; c++) acc[c][t] = _mm512_fmadd_ps(qv, kv[c], acc[c][t]);
        }
    }
    if (i < len) { /* masked lanes keep their accumulator untouched, as the scalar loop never visits them */
        __mmask16 m = (__mmask16)((1u << (len - i)) - 1);
        __m512 kv[MR512];
        UNROLL
        for (int c = 0; c < MR512; c++) kv[c] = key16_masked(kp[c], i, BF, m);
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m512 qv = _mm512_maskz_loadu_ps(m, q + (size_t)t * qs + i);
            UNROLL
            for (int c = 0; c < MR512; c++) acc[c][t] = _mm512_mask3_fmadd_ps(qv, kv[c], acc[c][t], m);
        }
    }
    /* every accumulator (chunk-major; rows past nc duplicate the last chunk and are not stored), 16 at a time */
    __m512 v[2 * 16];
    float r[2 * 16];
    const int nv = MR512 * NT;
    UNROLL
    for (int c = 0; c < MR512; c++)
        UNROLL
        for (int t = 0; t < NT; t++) v[c * NT + t] = acc[c][t];
    UNROLL
    for (int i = nv; i < 2 * 16; i++) v[i] = _mm512_setzero_ps();
    UNROLL
    for (int g = 0; g < nv; g += 16) _mm512_storeu_ps(r + g, hsum512x16(v + g));
    for (int c = 0; c < nc; c++)
        UNROLL
        for (int t = 0; t < NT; t++) out[(size_t)c * ldo + (size_t)t] = r[c * NT + t];
}

static inline __attribute__((always_inline)) T512 void dots512(const void *k, const int BF, size_t ks, int nc,
                                                              const float *q, size_t qs, int nt, int len, float *out,
                                                              size_t ldo) {
    const size_t es = BF ? 2 : 4;
    for (int c0 = 0; c0 < nc; c0 += MR512) {
        int mc = nc - c0 < MR512 ? nc - c0 : MR512;
        const void *kp[MR512];
        for (int c = 0; c < MR512; c++) kp[c] = (const char *)k + (size_t)(c0 + (c < mc ? c : mc - 1)) * ks * es;
        float *o = out + (size_t)c0 * ldo;
        int t0 = 0;
        for (; t0 + NR512 <= nt; t0 += NR512) tile512(kp, BF, mc, q + (size_t)t0 * qs, qs, NR512, len, o + t0, ldo);
        const float *qt = q + (size_t)t0 * qs;
        switch (nt - t0) { /* the last, partial token tile (a compile-time count each) */
        case 3: tile512(kp, BF, mc, qt, qs, 3, len, o + t0, ldo); break;
        case 2: tile512(kp, BF, mc, qt, qs, 2, len, o + t0, ldo); break;
        case 1: tile512(kp, BF, mc, qt, qs, 1, len, o + t0, ldo); break;
        default: break;
        }
    }
}

T512 static void dots_avx512(const float *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len,
                             float *out, size_t ldo) {
    dots512(k, 0, ks, nc, q, qs, nt, len, out, ldo);
}

T512 static void dots_bf16_avx512(const uint16_t *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len,
                                  float *out, size_t ldo) {
    dots512(k, 1, ks, nc, q, qs, nt, len, out, ldo);
}

T512 static void widen_avx512(const uint16_t *src, size_t n, float *dst) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    widen_scalar(src + i, n - i, dst + i);
}

/* max(v, best) returns its second operand when the two are equal or either is NaN (MAXPS): best is kept unless v is
 * greater, as the scalar comparison does */
T512 static void max_scaled_avx512(const float *y, const float *scale, const uint32_t *row, int m, int n, float *best) {
    const __mmask16 tail = (__mmask16)((1u << (n & 15)) - 1);
    for (int b = 0; b < m; b++) {
        const float *yb = y + (size_t)b * n;
        float *bp = best + (size_t)row[b] * n;
        const __m512 sv = _mm512_set1_ps(scale[b]);
        int t = 0;
        for (; t + 16 <= n; t += 16)
            _mm512_storeu_ps(bp + t, _mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(yb + t), sv), _mm512_loadu_ps(bp + t)));
        if (t < n) {
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, yb + t), sv);
            _mm512_mask_storeu_ps(bp + t, tail, _mm512_max_ps(v, _mm512_maskz_loadu_ps(tail, bp + t)));
        }
    }
}

/* ---- AVX2: tiles of 2 chunks x up to 3 tokens; lanes 0..7 and 8..15 in two registers each ---- */

#define T256 __attribute__((target("avx2,fma")))
#define MR256 2
#define NR256 3

static inline __attribute__((always_inline)) T256 float hsum256x2(__m256 lo, __m256 hi) {
    __m256 a = _mm256_add_ps(lo, hi);                                                /* j + j+8 */
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));   /* j + j+4 */
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));                                    /* j + j+2 */
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));                          /* 0 + 1 */
}

static inline __attribute__((always_inline)) T256 __m256i mask8(int n) { /* lanes < n set */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) T256 void tile256(const float *const kp[MR256], int nc, const float *q,
                                                              size_t qs, const int NT, int len, float *out,
                                                              size_t ldo) {
    __m256 lo[MR256][NR256], hi[MR256][NR256];
    UNROLL
    for (int c = 0; c < MR256; c++)
        UNROLL
        for (int t = 0; t < NT; t++) lo[c][t] = hi[c][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256 kv[MR256];
        UNROLL
        for (int c = 0; c < MR256; c++) kv[c] = _mm256_loadu_ps(kp[c] + i);
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m256 qv = _mm256_loadu_ps(q + (size_t)t * qs + i);
            UNROLL
            for (int c = 0; c < MR256; c++) lo[c][t] = _mm256_fmadd_ps(qv, kv[c], lo[c][t]);
        }
        UNROLL
        for (int c = 0; c < MR256; c++) kv[c] = _mm256_loadu_ps(kp[c] + i + 8);
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m256 qv = _mm256_loadu_ps(q + (size_t)t * qs + i + 8);
            UNROLL
            for (int c = 0; c < MR256; c++) hi[c][t] = _mm256_fmadd_ps(qv, kv[c], hi[c][t]);
        }
    }
    if (i < len) { /* tail: masked loads (a lane past len gets an all-zero mask), untouched lanes kept */
        __m256i m0 = mask8(len - i), m1 = mask8(len - i - 8);
        __m256 k0[MR256], k1[MR256];
        UNROLL
        for (int c = 0; c < MR256; c++) {
            k0[c] = _mm256_maskload_ps(kp[c] + i, m0);
            k1[c] = _mm256_maskload_ps(kp[c] + i + 8, m1);
        }
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m256 q0 = _mm256_maskload_ps(q + (size_t)t * qs + i, m0);
            __m256 q1 = _mm256_maskload_ps(q + (size_t)t * qs + i + 8, m1);
            UNROLL
            for (int c = 0; c < MR256; c++) {
                lo[c][t] = _mm256_blendv_ps(lo[c][t], _mm256_fmadd_ps(q0, k0[c], lo[c][t]), _mm256_castsi256_ps(m0));
                hi[c][t] = _mm256_blendv_ps(hi[c][t], _mm256_fmadd_ps(q1, k1[c], hi[c][t]), _mm256_castsi256_ps(m1));
            }
        }
    }
    UNROLL
    for (int c = 0; c < nc; c++)
        UNROLL
        for (int t = 0; t < NT; t++) out[(size_t)c * ldo + (size_t)t] = hsum256x2(lo[c][t], hi[c][t]);
}

T256 static void dots_avx2(const float *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len,
                           float *out, size_t ldo) {
    for (int c0 = 0; c0 < nc; c0 += MR256) {
        int mc = nc - c0 < MR256 ? nc - c0 : MR256;
        const float *kp[MR256];
        for (int c = 0; c < MR256; c++) kp[c] = k + (size_t)(c0 + (c < mc ? c : mc - 1)) * ks;
        float *o = out + (size_t)c0 * ldo;
        int t0 = 0;
        for (; t0 + NR256 <= nt; t0 += NR256) tile256(kp, mc, q + (size_t)t0 * qs, qs, NR256, len, o + t0, ldo);
        const float *qt = q + (size_t)t0 * qs;
        if (nt - t0 == 2) tile256(kp, mc, qt, qs, 2, len, o + t0, ldo);
        else if (nt - t0 == 1) tile256(kp, mc, qt, qs, 1, len, o + t0, ldo);
    }
}

T256 static void max_scaled_avx2(const float *y, const float *scale, const uint32_t *row, int m, int n, float *best) {
    for (int b = 0; b < m; b++) {
        const float *yb = y + (size_t)b * n;
        float *bp = best + (size_t)row[b] * n;
        const __m256 sv = _mm256_set1_ps(scale[b]);
        int t = 0;
        for (; t + 8 <= n; t += 8)
            _mm256_storeu_ps(bp + t, _mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(yb + t), sv), _mm256_loadu_ps(bp + t)));
        max_row_scalar(yb + t, scale[b], n - t, bp + t);
    }
}

T256 static void widen_avx2(const uint16_t *src, size_t n, float *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    widen_scalar(src + i, n - i, dst + i);
}
#define HAVE_X86_KERNELS 1
#endif

void msa_route_dots(const float *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len, float *out,
                    size_t ldo) {
#ifdef HAVE_X86_KERNELS
    msa_simd s = msa_cpu_simd();
    if (s >= MSA_SIMD_AVX512) {
        dots_avx512(k, ks, nc, q, qs, nt, len, out, ldo);
        return;
    }
    if (s >= MSA_SIMD_AVX2) {
        dots_avx2(k, ks, nc, q, qs, nt, len, out, ldo);
        return;
    }
#endif
    dots_scalar(k, ks, nc, q, qs, nt, len, out, ldo);
}

bool msa_route_dots_bf16(const uint16_t *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len,
                         float *out, size_t ldo) {
#ifdef HAVE_X86_KERNELS
    if (msa_cpu_simd() >= MSA_SIMD_AVX512) {
        dots_bf16_avx512(k, ks, nc, q, qs, nt, len, out, ldo);
        return true;
    }
#endif
    (void)k, (void)ks, (void)nc, (void)q, (void)qs, (void)nt, (void)len, (void)out, (void)ldo;
    return false;
}

void msa_route_widen_bf16(const uint16_t *src, size_t n, float *dst) {
#ifdef HAVE_X86_KERNELS
    msa_simd s = msa_cpu_simd();
    if (s >= MSA_SIMD_AVX512) {
        widen_avx512(src, n, dst);
        return;
    }
    if (s >= MSA_SIMD_AVX2) {
        widen_avx2(src, n, dst);
        return;
    }
#endif
    widen_scalar(src, n, dst);
}

void msa_route_max_scaled(const float *y, const float *scale, const uint32_t *row, int m, int n, float *best) {
#ifdef HAVE_X86_KERNELS
    msa_simd simd = msa_cpu_simd();
    if (simd >= MSA_SIMD_AVX512) {
        max_scaled_avx512(y, scale, row, m, n, best);
        return;
    }
    if (simd >= MSA_SIMD_AVX2) {
        max_scaled_avx2(y, scale, row, m, n, best);
        return;
    }
#endif
    for (int b = 0; b < m; b++) max_row_scalar(y + (size_t)b * n, scale[b], n, best + (size_t)row[b] * n);
}
