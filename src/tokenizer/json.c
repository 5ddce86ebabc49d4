/* json.c — reading a Hugging Face tokenizer.json (jansson) into an msa_tokenizer.
 * Supported: model BPE (vocab; merges as "a b" strings or [a, b] pairs; byte_fallback, unk_token, fuse_unk,
 * ignore_merges), normalizers NFC/NFD/NFKC/NFKD and Sequences of them, pre-tokenizers Split (Regex or String
 * pattern, any behaviour, invert), Digits and ByteLevel (last) and Sequences of them, decoder ByteLevel,
 * added_tokens with all their flags. Anything else is MSA_ERR_UNSUPPORTED naming the feature; malformed
 * input is MSA_ERR_BAD_DATA naming the JSON path (or line and column). The post_processor is ignored:
 * msa never adds BOS/EOS in tokenize. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#define JSON_MAX_BYTES ((size_t)1 << 30)

static const char *type_of(json_t *obj) {
    json_t *ty = json_object_get(obj, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* Optional boolean field: absent or null gives def; another type is bad data. */
static msa_status get_bool(json_t *obj, const char *key, bool def, const char *where, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) { *out = def; return MSA_OK; }
    if (!json_is_boolean(v)) return msa_fail(MSA_ERR_BAD_DATA, "%s.%s is not a boolean", where, key);
    *out = json_is_true(v);
    return MSA_OK;
}

static msa_status parse_normalizer(msa_tokenizer *t, json_t *n, int depth) {
    if (!n || json_is_null(n)) return MSA_OK;
    if (!json_is_object(n)) return msa_fail(MSA_ERR_BAD_DATA, "normalizer is not an object");
    if (depth > 8) return msa_fail(MSA_ERR_UNSUPPORTED, "normalizer: Sequences nested too deeply");
    const char *ty = type_of(n);
    if (!ty) return msa_fail(MSA_ERR_BAD_DATA, "normalizer has no \"type\" string");
    static const struct { const char *name; tok_norm_kind kind; } forms[] = {
        {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        if (strcmp(ty, forms[i].name)) continue;
        if (t->n_norm >= TOK_MAX_PRE_STEPS) return msa_fail(MSA_ERR_LIMIT, "normalizer: more than %d steps", TOK_MAX_PRE_STEPS);
        t->norm[t->n_norm++] = forms[i].kind;
        return MSA_OK;
    }
    if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return msa_fail(MSA_ERR_BAD_DATA, "normalizer Sequence has no \"normalizers\" array");
        for (size_t i = 0; i < json_array_size(list); i++) MSA_TRY(parse_normalizer(t, json_array_get(list, i), depth + 1));
        return MSA_OK;
    }
    return msa_fail(MSA_ERR_UNSUPPORTED, "normalizer '%.64s' is not supported (NFC, NFD, NFKC, NFKD, Sequence)", ty);
}

static msa_status parse_behavior(json_t *v, tok_split_behavior *out) {
    static const struct { const char *name; tok_split_behavior b; } names[] = {
        {"Removed", TOK_SPLIT_REMOVED},         {"Isolated", TOK_SPLIT_ISOLATED},
        {"MergedWithPrevious", TOK_SPLIT_MERGED_PREV}, {"MergedWithNext", TOK_SPLIT_MERGED_NEXT},
        {"Contiguous", TOK_SPLIT_CONTIGUOUS}};
    if (!json_is_string(v)) return msa_fail(MSA_ERR_BAD_DATA, "pre_tokenizer Split: \"behavior\" is not a string");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(json_string_value(v), names[i].name)) { *out = names[i].b; return MSA_OK; }
    return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer Split: behavior '%.64s'", json_string_value(v));
}

static msa_status parse_pre(msa_tokenizer *t, json_t *p, int depth, bool *saw_bytelevel) {
    if (!json_is_object(p)) return msa_fail(MSA_ERR_BAD_DATA, "pre_tokenizer is not an object");
    if (depth > 8) return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: Sequences nested too deeply");
    const char *ty = type_of(p);
    if (!ty) return msa_fail(MSA_ERR_BAD_DATA, "pre_tokenizer has no \"type\" string");
    if (*saw_bytelevel)
        return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: '%.64s' after ByteLevel (ByteLevel must be last)", ty);
    if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list)) return msa_fail(MSA_ERR_BAD_DATA, "pre_tokenizer Sequence has no \"pretokenizers\" array");
        for (size_t i = 0; i < json_array_size(list); i++)
            MSA_TRY(parse_pre(t, json_array_get(list, i), depth + 1, saw_bytelevel));
        return MSA_OK;
    }
    if (!strcmp(ty, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
        json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
        if (!json_is_string(re) && !json_is_string(str))
            return msa_fail(MSA_ERR_BAD_DATA, "pre_tokenizer Split: \"pattern\" is not {\"Regex\": ...} or {\"String\": ...}");
        tok_split_behavior b = TOK_SPLIT_ISOLATED;
        MSA_TRY(parse_behavior(json_object_get(p, "behavior"), &b));
        bool invert = false;
        MSA_TRY(get_bool(p, "invert", false, "pre_tokenizer Split", &invert));
        json_t *s = json_is_string(re) ? re : str;
        return tok_pre_add_split(t, json_string_value(s), json_string_length(s), !json_is_string(re), b, invert);
    }
    if (!strcmp(ty, "Digits")) {
        bool individual = false;
        MSA_TRY(get_bool(p, "individual_digits", false, "pre_tokenizer Digits", &individual));
        return tok_pre_add_digits(t, individual);
    }
    if (!strcmp(ty, "ByteLevel")) {
        bool prefix = true, use_regex = true;
        MSA_TRY(get_bool(p, "add_prefix_space", true, "pre_tokenizer ByteLevel", &prefix));
        MSA_TRY(get_bool(p, "use_regex", true, "pre_tokenizer ByteLevel", &use_regex));
        *saw_bytelevel = true;
        return tok_pre_add_bytelevel(t, prefix, use_regex);
    }
    return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer '%.64s' is not supported (Split, Digits, ByteLevel, Sequence)", ty);
}

