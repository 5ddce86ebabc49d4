/* synth_ckpt.h — the small synthetic MSA checkpoint of tests/ref/make_msa_checkpoint.py, generated once per test
 * program into a scratch directory, for the unit tests that need a real model but not the default one. */
#ifndef MSA_TEST_SYNTH_CKPT_H
#define MSA_TEST_SYNTH_CKPT_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

typedef struct synth_ckpt {
    char dir[256], path[300]; /* the scratch directory; the checkpoint inside it */
    bool have_numpy, ok;      /* the generator's one dependency; the checkpoint exists */
} synth_ckpt;

/* Make the scratch directory ($TMPDIR/msa-test-TAG-XXXXXX) and the checkpoint in it; -1 when no directory. */
static inline int synth_ckpt_make(synth_ckpt *c, const char *tag) {
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/msa-test-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp", tag);
    if (!mkdtemp(c->dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(c->path, sizeof c->path, "%s/ck", c->dir);
    c->have_numpy = system("python3 -c 'import numpy' >/dev/null 2>&1") == 0;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 tests/ref/make_msa_checkpoint.py '%s' >/dev/null 2>&1", c->path);
    c->ok = c->have_numpy && system(cmd) == 0;
    return 0;
}

static inline void synth_ckpt_remove(const synth_ckpt *c) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", c->dir);
}

/* In a TEST: SKIP without numpy; with numpy, a checkpoint that was not made is a failure. */
#define SYNTH_CKPT_REQUIRE(c)                                                                             \
    do {                                                                                                  \
        if (!(c).ok) {                                                                                    \
            if (!(c).have_numpy) SKIP("python3 with numpy not installed on this machine");                \
            fprintf(stderr, "  make_msa_checkpoint.py failed\n");                                        \
            CHECK((c).ok); /* numpy is here: a generator failure is a failure */                          \
            return;                                                                                       \
        }                                                                                                 \
    } while (0)

#endif
