/* msa.h — the one public C API of msa, an engine for Memory Sparse Attention.
 *
 * Conventions
 * - Every type is opaque; create it with msa_*_new/_load/_open, release it with the matching *_free.
 * - Every fallible function returns an msa_status. On failure msa_last_error() gives a one-line message
 *   (thread-local, valid until the next failing call on this thread); msa_strerror() names the code.
 * - Parameters come in *_params structs; always start from *_default_params().
 * - Nothing in the library aborts or exits on user input (files, text, JSON, banks): bad input is a status.
 * - Token ids are int32_t; text is UTF-8 bytes with an explicit length (no NUL termination needed).
 * - Sections below are owned by modules: core, tokenizer, model, session, bank, memory (MSA).
 */
#ifndef MSA_H
#define MSA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------- core */

typedef enum msa_status {
    MSA_OK = 0,
    MSA_ERR_INVALID_ARG,  /* a caller passed an argument outside the documented domain (usage error) */
    MSA_ERR_NOT_FOUND,    /* a file, directory, tensor or document that must exist does not */
    MSA_ERR_BAD_DATA,     /* input exists but is malformed, truncated, corrupt or inconsistent */
    MSA_ERR_UNSUPPORTED,  /* well-formed input this build does not handle (architecture, dtype, version) */
    MSA_ERR_IO,           /* the operating system refused a read, write, fsync, rename, mmap ... */
    MSA_ERR_NOMEM,        /* an allocation failed */
    MSA_ERR_CONFLICT,     /* e.g. same document id with different content, without replace */
    MSA_ERR_LOCKED,       /* another writer holds the bank */
    MSA_ERR_MISMATCH,     /* a bank/model pairing whose fingerprints differ */
    MSA_ERR_LIMIT,        /* a size limit was exceeded (context length, question length, file size) */
    MSA_ERR_INTERNAL,     /* a broken invariant; a bug in msa */
    MSA_STATUS_COUNT
} msa_status;

/* A short, static, English name of a status ("bad data"). Never NULL. */
const char *msa_strerror(msa_status status);

/* The detailed one-line message of the last failure on this thread ("" when none). The string belongs to
 * the library and stays valid until the next failing msa call on the same thread. */
const char *msa_last_error(void);

/* The sysexits-style process exit code the CLI uses for a status: 0 ok, 64 usage, 65 bad data (also model
 * mismatch and limits), 66 missing input, 69 unsupported, 70 internal, 71 out of memory, 73 conflict,
 * 74 I/O, 75 locked (try again). */
int msa_status_exit_code(msa_status status);

/* The library version, "MAJOR.MINOR.PATCH". Static string. */
const char *msa_version(void);

/* ----------------------------------------------------------------------------------------------- tokenizer */

typedef struct msa_tokenizer msa_tokenizer;

/* Load a tokenizer from a Hugging Face tokenizer.json, a directory containing one, or a GGUF file.
 * On success *out is owned by the caller and released with msa_tokenizer_free. */
msa_status msa_tokenizer_load(const char *path, msa_tokenizer **out);
void msa_tokenizer_free(msa_tokenizer *tok);

/* Encode text. With parse_special false, special-token strings in text ("<|im_start|>") are ordinary text
 * and can never become special ids — use it for all user and document text. No BOS is added.
 * On success *ids is a malloc'd array of *n_ids ids owned by the caller (free() it); *ids may be NULL when
 * *n_ids is 0. */
msa_status msa_tokenize(const msa_tokenizer *tok, const char *text, size_t len, bool parse_special,
                        int32_t **ids, size_t *n_ids);

/* Decode ids to UTF-8 bytes (special tokens rendered as their text). Byte-level BPE may produce invalid
 * UTF-8 for a partial sequence; the bytes are returned as they are. On success *text is a malloc'd,
 * NUL-terminated buffer of *len bytes owned by the caller (free() it). */
msa_status msa_detokenize(const msa_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text,
                          size_t *len);

/* The text of one token (byte-level decoded) into buf; returns the byte count, or -1 for an invalid id.
 * Writes at most buf_size bytes (no NUL); a return value > buf_size means the buffer was too small. */
int msa_token_to_piece(const msa_tokenizer *tok, int32_t id, char *buf, size_t buf_size);

/* The id of a token given its exact vocabulary string (special or not), or -1. */
int32_t msa_tokenizer_find(const msa_tokenizer *tok, const char *piece);

size_t msa_tokenizer_vocab_size(const msa_tokenizer *tok);
/* Whether id is a special/control token (added token with special=true, or GGUF control type). */
bool msa_tokenizer_is_special(const msa_tokenizer *tok, int32_t id);

/* --------------------------------------------------------------------------------------------------- model */

typedef struct msa_model msa_model;

typedef struct msa_model_params {
    int n_threads;      /* worker threads for compute; 0 = all online CPUs */
    bool prefault;      /* touch every mapped weight page at load (slower load, steadier first token) */
} msa_model_params;

msa_model_params msa_model_default_params(void);

/* Load a model: a Hugging Face directory (config.json, model.safetensors or shards + index, tokenizer.json,
 * optional generation_config.json) or a GGUF file. Weights are memory-mapped and kept in their stored dtype.
 * On success *out is owned by the caller; release it with msa_model_free (after every session using it). */
msa_status msa_model_load(const char *path, const msa_model_params *params, msa_model **out);
void msa_model_free(msa_model *model);