static msa_status check_decoder(json_t *d, int depth) {
    if (!d || json_is_null(d)) return msa_fail(MSA_ERR_UNSUPPORTED, "decoder: none (only ByteLevel is supported)");
    if (!json_is_object(d)) return msa_fail(MSA_ERR_BAD_DATA, "decoder is not an object");
    const char *ty = type_of(d);
    if (!ty) return msa_fail(MSA_ERR_BAD_DATA, "decoder has no \"type\" string");
    if (!strcmp(ty, "ByteLevel")) return MSA_OK;
    if (!strcmp(ty, "Sequence") && depth < 8) {
        json_t *list = json_object_get(d, "decoders");
        if (!json_is_array(list) || json_array_size(list) == 0)
            return msa_fail(MSA_ERR_BAD_DATA, "decoder Sequence has no \"decoders\" array");
        for (size_t i = 0; i < json_array_size(list); i++) MSA_TRY(check_decoder(json_array_get(list, i), depth + 1));
        return MSA_OK;
    }
    return msa_fail(MSA_ERR_UNSUPPORTED, "decoder '%.64s' is not supported (only ByteLevel)", ty);
}

static msa_status check_empty_or_null(json_t *model, const char *key) {
    json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v)) return MSA_OK;
    if (json_is_string(v) && json_string_length(v) == 0) return MSA_OK;
    return msa_fail(MSA_ERR_UNSUPPORTED, "model.%s is set (not supported for byte-level BPE)", key);
}

static msa_status parse_vocab(msa_tokenizer *t, json_t *vocab) {
    if (!json_is_object(vocab)) return msa_fail(MSA_ERR_BAD_DATA, "model.vocab is not an object");
    size_t count = json_object_size(vocab);
    if (count > TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "model.vocab has %zu tokens (limit %d)", count, TOK_MAX_ID);
    const char *key;
    json_t *val;
    json_int_t max_id = -1;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val))
            return msa_fail(MSA_ERR_BAD_DATA, "model.vocab['%.64s'] is not an integer id", key);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= TOK_MAX_ID)
            return msa_fail(MSA_ERR_BAD_DATA, "model.vocab['%.64s'] = %lld is out of range", key, (long long)id);
        if (id > max_id) max_id = id;
    }
    /* Bounded memory: ids may have holes, but not arbitrarily many. */
    if ((size_t)(max_id + 1) > 2 * count + 65536)
        return msa_fail(MSA_ERR_BAD_DATA, "model.vocab: largest id %lld for only %zu tokens", (long long)max_id, count);
    MSA_TRY(tok_alloc_ids(t, (size_t)(max_id + 1)));
    json_object_foreach(vocab, key, val) {
        uint32_t off;
        size_t klen = strlen(key);
        MSA_TRY(tok_blob_add(t, key, klen, &off));
        MSA_TRY(tok_set_id(t, (int32_t)json_integer_value(val), off, (uint32_t)klen, TOK_FLAG_MODEL));
    }
    return tok_index_vocab(t);
}

static msa_status parse_merges(msa_tokenizer *t, json_t *merges) {
    if (!merges || json_is_null(merges)) return MSA_OK;
    if (!json_is_array(merges)) return msa_fail(MSA_ERR_BAD_DATA, "model.merges is not an array");
    size_t n = json_array_size(merges);
    if (n > TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "model.merges has %zu entries", n);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t len = json_string_length(m);
            const char *sp = memchr(s, ' ', len);
            if (!sp) return msa_fail(MSA_ERR_BAD_DATA, "model.merges[%zu] has no space between its two tokens", i);
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = len - alen - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            blen = json_string_length(json_array_get(m, 1));
        } else {
            return msa_fail(MSA_ERR_BAD_DATA, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
        }
        MSA_TRY(tok_add_merge(t, a, alen, b, blen, (uint32_t)i));
    }
    return MSA_OK;
}

