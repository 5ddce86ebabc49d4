/* route.h — MSA routing as pure math on arrays (msa-reference.md §2.3): score every chunk's routing key
 * against the query's routing vectors, reduce over heads, query tokens and a document's chunks, and pick the
 * top-k documents of one router layer. Used by native mode (router_q_proj / router_k_proj) and read mode
 * (the identity router: the model's own pre-RoPE q and k).
 *
 * Score of chunk c for routing token t (per query head h, kv-head h/g with g = n_head/n_head_kv):
 *   x[t,h,c] = < q'[t,h] , K̄R[c, h/g] >     q' = q/|q| (cosine) or q/sqrt(head_dim) (scaled dot)
 *   y[t,c]   = mean_h x  |  max_h x          (head_reduce)
 *   S[c]     = max_t y   |  mean_t y  |  y[last routing token]   (query_reduce)
 *   s_d      = max_{c in d} S[c]  |  mean_{c in d} S[c]          (chunk_reduce)
 * With head_reduce mean the heads of a kv group are folded into one vector first (sum of q'/n_head), so a
 * chunk costs one n_head_kv*head_dim inner product per token: the same number up to f32 rounding.
 * All arithmetic is f32 (the reference rounds scores to bf16; msa-deviations.md). Every inner product is summed
 * in one fixed order (route_scan.h) by the scalar, AVX2 and AVX-512 paths alike, so scores and top-k sets are
 * bit-identical whatever the ISA or the thread count.
 *
 * Cost: per router layer and query, n_rows x n_chunks inner products of n_head_kv*head_dim (head mean) or
 * n_head x head_dim (head max) elements; the keys (bf16 in the bank) are read once, widened to f32 in blocks
 * that stay in cache while every query row is multiplied against them (route.c, route_scan.c).
 *
 * Tie rule of top-k (documented, deterministic): higher score first; equal scores by lower stable document
 * index. Documents without chunks in the bank (deleted, never added) have score -inf and are never chosen. */
#ifndef MSA_MEMORY_ROUTE_H
#define MSA_MEMORY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/hparams.h"
#include "msa.h"
#include "util/threadpool.h"

typedef struct msa_route_params {
    int n_head, n_head_kv, head_dim;
    msa_reduce head_reduce;   /* MEAN | MAX */
    msa_reduce query_reduce;  /* MAX | MEAN | LAST */
    msa_reduce chunk_reduce;  /* MAX | MEAN */
    bool cosine;              /* unit-normalise query head vectors (keys were normalised after pooling) */
    bool standardize;         /* read mode: per routing token, z-score y[t,c] over all chunks of the bank
                               * before the query reduction, so that the token with the most distinctive
                               * match decides (not the one with the largest raw logits) */
} msa_route_params;

/* Element type of stored routing keys (the bank's dtype). */
typedef enum { MSA_ROUTE_F32 = 0, MSA_ROUTE_BF16 = 1 } msa_route_dtype;

/* A run of chunks with contiguous routing keys (mirrors msa_route_span): keys [n_chunks][n_head_kv*head_dim],
 * doc_index[c] the stable index of chunk c's document. */
typedef struct msa_route_span {
    const void *keys;
    const uint32_t *doc_index;
    uint64_t n_chunks;
} msa_route_span;

/* Routing vectors of one query at one router layer, ready for scoring. */
typedef struct msa_route_query {
    int n;        /* rows: routing tokens (1 for query_reduce LAST) */
    int dim;      /* row length: n_head_kv*head_dim (head mean) or n_head*head_dim (head max) */
    float *q;     /* [n][dim], owned */
} msa_route_query;

/* From the raw router queries qr [n_tok][n_head*head_dim] (router_q_proj(h), no norm, no RoPE) and
 * route_mask [n_tok] (1 = a routing token, role 0). MSA_ERR_INVALID_ARG when no token routes.
 * On success out->q is malloc'd; release with msa_route_query_free. */
msa_status msa_route_query_prepare(const msa_route_params *p, const float *qr, const uint8_t *route_mask,
                                   int n_tok, msa_route_query *out);
void msa_route_query_free(msa_route_query *q);

/* S[c] for n_chunks routing keys keys [n_chunks][n_head_kv*head_dim] of dtype into
 * out [n_chunks]. Parallel over tp (may be NULL); the result does not depend on the thread count or the ISA
 * (route_scan.h). MSA_ERR_NOMEM when the scan buffers cannot be allocated. */
msa_status msa_route_score_chunks(const msa_route_params *p, const msa_route_query *q, const void *keys,
                                  msa_route_dtype dtype, uint64_t n_chunks, float *out, msa_threadpool *tp);

/* Document scores of one router slot over all its spans: doc_scores[i] for stable index i < n_index
 * (-inf where the document has no chunk in the spans). Spans' doc_index values >= n_index are
 * MSA_ERR_BAD_DATA. */
msa_status msa_route_doc_scores(const msa_route_params *p, const msa_route_query *q, const msa_route_span *spans,
                                size_t n_spans, msa_route_dtype dtype, uint64_t n_index, float *doc_scores,
                                msa_threadpool *tp);

/* The k best of scores[0..n) by the tie rule above (finite scores only), best first, into idx/out_scores
 * (each room for k). Returns how many were chosen (<= k). */
size_t msa_route_topk(const float *scores, size_t n, size_t k, uint32_t *idx, float *out_scores);

/* Scaled copy helpers shared with encoding: unit-normalise each of n rows of length dim in place. */
void msa_l2_normalize_rows(float *x, size_t n, int dim);

#endif
