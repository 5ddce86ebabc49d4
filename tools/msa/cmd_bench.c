/* cmd_bench.c — `msa bench`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_bench(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa bench: not built yet\n");
    return 69;
}