static msa_status parse_model(msa_tokenizer *t, json_t *model, size_t *model_vocab_len) {
    if (!json_is_object(model)) return msa_fail(MSA_ERR_BAD_DATA, "\"model\" is missing or not an object");
    const char *ty = type_of(model);
    if (ty && strcmp(ty, "BPE"))
        return msa_fail(MSA_ERR_UNSUPPORTED, "model type '%.64s' is not supported (only BPE)", ty);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return msa_fail(MSA_ERR_UNSUPPORTED, "model.dropout is set (BPE dropout is not supported)");
    MSA_TRY(check_empty_or_null(model, "continuing_subword_prefix"));
    MSA_TRY(check_empty_or_null(model, "end_of_word_suffix"));
    MSA_TRY(get_bool(model, "byte_fallback", false, "model", &t->byte_fallback));
    MSA_TRY(get_bool(model, "fuse_unk", false, "model", &t->fuse_unk));
    MSA_TRY(get_bool(model, "ignore_merges", false, "model", &t->ignore_merges));
    json_t *vocab = json_object_get(model, "vocab");
    MSA_TRY(parse_vocab(t, vocab));
    *model_vocab_len = json_object_size(vocab);
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) return msa_fail(MSA_ERR_BAD_DATA, "model.unk_token is not a string");
        int32_t id;
        if (tok_strmap_get(&t->vocab, json_string_value(unk), json_string_length(unk), &id)) t->unk_id = id;
    }
    return parse_merges(t, json_object_get(model, "merges"));
}

static msa_status parse_added(msa_tokenizer *t, json_t *list, size_t model_vocab_len) {
    if (!list || json_is_null(list)) return MSA_OK;
    if (!json_is_array(list)) return msa_fail(MSA_ERR_BAD_DATA, "added_tokens is not an array");
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *a = json_array_get(list, i);
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(a)) return msa_fail(MSA_ERR_BAD_DATA, "%s is not an object", where);
        json_t *content = json_object_get(a, "content");
        if (!json_is_string(content)) return msa_fail(MSA_ERR_BAD_DATA, "%s.content is not a string", where);
        json_t *id = json_object_get(a, "id");
        if (id && !json_is_integer(id)) return msa_fail(MSA_ERR_BAD_DATA, "%s.id is not an integer", where);
        bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
        MSA_TRY(get_bool(a, "special", false, where, &special));
        MSA_TRY(get_bool(a, "lstrip", false, where, &lstrip));
        MSA_TRY(get_bool(a, "rstrip", false, where, &rstrip));
        MSA_TRY(get_bool(a, "single_word", false, where, &single_word));
        MSA_TRY(get_bool(a, "normalized", !special, where, &normalized));
        if (json_string_length(content) > TOK_MAX_TOKEN_BYTES)
            return msa_fail(MSA_ERR_LIMIT, "%s.content is %zu bytes long", where, json_string_length(content));
        MSA_TRY(tok_add_added(t, json_string_value(content), json_string_length(content), model_vocab_len, special,
                              lstrip, rstrip, single_word, normalized));
    }
    return MSA_OK;
}

msa_status tok_from_json_named(const char *json, size_t len, const char *name, msa_tokenizer **out) {
    *out = NULL;
    if (len > JSON_MAX_BYTES) return msa_fail(MSA_ERR_LIMIT, "%s: %zu bytes is larger than the 1 GiB limit", name, len);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    if (!root) return msa_fail(MSA_ERR_BAD_DATA, "%s: line %d column %d: %s", name, err.line, err.column, err.text);
    msa_tokenizer *t = tok_new();
    msa_status st = t ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    size_t model_vocab_len = 0;
    bool saw_bytelevel = false;
    if (st == MSA_OK && !json_is_object(root)) st = msa_fail(MSA_ERR_BAD_DATA, "the top level is not an object");
    if (st == MSA_OK) st = parse_model(t, json_object_get(root, "model"), &model_vocab_len);
    if (st == MSA_OK) st = parse_normalizer(t, json_object_get(root, "normalizer"), 0);
    if (st == MSA_OK) {
        json_t *pre = json_object_get(root, "pre_tokenizer");
        if (!pre || json_is_null(pre)) st = msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: none (a ByteLevel step is required)");
        else st = parse_pre(t, pre, 0, &saw_bytelevel);
        if (st == MSA_OK && !saw_bytelevel)
            st = msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer has no ByteLevel step (only byte-level BPE is supported)");
    }
    if (st == MSA_OK) st = check_decoder(json_object_get(root, "decoder"), 0);
    if (st == MSA_OK) st = parse_added(t, json_object_get(root, "added_tokens"), model_vocab_len);
    if (st == MSA_OK) st = tok_finish(t);
    json_decref(root);
    if (st != MSA_OK) {
        msa_tokenizer_free(t);
        if (strncmp(msa_last_error(), name, strlen(name)) != 0) msa_fail_prefix(st, "%s", name);
        return st;
    }
    *out = t;
    return MSA_OK;
}

msa_status msa_tokenizer_from_json(const char *json, size_t len, msa_tokenizer **out) {
    if (!json || !out) return msa_fail(MSA_ERR_INVALID_ARG, "msa_tokenizer_from_json: NULL argument");
    return tok_from_json_named(json, len, "tokenizer.json", out);
}
