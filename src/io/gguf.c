/* gguf.c — GGUF v2/v3 files (ggml's single-file model format): header, typed metadata (scalars, strings,
 * nested arrays), tensor infos and the aligned data section. Tensors point into the mapping; their ggml
 * ne[] (innermost first) is turned into our outermost-first shape. Every count, length and offset comes
 * from a hostile file and is checked against the bytes that remain before it is used. */
#include "io/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/hparams_check.h"
#include "io/weights_set.h"
#include "util/error.h"
#include "util/mmap.h"

enum {
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY,
    GGUF_U64, GGUF_I64, GGUF_F64, GGUF_NTYPES
};
#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_MAX_ARRAY_DEPTH 4
#define GGUF_MAX_NAME 256      /* tensor names (ggml itself allows 63 bytes) */
#define GGUF_MAX_KEY 65536
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_kv {
    const char *key;        /* into the buffer, key_len bytes, no NUL inside */
    size_t key_len;
    int type, elem_type;    /* elem_type for arrays, else -1 */
    uint64_t count;         /* array element count */
    size_t off;             /* scalar value / string length field / first array element */
    const char *str;        /* strings: the bytes */
    size_t str_len;
    size_t *str_offs;       /* string arrays: offset of each element's length field (owned) */
    void *copy;             /* i32 / f32 arrays: an aligned copy (owned) */
} gguf_kv;

struct msa_gguf {
    msa_mapped_file map;    /* when opened from a file */
    const uint8_t *buf;
    size_t len;
    uint32_t version;
    gguf_kv *kv;
    size_t n_kv;
    size_t *kv_index;       /* open addressing, kv index + 1, kv_index_cap slots */
    size_t kv_index_cap;
    size_t alignment;
    msa_weights *w;
};

typedef struct reader {
    const uint8_t *buf;
    size_t len, pos;
    const char *label;
} reader;

static msa_status truncated(reader *r, const char *what) {
    return msa_fail(MSA_ERR_BAD_DATA, "%s: truncated at byte %zu while reading %s", r->label, r->pos, what);
}

static msa_status rd_bytes(reader *r, size_t n, const uint8_t **p, const char *what) {
    if (n > r->len - r->pos) return truncated(r, what);
    *p = r->buf + r->pos;
    r->pos += n;
    return MSA_OK;
}

static msa_status rd_u32(reader *r, uint32_t *v, const char *what) {
    const uint8_t *p = NULL;
    MSA_TRY(rd_bytes(r, 4, &p, what));
    memcpy(v, p, 4);
    return MSA_OK;
}

static msa_status rd_u64(reader *r, uint64_t *v, const char *what) {
    const uint8_t *p = NULL;
    MSA_TRY(rd_bytes(r, 8, &p, what));
    memcpy(v, p, 8);
    return MSA_OK;
}

static size_t remaining(const reader *r) { return r->len - r->pos; }

static size_t scalar_size(int type) {
    switch (type) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *msa_gguf_value_type_name(int type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                  "u64", "i64", "f64"};
    return type >= 0 && type < GGUF_NTYPES ? names[type] : "?";
}

/* A string: u64 length then bytes, bounded by what remains. */
static msa_status rd_string(reader *r, const char **s, size_t *n, const char *what) {
    uint64_t len;
    MSA_TRY(rd_u64(r, &len, what));
    if (len > remaining(r))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: %s: string length %llu beyond end of file", r->label, what,
                        (unsigned long long)len);
    const uint8_t *p = NULL;
    MSA_TRY(rd_bytes(r, (size_t)len, &p, what));
    *s = (const char *)p;
    *n = (size_t)len;
    return MSA_OK;
}

/* Skip one value of the given type (nested arrays up to GGUF_MAX_ARRAY_DEPTH). Every element consumes at
 * least one byte, so the work is bounded by the file size. */
