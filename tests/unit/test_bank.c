/* test_bank.c — the memory bank's behaviour through the public API: create/add/commit/read back (f32 and
 * bf16), idempotent adds, conflicts and replace, tombstones and compaction (never routed, indices never
 * reused), the writer lock, reader versions, export/import, read mode, size per token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bank_synth.h"
#include "test.h"

#define MAX_TEXT 700

static char scratch[256];

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  (could not remove %s)\n", dir);
}

static const char *fresh(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    rm_rf(path);
    return path;
}

static msa_status create_named(const char *path, const char *shape, uint8_t fp_byte) {
    msa_bank_create_params cp = {0};
    if (msa_bank_shape_named(shape, &cp.shape)) return MSA_ERR_INVALID_ARG;
    memset(cp.fingerprint, fp_byte, 32);
    cp.model_path = "models/test";
    return msa_bank_create(path, &cp);
}

static msa_bank *open_bank(const char *path, bool writable) {
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = writable;
    op.verify_content = true;
    msa_bank *b = NULL;
    msa_status st = msa_bank_open(path, &op, &b);
    if (st) fprintf(stderr, "  open %s: %s\n", path, msa_last_error());
    return b;
}

static msa_status add_k(msa_bank *b, uint64_t k, uint32_t variant, bool replace, msa_bank_doc_state *state,
                        uint32_t *index) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    synth_doc s;
    if (synth_make(&s, &bi.shape, k, variant, MAX_TEXT)) return MSA_ERR_NOMEM;
    msa_status st = msa_bank_add(b, &s.d, replace, state, index);
    synth_free(&s);
    return st;
}

static int check_all(const msa_bank *b) {
    int bad = 0;
    for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
        msa_bank_doc_info info;
        if (msa_bank_doc_at(b, i, &info)) return 1;
        const char *why = synth_check(b, &info, MAX_TEXT);
        if (why) {
            fprintf(stderr, "  document %s: %s\n", info.id, why);
            bad++;
        }
    }
    const char *why = synth_check_spans(b, MAX_TEXT);
    if (why) {
        fprintf(stderr, "  spans: %s\n", why);
        bad++;
    }
    msa_bank_verify_report rep;
    if (msa_bank_verify(b, NULL, NULL, &rep)) {
        fprintf(stderr, "  verify: %s\n", msa_last_error());
        bad++;
    }
    return bad;
}

TEST(roundtrip_f32) {
    const char *p = fresh("rt");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 20; k++) {
        uint32_t idx = 99;
        CHECK_EQ_INT(msa_bank_next_index(b), k);
        CHECK_EQ_INT(add_k(b, k, 0, false, NULL, &idx), MSA_OK);
        CHECK_EQ_INT(idx, k);
        if (k % 7 == 6) CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    }
    CHECK_EQ_INT(msa_bank_n_docs(b), 14); /* staged documents are not visible before commit */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 20);
    CHECK_EQ_INT(check_all(b), 0);
    /* template */
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    size_t n = (size_t)bi.shape.n_layers * bi.shape.n_kv_heads * bi.shape.n_template * bi.shape.head_dim;
    float *tk = malloc(n * 4), *tv = malloc(n * 4);
    for (size_t i = 0; i < n; i++) tk[i] = (float)i, tv[i] = -(float)i;
    const void *k, *v;
    CHECK_EQ_INT(msa_bank_template(b, 0, &k, &v), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(msa_bank_set_template(b, tk, tv), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_set_template(b, tk, tv), MSA_OK); /* identical: no-op */
    tv[5] = 1;
    CHECK_EQ_INT(msa_bank_set_template(b, tk, tv), MSA_ERR_CONFLICT);
    tv[5] = -5;
    size_t per = n / (size_t)bi.shape.n_layers;
    CHECK_EQ_INT(msa_bank_template(b, 3, &k, &v), MSA_OK);
    CHECK(!memcmp(k, tk + 3 * per, per * 4) && !memcmp(v, tv + 3 * per, per * 4));
    msa_bank_close(b);
    /* reopen read-only: everything is still there */
    b = open_bank(p, false);
    CHECK(b != NULL);
    if (!b) return;
    CHECK_EQ_INT(msa_bank_n_docs(b), 20);
    CHECK_EQ_INT(check_all(b), 0);
    CHECK_EQ_INT(msa_bank_template(b, 3, &k, &v), MSA_OK);
    CHECK(!memcmp(k, tk + 3 * per, per * 4) && !memcmp(v, tv + 3 * per, per * 4));
    msa_bank_doc_info info;
    CHECK_EQ_INT(msa_bank_doc_by_id(b, "doc-000007", &info), MSA_OK);
    CHECK_EQ_INT(info.index, 7);
    CHECK_EQ_INT(msa_bank_doc_by_id(b, "nope", &info), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(msa_bank_doc_by_index(b, 20, &info), MSA_ERR_NOT_FOUND);
    /* read_content returns the same bytes as the mapping */
    CHECK_EQ_INT(msa_bank_doc_by_index(b, 5, &info), MSA_OK);
    size_t half = (size_t)info.n_chunks * bi.shape.n_kv_heads * bi.shape.head_dim * 4;
    void *kb = malloc(half), *vb = malloc(half);
    CHECK_EQ_INT(msa_bank_read_content(b, 5, 1, kb, vb), MSA_OK);
    CHECK_EQ_INT(msa_bank_doc_content(b, 5, 1, &k, &v), MSA_OK);
    CHECK(!memcmp(kb, k, half) && !memcmp(vb, v, half));
    CHECK((const char *)v == (const char *)k + half); /* a fetch is one contiguous read */
    free(kb);
    free(vb);
    CHECK_EQ_INT(add_k(b, 50, 0, false, NULL, NULL), MSA_ERR_INVALID_ARG); /* read-only handle */
    msa_bank_close(b);
    free(tk);
    free(tv);
}

TEST(idempotent_conflict_replace) {
    const char *p = fresh("idem");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL); /* a bank that does not open fails the case, not skips it */
    if (!b) return;
    msa_bank_doc_state s;
    uint32_t idx;
    for (uint64_t k = 0; k < 5; k++) CHECK_EQ_INT(add_k(b, k, 0, false, &s, &idx), MSA_OK);
    CHECK_EQ_INT(add_k(b, 2, 0, false, &s, &idx), MSA_OK); /* staged duplicate */
    CHECK_EQ_INT(s, MSA_BANK_DOC_UNCHANGED);
    CHECK_EQ_INT(idx, 2);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(add_k(b, 3, 0, false, &s, &idx), MSA_OK);
    CHECK_EQ_INT(s, MSA_BANK_DOC_UNCHANGED);
    CHECK_EQ_INT(msa_bank_n_pending(b), 0);
    CHECK_EQ_INT(add_k(b, 3, 1, false, &s, &idx), MSA_ERR_CONFLICT);
    CHECK(strstr(msa_last_error(), "doc-000003") != NULL);
    CHECK_EQ_INT(add_k(b, 3, 1, true, &s, &idx), MSA_OK);
    CHECK_EQ_INT(s, MSA_BANK_DOC_DIFFERENT);
    CHECK_EQ_INT(idx, 5); /* a replaced document gets a new index */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    msa_bank_doc_info info;
    CHECK_EQ_INT(msa_bank_doc_by_index(b, 3, &info), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(msa_bank_doc_by_id(b, "doc-000003", &info), MSA_OK);
    CHECK_EQ_INT(info.index, 5);
    CHECK_EQ_INT(msa_bank_n_docs(b), 5);
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    CHECK_EQ_INT(bi.n_deleted, 1);
    CHECK_EQ_INT(check_all(b), 0);
    /* state_of for an encoder deciding what to encode */
    synth_doc sd;
    synth_make(&sd, &bi.shape, 4, 0, MAX_TEXT);
    uint8_t h[16];
    msa_bank_content_hash(sd.text, sd.d.text_len, sd.meta, h);
    CHECK_EQ_INT(msa_bank_doc_state_of(b, "doc-000004", h), MSA_BANK_DOC_UNCHANGED);
    h[0] ^= 1;
    CHECK_EQ_INT(msa_bank_doc_state_of(b, "doc-000004", h), MSA_BANK_DOC_DIFFERENT);
    CHECK_EQ_INT(msa_bank_doc_state_of(b, "doc-999999", h), MSA_BANK_DOC_NEW);
    synth_free(&sd);
    /* invalid documents */
    synth_make(&sd, &bi.shape, 9, 0, MAX_TEXT);
    sd.d.n_chunks++;
    CHECK_EQ_INT(msa_bank_add(b, &sd.d, false, NULL, NULL), MSA_ERR_INVALID_ARG);
    sd.d.n_chunks--;
    sd.d.id = "";
    CHECK_EQ_INT(msa_bank_add(b, &sd.d, false, NULL, NULL), MSA_ERR_INVALID_ARG);
    synth_free(&sd);
    msa_bank_close(b);
}

TEST(tombstones_and_compaction) {
    const char *p = fresh("tomb");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 30; k++) {
        CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
        if (k % 4 == 3) CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    }
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    char id[32];
    for (int k = 0; k < 30; k += 3) {
        snprintf(id, sizeof id, "doc-%06d", k);
        CHECK_EQ_INT(msa_bank_remove(b, id), MSA_OK);
    }
    CHECK_EQ_INT(msa_bank_remove(b, "doc-000000"), MSA_ERR_NOT_FOUND); /* already staged */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 20);
    CHECK_EQ_INT(check_all(b), 0); /* spans hold exactly the live chunks */
    const msa_bank_span *spans;
    size_t n_spans;
    CHECK_EQ_INT(msa_bank_route_spans(b, 0, &spans, &n_spans), MSA_OK);
    for (size_t i = 0; i < n_spans; i++)
        for (uint64_t c = 0; c < spans[i].n_chunks; c++) CHECK(spans[i].doc_index[c] % 3 != 0);
    msa_bank_info before;
    msa_bank_get_info(b, &before);
    CHECK_EQ_INT(before.n_deleted, 10);
    /* a reader pinned on this version keeps seeing it across the compaction */
    msa_bank *r = open_bank(p, false);
    CHECK_EQ_INT(msa_bank_compact(b), MSA_OK);
    msa_bank_info after;
    msa_bank_get_info(b, &after);
    CHECK_EQ_INT(after.n_deleted, 0);
    CHECK_EQ_INT(after.n_docs, 20);
    CHECK_EQ_INT(after.n_segments, 1);
    CHECK(after.bytes < before.bytes);
    CHECK_EQ_INT(check_all(b), 0);
    CHECK_EQ_INT(msa_bank_route_spans(b, 1, &spans, &n_spans), MSA_OK);
    CHECK_EQ_INT(n_spans, 1);
    if (r) {
        CHECK_EQ_INT(check_all(r), 0); /* old files unlinked but still mapped */
        CHECK_EQ_INT(msa_bank_refresh(r), MSA_OK);
        msa_bank_info ri;
        msa_bank_get_info(r, &ri);
        CHECK_EQ_INT(ri.n_segments, 1);
        CHECK_EQ_INT(check_all(r), 0);
        msa_bank_close(r);
    }
    /* indices are never reused, even after compaction purged them */
    uint32_t idx;
    CHECK_EQ_INT(add_k(b, 0, 0, false, NULL, &idx), MSA_OK);
    CHECK_EQ_INT(idx, 30);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    msa_bank_close(b);
    b = open_bank(p, false);
    CHECK(b != NULL);
    if (!b) return;
    msa_bank_doc_info info;
    CHECK_EQ_INT(msa_bank_doc_by_id(b, "doc-000000", &info), MSA_OK);
    CHECK_EQ_INT(info.index, 30);
    CHECK_EQ_INT(check_all(b), 0);
    msa_bank_close(b);
}

