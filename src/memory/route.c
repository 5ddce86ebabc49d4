/* route.c — routing scores, reductions and top-k (see route.h for the formulas and the tie rule). */
#include "memory/route.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "memory/route_scan.h"
#include "util/error.h"
#include "util/fault_guard.h"

void msa_l2_normalize_rows(float *x, size_t n, int dim) {
    for (size_t r = 0; r < n; r++) {
        float *v = x + r * (size_t)dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)v[i] * v[i];
        /* A zero vector stays zero (torch's F.normalize clamps the norm the same way). */
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int i = 0; i < dim; i++) v[i] *= inv;
    }
}

msa_status msa_route_query_prepare(const msa_route_params *p, const float *qr, const uint8_t *route_mask,
                                   int n_tok, msa_route_query *out) {
    memset(out, 0, sizeof *out);
    const int hd = p->head_dim, nh = p->n_head, nkv = p->n_head_kv;
    if (nh <= 0 || nkv <= 0 || hd <= 0 || nh % nkv)
        return msa_fail(MSA_ERR_INVALID_ARG, "routing: bad head shape %d/%d x %d", nh, nkv, hd);
    int n_route = 0, last = -1;
    for (int t = 0; t < n_tok; t++)
        if (route_mask[t]) n_route++, last = t;
    if (n_route == 0) return msa_fail(MSA_ERR_INVALID_ARG, "routing: the query has no routing tokens");
    const int rows = p->query_reduce == MSA_REDUCE_LAST ? 1 : n_route;
    const bool fold = p->head_reduce == MSA_REDUCE_MEAN;
    const int dim = fold ? nkv * hd : nh * hd;
    /* 64-byte aligned rows (dim is a multiple of 16 for every real shape): the scan loads them whole */
    size_t qbytes = ((size_t)rows * dim * sizeof(float) + 63) & ~(size_t)63;
    float *q = aligned_alloc(64, qbytes);
    if (q) memset(q, 0, qbytes);
    float *tmp = malloc((size_t)nh * hd * sizeof *tmp);
    if (!q || !tmp) {
        free(q), free(tmp);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for %d query rows", rows);
    }
    const int g = nh / nkv;
    int r = 0;
    for (int t = 0; t < n_tok && r < rows; t++) {
        if (!route_mask[t] || (p->query_reduce == MSA_REDUCE_LAST && t != last)) continue;
        memcpy(tmp, qr + (size_t)t * nh * hd, (size_t)nh * hd * sizeof *tmp);
        if (p->cosine) {
            msa_l2_normalize_rows(tmp, (size_t)nh, hd);
        } else {
            const float s = 1.0f / sqrtf((float)hd);
            for (int i = 0; i < nh * hd; i++) tmp[i] *= s;
        }
        float *row = q + (size_t)r * dim;
        if (fold) { /* mean over heads of <q'_h, k_{h/g}> = < sum_{h in group} q'_h / nh , k > */
            const float fnh = (float)nh, inv = 1.0f / fnh;
            const bool pow2 = (nh & (nh - 1)) == 0; /* then x * (1/nh) == x / nh exactly, and much cheaper */
            for (int h = 0; h < nh; h++) {
                float *restrict dst = row + (size_t)(h / g) * hd;
                const float *restrict src = tmp + (size_t)h * hd;
                if (pow2)
                    for (int i = 0; i < hd; i++) dst[i] += src[i] * inv;
                else
                    for (int i = 0; i < hd; i++) dst[i] += src[i] / fnh;
            }
        } else {
            memcpy(row, tmp, (size_t)nh * hd * sizeof *tmp);
        }
        r++;
    }
    free(tmp);
    out->n = rows;
    out->dim = dim;
    out->q = q;
    return MSA_OK;
}

void msa_route_query_free(msa_route_query *q) {
    if (!q) return;
    free(q->q);
    q->q = NULL;
    q->n = 0;
}

/* The scan: chunks are handed out in blocks from a shared counter (a thread slowed by another process does
 * not hold the others back); each block's bf16 keys are widened once into an f32 buffer that stays in L1/L2
 * while every query row is multiplied against it (route_scan.c). Every chunk's score is computed the same way
 * whichever thread takes it, so results do not depend on the thread count. */
