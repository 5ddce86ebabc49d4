/* tok_internal.h — the inside of msa_tokenizer (byte-level BPE), shared by the files of src/tokenizer/.
 * The pipeline follows Hugging Face `tokenizers` step by step so ids come out identical:
 *   text -> invalid UTF-8 replaced (Python's errors='replace')
 *        -> added tokens with normalized=false split out of the raw text
 *        -> normalizer (NFC, ...) on each remaining segment
 *        -> added tokens with normalized=true split out of the normalized segments
 *        -> pre-tokenizer steps (regex splits, digit splits, ByteLevel's regex and prefix space)
 *        -> BPE on the raw bytes of each piece (the byte-level alphabet is folded into the vocabulary). */
#ifndef MSA_TOKENIZER_TOK_INTERNAL_H
#define MSA_TOKENIZER_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"
#include "tokenizer/strmap.h"

/* Hostile-input bounds. */
#define TOK_MAX_ID (1 << 24)          /* ids are below this */
#define TOK_MAX_TOKEN_BYTES 65536     /* one vocabulary string */
#define TOK_MAX_ADDED 65536           /* added tokens */
#define TOK_MAX_PRE_STEPS 32          /* pre-tokenizer and normalizer steps after flattening Sequences */

enum {
    TOK_FLAG_PRESENT = 1,  /* the id has a string */
    TOK_FLAG_SPECIAL = 2,  /* added token with special=true, or GGUF control token */
    TOK_FLAG_ADDED = 4,    /* an added token (matched as a whole in the text) */
    TOK_FLAG_MODEL = 8,    /* in the BPE model's vocabulary */
};

