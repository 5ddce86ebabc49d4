/* bank_synth.h — deterministic synthetic documents for the bank tests: document k (and a content variant)
 * always has the same id, text, metadata, token count and vectors, so any reader can check a document it
 * finds in a bank byte for byte without knowing how it got there. */
#ifndef MSA_TEST_BANK_SYNTH_H
#define MSA_TEST_BANK_SYNTH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msa.h"

static inline uint64_t synth_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* element e of vector kind (0 route, 1 K, 2 V) of doc k/variant, slot l, chunk c: bytes of the bank dtype */
static inline void synth_elem(const msa_bank_shape *sh, uint64_t k, uint32_t variant, int kind, int l, uint64_t c,
                              uint64_t e, uint8_t *out) {
    uint64_t h = synth_mix(k * 1000003u + variant * 7919u + (uint64_t)kind * 104729u + (uint64_t)l * 131u +
                           synth_mix(c * 65537u + e));
    float f = (float)((int64_t)(h % 2001) - 1000) / 256.0f;
    if (sh->dtype == MSA_BANK_F32) {
        memcpy(out, &f, 4);
    } else {
        uint32_t u;
        memcpy(&u, &f, 4);
        uint16_t b = (uint16_t)(u >> 16); /* exact: f has few significant bits */
        memcpy(out, &b, 2);
    }
}

typedef struct synth_doc {
    msa_bank_doc d;
    char id[48];
    char meta[64];
    char *text;
    void *rk[MSA_BANK_MAX_LAYERS], *km[MSA_BANK_MAX_LAYERS], *vm[MSA_BANK_MAX_LAYERS];
} synth_doc;

static inline size_t synth_text_len(uint64_t k, uint32_t variant, size_t max_text) {
    return 1 + (size_t)(synth_mix(k * 31 + variant) % max_text);
}

static inline void synth_text(char *t, size_t len, uint64_t k, uint32_t variant) {
    static const char *words[] = {"memory ", "sparse ", "attention ", "bank ", "chunk ", "router ", "key ", "value "};
    size_t n = 0;
    for (uint64_t w = 0; n < len; w++) {
        const char *s = words[synth_mix(k ^ (w << 20) ^ variant) % 8];
        size_t sl = strlen(s);
        if (sl > len - n) sl = len - n;
        memcpy(t + n, s, sl);
        n += sl;
    }
    t[len] = '\0';
}

/* Build document k. Tokens = text bytes / 3 + 1, so chunk counts vary with the text. */
static inline int synth_make(synth_doc *s, const msa_bank_shape *sh, uint64_t k, uint32_t variant, size_t max_text) {
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "doc-%06llu", (unsigned long long)k);
    snprintf(s->meta, sizeof s->meta, "{\"k\":%llu,\"v\":%u}", (unsigned long long)k, variant);
    size_t tl = synth_text_len(k, variant, max_text);
    s->text = malloc(tl + 1);
    if (!s->text) return -1;
    synth_text(s->text, tl, k, variant);
    uint64_t n_tokens = tl / 3 + 1;
    uint32_t n_chunks = (uint32_t)((n_tokens + (uint64_t)sh->pooling - 1) / (uint64_t)sh->pooling);
    size_t es = msa_bank_dtype_size(sh->dtype);
    uint64_t kv = (uint64_t)sh->n_kv_heads * (uint64_t)sh->head_dim;
    for (int l = 0; l < sh->n_router; l++) {
        s->rk[l] = malloc(n_chunks * (uint64_t)sh->route_dim[l] * es);
        if (!s->rk[l]) return -1;
        for (uint64_t c = 0; c < n_chunks; c++)
            for (uint64_t e = 0; e < (uint64_t)sh->route_dim[l]; e++)
                synth_elem(sh, k, variant, 0, l, c, e, (uint8_t *)s->rk[l] + (c * (uint64_t)sh->route_dim[l] + e) * es);
        if (sh->mode == MSA_BANK_NATIVE) {
            s->km[l] = malloc(n_chunks * kv * es);
            s->vm[l] = malloc(n_chunks * kv * es);
            if (!s->km[l] || !s->vm[l]) return -1;
            for (uint64_t c = 0; c < n_chunks; c++)
                for (uint64_t e = 0; e < kv; e++) {
                    synth_elem(sh, k, variant, 1, l, c, e, (uint8_t *)s->km[l] + (c * kv + e) * es);
                    synth_elem(sh, k, variant, 2, l, c, e, (uint8_t *)s->vm[l] + (c * kv + e) * es);
                }
        }
    }
    s->d.id = s->id;
    s->d.text = s->text;
    s->d.text_len = tl;
    s->d.meta_json = s->meta;
    s->d.n_tokens = n_tokens;
    s->d.n_chunks = n_chunks;
    s->d.route_keys = (const void *const *)s->rk;
    s->d.k_mean = sh->mode == MSA_BANK_NATIVE ? (const void *const *)s->km : NULL;
    s->d.v_mean = sh->mode == MSA_BANK_NATIVE ? (const void *const *)s->vm : NULL;
    return 0;
}

static inline void synth_free(synth_doc *s) {
    free(s->text);
    for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) {
        free(s->rk[l]);
        free(s->km[l]);
        free(s->vm[l]);
    }
    memset(s, 0, sizeof *s);
}

/* The bank at path opened for writing (the writer lock taken). */
static inline msa_status synth_open_writable(const char *path, msa_bank **b) {
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    return msa_bank_open(path, &op, b);
}

