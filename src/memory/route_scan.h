/* route_scan.h — the inner products of the routing scan (route.c), one definition in three ISAs.
 *
 * Every inner product of routing is computed in one fixed order, the "canonical dot" below, by the scalar
 * reference, the AVX2 kernel and the AVX-512 kernel alike, so that scores (and therefore top-k sets, ties
 * included) are bit-identical whatever the CPU, the ISA forced with MSA_SIMD=, or the thread count:
 *
 *   lane j (0..15) accumulates q[i]*k[i] for i = j, j+16, j+32, ... < len in increasing i, each step one
 *   fused multiply-add (fmaf) in f32 starting from +0;
 *   then r[j] = a[j] + a[j+8] (j < 8), r[j] += r[j+4] (j < 4), r[j] += r[j+2] (j < 2), result r[0] + r[1].
 *
 * That is a 16-lane f32 FMA loop and a halving reduction: what one AVX-512 register does natively, and two
 * AVX2 registers (lanes 0..7, 8..15) emulate. The ISA is chosen at run time with the matmul kernels'
 * msa_cpu_simd() (src/backend/cpu/kernels_impl.h; MSA_SIMD=scalar|avx2 forces a lower level). */
#ifndef MSA_MEMORY_ROUTE_SCAN_H
#define MSA_MEMORY_ROUTE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The canonical dot of q[0..len) and k[0..len), scalar (the specification of the kernels below). */
float msa_route_dot_ref(const float *q, const float *k, int len);

/* out[c * ldo + t] = canonical dot(q + t * qs, k + c * ks, len) for c < nc, t < nt (strides in floats).
 * keys k [nc][ks] f32 (bf16 keys are widened first with msa_route_widen_bf16, which is exact),
 * queries q [nt][qs] f32. */
void msa_route_dots(const float *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len, float *out,
                    size_t ldo);

/* The same with bf16 keys k [nc][ks] read directly (widened in registers: the same bits) — for few query
 * rows, where widening a block into memory first would cost more than the products. Returns false without
 * computing anything when this ISA has no such kernel (then widen and call msa_route_dots). */
bool msa_route_dots_bf16(const uint16_t *k, size_t ks, int nc, const float *q, size_t qs, int nt, int len,
                         float *out, size_t ldo);

/* dst[i] = the f32 value of the bf16 src[i], i < n (exact). */
void msa_route_widen_bf16(const uint16_t *src, size_t n, float *dst);

/* For each of m rows b: best[row[b] * n + t] = y[b * n + t] * scale[b] where that is greater, t < n: exactly
 * `if (v > best) best = v` (a NaN product never replaces, an equal one keeps best's bits), in SIMD where the CPU
 * has it. Read mode's running maximum per routing token of each key's document (readmode.c); rows may repeat. */
void msa_route_max_scaled(const float *y, const float *scale, const uint32_t *row, int m, int n, float *best);

#endif
