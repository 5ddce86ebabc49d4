/* format.c — encoding and hostile-input parsing of the bank's MANIFEST and segment headers
 * (docs/bank-format.md). Every size is bounded and every offset checked before use. */
#include "bank/format.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/error.h"

#define MANIFEST_FIXED 152u
#define MAX_SEGS ((uint64_t)1 << 24)
#define MAX_TOMBSTONES ((uint64_t)1 << 32)

size_t msa_bank_dtype_size(msa_bank_dtype dtype) { return dtype == MSA_BANK_BF16 ? 2 : 4; }

msa_status bank_shape_validate(const msa_bank_shape *s, const char *name) {
    if (s->mode != MSA_BANK_NATIVE && s->mode != MSA_BANK_READ)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: unknown bank mode %d", name, (int)s->mode);
    if (s->dtype != MSA_BANK_F32 && s->dtype != MSA_BANK_BF16)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: unknown dtype %d", name, (int)s->dtype);
    if (s->n_layers < 1 || s->n_layers > MSA_BANK_MAX_LAYERS)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: n_layers %d outside 1..%d", name, s->n_layers, MSA_BANK_MAX_LAYERS);
    if (s->n_router < 1 || s->n_router > s->n_layers)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: n_router %d outside 1..%d", name, s->n_router, s->n_layers);
    for (int i = 0; i < s->n_router; i++) {
        if (s->router_layers[i] < 0 || s->router_layers[i] >= s->n_layers ||
            (i > 0 && s->router_layers[i] <= s->router_layers[i - 1]))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: router layer list is not increasing within 0..%d", name,
                            s->n_layers - 1);
        if (s->route_dim[i] < 1 || s->route_dim[i] > (1 << 20))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: routing key size %d of slot %d outside 1..%d", name,
                            s->route_dim[i], i, 1 << 20);
    }
    if (s->n_kv_heads < 1 || s->n_kv_heads > 1024 || s->head_dim < 1 || s->head_dim > 4096 ||
        s->n_kv_heads * s->head_dim > (1 << 20))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: kv heads %d x head_dim %d out of range", name, s->n_kv_heads,
                        s->head_dim);
    if (s->pooling < 1 || s->pooling > (1 << 16))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: pooling size %d outside 1..65536", name, s->pooling);
    if (s->n_template < 0 || s->n_template > 64)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: template length %d outside 0..64", name, s->n_template);
    return MSA_OK;
}

uint64_t bank_route_row_bytes(const msa_bank_shape *s, int slot) {
    return (uint64_t)s->route_dim[slot] * msa_bank_dtype_size(s->dtype);
}

uint64_t bank_kv_row_bytes(const msa_bank_shape *s) {
    return (uint64_t)s->n_kv_heads * (uint64_t)s->head_dim * msa_bank_dtype_size(s->dtype);
}

uint64_t bank_doc_content_bytes(const msa_bank_shape *s, uint64_t n_chunks) {
    if (s->mode == MSA_BANK_READ) return 0;
    return n_chunks * bank_kv_row_bytes(s) * 2 * (uint64_t)s->n_router;
}

uint64_t bank_template_bytes(const msa_bank_shape *s) {
    return (uint64_t)s->n_layers * 2 * (uint64_t)s->n_kv_heads * (uint64_t)s->n_template * (uint64_t)s->head_dim *
           msa_bank_dtype_size(s->dtype);
}

/* ------------------------------------------------------------------------------------------- manifest */

void bank_manifest_free(bank_manifest *m) {
    free(m->model_path);
    free(m->segs);
    free(m->tombstones);
    memset(m, 0, sizeof *m);
}

