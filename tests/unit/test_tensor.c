/* test_tensor.c — dtype sizes, f16/bf16 conversions and the scalar dequantizers. */
#include "model/tensor.h"
#include "test.h"

TEST(f16_roundtrip_all_finite) {
    /* every finite f16 value converts to f32 and back unchanged */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (msa_f32_to_f16(msa_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_NEAR(msa_f16_to_f32(0x3c00), 1.0, 0);
    CHECK_NEAR(msa_f16_to_f32(0x0001), 5.960464477539063e-08, 0);
    CHECK_EQ_INT(msa_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(msa_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
}

TEST(bf16_rounding) {
    CHECK_EQ_INT(msa_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(msa_f32_to_bf16(1.00390625f), 0x3f80);  /* exact tie -> even */
    CHECK_EQ_INT(msa_f32_to_bf16(1.01171875f), 0x3f82);  /* tie, odd below -> up */
    CHECK_NEAR(msa_bf16_to_f32(0xc040), -3.0, 0);
}

TEST(q4_1_dequant) {
    uint8_t blk[20] = {0};
    uint16_t d = msa_f32_to_f16(0.5f), m = msa_f32_to_f16(-1.0f);
    memcpy(blk, &d, 2);
    memcpy(blk + 2, &m, 2);
    for (int j = 0; j < 16; j++) blk[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    float out[32];
    msa_row_to_f32(MSA_DTYPE_Q4_1, blk, out, 32);
    CHECK_NEAR(out[3], 0.5 * 3 - 1, 0);
    CHECK_NEAR(out[16 + 3], 0.5 * 12 - 1, 0);
    CHECK_EQ_INT(msa_dtype_row_bytes(MSA_DTYPE_Q4_1, 64), 40);
    CHECK_EQ_INT(msa_dtype_row_bytes(MSA_DTYPE_Q8_0, 33), 0);
}

int main(void) {
    RUN(f16_roundtrip_all_finite);
    RUN(bf16_rounding);
    RUN(q4_1_dequant);
    return test_summary();
}