enum { SCAN_BLOCK = 24 }; /* chunks per block (4 kernel tiles of 6): 24 x 1024 f32 = 96 KiB of widened keys */
enum { DIRECT_ROWS = 4 };  /* up to this many query rows (one AVX-512 token tile) bf16 keys are read directly */

typedef struct score_job {
    const msa_route_params *p;
    const msa_route_query *q;
    const void *keys;
    msa_route_dtype dtype;
    uint64_t n_chunks;
    float *out;            /* S[c] [n_chunks], or NULL when per_token is set */
    float *per_token;      /* if set: y[c][t] into [n_chunks][q->n] instead of reducing */
    float **scratch;       /* per thread: SCAN_BLOCK x (kdim + 2 q->n) floats */
    atomic_uint_fast64_t next_block;
    atomic_bool faulted;   /* a worker's read of the keys raised SIGBUS (fault_guard.h) */
} score_job;

/* Prefetch part i of n of the next block's keys into L2 while this block computes: the block loop is
 * compute-bound with many query rows, so the DRAM stream of the keys must overlap it (the hardware
 * prefetcher alone runs only a little ahead of the widening). */
static void prefetch_part(const char *next, size_t bytes, int i, int n) {
    if (!next) return;
    size_t a = bytes * (size_t)i / (size_t)n, b = bytes * (size_t)(i + 1) / (size_t)n;
    for (size_t o = a & ~(size_t)63; o < b; o += 64) __builtin_prefetch(next + o, 0, 2);
}

/* y[c][t] (head-reduced scores) of chunks c0 .. c0+nc into y [nc][q->n]; next/next_bytes: the keys of the
 * block this thread scans after this one (NULL at the end). */
static void block_scores(const score_job *j, uint64_t c0, int nc, float *kf, float *y, float *x, const char *next,
                         size_t next_bytes) {
    const msa_route_params *p = j->p;
    const msa_route_query *q = j->q;
    const int kdim = p->n_head_kv * p->head_dim, hd = p->head_dim, g = p->n_head / p->n_head_kv;
    const size_t n = (size_t)q->n;
    const bool fold = p->head_reduce == MSA_REDUCE_MEAN;
    if (j->dtype == MSA_ROUTE_BF16 && fold && q->n <= DIRECT_ROWS) {
        /* few query rows: each key is used at most DIRECT_ROWS times, so read the bf16 keys directly */
        const uint16_t *kb = (const uint16_t *)j->keys + c0 * (uint64_t)kdim;
        if (msa_route_dots_bf16(kb, (size_t)kdim, nc, q->q, (size_t)q->dim, q->n, kdim, y, n)) {
            prefetch_part(next, next_bytes, 0, 1);
            return;
        }
    }
    const float *k;
    if (j->dtype == MSA_ROUTE_F32) {
        k = (const float *)j->keys + c0 * (uint64_t)kdim;
    } else {
        msa_route_widen_bf16((const uint16_t *)j->keys + c0 * (uint64_t)kdim, (size_t)nc * kdim, kf);
        k = kf;
    }
    if (fold) { /* heads folded into one row per token (msa_route_query_prepare) */
        /* in pieces of the AVX-512 kernel's tile (6 chunks x 4 rows), so that the prefetch of the next block is
         * spread evenly over this one (a burst of hundreds of prefetches stalls on the fill buffers) */
        enum { GROUP = 6, ROWS = 4 };
        const int n_groups = (nc + GROUP - 1) / GROUP, n_rt = (q->n + ROWS - 1) / ROWS;
        for (int gi = 0; gi < n_groups; gi++) {
            int c = gi * GROUP, m = nc - c < GROUP ? nc - c : GROUP;
            for (int ri = 0; ri < n_rt; ri++) {
                prefetch_part(next, next_bytes, gi * n_rt + ri, n_groups * n_rt);
                int t = ri * ROWS, r = q->n - t < ROWS ? q->n - t : ROWS;
                msa_route_dots(k + (size_t)c * kdim, (size_t)kdim, m, q->q + (size_t)t * q->dim, (size_t)q->dim, r,
                               kdim, y + (size_t)c * n + (size_t)t, n);
            }
        }
        return;
    }
    for (int h = 0; h < p->n_head; h++) {
        prefetch_part(next, next_bytes, h, p->n_head);
        msa_route_dots(k + (size_t)(h / g) * hd, (size_t)kdim, nc, q->q + (size_t)h * hd, (size_t)q->dim, q->n, hd,
                       h ? x : y, n);
        if (h)
            for (size_t i = 0; i < (size_t)nc * n; i++)
                if (x[i] > y[i]) y[i] = x[i];
    }
}

