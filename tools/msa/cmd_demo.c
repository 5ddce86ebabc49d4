/* cmd_demo.c — `msa demo`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_demo(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa demo: not built yet\n");
    return 69;
}
