/* elementwise.cu — the CUDA backend's small operations: embedding gather, RMSNorm (optionally over a row
 * list), bf16/f16 rounding, per-head norm + RoPE, KV-cache stores, residual adds and the SiLU-gated MLP
 * activation. Each follows the CPU backend's definition of the same operation (backend.h); the rounding
 * points of bf16 checkpoints are the same, reductions run in another order. All are memory-bound: one pass
 * over their data. */
#include "backend/cuda/cuda_common.cuh"

__device__ __forceinline__ float bf16r(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
__device__ __forceinline__ float f16r(float x) { return __half2float(__float2half_rn(x)); }

/* --------------------------------------------------------------------------------------------- embed */

__global__ void k_embed(const void *table, int type, const int32_t *ids, int E, float *x) {
    const int i = blockIdx.x;
    const size_t row = (size_t)ids[i] * E;
    for (int e = threadIdx.x; e < E; e += blockDim.x)
        x[(size_t)i * E + e] = type == DW_BF16 ? __bfloat162float(((const __nv_bfloat16 *)table)[row + e])
                                               : ((const float *)table)[row + e];
}

void cuda_embed(msa_backend *be, const msa_tensor *table, const msa_buf *ids, int n, msa_buf *x) {
    cuda_backend *c = (cuda_backend *)be;
    const dev_weight *w = cuda_weight(c, table);
    if (!w || n <= 0) return;
    k_embed<<<n, 256, 0, c->stream>>>(w->ptr, w->type, (const int32_t *)ids, (int)w->cols, (float *)x);
}

/* ------------------------------------------------------------------------------------------- rmsnorm */

/* Sum over the block in double (the CPU sums f32 squares in double). blockDim.x is a multiple of 32, <= 1024. */
__device__ double block_sum(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? part[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    double r = part[0];
    __syncthreads();
    return r;
}

__global__ void k_rmsnorm(float *y, const float *x, const int32_t *rows, const float *w, int dim, float eps, bool bf16) {
    const int r = blockIdx.x;
    const float *xr = x + (size_t)(rows ? rows[r] : r) * dim;
    float *yr = y + (size_t)r * dim;
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)__fmul_rn(xr[i], xr[i]);
    ss = block_sum(ss);
    const float scale = 1.0f / sqrtf((float)(ss / dim) + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = bf16 ? bf16r(__fmul_rn(w[i], bf16r(__fmul_rn(xr[i], scale)))) : __fmul_rn(w[i], __fmul_rn(xr[i], scale));
}

void cuda_rmsnorm(msa_backend *be, msa_buf *y, const msa_buf *x, const msa_buf *rows, const float *w, int n, int dim,
                  float eps, bool bf16) {
    cuda_backend *c = (cuda_backend *)be;
    const float *dw = cuda_norm_weight(c, w, dim);
    if (!dw || n <= 0) return;
    k_rmsnorm<<<n, 256, 0, c->stream>>>((float *)y, (const float *)x, (const int32_t *)rows, dw, dim, eps, bf16);
}

/* --------------------------------------------------------------------------------------------- round */

__global__ void k_round(float *x, size_t n, bool f16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = f16 ? f16r(x[i]) : bf16r(x[i]);
}

void cuda_round(msa_backend *be, msa_buf *x, size_t count, bool f16) {
    cuda_backend *c = (cuda_backend *)be;
    unsigned grid = grid_for(count, 256);
    if (grid > 65535u * 16) grid = 65535u * 16;
    if (count) k_round<<<grid, 256, 0, c->stream>>>((float *)x, count, f16);
}

/* ----------------------------------------------------------------------------------------- norm_rope */

/* One block per (row, head), head_dim/2 threads (one rotation pair each). */
__global__ void k_norm_rope(float *x, int n_heads, int D, const float *w, float eps, const float *cosv,
                            const float *sinv, int neox, bool bf16, bool ggml) {
    const int row = blockIdx.x / n_heads, h = blockIdx.x % n_heads, half = D / 2, i = threadIdx.x;
    float *v = x + ((size_t)row * n_heads + h) * D;
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    float x0 = i < half ? v[i0] : 0.0f, x1 = i < half ? v[i1] : 0.0f;
    if (w) {
        double ss = i < half ? (double)__fmul_rn(x0, x0) + (double)__fmul_rn(x1, x1) : 0.0;
        ss = block_sum(ss);
        const float scale = 1.0f / sqrtf((float)(ss / D) + eps);
        if (bf16) {
            x0 = bf16r(__fmul_rn(w[i0 % D], bf16r(__fmul_rn(x0, scale))));
            x1 = bf16r(__fmul_rn(w[i1 % D], bf16r(__fmul_rn(x1, scale))));
        } else {
            x0 = __fmul_rn(w[i0 % D], __fmul_rn(x0, scale));
            x1 = __fmul_rn(w[i1 % D], __fmul_rn(x1, scale));
        }
    }
    if (i >= half) return;
    const float c = cosv[(size_t)row * half + i], s = sinv[(size_t)row * half + i];
    if (bf16) {
        v[i0] = bf16r(__fadd_rn(bf16r(__fmul_rn(x0, c)), bf16r(__fmul_rn(-x1, s))));
        v[i1] = bf16r(__fadd_rn(bf16r(__fmul_rn(x1, c)), bf16r(__fmul_rn(x0, s))));
    } else if (ggml) {
        v[i0] = fmaf(x0, c, -__fmul_rn(x1, s));
        v[i1] = fmaf(x0, s, __fmul_rn(x1, c));
    } else {
        v[i0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        v[i1] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
    }
}

void cuda_norm_rope(msa_backend *be, msa_buf *x, int n, int n_heads, int head_dim, const float *w, float eps,
                    const msa_buf *cos, const msa_buf *sin, msa_rope_style style, bool bf16, bool ggml) {
    cuda_backend *c = (cuda_backend *)be;
    const float *dw = w ? cuda_norm_weight(c, w, head_dim) : NULL;
    if ((w && !dw) || n <= 0) return;
    const int threads = ((head_dim / 2 + 31) / 32) * 32;
    k_norm_rope<<<n * n_heads, threads, 0, c->stream>>>((float *)x, n_heads, head_dim, dw, eps, (const float *)cos,
                                                        (const float *)sin, style == MSA_ROPE_NEOX, bf16, ggml);
}

/* ------------------------------------------------------------------------------------------ kv_store */

__global__ void k_kv_store(float *kc, float *vc, const float *k, const float *v, int base, int n, int KV, int D,
                           int n_ctx) {
    const size_t total = (size_t)n * KV * D;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(idx % D), h = (int)((idx / D) % KV), i = (int)(idx / ((size_t)D * KV));
        const size_t dst = ((size_t)h * n_ctx + (size_t)(base + i)) * D + d;
        kc[dst] = k[idx];
        vc[dst] = v[idx];
    }
}

void cuda_kv_store(msa_backend *be, msa_buf *k_cache, msa_buf *v_cache, const msa_buf *k, const msa_buf *v, int base,
                   int n, int n_head_kv, int head_dim, int n_ctx) {
    cuda_backend *c = (cuda_backend *)be;
    const size_t total = (size_t)n * n_head_kv * head_dim;
    unsigned grid = grid_for(total, 256);
    if (grid > 65535u * 16) grid = 65535u * 16;
    if (total)
        k_kv_store<<<grid, 256, 0, c->stream>>>((float *)k_cache, (float *)v_cache, (const float *)k, (const float *)v,
                                                base, n, n_head_kv, head_dim, n_ctx);
}

/* ----------------------------------------------------------------------------------------------- add */

__global__ void k_add(float *x, const float *y, size_t n, bool bf16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = bf16 ? bf16r(__fadd_rn(x[i], bf16r(y[i]))) : __fadd_rn(x[i], y[i]);
}

void cuda_add(msa_backend *be, msa_buf *x, const msa_buf *y, size_t count, bool bf16) {
    cuda_backend *c = (cuda_backend *)be;
    unsigned grid = grid_for(count, 256);
    if (grid > 65535u * 16) grid = 65535u * 16;
    if (count) k_add<<<grid, 256, 0, c->stream>>>((float *)x, (const float *)y, count, bf16);
}

/* -------------------------------------------------------------------------------------------- swiglu */

/* ggml_v_expf's steps (backend_cpu.c), element by element, with exact fma. */
__device__ float ggml_expf_dev(float x) {
    const float r = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, r);
    float n = __fsub_rn(z, r);
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    float u = __fmul_rn(b, b);
    float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                   fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192) return n <= 0 ? 0.0f : INFINITY;
    return ldexpf(j, (int)n);
}

