/* test_bank_malformed.c — malformed banks are refused with MSA_ERR_BAD_DATA and a message naming the file,
 * never a crash (this test also runs under ASan+UBSan): every file of a bank truncated at every section
 * boundary and at random offsets; bit flips everywhere in segment headers, document tables, data sections,
 * padding and the manifest; an unknown major version in the manifest and in a segment; a missing segment. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "bank/format.h"
#include "bank_synth.h"
#include "test.h"

#define MAX_TEXT 500

static char dir[256];

typedef struct file_img {
    char path[600];
    uint8_t *data;
    size_t len;
} file_img;

static file_img files[16];
static int n_files;

static int write_file(const char *path, const uint8_t *d, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    ssize_t w = write(fd, d, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

static void restore(int f) { write_file(files[f].path, files[f].data, files[f].len); }

/* open + verify must fail with BAD_DATA naming the file; returns 1 when that holds */
static int refused(const char *what, int f) {
    msa_bank *b = NULL;
    msa_status st = msa_bank_open(dir, NULL, &b);
    if (st == MSA_OK) {
        st = msa_bank_verify(b, NULL, NULL, NULL);
        /* reading every document must not crash either way */
        for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
            msa_bank_doc_info info;
            char *t;
            size_t len;
            if (msa_bank_doc_at(b, i, &info) == MSA_OK && msa_bank_doc_text(b, info.index, &t, &len) == MSA_OK) free(t);
        }
        msa_bank_close(b);
    }
    const char *base = strrchr(files[f].path, '/') + 1;
    if (st != MSA_ERR_BAD_DATA || !strstr(msa_last_error(), base)) {
        fprintf(stderr, "  %s of %s: status %d, message '%s'\n", what, base, st, msa_last_error());
        return 0;
    }
    return 1;
}

static void load_files(void) {
    n_files = 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s'", dir);
    FILE *p = popen(cmd, "r");
    char name[256];
    while (p && fgets(name, sizeof name, p) && n_files < 16) {
        name[strcspn(name, "\n")] = '\0';
        if (!strcmp(name, "LOCK")) continue;
        file_img *fi = &files[n_files++];
        snprintf(fi->path, sizeof fi->path, "%s/%s", dir, name);
        FILE *f = fopen(fi->path, "rb");
        fseek(f, 0, SEEK_END);
        fi->len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        fi->data = malloc(fi->len);
        if (fread(fi->data, 1, fi->len, f) != fi->len) fi->len = 0;
        fclose(f);
    }
    if (p) pclose(p);
}

static void build_bank(void) {
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    memset(cp.fingerprint, 7, 32);
    msa_bank_create(dir, &cp);
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    msa_bank *b;
    if (msa_bank_open(dir, &op, &b)) return;
    for (uint64_t k = 0; k < 9; k++) {
        synth_doc s;
        synth_make(&s, &cp.shape, k, 0, MAX_TEXT);
        msa_bank_add(b, &s.d, false, NULL, NULL);
        synth_free(&s);
        if (k == 4) msa_bank_commit(b);
    }
    size_t n = (size_t)cp.shape.n_layers * cp.shape.n_kv_heads * cp.shape.n_template * cp.shape.head_dim;
    float *t = calloc(n, 4);
    for (size_t i = 0; i < n; i++) t[i] = (float)i;
    msa_bank_set_template(b, t, t);
    free(t);
    msa_bank_remove(b, "doc-000002");
    msa_bank_commit(b);
    msa_bank_close(b);
}

TEST(pristine_bank_is_clean) {
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_OK);
    if (!b) return;
    CHECK_EQ_INT(msa_bank_verify(b, NULL, NULL, NULL), MSA_OK);
    CHECK_EQ_INT(msa_bank_n_docs(b), 8);
    msa_bank_close(b);
    CHECK(n_files >= 4); /* MANIFEST + 3 segments */
}

TEST(truncation) {
    int cases = 0, ok = 0;
    uint64_t rng = 12345;
    for (int f = 0; f < n_files; f++) {
        uint64_t cuts[256];
        int n = 0;
        cuts[n++] = 0;
        cuts[n++] = files[f].len - 1;
        if (!strncmp(strrchr(files[f].path, '/') + 1, "seg-", 4)) {
            /* every section boundary and the header end */
            const uint8_t *h = files[f].data;
            uint32_t ns = rd32(h + 28);
            cuts[n++] = BANK_SEG_HEADER_SIZE;
            cuts[n++] = BANK_SEG_HEADER_SIZE - 1;
            for (uint32_t i = 0; i < ns && n < 200; i++) {
                uint64_t off = rd64(h + 104 + 32 * i + 8), size = rd64(h + 104 + 32 * i + 16);
                if (off < files[f].len) cuts[n++] = off;
                if (off + size < files[f].len) cuts[n++] = off + size;
                if (off + 1 < files[f].len) cuts[n++] = off + 1;
            }
        }
        for (int i = 0; i < 40; i++) cuts[n++] = (rng = synth_mix(rng)) % files[f].len;
        for (int i = 0; i < n; i++) {
            if (truncate(files[f].path, (off_t)cuts[i]) != 0) continue;
            cases++;
            char what[64];
            snprintf(what, sizeof what, "truncation at %llu", (unsigned long long)cuts[i]);
            ok += refused(what, f);
            restore(f);
        }
    }
    printf("truncation: %d cases, %d refused correctly\n", cases, ok);
    CHECK(cases > 100);
    CHECK_EQ_INT(ok, cases);
}

