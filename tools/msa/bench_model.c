/* bench_model.c — `msa bench prefill|decode`: model-level benchmarks. Placeholder until the forward pass
 * lands; the model module replaces this file whole. */
#include <stdio.h>

#include "commands.h"

int bench_model(const char *what, int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "msa bench %s: not built yet\n", what);
    return 69;
}
