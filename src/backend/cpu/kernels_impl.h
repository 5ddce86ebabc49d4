/* kernels_impl.h — the interface between the matmul dispatcher (kernels.c) and the per-ISA kernel files
 * (kernels_scalar.c, kernels_avx2.c, kernels_avx512.c, kernels_bf16_avx512.c, kernels_bf16dp_avx512.c,
 * kernels_amx.c). Internal to src/backend/cpu/ and its tests.
 *
 * A product is computed in two steps:
 *   prep: each activation row x[t] (f32, n_in) is converted once per call into the partner format the
 *         kernel wants (bf16 values, q8 blocks with scales ...), `prep_bytes(n_in)` bytes per token;
 *   gemm: y[t * ldy + r] = sum_i W[r, i] * x'[t, i] for r < n_rows, t < n_tok over prepared rows.
 * F32 and F16 weights use the f32 activations directly (prep == NULL); BF16 weights take bf16-rounded ones.
 * With a panel kernel (opt-in, n_tok >= MSA_PANEL_MIN_TOKENS; or always, for a panel_always one such as AMX)
 * the activations are instead prepared once per call in groups of 16 tokens (kernels_avx512.c, kernels_amx.c). */
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
    int tile_tokens;  /* gemm's token tile: token blocks are cut to a multiple of it (0: any) */
    int tile_rows;    /* gemm_panel's (or gemm's, for n_tok > 1) row tile: prefill chunks are a multiple of it */
    int panel_always; /* gemm_panel is batch-invariant and the only gemm: used for every token count */
} msa_kernel;

/* avx512bf16 is the AVX-512 level with bf16 weights on vdpbf16ps (kernels_bf16dp_avx512.c); amx the AVX-512
 * level with bf16 weights on AMX tiles (kernels_amx.c). Levels are ordered by what the CPU must have, not by
 * speed: which one serves a dtype is measured (kernels.c). */
typedef enum msa_simd {
    MSA_SIMD_SCALAR = 0,
    MSA_SIMD_AVX2,
    MSA_SIMD_AVX512,
    MSA_SIMD_AVX512BF16,
    MSA_SIMD_AMX,
    MSA_SIMD_COUNT
} msa_simd;

/* Fill table[dtype] for one ISA. Each returns 0 when this CPU lacks the ISA (the table is then untouched);
 * an ISA may leave entries it does not improve on as they were (the caller fills lower levels first). */
int msa_kernels_scalar(msa_kernel table[MSA_DTYPE_COUNT]);
int msa_kernels_avx2(msa_kernel table[MSA_DTYPE_COUNT]);
int msa_kernels_avx512(msa_kernel table[MSA_DTYPE_COUNT]);
/* The AVX-512 entry for bf16 weights (kernels_bf16_avx512.c); 0 when the CPU lacks it. */
int msa_kernels_avx512_bf16(msa_kernel *entry);
/* The AVX512-BF16 (vdpbf16ps) entry for bf16 weights (kernels_bf16dp_avx512.c); 0 when the CPU lacks it. */
int msa_kernels_avx512bf16_bf16(msa_kernel *entry);
/* The AMX entry for bf16 weights (kernels_amx.c); 0 when the CPU or the OS does not offer AMX-BF16. */
int msa_kernels_amx_bf16(msa_kernel *entry);

/* Shared activation format (the scalar definitions are the specification; SIMD preps produce the same
 * bytes). It is llama.cpp's Q8_0/Q8_1 activation block (ggml-cpu quantize_row_q8_0/_q8_1 on x86), held
 * unpacked so that kernels can load each part aligned:
 *   q8 rows (for Q8_0/Q4_0/Q4_1 weights), nb = n_in/32 blocks:
 *       int8  q[n_in]   q = round_half_even(x * (127 / amax)), amax = max|x in block| (q = 0 when amax = 0)
 *       float d[nb]     fp16(amax / 127) widened back to f32: the block scale as llama.cpp stores it
 *       float s[nb]     fp16((amax / 127) * sum of the block's q) as f32 (Q8_1's s; used by Q4_1 weights) */
size_t msa_q8_prep_bytes(int64_t n_in);
void msa_q8_prep_layout(const uint8_t *row, int64_t n_in, const int8_t **q, const float **d, const float **s);
/* v rounded to fp16 (nearest even) and back. */
float msa_f16_round(float v);

/* The dot product of a quantized weight row with a q8 row, in the f32 order llama.cpp's ggml_vec_dot_q4_1_q8_1
 * / _q8_0_q8_0 (x86, AVX2 and AVX-512 builds) use, which every kernel path here follows exactly:
 *   for each block b (in order), lane j = 0..7:  p = integer sum of w'[k] * q[k] over k = 4j..4j+3
 *                                                acc[j] = fma(dw_b * dx_b, (float)p, acc[j])
 *   (w' = Q8_0 value, Q4_0 nibble - 8, Q4_1 nibble; dw_b * dx_b is one f32 product)
 *   Q4_1 only:                                   m = fma(m_b, s_b, m), sequentially over b
 *   result = msa_q_hsum8(acc) (+ m).
 * Every SIMD layout (rows or tokens side by side in a vector) keeps these per-lane sequences, so a (row, token)
 * result does not depend on n_tok, the tile it falls in, the thread count or the ISA. */
static inline float msa_q_hsum8(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* A per-thread buffer of at least bytes bytes (64-byte aligned), kept for reuse and freed at thread exit;
 * slot 0 holds a call's prepared activations (kernels.c), slot 1 a kernel's own working space. NULL when
 * out of memory. */
#define MSA_SCRATCH_SLOTS 2
void *msa_thread_scratch(int slot, size_t bytes);

/* Force an ISA level for this process (tests); returns 0 if this CPU does not have it. While a level is forced
 * (this, or MSA_SIMD in the environment) every dtype uses that level's kernel; otherwise each dtype uses the
 * level measured fastest (kernels.c). msa_cpu_set_simd_auto() goes back to the measured choice. */
int msa_cpu_set_simd(msa_simd level);
void msa_cpu_set_simd_auto(void);
msa_simd msa_cpu_simd(void);
/* Forget the measured choices so the next product measures (or reads the cache) again: for tests of the
 * cache. Not thread-safe against products running at the same time. Returns how many measurements this
 * process has made so far (before the reset). */
int msa_cpu_autotune_reset(void);
/* Turn the panel (prefill) kernels on or off for this process (MSA_PANEL=1 turns them on); returns the
 * previous setting. Off by default: see kernels.c. */
int msa_cpu_set_panel(int on);
/* The best level this CPU supports. */
msa_simd msa_cpu_simd_max(void);

#endif
