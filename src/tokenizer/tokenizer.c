/* tokenizer.c — msa_tokenizer: construction helpers shared by the tokenizer.json and GGUF readers, and the
 * public encode/decode API of include/msa.h (pipeline in tok_internal.h). A tokenizer is immutable after
 * loading; encode keeps all its scratch per call, so one tokenizer serves many threads at once. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

msa_tokenizer *tok_new(void) {
    msa_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->byte_fallback_id[b] = -1;
    return t;
}

void msa_tokenizer_free(msa_tokenizer *t) {
    if (!t) return;
    free(t->str_off);
    free(t->str_len);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->flags);
    free(t->blob);
    tok_strmap_free(&t->vocab);
    tok_strmap_free(&t->bytes_vocab);
    tok_pairmap_free(&t->merges);
    tok_pre_free(t);
    free(t->added);
    tok_strmap_free(&t->added_map);
    for (int k = 0; k < 2; k++) {
        free(t->cand_start[k]);
        free(t->cand[k]);
    }
    free(t);
}

msa_status tok_blob_add(msa_tokenizer *t, const char *s, size_t len, uint32_t *off) {
    if (len > TOK_MAX_TOKEN_BYTES) return msa_fail(MSA_ERR_LIMIT, "token of %zu bytes (limit %d)", len, TOK_MAX_TOKEN_BYTES);
    if (t->blob_len + len + 1 > t->blob_cap) {
        size_t ncap = t->blob_cap ? t->blob_cap * 2 : 1 << 16;
        while (ncap < t->blob_len + len + 1) ncap *= 2;
        if (ncap > UINT32_MAX) return msa_fail(MSA_ERR_LIMIT, "vocabulary strings exceed 4 GiB");
        char *nb = realloc(t->blob, ncap);
        if (!nb) return msa_fail(MSA_ERR_NOMEM, "out of memory for vocabulary strings");
        t->blob = nb;
        t->blob_cap = ncap;
    }
    if (len) memcpy(t->blob + t->blob_len, s, len);
    t->blob[t->blob_len + len] = '\0';
    *off = (uint32_t)t->blob_len;
    t->blob_len += len + 1;
    return MSA_OK;
}

msa_status tok_alloc_ids(msa_tokenizer *t, size_t n_ids) {
    if (n_ids > TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "vocabulary of %zu ids (limit %d)", n_ids, TOK_MAX_ID);
    size_t old = t->n_ids;
    if (n_ids <= old) return MSA_OK;
    uint32_t *a = realloc(t->str_off, n_ids * sizeof *a);
    if (a) t->str_off = a;
    uint32_t *b = realloc(t->str_len, n_ids * sizeof *b);
    if (b) t->str_len = b;
    uint32_t *c = realloc(t->bytes_off, n_ids * sizeof *c);
    if (c) t->bytes_off = c;
    uint32_t *d = realloc(t->bytes_len, n_ids * sizeof *d);
    if (d) t->bytes_len = d;
    uint8_t *f = realloc(t->flags, n_ids);
    if (f) t->flags = f;
    if (!a || !b || !c || !d || !f) return msa_fail(MSA_ERR_NOMEM, "out of memory for %zu ids", n_ids);
    memset(t->flags + old, 0, n_ids - old);
    for (size_t i = old; i < n_ids; i++) t->str_off[i] = t->str_len[i] = t->bytes_off[i] = t->bytes_len[i] = 0;
    t->n_ids = n_ids;
    return MSA_OK;
}

/* The bytes a token stands for: its string read in the byte-level alphabet, or, when any character lies
 * outside it (added tokens such as "中"), the string itself — as HF's ByteLevel decoder does per token. */
static msa_status decode_token_bytes(msa_tokenizer *t, int32_t id, uint32_t str_off, uint32_t str_len) {
    const uint8_t *s = (const uint8_t *)t->blob + str_off;
    size_t n = str_len;
    char tmp[TOK_MAX_TOKEN_BYTES];
    size_t o = 0, i = 0;
    bool alphabet = true;
    while (i < n && alphabet) {
        uint32_t cp;
        size_t l = tok_utf8_decode(s + i, n - i, &cp);
        int b = l ? tok_cp_to_byte(cp) : -1;
        if (b < 0) alphabet = false;
        else tmp[o++] = (char)b;
        i += l;
    }
    if (!alphabet) {
        t->bytes_off[id] = str_off;
        t->bytes_len[id] = str_len;
        return MSA_OK;
    }
    uint32_t off;
    MSA_TRY(tok_blob_add(t, tmp, o, &off));
    t->bytes_off[id] = off;
    t->bytes_len[id] = (uint32_t)o;
    return MSA_OK;
}

