/* safetensors.c — the safetensors format (8-byte little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the raw data section), single files and sharded directories
 * (model.safetensors.index.json). Tensors point into the mmap; nothing is copied. Every header field is
 * hostile: lengths bounded, offsets checked against the data section, byte sizes against dtype x shape. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/weights_set.h"
#include "util/error.h"
#include "util/mmap.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB, the limit the reference implementation uses */
#define ST_MAX_INDEX ((size_t)64 << 20)      /* model.safetensors.index.json */
#define ST_MAX_PATH 4096
#define ST_MAX_SHARDS 4096 /* keeps the shard de-duplication cheap; real checkpoints have a few dozen */

typedef struct { const char *name; int supported; msa_dtype dtype; } st_dtype_info;

/* Every dtype the safetensors format defines; only the float formats msa computes with are supported. */
static const st_dtype_info st_dtypes[] = {
    {"F32", 1, MSA_DTYPE_F32}, {"F16", 1, MSA_DTYPE_F16}, {"BF16", 1, MSA_DTYPE_BF16},
    {"F64", 0, 0}, {"I8", 0, 0}, {"U8", 0, 0}, {"I16", 0, 0}, {"U16", 0, 0}, {"I32", 0, 0}, {"U32", 0, 0},
    {"I64", 0, 0}, {"U64", 0, 0}, {"BOOL", 0, 0}, {"F8_E4M3", 0, 0}, {"F8_E5M2", 0, 0}, {"F8_E8M0", 0, 0},
    {"F6_E2M3", 0, 0}, {"F6_E3M2", 0, 0}, {"F4", 0, 0}, {"C64", 0, 0},
};

typedef struct { uint64_t begin, end; const char *name; } st_range;

static int range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int json_is_nonneg_int(const json_t *v) { return json_is_integer(v) && json_integer_value(v) >= 0; }

/* Parse one tensor entry and add it to w. data/data_len is the data section. */
static msa_status parse_tensor(msa_weights *w, const char *label, const char *name, json_t *v,
                               const uint8_t *data, uint64_t data_len, int source, st_range *range) {
    if (!json_is_object(v)) return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': entry is not an object", label, name);
    json_t *jdtype = json_object_get(v, "dtype"), *jshape = json_object_get(v, "shape");
    json_t *joff = json_object_get(v, "data_offsets");
    if (!json_is_string(jdtype))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': missing or non-string 'dtype'", label, name);
    if (!json_is_array(jshape))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': missing or non-array 'shape'", label, name);
    if (!json_is_array(joff) || json_array_size(joff) != 2 || !json_is_nonneg_int(json_array_get(joff, 0)) ||
        !json_is_nonneg_int(json_array_get(joff, 1)))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': 'data_offsets' must be [begin, end] (non-negative integers)",
                        label, name);

    const char *dname = json_string_value(jdtype);
    const st_dtype_info *info = NULL;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(dname, st_dtypes[i].name) == 0) info = &st_dtypes[i];
    if (!info) return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': unknown dtype '%.32s'", label, name, dname);
    if (!info->supported)
        return msa_fail(MSA_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16 are)",
                        label, name, info->name);

    size_t n_dims = json_array_size(jshape);
    if (n_dims > MSA_MAX_DIMS)
        return msa_fail(MSA_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d supported)", label, name,
                        n_dims, MSA_MAX_DIMS);
    int64_t shape[MSA_MAX_DIMS];
    for (size_t i = 0; i < n_dims; i++) {
        json_t *d = json_array_get(jshape, i);
        if (!json_is_nonneg_int(d))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': shape[%zu] is not a non-negative integer", label, name, i);
        shape[i] = (int64_t)json_integer_value(d);
    }
    int64_t nel = msa_shape_nelements((int)n_dims, shape);
    size_t esize = info->dtype == MSA_DTYPE_F32 ? 4 : 2;
    uint64_t want;
    if (nel < 0 || __builtin_mul_overflow((uint64_t)nel, (uint64_t)esize, &want))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': shape too large", label, name);

    uint64_t begin = (uint64_t)json_integer_value(json_array_get(joff, 0));
    uint64_t end = (uint64_t)json_integer_value(json_array_get(joff, 1));
    if (begin > end || end > data_len)
        return msa_fail(MSA_ERR_BAD_DATA,
                        "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%llu bytes)", label,
                        name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_len);
    if (end - begin != want)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': %llu bytes stored but %s x %lld elements need %llu", label,
                        name, (unsigned long long)(end - begin), info->name, (long long)nel,
                        (unsigned long long)want);
    if (want && ((uintptr_t)(data + begin)) % esize)
        /* kernels read elements through typed pointers; every real writer pads the header to keep them aligned */
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': data is not aligned to its %zu-byte elements", label,
                        name, esize);
    range->begin = begin;
    range->end = end;
    range->name = name;
    return msa_weights_add(w, name, strlen(name), info->dtype, (int)n_dims, shape, data + begin, (size_t)want, source);
}

