/* attention.cu — attention of a batch's query rows over [extra K/V ; visible cache slots] with msa's
 * visibility rules (msa_attn_args in backend.h: same sequence, key slot below the row's end, valid or the
 * row's own slot; extra entries seen by every row). One block per (row, head), four warps; each warp walks
 * a quarter of the keys with an online softmax (running max, rescaled sum and accumulator), the warps are
 * merged at the end. Lanes split head_dim (up to 256 = 8 values a lane). bf16 checkpoints round the scores
 * as the CPU does (bf16(bf16(q.k) * scale)) and the output to bf16; the CPU's rounding of each probability
 * to bf16 is not reproduced (its effect is below the output's own bf16 rounding; tests/gpu checks it).
 *
 * Rows scan their own sequence's range 32 keys at a time (a ballot of the visible ones), so the slots of
 * other sequences that batched decoding interleaves are skipped at a thirty-second of a key's cost.
 *
 * Few rows over many keys (decode) split the keys over several blocks per (row, head) (flash-decoding): each
 * writes its partial (max, sum, accumulator) and a second kernel merges them, so a single query still fills
 * the GPU. Many rows (prefill, stage-1 encoding) take the tiled kernel: a block of 32 query rows of one
 * head walks the union of their key ranges in tiles of 32 keys held in shared memory, so each key is read
 * once per 32 rows instead of once per row (f32 FMA on CUDA cores; tensor-core tiles are the next step). */
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_PER_LANE 8 /* head_dim <= 256 */

__device__ __forceinline__ float bf16r_att(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

/* part == NULL: the whole key range, the normalised output into out. Otherwise split blockIdx.z of
 * gridDim.z: keys [z*n_keys/S, (z+1)*n_keys/S) and the unnormalised partial {max, sum, acc[D]} into
 * part[((row * H + h) * S + z) * (D + 2)]. */
template <int PER_LANE>
__global__ void k_attention(msa_attn_args a, const float *q, float *out, const float *kc, const float *vc,
                            const float *ek, const float *ev, const int32_t *slot_seq, const uint8_t *slot_valid,
                            const int32_t *q_seq, const int32_t *q_begin, const int32_t *q_end, int H, int KV, int D,
                            float *part) {
    const int row = blockIdx.x, h = blockIdx.y, kvh = h / (H / KV);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float scale = 1.0f / sqrtf((float)D);
    const int qslot = a.base + row, qseq = q_seq[row], begin = q_begin[row], end = q_end[row];
    const int n_keys = a.n_ex + (end > begin ? end - begin : 0);
    const float *qh = q + ((size_t)row * H + h) * D;

    float qv[PER_LANE], acc[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) {
        const int d = lane + 32 * j;
        qv[j] = d < D ? qh[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, s = 0.0f;
    const int S = gridDim.z, z = blockIdx.z;
    const int e_lo = (int)((int64_t)n_keys * z / S), e_hi = (int)((int64_t)n_keys * (z + 1) / S);
    /* Each warp takes 32 keys at a time: the lanes test visibility together (one coalesced read of the slot
     * tables) and the warp then computes only the visible keys, so the other sequences' slots interleaved by
     * batched decoding cost 1/32 of a key each. */
    for (int e0 = e_lo + 32 * warp; e0 < e_hi; e0 += 32 * ATT_WARPS) {
        bool vis = false;
        const int el = e0 + lane;
        if (el < e_hi) {
            if (el < a.n_ex) {
                vis = true;
            } else {
                const int t = begin + el - a.n_ex;
                vis = slot_seq[t] == qseq && (slot_valid[t] || t == qslot);
            }
        }
        for (unsigned mask = __ballot_sync(0xffffffffu, vis); mask; mask &= mask - 1) {
            const int e = e0 + __ffs(mask) - 1;
            const float *kk, *vv;
            if (e < a.n_ex) {
                kk = ek + ((size_t)kvh * a.n_ex + e) * D;
                vv = ev + ((size_t)kvh * a.n_ex + e) * D;
            } else {
                const int t = begin + e - a.n_ex;
                kk = kc + ((size_t)kvh * a.n_ctx + t) * D;
                vv = vc + ((size_t)kvh * a.n_ctx + t) * D;
            }
            float dot = 0.0f;
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) {
                const int d = lane + 32 * j;
                if (d < D) dot = fmaf(qv[j], kk[d], dot);
            }
            for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            const float sc = a.bf16 ? bf16r_att(bf16r_att(dot) * scale) : dot * scale;
            if (sc > m) {
                const float f = expf(m - sc); /* 0 on the first visible key (m = -inf) */
                s *= f;
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) acc[j] *= f;
                m = sc;
            }
            const float p = expf(sc - m);
            s += p;
#pragma unroll
            for (int j = 0; j < PER_LANE; j++) {
                const int d = lane + 32 * j;
                if (d < D) acc[j] = fmaf(p, vv[d], acc[j]);
            }
        }
    }

    __shared__ float sm_m[ATT_WARPS], sm_s[ATT_WARPS];
    __shared__ float sm_acc[ATT_WARPS][32 * ATT_MAX_PER_LANE];
    if (lane == 0) sm_m[warp] = m;
    __syncthreads();
    float gm = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++) gm = fmaxf(gm, sm_m[w]);
    const float f = m == -INFINITY ? 0.0f : expf(m - gm);
    if (lane == 0) sm_s[warp] = s * f;
#pragma unroll
    for (int j = 0; j < PER_LANE; j++) sm_acc[warp][lane + 32 * j] = acc[j] * f;
    __syncthreads();
    if (warp == 0) { /* the warps' sums: a split's partial {max, sum, acc}, or the normalised output */
        float total = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) total += sm_s[w];
        float *p = part ? part + (((size_t)row * H + h) * S + z) * (D + 2) : NULL;
        float *o = out + ((size_t)row * H + h) * D;
        const float inv = total > 0.0f ? 1.0f / total : 0.0f;
        if (p && lane == 0) p[0] = gm, p[1] = total;
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) {
            const int d = lane + 32 * j;
            if (d >= D) continue;
            float v = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++) v += sm_acc[w][d];
            if (p) p[2 + d] = v;
            else o[d] = a.bf16 ? bf16r_att(v * inv) : v * inv;
        }
    }
}

