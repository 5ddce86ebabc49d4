/* route.cu — read mode's routing scan on the GPU (backend.h route_maxsim): for every routing token and every
 * document, the best cosine between the token's key and the document's chunk keys, with the CPU's bits.
 *
 * Exactness: each (token, chunk) dot sums in route_scan.h's canonical order (16 fmaf lanes by i & 15, then the
 * pairwise tree), the key's inverse norm is 1/sqrt of a sum of squares in double in element order (each product
 * of two floats is exact in double, so fused or not gives the same sum), and max is order-free; the result is
 * therefore bit-for-bit the CPU's (readmode.c), not merely close.
 *
 * Shape of the work: a block takes tiles of CH consecutive chunks, one per thread, widened to f32 in shared
 * memory; the query rows pass through shared memory a tile at a time (once per block when they fit one) and each thread multiplies its key into TOK rows at once
 * (TOK x 16 accumulators in registers; per 4 elements one key load and TOK broadcast query loads feed 4 x TOK
 * FMAs). A document's chunks are consecutive, so a warp-wide segmented max leaves one value per document run
 * and only the run's first lane writes, with an atomic max, into best. */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

enum { TOK = 8 }; /* query rows per thread pass (the shared-memory query tile is a multiple of it) */

/* best = max(best, v) for v > -inf (not NaN): the sign decides between the int and uint orders of the bits */
__device__ __forceinline__ void atomic_max_float(float *p, float v) {
    if (!(v > -INFINITY)) return;
    if (!signbit(v)) atomicMax((int *)p, __float_as_int(v));
    else atomicMin((unsigned *)p, __float_as_uint(v));
}

/* One pass of TOK query rows (t0 ..) over this thread's key: dots in canonical order, scaled by inv. */
__device__ __forceinline__ void dots_tok(const float *kr, const float *qs, int ldq, int dim, float out[TOK]) {
    float a[TOK][16];
#pragma unroll
    for (int t = 0; t < TOK; t++)
#pragma unroll
        for (int j = 0; j < 16; j++) a[t][j] = 0.0f;
    for (int i = 0; i < dim; i += 16) {
#pragma unroll
        for (int s = 0; s < 16; s += 4) {
            const float4 k = *(const float4 *)(kr + i + s);
#pragma unroll
            for (int t = 0; t < TOK; t++) {
                const float4 q = *(const float4 *)(qs + (size_t)t * ldq + i + s);
                a[t][s + 0] = fmaf(q.x, k.x, a[t][s + 0]);
                a[t][s + 1] = fmaf(q.y, k.y, a[t][s + 1]);
                a[t][s + 2] = fmaf(q.z, k.z, a[t][s + 2]);
                a[t][s + 3] = fmaf(q.w, k.w, a[t][s + 3]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < TOK; t++) {
#pragma unroll
        for (int j = 0; j < 8; j++) a[t][j] += a[t][j + 8];
#pragma unroll
        for (int j = 0; j < 4; j++) a[t][j] += a[t][j + 4];
#pragma unroll
        for (int j = 0; j < 2; j++) a[t][j] += a[t][j + 2];
        out[t] = a[t][0] + a[t][1];
    }
}

/* rows [0, n) of a [rows][dim] matrix (f32, or bf16 when bf16) starting at src, widened into shared memory rows of
 * ld floats, rows n..rows-1 zero. 16-byte loads, several in flight per thread: the tile is contiguous in global
 * memory and dim is a multiple of 16, so no load straddles two rows. */
__device__ __forceinline__ void load_rows(float *dst, int ld, const void *src, bool bf16, int n, int rows, int dim) {
    const int per = bf16 ? 8 : 4; /* elements per 16 bytes */
    const int n16 = rows * dim / per;
#pragma unroll 4
    for (int v = threadIdx.x; v < n16; v += blockDim.x) {
        const int e = v * per, r = e / dim, i = e % dim;
        float *o = dst + (size_t)r * ld + i;
        if (r >= n) {
            for (int j = 0; j < per; j++) o[j] = 0.0f;
            continue;
        }
        const uint4 u = ((const uint4 *)src)[v];
        if (bf16) {
            const uint32_t w[4] = {u.x, u.y, u.z, u.w};
            *(float4 *)o = make_float4(__uint_as_float(w[0] << 16), __uint_as_float(w[0] & 0xffff0000u),
                                       __uint_as_float(w[1] << 16), __uint_as_float(w[1] & 0xffff0000u));
            *(float4 *)(o + 4) = make_float4(__uint_as_float(w[2] << 16), __uint_as_float(w[2] & 0xffff0000u),
                                             __uint_as_float(w[3] << 16), __uint_as_float(w[3] & 0xffff0000u));
        } else {
            *(float4 *)o = make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z),
                                       __uint_as_float(u.w));
        }
    }
}

/* Tiles of CH consecutive chunks (one per thread; blockDim.x = CH, a multiple of 32), grid-strided. Shared
 * memory: CH key rows then qt query rows, each ld floats (dim rounded up so rows stay 16-byte aligned and a
 * quarter-warp's rows hit distinct banks). When every query row fits one tile it is loaded once per block. */
__global__ void k_route_maxsim(const void *keys, bool bf16, const int32_t *doc, uint64_t n_chunks, int dim, int ld,
                               const float *q, int nq, int qt, float *best, uint64_t n_docs) {
    extern __shared__ float sm[];
    const int CH = blockDim.x, c = threadIdx.x, lane = c & 31;
    float *ks = sm, *qs = sm + (size_t)CH * ld;
    const bool q_once = nq <= qt;
    if (q_once) load_rows(qs, ld, q, false, nq, qt, dim); /* visible after the tile's first barrier */
    const uint64_t n_tiles = (n_chunks + CH - 1) / CH;
    const size_t esz = bf16 ? 2 : 4;
    for (uint64_t tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const uint64_t c0 = tile * CH;
        const int nc = (int)(n_chunks - c0 < (uint64_t)CH ? n_chunks - c0 : (uint64_t)CH);
        __syncthreads(); /* the previous tile's keys are no longer read */
        load_rows(ks, ld, (const uint8_t *)keys + c0 * dim * esz, bf16, nc, CH, dim);
        __syncthreads();
        const float *kr = ks + (size_t)c * ld;
        const int d = c < nc ? doc[c0 + c] : -1;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)kr[i] * kr[i];
        const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        const int dprev = __shfl_up_sync(0xffffffffu, d, 1);
        const bool head = d >= 0 && (lane == 0 || dprev != d);
        for (int qt0 = 0; qt0 < nq; qt0 += qt) {
            const int nqt = nq - qt0 < qt ? nq - qt0 : qt;
            if (!q_once) {
                __syncthreads(); /* the previous query tile is no longer read */
                load_rows(qs, ld, q + (size_t)qt0 * dim, false, nqt, qt, dim);
                __syncthreads();
            }
            for (int t0 = 0; t0 < nqt; t0 += TOK) {
                float v[TOK];
                dots_tok(kr, qs + (size_t)t0 * ld, ld, dim, v);
#pragma unroll
                for (int t = 0; t < TOK; t++) {
                    float x = v[t] * inv;
                    if (d < 0 || x != x) x = -INFINITY; /* a NaN never wins (the CPU's v > best) */
#pragma unroll
                    for (int o = 1; o < 32; o <<= 1) { /* segmented max over this lane's run of equal documents */
                        const float xo = __shfl_down_sync(0xffffffffu, x, o);
                        const int dd = __shfl_down_sync(0xffffffffu, d, o);
                        if (lane + o < 32 && dd == d && xo > x) x = xo;
                    }
                    if (head && t0 + t < nqt) atomic_max_float(&best[(size_t)(qt0 + t0 + t) * n_docs + d], x);
                }
            }
        }
    }
}

