/* test_bank_checksums.c — the checksums that msa_bank_open itself must check (bank-format.md: the document
 * table and the strings of every segment; routing, content and text only by verify). test_bank_malformed
 * accepts a refusal by open *or* verify, so a parser that skipped its own checks would still pass there; here
 * a one-bit flip inside each of these two sections (found through the section table of the pristine
 * segment) must make the open itself fail, naming the section. Issue 13: found by the mutation
 * bank_doc_checksum of scripts/mutate.sh, which survived every other test. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bank/format.h"
#include "bank_synth.h"
#include "test.h"

#define MAX_TEXT 500

static char dir[256];

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc(*len ? *len : 1);
    if (d && fread(d, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return d;
}

static int spill(const char *path, const uint8_t *d, size_t n) {
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, d, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

static int build_bank(void) {
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    memset(cp.fingerprint, 7, 32);
    if (msa_bank_create(dir, &cp)) return -1;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    msa_bank *b;
    if (msa_bank_open(dir, &op, &b)) return -1;
    for (uint64_t k = 0; k < 5; k++) {
        synth_doc s;
        synth_make(&s, &cp.shape, k, 0, MAX_TEXT);
        msa_bank_add(b, &s.d, false, NULL, NULL);
        synth_free(&s);
    }
    msa_status st = msa_bank_commit(b);
    msa_bank_close(b);
    return st ? -1 : 0;
}

/* flip one bit in the middle of section `type` of the document segment; open must refuse with `what` */
static void flip_in_section(uint32_t type, const char *what) {
    char mpath[300], spath[300] = "";
    snprintf(mpath, sizeof mpath, "%s/MANIFEST", dir);
    size_t mlen = 0, slen = 0;
    uint8_t *mimg = slurp(mpath, &mlen);
    bank_manifest m;
    CHECK(mimg && bank_manifest_parse(mimg, mlen, "MANIFEST", &m) == MSA_OK);
    free(mimg);
    if (!mimg) return;
    uint8_t *seg = NULL;
    bank_segment sg;
    int found = 0;
    for (size_t i = 0; i < m.n_segs && !found; i++) { /* the segment with documents (not the template's) */
        snprintf(spath, sizeof spath, "%s/seg-%016llx.msab", dir, (unsigned long long)m.segs[i].seg_id);
        free(seg);
        seg = slurp(spath, &slen);
        if (seg && bank_segment_parse(seg, slen, &m.shape, m.uuid, "seg", &sg) == MSA_OK && sg.n_docs > 0) found = 1;
    }
    bank_manifest_free(&m);
    CHECK(found);
    const bank_section *sec = NULL;
    for (uint32_t i = 0; found && i < sg.n_sections; i++)
        if (sg.sections[i].type == type) sec = &sg.sections[i];
    CHECK(sec != NULL && sec->size > 0);
    if (!found || !sec || !sec->size) {
        free(seg);
        return;
    }
    const uint64_t at = sec->offset + sec->size / 2;
    seg[at] ^= 0x10;
    CHECK_EQ_INT(spill(spath, seg, slen), 0);
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_ERR_BAD_DATA); /* open alone, no verify */
    if (b) msa_bank_close(b);
    if (!strstr(msa_last_error(), what)) fprintf(stderr, "  flip at %llu: '%s'\n", (unsigned long long)at, msa_last_error());
    CHECK(strstr(msa_last_error(), what) != NULL);
    seg[at] ^= 0x10;
    CHECK_EQ_INT(spill(spath, seg, slen), 0);
    CHECK_EQ_INT(msa_bank_open(dir, NULL, &b), MSA_OK); /* restored: the flip was the only cause */
    if (b) msa_bank_close(b);
    free(seg);
}

TEST(open_checks_document_table) { flip_in_section(BANK_SEC_DOCS, "document table checksum"); }
TEST(open_checks_strings) { flip_in_section(BANK_SEC_STRINGS, "strings checksum"); }

int main(void) {
    if (getenv("MSA_TEST_ONLY_CONCURRENCY")) { /* the TSan suite runs only concurrency tests */
        printf("SKIP test_bank_checksums (not a concurrency test)\n");
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/msa-test-checksums-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir) || build_bank() != 0) {
        fprintf(stderr, "cannot build the test bank in %s: %s\n", dir, msa_last_error());
        return 1;
    }
    RUN(open_checks_document_table);
    RUN(open_checks_strings);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return test_summary();
}
