/* test_bank_powerloss.c — power loss at every sync point. The bank's I/O shim is replaced by a model of the
 * page cache (as ALICE and CrashMonkey do): the real file system is the page cache; a file's bytes become
 * durable only when that file is fsynced, and a directory's entries (names → files) only when that directory
 * is fsynced. Files are tracked by inode; an inode unlinked or renamed over is retired, so a reused inode
 * number is never confused with the old file a durable entry still names.
 *
 * A scripted workload (create, template, add, replace, rm, compact, export, import) runs against the model.
 * Just before every fsync — the only moments the durable state changes — the durable state is materialised
 * into a fresh directory; when the operation returns, every crash point it produced is opened and must show
 * exactly the state before the operation or the state after it (each bank: read-only open, full verify,
 * every document checked byte for byte, then a writable open that must succeed). An operation that returned
 * MSA_OK is acknowledged: every later crash point must hold it.
 *
 * MSA_POWERLOSS_ROUNDS sets the workload's length (default 150 rounds, about 2,400 crash points;
 * `make bank-crash-long` runs 600). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bank/bank.h"
#include "bank/bank_io.h"
#include "bank_synth.h"
#include "test.h"
#include "util/error.h"

#define MAX_TEXT 300

/* ------------------------------------------------------------------------------------- the page-cache model */

typedef struct pl_ent {
    char name[256];
    int rec;
} pl_ent;

typedef struct pl_rec { /* one file or directory (an inode while alive) */
    dev_t dev;
    ino_t ino;
    int alive, is_dir, has; /* has: something of it was ever made durable */
    uint8_t *data;          /* file: durable bytes */
    size_t len;
    pl_ent *ents;           /* directory: durable entries */
    size_t n_ents;
} pl_rec;

static pl_rec *recs;
static size_t n_recs, cap_recs;
static int root_rec = -1;
static int modelling;           /* hooks record only while the workload runs */
static int fail_next_dir_fsync; /* finding 1: a directory fsync that fails */
static char scratch[256], root[300], crashdir[300];
static int n_crash_pending, n_crash_total, n_crash_bad;

static int rec_of(const struct stat *sb) {
    for (size_t i = 0; i < n_recs; i++)
        if (recs[i].alive && recs[i].dev == sb->st_dev && recs[i].ino == sb->st_ino) return (int)i;
    if (n_recs == cap_recs) {
        cap_recs = cap_recs ? 2 * cap_recs : 256;
        recs = realloc(recs, cap_recs * sizeof *recs);
    }
    recs[n_recs] = (pl_rec){.dev = sb->st_dev, .ino = sb->st_ino, .alive = 1, .is_dir = S_ISDIR(sb->st_mode)};
    return (int)n_recs++;
}

static void record_durable(int fd) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return;
    int r = rec_of(&sb);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    if (S_ISDIR(sb.st_mode)) {
        pl_ent *ents = NULL;
        size_t n = 0, cap = 0;
        DIR *d = opendir(self);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[400];
            struct stat cs;
            snprintf(p, sizeof p, "%s/%s", self, e->d_name);
            if (lstat(p, &cs) != 0) continue;
            int c = rec_of(&cs);
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                ents = realloc(ents, cap * sizeof *ents);
            }
            snprintf(ents[n].name, sizeof ents[n].name, "%s", e->d_name);
            ents[n++].rec = c;
        }
        if (d) closedir(d);
        pl_rec *R = &recs[r]; /* rec_of may have moved recs */
        free(R->ents);
        R->ents = ents;
        R->n_ents = n;
        R->has = 1;
    } else if (S_ISREG(sb.st_mode)) {
        int rfd = open(self, O_RDONLY);
        uint8_t *buf = malloc((size_t)sb.st_size + 1);
        size_t got = 0;
        while (rfd >= 0 && got < (size_t)sb.st_size) {
            ssize_t k = pread(rfd, buf + got, (size_t)sb.st_size - got, (off_t)got);
            if (k <= 0) break;
            got += (size_t)k;
        }
        if (rfd >= 0) close(rfd);
        free(recs[r].data);
        recs[r].data = buf;
        recs[r].len = got;
        recs[r].has = 1;
    }
}

static void materialise(int r, const char *path) {
    const pl_rec *R = &recs[r];
    for (size_t i = 0; i < R->n_ents; i++) {
        const pl_rec *c = &recs[R->ents[i].rec];
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, R->ents[i].name);
        if (c->is_dir) {
            mkdir(p, 0755);
            materialise(R->ents[i].rec, p);
        } else { /* a file never fsynced is empty after the crash: the harshest legal outcome */
            int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                if (c->has && c->len && write(fd, c->data, c->len) != (ssize_t)c->len) perror("materialise");
                close(fd);
            }
        }
    }
}

