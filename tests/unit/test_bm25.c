/* test_bm25.c — read mode's lexical index (src/memory/bm25.c): BM25 scores against the formula on a tiny bank,
 * the LEXICAL_BM25 file's round trip (same scores, same weight), a stale file (the bank changed) refused with
 * MSA_ERR_MISMATCH, and every truncation / a flipped byte of the file refused without crashing; msa_bm25_refresh
 * (what `msa bank add` runs): a read bank's index written, kept while current, rewritten when stale or of another
 * weight; a native bank left without one; an index extended by the documents added since equals a fresh build
 * byte for byte, and one is not extended across a delete, from format 1 or from another bank; format 3's word rule
 * (Unicode letters, marks and digits; punctuation of any script and invalid UTF-8 split words), and a format-2 file
 * scored by the byte rule it was made with until refresh rebuilds it as format 3. Bounded: < 1 s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "bank_synth.h"
#include "memory/bm25.h"
#include "test.h"

#define MAX_TEXT 256

static char dir[256];

static const char *TEXTS[] = {"The whale swam past the Pequod at dawn.", "Ahab stood on the deck; the deck was wet.",
                              "Congress shall pass the budget.", "A whale, a whale! cried the lookout."};

static const char **texts = TEXTS; /* what make_bank_mode's documents hold */

static msa_bank *make_bank_mode(int n, msa_bank_mode mode) {
    msa_bank_create_params cp = {0};
    if (msa_bank_shape_named("synthetic-small", &cp.shape)) return NULL;
    cp.shape.mode = mode;
    memset(cp.fingerprint, 7, 32);
    cp.model_path = "models/test";
    if (msa_bank_create(dir, &cp)) return NULL;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    msa_bank *b = NULL;
    if (msa_bank_open(dir, &op, &b)) return NULL;
    for (int i = 0; i < n; i++) {
        synth_doc s;
        if (synth_make(&s, &cp.shape, (uint64_t)i, 0, MAX_TEXT)) return NULL;
        s.d.text = texts[i];
        s.d.text_len = strlen(texts[i]);
        msa_bank_add(b, &s.d, false, NULL, NULL);
        synth_free(&s);
    }
    msa_bank_commit(b);
    return b;
}

static msa_bank *make_bank(int n) { return make_bank_mode(n, MSA_BANK_NATIVE); }

/* one more (synthetic) document, committed: any index written before is stale after it */
static void add_one_doc(msa_bank *b) {
    synth_doc sd;
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    synth_make(&sd, &bi.shape, 9, 0, MAX_TEXT);
    msa_bank_add(b, &sd.d, false, NULL, NULL);
    synth_free(&sd);
    msa_bank_commit(b);
}

static void rm_bank(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "  cleanup of %s failed\n", dir);
}

TEST(bm25_scores_match_formula) {
    snprintf(dir, sizeof dir, "/tmp/msa-test-bm25-%d", (int)getpid());
    rm_bank();
    msa_bank *b = make_bank(4);
    CHECK(b != NULL);
    if (!b) return;
    msa_bm25 *ix = NULL;
    CHECK_EQ_INT(msa_bm25_build(b, &ix), MSA_OK);
    float s[4];
    CHECK_EQ_INT(msa_bm25_score(ix, "WHALE deck", 10, s, 4), MSA_OK);
    /* by hand: N 4; lengths 8, 9, 5, 7 words; avg 7.25; whale df 2 (tf 1, 2), deck df 1 (tf 2) */
    const double avg = 7.25, k1 = 1.2, bb = 0.75, idf_whale = log(1 + (4 - 2 + 0.5) / 2.5), idf_deck = log(1 + 3.5 / 1.5);
#define T(tf, dl) ((tf) * (k1 + 1) / ((tf) + k1 * (1 - bb + bb * (dl) / avg)))
    CHECK_NEAR(s[0], idf_whale * T(1, 8), 1e-5);
    CHECK_NEAR(s[1], idf_deck * T(2, 9), 1e-5);
    CHECK_NEAR(s[2], 0, 1e-9);
    CHECK_NEAR(s[3], idf_whale * T(2, 7), 1e-5);
    /* round trip */
    msa_bm25_set_weight(ix, 0.25f);
    CHECK_EQ_INT(msa_bm25_save(ix, dir), MSA_OK);
    msa_bm25 *ld = NULL;
    CHECK_EQ_INT(msa_bm25_load(b, dir, &ld), MSA_OK);
    if (ld) {
        float t[4];
        msa_bm25_score(ld, "WHALE deck", 10, t, 4);
        for (int i = 0; i < 4; i++) CHECK(t[i] == s[i]);
        CHECK(msa_bm25_weight(ld) == 0.25f);
        msa_bm25_free(ld);
    }
    /* hostile file: every truncation and a flipped byte are refused */
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, MSA_BM25_FILE);
    FILE *f = fopen(path, "rb");
    unsigned char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 64 && n < sizeof buf);
    int accepted = 0;
    for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
        f = fopen(path, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        msa_bm25 *x = NULL;
        if (msa_bm25_load(b, dir, &x) == MSA_OK) accepted++, msa_bm25_free(x);
    }
    for (size_t at = 0; at < n; at += 7) {
        buf[at] ^= 0x5a;
        f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        buf[at] ^= 0x5a;
        msa_bm25 *x = NULL;
        if (msa_bm25_load(b, dir, &x) == MSA_OK) accepted++, msa_bm25_free(x);
    }
    CHECK_EQ_INT(accepted, 0);
    /* stale: the bank changed after the index was written */
    CHECK_EQ_INT(msa_bm25_save(ix, dir), MSA_OK);
    msa_bm25_free(ix);
    add_one_doc(b);
    msa_bm25 *x = NULL;
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_ERR_MISMATCH);
    msa_bm25_free(x);
    msa_bank_close(b);
    rm_bank();
}

