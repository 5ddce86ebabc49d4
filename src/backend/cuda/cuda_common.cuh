/* cuda_common.cuh — what the CUDA backend's files share: the backend object (streams, cuBLASLt handle, the
 * device copies of the model's weights), error helpers, and the launchers each .cu file defines.
 * Nothing here is visible above src/backend/: the rest of msa sees only backend.h. */
#ifndef MSA_BACKEND_CUDA_COMMON_CUH
#define MSA_BACKEND_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
#include "backend/cuda_probe.h"
#include "model/model.h"
#include "util/error.h"
}

/* Device dtypes of copied weights: float formats the GEMMs take directly. bf16 stays bf16; f32, f16 and the
 * quantized formats become f32 (exact: an f16 value, d*q and d*q+m of the ggml blocks are all f32 values), so
 * the GPU computes with the very weights the CPU does. */
typedef enum { DW_F32, DW_BF16 } dev_wtype;

typedef struct dev_weight {
    const void *key;     /* the msa_tensor (matrices) or the model's float[] (norm vectors) */
    const void *src;     /* the host data it was copied from (matrices: checked on every lookup) */
    void *ptr;           /* device copy */
    dev_wtype type;
    int64_t rows, cols;  /* [rows, cols] row-major; norm vectors: rows = 1 */
} dev_weight;

/* Cached cuBLASLt plan of one GEMM shape. */
typedef struct gemm_plan {
    int64_t m, n, k;
    dev_wtype type;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    bool valid;
} gemm_plan;

typedef struct cuda_backend {
    msa_backend base;
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_workspace;          /* device, lt_workspace_bytes */
    size_t lt_workspace_bytes;
    dev_weight *weights;         /* open-addressing table keyed by address, n_weights_cap slots */
    int n_weights, n_weights_cap;
    gemm_plan *plans;            /* small cache, n_plans used of n_plans_cap */
    int n_plans, n_plans_cap;
    __nv_bfloat16 *xbf;          /* activation scratch converted to bf16, xbf_elems long */
    size_t xbf_elems;
    cudaError_t sticky;          /* first asynchronous error seen; reported by sync */
    size_t weight_bytes;         /* device bytes of the copied weights */
    int n_sm;                    /* streaming multiprocessors of the device */
    float *att_part;             /* split-key attention partials (attention.cu), att_part_floats long */
    size_t att_part_floats;
    uint8_t *pinned[2];          /* host staging buffers of weight copies (weights.cu), NULL until used */
    cudaEvent_t staged[2];       /* the copy that last read pinned[i] */
} cuda_backend;

/* Record a CUDA error (the first one sticks) and return whether the call succeeded. */
static inline bool cuda_ok(cuda_backend *c, cudaError_t e) {
    if (e != cudaSuccess && c->sticky == cudaSuccess) c->sticky = e;
    return e == cudaSuccess;
}

static inline unsigned grid_for(size_t n, unsigned block) { return (unsigned)((n + block - 1) / block); }

/* weights.cu: the device copy of a tensor or norm vector, made on first use (the constructor makes every
 * model weight up front); NULL after a failed allocation or transfer (error recorded). */
const dev_weight *cuda_weight(cuda_backend *c, const msa_tensor *t);
const float *cuda_norm_weight(cuda_backend *c, const float *w, int n);
msa_status cuda_upload_model_weights(cuda_backend *c, const msa_model *m);
/* bytes to device address dst through the two pinned staging buffers, the source written into each piece by
 * fill(ctx, piece, src_offset, n) (msa_backend_ops.upload_fill); synchronous */
msa_status cuda_upload_fill(cuda_backend *c, void *dst, size_t bytes, bool (*fill)(void *, void *, size_t, size_t),
                            void *ctx);
void cuda_free_weights(cuda_backend *c);

/* gemm.cu */
void cuda_matmul(msa_backend *be, int n_w, const msa_tensor *const *ws, const msa_buf *x, msa_buf *const *ys, int n);
void cuda_free_gemm(cuda_backend *c);
/* y [n x m] f32 = x [n x k] . w [m x k]^T with w and x of `type` (device pointers), on the backend's stream. */
bool cuda_gemm_raw(cuda_backend *c, dev_wtype type, int64_t m, int64_t n, int64_t k, const void *w, const void *x,
                   float *y);

/* elementwise.cu */
void cuda_embed(msa_backend *be, const msa_tensor *table, const msa_buf *ids, int n, msa_buf *x);
void cuda_rmsnorm(msa_backend *be, msa_buf *y, const msa_buf *x, const msa_buf *rows, const float *w, int n, int dim,
                  float eps, bool bf16);
void cuda_round(msa_backend *be, msa_buf *x, size_t count, bool f16);
void cuda_norm_rope(msa_backend *be, msa_buf *x, int n, int n_heads, int head_dim, const float *w, float eps,
                    const msa_buf *cos, const msa_buf *sin, msa_rope_style style, bool bf16, bool ggml);
void cuda_kv_store(msa_backend *be, msa_buf *k_cache, msa_buf *v_cache, const msa_buf *k, const msa_buf *v, int base,
                   int n, int n_head_kv, int head_dim, int n_ctx);
void cuda_add(msa_backend *be, msa_buf *x, const msa_buf *y, size_t count, bool bf16);
void cuda_swiglu(msa_backend *be, msa_buf *gate, const msa_buf *up, int n, int F, msa_swiglu_kind kind);
msa_status cuda_pool(msa_backend *be, const msa_buf *src, int D, const msa_buf *row0, const msa_buf *len,
                     int n_chunks, msa_buf *dst);
void cuda_argmax(msa_backend *be, const msa_buf *x, int rows, int cols, msa_buf *ids);
void cuda_f32_to_bf16(cuda_backend *c, const float *x, __nv_bfloat16 *y, size_t count);

/* bench.cu */
msa_status cuda_ceilings(msa_backend *be, double *copy_gbs, double *gemm_tflops);
void cuda_memory(msa_backend *be, size_t *used, size_t *total);

/* route.cu */
msa_status cuda_route_maxsim(msa_backend *be, const msa_buf *keys, bool bf16, const msa_buf *doc, uint64_t n_chunks,
                             int dim, const msa_buf *q, int nq, msa_buf *best, uint64_t n_docs);

/* attention.cu */
msa_status cuda_attention(msa_backend *be, const msa_attn_args *a, int n_head, int n_head_kv, int head_dim);

#endif