static msa_status skip_value(reader *r, int type, int depth, const char *key) {
    if (type == GGUF_STRING) {
        const char *s = NULL;
        size_t n;
        return rd_string(r, &s, &n, key);
    }
    if (type == GGUF_ARRAY) {
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s': arrays nested too deeply", r->label, key);
        uint32_t et;
        uint64_t count;
        MSA_TRY(rd_u32(r, &et, key));
        MSA_TRY(rd_u64(r, &count, key));
        if (et >= GGUF_NTYPES)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s': invalid array element type %u", r->label, key, et);
        size_t es = scalar_size((int)et);
        size_t min = es ? es : et == GGUF_STRING ? 8 : 12;
        if (count > remaining(r) / min)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s': array of %llu elements does not fit in the file",
                            r->label, key, (unsigned long long)count);
        if (es) {
            const uint8_t *p = NULL;
            return rd_bytes(r, (size_t)count * es, &p, key);
        }
        for (uint64_t i = 0; i < count; i++) MSA_TRY(skip_value(r, (int)et, depth + 1, key));
        return MSA_OK;
    }
    size_t es = scalar_size(type);
    if (!es) return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s': invalid value type %d", r->label, key, type);
    const uint8_t *p = NULL;
    return rd_bytes(r, es, &p, key);
}

/* Parse one key/value pair into kv. */
static msa_status parse_kv(reader *r, gguf_kv *kv) {
    MSA_TRY(rd_string(r, &kv->key, &kv->key_len, "metadata key"));
    if (kv->key_len > GGUF_MAX_KEY || memchr(kv->key, 0, kv->key_len))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: malformed metadata key at byte %zu", r->label, r->pos);
    char key[128]; /* for messages */
    snprintf(key, sizeof key, "%.*s", (int)(kv->key_len < 100 ? kv->key_len : 100), kv->key);
    uint32_t type;
    MSA_TRY(rd_u32(r, &type, key));
    if (type >= GGUF_NTYPES) return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s': invalid value type %u", r->label, key, type);
    kv->type = (int)type;
    kv->elem_type = -1;
    if (type == GGUF_STRING) {
        kv->off = r->pos;
        return rd_string(r, &kv->str, &kv->str_len, key);
    }
    if (type != GGUF_ARRAY) {
        kv->off = r->pos;
        return skip_value(r, (int)type, 0, key);
    }
    /* arrays: remember where the elements start, then walk them (index strings on the way) */
    size_t start = r->pos;
    MSA_TRY(skip_value(r, GGUF_ARRAY, 0, key));
    uint32_t et;
    memcpy(&et, r->buf + start, 4);
    memcpy(&kv->count, r->buf + start + 4, 8);
    kv->elem_type = (int)et;
    kv->off = start + 12;
    if (et == GGUF_STRING) {
        kv->str_offs = malloc((kv->count ? kv->count : 1) * sizeof *kv->str_offs);
        if (!kv->str_offs) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        reader sub = {r->buf, r->pos, kv->off, r->label};
        for (uint64_t i = 0; i < kv->count; i++) {
            kv->str_offs[i] = sub.pos;
            const char *s = NULL;
            size_t n;
            MSA_TRY(rd_string(&sub, &s, &n, key));
        }
    } else if (et == GGUF_I32 || et == GGUF_F32) {
        kv->copy = malloc(kv->count ? kv->count * 4 : 4);
        if (!kv->copy) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        memcpy(kv->copy, r->buf + kv->off, kv->count * 4);
    }
    return MSA_OK;
}

static uint64_t key_hash(const char *k, size_t n) { return XXH3_64bits(k, n); }

static const gguf_kv *find_kv(const msa_gguf *g, const char *key) {
    if (!g || !key || !g->kv_index_cap) return NULL;
    size_t n = strlen(key);
    size_t slot = (size_t)key_hash(key, n) & (g->kv_index_cap - 1);
    while (g->kv_index[slot]) {
        const gguf_kv *kv = &g->kv[g->kv_index[slot] - 1];
        if (kv->key_len == n && memcmp(kv->key, key, n) == 0) return kv;
        slot = (slot + 1) & (g->kv_index_cap - 1);
    }
    return NULL;
}

