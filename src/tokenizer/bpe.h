/* bpe.h — BPE merging of one pre-tokenized piece (bpe.c) and the growable id list encode writes into. */
#ifndef MSA_TOKENIZER_BPE_H
#define MSA_TOKENIZER_BPE_H

#include "tokenizer/tok_internal.h"

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

msa_status tok_ids_push(tok_ids *o, int32_t id);

typedef struct tok_symbol {
    int32_t id;
    int32_t prev, next;    /* neighbours in the symbol list, -1 at the ends */
    uint32_t len;          /* bytes covered; 0 once merged into its left neighbour */
} tok_symbol;

/* Per-call scratch: symbol and heap arrays, and the piece -> ids cache. Zero-initialise; free after use. */
typedef struct tok_bpe_scratch {
    tok_symbol *sym;
    void *heap;
    size_t cap;            /* symbols that fit; the heap holds 3x */
    tok_strmap cache;      /* piece bytes -> offset in cache_ids of {count, ids...} */
    tok_ids cache_ids;
} tok_bpe_scratch;

void tok_bpe_scratch_free(tok_bpe_scratch *s);

/* Append the ids of piece p[0..n) to out. */
msa_status tok_bpe_piece(const msa_tokenizer *t, tok_bpe_scratch *s, const char *p, size_t n, tok_ids *out);

#endif
