/* gemm.cu — y[t, o] = sum_i W[o, i] x[t, i] on the GPU through cuBLASLt. In cuBLAS's column-major terms
 * y^T [out x n] = W^T^T [out x in] * x^T [in x n]: the weight is operand A transposed ("TN", the layout
 * cuBLAS is fastest at), activations operand B, f32 output, f32 accumulation. bf16 weights take the
 * activations rounded to bf16 (as the CPU kernels do, kernels.h); f32 weights multiply f32 activations with
 * f32 arithmetic (CUBLAS_COMPUTE_32F: no TF32), so the GPU differs from the CPU only in summation order.
 * A plan (descriptors + the heuristic's first algorithm) is cached per shape. */
#include "backend/cuda/cuda_common.cuh"

__global__ void k_f32_to_bf16(const float *x, __nv_bfloat16 *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

void cuda_f32_to_bf16(cuda_backend *c, const float *x, __nv_bfloat16 *y, size_t count) {
    unsigned grid = grid_for(count, 256);
    if (grid > 65535u * 16) grid = 65535u * 16;
    if (count) k_f32_to_bf16<<<grid, 256, 0, c->stream>>>(x, y, count);
}

static gemm_plan *get_plan(cuda_backend *c, int64_t m, int64_t n, int64_t k, dev_wtype type) {
    for (int i = 0; i < c->n_plans; i++) {
        gemm_plan *p = &c->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->type == type) return p->valid ? p : NULL;
    }
    if (c->n_plans == c->n_plans_cap) {
        int cap = c->n_plans_cap ? 2 * c->n_plans_cap : 32;
        gemm_plan *np = (gemm_plan *)realloc(c->plans, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        c->plans = np;
        c->n_plans_cap = cap;
    }
    gemm_plan *p = &c->plans[c->n_plans++];
    memset(p, 0, sizeof *p);
    p->m = m, p->n = n, p->k = k, p->type = type;
    const cudaDataType_t ab = type == DW_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    bool ok = cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ==
                  CUBLAS_STATUS_SUCCESS &&
              cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ==
                  CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->a, ab, (uint64_t)k, (uint64_t)m, k) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->b, ab, (uint64_t)k, (uint64_t)n, k) == CUBLAS_STATUS_SUCCESS &&
              cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)m, (uint64_t)n, m) == CUBLAS_STATUS_SUCCESS;
    if (ok) {
        cublasLtMatmulPreference_t pref;
        ok = cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
        if (ok) {
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &c->lt_workspace_bytes, sizeof c->lt_workspace_bytes);
            cublasLtMatmulHeuristicResult_t res;
            int found = 0;
            ok = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &found) ==
                     CUBLAS_STATUS_SUCCESS &&
                 found > 0;
            if (ok) p->algo = res.algo;
            cublasLtMatmulPreferenceDestroy(pref);
        }
    }
    p->valid = ok;
    return ok ? p : NULL;
}

void cuda_free_gemm(cuda_backend *c) {
    for (int i = 0; i < c->n_plans; i++) {
        gemm_plan *p = &c->plans[i];
        if (p->desc) cublasLtMatmulDescDestroy(p->desc);
        if (p->a) cublasLtMatrixLayoutDestroy(p->a);
        if (p->b) cublasLtMatrixLayoutDestroy(p->b);
        if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    }
    free(c->plans);
    c->plans = NULL;
    c->n_plans = c->n_plans_cap = 0;
}

static bool ensure_xbf(cuda_backend *c, size_t elems) {
    if (elems <= c->xbf_elems) return true;
    if (c->xbf) {
        cudaStreamSynchronize(c->stream);
        cudaFree(c->xbf);
    }
    c->xbf = NULL;
    c->xbf_elems = 0;
    if (!cuda_ok(c, cudaMalloc((void **)&c->xbf, elems * sizeof(__nv_bfloat16)))) return false;
    c->xbf_elems = elems;
    return true;
}

bool cuda_gemm_raw(cuda_backend *c, dev_wtype type, int64_t m, int64_t n, int64_t k, const void *w, const void *x,
                   float *y) {
    const float alpha = 1.0f, beta = 0.0f;
    gemm_plan *p = get_plan(c, m, n, k, type);
    return p && cublasLtMatmul(c->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c, &p->algo,
                               c->lt_workspace, c->lt_workspace_bytes, c->stream) == CUBLAS_STATUS_SUCCESS;
}

void cuda_matmul(msa_backend *be, int n_w, const msa_tensor *const *ws, const msa_buf *x, msa_buf *const *ys, int n) {
    cuda_backend *c = (cuda_backend *)be;
    if (n <= 0) return;
    const float alpha = 1.0f, beta = 0.0f;
    const __nv_bfloat16 *xb = NULL;
    for (int i = 0; i < n_w; i++) {
        const dev_weight *w = cuda_weight(c, ws[i]);
        if (!w) return; /* error recorded; sync reports it */
        const int64_t m = w->rows, k = w->cols;
        const void *b = x;
        if (w->type == DW_BF16) {
            if (!xb) { /* the inputs of q/k/v (gate/up) share one conversion */
                if (!ensure_xbf(c, (size_t)n * (size_t)k)) return;
                cuda_f32_to_bf16(c, (const float *)x, c->xbf, (size_t)n * (size_t)k);
                xb = c->xbf;
            }
            b = xb;
        }
        gemm_plan *p = get_plan(c, m, n, k, w->type);
        if (!p) {
            cuda_ok(c, cudaErrorNotSupported);
            return;
        }
        cublasStatus_t st = cublasLtMatmul(c->lt, p->desc, &alpha, w->ptr, p->a, b, p->b, &beta, ys[i], p->c, ys[i],
                                           p->c, &p->algo, c->lt_workspace, c->lt_workspace_bytes, c->stream);
        if (st != CUBLAS_STATUS_SUCCESS) cuda_ok(c, cudaErrorLaunchFailure);
    }
}