static msa_status index_kvs(msa_gguf *g, const char *label) {
    size_t cap = 16;
    while (cap < g->n_kv * 2) cap *= 2;
    g->kv_index = calloc(cap, sizeof *g->kv_index);
    if (!g->kv_index) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    g->kv_index_cap = cap;
    for (size_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        size_t slot = (size_t)key_hash(kv->key, kv->key_len) & (cap - 1);
        while (g->kv_index[slot]) {
            const gguf_kv *o = &g->kv[g->kv_index[slot] - 1];
            if (o->key_len == kv->key_len && memcmp(o->key, kv->key, kv->key_len) == 0)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: metadata key '%.*s' appears twice", label,
                                (int)(kv->key_len < 100 ? kv->key_len : 100), kv->key);
            slot = (slot + 1) & (cap - 1);
        }
        g->kv_index[slot] = i + 1;
    }
    return MSA_OK;
}

/* ggml type ids: the supported ones map to msa dtypes; the rest are named in the error. */
static const char *ggml_type_name(uint32_t t) {
    static const char *names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K",
        "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
        "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
        "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
    return t < sizeof names / sizeof names[0] ? names[t] : NULL;
}

static int ggml_to_msa(uint32_t t, msa_dtype *d) {
    switch (t) {
    case 0: *d = MSA_DTYPE_F32; return 1;
    case 1: *d = MSA_DTYPE_F16; return 1;
    case 2: *d = MSA_DTYPE_Q4_0; return 1;
    case 3: *d = MSA_DTYPE_Q4_1; return 1;
    case 8: *d = MSA_DTYPE_Q8_0; return 1;
    case 30: *d = MSA_DTYPE_BF16; return 1;
    default: return 0;
    }
}

typedef struct tinfo {
    const char *name;
    size_t name_len;
    int n_dims;
    int64_t shape[MSA_MAX_DIMS]; /* outermost first */
    msa_dtype dtype;
    uint64_t offset;
    size_t nbytes;
} tinfo;

static int tinfo_cmp(const void *a, const void *b) {
    const tinfo *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static msa_status parse_tensor_info(reader *r, tinfo *t) {
    MSA_TRY(rd_string(r, &t->name, &t->name_len, "tensor name"));
    if (t->name_len == 0 || t->name_len > GGUF_MAX_NAME || memchr(t->name, 0, t->name_len))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: malformed tensor name before byte %zu", r->label, r->pos);
    char name[GGUF_MAX_NAME + 1];
    memcpy(name, t->name, t->name_len);
    name[t->name_len] = '\0';
    uint32_t n_dims;
    MSA_TRY(rd_u32(r, &n_dims, name));
    if (n_dims > MSA_MAX_DIMS)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': %u dimensions (at most %d)", r->label, name, n_dims,
                        MSA_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t ne[MSA_MAX_DIMS];
    for (uint32_t i = 0; i < n_dims; i++) {
        MSA_TRY(rd_u64(r, &ne[i], name));
        if (ne[i] > (uint64_t)INT64_MAX)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': dimension %u is negative", r->label, name, i);
        t->shape[n_dims - 1 - i] = (int64_t)ne[i]; /* ggml ne[0] is the innermost (contiguous) dim */
    }
    uint32_t type;
    MSA_TRY(rd_u32(r, &type, name));
    MSA_TRY(rd_u64(r, &t->offset, name));
    if (!ggml_to_msa(type, &t->dtype)) {
        const char *tn = ggml_type_name(type);
        if (!tn) return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': invalid ggml type %u", r->label, name, type);
        return msa_fail(MSA_ERR_UNSUPPORTED,
                        "%s: tensor '%s': type %s is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)", r->label,
                        name, tn);
    }
    int64_t nel = msa_shape_nelements(t->n_dims, t->shape);
    if (nel < 0) return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': shape too large", r->label, name);
    int64_t row = n_dims ? (int64_t)ne[0] : 1;
    size_t row_bytes = msa_dtype_row_bytes(t->dtype, row);
    if (row_bytes == 0 && row != 0)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': row of %lld elements is not a multiple of %d (%s blocks)",
                        r->label, name, (long long)row, MSA_QK, msa_dtype_name(t->dtype));
    uint64_t rows = row ? (uint64_t)(nel / row) : 0, nbytes;
    if (__builtin_mul_overflow((uint64_t)row_bytes, rows, &nbytes) || nbytes > SIZE_MAX)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s': shape too large", r->label, name);
    t->nbytes = (size_t)nbytes;
    return MSA_OK;
}