/* documents k0 .. k0+n-1 with texts of their own, committed */
static void add_docs(msa_bank *b, uint64_t k0, int n) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    static const char *more[] = {"The lookout saw a whale and a ship.", "Budget talks in Congress went on all night.",
                                 "Starbuck and Stubb lowered the boats.", "A new deck for the Pequod."};
    for (int i = 0; i < n; i++) {
        synth_doc sd;
        synth_make(&sd, &bi.shape, k0 + (uint64_t)i, 0, MAX_TEXT);
        sd.d.text = more[(k0 + (uint64_t)i) % 4];
        sd.d.text_len = strlen(sd.d.text);
        msa_bank_add(b, &sd.d, false, NULL, NULL);
        synth_free(&sd);
    }
    msa_bank_commit(b);
}

/* the saved LEXICAL_BM25's bytes (NULL when absent); *n its length */
static unsigned char *index_bytes(size_t *n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, MSA_BM25_FILE);
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    unsigned char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* b[0..n) written as the bank's LEXICAL_BM25 */
static void write_index_bytes(const void *b, size_t n) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, MSA_BM25_FILE);
    FILE *f = fopen(path, "wb");
    if (f) fwrite(b, 1, n, f), fclose(f);
}

/* What a fresh build saves, with weight w */
static unsigned char *rebuilt_bytes(msa_bank *b, float w, size_t *n) {
    msa_bm25 *ix = NULL;
    *n = 0;
    if (msa_bm25_build(b, &ix)) return NULL;
    msa_bm25_set_weight(ix, w);
    msa_status st = msa_bm25_save(ix, dir);
    msa_bm25_free(ix);
    return st ? NULL : index_bytes(n);
}

