/* cmd_ask.c — `msa ask`. Placeholder until its module lands; replace this file whole. */
#include <stdio.h>

#include "commands.h"

int cmd_ask(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa ask: not built yet\n");
    return 69;
}
int cmd_chat(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "msa chat: not built yet\n");
    return 69;
}
