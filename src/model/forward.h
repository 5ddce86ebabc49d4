/* forward.h — the transformer forward pass over a session's KV cache, with the controls the MSA memory
 * module needs (msa-reference.md §2, §9). The public msa_session_eval is the plain special case.
 *
 * Model of a call (msa_fwd_eval): a batch of n tokens is appended to the session's cache at slots
 * n_cached .. n_cached+n-1 and run through layers [0, n_layers). Each token carries
 *   pos    its RoPE position (document-wise RoPE: every document from 0; MSA queries from 3+top_k);
 *   seq    a sequence id: a token attends only to cached tokens of the same seq (many independent documents
 *          in one batch = stage-1 encoding; matmuls run over all tokens together);
 *   block  a block id (batch-relative, non-decreasing, block[i] <= i): a key is visible to a query iff
 *          the key is valid, has the query's seq and key.block <= query.block. Blocks of earlier calls are
 *          always below. Causal = one block per token (block[i] = i, the default); a multi-token block that
 *          attends to itself bidirectionally (the reference's injected answer prompt, §2.4) = equal ids;
 *   valid  1 = normal; 0 = stored in the cache but never attended by any later query (the reference's
 *          mask-0 tokens). It still attends (and sees itself), its outputs are meaningless.
 * In addition every query sees, per layer, the session's extra K/V entries (msa_fwd_set_extra_kv): the
 * MSA template prefix (all layers) and selected memory chunks (router layers). They precede the cache in
 * the softmax, are seen by every seq, and persist until replaced or cleared (prefill and later decoding).
 *
 * Numerics: activations f32; RMSNorm statistics in f32; softmax in f32 with scale 1/sqrt(head_dim).
 * For bf16 checkpoints (model->bf16_acts) activations are rounded to bf16 at the points where transformers
 * rounds them (norm output, each projection output, RoPE products, attention output, SiLU, gate*up,
 * residual adds; msa-reference.md §1.1), so that hidden states match the authors' numerics; cached K/V are
 * then bf16-exact values. The cache stores f32. */
#ifndef MSA_MODEL_FORWARD_H
#define MSA_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "msa.h"

/* Per-layer observation points. Called on the calling thread, in layer order, with rows in batch order.
 * A hook returning non-OK aborts the call with that status (the cache then holds the batch's slots but the
 * session counts are rolled back, so the batch can be retried after msa_fwd_truncate). */
typedef struct msa_fwd_hooks {
    void *user;
    /* After input_layernorm of layer `layer`: xn [n_tokens x n_embd], the input of q/k/v_proj and of the MSA
     * router projectors (router_q_proj / router_k_proj, see model.h). NULL = not called. */
    msa_status (*attn_input)(void *user, int layer, const float *xn, int n_tokens);
    /* After q_norm/k_norm and RoPE: k and v [n_tokens x n_head_kv*head_dim] (kv-head major within a row),
     * exactly what is stored in the cache (chunk pooling, template-prefix capture). NULL = not called. */
    msa_status (*kv)(void *user, int layer, const float *k, const float *v, int n_tokens);
    /* After q_norm and RoPE, just before kv: q [n_tokens x n_head*head_dim], the attention's own queries
     * (MSA routing without router projectors, decouple_router = false). NULL = not called. */
    msa_status (*q)(void *user, int layer, const float *q, int n_tokens);
    /* A projection of the same normed input as attn_input, computed by the backend where the activations are
     * (router_q_proj: no copy of xn to the host, no host matmul): attn_proj names the tensor for a layer
     * (NULL = none there), attn_input_proj receives y = W xn [n_tokens x W rows]. Either NULL = not used. */
    const msa_tensor *(*attn_proj)(void *user, int layer);
    msa_status (*attn_input_proj)(void *user, int layer, const float *y, int n_tokens);
} msa_fwd_hooks;

