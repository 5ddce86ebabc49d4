/* test_kernels.c — every weight dtype x every SIMD path this CPU has, against double-precision references.
 *
 * Two references per output:
 *   tight:  the weights dequantized by msa_row_to_f32 times the activations after the rounding kernels.h
 *           documents (q8 blocks for quantized weights; float weights take f32 as given), summed in double. Only the f32
 *           summation order may differ, so the tolerance is 1e-5 of sum|w*x'| — a kernel that drops, repeats
 *           or mis-scales anything fails it.
 *   bound:  the same with the raw f32 activations: the difference must stay inside the worst case the
 *           documented rounding allows (half a q8 step per element).
 * Outputs are poisoned with NaN before each call so an element the kernel never writes fails. */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_impl.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() & 0xffffff) / 16777216.0f; }
static int irand(int lo, int hi) { return lo + (int)(next_u32() % (uint32_t)(hi - lo + 1)); }

static int asan(void) {
    const char *s = getenv("MSA_SUITE");
    return s && !strcmp(s, "asan");
}

static void put_f16(uint8_t *p, float v) {
    uint16_t h = msa_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* Random but valid weight bytes for a [n_out, n_in] tensor of dtype t (malloc'd to exactly its size). */
static uint8_t *make_weights(msa_dtype t, int64_t n_out, int64_t n_in, size_t *bytes) {
    size_t rb = msa_dtype_row_bytes(t, n_in);
    *bytes = rb * (size_t)n_out;
    uint8_t *w = malloc(*bytes);
    for (int64_t r = 0; r < n_out; r++) {
        uint8_t *p = w + (size_t)r * rb;
        float scale = uniform(0.2f, 2.0f); /* rows of different magnitude */
        switch (t) {
        case MSA_DTYPE_F32:
            for (int64_t i = 0; i < n_in; i++) {
                float v = uniform(-scale, scale);
                memcpy(p + 4 * i, &v, 4);
            }
            break;
        case MSA_DTYPE_F16:
            for (int64_t i = 0; i < n_in; i++) put_f16(p + 2 * i, uniform(-scale, scale));
            break;
        case MSA_DTYPE_BF16:
            for (int64_t i = 0; i < n_in; i++) {
                uint16_t h = msa_f32_to_bf16(uniform(-scale, scale));
                memcpy(p + 2 * i, &h, 2);
            }
            break;
        case MSA_DTYPE_Q8_0:
            for (int64_t b = 0; b < n_in / 32; b++, p += 34) {
                put_f16(p, uniform(0.001f, 0.05f) * scale);
                for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)next_u32(); /* includes -128 */
            }
            break;
        case MSA_DTYPE_Q4_0:
            for (int64_t b = 0; b < n_in / 32; b++, p += 18) {
                put_f16(p, uniform(-0.1f, 0.1f) * scale);
                for (int j = 0; j < 16; j++) p[2 + j] = (uint8_t)next_u32();
            }
            break;
        case MSA_DTYPE_Q4_1:
            for (int64_t b = 0; b < n_in / 32; b++, p += 20) {
                put_f16(p, uniform(0.001f, 0.1f) * scale);
                put_f16(p + 2, uniform(-0.8f, 0.2f) * scale);
                for (int j = 0; j < 16; j++) p[4 + j] = (uint8_t)next_u32();
            }
            break;
        default: break;
        }
    }
    return w;
}

/* Activations with per-block magnitudes spread over 4 decades, and an all-zero block now and then. */
static void make_acts(float *x, int n_tok, int64_t n_in) {
    for (int t = 0; t < n_tok; t++)
        for (int64_t b = 0; b < n_in; b += 32) {
            float mag = powf(10.0f, uniform(-2.0f, 2.0f));
            int zero = (next_u32() % 11) == 0;
            for (int64_t i = b; i < b + 32 && i < n_in; i++) x[t * n_in + i] = zero ? 0.0f : uniform(-mag, mag);
        }
}

static int is_quant(msa_dtype t) { return t == MSA_DTYPE_Q8_0 || t == MSA_DTYPE_Q4_0 || t == MSA_DTYPE_Q4_1; }

static float f16r(float v) { return msa_f16_to_f32(msa_f32_to_f16(v)); }

/* Float weights: bf16 weights take bf16 activations (round half to even, as llama.cpp), f32/f16 f32 as given. */
static float act_round(msa_dtype t, float x) { return t == MSA_DTYPE_BF16 ? msa_bf16_to_f32(msa_f32_to_bf16(x)) : x; }

/* The documented activation rounding (kernels.h: llama.cpp's q8 blocks), written out independently of the
 * kernels: per block q, the fp16 scale dx and the fp16 s = fp16(d * sum q). */
typedef struct q8ref {
    int8_t *q;
    float *dx, *sx;
    double *d; /* amax / 127 before the fp16 rounding */
} q8ref;

static void q8_round(const float *x, int64_t n, q8ref *o) {
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)nearbyintf(x[b * 32 + j] * id);
            o->q[b * 32 + j] = (int8_t)v;
            sum += v;
        }
        o->dx[b] = f16r(d);
        o->sx[b] = f16r(d * (float)sum);
        o->d[b] = (double)amax / 127.0;
    }
}

