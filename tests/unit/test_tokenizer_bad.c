/* test_tokenizer_bad.c — broken and unsupported tokenizer inputs give a clear one-line error with the right
 * status and never crash: truncated JSON, wrong types, merges naming unknown tokens, huge ids and lengths,
 * unsupported models/normalizers/pre-tokenizers/decoders, bad regexes, missing files, bad GGUF vocabularies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msa.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

/* A minimal valid byte-level tokenizer.json: the bytes needed for "ab", one merge, one special token.
 * %s slots: normalizer, pre_tokenizer, decoder, extra model fields, vocab extra, merges, added_tokens. */
static char *make_json(const char *normalizer, const char *pre, const char *decoder, const char *model_extra,
                       const char *vocab_extra, const char *merges, const char *added) {
    const char *fmt =
        "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":%s,"
        "\"model\":{\"type\":\"BPE\"%s,\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3%s},\"merges\":%s}}";
    size_t n = strlen(fmt) + strlen(normalizer) + strlen(pre) + strlen(decoder) + strlen(model_extra) +
               strlen(vocab_extra) + strlen(merges) + strlen(added) + 1;
    char *s = malloc(n);
    snprintf(s, n, fmt, added, normalizer, pre, decoder, model_extra, vocab_extra, merges);
    return s;
}

#define BL "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
#define ADDED "[{\"id\":4,\"content\":\"<s>\",\"special\":true}]"

static char *good(void) { return make_json("null", BL, BL, "", "", "[\"a b\"]", ADDED); }

/* Parse json; expect status want and a one-line message containing every fragment. */
static void expect_fail(const char *json, size_t len, msa_status want, const char *frag1, const char *frag2) {
    msa_tokenizer *t = (msa_tokenizer *)1;
    msa_status st = msa_tokenizer_from_json(json, len, &t);
    const char *msg = msa_last_error();
    if (st != want) fprintf(stderr, "  got %s (%s), wanted %s\n", msa_strerror(st), msg, msa_strerror(want));
    CHECK_EQ_INT(st, want);
    CHECK(t == NULL);
    CHECK(strchr(msg, '\n') == NULL);
    CHECK(strlen(msg) > 10);
    if (frag1 && !strstr(msg, frag1)) { fprintf(stderr, "  message '%s' lacks '%s'\n", msg, frag1); CHECK(0); }
    if (frag2 && !strstr(msg, frag2)) { fprintf(stderr, "  message '%s' lacks '%s'\n", msg, frag2); CHECK(0); }
    if (st == MSA_OK) msa_tokenizer_free(t);
}

static void expect_fail_s(char *json, msa_status want, const char *frag1, const char *frag2) {
    expect_fail(json, strlen(json), want, frag1, frag2);
    free(json);
}

TEST(minimal_json_works) {
    char *j = good();
    msa_tokenizer *t;
    CHECK(msa_tokenizer_from_json(j, strlen(j), &t) == MSA_OK);
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK(msa_tokenize(t, "ab<s>ba", 7, true, &ids, &n) == MSA_OK);
        CHECK_EQ_INT(n, 4);
        if (n == 4) {
            CHECK_EQ_INT(ids[0], 2);
            CHECK_EQ_INT(ids[1], 4);
            CHECK_EQ_INT(ids[2], 1);
            CHECK_EQ_INT(ids[3], 0);
        }
        free(ids);
        /* bytes the vocabulary lacks are dropped, as HF does without unk_token */
        CHECK(msa_tokenize(t, "xyz", 3, false, &ids, &n) == MSA_OK);
        CHECK_EQ_INT(n, 0);
        free(ids);
        msa_tokenizer_free(t);
    }
    free(j);
}

TEST(truncated_json) {
    char *j = good();
    size_t n = strlen(j);
    for (size_t cut = 0; cut < n; cut += 7) expect_fail(j, cut, MSA_ERR_BAD_DATA, "line", "column");
    expect_fail("{\"model\": [1,2,}", 16, MSA_ERR_BAD_DATA, "line 1", "column");
    free(j);
}

