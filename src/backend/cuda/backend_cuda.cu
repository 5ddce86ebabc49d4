/* backend_cuda.cu — the CUDA backend's object: device selection, buffers and transfers on one stream, the
 * operation table (backend.h), construction (weights copied once, a clear error when they do not fit) and
 * the probe behind "auto" device selection. The operations themselves live in gemm.cu, elementwise.cu,
 * attention.cu and route.cu. */
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

extern "C" msa_status msa_cuda_probe(int *n_gpus, const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    *n_gpus = 0;
    if (e != cudaSuccess) {
        *why = e == cudaErrorNoDevice ? "no CUDA GPU is present" : cudaGetErrorString(e);
        cudaGetLastError(); /* clear it: a machine without a driver must not poison later calls */
        return MSA_ERR_UNSUPPORTED;
    }
    *n_gpus = n;
    *why = n ? "" : "no CUDA GPU is present";
    return MSA_OK;
}

static msa_status cuda_status(cuda_backend *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return MSA_OK;
    cuda_ok(c, e);
    return msa_fail(e == cudaErrorMemoryAllocation ? MSA_ERR_NOMEM : MSA_ERR_IO, "cuda:%d: %s: %s", c->device, what,
                    cudaGetErrorString(e));
}

static msa_buf *cb_alloc(msa_backend *be, size_t bytes) {
    cuda_backend *c = (cuda_backend *)be;
    void *p = NULL;
    size_t n = bytes ? (bytes + 255) & ~(size_t)255 : 256;
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        msa_fail(MSA_ERR_NOMEM, "cuda:%d: cannot allocate %.1f MiB (%.1f MiB free of %.1f MiB)", c->device,
                 n / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
        return NULL;
    }
    /* zeroed, as backend.h promises; unwritten outputs then read as zeros, never as stale data */
    if (!cuda_ok(c, cudaMemsetAsync(p, 0, n, c->stream))) {
        cudaFree(p);
        msa_fail(MSA_ERR_IO, "cuda:%d: clearing a new buffer failed", c->device);
        return NULL;
    }
    return (msa_buf *)p;
}

static void cb_free(msa_backend *be, msa_buf *b) {
    cuda_backend *c = (cuda_backend *)be;
    if (!b) return;
    cudaStreamSynchronize(c->stream); /* no kernel still reading it */
    cudaFree(b);
}

static msa_status cb_upload(msa_backend *be, msa_buf *dst, size_t off, const void *src, size_t bytes) {
    cuda_backend *c = (cuda_backend *)be;
    if (!bytes) return MSA_OK;
    /* pageable source: the copy has staged the bytes when it returns, so the caller may reuse src at once */
    return cuda_status(c, cudaMemcpyAsync((uint8_t *)dst + off, src, bytes, cudaMemcpyHostToDevice, c->stream),
                       "upload");
}

static msa_status cb_upload_fill(msa_backend *be, msa_buf *dst, size_t off, size_t bytes,
                                 bool (*fill)(void *, void *, size_t, size_t), void *ctx) {
    cuda_backend *c = (cuda_backend *)be;
    MSA_TRY(cuda_status(c, cudaStreamSynchronize(c->stream), "upload")); /* the staging buffers are free */
    return cuda_upload_fill(c, (uint8_t *)dst + off, bytes, fill, ctx);
}

static msa_status cb_download(msa_backend *be, void *dst, const msa_buf *src, size_t off, size_t bytes) {
    cuda_backend *c = (cuda_backend *)be;
    if (!bytes) return MSA_OK;
    MSA_TRY(cuda_status(c, cudaMemcpyAsync(dst, (const uint8_t *)src + off, bytes, cudaMemcpyDeviceToHost, c->stream),
                        "download"));
    return cuda_status(c, cudaStreamSynchronize(c->stream), "download");
}

static const void *cb_view(msa_backend *be, const msa_buf *b, size_t off, size_t bytes, void *scratch) {
    return cb_download(be, scratch, b, off, bytes) == MSA_OK ? scratch : NULL;
}