static void rm_tree(const char *path);

static void crash_point(void) {
    char p[400];
    snprintf(p, sizeof p, "%s/%d", crashdir, n_crash_pending++);
    rm_tree(p); /* a leftover of a discarded crash point */
    mkdir(p, 0755);
    materialise(root_rec, p);
}

static int m_fsync(int fd) {
    if (!modelling) return 0; /* the checks' own syncs: the model is the disk, nothing to wait for */
    crash_point();
    struct stat sb;
    if (fail_next_dir_fsync && fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fail_next_dir_fsync = 0;
        errno = EIO;
        return -1;
    }
    record_durable(fd);
    return 0;
}

static int m_unlink(const char *p) {
    struct stat sb;
    int have = modelling && lstat(p, &sb) == 0;
    int rc = unlink(p);
    if (rc == 0 && have)
        for (size_t i = 0; i < n_recs; i++)
            if (recs[i].alive && recs[i].dev == sb.st_dev && recs[i].ino == sb.st_ino) recs[i].alive = 0;
    return rc;
}

static int m_rmdir(const char *p) {
    struct stat sb;
    int have = modelling && lstat(p, &sb) == 0;
    int rc = rmdir(p);
    if (rc == 0 && have)
        for (size_t i = 0; i < n_recs; i++)
            if (recs[i].alive && recs[i].dev == sb.st_dev && recs[i].ino == sb.st_ino) recs[i].alive = 0;
    return rc;
}

static int m_rename(const char *a, const char *b) {
    struct stat sb;
    int have = modelling && lstat(b, &sb) == 0;
    int rc = rename(a, b);
    if (rc == 0 && have)
        for (size_t i = 0; i < n_recs; i++)
            if (recs[i].alive && recs[i].dev == sb.st_dev && recs[i].ino == sb.st_ino) recs[i].alive = 0;
    return rc;
}

static bank_io_ops model_ops;

static void model_reset(void) {
    for (size_t i = 0; i < n_recs; i++) {
        free(recs[i].data);
        free(recs[i].ents);
    }
    n_recs = 0;
    struct stat sb;
    stat(root, &sb);
    root_rec = rec_of(&sb); /* the test's root starts empty and durable */
    recs[root_rec].has = 1;
}

/* ---------------------------------------------------------------------------------------------- the checks */

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    if (d) closedir(d);
    rmdir(path);
}

/* What a bank shows: ids, indices, full content hashes, template; "<missing>" only when there is no bank. */
static char *snapshot(const char *path) {
    msa_bank *b = NULL;
    msa_status st = msa_bank_open(path, NULL, &b);
    if (st == MSA_ERR_NOT_FOUND) return strdup("<missing>");
    if (st) {
        char *s = malloc(600);
        snprintf(s, 600, "<cannot open: %s>", msa_last_error());
        return s;
    }
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    len += (size_t)snprintf(s + len, cap - len, "t%d n%llu|", bi.has_template, (unsigned long long)bi.next_index);
    for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
        msa_bank_doc_info info;
        msa_bank_doc_at(b, i, &info);
        if (len + 200 > cap) s = realloc(s, cap *= 2);
        len += (size_t)snprintf(s + len, cap - len, "%s@%u:", info.id, info.index);
        for (int j = 0; j < 16; j++) len += (size_t)snprintf(s + len, cap - len, "%02x", info.hash[j]);
        const char *bad = synth_check(b, &info, MAX_TEXT);
        if (bad) len += (size_t)snprintf(s + len, cap - len, "<TORN %s>", bad);
        s[len++] = ';';
        s[len] = '\0';
    }
    if (msa_bank_verify(b, NULL, NULL, NULL)) len += (size_t)snprintf(s + len, cap - len, "<VERIFY FAILED>");
    msa_bank_close(b);
    if (strcmp(s, "<missing>")) { /* a writer must be able to take the bank over (orphans cleaned) */
        msa_bank_open_params op = msa_bank_default_open_params();
        op.writable = true;
        if (msa_bank_open(path, &op, &b) == MSA_OK) msa_bank_close(b);
        else {
            if (len + 700 > cap) s = realloc(s, cap + 700);
            snprintf(s + len, 700, "<writable open failed: %s>", msa_last_error());
        }
    }
    return s;
}

#define N_BANKS 2
static const char *bank_names[N_BANKS] = {"B", "I"};
static char *state[N_BANKS]; /* acknowledged state of each bank */

static char *real_snapshot(int k) {
    char p[400];
    snprintf(p, sizeof p, "%s/%s", root, bank_names[k]);
    return snapshot(p);
}

