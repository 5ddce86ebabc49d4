/* weights.c — the named tensor set shared by the safetensors and GGUF loaders: storage, name index, the
 * mappings that own the bytes, and the header hash used in the model fingerprint. */
#include "io/weights_set.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/error.h"

struct msa_weights {
    msa_tensor *tensors;     /* n of them; names are malloc'd copies */
    int *sources;            /* loader tag per tensor */
    size_t n, cap;
    size_t *index;           /* open-addressing table of tensor index + 1 (0 = empty); index_cap slots */
    size_t index_cap;
    msa_mapped_file *maps;   /* mappings owned by the set */
    size_t n_maps;
};

msa_status msa_weights_new(msa_weights **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    return MSA_OK;
}

msa_status msa_weights_add_map(msa_weights *w, msa_mapped_file *m, size_t *index) {
    msa_mapped_file *maps = realloc(w->maps, (w->n_maps + 1) * sizeof *maps);
    if (!maps) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    w->maps = maps;
    maps[w->n_maps] = *m;
    m->data = NULL;
    m->size = 0;
    if (index) *index = w->n_maps;
    w->n_maps++;
    return MSA_OK;
}

int64_t msa_shape_nelements(int n_dims, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
    }
    return n;
}

msa_status msa_weights_add(msa_weights *w, const char *name, size_t name_len, msa_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data, size_t nbytes, int source) {
    if (n_dims < 0 || n_dims > MSA_MAX_DIMS) return msa_fail(MSA_ERR_INTERNAL, "tensor rank %d", n_dims);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        msa_tensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        w->tensors = t;
        int *s = realloc(w->sources, cap * sizeof *s);
        if (!s) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        w->sources = s;
        w->cap = cap;
    }
    char *copy = malloc(name_len + 1);
    if (!copy) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    msa_tensor *t = &w->tensors[w->n];
    memset(t, 0, sizeof *t);
    t->name = copy;
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int i = 0; i < MSA_MAX_DIMS; i++) t->shape[i] = i < n_dims ? shape[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->sources[w->n] = source;
    w->n++;
    return MSA_OK;
}

int msa_weights_source(const msa_weights *w, size_t i) { return i < w->n ? w->sources[i] : -1; }

static uint64_t name_hash(const char *name) { return XXH3_64bits(name, strlen(name)); }

msa_status msa_weights_freeze(msa_weights *w, const char *label) {
    size_t cap = 16;
    while (cap < w->n * 2) cap *= 2;
    free(w->index);
    w->index = calloc(cap, sizeof *w->index);
    if (!w->index) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    w->index_cap = cap;
    for (size_t i = 0; i < w->n; i++) {
        size_t slot = (size_t)name_hash(w->tensors[i].name) & (cap - 1);
        while (w->index[slot]) {
            if (strcmp(w->tensors[w->index[slot] - 1].name, w->tensors[i].name) == 0)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' appears twice", label, w->tensors[i].name);
            slot = (slot + 1) & (cap - 1);
        }
        w->index[slot] = i + 1;
    }
    return MSA_OK;
}

size_t msa_weights_count(const msa_weights *w) { return w ? w->n : 0; }

const msa_tensor *msa_weights_at(const msa_weights *w, size_t i) {
    return w && i < w->n ? &w->tensors[i] : NULL;
}

const msa_tensor *msa_weights_find(const msa_weights *w, const char *name) {
    if (!w || !w->index_cap || !name) return NULL;
    size_t slot = (size_t)name_hash(name) & (w->index_cap - 1);
    while (w->index[slot]) {
        const msa_tensor *t = &w->tensors[w->index[slot] - 1];
        if (strcmp(t->name, name) == 0) return t;
        slot = (slot + 1) & (w->index_cap - 1);
    }
    return NULL;
}

void msa_weights_free(msa_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free((char *)w->tensors[i].name);
    for (size_t i = 0; i < w->n_maps; i++) msa_unmap_file(&w->maps[i]);
    free(w->tensors);
    free(w->sources);
    free(w->index);
    free(w->maps);
    free(w);
}

uint64_t msa_weights_header_hash(const msa_weights *w) {
    XXH3_state_t *st = XXH3_createState();
    if (!st) return 0;
    XXH3_64bits_reset(st);
    for (size_t i = 0; w && i < w->n; i++) {
        const msa_tensor *t = &w->tensors[i];
        /* fixed-width fields so that different name/shape splits cannot collide by concatenation */
        XXH3_64bits_update(st, t->name, strlen(t->name) + 1);
        int32_t meta[2] = {(int32_t)t->dtype, (int32_t)t->n_dims};
        XXH3_64bits_update(st, meta, sizeof meta);
        XXH3_64bits_update(st, t->shape, sizeof t->shape);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}