/* Weight block b of a quantized row: w'[32] (Q8_0 value, Q4_0 nibble - 8, Q4_1 nibble), scale and minimum. */
static void q_block(msa_dtype t, const uint8_t *row, int64_t b, int wq[32], float *dw, float *mw) {
    size_t bb = t == MSA_DTYPE_Q8_0 ? 34 : t == MSA_DTYPE_Q4_0 ? 18 : 20;
    const uint8_t *p = row + (size_t)b * bb;
    uint16_t h;
    memcpy(&h, p, 2);
    *dw = msa_f16_to_f32(h);
    *mw = 0;
    if (t == MSA_DTYPE_Q8_0) {
        for (int j = 0; j < 32; j++) wq[j] = (int8_t)p[2 + j];
        return;
    }
    const uint8_t *qs = p + (t == MSA_DTYPE_Q4_1 ? 4 : 2);
    int off = t == MSA_DTYPE_Q4_0 ? 8 : 0;
    for (int j = 0; j < 16; j++) {
        wq[j] = (qs[j] & 0xf) - off;
        wq[j + 16] = (qs[j] >> 4) - off;
    }
    if (t == MSA_DTYPE_Q4_1) {
        memcpy(&h, p + 2, 2);
        *mw = msa_f16_to_f32(h);
    }
}

/* The exact f32 result every path must produce (kernels_impl.h, msa_q_dot: llama.cpp's vec_dot order). */
static float q_exact(msa_dtype t, const uint8_t *row, int64_t n_in, const q8ref *x) {
    float acc[8] = {0}, m = 0;
    for (int64_t b = 0; b < n_in / 32; b++) {
        int wq[32];
        float dw, mw;
        q_block(t, row, b, wq, &dw, &mw);
        float scale = dw * x->dx[b];
        for (int j = 0; j < 8; j++) {
            int p = 0;
            for (int k = 4 * j; k < 4 * j + 4; k++) p += wq[k] * x->q[b * 32 + k];
            acc[j] = fmaf(scale, (float)p, acc[j]);
        }
        if (t == MSA_DTYPE_Q4_1) m = fmaf(mw, x->sx[b], m);
    }
    float h = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    return h + m;
}

/* Double-precision references for a quantized row: tight (the rounded activations, summed in double), its
 * magnitude, and the bound on |result - raw product| that the documented rounding allows. */
static void q_double(msa_dtype t, const uint8_t *row, const float *xraw, int64_t n_in, const q8ref *x, double *tight,
                     double *mag, double *raw, double *bound) {
    *tight = *mag = *raw = *bound = 0;
    for (int64_t b = 0; b < n_in / 32; b++) {
        int wq[32];
        float dw, mw;
        q_block(t, row, b, wq, &dw, &mw);
        double e = x->d[b] * 0.5 * 1.0001 + 127.0 * fabs(x->d[b] - x->dx[b]); /* |x - dx q| per element */
        int sum = 0;
        for (int k = 0; k < 32; k++) {
            double term = (double)dw * x->dx[b] * wq[k] * x->q[b * 32 + k];
            double wk = (double)dw * wq[k] + mw;
            *tight += term;
            *mag += fabs(term);
            *raw += wk * xraw[b * 32 + k];
            *bound += fabs(wk) * e;
            sum += x->q[b * 32 + k];
        }
        if (t == MSA_DTYPE_Q4_1) {
            *tight += (double)mw * x->sx[b];
            *mag += fabs((double)mw * x->sx[b]);
            *bound += fabs((double)mw) * fabs((double)x->dx[b] * sum - x->sx[b]); /* the fp16 rounding of s */
        }
    }
}

