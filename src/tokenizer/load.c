/* load.c — msa_tokenizer_load: a tokenizer.json file, a directory holding one, or a GGUF file (its
 * tokenizer.ggml.* metadata). Files are read whole (bounded); errors name the path. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

msa_status tok_from_json_named(const char *json, size_t len, const char *name, msa_tokenizer **out);

#define MAX_FILE ((size_t)1 << 30)

static msa_status read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file", path);
        return msa_fail(MSA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat stt;
    if (fstat(fileno(f), &stt) != 0 || !S_ISREG(stt.st_mode)) {
        fclose(f);
        return msa_fail(MSA_ERR_IO, "%s: not a regular file", path);
    }
    if ((size_t)stt.st_size > MAX_FILE) {
        fclose(f);
        return msa_fail(MSA_ERR_LIMIT, "%s: %lld bytes is larger than the 1 GiB limit", path, (long long)stt.st_size);
    }
    size_t n = (size_t)stt.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(b);
        return msa_fail(MSA_ERR_IO, "%s: read failed", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MSA_OK;
}

static msa_status load_gguf(const char *path, msa_tokenizer **out) {
    msa_gguf *g;
    MSA_TRY(msa_gguf_open(path, &g));
    msa_status st = MSA_OK;
    const char *model, *pre_s;
    size_t model_len, pre_len, n_tokens = 0, n_merges = 0, n_types = 0;
    const int32_t *types = NULL;
    char pre[64];
    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    if (!msa_gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: no tokenizer.ggml.model", path);
    } else if (model_len != 4 || memcmp(model, "gpt2", 4)) {
        st = msa_fail(MSA_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported (only gpt2, byte-level BPE)",
                      path, (int)(model_len > 32 ? 32 : model_len), model);
    } else if (!msa_gguf_get_str_array(g, "tokenizer.ggml.tokens", &n_tokens)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: no tokenizer.ggml.tokens string array", path);
    } else if (!msa_gguf_get_str_array(g, "tokenizer.ggml.merges", &n_merges)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: no tokenizer.ggml.merges string array", path);
    }
    if (st == MSA_OK && msa_gguf_get_i32_array(g, "tokenizer.ggml.token_type", &types, &n_types) && n_types != n_tokens)
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: tokenizer.ggml.token_type has %zu entries for %zu tokens", path, n_types, n_tokens);
    bool have_pre = false;
    if (st == MSA_OK && msa_gguf_get_str(g, "tokenizer.ggml.pre", &pre_s, &pre_len)) {
        if (pre_len >= sizeof pre) st = msa_fail(MSA_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre is too long", path);
        else {
            memcpy(pre, pre_s, pre_len);
            pre[pre_len] = '\0';
            have_pre = true;
        }
    }
    if (st == MSA_OK) {
        tokens = malloc((n_tokens ? n_tokens : 1) * sizeof *tokens);
        token_lens = malloc((n_tokens ? n_tokens : 1) * sizeof *token_lens);
        merges = malloc((n_merges ? n_merges : 1) * sizeof *merges);
        merge_lens = malloc((n_merges ? n_merges : 1) * sizeof *merge_lens);
        if (!tokens || !token_lens || !merges || !merge_lens) st = msa_fail(MSA_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < n_tokens && st == MSA_OK; i++)
        if (!msa_gguf_str_array_at(g, "tokenizer.ggml.tokens", i, &tokens[i], &token_lens[i]))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tokenizer.ggml.tokens[%zu] unreadable", path, i);
    for (size_t i = 0; i < n_merges && st == MSA_OK; i++)
        if (!msa_gguf_str_array_at(g, "tokenizer.ggml.merges", i, &merges[i], &merge_lens[i]))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tokenizer.ggml.merges[%zu] unreadable", path, i);
    if (st == MSA_OK) {
        msa_vocab_desc d = {.n_tokens = n_tokens, .tokens = tokens, .token_lens = token_lens, .token_types = types,
                            .n_merges = n_merges, .merges = merges, .merge_lens = merge_lens,
                            .pre = have_pre ? pre : NULL};
        st = msa_tokenizer_from_vocab(&d, out);
        if (st != MSA_OK) msa_fail_prefix(st, "%s", path);
    }
    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    msa_gguf_free(g);
    return st;
}

msa_status msa_tokenizer_load(const char *path, msa_tokenizer **out) {
    if (!path || !out) return msa_fail(MSA_ERR_INVALID_ARG, "msa_tokenizer_load: NULL argument");
    *out = NULL;
    struct stat stt;
    if (stat(path, &stt) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file or directory", path);
    char *file = NULL;
    if (S_ISDIR(stt.st_mode)) {
        size_t n = strlen(path) + sizeof "/tokenizer.json";
        file = malloc(n);
        if (!file) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        snprintf(file, n, "%s/tokenizer.json", path);
    }
    const char *p = file ? file : path;
    char magic[4] = {0};
    FILE *f = fopen(p, "rb");
    if (f) {
        size_t got = fread(magic, 1, 4, f);
        (void)got;
        fclose(f);
    }
    msa_status st;
    if (!memcmp(magic, "GGUF", 4)) {
        st = load_gguf(p, out);
    } else {
        char *buf = NULL;
        size_t len = 0;
        st = read_file(p, &buf, &len);
        if (st == MSA_OK) {
            st = tok_from_json_named(buf, len, p, out);
            free(buf);
        }
    }
    free(file);
    return st;
}