TEST(writer_lock_and_versions) {
    const char *p = fresh("lock");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank *w = open_bank(p, true);
    CHECK(w != NULL);
    if (!w) return;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    msa_bank *w2 = NULL;
    CHECK_EQ_INT(msa_bank_open(p, &op, &w2), MSA_ERR_LOCKED);
    msa_bank *r = open_bank(p, false);
    CHECK(r != NULL);
    CHECK_EQ_INT(add_k(w, 1, 0, false, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(w), MSA_OK);
    if (r) {
        CHECK_EQ_INT(msa_bank_n_docs(r), 0); /* pinned at its version */
        CHECK_EQ_INT(msa_bank_refresh(r), MSA_OK);
        CHECK_EQ_INT(msa_bank_n_docs(r), 1);
        msa_bank_close(r);
    }
    msa_bank_close(w);
    CHECK_EQ_INT(msa_bank_open(p, &op, &w2), MSA_OK); /* lock released by close */
    msa_bank_close(w2);
    /* missing and malformed */
    CHECK_EQ_INT(msa_bank_open("/nonexistent/bank", NULL, &w2), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(msa_bank_open(scratch, NULL, &w2), MSA_ERR_BAD_DATA);
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_ERR_CONFLICT); /* not empty */
}

TEST(staged_changes_dropped_on_close) {
    const char *p = fresh("drop");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    CHECK_EQ_INT(add_k(b, 1, 0, false, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(add_k(b, 2, 0, false, NULL, NULL), MSA_OK);
    msa_bank_close(b); /* not committed: not acknowledged, not visible */
    b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    CHECK_EQ_INT(msa_bank_n_docs(b), 1);
    CHECK_EQ_INT(msa_bank_next_index(b), 1);
    msa_bank_close(b);
    /* only MANIFEST, LOCK and one segment remain (the orphan was cleaned) */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 3", p);
    CHECK_EQ_INT(system(cmd), 0);
}

TEST(auto_commit_on_pending_bytes) {
    const char *p = fresh("auto");
    CHECK_EQ_INT(create_named(p, "synthetic-small", 1), MSA_OK);
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    op.max_pending_bytes = 2000;
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(p, &op, &b), MSA_OK);
    if (!b) return;
    for (uint64_t k = 0; k < 40; k++) CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
    CHECK(msa_bank_n_docs(b) > 0); /* some were committed without an explicit commit */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 40);
    CHECK_EQ_INT(check_all(b), 0);
    msa_bank_close(b);
}

/* The bound counts staged text too, not only routing keys: documents of large incompressible text and one
 * chunk each (tiny keys) must still be committed on their own, or the writer's text buffer grows with the
 * input (before, only routing keys counted: 5 MiB of text stayed staged under a 1 MiB bound). */
TEST(auto_commit_counts_staged_text) {
    const char *p = fresh("auto-text");
    msa_bank_create_params cp = {0};
    CHECK_EQ_INT(msa_bank_shape_named("synthetic-small", &cp.shape), MSA_OK);
    cp.shape.pooling = 4096;
    memset(cp.fingerprint, 1, 32);
    CHECK_EQ_INT(msa_bank_create(p, &cp), MSA_OK);
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    op.max_pending_bytes = (size_t)1 << 20;
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(p, &op, &b), MSA_OK);
    if (!b) return;
    size_t tl = (size_t)256 << 10;
    char *text = malloc(tl);
    CHECK(text != NULL);
    if (!text) return;
    float keys[16] = {0}, kv[16] = {0};
    const void *rk[2] = {keys, keys}, *km[2] = {kv, kv}, *vm[2] = {kv, kv};
    uint64_t x = 88172645463325252ULL;
    for (int k = 0; k < 20; k++) {
        for (size_t i = 0; i < tl; i++) { /* xorshift letters: zstd cannot shrink them much */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            text[i] = (char)('a' + (x >> 32) % 26);
        }
        char id[32];
        snprintf(id, sizeof id, "t%d", k);
        msa_bank_doc d = {.id = id, .text = text, .text_len = tl, .n_tokens = 1, .n_chunks = 1, .route_keys = rk,
                          .k_mean = km, .v_mean = vm};
        CHECK_EQ_INT(msa_bank_add(b, &d, false, NULL, NULL), MSA_OK);
    }
    free(text);
    CHECK(msa_bank_n_docs(b) >= 10); /* committed on their own, about every 1 MiB of staged text */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 20);
    msa_bank_close(b);
}