/* One product through msa_matmul_rows; returns the number of elements outside tolerance. Quantized weights
 * must match q_exact bit for bit; float weights the double reference to 1e-5 of sum|w*x|. */
static int check_case(msa_threadpool *tp, msa_dtype dt, int64_t n_out, int64_t n_in, int n_tok, int64_t row0,
                      int64_t n_rows) {
    size_t bytes;
    uint8_t *wdata = make_weights(dt, n_out, n_in, &bytes);
    msa_tensor w = {.name = "w", .dtype = dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
    size_t nx = (size_t)n_tok * (size_t)n_in, nb = nx / 32 + 1;
    float *x = malloc(sizeof(float) * nx);
    float *y = malloc(sizeof(float) * (size_t)(n_tok * n_rows));
    float *wrow = malloc(sizeof(float) * (size_t)n_in);
    q8ref xr = {malloc(nx), malloc(nb * 4), malloc(nb * 4), malloc(nb * 8)};
    make_acts(x, n_tok, n_in);
    for (int64_t i = 0; i < n_tok * n_rows; i++) y[i] = NAN;
    if (row0 == 0 && n_rows == n_out) msa_matmul(tp, &w, x, y, n_tok);
    else msa_matmul_rows(tp, &w, row0, n_rows, x, y, n_tok);
    int bad = 0;
    size_t rb = msa_dtype_row_bytes(dt, n_in);
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * n_in;
        int64_t bt = t * (n_in / 32);
        q8ref xq = {xr.q + t * n_in, xr.dx + bt, xr.sx + bt, xr.d + bt};
        if (is_quant(dt)) q8_round(xt, n_in, &xq);
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *row = wdata + (size_t)(row0 + r) * rb;
            double tight = 0, mag = 0, raw = 0, bound = 0;
            float got = y[t * n_rows + r], exact = 0;
            if (is_quant(dt)) {
                q_double(dt, row, xt, n_in, &xq, &tight, &mag, &raw, &bound);
                exact = q_exact(dt, row, n_in, &xq);
            } else {
                msa_row_to_f32(dt, row, wrow, n_in);
                for (int64_t i = 0; i < n_in; i++) {
                    double xi = act_round(dt, xt[i]);
                    tight += (double)wrow[i] * xi;
                    mag += fabs((double)wrow[i] * xi);
                    raw += (double)wrow[i] * xt[i];
                    bound += fabs((double)wrow[i] * (xt[i] - xi));
                }
            }
            double tol = 1e-5 * mag + 1e-30;
            int ok = fabs(got - tight) <= tol && fabs(got - raw) <= bound + tol;
            if (is_quant(dt)) ok = ok && memcmp(&got, &exact, 4) == 0;
            if (!ok) {
                if (bad < 3)
                    fprintf(stderr, "  %s/%s n_out=%lld n_in=%lld n_tok=%d row %lld tok %d: got %.9g, exact %.9g, tight %.9g (tol %.3g), raw %.9g (bound %.3g)\n",
                            msa_cpu_simd_name(), msa_dtype_name(dt), (long long)n_out, (long long)n_in, n_tok,
                            (long long)(row0 + r), t, got, exact, tight, tol, raw, bound + tol);
                bad++;
            }
        }
    }
    free(wdata);
    free(x);
    free(y);
    free(wrow);
    free(xr.q);
    free(xr.dx);
    free(xr.sx);
    free(xr.d);
    return bad;
}

/* Random shapes for every dtype on the current SIMD level. */
static void random_shapes(msa_threadpool *tp, int n_cases) {
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        int bad = 0;
        for (int c = 0; c < n_cases; c++) {
            int64_t n_out = irand(1, 40) * 2 + 1;                             /* odd */
            int64_t n_in = is_quant((msa_dtype)dt) ? 32 * irand(1, 21) : irand(1, 700);
            int n_tok = c == 0 ? 1 : irand(1, 40);
            bad += check_case(tp, (msa_dtype)dt, n_out, n_in, n_tok, 0, n_out);
        }
        if (bad) fprintf(stderr, "  %s %s: %d wrong outputs\n", msa_cpu_simd_name(), msa_dtype_name((msa_dtype)dt), bad);
        CHECK(bad == 0);
    }
}