msa_status bank_manifest_copy(const bank_manifest *src, bank_manifest *dst) {
    *dst = *src;
    dst->model_path = strdup(src->model_path ? src->model_path : "");
    dst->segs = malloc((src->n_segs + 1) * sizeof *dst->segs);
    dst->tombstones = malloc((src->n_tombstones + 1) * sizeof *dst->tombstones);
    if (!dst->model_path || !dst->segs || !dst->tombstones) {
        bank_manifest_free(dst);
        return msa_fail(MSA_ERR_NOMEM, "bank manifest: out of memory");
    }
    if (src->n_segs) memcpy(dst->segs, src->segs, src->n_segs * sizeof *dst->segs);
    if (src->n_tombstones) memcpy(dst->tombstones, src->tombstones, src->n_tombstones * sizeof *dst->tombstones);
    return MSA_OK;
}

static uint64_t manifest_size(uint64_t n_router, uint64_t path_len, uint64_t n_segs, uint64_t n_tomb) {
    uint64_t sz = MANIFEST_FIXED + 8 * n_router + path_len;
    sz = (sz + 7) & ~(uint64_t)7;
    return sz + 40 * n_segs + 8 * n_tomb + 8;
}

msa_status bank_manifest_encode(const bank_manifest *m, uint8_t **out, size_t *out_len) {
    const msa_bank_shape *s = &m->shape;
    size_t path_len = strlen(m->model_path ? m->model_path : "");
    uint64_t sz = manifest_size((uint64_t)s->n_router, path_len, m->n_segs, m->n_tombstones);
    uint8_t *b = calloc(1, sz);
    if (!b) return msa_fail(MSA_ERR_NOMEM, "bank manifest: out of memory");
    memcpy(b, BANK_MANIFEST_MAGIC, 8);
    wr16(b + 8, BANK_MAJOR);
    wr16(b + 10, BANK_MINOR);
    wr64(b + 16, sz);
    wr64(b + 24, m->generation);
    memcpy(b + 32, m->fingerprint, 32);
    memcpy(b + 64, m->uuid, 16);
    const int32_t f[8] = {(int32_t)s->mode, (int32_t)s->dtype, s->n_layers, s->n_router, s->n_kv_heads,
                          s->head_dim, s->pooling, s->n_template};
    for (int i = 0; i < 8; i++) wr32(b + 80 + 4 * i, (uint32_t)f[i]);
    wr64(b + 112, m->next_index);
    wr64(b + 120, m->next_seg_id);
    wr64(b + 128, m->template_seg);
    wr32(b + 136, (uint32_t)m->n_segs);
    wr32(b + 140, (uint32_t)path_len);
    wr64(b + 144, m->n_tombstones);
    uint8_t *p = b + MANIFEST_FIXED;
    for (int i = 0; i < s->n_router; i++, p += 4) wr32(p, (uint32_t)s->router_layers[i]);
    for (int i = 0; i < s->n_router; i++, p += 4) wr32(p, (uint32_t)s->route_dim[i]);
    memcpy(p, m->model_path ? m->model_path : "", path_len);
    p += path_len;
    p = b + (((size_t)(p - b) + 7) & ~(size_t)7);
    for (size_t i = 0; i < m->n_segs; i++, p += 40) {
        const bank_seg_ref *r = &m->segs[i];
        wr64(p, r->seg_id);
        wr64(p + 8, r->file_size);
        wr64(p + 16, r->header_hash);
        wr64(p + 24, r->n_docs);
        wr64(p + 32, r->n_chunks);
    }
    for (size_t i = 0; i < m->n_tombstones; i++, p += 8) wr64(p, m->tombstones[i]);
    wr64(p, XXH3_64bits(b, sz - 8));
    *out = b;
    *out_len = sz;
    return MSA_OK;
}

