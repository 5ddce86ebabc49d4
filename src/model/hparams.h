/* hparams.h — architecture hyper-parameters of a loaded model, from config.json (+msa_config) or GGUF
 * metadata, validated for internal consistency (head counts divide, dims positive and bounded). */
#ifndef MSA_MODEL_HPARAMS_H
#define MSA_MODEL_HPARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "msa.h"

#define MSA_MAX_LAYERS 256

typedef enum { MSA_ARCH_LLAMA, MSA_ARCH_QWEN3, MSA_ARCH_MSA } msa_arch;

/* RoPE pairing: NEOX = rotate-half, element i pairs with i+head_dim/2 (HF Qwen3/Llama, GGUF qwen3);
 * NORM = adjacent pairs (2i, 2i+1) (GGUF llama, whose converter permuted q/k rows to match). */
typedef enum { MSA_ROPE_NEOX, MSA_ROPE_NORM } msa_rope_style;

typedef enum { MSA_REDUCE_MEAN, MSA_REDUCE_MAX, MSA_REDUCE_LAST } msa_reduce;

/* The msa_config of an MSA checkpoint (msa-reference.md §1.2). */
typedef struct msa_msa_config {
    bool present;
    bool router_layer[MSA_MAX_LAYERS]; /* router_layer_idx: "all" or "18,19,..." */
    int n_router_layers;
    int pooling_kernel_size;           /* P, tokens per chunk (64 for MSA-4B) */
    int top_k_docs;                    /* doc_top_k, else top_k_docs, else 16 */
    bool decouple_router;              /* router_q_proj / router_k_proj exist */
    char aux_loss_method[48];          /* "INFONCE" (exact) => cosine; otherwise scaled dot (§2.3) */
    msa_reduce head_reduce;            /* mean | max */
    msa_reduce query_reduce;           /* max | mean | last */
    msa_reduce chunk_reduce;           /* max | mean */
    bool rewrite_position;
} msa_msa_config;

typedef struct msa_hparams {
    msa_arch arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_ctx_train;
    float rms_eps, rope_theta;
    msa_rope_style rope_style;
    bool qk_norm;          /* Qwen3: RMSNorm over each head's q and k before RoPE */
    bool tie_embeddings;
    int bos_id;            /* -1 none */
    int eos_ids[4];
    int n_eos;
    msa_msa_config msa;
} msa_hparams;

/* Parse a Hugging Face config.json (bytes, not NUL-terminated). Unknown architectures and rope_scaling
 * types are MSA_ERR_UNSUPPORTED; missing or inconsistent keys MSA_ERR_BAD_DATA, naming the key. */
msa_status msa_hfconfig_parse(const char *json, size_t len, msa_hparams *out);

/* Merge eos ids from generation_config.json (bytes) into hp (eos_token_id may be an int or a list). */
msa_status msa_genconfig_parse(const char *json, size_t len, msa_hparams *hp);

#endif