/* Every SIMD level, with the panel (prefill) kernels off and on. */
static void each_level(void (*fn)(msa_threadpool *, int), msa_threadpool *tp, int n) {
    msa_simd saved = msa_cpu_simd();
    int saved_panel = msa_cpu_set_panel(0);
    for (int panel = 0; panel <= 1; panel++) {
        msa_cpu_set_panel(panel);
        for (int l = 0; l <= (int)msa_cpu_simd_max(); l++) {
            if (!msa_cpu_set_simd((msa_simd)l)) continue;
            fn(tp, n);
        }
    }
    msa_cpu_set_simd(saved);
    msa_cpu_set_panel(saved_panel);
}

TEST(kernels_random_shapes_single_thread) { each_level(random_shapes, NULL, asan() ? 4 : 12); }

/* Several threads, row sub-ranges (vocab slices), and a prefill large enough to prepare in parallel. */
static void threaded(msa_threadpool *tp, int n) {
    (void)n;
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        int bad = 0;
        bad += check_case(tp, (msa_dtype)dt, 301, 1056, 37, 0, 301);   /* parallel prep; k in 2 passes */
        bad += check_case(tp, (msa_dtype)dt, 257, 96, 1, 0, 257);      /* decode */
        bad += check_case(tp, (msa_dtype)dt, 203, 64, 5, 17, 150);     /* a row slice */
        bad += check_case(tp, (msa_dtype)dt, 1000, 32, 1, 999, 1);     /* the last row alone */
        CHECK(bad == 0);
    }
}

TEST(kernels_threads_and_row_slices) {
    for (int nth = 2; nth <= 3; nth++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        each_level(threaded, tp, 0);
        msa_threadpool_free(tp);
    }
}

/* Extreme activations: huge (up to the fp16 scale's range: amax <= 65504 * 127, |d * sum q| <= 65504) and tiny magnitudes (whose
 * fp16 scale underflows to 0 or to a subnormal), exact ties for the q8 rounding; float weights take 1e30. */
static void extremes(msa_threadpool *tp, int n) {
    (void)tp;
    (void)n;
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        int64_t n_in = 96, n_out = 5;
        size_t bytes;
        uint8_t *wdata = make_weights((msa_dtype)dt, n_out, n_in, &bytes);
        msa_tensor w = {.name = "w", .dtype = (msa_dtype)dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
        float x[2 * 96], y[2 * 5], wrow[96];
        int8_t q[96];
        float dx[3], sx[3];
        double d[3];
        /* Q4_1 also needs the fp16 s = d * sum q in range: the first block's q sum to 127 */
        float big = dt == MSA_DTYPE_Q4_1 ? 6e4f : is_quant((msa_dtype)dt) ? 8e6f : 1e30f;
        for (int i = 0; i < 64; i++) x[i] = (i % 3 == 0) ? big * (i & 1 ? -1 : 1) : 1e-30f * (float)i;
        for (int i = 64; i < 96; i++) x[i] = 1e-6f * (float)(i - 80); /* fp16 scale subnormal */
        for (int i = 0; i < 96; i++) x[96 + i] = (float)(i % 64 - 32) * 0.5f; /* many x/d are exact halves */
        for (int i = 0; i < 10; i++) y[i] = NAN;
        msa_matmul(NULL, &w, x, y, 2);
        for (int t = 0; t < 2; t++) {
            q8ref xq = {q, dx, sx, d};
            if (is_quant((msa_dtype)dt)) q8_round(x + 96 * t, n_in, &xq);
            for (int r = 0; r < n_out; r++) {
                const uint8_t *row = wdata + (size_t)r * msa_dtype_row_bytes((msa_dtype)dt, n_in);
                float got = y[t * 5 + r];
                int ok;
                double ref = 0, mag = 0;
                if (is_quant((msa_dtype)dt)) {
                    ref = q_exact((msa_dtype)dt, row, n_in, &xq);
                    ok = isfinite(got) && memcmp(&got, &(float){(float)ref}, 4) == 0;
                } else {
                    msa_row_to_f32((msa_dtype)dt, row, wrow, n_in);
                    for (int i = 0; i < n_in; i++) {
                        ref += (double)wrow[i] * act_round((msa_dtype)dt, x[96 * t + i]);
                        mag += fabs((double)wrow[i] * act_round((msa_dtype)dt, x[96 * t + i]));
                    }
                    ok = fabs(got - ref) <= 1e-5 * mag;
                }
                if (!ok)
                    fprintf(stderr, "  %s/%s extreme tok %d row %d: got %.9g want %.9g\n", msa_cpu_simd_name(),
                            msa_dtype_name((msa_dtype)dt), t, r, got, ref);
                CHECK(ok);
            }
        }
        free(wdata);
    }
}