TEST(bit_flips) {
    int cases = 0, ok = 0;
    uint64_t rng = 777;
    for (int f = 0; f < n_files; f++) {
        for (int i = 0; i < 400; i++) {
            uint64_t pos;
            if (i < 160) pos = (uint64_t)i * 7 % (files[f].len < 4096 ? files[f].len : 4096); /* headers */
            else pos = (rng = synth_mix(rng)) % files[f].len;
            int bit = (int)((rng = synth_mix(rng)) % 8);
            files[f].data[pos] ^= (uint8_t)(1 << bit);
            write_file(files[f].path, files[f].data, files[f].len);
            files[f].data[pos] ^= (uint8_t)(1 << bit);
            cases++;
            char what[64];
            snprintf(what, sizeof what, "bit flip at %llu", (unsigned long long)pos);
            ok += refused(what, f);
            restore(f);
        }
    }
    printf("bit flips: %d cases, %d refused correctly\n", cases, ok);
    CHECK_EQ_INT(ok, cases);
}

TEST(unknown_major_version) {
    for (int f = 0; f < n_files; f++) {
        const char *base = strrchr(files[f].path, '/') + 1;
        uint8_t *d = malloc(files[f].len);
        memcpy(d, files[f].data, files[f].len);
        wr16(d + 8, 2);
        /* keep every checksum valid so that the version check itself is what refuses it */
        if (!strcmp(base, "MANIFEST")) wr64(d + files[f].len - 8, XXH3_64bits(d, files[f].len - 8));
        else wr64(d + BANK_SEG_HEADER_SIZE - 8, XXH3_64bits(d, BANK_SEG_HEADER_SIZE - 8));
        write_file(files[f].path, d, files[f].len);
        free(d);
        msa_bank *b = NULL;
        CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_ERR_BAD_DATA);
        CHECK(strstr(msa_last_error(), "major version 2") != NULL);
        if (b) msa_bank_close(b);
        restore(f);
    }
}

TEST(missing_segment_and_foreign_segment) {
    for (int f = 0; f < n_files; f++) {
        if (strncmp(strrchr(files[f].path, '/') + 1, "seg-", 4)) continue;
        unlink(files[f].path);
        msa_bank *b = NULL;
        CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_ERR_BAD_DATA);
        CHECK(strstr(msa_last_error(), "missing") != NULL);
        restore(f);
        /* a segment from another bank (other uuid) under the right name */
        uint8_t *d = malloc(files[f].len);
        memcpy(d, files[f].data, files[f].len);
        d[60] ^= 1;
        wr64(d + BANK_SEG_HEADER_SIZE - 8, XXH3_64bits(d, BANK_SEG_HEADER_SIZE - 8));
        write_file(files[f].path, d, files[f].len);
        free(d);
        CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_ERR_BAD_DATA);
        restore(f);
        break;
    }
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_OK); /* restored */
    if (b) msa_bank_close(b);
}

/* a flipped bit inside a document's K̄/V̄ is caught at fetch time with verify_content, before verify runs */
TEST(fetch_detects_corrupt_content) {
    int seg = -1;
    for (int f = 0; f < n_files && seg < 0; f++)
        if (!strncmp(strrchr(files[f].path, '/') + 1, "seg-", 4) && rd32(files[f].data + 24) == BANK_SEG_DOCS) seg = f;
    CHECK(seg >= 0);
    if (seg < 0) return;
    const uint8_t *h = files[seg].data;
    uint64_t content_off = 0;
    for (uint32_t i = 0; i < rd32(h + 28); i++)
        if (rd32(h + 104 + 32 * i) == 5) content_off = rd64(h + 104 + 32 * i + 8);
    CHECK(content_off > 0);
    files[seg].data[content_off + 3] ^= 0x10; /* the first document of the segment */
    write_file(files[seg].path, files[seg].data, files[seg].len);
    files[seg].data[content_off + 3] ^= 0x10;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.verify_content = true;
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(dir, &op, &b), MSA_OK); /* open does not read content */
    if (b) {
        int bad = 0, ok = 0;
        for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
            msa_bank_doc_info info;
            const void *k, *v;
            msa_bank_doc_at(b, i, &info);
            msa_status st = msa_bank_doc_content(b, info.index, 1, &k, &v);
            if (st == MSA_ERR_BAD_DATA && strstr(msa_last_error(), "checksum")) bad++;
            else if (st == MSA_OK) ok++;
        }
        CHECK_EQ_INT(bad, 1);
        CHECK_EQ_INT(ok, (int)msa_bank_n_docs(b) - 1);
        CHECK_EQ_INT(msa_bank_verify(b, NULL, NULL, NULL), MSA_ERR_BAD_DATA);
        msa_bank_close(b);
    }
    restore(seg);
}

int main(void) {
    if (getenv("MSA_TEST_ONLY_CONCURRENCY")) { /* the TSan suite runs only concurrency tests */
        printf("SKIP test_bank_malformed (not a concurrency test)\n");
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/msa-test-malformed-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    build_bank();
    load_files();
    RUN(pristine_bank_is_clean);
    RUN(truncation);
    RUN(bit_flips);
    RUN(unknown_major_version);
    RUN(missing_segment_and_foreign_segment);
    RUN(fetch_detects_corrupt_content);
    for (int f = 0; f < n_files; f++) free(files[f].data);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return test_summary();
}
