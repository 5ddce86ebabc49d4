/* backend.h — the seam between the model and the hardware it runs on. forward.c (prefill, decode and
 * stage-1 encoding all go through msa_fwd_eval) is written once against this table of operations; the CPU
 * backend (src/backend/cpu/backend_cpu.c) is the numerical reference, the CUDA backend
 * (src/backend/cuda/, `make CUDA=1`) runs the same operations on a GPU and is checked op by op against the
 * CPU one (tests/gpu/).
 *
 * Memory model: every activation, cache and table an operation reads or writes is a backend buffer
 * (msa_buf: opaque, allocated by the backend; host memory on the CPU, device memory on a GPU). The caller
 * fills and reads buffers only through upload/download/view. Weights stay msa_tensor views into the mapped
 * files: a backend that needs them elsewhere copies them once in prepare() and finds its copy by the
 * tensor's address. Norm vectors (float[n] owned by the model) are found the same way.
 *
 * Weights and norm vectors are cached by address for the backend's lifetime: whoever passes one keeps it
 * alive and unchanged until the backend is freed (the model's own tensors are; a test must not free and
 * reuse an address for different values).
 *
 * Ordering: operations are issued in program order and may run asynchronously; download() and view()
 * return only when the data is on the host. No operation reports an error except the allocations and
 * transfers and attention (whose scratch depends on the context); a kernel failure on a GPU is reported
 * by the next synchronising call.
 *
 * Numerics: every operation states what it computes; the CPU backend computes exactly what forward.c
 * computed before the seam (bit-identical results), other backends agree within the per-dtype tolerances
 * of tests/gpu/. */
#ifndef MSA_BACKEND_BACKEND_H
#define MSA_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/device.h"
#include "model/hparams.h"
#include "model/tensor.h"
#include "msa.h"

typedef struct msa_buf msa_buf;         /* a backend allocation (opaque) */
typedef struct msa_backend msa_backend; /* one per loaded model */
struct msa_model;

/* The three flavours of SiLU-gated MLP activation the forward pass needs. */
typedef enum {
    MSA_SWIGLU_F32,  /* g = silu(g) * u in f32 with libm expf */
    MSA_SWIGLU_BF16, /* transformers' bf16 rounding points (forward.h) */
    MSA_SWIGLU_GGML, /* ggml's vectorised expf, as llama.cpp (GGUF models) */
} msa_swiglu_kind;

/* One attention call: n query rows of a batch at cache slots base .. base+n-1 over
 * [extra K/V ; visible cache slots]. Every pointer is a backend buffer. */
typedef struct msa_attn_args {
    int n;                       /* query rows */
    int base;                    /* cache slot of row 0 */
    int n_ctx;                   /* cache capacity (slot stride) */
    const msa_buf *q;            /* [n][n_head*head_dim] f32 */
    msa_buf *out;                /* [n][n_head*head_dim] f32 */
    const msa_buf *k_cache;      /* [n_head_kv][n_ctx][head_dim] f32 */
    const msa_buf *v_cache;      /* [n_head_kv][n_ctx][head_dim] f32 */
    const msa_buf *ex_k, *ex_v;  /* [n_head_kv][n_ex][head_dim] f32, NULL when n_ex == 0 */
    int n_ex;
    const msa_buf *slot_seq;     /* [n_ctx] int32: sequence id of each cache slot */
    const msa_buf *slot_valid;   /* [n_ctx] uint8: 0 = never attended by a later query */
    const msa_buf *q_seq;        /* [n] int32: each row's sequence id */
    const msa_buf *q_begin;      /* [n] int32: first cache slot of the row's sequence (keys below are of
                                  * other sequences and skipped without being read) */
    const msa_buf *q_end;        /* [n] int32: one past the last visible cache slot of each row */
    bool bf16;                   /* transformers' bf16 eager-attention rounding (forward.h) */
    bool llamacpp;               /* llama.cpp's f16 flash-attention numerics (rows of batches under 64) */
    bool shared_keys;            /* a hint, never a condition of correctness: the rows' key ranges overlap
                                  * (one sequence, or sequences that all begin in this batch: prefill, packed
                                  * stage-1 documents), so kernels that read each key once for a group of rows
                                  * pay off; false for batched decoding of sequences cached apart */
} msa_attn_args;

