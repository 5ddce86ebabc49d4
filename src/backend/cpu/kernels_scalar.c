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

void msa_q8_prep_layout(const uint8_t *row, int64_t n_in, const int8_t **q, const float **d, const float **s) {
    int64_t nb = n_in / MSA_QK;
    *q = (const int8_t *)row;
    *d = (const float *)(row + n_in);
    *s = (const float *)(row + n_in + nb * 4);
}

float msa_f16_round(float v) { return msa_f16_to_f32(msa_f32_to_f16(v)); }

/* llama.cpp's quantize_row_q8_0 / quantize_row_q8_1 (ggml-cpu, x86): note the multiplier is 127/amax, not
 * 1/d, and d and d*sum are stored as fp16. */
static void prep_q8_scalar(const float *x, int64_t n_in, void *out) {
    int64_t nb = n_in / MSA_QK;
    int8_t *q = out;
    float *d = (float *)((uint8_t *)out + n_in);
    float *s = d + nb;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * MSA_QK;
        float amax = 0;
        for (int j = 0; j < MSA_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float db = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < MSA_QK; j++) {
            int v = (int)nearbyintf(xb[j] * id); /* default rounding mode: half to even */
            q[b * MSA_QK + j] = (int8_t)v;
            sum += v;
        }
        d[b] = msa_f16_round(db);
        s[b] = msa_f16_round(db * (float)sum);
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

/* The quantized kernels share one loop; `kind` picks the weight block decoding. The order of every f32
 * operation is the specification (msa_q_dot in kernels_impl.h): 8 lanes, lane j takes elements 4j..4j+3 of
 * every block; see kernels.h. */
static void gemm_q(msa_dtype kind, const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                   size_t as, int n_tok, float *y, int64_t ldy) {
    int64_t nb = n_in / MSA_QK;
    for (int t = 0; t < n_tok; t++) {
        const int8_t *q;
        const float *d, *sx;
        msa_q8_prep_layout(act + (size_t)t * as, n_in, &q, &d, &sx);
        for (int64_t r = 0; r < n_rows; r++) {
            const uint8_t *p = w + (size_t)r * rb;
            float acc[8] = {0}, msum = 0;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *qb = q + b * MSA_QK;
                int8_t wb[MSA_QK];
                float dw = load_f16(p);
                if (kind == MSA_DTYPE_Q8_0) {
                    memcpy(wb, p + 2, MSA_QK);
                    p += 34;
                } else {
                    const uint8_t *qs = p + (kind == MSA_DTYPE_Q4_1 ? 4 : 2);
                    int off = kind == MSA_DTYPE_Q4_0 ? 8 : 0;
                    for (int j = 0; j < 16; j++) {
                        wb[j] = (int8_t)((qs[j] & 0xf) - off);
                        wb[j + 16] = (int8_t)((qs[j] >> 4) - off);
                    }
                    if (kind == MSA_DTYPE_Q4_1) msum = fmaf(load_f16(p + 2), sx[b], msum);
                    p += kind == MSA_DTYPE_Q4_1 ? 20 : 18;
                }
                float scale = dw * d[b];
                for (int j = 0; j < 8; j++) {
                    int32_t dot = 0;
                    for (int k = 4 * j; k < 4 * j + 4; k++) dot += wb[k] * qb[k];
                    acc[j] = fmaf(scale, (float)dot, acc[j]);
                }
            }
            y[t * ldy + r] = msa_q_hsum8(acc) + msum;
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
