/* kernels.h — CPU compute kernels: matrix products against stored-dtype weights, with run-time dispatch to
 * AVX-512 / AVX2 / scalar. Activations are float32 in and out; a kernel may convert activations to the
 * weight's partner format internally (bf16 for bf16, q8 blocks for quantized, as llama.cpp does) — that is
 * part of its documented numerics and is checked against the scalar reference within tolerance. */
#ifndef MSA_BACKEND_CPU_KERNELS_H
#define MSA_BACKEND_CPU_KERNELS_H

#include <stdint.h>

#include "model/tensor.h"
#include "util/threadpool.h"

/* y[t, o] = sum_i W[o, i] * x[t, i]   for t < n_tok, o < n_out (W is [n_out, n_in], any msa_dtype).
 * x: [n_tok, n_in] f32 row-major, y: [n_tok, n_out] f32 row-major. Parallel over tp. */
void msa_matmul(msa_threadpool *tp, const msa_tensor *w, const float *x, float *y, int n_tok);

/* The same over a row range of W: y[t, o - row0] for o in [row0, row0+n_rows) (used for vocab slices). */
void msa_matmul_rows(msa_threadpool *tp, const msa_tensor *w, int64_t row0, int64_t n_rows, const float *x,
                     float *y, int n_tok);

/* Copy row r of W (an embedding table) as f32 into out[n_in]. */
void msa_get_row_f32(const msa_tensor *w, int64_t r, float *out);

/* Which SIMD path was chosen ("avx512", "avx2", "scalar"); MSA_SIMD=scalar|avx2 in the environment forces a
 * lower one (for tests). */
const char *msa_cpu_simd_name(void);

#endif
