/* test_bank_order.c — the order of the bank's durability calls, recorded through its I/O shim (bank_io.h) and
 * checked against the POSIX rules for a crash-safe replace (the rules ALICE and the ext4/XFS documentation
 * state; independent of the bank's own code), for every operation that acknowledges a change: create, add,
 * replace + remove, template, compact, import. For each operation that returned MSA_OK:
 *   1. a file renamed into place was fsynced after its last write and before the rename (else the new name
 *      can point at a file whose bytes never reached the disk);
 *   2. after each rename, the directory that holds the new name was fsynced before the operation returned
 *      (else the rename itself can be lost and the acknowledged change with it);
 *   3. every file the operation wrote and did not remove again was fsynced after its last write.
 * Files and directories are identified by inode (fstat of every descriptor the shim opens), so the rules do
 * not depend on how the bank spells its paths. test_bank_powerloss checks the same durability by simulating
 * the power cut at every sync point; this program checks the calls' order directly. */
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
#define MAX_EV 20000
#define MAX_FD 4096

enum { EV_WRITE, EV_FSYNC, EV_RENAME, EV_UNLINK };
typedef struct ev {
    int op;
    dev_t dev;
    ino_t ino;           /* the file written/fsynced/renamed/unlinked */
    dev_t pdev;
    ino_t pino;          /* rename: the directory that holds the new name */
    char name[300];      /* rename: the new name (for messages) */
} ev;

static ev evs[MAX_EV];
static int n_ev, overflow;
static struct {
    int used;
    dev_t dev;
    ino_t ino;
} fds[MAX_FD];

static void push(int op, dev_t dev, ino_t ino, dev_t pdev, ino_t pino, const char *name) {
    if (n_ev >= MAX_EV) {
        overflow = 1;
        return;
    }
    evs[n_ev] = (ev){.op = op, .dev = dev, .ino = ino, .pdev = pdev, .pino = pino};
    if (name) snprintf(evs[n_ev].name, sizeof evs[n_ev].name, "%s", name);
    n_ev++;
}

static void parent_of(const char *path, char *out, size_t size) {
    snprintf(out, size, "%s", path);
    char *s = strrchr(out, '/');
    if (!s) snprintf(out, size, ".");
    else if (s == out) out[1] = '\0';
    else *s = '\0';
}

static int r_open(const char *path, int flags, int mode) {
    int fd = bank_io_real()->open(path, flags, mode);
    struct stat st;
    if (fd >= 0 && fd < MAX_FD && fstat(fd, &st) == 0) fds[fd].used = 1, fds[fd].dev = st.st_dev, fds[fd].ino = st.st_ino;
    return fd;
}
static ssize_t r_pwrite(int fd, const void *buf, size_t n, off_t off) {
    ssize_t r = bank_io_real()->pwrite(fd, buf, n, off);
    if (r > 0 && fd >= 0 && fd < MAX_FD && fds[fd].used) push(EV_WRITE, fds[fd].dev, fds[fd].ino, 0, 0, NULL);
    return r;
}
static int r_fsync(int fd) {
    int r = bank_io_real()->fsync(fd);
    if (r == 0 && fd >= 0 && fd < MAX_FD && fds[fd].used) push(EV_FSYNC, fds[fd].dev, fds[fd].ino, 0, 0, NULL);
    return r;
}
static int r_rename(const char *a, const char *b) {
    struct stat sa, sp;
    char par[4096];
    parent_of(b, par, sizeof par);
    int ok = lstat(a, &sa) == 0 && stat(par, &sp) == 0;
    int r = bank_io_real()->rename(a, b);
    if (r == 0 && ok) push(EV_RENAME, sa.st_dev, sa.st_ino, sp.st_dev, sp.st_ino, b);
    return r;
}
static int r_unlink(const char *p) {
    struct stat st;
    int ok = lstat(p, &st) == 0;
    int r = bank_io_real()->unlink(p);
    if (r == 0 && ok) push(EV_UNLINK, st.st_dev, st.st_ino, 0, 0, p);
    return r;
}
static int r_close(int fd) {
    if (fd >= 0 && fd < MAX_FD) fds[fd].used = 0;
    return bank_io_real()->close(fd);
}

static const bank_io_ops recorder = {r_open, r_pwrite, r_fsync, r_rename, r_unlink, NULL, NULL, r_close};

static int same(const ev *e, dev_t dev, ino_t ino) { return e->dev == dev && e->ino == ino; }

