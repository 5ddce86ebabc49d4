/* context.h — stage 2 and 3 over the model's forward pass (msa-reference.md §2.2-§2.4): a memory session
 * prefills a query at positions 3 + top_k + i; in every router layer it routes (scores all documents of the
 * bank with the query's routing tokens, picks the top-k per layer independently) and gives the attention the
 * context [template prefix ; all chunks of the selected documents (ascending index) ; query]; other layers
 * see [template ; query]. Decoding appends tokens (a multi-token block attends to itself bidirectionally) and
 * keeps the memory selected at prefill. Routing queries are router_q_proj(h_in) (no norm, no RoPE) or, for a
 * checkpoint without router projectors (decouple_router false), the attention's own q after q_norm and RoPE
 * (msa-reference.md §2.2; via the forward pass's q hook).
 * The same routing runs in read mode (identity router: pre-RoPE q_norm(q_proj(h)) against the bank's pre-RoPE
 * keys) without any memory in the attention. */
#ifndef MSA_MEMORY_CONTEXT_H
#define MSA_MEMORY_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "memory/route.h"
#include "model/model.h"
#include "msa.h"

typedef struct msa_memctx msa_memctx;

typedef struct msa_memctx_params {
    int top_k;               /* documents per router layer (>= 1) */
    bool attend_memory;      /* native: selected chunks + template enter the attention */
    int n_ctx;               /* session capacity in tokens */
    msa_sampler_params sampler;
} msa_memctx_params;

/* The routing of one layer in the last prefill. */
typedef struct msa_memctx_layer {
    int layer;
    size_t n;                /* chosen documents */
    uint32_t *index;         /* [top_k] best first */
    float *score;            /* [top_k] */
    float *all_scores;       /* [n_index] every document's score (-inf: none), for read-mode fusion */
} msa_memctx_layer;

/* On success *out is owned by the caller (msa_memctx_free); model and bank must outlive it. */
msa_status msa_memctx_new(msa_model *model, msa_bank *bank, const msa_memctx_params *p, msa_memctx **out);
void msa_memctx_free(msa_memctx *c);

/* Forget everything, route with roles (0 = routing token) and run ids at positions pos0 + i; with sample,
 * *next receives the sampled next token. run_all_layers false stops after the last router layer (read-mode
 * routing only). */
msa_status msa_memctx_prefill(msa_memctx *c, const int32_t *ids, const int8_t *roles, int n, int pos0,
                              bool run_all_layers, int32_t *next);
/* Append n tokens (n > 1: one bidirectional block) at the next positions; sample the next token. */
msa_status msa_memctx_feed(msa_memctx *c, const int32_t *ids, int n, int32_t *next);

/* Routing of the last prefill: *layers has one entry per router layer. Owned by c (valid until the next
 * prefill). n_index = the length of all_scores arrays. */
void msa_memctx_routing(const msa_memctx *c, const msa_memctx_layer **layers, int *n_layers, uint64_t *n_index);

/* The logits [n_vocab] of the last prefill or feed (owned by c). */
const float *msa_memctx_logits(const msa_memctx *c);

#endif
