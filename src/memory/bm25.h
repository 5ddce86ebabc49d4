/* bm25.h — a lexical (Okapi BM25) index over a bank's stored document text, for read mode's fused ranking
 * (docs/msa-deviations.md "Read mode", docs/quality.md). Native MSA mode never uses it.
 *
 * Words (msa_bm25_next_word): maximal runs of Unicode letters, marks and digits, lower-cased; no stop list, no
 * stemming (indexes of formats 1 and 2 keep the byte rule they were made by). Score of document d for query words
 * w (repeats counted): sum idf(w) tf (k1 + 1) / (tf + k1 (1 - b + b |d|/avg)), idf = ln(1 + (N - df + 0.5) / (df +
 * 0.5)), k1 = 1.2, b = 0.75 (scripts/eval_baselines.py's BM25 baseline: the same formula over ASCII words).
 *
 * Durable form: the optional file LEXICAL_BM25 in the bank directory (docs/bank-format.md, "Optional files"),
 * written atomically (temp file, fsync, rename, fsync of the directory), stamped with the bank's manifest
 * version, document count and next index so that a stale file is ignored (then read mode ranks without it),
 * and carrying the fusion weight it was measured with. Every field is checked on load (hostile input). */
#ifndef MSA_MEMORY_BM25_H
#define MSA_MEMORY_BM25_H

#include <stddef.h>
#include <stdint.h>

#include "msa.h"

#define MSA_BM25_FILE "LEXICAL_BM25"

typedef struct msa_bm25 msa_bm25;

/* Build from every live document's text. */
msa_status msa_bm25_build(const msa_bank *bank, msa_bm25 **out);
void msa_bm25_free(msa_bm25 *ix);

/* scores[d] for d < n_index (documents the index does not know score 0). */
msa_status msa_bm25_score(const msa_bm25 *ix, const char *query, size_t len, float *scores, uint64_t n_index);

/* The next word of s[*i..n) by the word rule of ix (today's when ix is NULL), lower-cased into w (at most
 * MSA_BM25_MAX_WORD bytes, a longer word cut at a character boundary): its length in bytes, 0 at the end of s.
 * *start (may be NULL) gets the word's offset in s; *i ends past its last character. */
#define MSA_BM25_MAX_WORD 64
size_t msa_bm25_next_word(const msa_bm25 *ix, const char *s, size_t n, size_t *i, char *w, size_t *start);

/* idf of the first word of word[0..len) (an unknown word has the largest idf) */
double msa_bm25_idf(const msa_bm25 *ix, const char *word, size_t len);

/* The routing weight w of the fusion stored with the index (fused = w z(routing) + (1 - w) z(bm25)). */
float msa_bm25_weight(const msa_bm25 *ix);
void msa_bm25_set_weight(msa_bm25 *ix, float w);

/* Save into dir/LEXICAL_BM25 atomically; load it back, MSA_ERR_NOT_FOUND when absent, MSA_ERR_MISMATCH when it
 * was made for another bank or another version of the bank, MSA_ERR_BAD_DATA when malformed. _stale also takes
 * an index made for an earlier version of the same bank (for msa_bm25_extend). */
msa_status msa_bm25_save(const msa_bm25 *ix, const char *dir);
msa_status msa_bm25_load(const msa_bank *bank, const char *dir, msa_bm25 **out);
msa_status msa_bm25_load_stale(const msa_bank *bank, const char *dir, msa_bm25 **out);

/* Bring an index of an earlier version of bank up to date by indexing only the documents added since: the same
 * index msa_bm25_build would make (same bytes saved), at the cost of the new documents' text. MSA_ERR_MISMATCH
 * (ix unchanged) when the bank did anything else since (a delete, a replace) or ix is of another bank or of
 * format 1; after any other error ix is half-extended and only fit to be freed. */
msa_status msa_bm25_extend(const msa_bank *bank, msa_bm25 *ix);

/* Read mode's default fusion weight: the default model's trained router alone is below BM25 on lexical questions;
 * fused at this weight it is at or above BM25 on every kind (docs/quality.md). */
#define MSA_BM25_DEFAULT_WEIGHT 0.35f

/* Make a read bank's LEXICAL_BM25 current with weight w (what `msa bank add` and `msa eval niah` leave behind, so
 * read mode fuses by default): extended when the bank only gained documents since it was written, else rebuilt
 * whole when absent, stale, unreadable or of another weight; *updated (may be NULL) says whether it was written.
 * A native bank is left alone (no fusion there). */
msa_status msa_bm25_refresh(msa_bank *bank, float w, bool *updated);

/* Whether the bank holds a current LEXICAL_BM25, and then its weight in *w (an absent, stale or unreadable one is
 * false, no error left behind): `msa bank rm` and `compact` keep a current index current, with its weight, and
 * leave an absent or stale one alone. */
bool msa_bm25_current_weight(const msa_bank *bank, float *w);

/* The directory of an open bank (owned by the bank). */
const char *msa_bm25_bank_dir(const msa_bank *bank);

#endif