/* Parse a whole safetensors file image into w (tensors tagged with source). */
static msa_status parse_into(msa_weights *w, const uint8_t *buf, size_t len, const char *label, int source) {
    if (len < 8) return msa_fail(MSA_ERR_BAD_DATA, "%s: truncated (%zu bytes, no header length)", label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: header length %llu exceeds the %llu-byte limit (not a safetensors file?)",
                        label, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > len - 8)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: truncated: header of %llu bytes but only %zu follow", label,
                        (unsigned long long)hlen, len - 8);
    if (hlen < 2) return msa_fail(MSA_ERR_BAD_DATA, "%s: header too short", label);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return msa_fail(MSA_ERR_BAD_DATA, "%s: header is not valid JSON: %s (offset %d)", label, jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: header is not a JSON object", label);
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    size_t n = json_object_size(root);
    st_range *ranges = calloc(n ? n : 1, sizeof *ranges);
    if (!ranges) {
        json_decref(root);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    msa_status st = MSA_OK;
    size_t nr = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            /* free-form string -> string map; checked for shape only, not used */
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: '__metadata__' is not an object", label);
                break;
            }
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    st = msa_fail(MSA_ERR_BAD_DATA, "%s: __metadata__ value '%s' is not a string", label, mk);
                    break;
                }
            }
            if (st) break;
            continue;
        }
        if (key[0] == '\0') {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: empty tensor name", label);
            break;
        }
        st = parse_tensor(w, label, key, val, data, data_len, source, &ranges[nr]);
        if (st) break;
        nr++;
    }
    if (!st && nr > 1) {
        /* overlapping byte ranges would let one tensor alias another; the format forbids them */
        qsort(ranges, nr, sizeof *ranges, range_cmp);
        size_t last = SIZE_MAX; /* the non-empty range reaching furthest so far */
        for (size_t i = 0; i < nr; i++) {
            if (ranges[i].begin == ranges[i].end) continue;
            if (last != SIZE_MAX && ranges[i].begin < ranges[last].end) {
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensors '%s' and '%s' overlap", label, ranges[last].name,
                              ranges[i].name);
                break;
            }
            last = i;
        }
    }
    free(ranges);
    json_decref(root);
    return st;
}

msa_status msa_safetensors_parse(const uint8_t *buf, size_t len, msa_weights **out) {
    *out = NULL;
    msa_weights *w;
    MSA_TRY(msa_weights_new(&w));
    msa_status st = parse_into(w, buf, len, "safetensors", 0);
    if (!st) st = msa_weights_freeze(w, "safetensors");
    if (st) {
        msa_weights_free(w);
        return st;
    }
    *out = w;
    return MSA_OK;
}