void msa_gguf_free(msa_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].str_offs);
        free(g->kv[i].copy);
    }
    free(g->kv);
    free(g->kv_index);
    msa_weights_free(g->w);
    msa_unmap_file(&g->map);
    free(g);
}

/* Make room for need elements in *p (capacity *cap), doubling. */
static msa_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return MSA_OK;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    *p = q;
    *cap = c;
    return MSA_OK;
}

static msa_status parse(msa_gguf *g, const char *label) {
    reader r = {g->buf, g->len, 0, label};
    uint32_t magic;
    if (g->len < 4) return msa_fail(MSA_ERR_BAD_DATA, "%s: too short to be a GGUF file (%zu bytes)", label, g->len);
    MSA_TRY(rd_u32(&r, &magic, "magic"));
    if (magic != GGUF_MAGIC) return msa_fail(MSA_ERR_BAD_DATA, "%s: not a GGUF file (bad magic)", label);
    MSA_TRY(rd_u32(&r, &g->version, "version"));
    if (g->version != 2 && g->version != 3)
        return msa_fail(MSA_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", label, g->version);
    uint64_t n_tensors, n_kv;
    MSA_TRY(rd_u64(&r, &n_tensors, "tensor count"));
    MSA_TRY(rd_u64(&r, &n_kv, "metadata count"));
    /* the smallest metadata entry is 13 bytes (8 key length + 4 type + 1), the smallest tensor info 24 */
    if (n_kv > remaining(&r) / 13)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: metadata count %llu does not fit in the file", label,
                        (unsigned long long)n_kv);
    if (n_tensors > remaining(&r) / 24)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor count %llu does not fit in the file", label,
                        (unsigned long long)n_tensors);
    /* arrays grow with what is actually parsed: a lying count must not reserve memory up front */
    size_t kv_cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        MSA_TRY(grow((void **)&g->kv, &kv_cap, (size_t)i + 1, sizeof *g->kv));
        memset(&g->kv[i], 0, sizeof g->kv[i]);
        g->n_kv = i + 1; /* so that msa_gguf_free releases a partly parsed entry */
        MSA_TRY(parse_kv(&r, &g->kv[i]));
    }
    MSA_TRY(index_kvs(g, label));

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *akv = find_kv(g, "general.alignment");
    if (akv) {
        int64_t a;
        if (!msa_gguf_get_int(g, "general.alignment", &a) || a < 8 || a > (1 << 20) || (a & (a - 1)))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: general.alignment must be a power of two from 8 to 1 MiB", label);
        g->alignment = (size_t)a;
    }

    tinfo *ti = NULL;
    size_t ti_cap = 0;
    msa_status st = msa_weights_new(&g->w);
    for (uint64_t i = 0; !st && i < n_tensors; i++) {
        st = grow((void **)&ti, &ti_cap, (size_t)i + 1, sizeof *ti);
        if (!st) st = parse_tensor_info(&r, &ti[i]);
    }
    if (!st) {
        size_t data_start = r.pos + (g->alignment - r.pos % g->alignment) % g->alignment;
        if (data_start > g->len) {
            if (n_tensors) st = msa_fail(MSA_ERR_BAD_DATA, "%s: truncated before the tensor data section", label);
            data_start = g->len;
        }
        size_t data_len = g->len - data_start;
        for (uint64_t i = 0; !st && i < n_tensors; i++) {
            tinfo *t = &ti[i];
            if (t->offset % g->alignment) {
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%.*s': offset %llu is not a multiple of the alignment %zu",
                              label, (int)t->name_len, t->name, (unsigned long long)t->offset, g->alignment);
            } else if (t->offset > data_len || t->nbytes > data_len - t->offset) {
                st = msa_fail(MSA_ERR_BAD_DATA,
                              "%s: tensor '%.*s': data [%llu, +%zu) beyond end of file (data section is %zu bytes)",
                              label, (int)t->name_len, t->name, (unsigned long long)t->offset, t->nbytes, data_len);
            } else {
                st = msa_weights_add(g->w, t->name, t->name_len, t->dtype, t->n_dims, t->shape,
                                     g->buf + data_start + t->offset, t->nbytes, 0);
            }
        }
    }
    if (!st && n_tensors > 1) {
        /* overlapping data would let one tensor alias another: a corrupt type or shape, never a real file */
        qsort(ti, (size_t)n_tensors, sizeof *ti, tinfo_cmp);
        const tinfo *last = NULL;
        for (uint64_t i = 0; i < n_tensors && !st; i++) {
            if (ti[i].nbytes == 0) continue;
            if (last && ti[i].offset < last->offset + last->nbytes)
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensors '%.*s' and '%.*s' overlap", label, (int)last->name_len,
                              last->name, (int)ti[i].name_len, ti[i].name);
            last = &ti[i];
        }
    }
    free(ti);
    if (!st) st = msa_weights_freeze(g->w, label);
    return st;
}