msa_status tok_set_id(msa_tokenizer *t, int32_t id, uint32_t off, uint32_t len, uint8_t flags) {
    if (id < 0 || (size_t)id >= t->n_ids) return msa_fail(MSA_ERR_BAD_DATA, "token id %d out of range", (int)id);
    if (t->flags[id] & TOK_FLAG_PRESENT) {
        t->flags[id] |= flags;  /* keep the first string for decoding, as a duplicate id has two */
        return MSA_OK;
    }
    t->str_off[id] = off;
    t->str_len[id] = len;
    t->flags[id] = (uint8_t)(flags | TOK_FLAG_PRESENT);
    return decode_token_bytes(t, id, off, len);
}

msa_status tok_index_vocab(msa_tokenizer *t) {
    for (size_t id = 0; id < t->n_ids; id++)
        if (t->flags[id] & TOK_FLAG_PRESENT)
            MSA_TRY(tok_strmap_put(&t->vocab, t->blob + t->str_off[id], t->str_len[id], (int32_t)id));
    return MSA_OK;
}

static void shorten(const char *s, size_t n, char out[64]) {
    size_t k = 0;
    for (size_t i = 0; i < n && k < 60; i++) out[k++] = ((unsigned char)s[i] >= 0x20 && s[i] != 0x7f) ? s[i] : '?';
    if (n > 60) { out[57] = out[58] = out[59] = '.'; k = 60; }
    out[k] = '\0';
}

msa_status tok_add_merge(msa_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, uint32_t rank) {
    int32_t ia, ib, inew;
    char sa[64];
    if (!tok_strmap_get(&t->vocab, a, alen, &ia)) {
        shorten(a, alen, sa);
        return msa_fail(MSA_ERR_BAD_DATA, "merges[%u]: token '%s' is not in the vocabulary", (unsigned)rank, sa);
    }
    if (!tok_strmap_get(&t->vocab, b, blen, &ib)) {
        shorten(b, blen, sa);
        return msa_fail(MSA_ERR_BAD_DATA, "merges[%u]: token '%s' is not in the vocabulary", (unsigned)rank, sa);
    }
    if (alen + blen > TOK_MAX_TOKEN_BYTES)
        return msa_fail(MSA_ERR_BAD_DATA, "merges[%u]: merged token is too long", (unsigned)rank);
    char cat[2 * TOK_MAX_TOKEN_BYTES];
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    if (!tok_strmap_get(&t->vocab, cat, alen + blen, &inew)) {
        shorten(cat, alen + blen, sa);
        return msa_fail(MSA_ERR_BAD_DATA, "merges[%u]: merged token '%s' is not in the vocabulary", (unsigned)rank, sa);
    }
    return tok_pairmap_put(&t->merges, ia, ib, rank, inew);
}