msa_status bank_manifest_parse(const uint8_t *b, size_t len, const char *name, bank_manifest *out) {
    memset(out, 0, sizeof *out);
    if (len < 16 || memcmp(b, BANK_MANIFEST_MAGIC, 8) != 0)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank manifest (bad magic)", name);
    uint16_t major = rd16(b + 8), minor = rd16(b + 10);
    if (major != BANK_MAJOR)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: unknown bank format major version %u (this build reads %u)", name,
                        major, BANK_MAJOR);
    if (len < MANIFEST_FIXED + 8)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: truncated manifest (%zu bytes)", name, len);
    uint64_t declared = rd64(b + 16);
    if (declared != len)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: manifest is %zu bytes but declares %llu (truncated or padded)",
                        name, len, (unsigned long long)declared);
    if (rd64(b + len - 8) != XXH3_64bits(b, len - 8))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: manifest checksum mismatch (corrupt)", name);
    out->minor = minor;
    out->generation = rd64(b + 24);
    memcpy(out->fingerprint, b + 32, 32);
    memcpy(out->uuid, b + 64, 16);
    msa_bank_shape *s = &out->shape;
    int32_t f[8];
    for (int i = 0; i < 8; i++) f[i] = (int32_t)rd32(b + 80 + 4 * i);
    s->mode = (msa_bank_mode)f[0];
    s->dtype = (msa_bank_dtype)f[1];
    s->n_layers = f[2];
    s->n_router = f[3];
    s->n_kv_heads = f[4];
    s->head_dim = f[5];
    s->pooling = f[6];
    s->n_template = f[7];
    if (s->n_router < 1 || s->n_router > MSA_BANK_MAX_LAYERS)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: router layer count %d out of range", name, s->n_router);
    out->next_index = rd64(b + 112);
    out->next_seg_id = rd64(b + 120);
    out->template_seg = rd64(b + 128);
    uint64_t n_segs = rd32(b + 136), path_len = rd32(b + 140), n_tomb = rd64(b + 144);
    if (n_segs > MAX_SEGS || path_len > BANK_MAX_MODEL_PATH || n_tomb > MAX_TOMBSTONES)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment, path or tombstone count out of range", name);
    uint64_t need = manifest_size((uint64_t)s->n_router, path_len, n_segs, n_tomb);
    if (need > len || (minor <= BANK_MINOR && need != len))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: manifest size %zu does not match its contents (%llu)", name, len,
                        (unsigned long long)need);
    const uint8_t *p = b + MANIFEST_FIXED;
    for (int i = 0; i < s->n_router; i++, p += 4) s->router_layers[i] = (int32_t)rd32(p);
    for (int i = 0; i < s->n_router; i++, p += 4) s->route_dim[i] = (int32_t)rd32(p);
    msa_status st = bank_shape_validate(s, name);
    if (st) return st;
    if (out->next_index >= MSA_BANK_NO_DOC)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: next document index out of range", name);
    out->model_path = malloc(path_len + 1);
    out->segs = malloc((n_segs + 1) * sizeof *out->segs);
    out->tombstones = malloc((n_tomb + 1) * sizeof *out->tombstones);
    if (!out->model_path || !out->segs || !out->tombstones) {
        st = msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    memcpy(out->model_path, p, path_len);
    out->model_path[path_len] = '\0';
    if (memchr(out->model_path, '\0', path_len)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: model path contains a NUL byte", name);
        goto fail;
    }
    p += path_len;
    p = b + (((size_t)(p - b) + 7) & ~(size_t)7);
    bool tmpl_found = out->template_seg == 0;
    for (uint64_t i = 0; i < n_segs; i++, p += 40) {
        bank_seg_ref *r = &out->segs[i];
        r->seg_id = rd64(p);
        r->file_size = rd64(p + 8);
        r->header_hash = rd64(p + 16);
        r->n_docs = rd64(p + 24);
        r->n_chunks = rd64(p + 32);
        if (r->seg_id == 0 || r->seg_id >= out->next_seg_id || (i > 0 && r->seg_id <= out->segs[i - 1].seg_id)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: segment ids are not increasing below the next id", name);
            goto fail;
        }
        if (r->file_size < BANK_SEG_HEADER_SIZE || r->n_docs > r->n_chunks || r->n_chunks > ((uint64_t)1 << 40)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: segment %llu has impossible sizes", name,
                          (unsigned long long)r->seg_id);
            goto fail;
        }
        if (r->seg_id == out->template_seg) tmpl_found = true;
    }
    out->n_segs = n_segs;
    if (!tmpl_found) {
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: template segment is not listed", name);
        goto fail;
    }
    for (uint64_t i = 0; i < n_tomb; i++, p += 8) {
        out->tombstones[i] = rd64(p);
        if (out->tombstones[i] >= out->next_index || (i > 0 && out->tombstones[i] <= out->tombstones[i - 1])) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tombstones are not increasing below the next index", name);
            goto fail;
        }
    }
    out->n_tombstones = n_tomb;
    return MSA_OK;