/* A new, empty bank of the "synthetic-small" shape at path. */
static inline msa_status synth_create_small(const char *path) {
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    return msa_bank_create(path, &cp);
}

/* Documents k0 .. k0+n-1 of variant staged in b (replacing), not committed. */
static inline msa_status synth_add_docs(msa_bank *b, uint64_t k0, uint64_t n, uint32_t variant, size_t max_text) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    for (uint64_t i = 0; i < n; i++) {
        synth_doc s;
        if (synth_make(&s, &bi.shape, k0 + i, variant, max_text)) return MSA_ERR_NOMEM;
        msa_status st = msa_bank_add(b, &s.d, true, NULL, NULL);
        synth_free(&s);
        if (st) return st;
    }
    return MSA_OK;
}

/* Parse "doc-NNNNNN" and the variant from the meta; -1 when not a synthetic doc. */
static inline int synth_parse(const msa_bank_doc_info *info, uint64_t *k, uint32_t *variant) {
    unsigned long long kk;
    unsigned vv;
    if (sscanf(info->id, "doc-%llu", &kk) != 1) return -1;
    if (sscanf(info->meta_json, "{\"k\":%*u,\"v\":%u}", &vv) != 1) return -1;
    *k = kk;
    *variant = vv;
    return 0;
}

/* Check everything the bank says about a document against its synthetic definition: text, counts, hash and
 * every content vector. Returns 0 when identical, else a short reason. */
static inline const char *synth_check(const msa_bank *b, const msa_bank_doc_info *info, size_t max_text) {
    uint64_t k;
    uint32_t variant;
    if (synth_parse(info, &k, &variant)) return "not a synthetic document";
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    const msa_bank_shape *sh = &bi.shape;
    synth_doc s;
    if (synth_make(&s, sh, k, variant, max_text)) return "out of memory";
    const char *why = NULL;
    char *text = NULL;
    size_t len = 0;
    uint8_t h[16];
    msa_bank_content_hash(s.text, s.d.text_len, s.meta, h);
    if (strcmp(info->meta_json, s.meta)) why = "meta differs";
    else if (info->n_tokens != s.d.n_tokens || info->n_chunks != s.d.n_chunks) why = "token/chunk counts differ";
    else if (memcmp(info->hash, h, 16)) why = "content hash differs";
    else if (msa_bank_doc_text(b, info->index, &text, &len) != MSA_OK) why = "text unreadable";
    else if (len != s.d.text_len || memcmp(text, s.text, len)) why = "text differs";
    uint64_t half = (uint64_t)s.d.n_chunks * (uint64_t)sh->n_kv_heads * (uint64_t)sh->head_dim *
                    msa_bank_dtype_size(sh->dtype);
    for (int l = 0; !why && sh->mode == MSA_BANK_NATIVE && l < sh->n_router; l++) {
        const void *kp, *vp;
        if (msa_bank_doc_content(b, info->index, l, &kp, &vp) != MSA_OK) why = "content unreadable";
        else if (memcmp(kp, s.km[l], half) || memcmp(vp, s.vm[l], half)) why = "content differs";
    }
    free(text);
    synth_free(&s);
    return why;
}

/* Walk every routing span of every slot: each chunk must belong to a live document and carry exactly that
 * document's routing key row for its position. Returns NULL when all agree. */
static inline const char *synth_check_spans(const msa_bank *b, size_t max_text) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    const msa_bank_shape *sh = &bi.shape;
    size_t es = msa_bank_dtype_size(sh->dtype);
    uint64_t chunks_seen = 0;
    for (int l = 0; l < sh->n_router; l++) {
        const msa_bank_span *spans;
        size_t n;
        if (msa_bank_route_spans(b, l, &spans, &n)) return "spans unavailable";
        uint32_t cur = MSA_BANK_NO_DOC;
        uint64_t pos = 0;
        synth_doc s = {0};
        bool have = false;
        const char *why = NULL;
        for (size_t i = 0; i < n && !why; i++) {
            for (uint64_t c = 0; c < spans[i].n_chunks && !why; c++) {
                uint32_t idx = spans[i].doc_index[c];
                if (idx != cur) {
                    if (have && pos != s.d.n_chunks) why = "document chunks not consecutive";
                    if (have) synth_free(&s);
                    have = false;
                    msa_bank_doc_info info;
                    uint64_t k;
                    uint32_t variant;
                    if (msa_bank_doc_by_index(b, idx, &info)) why = "span chunk of a document that is not live";
                    else if (synth_parse(&info, &k, &variant) || synth_make(&s, sh, k, variant, max_text)) why = "bad doc";
                    else have = true;
                    cur = idx;
                    pos = 0;
                }
                if (why) break;
                const uint8_t *row = (const uint8_t *)spans[i].keys + c * (uint64_t)sh->route_dim[l] * es;
                if (pos >= s.d.n_chunks ||
                    memcmp(row, (const uint8_t *)s.rk[l] + pos * (uint64_t)sh->route_dim[l] * es,
                           (uint64_t)sh->route_dim[l] * es))
                    why = "routing key row differs";
                pos++;
                chunks_seen++;
            }
        }
        if (!why && have && pos != s.d.n_chunks) why = "document chunks incomplete";
        if (have) synth_free(&s);
        if (why) return why;
    }
    if (chunks_seen != bi.n_chunks * (uint64_t)sh->n_router) return "spans do not cover exactly the live chunks";
    return NULL;
}

#endif