msa_status tok_add_added(msa_tokenizer *t, const char *content, size_t len, size_t model_vocab_len, bool special,
                         bool lstrip, bool rstrip, bool single_word, bool normalized) {
    if (len == 0) return MSA_OK;  /* HF ignores empty added tokens */
    int32_t id, idx;
    if (!tok_strmap_get(&t->vocab, content, len, &id)) {
        int64_t next = (int64_t)model_vocab_len;
        if (t->n_added > 0) {
            int32_t max = -1;
            for (size_t i = 0; i < t->n_added; i++) max = t->added[i].id > max ? t->added[i].id : max;
            if ((size_t)max >= model_vocab_len || model_vocab_len == 0) next = (int64_t)max + 1;
        }
        if (next >= TOK_MAX_ID) return msa_fail(MSA_ERR_LIMIT, "added token id %lld beyond the limit", (long long)next);
        id = (int32_t)next;
        uint32_t off;
        MSA_TRY(tok_blob_add(t, content, len, &off));
        if ((size_t)id >= t->n_ids) MSA_TRY(tok_alloc_ids(t, (size_t)id + 1));
        /* With holes in the vocabulary the new id can be a model token's; HF then decodes the id as the added
         * token (its added map is consulted first), while the model string still encodes to it. */
        t->flags[id] &= (uint8_t)~TOK_FLAG_PRESENT;
        MSA_TRY(tok_set_id(t, id, off, (uint32_t)len, t->flags[id]));
        MSA_TRY(tok_strmap_put(&t->vocab, content, len, id));
    }
    tok_added a = {.off = t->str_off[id], .len = t->str_len[id], .norm_off = t->str_off[id],
                   .norm_len = t->str_len[id], .id = id, .special = special, .lstrip = lstrip,
                   .rstrip = rstrip, .single_word = single_word, .normalized = normalized};
    if (a.len != len) {  /* the id's first string differs (duplicate id in the vocabulary): keep this one */
        uint32_t off;
        MSA_TRY(tok_blob_add(t, content, len, &off));
        a.off = a.norm_off = off;
        a.len = a.norm_len = (uint32_t)len;
    }
    t->flags[id] |= TOK_FLAG_ADDED;
    if (special) t->flags[id] |= TOK_FLAG_SPECIAL;
    if (tok_strmap_get(&t->added_map, content, len, &idx)) {
        t->added[idx] = a;
        return MSA_OK;
    }
    if (t->n_added >= TOK_MAX_ADDED) return msa_fail(MSA_ERR_LIMIT, "more than %d added tokens", TOK_MAX_ADDED);
    if (t->n_added == t->n_added_alloc) {
        size_t ncap = t->n_added_alloc ? t->n_added_alloc * 2 : 32;
        tok_added *na = realloc(t->added, ncap * sizeof *na);
        if (!na) return msa_fail(MSA_ERR_NOMEM, "out of memory for added tokens");
        t->added = na;
        t->n_added_alloc = ncap;
    }
    MSA_TRY(tok_strmap_put(&t->added_map, content, len, (int32_t)t->n_added));
    t->added[t->n_added++] = a;
    return MSA_OK;
}

msa_status tok_finish(msa_tokenizer *t) {
    for (size_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_FLAG_MODEL)) continue;
        bool alphabet = t->bytes_off[id] != t->str_off[id] || t->str_len[id] == 0;
        if (alphabet && t->ignore_merges) {
            const char *b = t->blob + t->bytes_off[id];
            int32_t prev;
            if (!tok_strmap_get(&t->bytes_vocab, b, t->bytes_len[id], &prev))
                MSA_TRY(tok_strmap_put(&t->bytes_vocab, b, t->bytes_len[id], (int32_t)id));
        }
    }
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        size_t l = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), tmp);
        int32_t id;
        t->byte_id[b] = tok_strmap_get(&t->vocab, tmp, l, &id) ? id : -1;
        if (t->byte_fallback) {
            static const char hex[] = "0123456789ABCDEF";
            char fb[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            t->byte_fallback_id[b] = tok_strmap_get(&t->vocab, fb, 6, &id) ? id : -1;
        }
    }
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        if (!a->normalized || t->n_norm == 0) continue;
        char *norm;
        size_t nn;
        MSA_TRY(tok_normalize(t, t->blob + a->off, a->len, &norm, &nn));
        if (norm) {
            uint32_t off;
            msa_status st = tok_blob_add(t, norm, nn, &off);
            free(norm);
            MSA_TRY(st);
            a->norm_off = off;
            a->norm_len = (uint32_t)nn;
            /* HF decodes a normalized added token as its normalized text ("ﬁx" -> "fix") */
            MSA_TRY(decode_token_bytes(t, a->id, off, (uint32_t)nn));
        }
    }
    tok_strmap_free(&t->added_map);
    return tok_added_index(t);
}

/* ---------------------------------------------------------------------------------------------- encode */

typedef struct enc {
    const msa_tokenizer *t;
    bool parse_special;
    tok_run run;
    tok_bpe_scratch bpe;
    tok_segs segs2;
    tok_ids out;
} enc;

/* A span of text between pass-1 added tokens: normalize, split out normalized added tokens, pre-tokenize,
 * BPE. */