fail: /* every message above is formatted before this frees what it may point into */
    bank_manifest_free(out);
    return st;
}

/* -------------------------------------------------------------------------------------------- segments */

uint64_t bank_seg_header_hash(const uint8_t *hdr) { return XXH3_64bits(hdr, BANK_SEG_HEADER_SIZE - 8); }

void bank_doc_rec_encode(const bank_doc_rec *r, uint8_t o[BANK_DOC_RECORD_SIZE]) {
    memset(o, 0, BANK_DOC_RECORD_SIZE);
    wr64(o, r->index);
    wr64(o + 8, r->n_tokens);
    wr64(o + 16, r->chunk_first);
    wr32(o + 24, r->n_chunks);
    wr32(o + 28, r->flags);
    wr64(o + 32, r->id_off);
    wr32(o + 40, r->id_len);
    wr32(o + 44, r->meta_len);
    wr64(o + 48, r->meta_off);
    wr64(o + 56, r->text_off);
    wr64(o + 64, r->text_zlen);
    wr64(o + 72, r->text_len);
    memcpy(o + 80, r->hash, 16);
    wr64(o + 96, r->content_off);
    wr64(o + 104, r->content_hash);
}

void bank_segment_doc(const bank_segment *seg, uint64_t i, bank_doc_rec *r) {
    const uint8_t *o = seg->docs + i * BANK_DOC_RECORD_SIZE;
    r->index = rd64(o);
    r->n_tokens = rd64(o + 8);
    r->chunk_first = rd64(o + 16);
    r->n_chunks = rd32(o + 24);
    r->flags = rd32(o + 28);
    r->id_off = rd64(o + 32);
    r->id_len = rd32(o + 40);
    r->meta_len = rd32(o + 44);
    r->meta_off = rd64(o + 48);
    r->text_off = rd64(o + 56);
    r->text_zlen = rd64(o + 64);
    r->text_len = rd64(o + 72);
    memcpy(r->hash, o + 80, 16);
    r->content_off = rd64(o + 96);
    r->content_hash = rd64(o + 104);
}

static const bank_section *find_section(const bank_segment *s, uint32_t type, uint32_t layer) {
    for (uint32_t i = 0; i < s->n_sections; i++)
        if (s->sections[i].type == type && s->sections[i].layer == layer) return &s->sections[i];
    return NULL;
}

/* a string of len bytes at off inside STRINGS, followed by NUL, without NUL inside */
static bool string_ok(const bank_segment *s, uint64_t off, uint64_t len) {
    if (off > s->strings_size || len >= s->strings_size - off) return false;
    return s->strings[off + len] == '\0' && memchr(s->strings + off, '\0', len) == NULL;
}

static msa_status need_section(const bank_segment *s, uint32_t type, uint32_t layer, uint64_t size,
                               const char *what, const char *name, const bank_section **out) {
    const bank_section *sec = find_section(s, type, layer);
    if (!sec) return msa_fail(MSA_ERR_BAD_DATA, "%s: %s section is missing", name, what);
    if (size != UINT64_MAX && sec->size != size)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: %s section is %llu bytes, expected %llu", name, what,
                        (unsigned long long)sec->size, (unsigned long long)size);
    *out = sec;
    return MSA_OK;
}

