/* test_bank_concurrency.c — readers query while a writer adds, replaces, removes and compacts. Each reader
 * thread has its own handle and, over and over: checks every live document byte for byte, walks every
 * routing span (every chunk belongs to a live document and carries its exact key row), keeps its pinned
 * version across the writer's compactions (whose old files are unlinked), then refreshes or reopens. A torn
 * or half-visible document anywhere fails the test. Built also with `make tsan` (MSA_TEST_SUITES=tsan). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank_synth.h"
#include "test.h"

#define MAX_TEXT 400
#define N_READERS 3

static char dir[256];
static atomic_int stop, writer_errors, reader_errors;
static atomic_long reads_done, checks_done, commits_done, compactions_done;

static void *writer(void *arg) {
    int rounds = *(int *)arg;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    msa_bank *b;
    if (msa_bank_open(dir, &op, &b)) {
        fprintf(stderr, "  writer open: %s\n", msa_last_error());
        atomic_fetch_add(&writer_errors, 1);
        atomic_store(&stop, 1);
        return NULL;
    }
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    uint64_t r = 42;
    for (int round = 0; round < rounds; round++) {
        msa_status st = MSA_OK;
        int n = 1 + (int)((r = synth_mix(r)) % 5);
        for (int i = 0; i < n && !st; i++) {
            synth_doc s;
            uint64_t k = (r = synth_mix(r)) % 40;
            synth_make(&s, &bi.shape, k, (uint32_t)((r >> 20) % 3), MAX_TEXT);
            st = msa_bank_add(b, &s.d, true, NULL, NULL);
            synth_free(&s);
        }
        if (!st && (r >> 30) % 3 == 0) {
            char id[32];
            snprintf(id, sizeof id, "doc-%06llu", (unsigned long long)((r >> 34) % 40));
            st = msa_bank_remove(b, id);
            if (st == MSA_ERR_NOT_FOUND) st = MSA_OK;
        }
        if (!st) st = msa_bank_commit(b);
        atomic_fetch_add(&commits_done, 1);
        if (!st && round % 7 == 6) {
            st = msa_bank_compact(b);
            atomic_fetch_add(&compactions_done, 1);
        }
        if (st) {
            fprintf(stderr, "  writer: %s\n", msa_last_error());
            atomic_fetch_add(&writer_errors, 1);
            break;
        }
    }
    msa_bank_close(b);
    atomic_store(&stop, 1);
    return NULL;
}

static int check_view(const msa_bank *b) {
    for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
        msa_bank_doc_info info;
        if (msa_bank_doc_at(b, i, &info)) return 1;
        const char *why = synth_check(b, &info, MAX_TEXT);
        if (why) {
            fprintf(stderr, "  reader: %s: %s\n", info.id, why);
            return 1;
        }
    }
    const char *why = synth_check_spans(b, MAX_TEXT);
    if (why) {
        fprintf(stderr, "  reader spans: %s\n", why);
        return 1;
    }
    atomic_fetch_add(&checks_done, 1);
    return 0;
}

static void *reader(void *arg) {
    int id = *(int *)arg;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.verify_content = true;
    op.routing_in_ram = id == 1; /* one reader serves routing keys from RAM copies */
    msa_bank *b = NULL;
    for (int it = 0; !atomic_load(&stop) || it < 2; it++) {
        msa_status st = MSA_OK;
        if (!b || it % 3 == 0) {
            if (b) msa_bank_close(b);
            b = NULL;
            st = msa_bank_open(dir, &op, &b);
        } else {
            if (check_view(b)) { /* the pinned version is still whole while the writer moved on */
                atomic_fetch_add(&reader_errors, 1);
                break;
            }
            st = msa_bank_refresh(b);
        }
        if (st) {
            fprintf(stderr, "  reader open/refresh: %s\n", msa_last_error());
            atomic_fetch_add(&reader_errors, 1);
            break;
        }
        if (check_view(b)) {
            atomic_fetch_add(&reader_errors, 1);
            break;
        }
        atomic_fetch_add(&reads_done, 1);
    }
    if (b) msa_bank_close(b);
    return NULL;
}

TEST(readers_during_writes_and_compaction) {
    const char *suite = getenv("MSA_SUITE");
    int rounds = suite && (!strcmp(suite, "asan") || !strcmp(suite, "tsan")) ? 40 : 120;
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    CHECK_EQ_INT(msa_bank_create(dir, &cp), MSA_OK);
    pthread_t w, r[N_READERS];
    int ids[N_READERS];
    for (int i = 0; i < N_READERS; i++) {
        ids[i] = i;
        pthread_create(&r[i], NULL, reader, &ids[i]);
    }
    pthread_create(&w, NULL, writer, &rounds);
    pthread_join(w, NULL);
    for (int i = 0; i < N_READERS; i++) pthread_join(r[i], NULL);
    printf("concurrency: %ld commits, %ld compactions, %ld reader passes, %ld full-view checks, %d writer errors, "
           "%d torn or failed reads\n",
           atomic_load(&commits_done), atomic_load(&compactions_done), atomic_load(&reads_done),
           atomic_load(&checks_done), atomic_load(&writer_errors), atomic_load(&reader_errors));
    CHECK_EQ_INT(atomic_load(&writer_errors), 0);
    CHECK_EQ_INT(atomic_load(&reader_errors), 0);
    CHECK(atomic_load(&compactions_done) >= 5);
    CHECK(atomic_load(&reads_done) >= N_READERS * 2);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/msa-test-conc-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(readers_during_writes_and_compaction);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return test_summary();
}