/* the three rules over the events of one operation; returns the number of renames (the premise) */
static int check_order(const char *what) {
    int renames = 0;
    CHECK(!overflow);
    for (int j = 0; j < n_ev; j++) {
        const ev *e = &evs[j];
        if (e->op == EV_RENAME) {
            renames++;
            /* 1: fsynced after its last write, before the rename */
            int last_write = -1, synced = 0;
            for (int i = 0; i < j; i++)
                if (same(&evs[i], e->dev, e->ino)) {
                    if (evs[i].op == EV_WRITE) last_write = i, synced = 0;
                    else if (evs[i].op == EV_FSYNC && last_write >= 0) synced = 1;
                }
            if (last_write >= 0 && !synced) {
                printf("  %s: %s renamed into place without an fsync after its last write\n", what, e->name);
                CHECK(0);
            }
            /* 2: the new name's directory fsynced after the rename */
            int dir_synced = 0;
            for (int i = j + 1; i < n_ev && !dir_synced; i++)
                dir_synced = evs[i].op == EV_FSYNC && same(&evs[i], e->pdev, e->pino);
            if (!dir_synced) {
                printf("  %s: the directory of %s not fsynced after the rename\n", what, e->name);
                CHECK(0);
            }
        } else if (e->op == EV_WRITE) {
            /* 3: every written file, unless removed later, fsynced after its last write */
            int later_write = 0, synced = 0, removed = 0;
            for (int i = j + 1; i < n_ev; i++)
                if (same(&evs[i], e->dev, e->ino)) {
                    if (evs[i].op == EV_WRITE) later_write = 1;
                    else if (evs[i].op == EV_FSYNC) synced = 1;
                    else if (evs[i].op == EV_UNLINK) removed = 1;
                }
            /* an inode renamed over another and then retired counts as removed when unlinked by name later */
            if (!later_write && !synced && !removed) {
                printf("  %s: a file written (event %d) and never fsynced afterwards\n", what, j);
                CHECK(0);
            }
        }
    }
    return renames;
}

static char scratch[256], bankp[300], imp[300], exportfile[300];

static msa_status op_create(void) {
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    return msa_bank_create(bankp, &cp);
}
static msa_status op_add(void) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(bankp, &b));
    msa_status st = synth_add_docs(b, 0, 4, 0, MAX_TEXT);
    if (!st) st = msa_bank_commit(b);
    msa_bank_close(b);
    return st;
}
static msa_status op_add_more(void) { /* a second segment */
    msa_bank *b;
    MSA_TRY(synth_open_writable(bankp, &b));
    msa_status st = synth_add_docs(b, 10, 3, 0, MAX_TEXT);
    if (!st) st = msa_bank_commit(b);
    msa_bank_close(b);
    return st;
}
static msa_status op_replace_rm(void) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(bankp, &b));
    msa_status st = synth_add_docs(b, 1, 1, 3, MAX_TEXT);
    if (!st) st = msa_bank_remove(b, "doc-000002");
    if (!st) st = msa_bank_commit(b);
    msa_bank_close(b);
    return st;
}
static msa_status op_template(void) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(bankp, &b));
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    size_t n = (size_t)bi.shape.n_layers * bi.shape.n_kv_heads * bi.shape.n_template * bi.shape.head_dim;
    float *t = calloc(n ? n : 1, 4);
    msa_status st = t ? msa_bank_set_template(b, t, t) : MSA_ERR_NOMEM;
    if (!st) st = msa_bank_commit(b);
    free(t);
    msa_bank_close(b);
    return st;
}
static msa_status op_compact(void) {
    msa_bank *b;
    MSA_TRY(synth_open_writable(bankp, &b));
    msa_status st = msa_bank_compact(b);
    msa_bank_close(b);
    return st;
}
static msa_status op_import(void) {
    msa_bank *b;
    MSA_TRY(msa_bank_open(bankp, NULL, &b));
    msa_status st = msa_bank_export(b, exportfile); /* not recorded as an acknowledged bank change: checked too */
    msa_bank_close(b);
    return st ? st : msa_bank_import(exportfile, imp, NULL);
}

typedef struct {
    const char *name;
    msa_status (*fn)(void);
} op;

TEST(durability_call_order) {
    const op ops[] = {{"create", op_create},   {"add", op_add},         {"add_more", op_add_more},
                      {"replace+rm", op_replace_rm}, {"template", op_template}, {"compact", op_compact},
                      {"export+import", op_import}};
    int with_renames = 0;
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        n_ev = 0, overflow = 0;
        memset(fds, 0, sizeof fds);
        bank_io_set(&recorder);
        msa_status st = ops[k].fn();
        bank_io_set(NULL);
        if (st) printf("  %s: %s\n", ops[k].name, msa_last_error());
        CHECK_EQ_INT(st, MSA_OK);
        int renames = check_order(ops[k].name);
        int fsyncs = 0;
        for (int i = 0; i < n_ev; i++) fsyncs += evs[i].op == EV_FSYNC;
        printf("  %-14s %4d events, %d renames, %d fsyncs\n", ops[k].name, n_ev, renames, fsyncs);
        with_renames += renames > 0;
    }
    /* the premise: every operation replaced its manifest (or moved a new bank into place) by a rename */
    CHECK_EQ_INT(with_renames, (int)(sizeof ops / sizeof *ops));
    /* and what was acknowledged is there */
    msa_bank *b = NULL;
    CHECK_EQ_INT(msa_bank_open(imp, NULL, &b), MSA_OK);
    if (b) {
        CHECK_EQ_INT((int)msa_bank_n_docs(b), 6); /* docs 0, 1 (replaced), 3, 10, 11, 12 */
        CHECK_EQ_INT(msa_bank_verify(b, NULL, NULL, NULL), MSA_OK);
        msa_bank_close(b);
    }
}

int main(void) {
    if (getenv("MSA_TEST_ONLY_CONCURRENCY")) { /* the TSan suite runs only concurrency tests */
        printf("SKIP test_bank_order (not a concurrency test)\n");
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/msa-test-order-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(bankp, sizeof bankp, "%s/bank", scratch);
    snprintf(imp, sizeof imp, "%s/imported", scratch);
    snprintf(exportfile, sizeof exportfile, "%s/export.msax", scratch);
    bank_set_auto_compact(false); /* one operation, one commit: the compact case is explicit */
    RUN(durability_call_order);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", scratch);
    return test_summary();
}
