/* weights.cu — the device copies of the model's weights: matrices and embedding tables copied once from
 * the mapped files through pinned staging buffers (two, so the disk/page-cache read of one chunk overlaps
 * the PCIe copy of the other), converted on the device where the stored dtype is not one the GEMMs take
 * (cuda_common.cuh: dev_wtype), and found again by the tensor's address. Norm vectors likewise. */
#include <stdio.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

#define STAGE_BYTES ((size_t)64 << 20)

/* ------------------------------------------------------------------------------------- conversion kernels */

__device__ __forceinline__ float half_bits_to_f32(const uint8_t *p) {
    __half_raw r;
    r.x = (unsigned short)(p[0] | (p[1] << 8));
    return __half2float(__half(r));
}

__global__ void k_f16_to_f32(const uint8_t *src, float *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = half_bits_to_f32(src + 2 * i);
}

/* One thread per element; block layouts in model/tensor.h. Products and sums rounded separately (no fma
 * contraction) exactly as msa_row_to_f32 computes them. */
__global__ void k_dequant(const uint8_t *src, float *dst, int64_t n, int kind) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = i / 32;
        const int j = (int)(i % 32);
        float x;
        if (kind == MSA_DTYPE_Q8_0) {
            const uint8_t *p = src + b * 34;
            x = __fmul_rn(half_bits_to_f32(p), (float)(int8_t)p[2 + j]);
        } else if (kind == MSA_DTYPE_Q4_0) {
            const uint8_t *p = src + b * 18;
            const int q = j < 16 ? (p[2 + j] & 0xf) : (p[2 + j - 16] >> 4);
            x = __fmul_rn(half_bits_to_f32(p), (float)(q - 8));
        } else { /* Q4_1 */
            const uint8_t *p = src + b * 20;
            const int q = j < 16 ? (p[4 + j] & 0xf) : (p[4 + j - 16] >> 4);
            x = __fadd_rn(__fmul_rn(half_bits_to_f32(p), (float)q), half_bits_to_f32(p + 2));
        }
        dst[i] = x;
    }
}

/* ---------------------------------------------------------------------------------------------- the table */

static uint64_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static dev_weight *find_slot(cuda_backend *c, const void *key) {
    if (!c->n_weights_cap) return NULL;
    uint64_t i = hash_ptr(key) & (uint64_t)(c->n_weights_cap - 1);
    for (;;) {
        dev_weight *w = &c->weights[i];
        if (!w->key || w->key == key) return w;
        i = (i + 1) & (uint64_t)(c->n_weights_cap - 1);
    }
}

static bool grow_table(cuda_backend *c) {
    if (2 * (c->n_weights + 1) <= c->n_weights_cap) return true;
    int cap = c->n_weights_cap ? 2 * c->n_weights_cap : 256;
    dev_weight *old = c->weights;
    int old_cap = c->n_weights_cap;
    c->weights = (dev_weight *)calloc((size_t)cap, sizeof(dev_weight));
    if (!c->weights) {
        c->weights = old;
        return false;
    }
    c->n_weights_cap = cap;
    for (int i = 0; i < old_cap; i++)
        if (old[i].key) *find_slot(c, old[i].key) = old[i];
    free(old);
    return true;
}

/* Copy bytes to the device in STAGE_BYTES pieces through two pinned buffers, each piece written into a buffer by
 * fill(ctx, piece, src_off, n) while the other buffer's piece is in flight. Synchronous: returns when the bytes
 * are on the device. Without pinned memory each piece goes through a pageable buffer the driver stages itself. */