typedef struct score_task {
    score_job *j;
    int ith;
} score_task;

static void score_blocks(void *arg) {
    score_job *j = ((score_task *)arg)->j;
    const int ith = ((score_task *)arg)->ith;
    const size_t kdim = (size_t)j->p->n_head_kv * j->p->head_dim, n = (size_t)j->q->n;
    const size_t esize = j->dtype == MSA_ROUTE_F32 ? 4 : 2;
    float *kf = j->scratch[ith], *y = kf + SCAN_BLOCK * kdim, *x = y + SCAN_BLOCK * n;
    /* blocks are claimed one ahead so that the next one can be prefetched */
    uint64_t c0 = atomic_fetch_add(&j->next_block, 1) * SCAN_BLOCK;
    while (c0 < j->n_chunks) {
        uint64_t c1 = atomic_fetch_add(&j->next_block, 1) * SCAN_BLOCK;
        int nc = j->n_chunks - c0 < SCAN_BLOCK ? (int)(j->n_chunks - c0) : SCAN_BLOCK;
        const char *next = NULL;
        size_t next_bytes = 0;
        if (c1 < j->n_chunks) {
            next = (const char *)j->keys + c1 * kdim * esize;
            next_bytes = (size_t)(j->n_chunks - c1 < SCAN_BLOCK ? j->n_chunks - c1 : SCAN_BLOCK) * kdim * esize;
        }
        float *yb = j->per_token ? j->per_token + c0 * n : y;
        block_scores(j, c0, nc, kf, yb, x, next, next_bytes);
        if (!j->per_token)
            for (int c = 0; c < nc; c++) {
                const float *yc = yb + (size_t)c * n;
                double acc = 0;
                float best = -INFINITY;
                for (size_t t = 0; t < n; t++) {
                    if (yc[t] > best) best = yc[t];
                    acc += yc[t];
                }
                j->out[c0 + (uint64_t)c] = j->p->query_reduce == MSA_REDUCE_MEAN ? (float)(acc / (double)n) : best;
            }
        c0 = c1;
    }
}

/* The keys are read through the bank's mapping: a SIGBUS there abandons this worker's blocks and fails the
 * scan (the blocks touch no allocation or lock). */
static void score_worker(void *ctx, int ith, int nth) {
    (void)nth;
    score_task t = {ctx, ith};
    if (!fault_guard_run(score_blocks, &t)) atomic_store(&((score_job *)ctx)->faulted, true);
}

/* Scores of j->n_chunks chunks, on the pool's threads (inline for small inputs). */
static msa_status run_scores(score_job *j, msa_threadpool *tp) {
    int nth = j->n_chunks < 256 || !tp ? 1 : msa_threadpool_size(tp);
    const size_t kdim = (size_t)j->p->n_head_kv * j->p->head_dim;
    const size_t per = (SCAN_BLOCK * (kdim + 2 * (size_t)j->q->n) + 15) & ~(size_t)15; /* 64-byte multiples */
    float *buf = aligned_alloc(64, (size_t)nth * per * sizeof *buf);
    float **scratch = malloc((size_t)nth * sizeof *scratch);
    if (!buf || !scratch) {
        free(buf), free(scratch);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for the scan buffers");
    }
    for (int i = 0; i < nth; i++) scratch[i] = buf + (size_t)i * per;
    j->scratch = scratch;
    atomic_init(&j->next_block, 0);
    atomic_init(&j->faulted, false);
    if (nth == 1)
        score_worker(j, 0, 1);
    else
        msa_threadpool_run(tp, score_worker, j);
    free(buf), free(scratch);
    return atomic_load(&j->faulted) ? msa_fail(MSA_ERR_IO, "routing: I/O error reading the bank's keys (SIGBUS)")
                                    : MSA_OK;
}