/* The model's tokenizer; owned by the model. */
const msa_tokenizer *msa_model_tokenizer(const msa_model *model);

typedef struct msa_model_info {
    const char *arch;        /* "qwen3", "msa", "llama" */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_ctx_train;         /* max_position_embeddings / context_length */
    int bos_id;              /* -1 when none */
    int eos_ids[4];          /* end-of-generation ids, n_eos of them */
    int n_eos;
    bool is_msa;             /* has router projectors and msa_config */
    const char *weight_dtype; /* dominant stored dtype of the matrices: "bf16", "q4_1", ... */
    uint64_t n_params;
    uint64_t weight_bytes;
} msa_model_info;

/* Fill *info; the strings belong to the model. */
void msa_model_get_info(const msa_model *model, msa_model_info *info);

/* 32-byte fingerprint of what determines encoded memory: config (incl. msa_config), tokenizer, weight
 * headers (names, shapes, dtypes) and a hash of weight bytes sampled at fixed offsets. */
void msa_model_fingerprint(const msa_model *model, uint8_t out[32]);

/* Whether prompts for this model start with its BOS token (GGUF tokenizer.ggml.add_bos_token, HF tokenizer
 * post-processor). msa_tokenize never adds it; callers prepend info.bos_id when this is true. */
bool msa_model_add_bos(const msa_model *model);

/* Render a chat conversation with the model's template (ChatML for Qwen3/MSA; the GGUF's own where present
 * and recognised) ending with the assistant prefix. roles[i] is "system", "user" or "assistant".
 * On success *text is a malloc'd NUL-terminated string owned by the caller (free() it). */
msa_status msa_chat_render(const msa_model *model, const char *const *roles, const char *const *contents,
                           size_t n_messages, bool add_assistant_prefix, char **text);

/* ------------------------------------------------------------------------------------------------- session */

typedef struct msa_session msa_session;

typedef struct msa_session_params {
    int n_ctx;          /* KV-cache capacity in tokens; 0 = min(model's training context, 4096) */
} msa_session_params;

msa_session_params msa_session_default_params(void);

/* A generation session (KV cache + scratch) over a loaded model. The model must outlive it.
 * On success *out is owned by the caller; release it with msa_session_free. */
msa_status msa_session_new(msa_model *model, const msa_session_params *params, msa_session **out);
void msa_session_free(msa_session *s);

/* Forget all tokens (keeps allocations). */
void msa_session_reset(msa_session *s);

/* Number of tokens in the KV cache. */
int msa_session_n_past(const msa_session *s);

/* Run n_ids tokens at positions n_past.. through the model, appending them to the cache.
 * If logits is non-NULL it receives float32 logits: all_logits ? [n_ids x n_vocab] : [n_vocab] (last row).
 * Fails with MSA_ERR_LIMIT when the cache would overflow, MSA_ERR_INVALID_ARG for an out-of-range id. */
msa_status msa_session_eval(msa_session *s, const int32_t *ids, size_t n_ids, bool all_logits, float *logits);

typedef struct msa_sampler_params {
    float temperature;  /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;          /* 0 = off */
    float top_p;        /* 1 = off */
    uint64_t seed;
} msa_sampler_params;

msa_sampler_params msa_sampler_default_params(void);

/* Choose the next token from logits [n_vocab]. rng_state is the caller's xorshift state, seeded from
 * params->seed by msa_sampler_seed. Does not modify logits. */
uint64_t msa_sampler_seed(uint64_t seed);
int32_t msa_sample(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state);

/* ---------------------------------------------------------------------------------------------------- bank */
/* The memory bank: a crash-safe on-disk store of encoded documents (src/bank/, docs/bank-format.md).
 * Declarations of the bank module follow this line. */

typedef struct msa_bank msa_bank;


/* -------------------------------------------------------------------------------------------------- memory */
/* Memory Sparse Attention: stage-1 encoding into a bank, routing, answering (src/memory/).
 * Declarations of the memory module follow this line. */

/* One document to add: a client id (unique in the bank), its text, and optional metadata JSON. */
typedef struct msa_doc_input {
    const char *id;         /* NUL-terminated client id */
    const char *text;       /* UTF-8 (invalid sequences are replaced by U+FFFD before encoding) */
    size_t text_len;
    const char *meta_json;  /* NUL-terminated JSON object, or NULL */
} msa_doc_input;

typedef struct msa_ingest_params {
    int batch_tokens;       /* tokens per encoder batch (many documents per batch); 0 = default */
    bool replace;           /* same id with different content replaces instead of failing */
    bool progress;          /* draw progress on stderr when it is a terminal */
} msa_ingest_params;

msa_ingest_params msa_ingest_default_params(void);

typedef struct msa_ingest_report {
    size_t n_added, n_unchanged, n_replaced;
    uint64_t n_tokens_encoded;
    double seconds;
} msa_ingest_report;

/* Encode docs with model (stage 1) and add them durably to bank: returns only after every added document
 * is durable. Documents already present with identical content are skipped (n_unchanged). The bank must
 * have been created for this model (fingerprint) and opened for writing. report may be NULL. */
msa_status msa_bank_ingest(msa_bank *bank, msa_model *model, const msa_doc_input *docs, size_t n_docs,
                           const msa_ingest_params *params, msa_ingest_report *report);

#ifdef __cplusplus
}
#endif
#endif /* MSA_H */
