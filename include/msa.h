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

/* Opt in to surviving a failing disk under a bank: msa reads bank segments through read-only file mappings,
 * and an I/O error under a mapped page (or a segment truncated behind the bank's back) is delivered as SIGBUS,
 * which by default kills the process. After this call, such a fault inside msa's own reads of a bank (routing,
 * text, verify, export) makes that call return MSA_ERR_IO instead; a SIGBUS anywhere else still goes to the
 * disposition installed before (so call it after installing your own SIGBUS handler, if any). Installs a
 * process-wide SIGBUS handler once (thread-safe, idempotent); the library never does so unasked. Pointers the
 * API hands out into a mapping (msa_bank_route_spans, msa_bank_doc_content, msa_bank_template) are read by the
 * caller, unguarded; msa_bank_read_content reads with pread instead. */
msa_status msa_catch_mapping_faults(void);

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
    int n_threads;      /* worker threads for compute; 0 = every CPU this process may use (its affinity mask,
                         * capped by a cgroup CPU quota: a container limited to 2 of 16 CPUs gets 2) */
    bool prefault;      /* touch every mapped weight page at load (slower load, steadier first token) */
    const char *device; /* where the model runs: "cpu", "cuda" (GPU 0) or "cuda:N"; NULL, "" or "auto" = the
                         * first GPU when this build has CUDA and one is present, else the CPU. Asking for
                         * CUDA where it is unavailable is MSA_ERR_UNSUPPORTED, a malformed name
                         * MSA_ERR_INVALID_ARG. The string is read during msa_model_load only. */
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
    float min_p;        /* drop tokens whose probability is below min_p x the most likely one's; 0 = off */
    float repeat_penalty; /* llama.cpp's: logits of recent tokens (msa_sample_recent) divided by it when
                           * positive, multiplied when negative; 1 = off. Also applies when greedy. */
} msa_sampler_params;

msa_sampler_params msa_sampler_default_params(void);

/* Choose the next token from logits [n_vocab]. rng_state is the caller's xorshift state, seeded from
 * params->seed by msa_sampler_seed. Does not modify logits. */
uint64_t msa_sampler_seed(uint64_t seed);
int32_t msa_sample(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state);
/* msa_sample with the last n_recent generated/prompt tokens for params->repeat_penalty (recent may be NULL
 * when n_recent is 0; callers pass a bounded window, e.g. the last 64). */
int32_t msa_sample_recent(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state,
                          const int32_t *recent, size_t n_recent);

/* ---------------------------------------------------------------------------------------------------- bank */
/* The memory bank: a crash-safe on-disk store of encoded documents (src/bank/, docs/bank-format.md).
 * Declarations of the bank module follow this line. */

typedef struct msa_bank msa_bank;

/* A bank is a directory (docs/bank-format.md): a MANIFEST switched atomically that names immutable,
 * checksummed segment files. It knows shapes, a dtype and an opaque 32-byte model fingerprint, not the model.
 * Documents get a stable index, 0-based in first-add order and never reused (the `[i]` the model sees).
 * One writer at a time (MSA_ERR_LOCKED for a second one); any number of readers, each seeing the version
 * it opened (or last refreshed) while a writer adds, removes or compacts.
 * Threads: a handle's read functions may be called from several threads at once as long as no thread
 * calls a mutating function (add, remove, commit, compact, set_template, refresh) on the same handle. */

#define MSA_BANK_MAX_LAYERS 256
#define MSA_BANK_NO_DOC UINT32_MAX   /* "no document" in chunk -> document maps */

typedef enum msa_bank_dtype { MSA_BANK_F32 = 0, MSA_BANK_BF16 = 1 } msa_bank_dtype;
typedef enum msa_bank_mode { MSA_BANK_NATIVE = 0, MSA_BANK_READ = 1 } msa_bank_mode;

/* What a bank stores per chunk and per template token. */
typedef struct msa_bank_shape {
    msa_bank_mode mode;      /* native: content K̄/V̄ stored; read: routing keys only (no K̄/V̄, no template needed) */
    msa_bank_dtype dtype;    /* element type of every stored vector */
    int n_layers;            /* all model layers (the template prefix has one K/V per layer) */
    int n_router;            /* router layers, stored in "slots" 0..n_router-1 */
    int router_layers[MSA_BANK_MAX_LAYERS]; /* model layer id of each slot, strictly increasing */
    int route_dim[MSA_BANK_MAX_LAYERS];     /* elements per chunk of slot s's routing keys
                                                (n_kv_heads*head_dim for MSA-4B) */
    int n_kv_heads, head_dim; /* K̄/V̄ per chunk: [n_kv_heads, head_dim]; template per layer [n_kv_heads, n_template, head_dim] */
    int pooling;             /* P: tokens per chunk; n_chunks = ceil(n_tokens / P) */
    int n_template;          /* template prefix tokens (3) */
} msa_bank_shape;