/* The operation just finished (ok: acknowledged). Check its crash points, then move the acknowledged state. */
static void settle(const char *what, msa_status ok) {
    int saved = modelling;
    modelling = 0;
    char *next[N_BANKS];
    for (int k = 0; k < N_BANKS; k++) next[k] = real_snapshot(k);
    for (int c = 0; c < n_crash_pending; c++) {
        for (int k = 0; k < N_BANKS; k++) {
            char p[400];
            snprintf(p, sizeof p, "%s/%d/%s", crashdir, c, bank_names[k]);
            char *got = snapshot(p);
            if (strcmp(got, state[k]) && strcmp(got, next[k])) {
                if (n_crash_bad++ < 5)
                    fprintf(stderr, "  power cut in '%s' (sync point %d): bank %s shows\n    %.600s\n  expected\n    "
                            "%.600s\n  or\n    %.600s\n", what, c, bank_names[k], got, state[k], next[k]);
            }
            free(got);
        }
        char p[400];
        snprintf(p, sizeof p, "%s/%d", crashdir, c);
        rm_tree(p);
    }
    n_crash_total += n_crash_pending;
    n_crash_pending = 0;
    if (ok != MSA_OK) { /* not acknowledged: the real state must still be the old one or the new one, whole */
        fprintf(stderr, "  '%s' failed: %s\n", what, msa_last_error());
        n_crash_bad++;
    }
    for (int k = 0; k < N_BANKS; k++) {
        free(state[k]);
        state[k] = next[k];
    }
    modelling = saved;
}

/* ---------------------------------------------------------------------------------------------- workload */

static msa_status op_add(const char *path, uint64_t k0, int n, uint32_t variant) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(path, &b));
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    msa_status st = MSA_OK;
    for (int i = 0; i < n && !st; i++) {
        synth_doc s;
        if (synth_make(&s, &bi.shape, k0 + (uint64_t)i, variant, MAX_TEXT)) st = MSA_ERR_NOMEM;
        else st = msa_bank_add(b, &s.d, true, NULL, NULL);
        synth_free(&s);
    }
    if (!st) st = msa_bank_commit(b);
    msa_bank_close(b);
    return st;
}

static msa_status op_rm(const char *path, uint64_t k) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(path, &b));
    char id[48];
    snprintf(id, sizeof id, "doc-%06llu", (unsigned long long)k);
    msa_status st = msa_bank_remove(b, id);
    if (st == MSA_ERR_NOT_FOUND) st = MSA_OK;
    if (!st) st = msa_bank_commit(b);
    msa_bank_close(b);
    return st;
}

static msa_status op_compact(const char *path) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(path, &b));
    msa_status st = msa_bank_compact(b);
    msa_bank_close(b);
    return st;
}

static msa_status op_template(const char *path) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(path, &b));
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    size_t n = (size_t)bi.shape.n_layers * bi.shape.n_kv_heads * bi.shape.n_template * bi.shape.head_dim;
    float *t = calloc(n, 4);
    for (size_t i = 0; i < n; i++) t[i] = (float)i;
    msa_status st = msa_bank_set_template(b, t, t);
    if (!st) st = msa_bank_commit(b);
    free(t);
    msa_bank_close(b);
    return st;
}

static msa_status op_export(const char *path, const char *file) {
    msa_bank *b;
    MSA_TRY(msa_bank_open(path, NULL, &b));
    msa_status st = msa_bank_export(b, file);
    msa_bank_close(b);
    return st;
}

static void setup(void) {
    /* the model is the disk: the real files are only the page cache, so memory-backed /dev/shm (when there
     * is one) keeps thousands of crash states fast */
    const char *tmp = getenv("MSA_POWERLOSS_DIR");
    if (!tmp || !tmp[0]) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/msa-test-powerloss-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(crashdir, sizeof crashdir, "%s/crash", scratch);
    mkdir(crashdir, 0755);
}

static void begin(const char *name) {
    snprintf(root, sizeof root, "%s/%s", scratch, name);
    rm_tree(root);
    mkdir(root, 0755);
    model_reset();
    model_ops = (bank_io_ops){.fsync = m_fsync, .unlink = m_unlink, .rename = m_rename, .mkdir = NULL,
                              .rmdir = m_rmdir};
    bank_io_set(&model_ops);
    for (int k = 0; k < N_BANKS; k++) {
        free(state[k]);
        state[k] = strdup("<missing>");
    }
    n_crash_pending = 0;
    modelling = 1;
}

static void end(void) {
    modelling = 0;
    bank_io_set(NULL);
    bank_io_reset_poison();
}

