/* test_bank_incremental.c — a writer's commits re-index only what changed (issue 12, single-document
 * operations at scale). The version a writer adopts after each commit and after the automatic merge is
 * derived from the previous one (bank.c version_advance), not rebuilt from every document; these cases check
 * that the derived version is exactly what a fresh open builds from the files, against an independent model
 * of the workload, and that the work per commit does not grow with the bank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank/bank.h"
#include "bank/bank_io.h"
#include "bank_synth.h"
#include "test.h"
#include "util/error.h"

#define MAX_TEXT 120

static char scratch[256];

static int nosync(int fd) { /* logic, not the disk: test_bank_powerloss models durability */
    (void)fd;
    return 0;
}
static const bank_io_ops fast_ops = {.fsync = nosync};

static msa_status add_doc(msa_bank *b, uint64_t k, uint32_t variant) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    synth_doc s;
    if (synth_make(&s, &bi.shape, k, variant, MAX_TEXT)) return MSA_ERR_NOMEM;
    msa_status st = msa_bank_add(b, &s.d, true, NULL, NULL);
    synth_free(&s);
    return st;
}

/* Everything a reader can see, compared between the writer's derived version and a fresh open, and against
 * the model (variant[k] of each live document, -1 when absent). Returns NULL when all agree. */
static const char *compare(msa_bank *w, const char *path, const int *variant, uint64_t n_keys) {
    static char why[256];
    msa_bank *r;
    if (msa_bank_open(path, NULL, &r)) return "fresh open failed";
    msa_bank_info a, c;
    msa_bank_get_info(w, &a);
    msa_bank_get_info(r, &c);
    const char *bad = NULL;
    uint64_t model_live = 0;
    for (uint64_t k = 0; k < n_keys; k++) model_live += variant[k] >= 0;
    if (a.n_docs != c.n_docs || a.n_docs != model_live) bad = "document count";
    else if (a.n_tokens != c.n_tokens || a.n_chunks != c.n_chunks || a.text_bytes != c.text_bytes) bad = "token/chunk/text totals";
    else if (a.n_deleted != c.n_deleted || a.n_segments != c.n_segments || a.bytes != c.bytes) bad = "deleted/segments/bytes";
    else if (a.version != c.version || a.next_index != c.next_index || a.has_template != c.has_template) bad = "version";
    for (uint64_t i = 0; !bad && i < a.n_docs; i++) { /* positions: same documents in the same order */
        msa_bank_doc_info x, y;
        uint64_t k;
        uint32_t var;
        if (msa_bank_doc_at(w, i, &x) || msa_bank_doc_at(r, i, &y)) bad = "doc_at failed";
        else if (strcmp(x.id, y.id) || x.index != y.index || memcmp(x.hash, y.hash, 16)) bad = "doc_at differs";
        else if (synth_parse(&x, &k, &var) || k >= n_keys || variant[k] != (int)var) bad = "doc_at vs model";
        else if (i > 0) {
            msa_bank_doc_info p;
            msa_bank_doc_at(w, i - 1, &p);
            if (p.index >= x.index) bad = "positions not in index order";
        }
    }
    for (uint64_t k = 0; !bad && k < n_keys; k++) { /* lookups by id, live and deleted */
        char id[48];
        snprintf(id, sizeof id, "doc-%06llu", (unsigned long long)k);
        msa_bank_doc_info x, y;
        msa_status sx = msa_bank_doc_by_id(w, id, &x), sy = msa_bank_doc_by_id(r, id, &y);
        if ((sx == MSA_OK) != (variant[k] >= 0) || (sy == MSA_OK) != (variant[k] >= 0)) bad = "lookup by id vs model";
        else if (sx == MSA_OK && (x.index != y.index || strcmp(x.meta_json, y.meta_json))) bad = "lookup by id differs";
        else if (sx == MSA_OK && msa_bank_doc_by_index(w, x.index, &y)) bad = "lookup by index failed";
        else if (sx == MSA_OK && synth_check(w, &x, MAX_TEXT)) bad = synth_check(w, &x, MAX_TEXT);
    }
    for (int l = 0; !bad && l < a.shape.n_router; l++) { /* routing spans: same chunks, same keys */
        const msa_bank_span *sa, *sc;
        size_t na, nc;
        msa_bank_route_spans(w, l, &sa, &na);
        msa_bank_route_spans(r, l, &sc, &nc);
        uint64_t ca = 0, cc = 0;
        for (size_t i = 0; i < na; i++) ca += sa[i].n_chunks;
        for (size_t i = 0; i < nc; i++) cc += sc[i].n_chunks;
        if (na != nc || ca != cc || ca != a.n_chunks) bad = "span count or chunks";
        for (size_t i = 0; !bad && i < na; i++)
            if (sa[i].n_chunks != sc[i].n_chunks ||
                memcmp(sa[i].doc_index, sc[i].doc_index, sa[i].n_chunks * sizeof *sa[i].doc_index) ||
                memcmp(sa[i].keys, sc[i].keys, sa[i].n_chunks * (uint64_t)a.shape.route_dim[l] * 4))
                bad = "span differs";
    }
    if (!bad) bad = synth_check_spans(w, MAX_TEXT);
    msa_bank_close(r);
    if (bad) snprintf(why, sizeof why, "%s", bad);
    return bad ? why : NULL;
}