msa_status cuda_upload_fill(cuda_backend *c, void *dst, size_t bytes, bool (*fill)(void *, void *, size_t, size_t),
                            void *ctx) {
    uint8_t **pinned = c->pinned;
    cudaEvent_t *done = c->staged;
    bool have_pinned = true;
    for (int i = 0; i < 2 && have_pinned; i++)
        if ((!pinned[i] && cudaMallocHost((void **)&pinned[i], STAGE_BYTES) != cudaSuccess) ||
            (!done[i] && cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming) != cudaSuccess)) {
            cudaGetLastError();
            have_pinned = false;
        }
    if (!have_pinned) {
        uint8_t *bounce = (uint8_t *)malloc(bytes < STAGE_BYTES ? (bytes ? bytes : 1) : STAGE_BYTES);
        if (!bounce) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        msa_status st = MSA_OK;
        for (size_t off = 0; st == MSA_OK && off < bytes;) {
            const size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
            if (!fill(ctx, bounce, off, n)) st = msa_fail(MSA_ERR_IO, "cuda:%d: reading the source of a copy", c->device);
            cudaError_t e = st ? cudaSuccess : cudaMemcpy((uint8_t *)dst + off, bounce, n, cudaMemcpyHostToDevice);
            if (e != cudaSuccess)
                st = msa_fail(MSA_ERR_IO, "cuda:%d: copying to the device: %s", c->device, cudaGetErrorString(e));
            off += n;
        }
        free(bounce);
        return st;
    }
    msa_status st = MSA_OK;
    size_t off = 0;
    for (int k = 0; off < bytes; k ^= 1) {
        size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
        cudaEventSynchronize(done[k]); /* the copy that last used this buffer has finished */
        if (!fill(ctx, pinned[k], off, n)) {
            st = msa_fail(MSA_ERR_IO, "cuda:%d: reading the source of a copy", c->device);
            break;
        }
        if (!cuda_ok(c, cudaMemcpyAsync((uint8_t *)dst + off, pinned[k], n, cudaMemcpyHostToDevice, c->stream)) ||
            !cuda_ok(c, cudaEventRecord(done[k], c->stream)))
            return msa_fail(MSA_ERR_IO, "cuda:%d: copying to the device: %s", c->device, cudaGetErrorString(c->sticky));
        off += n;
    }
    cudaError_t e = cudaStreamSynchronize(c->stream); /* also when fill gave up: no copy may still read pinned[] */
    if (st) return st;
    return e == cudaSuccess ? MSA_OK
                            : msa_fail(MSA_ERR_IO, "cuda:%d: copying to the device: %s", c->device, cudaGetErrorString(e));
}

static bool fill_from_memory(void *src, void *piece, size_t off, size_t n) {
    memcpy(piece, (const uint8_t *)src + off, n);
    return true;
}

/* Copy bytes from host memory (the mapped file) to the device. */
static msa_status stage_copy(cuda_backend *c, void *dst, const void *src, size_t bytes) {
    return cuda_upload_fill(c, dst, bytes, fill_from_memory, (void *)src);
}

static dev_wtype device_type_of(msa_dtype t) { return t == MSA_DTYPE_BF16 ? DW_BF16 : DW_F32; }

static size_t device_bytes_of(const msa_tensor *t) {
    return (size_t)msa_tensor_nelements(t) * (device_type_of(t->dtype) == DW_BF16 ? 2 : 4);
}

static msa_status upload_tensor(cuda_backend *c, const msa_tensor *t, dev_weight *out) {
    const int64_t n = msa_tensor_nelements(t);
    const size_t dbytes = device_bytes_of(t);
    void *dst = NULL;
    cudaError_t e = cudaMalloc(&dst, dbytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return msa_fail(MSA_ERR_NOMEM, "cuda:%d: no room for weight %s (%.1f MiB)", c->device, t->name,
                        dbytes / 1048576.0);
    }
    msa_status rc = MSA_OK;
    if (t->dtype == MSA_DTYPE_BF16 || t->dtype == MSA_DTYPE_F32) {
        rc = stage_copy(c, dst, t->data, t->nbytes);
    } else {
        void *raw = NULL;
        if (cudaMalloc(&raw, t->nbytes) != cudaSuccess) {
            cudaGetLastError();
            cudaFree(dst);
            return msa_fail(MSA_ERR_NOMEM, "cuda:%d: no room to convert weight %s", c->device, t->name);
        }
        rc = stage_copy(c, raw, t->data, t->nbytes);
        if (rc == MSA_OK) {
            unsigned grid = (unsigned)((n + 255) / 256 < 65535 * 8 ? (n + 255) / 256 : 65535 * 8);
            if (t->dtype == MSA_DTYPE_F16)
                k_f16_to_f32<<<grid, 256, 0, c->stream>>>((const uint8_t *)raw, (float *)dst, n);
            else
                k_dequant<<<grid, 256, 0, c->stream>>>((const uint8_t *)raw, (float *)dst, n, (int)t->dtype);
            cuda_ok(c, cudaGetLastError());
            cudaError_t s = cudaStreamSynchronize(c->stream);
            if (s != cudaSuccess) rc = msa_fail(MSA_ERR_IO, "cuda:%d: converting %s: %s", c->device, t->name,
                                                cudaGetErrorString(s));
        }
        cudaFree(raw);
    }
    if (rc != MSA_OK) {
        cudaFree(dst);
        return rc;
    }
    out->key = t;
    out->src = t->data;
    out->ptr = dst;
    out->type = device_type_of(t->dtype);
    out->rows = t->n_dims >= 2 ? t->shape[0] : 1;
    out->cols = n / out->rows;
    c->weight_bytes += dbytes;
    return MSA_OK;
}

