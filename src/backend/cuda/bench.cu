/* bench.cu — the GPU's ceilings, measured in the same run as the benchmark that is compared with them
 * (targets.md: "always against a ceiling measured on the same machine"): device-to-device copy bandwidth
 * (bytes read + written per second, 2 GiB buffers) and a bf16 GEMM of 8192^3 through the same cuBLASLt path
 * the model uses (TFLOP/s). Medians of 7 timed repetitions after a warm-up, CUDA events. */
#include <algorithm>

#include "backend/cuda/cuda_common.cuh"

static double median(float *v, int n) {
    std::sort(v, v + n);
    return v[n / 2];
}

msa_status cuda_ceilings(msa_backend *be, double *copy_gbs, double *gemm_tflops) {
    cuda_backend *c = (cuda_backend *)be;
    const size_t bytes = (size_t)2 << 30;
    const int64_t g = 8192;
    void *a = NULL, *b = NULL;
    float *y = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    msa_status rc = MSA_OK;
    float t[7];
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMalloc((void **)&y, (size_t)g * g * sizeof(float)) != cudaSuccess ||
        cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        cudaGetLastError();
        rc = msa_fail(MSA_ERR_NOMEM, "cuda:%d: no room for the ceiling measurements (4.3 GiB)", c->device);
        goto out;
    }
    cudaMemsetAsync(a, 0, bytes, c->stream);
    cudaMemsetAsync(b, 0, bytes, c->stream);
    for (int r = -1; r < 7; r++) {
        cudaEventRecord(e0, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        cudaEventRecord(e1, c->stream);
        cudaEventSynchronize(e1);
        if (r >= 0) cudaEventElapsedTime(&t[r], e0, e1);
    }
    *copy_gbs = 2.0 * bytes / (median(t, 7) * 1e-3) / 1e9;
    /* bf16 operands: the first 2 x 128 MiB of the copy buffers (zeros: GEMM speed does not depend on values) */
    for (int r = -1; r < 7; r++) {
        cudaEventRecord(e0, c->stream);
        if (!cuda_gemm_raw(c, DW_BF16, g, g, g, a, b, y)) {
            rc = msa_fail(MSA_ERR_UNSUPPORTED, "cuda:%d: cuBLASLt has no bf16 GEMM plan for 8192^3", c->device);
            goto out;
        }
        cudaEventRecord(e1, c->stream);
        cudaEventSynchronize(e1);
        if (r >= 0) cudaEventElapsedTime(&t[r], e0, e1);
    }
    *gemm_tflops = 2.0 * g * g * g / (median(t, 7) * 1e-3) / 1e12;
    if (cudaGetLastError() != cudaSuccess) rc = msa_fail(MSA_ERR_IO, "cuda:%d: ceiling measurement failed", c->device);
out:
    cudaStreamSynchronize(c->stream);
    if (a) cudaFree(a);
    if (b) cudaFree(b);
    if (y) cudaFree(y);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return rc;
}

void cuda_memory(msa_backend *be, size_t *used, size_t *total) {
    cuda_backend *c = (cuda_backend *)be;
    size_t f = 0, t = 0;
    cudaSetDevice(c->device);
    cudaMemGetInfo(&f, &t);
    *used = t - f;
    *total = t;
}
