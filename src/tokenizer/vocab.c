/* vocab.c — a byte-level BPE tokenizer from GGUF-style vocabulary arrays (tokenizer.ggml.tokens, merges,
 * token_type, pre). The pre-tokenizer name maps to the regex list llama.cpp uses for it (llama-vocab.cpp),
 * written as the Hugging Face pre-tokenizer the model's tokenizer.json has, so ids equal HF `tokenizers`:
 *   qwen2                 Qwen2's Split regex, plus the NFC normalizer of Qwen's tokenizer.json
 *   llama-bpe, llama3, dbrx, smaug-bpe    the Llama 3 Split regex (digits in runs of 1-3)
 *   smollm, starcoder, refact, command-r, codeshell, exaone, minerva    Digits(individual) + ByteLevel regex
 *   gpt2, gpt-2, mpt, olmo, jais          the ByteLevel (GPT-2) regex
 *   default (or no name)  llama.cpp's default list: punctuation runs, GPT-2 regex, digit runs, 3 ASCII digits
 * Control tokens (type 3) become special added tokens and user-defined ones (type 4) non-special added
 * tokens, as llama.cpp treats them: control tokens are only parsed with parse_special. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static const char QWEN2_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const DEFAULT_REGEXES[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
};

static bool name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(name, *list)) return true;
    return false;
}

static msa_status setup_pre(msa_tokenizer *t, const char *pre) {
    static const char *const qwen2[] = {"qwen2", NULL};
    static const char *const llama3[] = {"llama-bpe", "llama3", "dbrx", "smaug-bpe", NULL};
    static const char *const smollm[] = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva", NULL};
    static const char *const gpt2[] = {"gpt2", "gpt-2", "mpt", "olmo", "jais", NULL};
    if (!pre || !strcmp(pre, "default")) {
        for (size_t i = 0; i < sizeof DEFAULT_REGEXES / sizeof DEFAULT_REGEXES[0]; i++)
            MSA_TRY(tok_pre_add_split(t, DEFAULT_REGEXES[i], strlen(DEFAULT_REGEXES[i]), false, TOK_SPLIT_ISOLATED, false));
        return tok_pre_add_bytelevel(t, false, false);
    }
    if (name_in(pre, qwen2)) {
        t->norm[t->n_norm++] = TOK_NORM_NFC;
        MSA_TRY(tok_pre_add_split(t, QWEN2_REGEX, sizeof QWEN2_REGEX - 1, false, TOK_SPLIT_ISOLATED, false));
        return tok_pre_add_bytelevel(t, false, false);
    }
    if (name_in(pre, llama3)) {
        MSA_TRY(tok_pre_add_split(t, LLAMA3_REGEX, sizeof LLAMA3_REGEX - 1, false, TOK_SPLIT_ISOLATED, false));
        return tok_pre_add_bytelevel(t, false, false);
    }
    if (name_in(pre, smollm)) {
        MSA_TRY(tok_pre_add_digits(t, true));
        return tok_pre_add_bytelevel(t, false, true);
    }
    if (name_in(pre, gpt2)) return tok_pre_add_bytelevel(t, false, true);
    return msa_fail(MSA_ERR_UNSUPPORTED, "tokenizer.ggml.pre '%.64s' is not supported (qwen2, llama-bpe, smollm, gpt2, default, ...)", pre);
}

msa_status msa_tokenizer_from_vocab(const msa_vocab_desc *d, msa_tokenizer **out) {
    if (!d || !out || (d->n_tokens && (!d->tokens || !d->token_lens)) || (d->n_merges && (!d->merges || !d->merge_lens)))
        return msa_fail(MSA_ERR_INVALID_ARG, "msa_tokenizer_from_vocab: NULL argument");
    *out = NULL;
    if (d->n_tokens == 0) return msa_fail(MSA_ERR_BAD_DATA, "tokenizer.ggml.tokens is empty");
    if (d->n_tokens > TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "tokenizer.ggml.tokens has %zu tokens", d->n_tokens);
    if (d->n_merges > TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "tokenizer.ggml.merges has %zu merges", d->n_merges);
    msa_tokenizer *t = tok_new();
    if (!t) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_status st = tok_alloc_ids(t, d->n_tokens);
    for (size_t i = 0; i < d->n_tokens && st == MSA_OK; i++) {
        uint32_t off;
        st = tok_blob_add(t, d->tokens[i], d->token_lens[i], &off);
        if (st == MSA_OK) st = tok_set_id(t, (int32_t)i, off, (uint32_t)d->token_lens[i], TOK_FLAG_MODEL);
    }
    if (st == MSA_OK) st = tok_index_vocab(t);
    for (size_t i = 0; i < d->n_merges && st == MSA_OK; i++) {
        const char *m = d->merges[i];
        size_t len = d->merge_lens[i];
        const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;  /* llama.cpp: find(' ', 1) */
        if (!sp) st = msa_fail(MSA_ERR_BAD_DATA, "tokenizer.ggml.merges[%zu] has no space between its two tokens", i);
        else st = tok_add_merge(t, m, (size_t)(sp - m), sp + 1, len - (size_t)(sp - m) - 1, (uint32_t)i);
    }
    if (st == MSA_OK) st = setup_pre(t, d->pre);
    for (size_t i = 0; i < d->n_tokens && st == MSA_OK && d->token_types; i++) {
        int32_t ty = d->token_types[i];
        if (ty == 3 || ty == 4)
            st = tok_add_added(t, d->tokens[i], d->token_lens[i], d->n_tokens, ty == 3, false, false, false, false);
    }
    if (st == MSA_OK) st = tok_finish(t);
    if (st != MSA_OK) {
        msa_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MSA_OK;
}
