/* strmap.h — two small open-addressing hash maps for the tokenizer: byte strings -> int32 (vocabulary,
 * per-call piece cache) and id pairs -> BPE merge (rank, merged id). Keys are copied into the map. */
#ifndef MSA_TOKENIZER_STRMAP_H
#define MSA_TOKENIZER_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"

typedef struct tok_strent {
    uint64_t hash;
    uint32_t off, len;     /* key bytes in keys[off .. off+len) */
    int32_t val;
    uint32_t used;
} tok_strent;

typedef struct tok_strmap {
    tok_strent *ents;      /* [cap], cap a power of two */
    size_t cap, count;
    char *keys;
    size_t keys_len, keys_cap;
} tok_strmap;

/* Insert or overwrite. */
msa_status tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val);
bool tok_strmap_get(const tok_strmap *m, const char *key, size_t len, int32_t *val);
void tok_strmap_free(tok_strmap *m);

typedef struct tok_pairent {
    uint64_t key;          /* left id << 32 | right id */
    uint32_t rank;
    int32_t new_id;        /* -1: empty slot */
} tok_pairent;

typedef struct tok_pairmap {
    tok_pairent *ents;     /* [cap], cap a power of two */
    size_t cap, count;
} tok_pairmap;

msa_status tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
/* NULL when the pair is not a merge. */
const tok_pairent *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b);
void tok_pairmap_free(tok_pairmap *m);

#endif