msa_status msa_gguf_parse(const uint8_t *buf, size_t len, msa_gguf **out) {
    *out = NULL;
    msa_gguf *g = calloc(1, sizeof *g);
    if (!g) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    g->buf = buf;
    g->len = len;
    msa_status st = parse(g, "gguf");
    if (st) {
        msa_gguf_free(g);
        return st;
    }
    *out = g;
    return MSA_OK;
}

msa_status msa_gguf_open(const char *path, msa_gguf **out) {
    *out = NULL;
    msa_gguf *g = calloc(1, sizeof *g);
    if (!g) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_status st = msa_map_file(path, 0, &g->map);
    if (!st) {
        g->buf = g->map.data;
        g->len = g->map.size;
        st = parse(g, path);
    }
    if (st) {
        msa_gguf_free(g);
        return st;
    }
    *out = g;
    return MSA_OK;
}

const msa_weights *msa_gguf_weights(const msa_gguf *g) { return g ? g->w : NULL; }

size_t msa_gguf_kv_count(const msa_gguf *g) { return g ? g->n_kv : 0; }

bool msa_gguf_kv_at(const msa_gguf *g, size_t i, const char **key, size_t *key_len, int *type, int *elem_type) {
    if (!g || i >= g->n_kv) return false;
    const gguf_kv *kv = &g->kv[i];
    if (key) *key = kv->key;
    if (key_len) *key_len = kv->key_len;
    if (type) *type = kv->type;
    if (elem_type) *elem_type = kv->elem_type;
    return true;
}

bool msa_gguf_get_str(const msa_gguf *g, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_STRING) return false;
    *s = kv->str;
    *len = kv->str_len;
    return true;
}

bool msa_gguf_get_int(const msa_gguf *g, const char *key, int64_t *v) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv) return false;
    const uint8_t *p = g->buf + kv->off;
    switch (kv->type) {
    case GGUF_U8: *v = p[0]; return true;
    case GGUF_I8: *v = (int8_t)p[0]; return true;
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case GGUF_I64: { int64_t x; memcpy(&x, p, 8); *v = x; return true; }
    case GGUF_U64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) return false;
        *v = (int64_t)x;
        return true;
    }
    default: return false;
    }
}