/* Named shapes for tests and benchmarks: "msa-4b" (bf16, 36 layers, router 18..35, 8x128, P=64, 3 template
 * tokens) and "synthetic-small" (f32, 4 layers, router 2..3, 2x8, P=4, 3 template tokens).
 * MSA_ERR_INVALID_ARG for another name. */
msa_status msa_bank_shape_named(const char *name, msa_bank_shape *out);

/* Bytes of one element of a bank dtype (2 or 4). */
size_t msa_bank_dtype_size(msa_bank_dtype dtype);

typedef struct msa_bank_create_params {
    msa_bank_shape shape;
    uint8_t fingerprint[32]; /* the model's msa_model_fingerprint (opaque to the bank) */
    const char *model_path;  /* recorded so `msa bank add` can load the model; may be NULL */
} msa_bank_create_params;

/* Create an empty bank in directory path (created if missing; must be empty or absent). Durable on return. */
msa_status msa_bank_create(const char *path, const msa_bank_create_params *params);

typedef struct msa_bank_open_params {
    bool writable;           /* take the writer lock (MSA_ERR_LOCKED when another process/handle holds it) */
    bool verify_content;     /* check each document's content checksum when it is fetched (cheap; default true) */
    bool routing_in_ram;     /* copy routing keys to RAM at open instead of serving them from the mmap */
    size_t max_pending_bytes;/* writer: staged bytes held in memory (routing keys, compressed text, strings,
                                records) that trigger an automatic commit; 0 = 64 MiB */
} msa_bank_open_params;

msa_bank_open_params msa_bank_default_open_params(void);

/* Open a bank. Missing -> MSA_ERR_NOT_FOUND; malformed, truncated, corrupt or of an unknown major format
 * version -> MSA_ERR_BAD_DATA (one line naming the file and the problem; CLI exit 65).
 * On success *out is owned by the caller; release it with msa_bank_close (which also drops the lock and
 * discards staged, uncommitted changes). */
msa_status msa_bank_open(const char *path, const msa_bank_open_params *params, msa_bank **out);
void msa_bank_close(msa_bank *bank);

/* MSA_OK when fingerprint equals the bank's, else MSA_ERR_MISMATCH naming both (hex prefixes). */
msa_status msa_bank_check_fingerprint(const msa_bank *bank, const uint8_t fingerprint[32]);

typedef struct msa_bank_info {
    msa_bank_shape shape;
    uint8_t fingerprint[32];
    uint8_t bank_uuid[16];
    const char *model_path;  /* "" when none; owned by the bank */
    uint64_t version;        /* manifest generation this handle sees */
    uint64_t n_docs;         /* live documents */
    uint64_t n_deleted;      /* tombstoned documents still occupying segments (purged by compact) */
    uint64_t next_index;     /* the index the next new document gets */
    uint64_t n_tokens, n_chunks;          /* of live documents */
    uint64_t n_segments;
    uint64_t bytes;          /* all files of this version (manifest + segments) */
    uint64_t text_bytes;     /* compressed text of live documents */
    bool has_template;
} msa_bank_info;

/* Fill *info; strings belong to the bank and live until close or refresh. */
void msa_bank_get_info(const msa_bank *bank, msa_bank_info *info);

/* Reader: switch to the newest committed version (no-op on a writer handle, which always sees its own
 * commits). Pointers obtained earlier from this handle become invalid. */
msa_status msa_bank_refresh(msa_bank *bank);

/* ---- documents (read) */

typedef struct msa_bank_doc_info {
    const char *id;          /* NUL-terminated; owned by the bank (valid until close/refresh/commit) */
    uint32_t index;          /* stable index, never reused */
    uint64_t n_tokens;
    uint32_t n_chunks;
    uint8_t hash[16];        /* msa_bank_content_hash of text and meta */
    const char *meta_json;   /* NUL-terminated JSON ("" when none); owned by the bank */
    uint64_t text_len;       /* uncompressed text bytes */
} msa_bank_doc_info;