TEST(kernels_extreme_activations) { each_level(extremes, NULL, 0); }

/* Batch invariance: a token's outputs are bit-identical whether it is computed alone or inside batches of
 * any size at any offset, with any thread count (every dtype, every SIMD path, the default kernel choice). */
static void batch_invariance(msa_threadpool *tp, int n) {
    (void)n;
    static const int sizes[] = {1, 7, 8, 15, 16, 17, 33, 100};
    enum { NT = 100 };
    /* float rows: 203 inputs (a partial last block everywhere) and 1056 (whole 32-blocks read in place by AMX,
     * and more than one k-block of the AVX-512 bf16 kernel) */
    for (int pass = 0; pass < 2 * MSA_DTYPE_COUNT; pass++) {
        int dt = pass % MSA_DTYPE_COUNT;
        if (pass >= MSA_DTYPE_COUNT && is_quant((msa_dtype)dt)) continue;
        int64_t n_out = 67, n_in = is_quant((msa_dtype)dt) ? 320 : pass < MSA_DTYPE_COUNT ? 203 : 1056;
        size_t bytes;
        uint8_t *wdata = make_weights((msa_dtype)dt, n_out, n_in, &bytes);
        msa_tensor w = {.name = "w", .dtype = (msa_dtype)dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
        float *x = malloc(sizeof(float) * NT * (size_t)n_in);
        float *alone = malloc(sizeof(float) * NT * (size_t)n_out), *y = malloc(sizeof(float) * NT * (size_t)n_out);
        make_acts(x, NT, n_in);
        for (int t = 0; t < NT; t++) msa_matmul(NULL, &w, x + (size_t)t * n_in, alone + (size_t)t * n_out, 1);
        int bad = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            int b = sizes[k];
            for (int off = 0; off + b <= NT; off += b > 50 ? NT : 23 + b) {
                msa_matmul(tp, &w, x + (size_t)off * n_in, y, b);
                if (memcmp(y, alone + (size_t)off * n_out, sizeof(float) * (size_t)b * (size_t)n_out) != 0) {
                    if (bad < 3)
                        fprintf(stderr, "  %s/%s: batch of %d at offset %d differs from tokens alone\n",
                                msa_cpu_simd_name(), msa_dtype_name((msa_dtype)dt), b, off);
                    bad++;
                }
            }
        }
        CHECK(bad == 0);
        free(wdata);
        free(x);
        free(alone);
        free(y);
    }
}

static void each_level_default(void (*fn)(msa_threadpool *, int), msa_threadpool *tp, int n) {
    msa_simd saved = msa_cpu_simd();
    for (int l = 0; l <= (int)msa_cpu_simd_max(); l++) {
        if (!msa_cpu_set_simd((msa_simd)l)) continue;
        fn(tp, n);
    }
    msa_cpu_set_simd(saved);
}

TEST(kernels_batch_invariant) {
    each_level_default(batch_invariance, NULL, 0);
    for (int nth = 2; nth <= 3; nth++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        each_level_default(batch_invariance, tp, 0);
        msa_threadpool_free(tp);
    }
}

/* Quantized results are the same bits on every path (they all follow msa_q_dot's order). */
TEST(kernels_quantized_paths_identical) {
    msa_simd saved = msa_cpu_simd();
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        if (!is_quant((msa_dtype)dt)) continue;
        int64_t n_out = 45, n_in = 576;
        int n_tok = 19;
        size_t bytes;
        uint8_t *wdata = make_weights((msa_dtype)dt, n_out, n_in, &bytes);
        msa_tensor w = {.name = "w", .dtype = (msa_dtype)dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
        float *x = malloc(sizeof(float) * (size_t)n_tok * n_in);
        float *ref = malloc(sizeof(float) * (size_t)n_tok * n_out), *y = malloc(sizeof(float) * (size_t)n_tok * n_out);
        make_acts(x, n_tok, n_in);
        msa_cpu_set_simd(MSA_SIMD_SCALAR);
        msa_matmul(NULL, &w, x, ref, n_tok);
        for (int l = 1; l <= (int)msa_cpu_simd_max(); l++) {
            if (!msa_cpu_set_simd((msa_simd)l)) continue;
            msa_matmul(NULL, &w, x, y, n_tok);
            CHECK(memcmp(y, ref, sizeof(float) * (size_t)n_tok * n_out) == 0);
        }
        free(wdata);
        free(x);
        free(ref);
        free(y);
    }
    msa_cpu_set_simd(saved);
}

