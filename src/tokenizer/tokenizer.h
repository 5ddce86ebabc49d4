/* tokenizer.h — internal constructors of msa_tokenizer (byte-level BPE), used by the model loaders. */
#ifndef MSA_TOKENIZER_TOKENIZER_H
#define MSA_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "msa.h"

/* From the bytes of a Hugging Face tokenizer.json (len bytes, not NUL-terminated). */
msa_status msa_tokenizer_from_json(const char *json, size_t len, msa_tokenizer **out);

/* From GGUF-style vocabulary arrays (tokenizer.ggml.*). Strings are (ptr,len) pairs, not NUL-terminated.
 * token_types: GGUF token types (1 normal, 3 control, 4 user-defined, 6 byte) or NULL.
 * pre: tokenizer.ggml.pre ("qwen2", "smollm", "llama-bpe", "gpt2", ... ; NULL = "default"). */
typedef struct msa_vocab_desc {
    size_t n_tokens;
    const char *const *tokens;
    const size_t *token_lens;
    const int32_t *token_types;
    size_t n_merges;
    const char *const *merges;
    const size_t *merge_lens;
    const char *pre;
} msa_vocab_desc;

msa_status msa_tokenizer_from_vocab(const msa_vocab_desc *desc, msa_tokenizer **out);

#endif