static void cb_copy(msa_backend *be, msa_buf *dst, size_t doff, const msa_buf *src, size_t soff, size_t bytes) {
    cuda_backend *c = (cuda_backend *)be;
    if (bytes)
        cuda_ok(c, cudaMemcpyAsync((uint8_t *)dst + doff, (const uint8_t *)src + soff, bytes, cudaMemcpyDeviceToDevice,
                                   c->stream));
}

static msa_status cb_sync(msa_backend *be) {
    cuda_backend *c = (cuda_backend *)be;
    cuda_ok(c, cudaGetLastError());
    cuda_ok(c, cudaStreamSynchronize(c->stream));
    if (c->sticky != cudaSuccess)
        return msa_fail(MSA_ERR_IO, "cuda:%d: a kernel or copy failed: %s", c->device, cudaGetErrorString(c->sticky));
    return MSA_OK;
}

static void cb_destroy(msa_backend *be) {
    cuda_backend *c = (cuda_backend *)be;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    cuda_free_gemm(c);
    cuda_free_weights(c);
    if (c->xbf) cudaFree(c->xbf);
    if (c->att_part) cudaFree(c->att_part);
    if (c->lt_workspace) cudaFree(c->lt_workspace);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static const msa_backend_ops cuda_ops = {
    /* .name        */ "cuda",
    /* .host_memory */ false,
    /* .alloc       */ cb_alloc,
    /* .free        */ cb_free,
    /* .upload      */ cb_upload,
    /* .download    */ cb_download,
    /* .view        */ cb_view,
    /* .copy        */ cb_copy,
    /* .sync        */ cb_sync,
    /* .embed       */ cuda_embed,
    /* .rmsnorm     */ cuda_rmsnorm,
    /* .matmul      */ cuda_matmul,
    /* .round       */ cuda_round,
    /* .norm_rope   */ cuda_norm_rope,
    /* .kv_store    */ cuda_kv_store,
    /* .attention   */ cuda_attention,
    /* .add         */ cuda_add,
    /* .swiglu      */ cuda_swiglu,
    /* .pool        */ cuda_pool,
    /* .argmax      */ cuda_argmax,
    /* .route_maxsim*/ cuda_route_maxsim,
    /* .upload_fill */ cb_upload_fill,
    /* .ceilings    */ cuda_ceilings,
    /* .memory      */ cuda_memory,
    /* .destroy     */ cb_destroy,
};

extern "C" msa_status msa_backend_cuda_new(struct msa_model *model, int device_index, msa_backend **out) {
    *out = NULL;
    int n = 0;
    const char *why = NULL;
    if (msa_cuda_probe(&n, &why) != MSA_OK) return msa_fail(MSA_ERR_UNSUPPORTED, "cuda:%d: %s", device_index, why);
    if (device_index < 0 || device_index >= n)
        return msa_fail(MSA_ERR_UNSUPPORTED, "cuda:%d: this machine has %d GPU%s", device_index, n, n == 1 ? "" : "s");
    cuda_backend *c = (cuda_backend *)calloc(1, sizeof *c);
    if (!c) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    c->base.ops = &cuda_ops;
    c->base.device.kind = MSA_DEVICE_CUDA;
    c->base.device.index = device_index;
    c->device = device_index;
    msa_status rc = cuda_status(c, cudaSetDevice(device_index), "selecting the device");
    if (rc == MSA_OK) rc = cuda_status(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    if (rc == MSA_OK)
        rc = cuda_status(c, cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, device_index), "SM count");
    if (rc == MSA_OK && cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS)
        rc = msa_fail(MSA_ERR_UNSUPPORTED, "cuda:%d: cuBLASLt did not initialise", device_index);
    c->lt_workspace_bytes = 32u << 20; /* Hopper kernels want a large workspace */
    if (rc == MSA_OK) rc = cuda_status(c, cudaMalloc(&c->lt_workspace, c->lt_workspace_bytes), "GEMM workspace");
    if (rc == MSA_OK && model) rc = cuda_upload_model_weights(c, model); /* else: copied on first use */
    if (rc == MSA_OK) rc = cb_sync(&c->base);
    if (rc != MSA_OK) {
        cb_destroy(&c->base);
        return rc;
    }
    *out = &c->base;
    return MSA_OK;
}