/* A random workload on one writer handle: adds, replaces, removes, commits of 1..several changes (the
 * automatic merge runs at many of them), a template set half-way, a compaction; after every commit the
 * writer's version must equal a fresh open's and the model. */
TEST(derived_versions_equal_fresh_opens) {
    bank_io_set(&fast_ops);
    snprintf(scratch, sizeof scratch, "/tmp/msa_incr_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    (void)!system(cmd);
    CHECK(synth_create_small(scratch) == MSA_OK);
    enum { N_KEYS = 120, STEPS = 400 };
    int variant[N_KEYS];
    for (int k = 0; k < N_KEYS; k++) variant[k] = -1;
    msa_bank *w = NULL;
    CHECK(synth_open_writable(scratch, &w) == MSA_OK);
    uint64_t seed = 12345;
    int commits = 0, failures = 0, adds = 0, replaces = 0, removes = 0;
    const char *first_bad = NULL;
    for (int step = 0; step < STEPS && w; step++) {
        seed = synth_mix(seed + (uint64_t)step);
        int k = (int)(seed % N_KEYS);
        msa_status st = MSA_OK;
        if (variant[k] < 0) {
            st = add_doc(w, (uint64_t)k, 0);
            if (!st) variant[k] = 0, adds++;
        } else if ((seed >> 20) % 3 == 0) {
            char id[48];
            snprintf(id, sizeof id, "doc-%06d", k);
            st = msa_bank_remove(w, id);
            if (!st) variant[k] = -1, removes++;
        } else {
            st = add_doc(w, (uint64_t)k, (uint32_t)variant[k] + 1);
            if (!st) variant[k]++, replaces++;
        }
        if (st) failures++;
        if (step == STEPS / 2) { /* a template after documents: the next version is rebuilt, then derived again */
            msa_bank_info bi;
            msa_bank_get_info(w, &bi);
            uint64_t half = (uint64_t)bi.shape.n_layers * bi.shape.n_kv_heads * bi.shape.n_template * bi.shape.head_dim;
            float *t = calloc(half, sizeof *t);
            if (t && msa_bank_set_template(w, t, t)) failures++;
            free(t);
        }
        if ((seed >> 40) % 3 == 0 || step == STEPS - 1) {
            if (msa_bank_commit(w)) failures++;
            commits++;
            const char *bad = compare(w, scratch, variant, N_KEYS);
            if (bad && !first_bad) {
                first_bad = bad;
                fprintf(stderr, "step %d: %s\n", step, bad);
            }
        }
        if (step == (STEPS * 3) / 4) {
            if (msa_bank_compact(w)) failures++;
            const char *bad = compare(w, scratch, variant, N_KEYS);
            if (bad && !first_bad) first_bad = bad;
        }
    }
    CHECK_EQ_INT(failures, 0);
    CHECK(first_bad == NULL);
    CHECK(commits > 100 && adds > 50 && replaces > 50 && removes > 30); /* the workload's premise */
    msa_bank_close(w);
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    (void)!system(cmd);
    bank_io_set(NULL);
}

/* The work of single-document commits does not grow with the bank: 150 commits (add, replace, remove; the
 * merge policy rewrites small tails meanwhile) on a bank of 20,000 documents index a few hundred records
 * between them. Rebuilding every version indexed all 20,000 at each commit (3,000,000 records). */
TEST(single_commits_index_only_what_changed) {
    bank_io_set(&fast_ops);
    snprintf(scratch, sizeof scratch, "/tmp/msa_incr2_%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    (void)!system(cmd);
    enum { N = 20000, OPS = 50 };
    CHECK(synth_create_small(scratch) == MSA_OK);
    msa_bank *w = NULL;
    CHECK(synth_open_writable(scratch, &w) == MSA_OK);
    msa_status st = MSA_OK;
    for (uint64_t k = 0; k < N && !st; k++) st = add_doc(w, k, 0);
    if (!st) st = msa_bank_commit(w);
    CHECK(st == MSA_OK);
    uint64_t before = bank_records_indexed();
    int failures = 0;
    for (int i = 0; i < OPS; i++) {
        failures += add_doc(w, N + (uint64_t)i, 0) != MSA_OK || msa_bank_commit(w) != MSA_OK;
        failures += add_doc(w, (uint64_t)i * 7, 1) != MSA_OK || msa_bank_commit(w) != MSA_OK;
        char id[48];
        snprintf(id, sizeof id, "doc-%06d", 10000 + i * 3);
        failures += msa_bank_remove(w, id) != MSA_OK || msa_bank_commit(w) != MSA_OK;
    }
    uint64_t work = bank_records_indexed() - before;
    CHECK_EQ_INT(failures, 0);
    fprintf(stderr, "# %d single-document commits on %d documents indexed %llu records\n", 3 * OPS, N,
            (unsigned long long)work);
    CHECK(work > 0);          /* the counter counts: each commit indexes at least its own document */
    CHECK(work < N / 4);      /* a rebuild per commit: 3 * OPS * N */
    msa_bank_info bi;
    msa_bank_get_info(w, &bi);
    CHECK_EQ_INT((int)bi.n_docs, N + OPS - OPS);
    CHECK_EQ_INT((int)bi.n_deleted, 2 * OPS);
    msa_bank_close(w);
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    (void)!system(cmd);
    bank_io_set(NULL);
}

int main(void) {
    RUN(derived_versions_equal_fresh_opens);
    RUN(single_commits_index_only_what_changed);
    return test_summary();
}