/* Merge S partials of each (row, head): one block of head_dim threads. */
__global__ void k_attention_merge(const float *part, float *out, int S, int D, bool bf16) {
    const int rh = blockIdx.x, d = threadIdx.x;
    const float *p = part + (size_t)rh * S * (D + 2);
    float gm = -INFINITY;
    for (int z = 0; z < S; z++) gm = fmaxf(gm, p[(size_t)z * (D + 2)]);
    float total = 0.0f, v = 0.0f;
    for (int z = 0; z < S; z++) {
        const float *pz = p + (size_t)z * (D + 2);
        const float f = pz[0] == -INFINITY ? 0.0f : expf(pz[0] - gm);
        total += pz[1] * f;
        if (d < D) v += pz[2 + d] * f;
    }
    if (d < D) {
        v = total > 0.0f ? v / total : 0.0f;
        out[(size_t)rh * D + d] = bf16 ? bf16r_att(v) : v;
    }
}

/* --------------------------------------------------------------------------------------- tiled (prefill) */

#define TQ 32          /* query rows per block (8 per warp) */
#define TK 32          /* keys per tile (one per lane in the score phase) */
#define ROWS_PER_WARP (TQ / ATT_WARPS)

template <int D>
__global__ void __launch_bounds__(32 * ATT_WARPS)
k_attention_tiled(msa_attn_args a, const float *q, float *out, const float *kc, const float *vc, const float *ek,
                  const float *ev, const int32_t *slot_seq, const uint8_t *slot_valid, const int32_t *q_seq,
                  const int32_t *q_begin, const int32_t *q_end, int H, int KV) {
    constexpr int PL = D / 32;
    extern __shared__ float smem[];
    float *sq = smem;                    /* [TQ][D] */
    float *sk = sq + TQ * D;             /* [TK][D + 1]: padded so lanes reading key j, dim d hit distinct banks */
    float *sv = sk + TK * (D + 1);       /* [TK][D] */
    float *sp = sv + TK * D;             /* [ATT_WARPS][ROWS_PER_WARP][TK] probabilities */
    __shared__ int s_lo, s_hi;
    const int h = blockIdx.y, kvh = h / (H / KV), row0 = blockIdx.x * TQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n_rows = a.n - row0 < TQ ? a.n - row0 : TQ;
    const float scale = 1.0f / sqrtf((float)D);

    for (int i = threadIdx.x; i < TQ * D; i += blockDim.x) {
        const int r = i / D, d = i % D;
        sq[i] = r < n_rows ? q[((size_t)(row0 + r) * H + h) * D + d] : 0.0f;
    }
    if (threadIdx.x == 0) {
        int lo = 0x7fffffff, hi = 0;
        for (int r = 0; r < n_rows; r++) lo = min(lo, q_begin[row0 + r]), hi = max(hi, q_end[row0 + r]);
        s_lo = lo, s_hi = hi;
    }
    int rseq[ROWS_PER_WARP], rbeg[ROWS_PER_WARP], rend[ROWS_PER_WARP];
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][PL];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int row = warp * ROWS_PER_WARP + r;
        const bool live = row < n_rows;
        rseq[r] = live ? q_seq[row0 + row] : -1;
        rbeg[r] = live ? q_begin[row0 + row] : 0;
        rend[r] = live ? q_end[row0 + row] : 0; /* dead rows see nothing */
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < PL; i++) acc[r][i] = 0.0f;
    }
    __syncthreads();
    const int n_ex_tiles = (a.n_ex + TK - 1) / TK;
    const int lo_tile = s_lo / TK, hi_tile = (s_hi + TK - 1) / TK; /* cache tiles, aligned to TK slots */
    for (int tile = -n_ex_tiles; tile < hi_tile - lo_tile; tile++) {
        const bool extra = tile < 0;
        const int t0 = extra ? (tile + n_ex_tiles) * TK : (lo_tile + tile) * TK;
        const int t_end = extra ? a.n_ex : a.n_ctx;
        for (int i = threadIdx.x; i < TK * D; i += blockDim.x) {
            const int j = i / D, d = i % D, t = t0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (t < t_end) {
                const size_t off = extra ? ((size_t)kvh * a.n_ex + t) * D + d : ((size_t)kvh * a.n_ctx + t) * D + d;
                kv = extra ? ek[off] : kc[off];
                vv = extra ? ev[off] : vc[off];
            }
            sk[j * (D + 1) + d] = kv;
            sv[j * D + d] = vv;
        }
        __syncthreads();
        const int t = t0 + lane; /* this lane's key */
        const int kseq = !extra && t < a.n_ctx ? slot_seq[t] : -2;
        const bool kvalid = !extra && t < a.n_ctx ? slot_valid[t] != 0 : false;
        float sc[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) sc[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float k = sk[lane * (D + 1) + d];
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) sc[r] = fmaf(sq[(warp * ROWS_PER_WARP + r) * D + d], k, sc[r]);
        }
        float *pw = sp + warp * ROWS_PER_WARP * TK;
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            const int qslot = a.base + row0 + warp * ROWS_PER_WARP + r;
            const bool vis = extra ? (t < a.n_ex && rend[r] > 0)
                                   : (t >= rbeg[r] && t < rend[r] && kseq == rseq[r] && (kvalid || t == qslot));
            float s = a.bf16 ? bf16r_att(bf16r_att(sc[r]) * scale) : sc[r] * scale;
            s = vis ? s : -INFINITY;
            float tm = s;
            for (int o = 16; o > 0; o >>= 1) tm = fmaxf(tm, __shfl_xor_sync(0xffffffffu, tm, o));
            const float nm = fmaxf(m[r], tm);
            const float f = m[r] == -INFINITY ? 0.0f : expf(m[r] - nm); /* rescale what was summed so far */
            const float p = s == -INFINITY ? 0.0f : expf(s - nm);
            l[r] = l[r] * f + p; /* per-lane partial sum, reduced at the end */
