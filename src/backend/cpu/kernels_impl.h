/* kernels_impl.h — the interface between the matmul dispatcher (kernels.c) and the per-ISA kernel files
 * (kernels_scalar.c, kernels_avx2.c, kernels_avx512.c). Internal to src/backend/cpu/ and its tests.
 *
 * A product is computed in two steps:
 *   prep: each activation row x[t] (f32, n_in) is converted once per call into the partner format the
 *         kernel wants (bf16 values, q8 blocks with scales ...), `prep_bytes(n_in)` bytes per token;
 *   gemm: y[t * ldy + r] = sum_i W[r, i] * x'[t, i] for r < n_rows, t < n_tok over prepared rows.
 * F32, F16 and BF16 weights use the f32 activations directly (prep == NULL).
 * With n_tok >= MSA_PANEL_MIN_TOKENS and a panel kernel, the activations are instead transposed once per call
 * into groups of 16 tokens so that one vector holds 16 tokens (see kernels_avx512.c). */
#ifndef MSA_BACKEND_CPU_KERNELS_IMPL_H
#define MSA_BACKEND_CPU_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "model/tensor.h"

typedef size_t (*msa_prep_bytes_fn)(int64_t n_in);
/* Convert one activation row x[n_in] into out (prep_bytes(n_in) bytes, 64-byte aligned). */
typedef void (*msa_prep_fn)(const float *x, int64_t n_in, void *out);
/* w: first weight row; row_bytes between rows. act: first prepared (or f32) activation row; act_stride bytes
 * between tokens. y: output for (token 0, row 0); ldy floats between tokens. */
typedef void (*msa_gemm_fn)(const uint8_t *w, size_t row_bytes, int64_t n_in, int64_t n_rows, const uint8_t *act,
                            size_t act_stride, int n_tok, float *y, int64_t ldy);

/* Panel (prefill) layout: tokens in groups of MSA_PANEL_TOKENS, each group prep_group()ed into
 * panel_bytes(n_in) bytes; gemm_panel then receives act at group 0 of its token block with
 * act_stride = panel_bytes / MSA_PANEL_TOKENS (so act + t0 * act_stride is group t0 / 16; t0 is always a
 * multiple of 16). */
#define MSA_PANEL_TOKENS 16
#define MSA_PANEL_MIN_TOKENS 8
typedef void (*msa_prep_group_fn)(const float *x, int64_t n_in, int n_tok_in_group, void *out);

typedef struct msa_kernel {
    msa_prep_bytes_fn prep_bytes; /* NULL: activations are used as f32 */
    msa_prep_fn prep;
    msa_gemm_fn gemm;
    msa_prep_bytes_fn panel_bytes; /* NULL: no panel kernel; gemm serves every token count */
    msa_prep_group_fn prep_group;
    msa_gemm_fn gemm_panel;
} msa_kernel;

typedef enum msa_simd { MSA_SIMD_SCALAR = 0, MSA_SIMD_AVX2, MSA_SIMD_AVX512, MSA_SIMD_COUNT } msa_simd;

/* Fill table[dtype] for one ISA. Each returns 0 when this CPU lacks the ISA (the table is then untouched);
 * an ISA may leave entries it does not improve on as they were (the caller fills lower levels first). */
int msa_kernels_scalar(msa_kernel table[MSA_DTYPE_COUNT]);
int msa_kernels_avx2(msa_kernel table[MSA_DTYPE_COUNT]);
int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]);
/* The AVX512-BF16 entry for bf16 weights (kernels_bf16_avx512.c); 0 when the CPU lacks it. */
int msa_kernels_avx512_bf16(msa_kernel *entry);

/* Shared activation formats (the scalar definitions are the specification; SIMD preps must produce the
 * same bytes):
 *   q8 rows (for Q8_0/Q4_0/Q4_1 weights), nb = n_in/32 blocks:
 *       int8  q[n_in]            q = round_half_even(x / d), d = max|x in block| / 127 (q = 0 when d = 0)
 *       float d[nb]              the block scale (f32, not rounded to f16)
 *       int32 sum[nb]            sum of the block's q (for the offset/minimum terms) */
size_t msa_q8_prep_bytes(int64_t n_in);
void msa_q8_prep_layout(const uint8_t *row, int64_t n_in, const int8_t **q, const float **d, const int32_t **sum);

/* A per-thread buffer of at least bytes bytes (64-byte aligned), kept for reuse and freed at thread exit;
 * slot 0 holds a call's prepared activations (kernels.c), slot 1 a kernel's own working space. NULL when
 * out of memory. */
#define MSA_SCRATCH_SLOTS 2
void *msa_thread_scratch(int slot, size_t bytes);

/* Force an ISA level for this process (tests); returns 0 if this CPU does not have it. */
int msa_cpu_set_simd(msa_simd level);
msa_simd msa_cpu_simd(void);
/* Turn the panel (prefill) kernels on or off for this process (MSA_PANEL=1 turns them on); returns the
 * previous setting. Off by default: see kernels.c. */
int msa_cpu_set_panel(int on);
/* The best level this CPU supports. */
msa_simd msa_cpu_simd_max(void);

#endif
