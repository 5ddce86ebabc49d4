/* bf16_avx512.h — msa_f32_to_bf16 on 16 lanes, shared by the AVX-512 and AMX bf16 kernels' activation preps.
 * Internal to src/backend/cpu/; include only from x86-64 GCC/clang code (it declares an AVX-512 function). */
#ifndef MSA_BACKEND_CPU_BF16_AVX512_H
#define MSA_BACKEND_CPU_BF16_AVX512_H

#include <immintrin.h>

/* Round-half-even to bf16, NaN kept quiet, byte-identical to msa_f32_to_bf16 per lane; the bf16 is in each
 * 32-bit lane's low half. */
static inline __attribute__((always_inline, target("avx512f"))) __m512i msa_bf16_bits_avx512(__m512 x) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    __m512i v = _mm512_castps_si512(x);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(v, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(v, 16), one))), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(v, absmask), inf);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(0x40)));
}

#endif
