/* router_train.h — training read mode's router projections (router_train.c): the routing score exactly as read
 * mode computes it at inference (readmode.c, docs/msa-deviations.md "Read mode"), its InfoNCE loss over a batch
 * and the analytic gradients, on cached frozen hidden states.
 *
 * For one router layer with projections Wq, Wk [dout x din] (dout = n_head_kv*head_dim: the query side is the
 * head-mean fold of router_q_proj, which only scales each kv group's block), a query with routing-token rows
 * x_t and a document with pooled chunk rows y_c (the chunk means of the input-layernormed hidden states; the
 * projection is linear, so projecting the mean equals read mode's mean of the projections; the document's first
 * chunk, the shared <|im_start|> sink, already removed when it has more):
 *     s(q, d) = mean_t max_c cos(Wq x_t, Wk y_c)
 * Read mode centres each token's maxima over the documents before the mean: a per-query constant, which
 * InfoNCE's softmax over documents ignores, so it is left out here. Over several router layers the scores add.
 * Loss (msa-reference.md's auxiliary InfoNCE): for query i of a batch with document set D (the batch's positives,
 * the other queries' positives being negatives, same-subject facts in one batch being hard negatives),
 *     L = mean_i [ -z(i, pos_i) + log sum_{j in D} exp z(i, j) ],   z = sum_layers s / tau. */
#ifndef MSA_MEMORY_ROUTER_TRAIN_H
#define MSA_MEMORY_ROUTER_TRAIN_H

#include <stddef.h>

#include "msa.h"
#include "util/threadpool.h"

typedef struct msa_rt_seq { /* rows [n][din] of one layer's features */
    const float *x;
    int n;
} msa_rt_seq;

typedef struct msa_rt_batch {
    int n_layers, din, dout;
    int n_q, n_d;
    const msa_rt_seq *q;      /* [n_layers][n_q] */
    const msa_rt_seq *d;      /* [n_layers][n_d] */
    const int *pos;           /* [n_q] index of each query's positive document in d */
    float tau;
    int d_keys;               /* 1: d rows are already keys [n][dout] (a fixed Wk, the query-side router): Wk and gk
                               * are not used (may be NULL) */
} msa_rt_batch;

/* Loss of the batch under W (Wq[l], Wk[l]: [dout][din] row-major); with gq, gk non-NULL also the gradients
 * (overwritten, same layout). scores, if non-NULL, receives z*tau = the summed scores [n_q][n_d]. tp may be NULL. */
msa_status msa_rt_loss(const msa_rt_batch *b, float *const *Wq, float *const *Wk, float *loss, float *const *gq,
                       float *const *gk, float *scores, msa_threadpool *tp);

#endif
