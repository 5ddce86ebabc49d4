/* kernels.h — CPU compute kernels: matrix products against stored-dtype weights, with run-time dispatch to
 * AVX-512 / AVX2 / scalar. Activations are float32 in and out; a kernel converts activations to the
 * weight's partner format once per call, as llama.cpp does. That conversion is part of the numerics:
 *
 *   weights  activations used                     worst-case effect of the activation rounding
 *   f32      f32 as given                         none (f32 products, f32 accumulation)
 *   f16      f32 as given (weights widened)       none
 *   bf16     bf16 (round-half-even), as llama.cpp  |x' - x| <= |x|/256 (none for HF bf16 models, whose
 *                                                 activations are bf16 already); AMX tiles, vdpbf16ps or
 *                                                 f32 FMA, whichever measured fastest on this CPU
 *   q8_0,    q8 blocks of 32 (llama.cpp's Q8_0/   |x' - x| <= d/2 + 127 |d - fp16(d)| per element, d = amax/127;
 *   q4_0,    Q8_1): q = round-half-even(x *       Q4_1 also uses s = fp16(d * sum q) for the block's x sum
 *   q4_1     127/amax), scale fp16(amax/127)      (the fp16 scale limits |x| to ~8e6 and |d sum q| to 65504)
 *
 * Quantized weights deliberately follow llama.cpp (ggml-cpu, x86 AVX2/AVX-512 builds) bit for bit, so that a
 * GGUF model's greedy tokens can equal llama.cpp's: the activation rounding above is its quantize_row_q8_0/
 * q8_1, and each output is summed in the f32 order of its ggml_vec_dot_q8_0_q8_0 / q4_1_q8_1 (8 lanes of
 * 4-element integer dot products, one fma per block and lane, a fixed 8-lane reduction, plus Q4_1's minimum
 * term fma'd block by block; kernels_impl.h spells it out). Every path (scalar, AVX2, AVX-512, every tile
 * shape and thread count) computes exactly that, so quantized results are bit-identical across paths and
 * batch-invariant: a (row, token) output does not depend on n_tok or the other tokens of the batch.
 * llama.cpp's repacked (Q4_0 on AVX2) and llamafile-sgemm (Q8_0/Q4_0 with n_tok >= 2) paths sum in other
 * orders; Q4_1, the default model's dtype, and any matmul with one token use vec_dot there.
 *
 * Float weights: f32 multiply-adds, accumulated in an order that depends on the SIMD path (paths agree to
 * about 1e-6 of sum|w*x|; AMX's TDPBF16PS has its own fixed f32 arithmetic), batch-invariant within a path
 * unless the AVX-512 float panel kernels are switched on (MSA_PANEL=1). tests/unit/test_kernels.c checks every dtype on every path: quantized ones bit for bit
 * against an independent implementation of the order above, float ones against a double-precision sum. */
#ifndef MSA_BACKEND_CPU_KERNELS_H
#define MSA_BACKEND_CPU_KERNELS_H

#include <stdint.h>

#include "model/tensor.h"
#include "util/threadpool.h"

/* y[t, o] = sum_i W[o, i] * x[t, i]   for t < n_tok, o < n_out (W is [n_out, n_in], any msa_dtype).
 * x: [n_tok, n_in] f32 row-major, y: [n_tok, n_out] f32 row-major. Parallel over tp (NULL: this thread).
 * n_tok == 1 is the decode path (each weight row streamed once, rows split among threads); n_tok > 1 tiles
 * rows x tokens so each weight block is reused across tokens. Not reentrant per calling thread (a scratch
 * buffer for the converted activations is kept per calling thread); different threads may call at once. */
void msa_matmul(msa_threadpool *tp, const msa_tensor *w, const float *x, float *y, int n_tok);

/* The same over a row range of W: y[t, o - row0] for o in [row0, row0+n_rows) (used for vocab slices). */
void msa_matmul_rows(msa_threadpool *tp, const msa_tensor *w, int64_t row0, int64_t n_rows, const float *x,
                     float *y, int n_tok);

/* ys[i] = ws[i] x for i < n_w (n_w <= MSA_MATMUL_MULTI_MAX), all ws[i] with the same n_in: the products of
 * one layer that share an input (q/k/v, gate/up). For a decode step this converts x once and runs all rows
 * of all products in one pool dispatch instead of n_w; each output is computed exactly as msa_matmul would. */
#define MSA_MATMUL_MULTI_MAX 4
void msa_matmul_multi(msa_threadpool *tp, int n_w, const msa_tensor *const *ws, const float *x, float *const *ys,
                      int n_tok);

/* Copy row r of W (an embedding table) as f32 into out[n_in]. */
void msa_get_row_f32(const msa_tensor *w, int64_t r, float *out);

/* The SIMD level ("amx", "avx512bf16", "avx512", "avx2", "scalar"): the best this CPU has, or the one forced
 * by MSA_SIMD=scalar|avx2|avx512|avx512bf16|amx in the environment (for tests and comparisons; a level the
 * CPU lacks falls back to the best one below it). avx512 means F/BW/VL/DQ + VNNI, with bf16 weights on f32
 * FMAs; avx512bf16 adds AVX512-BF16 (bf16 weights on vdpbf16ps); amx has bf16 weights on AMX tiles (AMX-BF16
 * in the CPU and the tile state granted by Linux). */
const char *msa_cpu_simd_name(void);

/* The level whose kernel serves dtype dt for one token (prefill 0) or several (prefill 1). Unless a level is
 * forced, it is measured: each candidate level the CPU has is timed once per process on the dtype's first
 * use (a few ms), and the answer is cached per CPU model in $XDG_CACHE_HOME/msa/kernels.tsv (or
 * ~/.cache/msa/kernels.tsv; MSA_KERNEL_CACHE=path or off overrides). Float dtypes use one level for every
 * token count, so results stay batch-invariant. Calling this may run the measurement. */
const char *msa_cpu_kernel_choice(msa_dtype dt, int prefill);

/* The kernels chosen so far, for reports: "bf16 avx512bf16, q4_1 avx512" (dtypes not used yet are left out;
 * "all avx2 (forced by MSA_SIMD)" when a level is forced). */
#include <stddef.h>
void msa_cpu_kernel_summary(char *buf, size_t n);

/* The CPU's brand string with family and model ("AMD EPYC (family 26 model 2)"), and the SIMD flags that
 * matter to the kernels ("avx2 fma avx512f ... avx512bf16 amx-bf16 ..."), for benchmark reports. */
const char *msa_cpu_model_name(void);
const char *msa_cpu_flags(void);

#endif