TEST(bm25_extend_equals_rebuild) {
    snprintf(dir, sizeof dir, "/tmp/msa-test-bm25x-%d", (int)getpid());
    rm_bank();
    msa_bank *b = make_bank_mode(4, MSA_BANK_READ);
    CHECK(b != NULL);
    if (!b) return;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, NULL), MSA_OK);
    add_docs(b, 100, 3);
    /* extended by the three new documents: the bytes a fresh build saves */
    msa_bm25 *x = NULL;
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_ERR_MISMATCH);
    CHECK_EQ_INT(msa_bm25_load_stale(b, dir, &x), MSA_OK);
    CHECK_EQ_INT(msa_bm25_extend(b, x), MSA_OK);
    CHECK_EQ_INT(msa_bm25_save(x, dir), MSA_OK);
    msa_bm25_free(x), x = NULL;
    size_t na, nb;
    unsigned char *a = index_bytes(&na), *r = rebuilt_bytes(b, 0.35f, &nb);
    CHECK(a && r && na == nb && na > 100 && !memcmp(a, r, na));
    free(a), free(r);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_OK); /* current again */
    if (x) {
        float sc[7];
        CHECK_EQ_INT(msa_bm25_score(x, "lookout whale", 13, sc, 7), MSA_OK);
        CHECK(sc[4] > 0 && sc[3] > 0 && sc[1] == 0); /* an added document and an old one both found */
        msa_bm25_free(x), x = NULL;
    }
    /* the same through refresh (what bank add runs) */
    add_docs(b, 200, 2);
    bool up = false;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(up);
    a = index_bytes(&na);
    r = rebuilt_bytes(b, 0.35f, &nb);
    CHECK(a && r && na == nb && !memcmp(a, r, na));
    free(a), free(r);
    /* a delete since: not extendable (refresh rebuilds) */
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_remove(b, "doc-000100"), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bm25_load_stale(b, dir, &x), MSA_OK);
    if (x) CHECK_EQ_INT(msa_bm25_extend(b, x), MSA_ERR_MISMATCH);
    msa_bm25_free(x), x = NULL;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(up);
    a = index_bytes(&na);
    r = rebuilt_bytes(b, 0.35f, &nb);
    CHECK(a && r && na == nb && !memcmp(a, r, na));
    free(r);
    /* a format-1 file (no bank uuid; written by earlier versions) is read as current, never extended */
    if (a && na > 92) {
        unsigned char *o = malloc(na);
        memcpy(o, a, 40); /* magic, format, weight, version, live documents, next index; then the uuid */
        memcpy(o + 40, a + 56, na - 56 - 8);
        const uint32_t one = 1;
        memcpy(o + 8, &one, 4);
        const uint64_t h = XXH64(o, na - 24, 0);
        memcpy(o + na - 24, &h, 8);
        write_index_bytes(o, na - 16);
        free(o);
        CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_OK);
        if (x) CHECK_EQ_INT(msa_bm25_extend(b, x), MSA_ERR_MISMATCH);
        msa_bm25_free(x), x = NULL;
    }
    /* another bank's index with the same counts and version is refused: the bank uuid differs */
    msa_bank_close(b);
    snprintf(dir, sizeof dir, "/tmp/msa-test-bm25x-%d-other", (int)getpid());
    rm_bank();
    msa_bank *b2 = make_bank_mode(4, MSA_BANK_READ);
    CHECK(b2 != NULL);
    if (b2) {
        CHECK_EQ_INT(msa_bm25_refresh(b2, 0.35f, NULL), MSA_OK);
        size_t n2;
        unsigned char *i2 = index_bytes(&n2);
        msa_bank_close(b2);
        snprintf(dir, sizeof dir, "/tmp/msa-test-bm25x-%d", (int)getpid());
        rm_bank();
        b = make_bank_mode(4, MSA_BANK_READ);
        CHECK(b != NULL);
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, MSA_BM25_FILE);
        FILE *f = fopen(path, "wb");
        if (f && i2) fwrite(i2, 1, n2, f);
        if (f) fclose(f);
        free(i2);
        if (b) {
            CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_ERR_MISMATCH);
            msa_bm25_free(x), x = NULL;
            msa_bank_close(b);
        }
        rm_bank();
        snprintf(dir, sizeof dir, "/tmp/msa-test-bm25x-%d-other", (int)getpid());
    }
    rm_bank();
    free(a);
}

static bool index_exists(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, MSA_BM25_FILE);
    return access(path, F_OK) == 0;
}

TEST(bm25_refresh_read_bank_only) {
    snprintf(dir, sizeof dir, "/tmp/msa-test-bm25r-%d", (int)getpid());
    rm_bank();
    msa_bank *b = make_bank_mode(4, MSA_BANK_NATIVE);
    CHECK(b != NULL);
    if (!b) return;
    bool up = true;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(!up && !index_exists()); /* native: no fusion, no index */
    msa_bank_close(b);
    rm_bank();
    b = make_bank_mode(4, MSA_BANK_READ);
    CHECK(b != NULL);
    if (!b) return;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(up && index_exists());
    msa_bm25 *x = NULL;
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_OK);
    if (x) {
        CHECK(msa_bm25_weight(x) == 0.35f);
        msa_bm25_free(x);
        x = NULL;
    }
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(!up); /* current and the same weight: not rewritten */
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.5f, &up), MSA_OK);
    CHECK(up);
    add_one_doc(b);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_ERR_MISMATCH); /* stale after the add */
    msa_bm25_free(x), x = NULL;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.5f, &up), MSA_OK);
    CHECK(up);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &x), MSA_OK);
    if (x) {
        float s[5];
        CHECK_EQ_INT(msa_bm25_score(x, "whale", 5, s, 5), MSA_OK);
        CHECK(s[0] > 0 && s[2] == 0); /* rebuilt over the bank's text */
        msa_bm25_free(x);
    }
    msa_bank_close(b);
    rm_bank();
}