TEST(export_import) {
    const char *p = fresh("exp-src");
    char src[512], dst[512], file[512], other[512];
    snprintf(src, sizeof src, "%s", p);
    snprintf(dst, sizeof dst, "%s", fresh("exp-dst"));
    snprintf(other, sizeof other, "%s", fresh("exp-other"));
    snprintf(file, sizeof file, "%s/bank.msax", scratch);
    CHECK_EQ_INT(create_named(src, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(src, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 12; k++) CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    size_t n = (size_t)bi.shape.n_layers * bi.shape.n_kv_heads * bi.shape.n_template * bi.shape.head_dim;
    float *t = calloc(n, 4);
    t[1] = 2.5f;
    CHECK_EQ_INT(msa_bank_set_template(b, t, t), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_remove(b, "doc-000004"), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_export(b, file), MSA_OK);
    msa_bank_close(b);
    uint64_t n_docs = 0;
    CHECK_EQ_INT(msa_bank_import(file, dst, &n_docs), MSA_OK);
    CHECK_EQ_INT(n_docs, 11);
    b = open_bank(dst, false);
    if (b) {
        msa_bank_doc_info info;
        CHECK_EQ_INT(msa_bank_doc_by_id(b, "doc-000011", &info), MSA_OK);
        CHECK_EQ_INT(info.index, 11); /* indices kept */
        CHECK_EQ_INT(msa_bank_doc_by_index(b, 4, &info), MSA_ERR_NOT_FOUND);
        CHECK_EQ_INT(msa_bank_next_index(b), 12);
        msa_bank_get_info(b, &bi);
        CHECK(bi.has_template);
        CHECK_EQ_INT(check_all(b), 0);
        uint8_t fp[32];
        memset(fp, 1, 32);
        CHECK_EQ_INT(msa_bank_check_fingerprint(b, fp), MSA_OK);
        fp[3] = 9;
        CHECK_EQ_INT(msa_bank_check_fingerprint(b, fp), MSA_ERR_MISMATCH);
        msa_bank_close(b);
    }
    CHECK_EQ_INT(msa_bank_import(file, dst, NULL), MSA_ERR_CONFLICT); /* populated bank */
    CHECK_EQ_INT(create_named(other, "synthetic-small", 2), MSA_OK);
    CHECK_EQ_INT(msa_bank_import(file, other, NULL), MSA_ERR_MISMATCH); /* another model */
    /* a corrupted export is refused before anything is written */
    FILE *f = fopen(file, "r+b");
    if (f) {
        fseek(f, 5000, SEEK_SET);
        int c = fgetc(f);
        fseek(f, 5000, SEEK_SET);
        fputc(c ^ 0x40, f);
        fclose(f);
    }
    char dst2[512];
    snprintf(dst2, sizeof dst2, "%s", fresh("exp-dst2"));
    CHECK_EQ_INT(msa_bank_import(file, dst2, NULL), MSA_ERR_BAD_DATA);
    struct stat sb;
    CHECK(stat(dst2, &sb) != 0);
    free(t);
}

/* Import into an existing empty bank copies the export's document segment whole (streamed import): the
 * copy must carry this bank's uuid and a fresh segment id (else the bank would not open), keep every
 * document, index and routing key, verify, and accept a writer that adds after it. */
TEST(import_into_existing_empty_bank) {
    char src[512], dst[512], file[512];
    snprintf(src, sizeof src, "%s", fresh("imp-src"));
    snprintf(dst, sizeof dst, "%s", fresh("imp-dst"));
    snprintf(file, sizeof file, "%s/imp.msax", scratch);
    CHECK_EQ_INT(create_named(src, "synthetic-small", 1), MSA_OK);
    CHECK_EQ_INT(create_named(dst, "synthetic-small", 1), MSA_OK);
    msa_bank *b = open_bank(src, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 30; k++) CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_remove(b, "doc-000007"), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_export(b, file), MSA_OK);
    msa_bank_close(b);
    uint64_t n = 0;
    CHECK_EQ_INT(msa_bank_import(file, dst, &n), MSA_OK);
    CHECK_EQ_INT(n, 29);
    b = open_bank(dst, true);
    CHECK(b != NULL);
    if (!b) return;
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    CHECK_EQ_INT(bi.n_docs, 29);
    CHECK_EQ_INT(bi.n_segments, 1);
    CHECK_EQ_INT(msa_bank_next_index(b), 30);
    CHECK_EQ_INT(check_all(b), 0);
    CHECK_EQ_INT(msa_bank_verify(b, NULL, NULL, NULL), MSA_OK);
    msa_bank_doc_info info;
    CHECK_EQ_INT(msa_bank_doc_by_index(b, 7, &info), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(msa_bank_doc_by_id(b, "doc-000029", &info), MSA_OK);
    CHECK_EQ_INT(info.index, 29);
    CHECK_EQ_INT(add_k(b, 100, 0, false, NULL, NULL), MSA_OK); /* the bank goes on as any other */
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 30);
    msa_bank_close(b);
    CHECK_EQ_INT(msa_bank_import(file, dst, NULL), MSA_ERR_CONFLICT); /* populated now */
}

TEST(bf16_msa4b_size_per_token) {
    const char *p = fresh("bf16");
    CHECK_EQ_INT(create_named(p, "msa-4b", 3), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 3; k++) CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(check_all(b), 0);
    /* vectors: 18 layers x 8 heads x 128 x 2 bytes x 3 (K̄R, K̄, V̄) per chunk = 1728 bytes per token at P=64 */
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    uint64_t per_chunk = 0;
    for (int l = 0; l < bi.shape.n_router; l++) per_chunk += (uint64_t)bi.shape.route_dim[l] * 2;
    per_chunk += (uint64_t)bi.shape.n_router * 2 * bi.shape.n_kv_heads * bi.shape.head_dim * 2;
    CHECK_EQ_INT(per_chunk / 64, 1728);
    /* the segment holds exactly that plus text, strings, records and alignment */
    uint64_t vec = bi.n_chunks * per_chunk;
    CHECK(bi.bytes >= vec && bi.bytes < vec + 4096 + 3 * 112 + bi.text_bytes + 200 + 64 * 25 + 1024);
    msa_bank_close(b);
}

TEST(read_mode_bank) {
    const char *p = fresh("read");
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    cp.shape.mode = MSA_BANK_READ;
    cp.shape.route_dim[0] = 5;
    cp.shape.route_dim[1] = 3;
    CHECK_EQ_INT(msa_bank_create(p, &cp), MSA_OK);
    msa_bank *b = open_bank(p, true);
    CHECK(b != NULL);
    if (!b) return;
    for (uint64_t k = 0; k < 6; k++) CHECK_EQ_INT(add_k(b, k, 0, false, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK);
    CHECK_EQ_INT(check_all(b), 0);
    const void *k, *v;
    CHECK_EQ_INT(msa_bank_doc_content(b, 0, 0, &k, &v), MSA_ERR_UNSUPPORTED);
    msa_bank_close(b);
}

int main(void) {
    if (getenv("MSA_TEST_ONLY_CONCURRENCY")) { /* the TSan suite runs only concurrency tests */
        printf("SKIP test_bank (not a concurrency test)\n");
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/msa-test-bank-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(roundtrip_f32);
    RUN(idempotent_conflict_replace);
    RUN(tombstones_and_compaction);
    RUN(writer_lock_and_versions);
    RUN(staged_changes_dropped_on_close);
    RUN(auto_commit_on_pending_bytes);
    RUN(auto_commit_counts_staged_text);
    RUN(export_import);
    RUN(import_into_existing_empty_bank);
    RUN(bf16_msa4b_size_per_token);
    RUN(read_mode_bank);
    rm_rf(scratch);
    return test_summary();
}