/* Standardized routing (p->standardize): two passes over the keys, the first for each token's mean and
 * standard deviation over all chunks, the second for the reductions of the z-scores. */
static msa_status standardized_scores(const msa_route_params *p, const msa_route_query *q, const msa_route_span *spans,
                                      size_t n_spans, msa_route_dtype dtype, uint64_t n_index, float *doc_scores,
                                      msa_threadpool *tp) {
    const uint64_t block = 4096;
    const size_t kdim = (size_t)p->n_head_kv * p->head_dim, esize = dtype == MSA_ROUTE_F32 ? 4 : 2;
    float *y = malloc(block * (size_t)q->n * sizeof *y);
    double *sum = calloc((size_t)q->n * 2, sizeof *sum), *sq = sum ? sum + q->n : NULL;
    double *dsum = NULL;
    uint32_t *dcnt = NULL;
    if (p->chunk_reduce == MSA_REDUCE_MEAN) {
        dsum = calloc(n_index ? n_index : 1, sizeof *dsum);
        dcnt = calloc(n_index ? n_index : 1, sizeof *dcnt);
    }
    if (!y || !sum || (p->chunk_reduce == MSA_REDUCE_MEAN && (!dsum || !dcnt))) {
        free(y), free(sum), free(dsum), free(dcnt);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory");
    }
    uint64_t total = 0;
    msa_status st = MSA_OK;
    for (int pass = 0; pass < 2 && !st; pass++) {
        for (size_t si = 0; si < n_spans && !st; si++) {
            const msa_route_span *sp = &spans[si];
            for (uint64_t c0 = 0; c0 < sp->n_chunks && !st; c0 += block) {
                uint64_t n = sp->n_chunks - c0 < block ? sp->n_chunks - c0 : block;
                score_job j = {.p = p, .q = q, .keys = (const char *)sp->keys + c0 * kdim * esize, .dtype = dtype,
                               .n_chunks = n, .per_token = y};
                st = run_scores(&j, tp);
                if (st) break;
                for (uint64_t c = 0; c < n; c++) {
                    const float *yc = y + c * (uint64_t)q->n;
                    if (pass == 0) {
                        for (int t = 0; t < q->n; t++) sum[t] += yc[t], sq[t] += (double)yc[t] * yc[t];
                        total++;
                        continue;
                    }
                    uint32_t d = sp->doc_index[c0 + c];
                    if (d >= n_index) {
                        st = msa_fail(MSA_ERR_BAD_DATA, "routing: chunk of document %u beyond the bank's %llu", d,
                                      (unsigned long long)n_index);
                        break;
                    }
                    double best = -INFINITY, acc = 0;
                    for (int t = 0; t < q->n; t++) {
                        double z = (yc[t] - sum[t]) / sq[t];
                        if (z > best) best = z;
                        acc += z;
                    }
                    float S = (float)(p->query_reduce == MSA_REDUCE_MEAN ? acc / q->n : best);
                    if (dsum) dsum[d] += S, dcnt[d]++;
                    else if (S > doc_scores[d]) doc_scores[d] = S;
                }
            }
        }
        if (pass == 0) /* sum -> mean, sq -> standard deviation */
            for (int t = 0; t < q->n; t++) {
                double m = total ? sum[t] / (double)total : 0, v = total ? sq[t] / (double)total - m * m : 0;
                sum[t] = m;
                sq[t] = v > 1e-20 ? sqrt(v) : 1;
            }
    }
    if (dsum && !st)
        for (uint64_t d = 0; d < n_index; d++)
            if (dcnt[d]) doc_scores[d] = (float)(dsum[d] / dcnt[d]);
    free(y), free(sum), free(dsum), free(dcnt);
    return st;
}