/* msa_f32_to_f16 (the scalar spec's fp16 rounding) equals the F16C instruction the SIMD preps use. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("f16c"))) static uint16_t f16c_round(float v) { return (uint16_t)_cvtss_sh(v, 0); }
TEST(kernels_f16_rounding_matches_f16c) {
    if (msa_cpu_simd_max() < MSA_SIMD_AVX2) SKIP("no F16C on this CPU");
    int bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = next_u32() ^ ((uint32_t)next_u32() << 16);
        float v;
        memcpy(&v, &u, 4);
        if (isnan(v)) continue;
        bad += msa_f32_to_f16(v) != f16c_round(v);
    }
    CHECK_EQ_INT(bad, 0);
}
#endif

TEST(kernels_get_row) {
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        size_t bytes;
        uint8_t *wdata = make_weights((msa_dtype)dt, 7, 96, &bytes);
        msa_tensor w = {.name = "e", .dtype = (msa_dtype)dt, .n_dims = 2, .shape = {7, 96, 1, 1}, .data = wdata, .nbytes = bytes};
        float a[96], b[96];
        for (int r = 0; r < 7; r++) {
            msa_get_row_f32(&w, r, a);
            msa_row_to_f32((msa_dtype)dt, wdata + (size_t)r * msa_dtype_row_bytes((msa_dtype)dt, 96), b, 96);
            CHECK(memcmp(a, b, sizeof a) == 0);
        }
        free(wdata);
    }
}

/* AMX-BF16 and AMX-TILE in CPUID leaf 7 (the OS must still grant the tile state; kernels_amx.c asks). */
static int cpu_has_amx_bf16(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (d & (1u << 22)) && (d & (1u << 24));
#else
    return 0;
#endif
}

TEST(kernels_simd_levels) {
    /* The forced level is honoured, and the best level matches what the CPU reports. */
    msa_simd max = msa_cpu_simd_max();
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni")) {
        /* AMX needs the kernel's permission too (Linux >= 5.16); without it the best level is AVX-512 */
        if (cpu_has_amx_bf16() && max != MSA_SIMD_AMX) printf("# AMX-BF16 in CPUID but not usable here\n");
        if (max == MSA_SIMD_AMX) CHECK(cpu_has_amx_bf16());
        else if (__builtin_cpu_supports("avx512bf16")) CHECK_EQ_INT(max, MSA_SIMD_AVX512BF16);
        else CHECK_EQ_INT(max, MSA_SIMD_AVX512);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK_EQ_INT(max, MSA_SIMD_AVX2);
    msa_simd saved = msa_cpu_simd();
    CHECK(msa_cpu_set_simd(MSA_SIMD_SCALAR));
    CHECK(!strcmp(msa_cpu_simd_name(), "scalar"));
    if (max == MSA_SIMD_AMX) {
        CHECK(msa_cpu_set_simd(MSA_SIMD_AMX));
        CHECK(!strcmp(msa_cpu_simd_name(), "amx"));
    }
    if (max >= MSA_SIMD_AVX512BF16) {
        CHECK(msa_cpu_set_simd(MSA_SIMD_AVX512BF16));
        CHECK(!strcmp(msa_cpu_simd_name(), "avx512bf16"));
    }
    msa_cpu_set_simd(saved);
    printf("# simd: %s (best %d); cpu: %s; flags: %s\n", msa_cpu_simd_name(), (int)max, msa_cpu_model_name(),
           msa_cpu_flags());
}

/* vdpbf16ps adds odd then even products per lane and step, as the f32-FMA kernel does: on normal values the
 * two levels agree bit for bit, so measuring which is faster never changes a result. */