/* Map one file and parse it into w with the given source tag. */
static msa_status load_file(msa_weights *w, const char *path, int source) {
    msa_mapped_file m;
    MSA_TRY(msa_map_file(path, 0, &m));
    const uint8_t *data = m.data;
    size_t size = m.size;
    msa_status st = msa_weights_add_map(w, &m, NULL);
    if (st) {
        msa_unmap_file(&m);
        return st;
    }
    return parse_into(w, data, size, path, source);
}

/* A shard name from the index must be a plain file name in the model directory. */
static int safe_shard_name(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && strlen(s) < 256;
}

static msa_status load_index(msa_weights *w, const char *dir, const char *index_path) {
    char *text;
    size_t len;
    MSA_TRY(msa_read_file(index_path, ST_MAX_INDEX, &text, &len));
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) return msa_fail(MSA_ERR_BAD_DATA, "%s: not valid JSON: %s (line %d)", index_path, jerr.text, jerr.line);
    msa_status st = MSA_OK;
    json_t *map = json_object_get(root, "weight_map");
    const char **shards = NULL; /* distinct shard names, in first-seen order (point into root) */
    size_t n_shards = 0;
    if (!json_is_object(root) || !json_is_object(map)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: missing 'weight_map' object", index_path);
        goto done;
    }
    shards = calloc(json_object_size(map) + 1, sizeof *shards);
    if (!shards) {
        st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        if (!json_is_string(file) || !safe_shard_name(json_string_value(file))) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': shard must be a plain file name", index_path, name);
            goto done;
        }
        const char *f = json_string_value(file);
        size_t i = 0;
        while (i < n_shards && strcmp(shards[i], f) != 0) i++;
        if (i == n_shards && n_shards == ST_MAX_SHARDS) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: more than %d shard files", index_path, ST_MAX_SHARDS);
            goto done;
        }
        if (i == n_shards) shards[n_shards++] = f;
    }
    if (n_shards == 0) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: 'weight_map' is empty", index_path);
        goto done;
    }
    for (size_t i = 0; i < n_shards; i++) {
        char path[ST_MAX_PATH];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, shards[i]) >= sizeof path) {
            st = msa_fail(MSA_ERR_INVALID_ARG, "%s: path too long", dir);
            goto done;
        }
        st = load_file(w, path, (int)i);
        if (st) goto done;
    }
    st = msa_weights_freeze(w, dir);
    if (st) goto done;
    json_object_foreach(map, name, file) {
        const char *f = json_string_value(file);
        const msa_tensor *t = msa_weights_find(w, name);
        if (!t) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' listed in the index is missing from %s", dir, name, f);
            goto done;
        }
        int src = msa_weights_source(w, (size_t)(t - msa_weights_at(w, 0)));
        if (src < 0 || strcmp(shards[src], f) != 0) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' is in %s, but the index says %s", dir, name,
                          src >= 0 ? shards[src] : "?", f);
            goto done;
        }
    }
done:
    free(shards);
    json_decref(root);
    return st;
}

msa_status msa_safetensors_open(const char *path, msa_weights **out) {
    *out = NULL;
    msa_weights *w;
    MSA_TRY(msa_weights_new(&w));
    msa_status st;
    if (msa_path_is_dir(path)) {
        char index[ST_MAX_PATH], single[ST_MAX_PATH];
        if ((size_t)snprintf(index, sizeof index, "%s/model.safetensors.index.json", path) >= sizeof index ||
            (size_t)snprintf(single, sizeof single, "%s/model.safetensors", path) >= sizeof single) {
            st = msa_fail(MSA_ERR_INVALID_ARG, "%s: path too long", path);
        } else if (msa_path_is_file(index)) {
            st = load_index(w, path, index);
        } else if (msa_path_is_file(single)) {
            st = load_file(w, single, 0);
            if (!st) st = msa_weights_freeze(w, single);
        } else {
            st = msa_fail(MSA_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", path);
        }
    } else {
        st = load_file(w, path, 0);
        if (!st) st = msa_weights_freeze(w, path);
    }
    if (st) {
        msa_weights_free(w);
        return st;
    }
    *out = w;
    return MSA_OK;
}