TEST(wrong_types) {
    expect_fail("[]", 2, MSA_ERR_BAD_DATA, "top level", NULL);
    expect_fail("{}", 2, MSA_ERR_BAD_DATA, "model", NULL);
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":[1],\"merges\":[]}}", 48, MSA_ERR_BAD_DATA, "vocab", NULL);
    expect_fail_s(make_json("null", BL, BL, "", ",\"c\":\"x\"", "[]", ADDED), MSA_ERR_BAD_DATA, "vocab['c']", "integer");
    expect_fail_s(make_json("null", BL, BL, "", ",\"c\":1.5", "[]", ADDED), MSA_ERR_BAD_DATA, "vocab['c']", NULL);
    expect_fail_s(make_json("null", BL, BL, "", "", "{}", ADDED), MSA_ERR_BAD_DATA, "merges", "array");
    expect_fail_s(make_json("null", BL, BL, "", "", "[7]", ADDED), MSA_ERR_BAD_DATA, "merges[0]", NULL);
    expect_fail_s(make_json("null", BL, BL, "", "", "[[\"a\"]]", ADDED), MSA_ERR_BAD_DATA, "merges[0]", NULL);
    expect_fail_s(make_json("null", BL, BL, "", "", "[\"ab\"]", ADDED), MSA_ERR_BAD_DATA, "merges[0]", "space");
    expect_fail_s(make_json("null", BL, BL, "", "", "[]", "[{\"content\":5}]"), MSA_ERR_BAD_DATA, "added_tokens[0].content", NULL);
    expect_fail_s(make_json("null", BL, BL, "", "", "[]", "[{\"content\":\"x\",\"special\":\"yes\"}]"), MSA_ERR_BAD_DATA,
                  "added_tokens[0].special", "boolean");
    expect_fail_s(make_json("null", BL, BL, "", "", "[]", "{}"), MSA_ERR_BAD_DATA, "added_tokens", NULL);
    expect_fail_s(make_json("5", BL, BL, "", "", "[]", ADDED), MSA_ERR_BAD_DATA, "normalizer", NULL);
    expect_fail_s(make_json("null", "{\"type\":3}", BL, "", "", "[]", ADDED), MSA_ERR_BAD_DATA, "pre_tokenizer", NULL);
    expect_fail_s(make_json("null", "{\"type\":\"Split\",\"pattern\":\"x\",\"behavior\":\"Isolated\"}", BL, "", "", "[]", ADDED),
                  MSA_ERR_BAD_DATA, "Split", "pattern");
    expect_fail_s(make_json("null", BL, BL, ",\"byte_fallback\":1", "", "[]", ADDED), MSA_ERR_BAD_DATA, "byte_fallback", NULL);
}

TEST(unknown_merge_tokens) {
    expect_fail_s(make_json("null", BL, BL, "", "", "[\"a q\"]", ADDED), MSA_ERR_BAD_DATA, "merges[0]", "'q'");
    expect_fail_s(make_json("null", BL, BL, "", "", "[\"a b\",\"b a\"]", ADDED), MSA_ERR_BAD_DATA, "merges[1]", "'ba'");
    expect_fail_s(make_json("null", BL, BL, "", "", "[[\"zz\",\"a\"]]", ADDED), MSA_ERR_BAD_DATA, "'zz'", NULL);
}

TEST(huge_ids_and_lengths) {
    expect_fail_s(make_json("null", BL, BL, "", ",\"c\":1099511627776", "[]", ADDED), MSA_ERR_BAD_DATA, "out of range", NULL);
    expect_fail_s(make_json("null", BL, BL, "", ",\"c\":-1", "[]", ADDED), MSA_ERR_BAD_DATA, "out of range", NULL);
    expect_fail_s(make_json("null", BL, BL, "", ",\"c\":16000000", "[]", ADDED), MSA_ERR_BAD_DATA, "largest id", NULL);
    size_t big = 100000;
    char *tok = malloc(big + 16);
    memset(tok, 'x', big);
    tok[big] = '\0';
    char *extra = malloc(big + 32);
    snprintf(extra, big + 32, ",\"%s\":5", tok);
    expect_fail_s(make_json("null", BL, BL, "", extra, "[]", ADDED), MSA_ERR_LIMIT, "100000", NULL);
    char *added = malloc(big + 64);
    snprintf(added, big + 64, "[{\"content\":\"%s\"}]", tok);
    expect_fail_s(make_json("null", BL, BL, "", "", "[]", added), MSA_ERR_LIMIT, "added_tokens[0]", NULL);
    free(tok);
    free(extra);
    free(added);
}

