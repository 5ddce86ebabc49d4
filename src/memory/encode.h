/* encode.h — stage 1, memory encoding (msa-reference.md §2.1, §3.1): documents rendered as
 * "<|im_start|>[i]. {text}[i]<|im_end|>" run through the model as independent causal sequences with positions
 * from 0 (document-wise RoPE; many documents per forward batch, each its own sequence id), and in every router
 * layer the chunk means (P tokens per chunk, a partial tail averaged over its true length) of:
 *   native mode: K̄ (post k_norm, post RoPE), V̄, and K̄_R = router_k_proj(h_in) (no norm, no RoPE;
 *                L2-normalised after pooling iff aux_loss_method == "INFONCE"); without router projectors
 *                (decouple_router false) K̄_R = K̄ itself, L2-normalised after pooling iff "INFONCE";
 *   read mode:   K̄_R = the model's own pre-RoPE keys k_norm(k_proj(h_in)) (the identity router).
 * Plus the template prefix K/V of every layer ("<|im_start|>user\n" at positions 0..2, native mode).
 * Chunk sums are accumulated in double and the means kept in f32 until the bank converts them. */
#ifndef MSA_MEMORY_ENCODE_H
#define MSA_MEMORY_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "msa.h"

typedef struct msa_encoder msa_encoder;

/* One encoded document. */
typedef struct msa_encoded_doc {
    uint64_t n_tokens;
    uint32_t n_chunks;       /* ceil(n_tokens / P) */
    float **route;           /* [n_router] -> [n_chunks][route_dim]   (route_dim = n_head_kv*head_dim) */
    float **k, **v;          /* [n_router] -> [n_chunks][n_head_kv][head_dim]; NULL in read mode */
} msa_encoded_doc;

/* An encoder for bank shape `shape` over `model` (the model must outlive it). batch_tokens: tokens per
 * forward batch (0 = 2048; a longer single document gets a batch of its own). On success *out is owned by
 * the caller (msa_encoder_free). */
msa_status msa_encoder_new(msa_model *model, const msa_bank_shape *shape, int batch_tokens, msa_encoder **out);
void msa_encoder_free(msa_encoder *e);

/* Encode n_docs token sequences (each 1..model context tokens), packing as many per batch as fit.
 * out[i] is filled (release each with msa_encoded_doc_free). */
msa_status msa_encoder_run(msa_encoder *e, const int32_t *const *tokens, const size_t *n_tokens, size_t n_docs,
                           msa_encoded_doc *out);
void msa_encoded_doc_free(msa_encoded_doc *d);

/* The template prefix K/V of every layer: *k, *v malloc'd [n_layer][n_head_kv][n_template][head_dim]. */
msa_status msa_encoder_template(msa_encoder *e, float **k, float **v);

/* The tokens of a document as stage 1 sees it: "<|im_start|>" + "[index]. {text}[index]" (plain text: the
 * document can never produce special tokens) + "<|im_end|>". *ids malloc'd (caller frees). */
msa_status msa_render_doc(const msa_model *model, uint32_t index, const char *text, size_t len, int32_t **ids,
                          size_t *n);

/* text with every invalid UTF-8 sequence replaced by U+FFFD: *out malloc'd, NUL-terminated, *out_len bytes.
 * Returns the number of replacements. */
size_t msa_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len);

#endif
