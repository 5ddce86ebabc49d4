/* tensor.c — dtype sizes, f16/bf16 conversions and the scalar dequantizers every kernel is checked against. */
#include "model/tensor.h"

#include <math.h>
#include <string.h>

const char *msa_dtype_name(msa_dtype t) {
    static const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"};
    return (unsigned)t < MSA_DTYPE_COUNT ? names[t] : "?";
}

size_t msa_dtype_row_bytes(msa_dtype t, int64_t n) {
    if (n < 0) return 0;
    switch (t) {
    case MSA_DTYPE_F32: return (size_t)n * 4;
    case MSA_DTYPE_F16:
    case MSA_DTYPE_BF16: return (size_t)n * 2;
    case MSA_DTYPE_Q8_0: return n % MSA_QK ? 0 : (size_t)(n / MSA_QK) * 34;
    case MSA_DTYPE_Q4_0: return n % MSA_QK ? 0 : (size_t)(n / MSA_QK) * 18;
    case MSA_DTYPE_Q4_1: return n % MSA_QK ? 0 : (size_t)(n / MSA_QK) * 20;
    default: return 0;
    }
}

int64_t msa_tensor_nelements(const msa_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

float msa_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t msa_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000) {                                  /* subnormal or zero in f16 */
        float a;
        memcpy(&a, &absx, 4);
        /* scale so that the f16 subnormal unit (2^-24) is 1, round to nearest even */
        float scaled = a * 16777216.0f;
        uint32_t m = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float msa_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t msa_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void msa_row_to_f32(msa_dtype t, const void *row, float *out, int64_t n) {
    const uint8_t *p = row;
    switch (t) {
    case MSA_DTYPE_F32: memcpy(out, row, (size_t)n * 4); return;
    case MSA_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = msa_f16_to_f32(h);
        }
        return;
    case MSA_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = msa_bf16_to_f32(h);
        }
        return;
    case MSA_DTYPE_Q8_0:
        for (int64_t b = 0; b < n / MSA_QK; b++, p += 34) {
            uint16_t d16;
            memcpy(&d16, p, 2);
            float d = msa_f16_to_f32(d16);
            for (int j = 0; j < MSA_QK; j++) out[b * MSA_QK + j] = d * (float)(int8_t)p[2 + j];
        }
        return;
    case MSA_DTYPE_Q4_0:
        for (int64_t b = 0; b < n / MSA_QK; b++, p += 18) {
            uint16_t d16;
            memcpy(&d16, p, 2);
            float d = msa_f16_to_f32(d16);
            for (int j = 0; j < 16; j++) {
                out[b * MSA_QK + j] = d * (float)((p[2 + j] & 0xf) - 8);
                out[b * MSA_QK + j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
        }
        return;
    case MSA_DTYPE_Q4_1:
        for (int64_t b = 0; b < n / MSA_QK; b++, p += 20) {
            uint16_t d16, m16;
            memcpy(&d16, p, 2);
            memcpy(&m16, p + 2, 2);
            float d = msa_f16_to_f32(d16), m = msa_f16_to_f32(m16);
            for (int j = 0; j < 16; j++) {
                out[b * MSA_QK + j] = d * (float)(p[4 + j] & 0xf) + m;
                out[b * MSA_QK + j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
        }
        return;
    default: return;
    }
}