TEST(kernels_bf16_dp_equals_fma) {
    if (msa_cpu_simd_max() < MSA_SIMD_AVX512BF16) SKIP("no AVX512-BF16 on this CPU");
    msa_simd saved = msa_cpu_simd();
    static const int toks[] = {1, 2, 5, 6, 7, 13, 40};
    static const int64_t ins[] = {31, 64, 100, 1024, 1500, 2560};
    int bad = 0;
    for (int ii = 0; ii < 6; ii++)
        for (int ti = 0; ti < 7; ti++) {
            int64_t n_in = ins[ii], n_out = 37;
            int n_tok = toks[ti];
            size_t bytes;
            uint8_t *wd = make_weights(MSA_DTYPE_BF16, n_out, n_in, &bytes);
            msa_tensor w = {.name = "w", .dtype = MSA_DTYPE_BF16, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wd, .nbytes = bytes};
            float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
            float *y1 = malloc(sizeof(float) * (size_t)(n_tok * n_out)), *y2 = malloc(sizeof(float) * (size_t)(n_tok * n_out));
            make_acts(x, n_tok, n_in);
            CHECK(msa_cpu_set_simd(MSA_SIMD_AVX512));
            msa_matmul(NULL, &w, x, y1, n_tok);
            CHECK(msa_cpu_set_simd(MSA_SIMD_AVX512BF16));
            msa_matmul(NULL, &w, x, y2, n_tok);
            if (memcmp(y1, y2, sizeof(float) * (size_t)(n_tok * n_out))) {
                if (!bad) fprintf(stderr, "  bf16 dp != fma at n_in %lld n_tok %d\n", (long long)n_in, n_tok);
                bad++;
            }
            free(wd);
            free(x);
            free(y1);
            free(y2);
        }
    CHECK(bad == 0);
    msa_cpu_set_simd(saved);
}

/* The measured choice and its cache: a hostile or corrupt cache file is ignored (and replaced), a valid one is
 * used without measuring again, and every choice is a level this CPU has. */
TEST(kernels_autotune_cache) {
    char path[] = "/tmp/msa-test-kcache-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static const char hostile[] =
        "msa-kernels 1\t\t\t\t\n"
        "msa-kernels 1\tnot this cpu\tbf16\tamx\tamx\n"
        "garbage \x01\x02\xff\n\n\t\t\t\t\t\t\n"
        "msa-kernels 1\tX\tbf16\tscalar\n";
    CHECK(write(fd, hostile, sizeof hostile - 1) == (ssize_t)(sizeof hostile - 1));
    char big[4096];
    memset(big, 'A', sizeof big); /* one very long line, no newline */
    for (int i = 0; i < 8; i++) CHECK(write(fd, big, sizeof big) == (ssize_t)sizeof big);
    close(fd);
    setenv("MSA_KERNEL_CACHE", path, 1);
    msa_simd saved = msa_cpu_simd();
    msa_cpu_set_simd_auto();
    int n0 = msa_cpu_autotune_reset();
    const char *names[] = {"scalar", "avx2", "avx512", "avx512bf16", "amx"};
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++)
        for (int c = 0; c < 2; c++) {
            const char *k = msa_cpu_kernel_choice((msa_dtype)dt, c);
            int known = 0;
            for (int l = 0; l <= (int)msa_cpu_simd_max(); l++) known |= !strcmp(k, names[l]);
            CHECK(known);
        }
    char first[MSA_DTYPE_COUNT][2][16];
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++)
        for (int c = 0; c < 2; c++) snprintf(first[dt][c], 16, "%s", msa_cpu_kernel_choice((msa_dtype)dt, c));
    /* bf16 has a choice wherever AVX-512 does: it must have been measured, then read back without measuring */
    int n1 = msa_cpu_autotune_reset();
    if (msa_cpu_simd_max() >= MSA_SIMD_AVX512) CHECK(n1 > n0);
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++)
        for (int c = 0; c < 2; c++) CHECK(!strcmp(first[dt][c], msa_cpu_kernel_choice((msa_dtype)dt, c)));
    CHECK_EQ_INT(msa_cpu_autotune_reset(), n1);
    /* float dtypes: one level for decode and prefill (batch invariance) */
    CHECK(!strcmp(msa_cpu_kernel_choice(MSA_DTYPE_BF16, 0), msa_cpu_kernel_choice(MSA_DTYPE_BF16, 1)));
    CHECK(!strcmp(msa_cpu_kernel_choice(MSA_DTYPE_F32, 0), msa_cpu_kernel_choice(MSA_DTYPE_F32, 1)));
    printf("# chosen bf16: %s; q4_1 decode %s, prefill %s\n", msa_cpu_kernel_choice(MSA_DTYPE_BF16, 0),
           msa_cpu_kernel_choice(MSA_DTYPE_Q4_1, 0), msa_cpu_kernel_choice(MSA_DTYPE_Q4_1, 1));
    /* the chosen kernels compute correctly (default choice, several token counts) */
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) CHECK(check_case(NULL, (msa_dtype)dt, 21, 96, 9, 0, 21) == 0);
    CHECK(check_case(NULL, MSA_DTYPE_BF16, 21, 96, 1, 0, 21) == 0);
    unlink(path);
    setenv("MSA_KERNEL_CACHE", "off", 1);
    msa_cpu_autotune_reset();
    msa_cpu_set_simd(saved);
}