TEST(power_loss_every_sync_point) {
    const char *env = getenv("MSA_POWERLOSS_ROUNDS");
    const char *suite = getenv("MSA_SUITE"); /* sanitizer builds run a third of it within the same budget */
    int rounds = env && atoi(env) > 0 ? atoi(env) : suite && strcmp(suite, "plain") ? 50 : 150;
    n_crash_total = n_crash_bad = 0;
    begin("workload");
    char bank[400], imp[400], exp_file[400];
    snprintf(bank, sizeof bank, "%s/B", root);
    snprintf(imp, sizeof imp, "%s/I", root);
    snprintf(exp_file, sizeof exp_file, "%s/export.msax", root);
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    settle("create", msa_bank_create(bank, &cp));
    settle("template", op_template(bank));
    uint64_t next_k = 0;
    for (int r = 0; r < rounds && n_crash_bad == 0; r++) {
        int n = 1 + r % 3;
        settle("add", op_add(bank, next_k, n, 0));
        next_k += (uint64_t)n;
        settle("replace", op_add(bank, (uint64_t)r % next_k, 1, (uint32_t)r + 1));
        if (r % 2) settle("rm", op_rm(bank, (uint64_t)(r * 7) % next_k));
        if (r % 7 == 6) settle("compact", op_compact(bank));
        if (r % 20 == 10) { /* export, then import into a new bank (first round: a new path; later: replace it) */
            settle("export", op_export(bank, exp_file));
            if (r > 10) {
                bank_remove_dir(imp); /* through the shim, then made durable like any removal */
                settle("rm import", bank_fsync_dir(root));
            }
            settle("import", msa_bank_import(exp_file, imp, NULL));
        }
    }
    end();
    printf("power loss: %d sync points (crash states) over %d rounds, %d bad\n", n_crash_total, rounds, n_crash_bad);
    CHECK(n_crash_total >= 8 * rounds);
    CHECK_EQ_INT(n_crash_bad, 0);
}

/* Finding 1: the directory fsync after the MANIFEST rename fails (or the process dies right there): the new
 * manifest is visible, not durable. A retry in a new process finds every document unchanged; before it may
 * report success, the state it reports must be durable. */
TEST(retry_after_lost_dir_fsync_is_durable) {
    n_crash_total = n_crash_bad = 0;
    begin("retry");
    char bank[400];
    snprintf(bank, sizeof bank, "%s/B", root);
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    settle("create", msa_bank_create(bank, &cp));
    msa_bank *b;
    CHECK_EQ_INT(synth_open_writable(bank, &b), MSA_OK);
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    synth_doc s;
    CHECK_EQ_INT(synth_make(&s, &bi.shape, 42, 0, MAX_TEXT), 0);
    CHECK_EQ_INT(msa_bank_add(b, &s.d, false, NULL, NULL), MSA_OK);
    /* the commit's fsyncs: segment, MANIFEST temp, then the directory — which fails */
    fail_next_dir_fsync = 1;
    CHECK_EQ_INT(msa_bank_commit(b), MSA_ERR_IO);
    CHECK_EQ_INT(fail_next_dir_fsync, 0);
    msa_bank_close(b);
    n_crash_pending = 0; /* not acknowledged: nothing to hold yet */
    bank_io_reset_poison(); /* "a new process" */
    /* the retry */
    msa_bank_doc_state ds = MSA_BANK_DOC_NEW;
    CHECK_EQ_INT(synth_open_writable(bank, &b), MSA_OK);
    CHECK_EQ_INT(msa_bank_add(b, &s.d, false, &ds, NULL), MSA_OK);
    CHECK_EQ_INT(ds, MSA_BANK_DOC_UNCHANGED);
    CHECK_EQ_INT(msa_bank_commit(b), MSA_OK); /* acknowledged */
    msa_bank_close(b);
    synth_free(&s);
    n_crash_pending = 0;
    crash_point(); /* the power goes now */
    modelling = 0;
    char p[400];
    snprintf(p, sizeof p, "%s/0/B", crashdir);
    char *got = snapshot(p);
    if (!strstr(got, "doc-000042@0:")) {
        fprintf(stderr, "  acknowledged document lost at power cut: bank shows %s\n", got);
        test_case_failed = 1;
    }
    free(got);
    snprintf(p, sizeof p, "%s/0", crashdir);
    rm_tree(p);
    n_crash_pending = 0;
    end();
}

int main(void) {
    if (getenv("MSA_TEST_ONLY_CONCURRENCY")) {
        printf("SKIP test_bank_powerloss (not a concurrency test)\n");
        return 0;
    }
    setup();
    RUN(retry_after_lost_dir_fsync_is_durable);
    RUN(power_loss_every_sync_point);
    rm_tree(scratch);
    for (int k = 0; k < N_BANKS; k++) free(state[k]);
    for (size_t i = 0; i < n_recs; i++) {
        free(recs[i].data);
        free(recs[i].ents);
    }
    free(recs);
    return test_summary();
}