bool msa_gguf_get_f32(const msa_gguf *g, const char *key, float *v) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv) return false;
    if (kv->type == GGUF_F32) {
        memcpy(v, g->buf + kv->off, 4);
        return true;
    }
    if (kv->type == GGUF_F64) {
        double d;
        memcpy(&d, g->buf + kv->off, 8);
        *v = (float)d;
        return true;
    }
    return false;
}

bool msa_gguf_get_bool(const msa_gguf *g, const char *key, bool *v) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_BOOL) return false;
    *v = g->buf[kv->off] != 0;
    return true;
}

bool msa_gguf_get_str_array(const msa_gguf *g, const char *key, size_t *n) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->elem_type != GGUF_STRING) return false;
    *n = (size_t)kv->count;
    return true;
}

bool msa_gguf_str_array_at(const msa_gguf *g, const char *key, size_t i, const char **s, size_t *len) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->elem_type != GGUF_STRING || i >= kv->count) return false;
    uint64_t n;
    memcpy(&n, g->buf + kv->str_offs[i], 8); /* checked at parse time */
    *s = (const char *)g->buf + kv->str_offs[i] + 8;
    *len = (size_t)n;
    return true;
}

bool msa_gguf_get_i32_array(const msa_gguf *g, const char *key, const int32_t **v, size_t *n) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->elem_type != GGUF_I32) return false;
    *v = kv->copy;
    *n = (size_t)kv->count;
    return true;
}

bool msa_gguf_get_f32_array(const msa_gguf *g, const char *key, const float **v, size_t *n) {
    const gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_ARRAY || kv->elem_type != GGUF_F32) return false;
    *v = kv->copy;
    *n = (size_t)kv->count;
    return true;
}

/* ------------------------------------------------------------------------------------ hyper-parameters */

static msa_status arch_int(const msa_gguf *g, const char *arch, const char *suffix, int64_t dflt, int64_t *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (msa_gguf_get_int(g, key, v)) {
        if (*v < 0 || *v > INT32_MAX) return msa_fail(MSA_ERR_BAD_DATA, "gguf: '%s' = %lld is out of range", key, (long long)*v);
        return MSA_OK;
    }
    if (find_kv(g, key)) return msa_fail(MSA_ERR_BAD_DATA, "gguf: '%s' is not an integer", key);
    if (dflt < 0) return msa_fail(MSA_ERR_BAD_DATA, "gguf: missing '%s'", key);
    *v = dflt;
    return MSA_OK;
}

static msa_status arch_f32(const msa_gguf *g, const char *arch, const char *suffix, float dflt, int required,
                           float *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (msa_gguf_get_f32(g, key, v)) return MSA_OK;
    if (find_kv(g, key)) return msa_fail(MSA_ERR_BAD_DATA, "gguf: '%s' is not a float", key);
    if (required) return msa_fail(MSA_ERR_BAD_DATA, "gguf: missing '%s'", key);
    *v = dflt;
    return MSA_OK;
}

static void add_eos(msa_hparams *hp, int64_t id) {
    for (int i = 0; i < hp->n_eos; i++)
        if (hp->eos_ids[i] == id) return;
    if (hp->n_eos < 4) hp->eos_ids[hp->n_eos++] = (int)id;
}

