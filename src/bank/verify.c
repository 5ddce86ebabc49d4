/* verify.c — the full checksum scan of a bank version: every section of every segment (XXH3-64), every
 * document's content checksum (computed in the same pass over cache-hot bytes) and every text frame
 * (zstd's own checksum plus the recorded length). Open already checked the manifest, segment headers,
 * document tables and strings. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "bank/bank.h"
#include "util/error.h"

#define PIECE ((uint64_t)1 << 20)

typedef struct vctx {
    void (*progress)(uint64_t, uint64_t, void *);
    void *user;
    uint64_t done, total, next_report;
} vctx;

static void advance(vctx *c, uint64_t n) {
    c->done += n;
    if (c->progress && c->done >= c->next_report) {
        c->progress(c->done, c->total, c->user);
        c->next_report = c->done + ((uint64_t)64 << 20);
    }
}

static msa_status check_section(const bank_seg_view *sv, const bank_section *sec, vctx *c) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    const uint8_t *p = sv->seg.base + sec->offset;
    for (uint64_t off = 0; off < sec->size; off += PIECE) {
        uint64_t n = sec->size - off < PIECE ? sec->size - off : PIECE;
        XXH3_64bits_update(&st, p + off, n);
        advance(c, n);
    }
    if (XXH3_64bits_digest(&st) != sec->hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: checksum mismatch in section type %u layer %u (corrupt)", sv->name,
                        sec->type, sec->layer);
    return MSA_OK;
}

/* CONTENT: the section hash and each document's hash in one pass */
static msa_status check_content(const bank_seg_view *sv, const bank_section *sec, const msa_bank_shape *sh,
                                vctx *c) {
    XXH3_state_t whole, doc;
    XXH3_64bits_reset(&whole);
    const uint8_t *base = sv->seg.base + sec->offset;
    for (uint64_t i = 0; i < sv->seg.n_docs; i++) {
        bank_doc_rec r;
        bank_segment_doc(&sv->seg, i, &r);
        uint64_t size = bank_doc_content_bytes(sh, r.n_chunks);
        XXH3_64bits_reset(&doc);
        for (uint64_t off = 0; off < size; off += PIECE) {
            uint64_t n = size - off < PIECE ? size - off : PIECE;
            XXH3_64bits_update(&whole, base + r.content_off + off, n);
            XXH3_64bits_update(&doc, base + r.content_off + off, n);
            advance(c, n);
        }
        if (XXH3_64bits_digest(&doc) != r.content_hash)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: content of document [%llu] fails its checksum (corrupt)", sv->name,
                            (unsigned long long)r.index);
    }
    if (XXH3_64bits_digest(&whole) != sec->hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: checksum mismatch in the content section (corrupt)", sv->name);
    return MSA_OK;
}

static msa_status check_texts(const bank_seg_view *sv) {
    size_t cap = 0;
    char *buf = NULL;
    msa_status st = MSA_OK;
    for (uint64_t i = 0; i < sv->seg.n_docs && !st; i++) {
        bank_doc_rec r;
        bank_segment_doc(&sv->seg, i, &r);
        if (r.text_len + 1 > cap) {
            free(buf);
            cap = r.text_len + 1;
            if (!(buf = malloc(cap))) return msa_fail(MSA_ERR_NOMEM, "verify: out of memory");
        }
        size_t n = ZSTD_decompress(buf, r.text_len, sv->seg.text + r.text_off, r.text_zlen);
        if (ZSTD_isError(n) || n != r.text_len)
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: text of document [%llu] is corrupt (%s)", sv->name,
                          (unsigned long long)r.index, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length");
    }
    free(buf);
    return st;
}

static int cmp_offset(const void *a, const void *b) {
    const bank_section *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Bytes no section covers (alignment padding) must be zero: a flipped bit there is corruption too. */
static msa_status check_gaps(const bank_seg_view *sv, vctx *c) {
    bank_section s[BANK_MAX_SECTIONS];
    uint32_t n = sv->seg.n_sections;
    memcpy(s, sv->seg.sections, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_offset);
    uint64_t pos = BANK_SEG_HEADER_SIZE;
    for (uint32_t i = 0; i <= n; i++) {
        uint64_t end = i < n ? s[i].offset : sv->seg.size;
        for (uint64_t o = pos; o < end; o++)
            if (sv->seg.base[o])
                return msa_fail(MSA_ERR_BAD_DATA, "%s: non-zero padding byte at offset %llu (corrupt)", sv->name,
                                (unsigned long long)o);
        advance(c, end > pos ? end - pos : 0);
        if (i < n && s[i].offset + s[i].size > pos) pos = s[i].offset + s[i].size;
    }
    return MSA_OK;
}

msa_status msa_bank_verify(const msa_bank *b, void (*progress)(uint64_t, uint64_t, void *), void *user,
                           msa_bank_verify_report *report) {
    const bank_version *v = b->v;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vctx c = {progress, user, 0, 0, 0};
    for (size_t i = 0; i < v->man.n_segs; i++)
        for (uint32_t s = 0; s < v->segs[i]->seg.n_sections; s++) c.total += v->segs[i]->seg.sections[s].size;
    uint64_t docs = 0;
    for (size_t i = 0; i < v->man.n_segs; i++) {
        const bank_seg_view *sv = v->segs[i];
        for (uint32_t s = 0; s < sv->seg.n_sections; s++) {
            const bank_section *sec = &sv->seg.sections[s];
            msa_status st = sec->type == BANK_SEC_CONTENT ? check_content(sv, sec, &v->man.shape, &c)
                                                          : check_section(sv, sec, &c);
            if (st) return st;
        }
        MSA_TRY(check_gaps(sv, &c));
        if (sv->seg.kind == BANK_SEG_DOCS) MSA_TRY(check_texts(sv));
        docs += sv->seg.n_docs;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (progress) progress(c.total, c.total, user);
    if (report) {
        report->bytes_checked = c.done;
        report->n_docs_checked = docs;
        report->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    return MSA_OK;
}