__global__ void k_swiglu(float *g, const float *u, size_t n, int F, int kind) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i], ui = u[i];
        if (kind == MSA_SWIGLU_BF16) {
            gi = bf16r(gi);
            gi = bf16r(__fdiv_rn(gi, __fadd_rn(1.0f, expf(-gi))));
            g[i] = bf16r(__fmul_rn(gi, bf16r(ui)));
        } else if (kind == MSA_SWIGLU_GGML && (int)(i % F) < (F & ~15)) {
            g[i] = __fmul_rn(__fdiv_rn(gi, __fadd_rn(1.0f, ggml_expf_dev(-gi))), ui);
        } else {
            g[i] = __fmul_rn(__fdiv_rn(gi, __fadd_rn(1.0f, expf(-gi))), ui);
        }
    }
}

void cuda_swiglu(msa_backend *be, msa_buf *gate, const msa_buf *up, int n, int F, msa_swiglu_kind kind) {
    cuda_backend *c = (cuda_backend *)be;
    const size_t total = (size_t)n * F;
    unsigned grid = grid_for(total, 256);
    if (grid > 65535u * 16) grid = 65535u * 16;
    if (total) k_swiglu<<<grid, 256, 0, c->stream>>>((float *)gate, (const float *)up, total, F, (int)kind);
}

