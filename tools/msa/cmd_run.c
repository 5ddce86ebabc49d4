/* cmd_run.c — `msa run`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_run(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa run: not built yet\n");
    return 69;
}
