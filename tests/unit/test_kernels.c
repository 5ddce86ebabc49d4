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
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* The documented activation rounding for weights of dtype t; also returns the per-element rounding bound. */
static void round_acts(msa_dtype t, const float *x, int64_t n, float *xr, float *err) {
    if (t == MSA_DTYPE_Q8_0 || t == MSA_DTYPE_Q4_0 || t == MSA_DTYPE_Q4_1) {
        for (int64_t b = 0; b < n; b += 32) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b + j]));
            float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            for (int j = 0; j < 32; j++) {
                xr[b + j] = d * nearbyintf(x[b + j] * id);
                err[b + j] = d * 0.5f * 1.0001f;
            }
        }
    } else if (t == MSA_DTYPE_BF16) { /* bf16 weights take bf16 activations (round half to even) */
        for (int64_t i = 0; i < n; i++) {
            xr[i] = msa_bf16_to_f32(msa_f32_to_bf16(x[i]));
            err[i] = fabsf(x[i]) * (1.0f / 256.0f);
        }
    } else {
        memcpy(xr, x, (size_t)n * 4);
        memset(err, 0, (size_t)n * 4);
    }
}

/* One product through msa_matmul_rows; returns the number of elements outside tolerance. */
static int check_case(msa_threadpool *tp, msa_dtype dt, int64_t n_out, int64_t n_in, int n_tok, int64_t row0,
                      int64_t n_rows) {
    size_t bytes;
    uint8_t *wdata = make_weights(dt, n_out, n_in, &bytes);
    msa_tensor w = {.name = "w", .dtype = dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *xr = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *xe = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *y = malloc(sizeof(float) * (size_t)(n_tok * n_rows));
    float *wrow = malloc(sizeof(float) * (size_t)n_in);
    make_acts(x, n_tok, n_in);
    for (int t = 0; t < n_tok; t++) round_acts(dt, x + t * n_in, n_in, xr + t * n_in, xe + t * n_in);
    for (int64_t i = 0; i < n_tok * n_rows; i++) y[i] = NAN;
    if (row0 == 0 && n_rows == n_out) msa_matmul(tp, &w, x, y, n_tok);
    else msa_matmul_rows(tp, &w, row0, n_rows, x, y, n_tok);
    int bad = 0;
    size_t rb = msa_dtype_row_bytes(dt, n_in);
    for (int64_t r = 0; r < n_rows; r++) {
        msa_row_to_f32(dt, wdata + (size_t)(row0 + r) * rb, wrow, n_in);
        for (int t = 0; t < n_tok; t++) {
            double tight = 0, mag = 0, raw = 0, bound = 0;
            for (int64_t i = 0; i < n_in; i++) {
                double wi = wrow[i];
                tight += wi * xr[t * n_in + i];
                mag += fabs(wi * xr[t * n_in + i]);
                raw += wi * x[t * n_in + i];
                bound += fabs(wi) * xe[t * n_in + i];
            }
            double got = y[t * n_rows + r];
            double tol = 1e-5 * mag + 1e-30;
            if (!(fabs(got - tight) <= tol) || !(fabs(got - raw) <= bound + tol)) {
                if (bad < 3)
                    fprintf(stderr, "  %s/%s n_out=%lld n_in=%lld n_tok=%d row %lld tok %d: got %.9g, tight %.9g (tol %.3g), raw %.9g (bound %.3g)\n",
                            msa_cpu_simd_name(), msa_dtype_name(dt), (long long)n_out, (long long)n_in, n_tok,
                            (long long)(row0 + r), t, got, tight, tol, raw, bound + tol);
                bad++;
            }
        }
    }
    free(wdata);
    free(x);
    free(xr);
    free(xe);
    free(y);
    free(wrow);
    return bad;
}

static int is_quant(msa_dtype t) { return t == MSA_DTYPE_Q8_0 || t == MSA_DTYPE_Q4_0 || t == MSA_DTYPE_Q4_1; }

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

/* Extreme activations: huge and tiny magnitudes, exact ties for the q8 rounding, NaN-free. */
static void extremes(msa_threadpool *tp, int n) {
    (void)tp;
    (void)n;
    for (int dt = 0; dt < MSA_DTYPE_COUNT; dt++) {
        int64_t n_in = 64, n_out = 5;
        size_t bytes;
        uint8_t *wdata = make_weights((msa_dtype)dt, n_out, n_in, &bytes);
        msa_tensor w = {.name = "w", .dtype = (msa_dtype)dt, .n_dims = 2, .shape = {n_out, n_in, 1, 1}, .data = wdata, .nbytes = bytes};
        float x[2 * 64], xr[64], xe[64], y[2 * 5], wrow[64];
        for (int i = 0; i < 64; i++) x[i] = (i % 3 == 0) ? 1e30f * (i & 1 ? -1 : 1) : 1e-30f * (float)i;
        for (int i = 0; i < 64; i++) x[64 + i] = (float)(i - 32) * 0.5f; /* amax 16: many x/d are exact halves */
        for (int i = 0; i < 10; i++) y[i] = NAN;
        msa_matmul(NULL, &w, x, y, 2);
        for (int t = 0; t < 2; t++) {
            round_acts((msa_dtype)dt, x + 64 * t, 64, xr, xe);
            for (int r = 0; r < n_out; r++) {
                msa_row_to_f32((msa_dtype)dt, wdata + (size_t)r * msa_dtype_row_bytes((msa_dtype)dt, n_in), wrow, n_in);
                double ref = 0, mag = 0;
                for (int i = 0; i < 64; i++) {
                    ref += (double)wrow[i] * xr[i];
                    mag += fabs((double)wrow[i] * xr[i]);
                }
                if (!(fabs(y[t * 5 + r] - ref) <= 1e-5 * mag)) {
                    fprintf(stderr, "  %s/%s extreme tok %d row %d: got %.9g want %.9g\n", msa_cpu_simd_name(),
                            msa_dtype_name((msa_dtype)dt), t, r, y[t * 5 + r], ref);
                    test_case_failed = 1;
                }
            }
        }
        free(wdata);
    }
}

TEST(kernels_extreme_activations) { each_level(extremes, NULL, 0); }

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

TEST(kernels_simd_levels) {
    /* The forced level is honoured, and the best level matches what the CPU reports. */
    msa_simd max = msa_cpu_simd_max();
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        CHECK_EQ_INT(max, MSA_SIMD_AVX512);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK_EQ_INT(max, MSA_SIMD_AVX2);
    msa_simd saved = msa_cpu_simd();
    CHECK(msa_cpu_set_simd(MSA_SIMD_SCALAR));
    CHECK(!strcmp(msa_cpu_simd_name(), "scalar"));
    msa_cpu_set_simd(saved);
    printf("# simd: %s (best %d)\n", msa_cpu_simd_name(), (int)max);
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
    RUN(kernels_simd_levels);
    RUN(kernels_random_shapes_single_thread);
    RUN(kernels_threads_and_row_slices);
    RUN(kernels_extreme_activations);
    RUN(kernels_get_row);
    RUN(kernels_multi_equals_single);
    return test_summary();
}