msa_status msa_route_score_chunks(const msa_route_params *p, const msa_route_query *q, const void *keys,
                                  msa_route_dtype dtype, uint64_t n_chunks, float *out, msa_threadpool *tp) {
    score_job j = {.p = p, .q = q, .keys = keys, .dtype = dtype, .n_chunks = n_chunks, .out = out};
    return run_scores(&j, tp);
}

msa_status msa_route_doc_scores(const msa_route_params *p, const msa_route_query *q, const msa_route_span *spans,
                                size_t n_spans, msa_route_dtype dtype, uint64_t n_index, float *doc_scores,
                                msa_threadpool *tp) {
    for (uint64_t i = 0; i < n_index; i++) doc_scores[i] = -INFINITY;
    if (p->standardize) return standardized_scores(p, q, spans, n_spans, dtype, n_index, doc_scores, tp);
    const bool mean = p->chunk_reduce == MSA_REDUCE_MEAN;
    double *sum = NULL;
    uint32_t *cnt = NULL;
    if (mean) {
        sum = calloc(n_index ? n_index : 1, sizeof *sum);
        cnt = calloc(n_index ? n_index : 1, sizeof *cnt);
        if (!sum || !cnt) {
            free(sum), free(cnt);
            return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for %llu document scores",
                            (unsigned long long)n_index);
        }
    }
    const uint64_t block = 1 << 16;
    float *s = malloc(block * sizeof *s);
    if (!s) {
        free(sum), free(cnt);
        return msa_fail(MSA_ERR_NOMEM, "routing: out of memory for chunk scores");
    }
    msa_status st = MSA_OK;
    const size_t kdim = (size_t)p->n_head_kv * p->head_dim;
    const size_t esize = dtype == MSA_ROUTE_F32 ? 4 : 2;
    for (size_t si = 0; si < n_spans && st == MSA_OK; si++) {
        const msa_route_span *sp = &spans[si];
        for (uint64_t c0 = 0; c0 < sp->n_chunks && st == MSA_OK; c0 += block) {
            uint64_t n = sp->n_chunks - c0 < block ? sp->n_chunks - c0 : block;
            st = msa_route_score_chunks(p, q, (const char *)sp->keys + c0 * kdim * esize, dtype, n, s, tp);
            if (st) break;
            for (uint64_t c = 0; c < n; c++) {
                uint32_t d = sp->doc_index[c0 + c];
                if (d >= n_index) {
                    st = msa_fail(MSA_ERR_BAD_DATA, "routing: chunk of document %u beyond the bank's %llu",
                                  d, (unsigned long long)n_index);
                    break;
                }
                if (mean) {
                    sum[d] += s[c];
                    cnt[d]++;
                } else if (s[c] > doc_scores[d]) {
                    doc_scores[d] = s[c];
                }
            }
        }
    }
    if (mean && st == MSA_OK)
        for (uint64_t d = 0; d < n_index; d++)
            if (cnt[d]) doc_scores[d] = (float)(sum[d] / cnt[d]);
    free(s), free(sum), free(cnt);
    return st;
}

/* a ranks before b */
static bool better(float sa, uint32_t ia, float sb, uint32_t ib) { return sa > sb || (sa == sb && ia < ib); }

size_t msa_route_topk(const float *scores, size_t n, size_t k, uint32_t *idx, float *out_scores) {
    /* Insertion into a sorted list of at most k: O(n k) worst case, O(n) typical for k = 16. */
    size_t m = 0;
    for (size_t i = 0; i < n && k; i++) {
        float s = scores[i];
        if (!isfinite(s)) continue;
        if (m == k && !better(s, (uint32_t)i, out_scores[m - 1], idx[m - 1])) continue;
        size_t pos = m < k ? m : k - 1;
        while (pos > 0 && better(s, (uint32_t)i, out_scores[pos - 1], idx[pos - 1])) {
            out_scores[pos] = out_scores[pos - 1];
            idx[pos] = idx[pos - 1];
            pos--;
        }
        out_scores[pos] = s;
        idx[pos] = (uint32_t)i;
        if (m < k) m++;
    }
    return m;
}