/* The content hash used for idempotent adds: XXH3-128 over (u64 text_len, text, u64 meta_len, meta). */
void msa_bank_content_hash(const char *text, size_t text_len, const char *meta_json, uint8_t out[16]);
/* A document id is 1..4096 bytes of valid UTF-8 without control characters (U+0000..U+001F, U+007F), so
 * every output (ls, ls --json, messages) shows it unambiguously. MSA_ERR_INVALID_ARG naming the problem.
 * msa_bank_add checks it; callers check it first to fail before any encoding. */
msa_status msa_bank_check_id(const char *id);

/* Number of live documents, and the i-th (0 <= i < n) in increasing index order. */
uint64_t msa_bank_n_docs(const msa_bank *bank);
msa_status msa_bank_doc_at(const msa_bank *bank, uint64_t i, msa_bank_doc_info *out);
/* A live document by stable index or by id; MSA_ERR_NOT_FOUND when absent or deleted. */
msa_status msa_bank_doc_by_index(const msa_bank *bank, uint32_t index, msa_bank_doc_info *out);
msa_status msa_bank_doc_by_id(const msa_bank *bank, const char *id, msa_bank_doc_info *out);

/* The original text, decompressed and checked. On success *text is a malloc'd NUL-terminated buffer of
 * *len bytes owned by the caller (free() it). */
msa_status msa_bank_doc_text(const msa_bank *bank, uint32_t index, char **text, size_t *len);

/* One document's content for router slot s, zero-copy: *k and *v point to [n_chunks, n_kv_heads, head_dim]
 * elements of the bank dtype inside the bank's mapping (valid until close/refresh/commit); k and v are
 * adjacent (v == k + n_chunks*n_kv_heads*head_dim elements), so a fetch is one contiguous read.
 * With verify_content the document's content checksum is checked first (MSA_ERR_BAD_DATA on mismatch).
 * MSA_ERR_UNSUPPORTED in read mode. */
msa_status msa_bank_doc_content(const msa_bank *bank, uint32_t index, int slot, const void **k, const void **v);

/* The same bytes copied with one pread into caller buffers k_out and v_out (each n_chunks*n_kv_heads*
 * head_dim elements) — for tiers that must not touch the mapping (pinned host buffers, GPU staging). */
msa_status msa_bank_read_content(const msa_bank *bank, uint32_t index, int slot, void *k_out, void *v_out);

/* ---- routing keys (read) */

/* A run of chunks whose routing keys are contiguous: keys [n_chunks, route_dim[slot]] in the bank dtype and
 * doc_index[c] the stable index of the document chunk c belongs to. Runs never contain chunks of deleted
 * documents (a deleted document is never routed). Chunks of one document are consecutive, in order. */
typedef struct msa_bank_span {
    const void *keys;
    const uint32_t *doc_index;
    uint64_t n_chunks;
} msa_bank_span;

/* The routing keys of router slot s as *n_spans spans (one per segment when nothing is deleted; one after
 * compaction). The array belongs to the bank (valid until close/refresh/commit). */
msa_status msa_bank_route_spans(const msa_bank *bank, int slot, const msa_bank_span **spans, size_t *n_spans);

/* Template prefix K/V of model layer (0..n_layers-1): *k and *v point to [n_kv_heads, n_template, head_dim]
 * elements inside the mapping. MSA_ERR_NOT_FOUND when no template has been set. */
msa_status msa_bank_template(const msa_bank *bank, int layer, const void **k, const void **v);

/* ---- writing (a writable handle; changes are staged and become durable and visible at commit) */

/* One encoded document. Vectors are in the bank dtype, row-major. */
typedef struct msa_bank_doc {
    const char *id;          /* NUL-terminated, 1..4096 bytes, no NUL inside */
    const char *text;        /* original text (stored zstd-compressed) */
    size_t text_len;
    const char *meta_json;   /* NUL-terminated JSON, or NULL */
    uint64_t n_tokens;       /* >= 1 */
    uint32_t n_chunks;       /* must equal ceil(n_tokens / pooling) */
    const void *const *route_keys; /* [n_router] pointers, each [n_chunks, route_dim[slot]] */
    const void *const *k_mean;     /* [n_router] pointers, each [n_chunks, n_kv_heads, head_dim]; NULL in read mode */
    const void *const *v_mean;     /* same shape as k_mean */
} msa_bank_doc;

typedef enum msa_bank_doc_state {
    MSA_BANK_DOC_NEW = 0,    /* id not present (or deleted): adding creates it */
    MSA_BANK_DOC_UNCHANGED,  /* present with the same content hash: adding is a no-op */
    MSA_BANK_DOC_DIFFERENT,  /* present with another content hash: adding is a conflict unless replace */
} msa_bank_doc_state;