const dev_weight *cuda_weight(cuda_backend *c, const msa_tensor *t) {
    dev_weight *w = find_slot(c, t);
    if (w && w->key) {
        const int64_t rows = t->n_dims >= 2 ? t->shape[0] : 1;
        if (w->src == t->data && w->type == device_type_of(t->dtype) && w->rows == rows &&
            w->rows * w->cols == msa_tensor_nelements(t))
            return w;
        /* another tensor at a cached address (backend.h asks callers not to; the model never does): a stale
         * copy would be silently wrong, so replace it */
        cudaStreamSynchronize(c->stream);
        cudaFree(w->ptr);
        c->weight_bytes -= (size_t)(w->rows * w->cols) * (w->type == DW_BF16 ? 2 : 4);
        dev_weight nw;
        if (upload_tensor(c, t, &nw) != MSA_OK) {
            w->ptr = NULL; /* the slot stays taken (open addressing) but never matches: src is NULL */
            w->src = NULL;
            w->rows = w->cols = 0;
            if (c->sticky == cudaSuccess) c->sticky = cudaErrorMemoryAllocation;
            return NULL;
        }
        *w = nw;
        return w;
    }
    if (!grow_table(c)) return NULL;
    w = find_slot(c, t);
    dev_weight nw;
    if (upload_tensor(c, t, &nw) != MSA_OK) {
        if (c->sticky == cudaSuccess) c->sticky = cudaErrorMemoryAllocation;
        return NULL;
    }
    *w = nw;
    c->n_weights++;
    return w;
}

const float *cuda_norm_weight(cuda_backend *c, const float *wv, int n) {
    if (!wv) return NULL;
    dev_weight *w = find_slot(c, wv);
    if (w && w->key) return (const float *)w->ptr;
    if (!grow_table(c)) return NULL;
    w = find_slot(c, wv);
    void *dst = NULL;
    if (!cuda_ok(c, cudaMalloc(&dst, (size_t)n * sizeof(float))) ||
        !cuda_ok(c, cudaMemcpy(dst, wv, (size_t)n * sizeof(float), cudaMemcpyHostToDevice))) {
        if (dst) cudaFree(dst);
        return NULL;
    }
    w->key = wv;
    w->ptr = dst;
    w->type = DW_F32;
    w->rows = 1;
    w->cols = n;
    c->n_weights++;
    return (const float *)dst;
}

msa_status cuda_upload_model_weights(cuda_backend *c, const msa_model *m) {
    const msa_hparams *hp = &m->hp;
    /* the whole footprint first, so that a model that cannot fit fails at once with the numbers */
    size_t need = device_bytes_of(m->tok_embd) + (m->output != m->tok_embd ? device_bytes_of(m->output) : 0);
    for (int l = 0; l < hp->n_layer; l++) {
        const msa_layer *L = &m->layers[l];
        const msa_tensor *ts[] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) need += device_bytes_of(ts[i]);
    }
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (need + ((size_t)512 << 20) > free_b)
        return msa_fail(MSA_ERR_NOMEM,
                        "cuda:%d: the model needs %.2f GiB of GPU memory for its weights (plus working memory); "
                        "%.2f GiB of %.2f GiB are free",
                        c->device, need / 1073741824.0, free_b / 1073741824.0, total_b / 1073741824.0);
    if (!cuda_weight(c, m->tok_embd) || !cuda_weight(c, m->output)) return MSA_ERR_NOMEM;
    if (!cuda_norm_weight(c, m->output_norm, hp->n_embd)) return MSA_ERR_NOMEM;
    for (int l = 0; l < hp->n_layer; l++) {
        const msa_layer *L = &m->layers[l];
        const msa_tensor *ts[] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
            if (!cuda_weight(c, ts[i])) return msa_fail_prefix(MSA_ERR_NOMEM, "layer %d", l);
        if (!cuda_norm_weight(c, L->attn_norm, hp->n_embd) || !cuda_norm_weight(c, L->ffn_norm, hp->n_embd))
            return MSA_ERR_NOMEM;
        if (L->q_norm && !cuda_norm_weight(c, L->q_norm, hp->head_dim)) return MSA_ERR_NOMEM;
        if (L->k_norm && !cuda_norm_weight(c, L->k_norm, hp->head_dim)) return MSA_ERR_NOMEM;
    }
    return MSA_OK;
}

void cuda_free_weights(cuda_backend *c) {
    for (int i = 0; i < 2; i++) {
        if (c->pinned[i]) cudaFreeHost(c->pinned[i]);
        if (c->staged[i]) cudaEventDestroy(c->staged[i]);
        c->pinned[i] = NULL;
        c->staged[i] = NULL;
    }
    for (int i = 0; i < c->n_weights_cap; i++)
        if (c->weights[i].key) cudaFree(c->weights[i].ptr);
    free(c->weights);
    c->weights = NULL;
    c->n_weights = c->n_weights_cap = 0;
}