msa_status msa_gguf_hparams(const msa_gguf *g, msa_hparams *out) {
    memset(out, 0, sizeof *out);
    const char *a;
    size_t alen;
    if (!msa_gguf_get_str(g, "general.architecture", &a, &alen))
        return msa_fail(MSA_ERR_BAD_DATA, "gguf: missing 'general.architecture'");
    const char *arch;
    if (alen == 5 && memcmp(a, "llama", 5) == 0) {
        arch = "llama";
        out->arch = MSA_ARCH_LLAMA;
        out->rope_style = MSA_ROPE_NORM; /* the llama converter permutes q/k rows to adjacent pairs */
    } else if (alen == 5 && memcmp(a, "qwen3", 5) == 0) {
        arch = "qwen3";
        out->arch = MSA_ARCH_QWEN3;
        out->rope_style = MSA_ROPE_NEOX;
        out->qk_norm = true;
    } else {
        return msa_fail(MSA_ERR_UNSUPPORTED, "gguf: architecture '%.*s' is not supported (llama, qwen3 are)",
                        (int)(alen < 64 ? alen : 64), a);
    }
    int64_t v;
    MSA_TRY(arch_int(g, arch, "context_length", -1, &v));
    out->n_ctx_train = (int)v;
    MSA_TRY(arch_int(g, arch, "embedding_length", -1, &v));
    out->n_embd = (int)v;
    MSA_TRY(arch_int(g, arch, "block_count", -1, &v));
    out->n_layer = (int)v;
    MSA_TRY(arch_int(g, arch, "feed_forward_length", -1, &v));
    out->n_ff = (int)v;
    MSA_TRY(arch_int(g, arch, "attention.head_count", -1, &v));
    out->n_head = (int)v;
    if (out->n_head <= 0) return msa_fail(MSA_ERR_BAD_DATA, "gguf: '%s.attention.head_count' must be positive", arch);
    MSA_TRY(arch_int(g, arch, "attention.head_count_kv", out->n_head, &v));
    out->n_head_kv = (int)v;
    MSA_TRY(arch_int(g, arch, "attention.key_length", out->n_embd / out->n_head, &v));
    out->head_dim = (int)v;
    int64_t vlen;
    MSA_TRY(arch_int(g, arch, "attention.value_length", out->head_dim, &vlen));
    if (vlen != out->head_dim)
        return msa_fail(MSA_ERR_UNSUPPORTED, "gguf: '%s.attention.value_length' differs from key_length", arch);
    int64_t rope_dim;
    MSA_TRY(arch_int(g, arch, "rope.dimension_count", out->head_dim, &rope_dim));
    if (rope_dim != out->head_dim)
        return msa_fail(MSA_ERR_UNSUPPORTED, "gguf: partial RoPE ('%s.rope.dimension_count' %lld, head size %d)",
                        arch, (long long)rope_dim, out->head_dim);
    MSA_TRY(arch_f32(g, arch, "attention.layer_norm_rms_epsilon", 0, 1, &out->rms_eps));
    MSA_TRY(arch_f32(g, arch, "rope.freq_base", 10000.0f, 0, &out->rope_theta));

    size_t n_tokens = 0;
    if (msa_gguf_get_str_array(g, "tokenizer.ggml.tokens", &n_tokens) && n_tokens > 0) {
        if (n_tokens > INT32_MAX) return msa_fail(MSA_ERR_BAD_DATA, "gguf: too many tokens");
        out->n_vocab = (int)n_tokens;
    } else {
        MSA_TRY(arch_int(g, arch, "vocab_size", -1, &v));
        out->n_vocab = (int)v;
    }
    out->bos_id = -1;
    if (msa_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v)) {
        if (v < 0 || v >= out->n_vocab) return msa_fail(MSA_ERR_BAD_DATA, "gguf: 'tokenizer.ggml.bos_token_id' out of range");
        out->bos_id = (int)v;
    }
    static const char *const eos_keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                           "tokenizer.ggml.eom_token_id"};
    for (size_t i = 0; i < sizeof eos_keys / sizeof eos_keys[0]; i++) {
        if (!msa_gguf_get_int(g, eos_keys[i], &v)) continue;
        if (v < 0 || v >= out->n_vocab) return msa_fail(MSA_ERR_BAD_DATA, "gguf: '%s' out of range", eos_keys[i]);
        add_eos(out, v);
    }
    out->tie_embeddings = msa_weights_find(g->w, "output.weight") == NULL;
    return msa_hparams_check(out, "gguf", 1);
}