TEST(unsupported_features) {
    expect_fail("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", 41, MSA_ERR_UNSUPPORTED, "WordPiece", NULL);
    expect_fail_s(make_json("{\"type\":\"Lowercase\"}", BL, BL, "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "Lowercase", NULL);
    expect_fail_s(make_json("null", "{\"type\":\"Whitespace\"}", BL, "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "Whitespace", NULL);
    expect_fail_s(make_json("null", "{\"type\":\"Digits\"}", BL, "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "ByteLevel", NULL);
    expect_fail_s(make_json("null", "null", BL, "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "pre_tokenizer", NULL);
    expect_fail_s(make_json("null", "{\"type\":\"Sequence\",\"pretokenizers\":[" BL ",{\"type\":\"Digits\"}]}", BL, "", "", "[]", ADDED),
                  MSA_ERR_UNSUPPORTED, "after ByteLevel", NULL);
    expect_fail_s(make_json("null", BL, "{\"type\":\"WordPiece\"}", "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "decoder", "WordPiece");
    expect_fail_s(make_json("null", BL, "null", "", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "decoder", NULL);
    expect_fail_s(make_json("null", BL, BL, ",\"dropout\":0.1", "", "[]", ADDED), MSA_ERR_UNSUPPORTED, "dropout", NULL);
    expect_fail_s(make_json("null", BL, BL, ",\"continuing_subword_prefix\":\"##\"", "", "[]", ADDED), MSA_ERR_UNSUPPORTED,
                  "continuing_subword_prefix", NULL);
    expect_fail_s(make_json("null", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(unclosed\"},\"behavior\":\"Isolated\"}", BL, "", "",
                            "[]", ADDED),
                  MSA_ERR_UNSUPPORTED, "regex", "offset");
    expect_fail_s(make_json("null", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}", BL, "", "", "[]",
                            ADDED),
                  MSA_ERR_UNSUPPORTED, "Sideways", NULL);
}

TEST(missing_files) {
    msa_tokenizer *t = (msa_tokenizer *)1;
    CHECK(msa_tokenizer_load("/nonexistent/tokenizer.json", &t) == MSA_ERR_NOT_FOUND);
    CHECK(t == NULL);
    CHECK(strstr(msa_last_error(), "/nonexistent/tokenizer.json") != NULL);
    char dir[] = "/tmp/msa_tok_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(msa_tokenizer_load(dir, &t) == MSA_ERR_NOT_FOUND);
    CHECK(strstr(msa_last_error(), "tokenizer.json") != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [\"a", f);
    fclose(f);
    CHECK(msa_tokenizer_load(dir, &t) == MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), path) != NULL);
    CHECK(strstr(msa_last_error(), "line 1") != NULL);
    f = fopen(path, "w");
    fclose(f);
    CHECK(msa_tokenizer_load(path, &t) == MSA_ERR_BAD_DATA);  /* empty file */
    char *j = good();
    f = fopen(path, "w");
    fputs(j, f);
    fclose(f);
    free(j);
    CHECK(msa_tokenizer_load(dir, &t) == MSA_OK);  /* the directory form */
    msa_tokenizer_free(t);
    unlink(path);
    rmdir(dir);
}

TEST(bad_vocab_desc) {
    const char *tokens[] = {"a", "b", "ab", "<s>"};
    size_t lens[] = {1, 1, 2, 3};
    int32_t types[] = {1, 1, 1, 3};
    const char *merges[] = {"a b"};
    size_t mlens[] = {3};
    msa_vocab_desc d = {.n_tokens = 4, .tokens = tokens, .token_lens = lens, .token_types = types,
                        .n_merges = 1, .merges = merges, .merge_lens = mlens, .pre = "gpt2"};
    msa_tokenizer *t = NULL;
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_OK);
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK(msa_tokenize(t, "ab<s>", 5, true, &ids, &n) == MSA_OK);
        CHECK_EQ_INT(n, 2);
        if (n == 2) CHECK_EQ_INT(ids[1], 3);
        CHECK(msa_tokenizer_is_special(t, 3));
        free(ids);
        CHECK(msa_tokenize(t, "ab<s>", 5, false, &ids, &n) == MSA_OK);
        CHECK_EQ_INT(n, 1);  /* '<', 's', '>' are not in this vocabulary: dropped, never the special id */
        free(ids);
        msa_tokenizer_free(t);
    }
    d.pre = "klingon";
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_ERR_UNSUPPORTED);
    CHECK(strstr(msa_last_error(), "klingon") != NULL);
    d.pre = NULL;
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_OK);  /* llama.cpp's default pre-tokenizer */
    msa_tokenizer_free(t);
    const char *bad_merges[] = {"ab"};
    d.merges = bad_merges;
    mlens[0] = 2;
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "merges[0]") != NULL);
    const char *unknown[] = {"a z"};
    d.merges = unknown;
    mlens[0] = 3;
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "'z'") != NULL);
    d.n_tokens = 0;
    CHECK(msa_tokenizer_from_vocab(&d, &t) == MSA_ERR_BAD_DATA);
    CHECK(msa_tokenizer_from_vocab(NULL, &t) == MSA_ERR_INVALID_ARG);
}

TEST(gguf_not_bpe) {
    /* A GGUF v3 file with tokenizer.ggml.model = "llama" (SentencePiece): unsupported, named. */
    char path[] = "/tmp/msa_tok_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "wb");
    uint32_t v32;
    uint64_t v64;
    fwrite("GGUF", 1, 4, f);
    v32 = 3; fwrite(&v32, 4, 1, f);
    v64 = 0; fwrite(&v64, 8, 1, f);  /* tensors */
    v64 = 2; fwrite(&v64, 8, 1, f);  /* kv pairs */
    const char *k1 = "general.architecture", *s1 = "llama";
    const char *k2 = "tokenizer.ggml.model", *s2 = "llama";
    v64 = strlen(k1); fwrite(&v64, 8, 1, f); fwrite(k1, 1, strlen(k1), f);
    v32 = 8; fwrite(&v32, 4, 1, f);
    v64 = strlen(s1); fwrite(&v64, 8, 1, f); fwrite(s1, 1, strlen(s1), f);
    v64 = strlen(k2); fwrite(&v64, 8, 1, f); fwrite(k2, 1, strlen(k2), f);
    v32 = 8; fwrite(&v32, 4, 1, f);
    v64 = strlen(s2); fwrite(&v64, 8, 1, f); fwrite(s2, 1, strlen(s2), f);
    for (int i = 0; i < 32; i++) fputc(0, f);  /* alignment padding */
    fclose(f);
    msa_tokenizer *t = (msa_tokenizer *)1;
    msa_status st = msa_tokenizer_load(path, &t);
    if (st != MSA_ERR_UNSUPPORTED) fprintf(stderr, "  got %s: %s\n", msa_strerror(st), msa_last_error());
    CHECK(st == MSA_ERR_UNSUPPORTED || st == MSA_ERR_BAD_DATA);
    CHECK(t == NULL);
    CHECK(strchr(msa_last_error(), '\n') == NULL);
    if (st == MSA_ERR_UNSUPPORTED) CHECK(strstr(msa_last_error(), "llama") != NULL);
    unlink(path);
}

int main(void) {
    RUN(minimal_json_works);
    RUN(truncated_json);
    RUN(wrong_types);
    RUN(unknown_merge_tokens);
    RUN(huge_ids_and_lengths);
    RUN(unsupported_features);
    RUN(missing_files);
    RUN(bad_vocab_desc);
    RUN(gguf_not_bpe);
    return test_summary();
}
