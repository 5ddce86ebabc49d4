/* model.h — the internal view of a loaded model: hyper-parameters, the bound weight tensors of every layer
 * (HF or GGUF names mapped to one layout), the tokenizer and the compute thread pool. Used by forward.c and
 * by the memory module (router projectors of MSA checkpoints, msa_config in hp.msa).
 * Weights are views into the mmap'd files (stored dtype, never copied); only the small norm vectors are
 * copied to f32 at load so the forward never converts them per token. */
#ifndef MSA_MODEL_MODEL_H
#define MSA_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/gguf.h"
#include "io/weights.h"
#include "model/hparams.h"
#include "model/tensor.h"
#include "msa.h"
#include "util/threadpool.h"

/* Which chat template msa_chat_render applies. */
typedef enum {
    MSA_CHAT_CHATML,   /* <|im_start|>role\ncontent<|im_end|>\n ; optional default system message */
    MSA_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
} msa_chat_kind;

typedef struct msa_layer {
    const msa_tensor *wq;       /* [n_head*head_dim, n_embd]     q_proj / attn_q */
    const msa_tensor *wk;       /* [n_head_kv*head_dim, n_embd]  k_proj / attn_k */
    const msa_tensor *wv;       /* [n_head_kv*head_dim, n_embd]  v_proj / attn_v */
    const msa_tensor *wo;       /* [n_embd, n_head*head_dim]     o_proj / attn_output */
    const msa_tensor *w_gate;   /* [n_ff, n_embd] */
    const msa_tensor *w_up;     /* [n_ff, n_embd] */
    const msa_tensor *w_down;   /* [n_embd, n_ff] */
    /* MSA router projectors (msa-reference.md §1.3), only on router layers of a decouple_router checkpoint;
     * NULL elsewhere. Inputs: the post-input_layernorm hidden state (forward hook attn_input). */
    const msa_tensor *router_q; /* [n_head*head_dim, n_embd]    self_attn.router_q_proj.0.weight */
    const msa_tensor *router_k; /* [n_head_kv*head_dim, n_embd] self_attn.router_k_proj.0.weight */
    const msa_tensor *router_qr; /* [n_head_kv*head_dim, n_embd] a query-side read-mode router (router_file.c):
                                  * maps the question in place of k_proj; the bank keeps the identity keys */
    float *attn_norm;           /* [n_embd] f32 copy of input_layernorm / attn_norm */
    float *ffn_norm;            /* [n_embd] f32 copy of post_attention_layernorm / ffn_norm */
    float *q_norm;              /* [head_dim] f32, Qwen3 only, else NULL */
    float *k_norm;              /* [head_dim] f32, Qwen3 only, else NULL */
} msa_layer;

struct msa_model {
    msa_hparams hp;
    const char *arch_name;      /* "qwen3", "msa", "llama" */
    msa_gguf *gguf;             /* owner of the mapping of a GGUF model, else NULL */
    msa_weights *st;            /* owner of the safetensors mapping of an HF model, else NULL */
    msa_weights *router_st;     /* owner of a `--router FILE` mapping (memory/router_file.c), else NULL */
    bool router_query_only;     /* that file is a query-side router (router_qr only): banks stay identity banks */
    const msa_weights *weights; /* whichever of the two */
    msa_tokenizer *tok;
    bool add_bos;               /* prepend hp.bos_id to prompts (GGUF add_bos_token / HF post-processor) */
    const msa_tensor *tok_embd; /* [n_vocab, n_embd] */
    const msa_tensor *output;   /* [n_vocab, n_embd]; == tok_embd when tied */
    float *output_norm;         /* [n_embd] f32 */
    msa_layer *layers;          /* [n_layer] */
    /* Round activations to bf16 at the points where transformers does for a bf16 checkpoint
     * (msa-reference.md §1.1), so hidden states track the checkpoint's authors' numerics. */
    bool bf16_acts;
    /* GGUF models: attention with llama.cpp's CPU numerics (f16 K/V cache; for batches under 64 rows, f16 q and
     * an f16 online-softmax accumulator) so that greedy decoding follows llama.cpp, the GGUF's reference. */
    bool llamacpp_attn;
    msa_threadpool *tp;         /* compute threads (msa_model_params.n_threads) */
    struct msa_backend *be;     /* where the forward pass runs (backend.h; msa_model_params.device) */
    void *read_resident;        /* read mode's routing caches of one bank snapshot: keys on be, host key norms
                                 * (memory/route_resident.c); NULL until used */
    msa_chat_kind chat_kind;
    char *chat_default_system;  /* ChatML default system message when the first message is not "system" */
    const char *weight_dtype;
    uint64_t n_params, weight_bytes;
    uint8_t fingerprint[32];
};

/* The router projector tensors of layer l (NULL when l is not a router layer). */
static inline const msa_tensor *msa_model_router_q(const msa_model *m, int l) { return m->layers[l].router_q; }
static inline const msa_tensor *msa_model_router_k(const msa_model *m, int l) { return m->layers[l].router_k; }
static inline const msa_hparams *msa_model_hparams(const msa_model *m) { return &m->hp; }
static inline msa_threadpool *msa_model_threadpool(const msa_model *m) { return m->tp; }

#endif