static msa_status encode_segment(enc *e, const char *s, size_t n) {
    const msa_tokenizer *t = e->t;
    char *norm = NULL;
    size_t nn;
    MSA_TRY(tok_normalize(t, s, n, &norm, &nn));
    const char *ns = norm ? norm : s;
    msa_status st = tok_added_split(t, ns, nn, 1, e->parse_special, &e->segs2);
    for (size_t i = 0; i < e->segs2.n && st == MSA_OK; i++) {
        tok_seg g = e->segs2.v[i];
        if (g.id >= 0) {
            st = tok_ids_push(&e->out, g.id);
            continue;
        }
        const tok_pieces *pieces;
        st = tok_pretokenize(t, &e->run, ns + g.s, g.e - g.s, &pieces);
        for (size_t k = 0; k < pieces->n && st == MSA_OK; k++)
            st = tok_bpe_piece(t, &e->bpe, pieces->v[k].p, pieces->v[k].n, &e->out);
    }
    free(norm);
    return st;
}

msa_status msa_tokenize(const msa_tokenizer *tok, const char *text, size_t len, bool parse_special, int32_t **ids,
                        size_t *n_ids) {
    if (!tok || !ids || !n_ids || (!text && len)) return msa_fail(MSA_ERR_INVALID_ARG, "msa_tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    char *clean;
    size_t n;
    MSA_TRY(tok_utf8_sanitize(text ? text : "", len, &clean, &n));
    const char *s = clean ? clean : (text ? text : "");
    enc e = {.t = tok, .parse_special = parse_special};
    msa_status st = tok_run_init(&e.run);
    tok_segs segs = {0};
    if (st == MSA_OK) st = tok_added_split(tok, s, n, 0, parse_special, &segs);
    for (size_t i = 0; i < segs.n && st == MSA_OK; i++) {
        if (segs.v[i].id >= 0) st = tok_ids_push(&e.out, segs.v[i].id);
        else st = encode_segment(&e, s + segs.v[i].s, segs.v[i].e - segs.v[i].s);
    }
    free(segs.v);
    free(e.segs2.v);
    tok_run_free(&e.run);
    tok_bpe_scratch_free(&e.bpe);
    free(clean);
    if (st != MSA_OK) {
        free(e.out.v);
        return st;
    }
    *ids = e.out.v;
    *n_ids = e.out.n;
    return MSA_OK;
}

/* ---------------------------------------------------------------------------------------------- decode */

static bool valid_id(const msa_tokenizer *t, int32_t id) {
    return id >= 0 && (size_t)id < t->n_ids && (t->flags[id] & TOK_FLAG_PRESENT);
}

msa_status msa_detokenize(const msa_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text, size_t *len) {
    if (!tok || !text || !len || (!ids && n_ids)) return msa_fail(MSA_ERR_INVALID_ARG, "msa_detokenize: NULL argument");
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (!valid_id(tok, ids[i]))
            return msa_fail(MSA_ERR_INVALID_ARG, "msa_detokenize: ids[%zu] = %d is not a token id (vocabulary of %zu)", i,
                            (int)ids[i], tok->n_ids);
        total += tok->bytes_len[ids[i]];
    }
    char *o = malloc(total + 1);
    if (!o) return msa_fail(MSA_ERR_NOMEM, "msa_detokenize: out of memory for %zu bytes", total);
    size_t k = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(o + k, tok->blob + tok->bytes_off[ids[i]], tok->bytes_len[ids[i]]);
        k += tok->bytes_len[ids[i]];
    }
    o[k] = '\0';
    *text = o;
    *len = k;
    return MSA_OK;
}

int msa_token_to_piece(const msa_tokenizer *tok, int32_t id, char *buf, size_t buf_size) {
    if (!tok || !valid_id(tok, id)) return -1;
    size_t n = tok->bytes_len[id];
    if (buf) memcpy(buf, tok->blob + tok->bytes_off[id], n < buf_size ? n : buf_size);
    return (int)n;
}

int32_t msa_tokenizer_find(const msa_tokenizer *tok, const char *piece) {
    int32_t id;
    if (!tok || !piece) return -1;
    return tok_strmap_get(&tok->vocab, piece, strlen(piece), &id) ? id : -1;
}

size_t msa_tokenizer_vocab_size(const msa_tokenizer *tok) { return tok ? tok->n_ids : 0; }

bool msa_tokenizer_is_special(const msa_tokenizer *tok, int32_t id) {
    return tok && valid_id(tok, id) && (tok->flags[id] & TOK_FLAG_SPECIAL);
}