/* How an add of (id, hash) would be treated, including staged changes — lets an encoder skip encoding
 * unchanged documents (zero tokens re-encoded on resume). */
msa_bank_doc_state msa_bank_doc_state_of(const msa_bank *bank, const char *id, const uint8_t hash[16]);

/* Stage a document. Same id + same content: no-op (*state UNCHANGED). Different content: MSA_ERR_CONFLICT
 * unless replace (then the old document is tombstoned and the new one gets a new index). On success
 * *index_out (may be NULL) is the document's index. Not durable until msa_bank_commit (an automatic commit
 * happens when the staged bytes held in memory reach max_pending_bytes). */
msa_status msa_bank_add(msa_bank *bank, const msa_bank_doc *doc, bool replace, msa_bank_doc_state *state,
                        uint32_t *index_out);

/* Stage a tombstone for a live document id (MSA_ERR_NOT_FOUND when absent). */
msa_status msa_bank_remove(msa_bank *bank, const char *id);

/* Stage the template prefix: k and v each [n_layers, n_kv_heads, n_template, head_dim]. Setting it again
 * with identical bytes is a no-op; different bytes are MSA_ERR_CONFLICT. */
msa_status msa_bank_set_template(msa_bank *bank, const void *k, const void *v);

/* Make every staged change durable (segment written and fsynced, manifest switched atomically, directory
 * fsynced), then visible on this handle. Returns MSA_OK only when durable. After any I/O failure the handle
 * is poisoned (every later write fails); after a failed fsync nothing more is acknowledged in this process. */
msa_status msa_bank_commit(msa_bank *bank);

/* The index the next new document staged on this writer will get (the `[i]` an encoder renders into it). */
uint32_t msa_bank_next_index(const msa_bank *bank);

/* Number of staged (uncommitted) documents and tombstones. */
size_t msa_bank_n_pending(const msa_bank *bank);

/* Commit, then rewrite all live documents into one segment and drop tombstoned data. Durable on return.
 * Files of the old version are unlinked only after the new manifest is durable; readers that opened them
 * keep their mappings (POSIX unlink semantics), a reader opening concurrently retries on the new manifest. */
msa_status msa_bank_compact(msa_bank *bank);

typedef struct msa_bank_verify_report {
    uint64_t bytes_checked;
    uint64_t n_docs_checked;
    double seconds;
} msa_bank_verify_report;

/* Full checksum scan of the version this handle sees: every section checksum, every document's content
 * checksum, every text frame. progress (may be NULL) is called with (done, total) bytes now and then.
 * MSA_ERR_BAD_DATA with a message naming the file and section on the first mismatch. */
msa_status msa_bank_verify(const msa_bank *bank, void (*progress)(uint64_t done, uint64_t total, void *user),
                           void *user, msa_bank_verify_report *report);

/* Write the live content of the bank (one compacted segment, template, shape, fingerprint) to one portable
 * checksummed file at path (written to a temp name, fsynced, renamed). Holds a shared lock on the bank for
 * its run, so no writer can open (and publish) meanwhile, and exports the newest version (a read-only
 * handle's pinned version is read again; the handle is unchanged). MSA_ERR_LOCKED while a writer is open,
 * except for the writer's own handle. */
msa_status msa_bank_export(const msa_bank *bank, const char *path);

/* Import an export file as a new bank at bank_path (which must not exist, or be an empty bank — no document
 * ever added — of the same shape and fingerprint, else MSA_ERR_MISMATCH / MSA_ERR_CONFLICT). Documents keep
 * their indices (the encoded K/V contain the `[i]` they were encoded with), so import never merges into a
 * populated bank. The file is fully verified before anything is written. Durable on return; *n_docs (may
 * be NULL) receives the number of documents imported. */
msa_status msa_bank_import(const char *path, const char *bank_path, uint64_t *n_docs);


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

/* The shape of a bank for this model's memory (pass it to msa_bank_create with msa_model_fingerprint):
 * MSA_BANK_NATIVE needs an MSA checkpoint (its router layers, pooling P, bf16 for bf16 checkpoints else f32);
 * MSA_BANK_READ works for any model: the identity router over the upper half of the layers, routing keys only,
 * bf16, with pooling P tokens per chunk (0 = 1: read mode matches token by token, readmode.c). */
msa_status msa_memory_bank_shape(const msa_model *model, msa_bank_mode mode, int pooling, msa_bank_shape *out);