/* this index's bytes with its format field set to fmt and the checksum redone, written back */
static void rewrite_format(uint32_t fmt) {
    size_t n;
    unsigned char *a = index_bytes(&n);
    if (!a || n < 24) {
        free(a);
        return;
    }
    memcpy(a + 8, &fmt, 4);
    const uint64_t h = XXH64(a, n - 8, 0);
    memcpy(a + n - 8, &h, 8);
    write_index_bytes(a, n);
    free(a);
}

TEST(bm25_unicode_words) {
    static const char *uni[] = {"\u201cThe whale\u2014ship,\u201d said Ahab.", "\u00dcBER den Flu\u00df, na\u00efve caf\u00e9.",
                                "the plain deck", "bad \xff bytes\xc3 here"};
    texts = uni;
    snprintf(dir, sizeof dir, "/tmp/msa-test-bm25u-%d", (int)getpid());
    rm_bank();
    msa_bank *b = make_bank_mode(4, MSA_BANK_READ);
    texts = TEXTS;
    CHECK(b != NULL);
    if (!b) return;
    msa_bm25 *ix = NULL;
    CHECK_EQ_INT(msa_bm25_build(b, &ix), MSA_OK);
    if (!ix) return;
    float s[4];
#define SCORE(ix, q) msa_bm25_score((ix), (q), strlen(q), s, 4)
    CHECK_EQ_INT(SCORE(ix, "the"), MSA_OK);
    CHECK(s[0] > 0 && s[2] > 0 && s[1] == 0); /* the curly quote is not part of the word */
    SCORE(ix, "ship");
    CHECK(s[0] > 0); /* nor the em dash */
    SCORE(ix, "\u00fcber NA\u00cfVE");
    CHECK(s[1] > 0 && s[0] == 0 && s[2] == 0); /* lower-cased beyond ASCII, in the document and the question */
    const float both = s[1];
    SCORE(ix, "\u00fcber");
    CHECK(s[1] > 0 && s[1] < both);
    SCORE(ix, "bytes here bad");
    CHECK(s[3] > 0 && s[0] == 0); /* invalid UTF-8 separates words */
    CHECK(msa_bm25_idf(ix, "\u201cthe\u201d", 9) == msa_bm25_idf(ix, "the", 3));
    CHECK(msa_bm25_idf(ix, "whale", 5) > msa_bm25_idf(ix, "the", 3));
    msa_bm25_set_weight(ix, 0.35f);
    CHECK_EQ_INT(msa_bm25_save(ix, dir), MSA_OK);
    msa_bm25_free(ix), ix = NULL;
    /* a format-2 file: scored by the byte rule, under which "\u201cthe\u201d" is one word of its own */
    rewrite_format(2);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &ix), MSA_OK);
    if (ix) {
        SCORE(ix, "\u201cthe\u201d");
        CHECK(s[0] == 0 && s[2] == 0);
        SCORE(ix, "the");
        CHECK(s[0] > 0 && s[2] > 0);
        msa_bm25_free(ix), ix = NULL;
    }
    /* refresh rebuilds it by today's rule although it is current with the same weight */
    bool up = false;
    CHECK_EQ_INT(msa_bm25_refresh(b, 0.35f, &up), MSA_OK);
    CHECK(up);
    size_t n;
    unsigned char *a = index_bytes(&n);
    uint32_t fmt = 0;
    if (a && n > 12) memcpy(&fmt, a + 8, 4);
    CHECK_EQ_INT((int)fmt, 3);
    free(a);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &ix), MSA_OK);
    if (ix) {
        SCORE(ix, "\u201cthe\u201d");
        CHECK(s[0] > 0 && s[2] > 0);
        msa_bm25_free(ix);
    }
#undef SCORE
    /* a format beyond this code's is refused */
    rewrite_format(4);
    CHECK_EQ_INT(msa_bm25_load(b, dir, &ix), MSA_ERR_BAD_DATA);
    msa_bank_close(b);
    rm_bank();
}

int main(void) {
    RUN(bm25_scores_match_formula);
    RUN(bm25_unicode_words);
    RUN(bm25_refresh_read_bank_only);
    RUN(bm25_extend_equals_rebuild);
    return test_summary();
}
