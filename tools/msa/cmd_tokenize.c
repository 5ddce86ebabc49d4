/* cmd_tokenize.c — `msa tokenize`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa tokenize: not built yet\n");
    return 69;
}
