/* kernels_scalar.c — the portable matmul kernels: the numerical specification the SIMD kernels follow
 * (same activation formats, same rounding), and the path used on CPUs without AVX2. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

static float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return msa_f16_to_f32(h);
}

size_t msa_q8_prep_bytes(int64_t n_in) {
    int64_t nb = n_in / MSA_QK;
    size_t bytes = (size_t)n_in + (size_t)nb * 8;
    return (bytes + 63) & ~(size_t)63;
}

void msa_q8_prep_layout(const uint8_t *row, int64_t n_in, const int8_t **q, const float **d, const int32_t **sum) {
    int64_t nb = n_in / MSA_QK;
    *q = (const int8_t *)row;
    *d = (const float *)(row + n_in);
    *sum = (const int32_t *)(row + n_in + nb * 4);
}

static void prep_q8_scalar(const float *x, int64_t n_in, void *out) {
    int64_t nb = n_in / MSA_QK;
    int8_t *q = out;
    float *d = (float *)((uint8_t *)out + n_in);
    int32_t *sum = (int32_t *)((uint8_t *)out + n_in + nb * 4);
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * MSA_QK;
        float amax = 0;
        for (int j = 0; j < MSA_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float db = amax / 127.0f;
        float id = db != 0 ? 1.0f / db : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < MSA_QK; j++) {
            int v = (int)nearbyintf(xb[j] * id); /* default rounding mode: half to even */
            q[b * MSA_QK + j] = (int8_t)v;
            s += v;
        }
        d[b] = db;
        sum[b] = s;
    }
}

static void gemm_f32(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act, size_t as,
                     int n_tok, float *y, int64_t ldy) {
    for (int t = 0; t < n_tok; t++) {
        const float *x = (const float *)(act + (size_t)t * as);
        for (int64_t r = 0; r < n_rows; r++) {
            const float *wr = (const float *)(w + (size_t)r * rb);
            float s = 0;
            for (int64_t i = 0; i < n_in; i++) s += wr[i] * x[i];
            y[t * ldy + r] = s;
        }
    }
}

static void gemm_f16(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act, size_t as,
                     int n_tok, float *y, int64_t ldy) {
    for (int t = 0; t < n_tok; t++) {
        const float *x = (const float *)(act + (size_t)t * as);
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *wr = w + (size_t)r * rb;
            float s = 0;
            for (int64_t i = 0; i < n_in; i++) s += load_f16(wr + 2 * i) * x[i];
            y[t * ldy + r] = s;
        }
    }
}

static void gemm_bf16(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act, size_t as,
                      int n_tok, float *y, int64_t ldy) {
    for (int t = 0; t < n_tok; t++) {
        const float *x = (const float *)(act + (size_t)t * as);
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *wr = w + (size_t)r * rb;
            float s = 0;
            for (int64_t i = 0; i < n_in; i++) {
                uint16_t h;
                memcpy(&h, wr + 2 * i, 2);
                s += msa_bf16_to_f32(h) * x[i];
            }
            y[t * ldy + r] = s;
        }
    }
}

/* The quantized kernels share one loop; `kind` picks the weight block decoding. */
static void gemm_q(msa_dtype kind, const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                   size_t as, int n_tok, float *y, int64_t ldy) {
    int64_t nb = n_in / MSA_QK;
    for (int t = 0; t < n_tok; t++) {
        const int8_t *q;
        const float *d;
        const int32_t *sum;
        msa_q8_prep_layout(act + (size_t)t * as, n_in, &q, &d, &sum);
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *p = w + (size_t)r * rb;
            float s = 0;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *qb = q + b * MSA_QK;
                int32_t dot = 0;
                if (kind == MSA_DTYPE_Q8_0) {
                    for (int j = 0; j < MSA_QK; j++) dot += (int8_t)p[2 + j] * qb[j];
                    s += load_f16(p) * d[b] * (float)dot;
                    p += 34;
                } else if (kind == MSA_DTYPE_Q4_0) {
                    for (int j = 0; j < 16; j++) dot += (p[2 + j] & 0xf) * qb[j] + (p[2 + j] >> 4) * qb[j + 16];
                    s += load_f16(p) * d[b] * (float)(dot - 8 * sum[b]);
                    p += 18;
                } else {
                    for (int j = 0; j < 16; j++) dot += (p[4 + j] & 0xf) * qb[j] + (p[4 + j] >> 4) * qb[j + 16];
                    s += load_f16(p) * d[b] * (float)dot + load_f16(p + 2) * d[b] * (float)sum[b];
                    p += 20;
                }
            }
            y[t * ldy + r] = s;
        }
    }
}

#define GEMM_Q(name, kind)                                                                                     \
    static void name(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act, size_t as, \
                     int n_tok, float *y, int64_t ldy) {                                                       \
        gemm_q(kind, w, rb, n_in, n_rows, act, as, n_tok, y, ldy);                                            \
    }
GEMM_Q(gemm_q8_0, MSA_DTYPE_Q8_0)
GEMM_Q(gemm_q4_0, MSA_DTYPE_Q4_0)
GEMM_Q(gemm_q4_1, MSA_DTYPE_Q4_1)

int msa_kernels_scalar(msa_kernel table[MSA_DTYPE_COUNT]) {
    table[MSA_DTYPE_F32] = (msa_kernel){.gemm = gemm_f32};
    table[MSA_DTYPE_F16] = (msa_kernel){.gemm = gemm_f16};
    table[MSA_DTYPE_BF16] = (msa_kernel){.gemm = gemm_bf16};
    table[MSA_DTYPE_Q8_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8_scalar, .gemm = gemm_q8_0};
    table[MSA_DTYPE_Q4_0] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8_scalar, .gemm = gemm_q4_0};
    table[MSA_DTYPE_Q4_1] = (msa_kernel){.prep_bytes = msa_q8_prep_bytes, .prep = prep_q8_scalar, .gemm = gemm_q4_1};
    return 1;
}