/* Read mode with trained router weights (`--router FILE`): attach per-layer router projectors from a
 * safetensors file to a model that has none: model.layers.{l}.self_attn.router_q_proj.weight
 * [n_head*head_dim, n_embd] and router_k_proj.weight [n_head_kv*head_dim, n_embd] (".0.weight", MSA-4B's
 * spelling, also accepted; F32/F16/BF16). Their layers become the read-mode router layers (routing keys
 * router_k_proj(h), queries router_q_proj(h): no norm, no RoPE) and the model's fingerprint then covers the
 * router, so a bank built with it refuses another router or none (MSA_ERR_MISMATCH). Missing file
 * MSA_ERR_NOT_FOUND; a tensor of another name, layer or shape, or q without k, MSA_ERR_BAD_DATA; an MSA
 * checkpoint (own router) MSA_ERR_UNSUPPORTED. Call before any bank use. The model owns the mapping. */
msa_status msa_model_load_router(msa_model *model, const char *path);

typedef enum msa_ask_mode {
    MSA_ASK_AUTO = 0,   /* the bank's mode */
    MSA_ASK_NATIVE,     /* MSA: routing inside the router layers, sparse attention over the selected documents'
                           pooled K/V, generative retrieval of [ids] with original-text injection (interleave) */
    MSA_ASK_READ,       /* route with the bank's keys, then inject the best documents' original text into the
                           prompt and let the model answer (models without MSA training) */
} msa_ask_mode;

typedef struct msa_ask_params {
    msa_ask_mode mode;
    int top_k;            /* documents per router layer; 0 = msa_config's (native) or 3 (read) */
    int max_rounds;       /* Memory Interleave rounds, >= 1 (default 8) */
    int max_new_tokens;   /* per round (default 512) */
    float temperature;    /* 0 = greedy (default) */
    uint64_t seed;
    int max_question_tokens; /* longer questions fail with MSA_ERR_LIMIT (default 1024) */
    /* Sampling filters beyond temperature (msa_sampler_params; defaults off: 1, 0, 1, 64). */
    float top_p, min_p, repeat_penalty;
    int repeat_last_n;
    /* Streaming, cancelling (both modes) and conversation (read mode; native mode ignores the history: its
     * prompt is the Memory Interleave format). on_text, when set, receives the answer's text as it is generated
     * (byte-level pieces; leading whitespace included; native mode: the text decoded after the question
     * injection, without a leading answer mark). When *cancel becomes non-zero (e.g. from a SIGINT handler) generation stops and
     * msa_ask returns MSA_OK with what was generated and cancelled = true. history_roles/contents ("user" /
     * "assistant", n_history of them, oldest first) are previous turns rendered before the question in the
     * answer prompt; the oldest pairs are dropped when they would not fit the model's context. */
    void (*on_text)(const char *text, size_t len, void *user);
    void *user;
    const volatile int *cancel;
    const char *const *history_roles;
    const char *const *history_contents;
    size_t n_history;
} msa_ask_params;

msa_ask_params msa_ask_default_params(void);

typedef struct msa_ask_routing {
    int layer;            /* model layer */
    size_t n;
    uint32_t *index;      /* [n] stable bank indices, best first (ties: lower index first) */
    char **doc_id;        /* [n] client ids as given to add */
    float *score;         /* [n] */
} msa_ask_routing;

typedef struct msa_ask_round {
    msa_ask_routing *routing; /* [n_routing], one per router layer */
    int n_routing;
    char *generated;          /* the model's text this round (special tokens as text) */
    size_t n_injected;
    uint32_t *injected_index; /* documents whose original text was injected after this round */
    char **injected_id;
} msa_ask_round;

typedef struct msa_ask_result {
    char *answer;
    msa_ask_round *rounds;
    int n_rounds;
    char *transcript;     /* native: the interleave history; read: the prompt and the answer */
    uint64_t n_prompt_tokens, n_generated_tokens;
    double seconds_route, seconds_total;
    bool cancelled;       /* *params->cancel stopped generation */
    bool truncated;       /* max_new_tokens ended the answer before the model did */
    size_t n_history_used; /* history messages that fitted in the prompt */
} msa_ask_result;

/* Answer question (UTF-8) from bank with model (the bank must have been made with this model: fingerprint).
 * Fills *out (release with msa_ask_result_free). An empty bank answers without memory. */
msa_status msa_ask(msa_model *model, msa_bank *bank, const char *question, size_t len, const msa_ask_params *params,
                   msa_ask_result *out);
void msa_ask_result_free(msa_ask_result *r);

#ifdef __cplusplus
}
#endif
#endif /* MSA_H */
