/* gguf.h — GGUF v3 files: typed metadata and tensors (F32, F16, BF16, Q8_0, Q4_0, Q4_1), memory-mapped.
 * Hostile input: every count, string length and offset is bounded and checked against the file size;
 * tensor data must lie inside the data section at the file's alignment. */
#ifndef MSA_IO_GGUF_H
#define MSA_IO_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/weights.h"
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

#endif