/* Stage-1 chunk pooling done where the activations are (the GPU when the model is there): for each layer l
 * with an output, the means over each chunk's rows of the cached K (post-norm, post-RoPE) and V, and of
 * proj[l] applied to the layer's normed input (router_k_proj). Chunks are batch-row ranges; outputs are
 * host arrays [n_chunks][n_head_kv*head_dim] f32, written before msa_fwd_eval returns. The sums run in
 * double in row order (backend.h pool), the same on every backend. */
typedef struct msa_fwd_pool {
    int n_chunks;
    const int32_t *chunk_row0, *chunk_len; /* [n_chunks] */
    float *const *k, *const *v;            /* [n_layer] -> output, or NULL for a layer not pooled */
    float *const *r;                       /* [n_layer] -> output of the projection, or NULL */
    const msa_tensor *const *proj;         /* [n_layer] the projection of each layer with an r output */
} msa_fwd_pool;

typedef struct msa_fwd_batch {
    int n_tokens;
    const int32_t *ids;      /* [n_tokens] token ids */
    const int32_t *pos;      /* [n_tokens] RoPE positions; NULL = the session's next positions
                              * (msa_fwd_next_pos(), advancing by one per valid token) */
    const int32_t *seq;      /* [n_tokens] sequence ids >= 0; NULL = all 0 */
    const int32_t *block;    /* [n_tokens] block ids as described above; NULL = causal */
    const uint8_t *valid;    /* [n_tokens] 0/1; NULL = all valid */
    int n_layers;            /* run layers [0, n_layers); 0 = all. Fewer than all => no logits, no final
                              * norm (stage-1 encoding stops after the last router layer) */
    /* Logits: rows listed in logit_rows (batch indices) into logits [n_logit_rows x n_vocab]. */
    const int32_t *logit_rows;
    int n_logit_rows;        /* 0 = no lm_head at all (encode only) */
    float *logits;           /* may be NULL when argmax is given (greedy decoding keeps the logits on the
                              * backend's device) */
    int32_t *argmax;         /* optional [n_logit_rows]: the greedy token of each logit row (lowest id on
                              * ties), computed where the logits are */
    /* Optional: the final hidden state of every token (after the last run layer, before the final norm)
     * into hidden [n_tokens x n_embd]. */
    float *hidden;
    const msa_fwd_hooks *hooks; /* NULL = none */
    const msa_fwd_pool *pool;   /* NULL = none */
} msa_fwd_batch;

/* Debug/test taps: the residual stream after every layer (before the final norm) into
 * per_layer[l] [n_tokens x n_embd] (entries may be NULL); set to NULL to stop. Used by test_backbone to
 * compare with transformers' output_hidden_states. */
void msa_fwd_set_layer_taps(msa_session *s, float *const *per_layer);

/* Run a batch (see the file comment). Fails with MSA_ERR_LIMIT if the cache would overflow,
 * MSA_ERR_INVALID_ARG for out-of-range ids, seq < 0 or a malformed block array. */
msa_status msa_fwd_eval(msa_session *s, const msa_fwd_batch *b);

/* Replace layer `layer`'s extra K/V entries: k, v [n_head_kv][n][head_dim] f32 (copied; n = 0 clears).
 * Valid until replaced, msa_fwd_clear_extra_kv or msa_session_free (msa_session_reset keeps them). */
msa_status msa_fwd_set_extra_kv(msa_session *s, int layer, const float *k, const float *v, int n);
void msa_fwd_clear_extra_kv(msa_session *s);

/* Cache occupancy in slots (valid or not) and the position the next default-position token gets. */
int msa_fwd_n_cached(const msa_session *s);
int msa_fwd_next_pos(const msa_session *s);
void msa_fwd_set_next_pos(msa_session *s, int pos);
/* Drop cache slots >= n (e.g. to re-run a batch). */
void msa_fwd_truncate(msa_session *s, int n);
/* Capacity in slots. */
int msa_fwd_capacity(const msa_session *s);

const msa_model *msa_session_model(const msa_session *s);

#endif