#pragma unroll
            for (int i = 0; i < PL; i++) acc[r][i] *= f;
            m[r] = nm;
            pw[r * TK + lane] = p;
        }
        __syncwarp();
        for (int j = 0; j < TK; j++) {
#pragma unroll
            for (int i = 0; i < PL; i++) {
                const float v = sv[j * D + lane + 32 * i];
#pragma unroll
                for (int r = 0; r < ROWS_PER_WARP; r++) acc[r][i] = fmaf(pw[r * TK + j], v, acc[r][i]);
            }
        }
        __syncthreads(); /* the tiles are overwritten next */
    }
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int row = warp * ROWS_PER_WARP + r;
        float tot = l[r];
        for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(0xffffffffu, tot, o);
        if (row >= n_rows) continue;
        const float inv = tot > 0.0f ? 1.0f / tot : 0.0f;
        float *o = out + ((size_t)(row0 + row) * H + h) * D;
#pragma unroll
        for (int i = 0; i < PL; i++) {
            const float v = acc[r][i] * inv;
            o[lane + 32 * i] = a.bf16 ? bf16r_att(v) : v;
        }
    }
}

template <int D>
static void launch_tiled(cuda_backend *c, const msa_attn_args *a, int n_head, int n_head_kv) {
    const size_t bytes = (size_t)(TQ * D + TK * (D + 1) + TK * D + TQ * TK) * sizeof(float);
    /* above the 48 KiB default for D = 128; set on every launch (per device, and cheap next to a layer) */
    cuda_ok(c, cudaFuncSetAttribute(k_attention_tiled<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    dim3 grid((unsigned)((a->n + TQ - 1) / TQ), (unsigned)n_head);
    k_attention_tiled<D><<<grid, 32 * ATT_WARPS, bytes, c->stream>>>(
        *a, (const float *)a->q, (float *)a->out, (const float *)a->k_cache, (const float *)a->v_cache,
        (const float *)a->ex_k, (const float *)a->ex_v, (const int32_t *)a->slot_seq, (const uint8_t *)a->slot_valid,
        (const int32_t *)a->q_seq, (const int32_t *)a->q_begin, (const int32_t *)a->q_end, n_head, n_head_kv);
}

/* Keys per split below which splitting does not pay. */
#define ATT_MIN_KEYS_PER_SPLIT 256

msa_status cuda_attention(msa_backend *be, const msa_attn_args *a, int n_head, int n_head_kv, int head_dim) {
    cuda_backend *c = (cuda_backend *)be;
    if (a->n <= 0) return MSA_OK;
    if (head_dim > 32 * ATT_MAX_PER_LANE || n_head % n_head_kv)
        return msa_fail(MSA_ERR_UNSUPPORTED, "cuda attention: head_dim %d (max %d) or %d heads over %d kv-heads",
                        head_dim, 32 * ATT_MAX_PER_LANE, n_head, n_head_kv);
    /* the tiled kernel walks the union of its 32 rows' key ranges: only where the rows share their keys (a
     * batch of sequences decoding side by side would make that union the whole cache, per tile) */
    if (a->shared_keys && a->n >= TQ && (head_dim == 64 || head_dim == 128)) {
        if (head_dim == 64)
            launch_tiled<64>(c, a, n_head, n_head_kv);
        else
            launch_tiled<128>(c, a, n_head, n_head_kv);
        cuda_ok(c, cudaGetLastError());
        return MSA_OK;
    }
    /* Split the keys when the (row, head) blocks alone cannot fill the GPU (a few rows: decode). The rows' key
     * ranges live on the device; n_ex + base + n bounds every one of them (a decode scans about that many). */
    int splits = 1;
    const int blocks = a->n * n_head, want = 4 * c->n_sm;
    const int max_keys = a->n_ex + a->base + a->n;
    if (blocks < want && max_keys >= 2 * ATT_MIN_KEYS_PER_SPLIT) {
        splits = (want + blocks - 1) / blocks;
        if (splits > max_keys / ATT_MIN_KEYS_PER_SPLIT) splits = max_keys / ATT_MIN_KEYS_PER_SPLIT;
        if (splits > 64) splits = 64;
    }
    float *part = NULL;
    if (splits > 1) {
        const size_t need = (size_t)a->n * n_head * splits * (head_dim + 2);
        if (need > c->att_part_floats) {
            if (c->att_part) {
                cudaStreamSynchronize(c->stream);
                cudaFree(c->att_part);
            }
            c->att_part = NULL;
            c->att_part_floats = 0;
            if (!cuda_ok(c, cudaMalloc((void **)&c->att_part, need * sizeof(float))))
                return msa_fail(MSA_ERR_NOMEM, "cuda attention: no room for %zu split partials", need);
            c->att_part_floats = need;
        }
        part = c->att_part;
    }
    dim3 grid((unsigned)a->n, (unsigned)n_head, (unsigned)splits);
#define LAUNCH(PL)                                                                                            \
    k_attention<PL><<<grid, 32 * ATT_WARPS, 0, c->stream>>>(                                                  \
        *a, (const float *)a->q, (float *)a->out, (const float *)a->k_cache, (const float *)a->v_cache,       \
        (const float *)a->ex_k, (const float *)a->ex_v, (const int32_t *)a->slot_seq,                         \
        (const uint8_t *)a->slot_valid, (const int32_t *)a->q_seq, (const int32_t *)a->q_begin,               \
        (const int32_t *)a->q_end, n_head, n_head_kv, head_dim, part)
    if (head_dim <= 64)
        LAUNCH(2);
    else if (head_dim <= 128)
        LAUNCH(4);
    else
        LAUNCH(8);
#undef LAUNCH
    if (splits > 1)
        k_attention_merge<<<a->n * n_head, ((head_dim + 31) / 32) * 32, 0, c->stream>>>(part, (float *)a->out, splits,
                                                                                          head_dim, a->bf16);
    cuda_ok(c, cudaGetLastError());
    return MSA_OK;
}