/* msa_matmul_multi gives each product bit for bit what msa_matmul gives it, fused (one activation format)
 * or not (mixed dtypes fall back to one call per weight). */
static void multi_case(msa_threadpool *tp, const msa_dtype *dts, int n_w, int n_tok) {
    const int64_t n_in = 160, n_out[3] = {96, 32, 203};
    msa_tensor w[3];
    uint8_t *wd[3];
    float *y1[3], *y2[3];
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    make_acts(x, n_tok, n_in);
    for (int i = 0; i < n_w; i++) {
        size_t bytes;
        wd[i] = make_weights(dts[i], n_out[i], n_in, &bytes);
        w[i] = (msa_tensor){.name = "w", .dtype = dts[i], .n_dims = 2, .shape = {n_out[i], n_in, 1, 1}, .data = wd[i], .nbytes = bytes};
        y1[i] = malloc(sizeof(float) * (size_t)(n_tok * n_out[i]));
        y2[i] = malloc(sizeof(float) * (size_t)(n_tok * n_out[i]));
        for (int64_t k = 0; k < n_tok * n_out[i]; k++) y2[i][k] = NAN;
        msa_matmul(tp, &w[i], x, y1[i], n_tok);
    }
    const msa_tensor *ws[3] = {&w[0], &w[1], &w[2]};
    msa_matmul_multi(tp, n_w, ws, x, y2, n_tok);
    for (int i = 0; i < n_w; i++) {
        int same = memcmp(y1[i], y2[i], sizeof(float) * (size_t)(n_tok * n_out[i])) == 0;
        if (!same) fprintf(stderr, "  %s: multi differs for weight %d (%s), n_tok %d\n", msa_cpu_simd_name(), i, msa_dtype_name(dts[i]), n_tok);
        CHECK(same);
        free(wd[i]);
        free(y1[i]);
        free(y2[i]);
    }
    free(x);
}

static void multi_all(msa_threadpool *tp, int n) {
    (void)n;
    static const int toks[] = {1, 3, 20};
    for (int ti = 0; ti < 3; ti++) {
        for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
            msa_dtype same[3] = {(msa_dtype)dt, (msa_dtype)dt, (msa_dtype)dt};
            multi_case(tp, same, 3, toks[ti]);
            multi_case(tp, same, 2, toks[ti]);
        }
        msa_dtype mixed[3] = {MSA_DTYPE_Q4_1, MSA_DTYPE_Q8_0, MSA_DTYPE_F32};
        multi_case(tp, mixed, 3, toks[ti]);
    }
}

TEST(kernels_multi_equals_single) {
    for (int nth = 1; nth <= 2; nth++) {
        msa_threadpool *tp = NULL;
        CHECK(msa_threadpool_new(nth, &tp) == MSA_OK);
        if (!tp) return;
        each_level(multi_all, tp, 0);
        msa_threadpool_free(tp);
    }
}

int main(void) {
    setenv("MSA_KERNEL_CACHE", "off", 1); /* never the user's cache; kernels_autotune_cache uses its own */
    RUN(kernels_simd_levels);
    RUN(kernels_bf16_dp_equals_fma);
    RUN(kernels_autotune_cache);
    RUN(kernels_random_shapes_single_thread);
    RUN(kernels_threads_and_row_slices);
    RUN(kernels_extreme_activations);
    RUN(kernels_get_row);
    RUN(kernels_batch_invariant);
    RUN(kernels_quantized_paths_identical);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    RUN(kernels_f16_rounding_matches_f16c);
#endif
    RUN(kernels_multi_equals_single);
    return test_summary();
}
