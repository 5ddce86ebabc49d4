/* strmap.c — the tokenizer's hash maps (see strmap.h). Linear probing, load factor at most 1/2. */
#include "tokenizer/strmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/error.h"

static msa_status strmap_grow(tok_strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    tok_strent *ne = calloc(ncap, sizeof *ne);
    if (!ne) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for a hash map of %zu entries", ncap);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->ents[i].used) continue;
        size_t j = (size_t)m->ents[i].hash & (ncap - 1);
        while (ne[j].used) j = (j + 1) & (ncap - 1);
        ne[j] = m->ents[i];
    }
    free(m->ents);
    m->ents = ne;
    m->cap = ncap;
    return MSA_OK;
}

msa_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val) {
    if (len > UINT32_MAX / 2) return msa_fail(MSA_ERR_LIMIT, "tokenizer: string of %zu bytes is too long", len);
    if ((m->count + 1) * 2 > m->cap) MSA_TRY(strmap_grow(m));
    uint64_t h = XXH3_64bits(key, len);
    size_t j = (size_t)h & (m->cap - 1);
    while (m->ents[j].used) {
        tok_strent *e = &m->ents[j];
        if (e->hash == h && e->len == len && memcmp(m->keys + e->off, key, len) == 0) {
            e->val = val;
            return MSA_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t ncap = m->keys_cap ? m->keys_cap : 4096;
        while (ncap < m->keys_len + len) ncap *= 2;
        if (ncap > UINT32_MAX) return msa_fail(MSA_ERR_LIMIT, "tokenizer: hash map keys exceed 4 GiB");
        char *nk = realloc(m->keys, ncap);
        if (!nk) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for hash map keys");
        m->keys = nk;
        m->keys_cap = ncap;
    }
    if (len) memcpy(m->keys + m->keys_len, key, len);
    m->ents[j] = (tok_strent){.hash = h, .off = (uint32_t)m->keys_len, .len = (uint32_t)len, .val = val, .used = 1};
    m->keys_len += len;
    m->count++;
    return MSA_OK;
}

bool tok_strmap_get(const tok_strmap *m, const char *key, size_t len, int32_t *val) {
    if (!m->cap) return false;
    uint64_t h = XXH3_64bits(key, len);
    size_t j = (size_t)h & (m->cap - 1);
    while (m->ents[j].used) {
        const tok_strent *e = &m->ents[j];
        if (e->hash == h && e->len == len && memcmp(m->keys + e->off, key, len) == 0) {
            *val = e->val;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->ents);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static msa_status pairmap_grow(tok_pairmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    tok_pairent *ne = malloc(ncap * sizeof *ne);
    if (!ne) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for %zu merges", ncap);
    for (size_t i = 0; i < ncap; i++) ne[i].new_id = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->ents[i].new_id < 0) continue;
        size_t j = pair_slot(m->ents[i].key, ncap);
        while (ne[j].new_id >= 0) j = (j + 1) & (ncap - 1);
        ne[j] = m->ents[i];
    }
    free(m->ents);
    m->ents = ne;
    m->cap = ncap;
    return MSA_OK;
}

msa_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    if ((m->count + 1) * 2 > m->cap) MSA_TRY(pairmap_grow(m));
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = pair_slot(key, m->cap);
    while (m->ents[j].new_id >= 0) {
        if (m->ents[j].key == key) {  /* a later duplicate overrides, as a Rust HashMap collect does */
            m->ents[j].rank = rank;
            m->ents[j].new_id = new_id;
            return MSA_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->ents[j] = (tok_pairent){.key = key, .rank = rank, .new_id = new_id};
    m->count++;
    return MSA_OK;
}

const tok_pairent *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b) {
    if (!m->cap) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t j = pair_slot(key, m->cap);
    while (m->ents[j].new_id >= 0) {
        if (m->ents[j].key == key) return &m->ents[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->ents);
    memset(m, 0, sizeof *m);
}