__global__ void k_fill(float *x, size_t n, float v) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] = v;
}

msa_status cuda_route_maxsim(msa_backend *be, const msa_buf *keys, bool bf16, const msa_buf *doc, uint64_t n_chunks,
                             int dim, const msa_buf *q, int nq, msa_buf *best, uint64_t n_docs) {
    cuda_backend *c = (cuda_backend *)be;
    if (dim <= 0 || dim % 16 || nq <= 0)
        return msa_fail(MSA_ERR_UNSUPPORTED, "cuda: routing scan needs a key length that is a multiple of 16 (%d)", dim);
    const size_t cells = (size_t)nq * n_docs;
    k_fill<<<grid_for(cells, 256) < 4096 ? grid_for(cells, 256) : 4096, 256, 0, c->stream>>>((float *)best, cells,
                                                                                            -INFINITY);
    if (n_chunks == 0) return MSA_OK;
    const int ld = dim + 4;
    int CH = 64, qt = 32; /* 2 warps a block; 3 blocks an SM at the default model's 192 */
    while (CH > 32 && (size_t)(CH + qt) * ld * sizeof(float) > 112 * 1024) CH /= 2;
    while (qt > TOK && (size_t)(CH + qt) * ld * sizeof(float) > 200 * 1024) qt /= 2;
    const size_t smem = (size_t)(CH + qt) * ld * sizeof(float);
    if (smem > 200 * 1024) return msa_fail(MSA_ERR_UNSUPPORTED, "cuda: routing keys of %d elements are too long", dim);
    if (!cuda_ok(c, cudaFuncSetAttribute(k_route_maxsim, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)))
        return msa_fail(MSA_ERR_IO, "cuda: routing scan: %s", cudaGetErrorString(c->sticky));
    int per_sm = 1;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_route_maxsim, CH, smem);
    const uint64_t tiles = (n_chunks + CH - 1) / CH, cap = (uint64_t)c->n_sm * (per_sm > 0 ? per_sm : 1);
    k_route_maxsim<<<(unsigned)(tiles < cap ? tiles : cap), CH, smem, c->stream>>>(
        keys, bf16, (const int32_t *)doc, n_chunks, dim, ld, (const float *)q, nq, qt, (float *)best, n_docs);
    cuda_ok(c, cudaGetLastError());
    return MSA_OK;
}
