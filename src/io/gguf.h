/* gguf.h — GGUF v3 files: typed metadata and tensors (F32, F16, BF16, Q8_0, Q4_0, Q4_1), memory-mapped.
 * Hostile input: every count, string length and offset is bounded and checked against the file size;
 * tensor data must lie inside the data section at the file's alignment. */
#ifndef MSA_IO_GGUF_H
#define MSA_IO_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/weights.h"
#include "model/hparams.h"
#include "msa.h"

typedef struct msa_gguf msa_gguf;

/* On success *out is owned by the caller (msa_gguf_free). */
msa_status msa_gguf_open(const char *path, msa_gguf **out);
/* Parse from memory (fuzz entry point); buf must outlive the result. */
msa_status msa_gguf_parse(const uint8_t *buf, size_t len, msa_gguf **out);
void msa_gguf_free(msa_gguf *g);

/* The tensors, with GGUF names and shapes converted to outermost-first. Owned by g. */
const msa_weights *msa_gguf_weights(const msa_gguf *g);

/* Metadata lookups: false when the key is absent or has another type. Strings point into the mapping and
 * are NOT NUL-terminated: use the returned length. Integer getters accept any integer type that fits. */
bool msa_gguf_get_str(const msa_gguf *g, const char *key, const char **s, size_t *len);
bool msa_gguf_get_int(const msa_gguf *g, const char *key, int64_t *v);
bool msa_gguf_get_f32(const msa_gguf *g, const char *key, float *v);
bool msa_gguf_get_bool(const msa_gguf *g, const char *key, bool *v);
/* Arrays: string arrays (tokenizer.ggml.tokens/merges) and numeric arrays (token_type, scores). */
bool msa_gguf_get_str_array(const msa_gguf *g, const char *key, size_t *n);
bool msa_gguf_str_array_at(const msa_gguf *g, const char *key, size_t i, const char **s, size_t *len);
bool msa_gguf_get_i32_array(const msa_gguf *g, const char *key, const int32_t **v, size_t *n);

/* Additions (io helper). Arrays of f32 (tokenizer.ggml.scores). Like the i32 getter, the values are an
 * aligned copy owned by g (the mapping itself may hold them unaligned). */
bool msa_gguf_get_f32_array(const msa_gguf *g, const char *key, const float **v, size_t *n);

/* Metadata enumeration, for tools and tests: the i-th key (not NUL-terminated) and its GGUF value type
 * (0 u8 .. 12 f64; 9 = array, then *elem_type is the element type, else -1). */
size_t msa_gguf_kv_count(const msa_gguf *g);
bool msa_gguf_kv_at(const msa_gguf *g, size_t i, const char **key, size_t *key_len, int *type, int *elem_type);
/* "u8", "i8", ..., "f64", "array", or "?". */
const char *msa_gguf_value_type_name(int type);

/* Architecture hyper-parameters from the metadata: general.architecture llama|qwen3 and its
 * <arch>.context_length, embedding_length, block_count, feed_forward_length, attention.head_count,
 * attention.head_count_kv (default head_count), attention.key_length (default n_embd/n_head),
 * attention.layer_norm_rms_epsilon, rope.freq_base (default 10000); vocab size from tokenizer.ggml.tokens
 * (or <arch>.vocab_size); bos/eos/eot ids. rope_style NORM for llama, NEOX for qwen3; qk_norm for qwen3;
 * tie_embeddings when output.weight is absent. Missing keys MSA_ERR_BAD_DATA naming the key; other
 * architectures MSA_ERR_UNSUPPORTED. */
msa_status msa_gguf_hparams(const msa_gguf *g, msa_hparams *out);

#endif