typedef struct msa_backend_ops {
    const char *name; /* "cpu", "cuda" */
    /* Buffers are host memory (msa_buf * is the data's address): a caller may then pass a host array where a
     * buffer is expected and skip the copies of view(). */
    bool host_memory;

    /* Buffers. alloc returns NULL (with msa_fail recorded) when out of memory; zeroed memory. */
    msa_buf *(*alloc)(msa_backend *be, size_t bytes);
    void (*free)(msa_backend *be, msa_buf *b);
    msa_status (*upload)(msa_backend *be, msa_buf *dst, size_t offset, const void *src, size_t bytes);
    msa_status (*download)(msa_backend *be, void *dst, const msa_buf *src, size_t offset, size_t bytes);
    /* A host pointer to bytes [offset, offset+bytes) of b, valid until the next operation on b: the buffer
     * itself on the CPU, a copy in scratch (at least `bytes` long) elsewhere. NULL on a transfer error. */
    const void *(*view)(msa_backend *be, const msa_buf *b, size_t offset, size_t bytes, void *scratch);
    /* Copy bytes between buffers (dst and src may be the same buffer, ranges disjoint). */
    void (*copy)(msa_backend *be, msa_buf *dst, size_t dst_off, const msa_buf *src, size_t src_off, size_t bytes);
    /* Wait for everything issued; reports a deferred device error. */
    msa_status (*sync)(msa_backend *be);

    /* x[i] = row ids[i] of the embedding table as f32. ids: [n] int32 buffer; x: [n][n_embd]. */
    void (*embed)(msa_backend *be, const msa_tensor *table, const msa_buf *ids, int n, msa_buf *x);
    /* y[r] = rmsnorm(x[rows ? rows[r] : r]) * w over dim elements, r < n; y, x: row stride dim f32.
     * w: a float[dim] the model owns. bf16: the normalised value and the product rounded to bf16. */
    void (*rmsnorm)(msa_backend *be, msa_buf *y, const msa_buf *x, const msa_buf *rows, const float *w, int n,
                    int dim, float eps, bool bf16);
    /* ys[i] = ws[i] x for i < n_w (msa_matmul_multi's contract). x: [n][n_in], ys[i]: [n][ws[i] rows]. */
    void (*matmul)(msa_backend *be, int n_w, const msa_tensor *const *ws, const msa_buf *x, msa_buf *const *ys,
                   int n);
    /* x[i] = round_to_bf16(x[i]) (f16 when f16 is true), i < count. */
    void (*round)(msa_backend *be, msa_buf *x, size_t count, bool f16);
    /* For each row t < n and head h < n_heads of x ([n][n_heads][head_dim]): optional per-head RMSNorm with
     * w (float[head_dim], NULL = none), then RoPE with cos/sin ([n][head_dim/2] f32 buffers) in the given
     * pair style; bf16 rounds each elementwise product (transformers), ggml uses ggml's fma contraction. */
    void (*norm_rope)(msa_backend *be, msa_buf *x, int n, int n_heads, int head_dim, const float *w, float eps,
                      const msa_buf *cos, const msa_buf *sin, msa_rope_style style, bool bf16, bool ggml);
    /* Store rows [n][n_head_kv*head_dim] of k and v into the caches at slots base.. (layout of msa_attn_args). */
    void (*kv_store)(msa_backend *be, msa_buf *k_cache, msa_buf *v_cache, const msa_buf *k, const msa_buf *v,
                     int base, int n, int n_head_kv, int head_dim, int n_ctx);
    /* Attention (msa_attn_args); heads: n_head queries share n_head_kv K/V heads (grouped). */
    msa_status (*attention)(msa_backend *be, const msa_attn_args *a, int n_head, int n_head_kv, int head_dim);
    /* x[i] += y[i] over count elements; bf16: x = bf16(x + bf16(y)). */
    void (*add)(msa_backend *be, msa_buf *x, const msa_buf *y, size_t count, bool bf16);
    /* gate[r] = act(gate[r]) * up[r] over rows of F elements. */
    void (*swiglu)(msa_backend *be, msa_buf *gate, const msa_buf *up, int n, int F, msa_swiglu_kind kind);
    /* dst[c][i] = mean of src rows [row0[c], row0[c] + len[c]) of column i, c < n_chunks, i < D (stage-1
     * chunk pooling; sums in double in row order, so every backend gives the same bits). row0, len: [n_chunks]
     * int32 buffers; src [rows][D], dst [n_chunks][D] f32. */
    msa_status (*pool)(msa_backend *be, const msa_buf *src, int D, const msa_buf *row0, const msa_buf *len,
                       int n_chunks, msa_buf *dst);
    /* ids[r] = the index of the largest of x[r][0 .. cols) (lowest index on ties, NaN never wins), r < rows:
     * greedy decoding without moving the logits off the device. ids: [rows] int32. */
    void (*argmax)(msa_backend *be, const msa_buf *x, int rows, int cols, msa_buf *ids);

    /* Optional (NULL: the caller scans on the CPU, readmode.c): read mode's routing scan over keys resident in
     * backend memory. best[t][d] = max over the chunks c with doc[c] == d of dot(q[t], keys[c]) * inv(c), where
     * dot sums in route_scan.h's canonical order and inv(c) = 1/sqrt(sum of keys[c][i]^2 in double, element
     * order) as a float (0 for a zero key): readmode.c's bits. -inf where a document has no chunk; NaN never
     * wins; doc[c] < 0 marks a chunk that is not routed. keys: [n_chunks][dim] bf16 (f32 when !bf16); doc:
     * [n_chunks] int32 < n_docs, a document's chunks consecutive; q: [nq][dim] f32; best: [nq][n_docs] f32.
     * MSA_ERR_UNSUPPORTED for a dim the kernel does not take (the caller then scans on the CPU). */
    msa_status (*route_maxsim)(msa_backend *be, const msa_buf *keys, bool bf16, const msa_buf *doc, uint64_t n_chunks,
                               int dim, const msa_buf *q, int nq, msa_buf *best, uint64_t n_docs);

    /* Optional (NULL: the caller fills a buffer of its own and calls upload): bytes into dst at offset, their source
     * written piece by piece by fill(ctx, piece, src_offset, n) into the backend's staging memory — pinned on a
     * GPU, so that the source is copied once (not into a bounce buffer and then again by the driver) and filling
     * one piece overlaps the transfer of the one before. fill returns false to give up (a fault reading a
     * mapping): the call then returns MSA_ERR_IO with dst partly written. Returns when the bytes are on the
     * device. For uploads of many MB (read mode's resident keys, src/memory/route_resident.c). */
    msa_status (*upload_fill)(msa_backend *be, msa_buf *dst, size_t offset, size_t bytes,
                              bool (*fill)(void *ctx, void *piece, size_t src_offset, size_t n), void *ctx);

    /* Optional (NULL where meaningless): the device's measured ceilings for benchmarks — device-to-device
     * copy bandwidth (GB/s, read + write) and a large bf16 GEMM (TFLOP/s) — and its memory in use / total. */
    msa_status (*ceilings)(msa_backend *be, double *copy_gbs, double *gemm_tflops);
    void (*memory)(msa_backend *be, size_t *used, size_t *total);

    /* Release everything the backend holds. */
    void (*destroy)(msa_backend *be);
} msa_backend_ops;

/* Every backend object starts with this header. */
struct msa_backend {
    const msa_backend_ops *ops;
    msa_device device;
};

/* Create the backend for an already-bound model on dev (resolved, see device.h), copying whatever the
 * device needs (weights) once. On success *out belongs to the model (msa_backend_free). */
msa_status msa_backend_new(struct msa_model *model, const msa_device *dev, msa_backend **out);
void msa_backend_free(msa_backend *be);

/* The constructors behind it: the CPU one always exists; the CUDA one only in `make CUDA=1` builds (the
 * plain build's stub fails with MSA_ERR_UNSUPPORTED). model may be NULL: a bare backend for operation tests
 * (one CPU thread; weights copied to the GPU on first use). */
msa_status msa_backend_cpu_new(struct msa_model *model, msa_backend **out);
msa_status msa_backend_cuda_new(struct msa_model *model, int device_index, msa_backend **out);

#endif