static int cmp_section_offset(const void *a, const void *b) {
    const bank_section *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

msa_status bank_segment_parse(const uint8_t *base, uint64_t size, const msa_bank_shape *shape,
                              const uint8_t uuid[16], const char *name, bank_segment *out) {
    memset(out, 0, sizeof *out);
    if (size < BANK_SEG_HEADER_SIZE)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: truncated segment (%llu bytes, header needs %u)", name,
                        (unsigned long long)size, BANK_SEG_HEADER_SIZE);
    if (memcmp(base, BANK_SEGMENT_MAGIC, 8) != 0)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank segment (bad magic)", name);
    if (rd16(base + 8) != BANK_MAJOR)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: unknown segment format major version %u", name, rd16(base + 8));
    out->header_hash = rd64(base + BANK_SEG_HEADER_SIZE - 8);
    if (out->header_hash != bank_seg_header_hash(base))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment header checksum mismatch (corrupt)", name);
    if (rd32(base + 12) != BANK_SEG_HEADER_SIZE)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: unexpected segment header size", name);
    out->base = base;
    out->size = size;
    out->seg_id = rd64(base + 16);
    out->kind = rd32(base + 24);
    out->n_sections = rd32(base + 28);
    out->n_docs = rd64(base + 32);
    out->n_chunks = rd64(base + 40);
    uint64_t file_size = rd64(base + 48);
    if (file_size != size)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment is %llu bytes but its header says %llu (truncated?)", name,
                        (unsigned long long)size, (unsigned long long)file_size);
    if (memcmp(base + 56, uuid, 16) != 0)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment belongs to another bank (uuid differs)", name);
    if (rd32(base + 72) != (uint32_t)shape->dtype || rd32(base + 76) != (uint32_t)shape->n_router)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: segment dtype or router layer count differs from the manifest", name);
    if (out->n_sections > BANK_MAX_SECTIONS)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: %u sections (at most %u)", name, out->n_sections, BANK_MAX_SECTIONS);
    if (out->n_docs > ((uint64_t)1 << 32) || out->n_chunks > ((uint64_t)1 << 40) || out->n_docs > out->n_chunks)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: impossible document/chunk counts", name);
    for (uint32_t i = 0; i < out->n_sections; i++) {
        const uint8_t *e = base + 104 + 32 * i;
        bank_section *sec = &out->sections[i];
        sec->type = rd32(e);
        sec->layer = rd32(e + 4);
        sec->offset = rd64(e + 8);
        sec->size = rd64(e + 16);
        sec->hash = rd64(e + 24);
        if (sec->offset < BANK_SEG_HEADER_SIZE || sec->offset % BANK_ALIGN || sec->offset > size ||
            sec->size > size - sec->offset)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: section %u (type %u) lies outside the file", name, i, sec->type);
        for (uint32_t j = 0; j < i; j++)
            if (out->sections[j].type == sec->type && out->sections[j].layer == sec->layer)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: duplicate section type %u", name, sec->type);
    }
    bank_section sorted[BANK_MAX_SECTIONS];
    memcpy(sorted, out->sections, out->n_sections * sizeof *sorted);
    qsort(sorted, out->n_sections, sizeof *sorted, cmp_section_offset);
    for (uint32_t i = 1; i < out->n_sections; i++)
        if (sorted[i - 1].offset + sorted[i - 1].size > sorted[i].offset)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: sections overlap", name);

    const bank_section *sec;
    msa_status st;
    if (out->kind == BANK_SEG_TEMPLATE) {
        if (out->n_docs || out->n_chunks) return msa_fail(MSA_ERR_BAD_DATA, "%s: template segment holds documents", name);
        if ((st = need_section(out, BANK_SEC_TEMPLATE, 0, bank_template_bytes(shape), "template", name, &sec))) return st;
        out->tmpl = base + sec->offset;
        return MSA_OK;
    }
    if (out->kind != BANK_SEG_DOCS) return msa_fail(MSA_ERR_BAD_DATA, "%s: unknown segment kind %u", name, out->kind);

    if ((st = need_section(out, BANK_SEC_DOCS, 0, out->n_docs * BANK_DOC_RECORD_SIZE, "document table", name, &sec)))
        return st;
    if (XXH3_64bits(base + sec->offset, sec->size) != sec->hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: document table checksum mismatch (corrupt)", name);
    out->docs = base + sec->offset;
    if ((st = need_section(out, BANK_SEC_STRINGS, 0, UINT64_MAX, "strings", name, &sec))) return st;
    if (XXH3_64bits(base + sec->offset, sec->size) != sec->hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: strings checksum mismatch (corrupt)", name);
    out->strings = base + sec->offset;
    out->strings_size = sec->size;
    if ((st = need_section(out, BANK_SEC_TEXT, 0, UINT64_MAX, "text", name, &sec))) return st;
    out->text = base + sec->offset;
    out->text_size = sec->size;
    for (int l = 0; l < shape->n_router; l++) {
        if ((st = need_section(out, BANK_SEC_ROUTE, (uint32_t)l, out->n_chunks * bank_route_row_bytes(shape, l),
                               "routing keys", name, &sec)))
            return st;
        out->route[l] = base + sec->offset;
    }
    uint64_t content_total = bank_doc_content_bytes(shape, out->n_chunks);
    if (shape->mode == MSA_BANK_NATIVE) {
        if ((st = need_section(out, BANK_SEC_CONTENT, 0, content_total, "content", name, &sec))) return st;
        out->content = base + sec->offset;
        out->content_size = sec->size;
    }
    /* document records: contiguous chunks, content and text, increasing indices, sane strings */
    uint64_t chunk = 0, content = 0, text = 0;
    for (uint64_t i = 0; i < out->n_docs; i++) {
        bank_doc_rec r;
        bank_segment_doc(out, i, &r);
        uint64_t want_chunks = r.n_tokens / (uint64_t)shape->pooling + (r.n_tokens % (uint64_t)shape->pooling != 0);
        if (r.n_tokens == 0 || r.n_tokens > ((uint64_t)1 << 40) || r.n_chunks != want_chunks)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document %llu has %llu tokens but %u chunks", name,
                            (unsigned long long)i, (unsigned long long)r.n_tokens, r.n_chunks);
        if (r.chunk_first != chunk || r.n_chunks > out->n_chunks - chunk)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document %llu chunk range is not contiguous", name,
                            (unsigned long long)i);
        if (r.index >= MSA_BANK_NO_DOC || (i > 0 && r.index <= rd64(out->docs + (i - 1) * BANK_DOC_RECORD_SIZE)))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document indices are not increasing", name);
        if (r.id_len < 1 || r.id_len > BANK_MAX_ID_LEN || !string_ok(out, r.id_off, r.id_len) ||
            r.meta_len > BANK_MAX_META_LEN || !string_ok(out, r.meta_off, r.meta_len))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document %llu id or metadata outside the string table", name,
                            (unsigned long long)i);
        if (r.text_off != text || r.text_zlen > out->text_size - text || r.text_len > BANK_MAX_TEXT_LEN)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document %llu text outside the text section", name,
                            (unsigned long long)i);
        uint64_t csize = bank_doc_content_bytes(shape, r.n_chunks);
        if (r.content_off != content || csize > content_total - content)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document %llu content outside the content section", name,
                            (unsigned long long)i);
        chunk += r.n_chunks;
        text += r.text_zlen;
        content += csize;
    }
    if (chunk != out->n_chunks || content != content_total)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: documents cover %llu of %llu chunks", name, (unsigned long long)chunk,
                        (unsigned long long)out->n_chunks);
    return MSA_OK;
}
