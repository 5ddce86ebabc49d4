/* cmd_bank.c — `msa bank`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_bank(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa bank: not built yet\n");
    return 69;
}