typedef struct tok_added {
    uint32_t off, len;         /* content: blob[off .. off+len) */
    uint32_t norm_off, norm_len; /* content after the normalizer (== content unless normalized) */
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tok_added;

typedef enum tok_norm_kind { TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD } tok_norm_kind;

typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef enum tok_pre_kind {
    TOK_PRE_SPLIT,         /* split each piece by a regex (pcre2 code in re) */
    TOK_PRE_PREFIX_SPACE,  /* ByteLevel add_prefix_space: prepend ' ' to pieces not starting with one */
} tok_pre_kind;

typedef struct tok_pre_step {
    tok_pre_kind kind;
    void *re;              /* pcre2_code_8 * */
    tok_split_behavior behavior;
    bool invert;
} tok_pre_step;

typedef struct tok_merge {
    uint32_t rank;
    int32_t new_id;
} tok_merge;

struct msa_tokenizer {
    size_t n_ids;              /* max id + 1 */
    /* Per id [n_ids]: the vocabulary string (as in tokenizer.json / GGUF) and its byte-level decoding. */
    uint32_t *str_off, *str_len;
    uint32_t *bytes_off, *bytes_len;
    uint8_t *flags;
    char *blob;                /* every string above, NUL after each */
    size_t blob_len, blob_cap;

    tok_strmap vocab;          /* vocabulary string -> id (model vocabulary and added tokens) */
    tok_strmap bytes_vocab;    /* raw bytes -> id, model vocabulary only (ignore_merges) */
    tok_pairmap merges;        /* (left id, right id) -> rank, merged id */
    int32_t byte_id[256];      /* id of the single-byte token for each byte, -1 when the vocabulary lacks it */
    int32_t byte_fallback_id[256]; /* "<0xAB>" tokens when byte_fallback, else -1 */
    bool ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;            /* -1: none */

    size_t n_norm;
    tok_norm_kind norm[TOK_MAX_PRE_STEPS];
    size_t n_pre;
    tok_pre_step pre[TOK_MAX_PRE_STEPS];

    size_t n_added;
    tok_added *added;          /* [n_added] in tokenizer.json order */
    size_t n_added_alloc;
    tok_strmap added_map;      /* content -> index in added (a string listed twice updates its entry) */
    /* Matching index per pass (0: raw text, normalized=false tokens; 1: normalized text, normalized=true
     * tokens): for each first byte b, cand[k][cand_start[k][b] .. cand_start[k][b+1]) are indices into added,
     * longest pattern first. */
    uint32_t *cand_start[2];
    uint32_t *cand[2];
};

/* Construction (tokenizer.c), in this order: tok_new; tok_alloc_ids + tok_blob_add + tok_set_id for the
 * model vocabulary; tok_index_vocab; tok_add_merge for each merge; normalizers and pre-tokenizer steps;
 * tok_add_added for each added token; tok_finish. */
msa_tokenizer *tok_new(void);
/* Append len bytes (+NUL) to the blob; *off receives the offset (the blob may move while loading). */
msa_status tok_blob_add(msa_tokenizer *t, const char *s, size_t len, uint32_t *off);
/* Grow the per-id arrays to n_ids ids (new ones absent). */
msa_status tok_alloc_ids(msa_tokenizer *t, size_t n_ids);
/* Give id the string at blob offset off (len bytes); computes its byte-level decoding. */
msa_status tok_set_id(msa_tokenizer *t, int32_t id, uint32_t off, uint32_t len, uint8_t flags);
/* Map every id's string to its id (a string under several ids maps to the highest). */
msa_status tok_index_vocab(msa_tokenizer *t);
/* Add merge number rank given its two strings; fails naming the merge when a part or the result is not in
 * the vocabulary. */
msa_status tok_add_merge(msa_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank);
/* Register an added token and give it an id the way HF AddedVocabulary::add_tokens does: a string already
 * known keeps its id; a new one gets max(previous added ids + 1, model_vocab_len). The "id" written in
 * tokenizer.json is not used (HF only warns when it differs). */
msa_status tok_add_added(msa_tokenizer *t, const char *content, size_t len, size_t model_vocab_len, bool special,
                         bool lstrip, bool rstrip, bool single_word, bool normalized);
/* Byte tables, normalized forms of added tokens, matching index. */
msa_status tok_finish(msa_tokenizer *t);

/* Split s[0..n) around added tokens (added.c), as HF AddedVocabulary::find_matches: leftmost-longest
 * matches, honouring lstrip/rstrip/single_word. Only tokens of the given pass (normalized or not) and,
 * unless parse_special, only non-special ones take part. */
typedef struct tok_seg {
    size_t s, e;           /* byte range in the text */
    int32_t id;            /* the added token's id, or -1 for text to encode */
} tok_seg;

typedef struct tok_segs {
    tok_seg *v;
    size_t n, cap;
} tok_segs;

msa_status tok_added_split(const msa_tokenizer *t, const char *s, size_t n, int pass, bool parse_special,
                           tok_segs *out);
msa_status tok_added_index(msa_tokenizer *t);

/* Pre-tokenizer steps (pretok.c). pattern is a regex in the Oniguruma dialect HF uses; literal: match
 * the string itself. */
msa_status tok_pre_add_split(msa_tokenizer *t, const char *pattern, size_t len, bool literal,
                             tok_split_behavior behavior, bool invert);
msa_status tok_pre_add_digits(msa_tokenizer *t, bool individual);
msa_status tok_pre_add_bytelevel(msa_tokenizer *t, bool add_prefix_space, bool use_regex);
void tok_pre_free(msa_tokenizer *t);

/* The GPT-2 byte<->unicode alphabet (bytelevel.c). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);   /* -1 when cp is not in the alphabet */

/* UTF-8 (utf8.c). */
/* Decode one code point at s[0..n) (n>0); returns its length, or 0 when the bytes there are not valid. */
size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Python's bytes.decode('utf-8', errors='replace'): NULL (and *out_len = len) when text is valid, else a
 * malloc'd copy with each maximal invalid subpart replaced by U+FFFD. */
msa_status tok_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len);

/* Per-call scratch of an encode (pretok.c): regex match state and piece lists. */
typedef struct tok_piece {
    const char *p;
    size_t n;
} tok_piece;

typedef struct tok_pieces {
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

typedef struct tok_run {
    void *md;              /* pcre2_match_data_8 * */
    void *mctx;            /* pcre2_match_context_8 * */
    void *jit_stack;       /* pcre2_jit_stack_8 * */
    tok_pieces a, b;
    char **owned;          /* strings made by prefix-space steps, freed with the run */
    size_t n_owned, cap_owned;
} tok_run;

msa_status tok_run_init(tok_run *r);
void tok_run_free(tok_run *r);
/* Split s[0..n) by the pre-tokenizer steps; *out points into r and stays valid until the next call. */
msa_status tok_pretokenize(const msa_tokenizer *t, tok_run *r, const char *s, size_t n, const tok_pieces **out);
/* Apply the normalizers to valid UTF-8 s; *out is malloc'd (NULL with *out_n = n when there are none). */
msa_status tok_normalize(const msa_tokenizer *t, const char *s, size_t n, char **out, size_t *out_n);

#endif