/* -------------------------------------------------------------------------------------------- argmax */

/* One block per row; (value, index) pairs reduced with "greater, or equal with a lower index" (NaN loses). */
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    if (isnan(v)) return false;
    if (isnan(bv)) return true;
    return v > bv || (v == bv && i < bi);
}

__global__ void k_argmax(const float *x, int cols, int32_t *ids) {
    const float *v = x + (size_t)blockIdx.x * cols;
    float bv = NAN;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        if (better(v[i], i, bv, bi)) bv = v[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = lane < (int)(blockDim.x / 32) ? sv[lane] : NAN;
        bi = lane < (int)(blockDim.x / 32) ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        if (lane == 0) ids[blockIdx.x] = bi == 0x7fffffff ? 0 : bi; /* all NaN: 0, as the CPU */
    }
}

void cuda_argmax(msa_backend *be, const msa_buf *x, int rows, int cols, msa_buf *ids) {
    cuda_backend *c = (cuda_backend *)be;
    if (rows > 0) k_argmax<<<rows, 1024, 0, c->stream>>>((const float *)x, cols, (int32_t *)ids);
}

/* ---------------------------------------------------------------------------------------------- pool */

/* One thread per (chunk, column): the rows summed in order in double, as the CPU does (identical bits). */
__global__ void k_pool(const float *src, int D, const int32_t *row0, const int32_t *len, int n_chunks, float *dst) {
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_chunks * D) return;
    const int ch = (int)(idx / D), i = (int)(idx % D), r0 = row0[ch], n = len[ch];
    double acc = 0.0;
    for (int r = 0; r < n; r++) acc += (double)src[(size_t)(r0 + r) * D + i];
    dst[idx] = n > 0 ? (float)(acc / n) : 0.0f;
}

msa_status cuda_pool(msa_backend *be, const msa_buf *src, int D, const msa_buf *row0, const msa_buf *len,
                     int n_chunks, msa_buf *dst) {
    cuda_backend *c = (cuda_backend *)be;
    const size_t total = (size_t)n_chunks * D;
    if (total)
        k_pool<<<grid_for(total, 256), 256, 0, c->stream>>>((const float *)src, D, (const int32_t *)row0,
                                                            (const int32_t *)len, n_chunks, (float *)dst);
    return MSA_OK;
}
