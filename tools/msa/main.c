/* main.c — the msa command-line entry point: dispatches to one subcommand per file. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

/* Commands whose module has not landed yet are listed with fn NULL so `msa help` stays truthful. */
static const struct command commands[] = {
    {"run", cmd_run, "generate text: msa run -m MODEL [-p TEXT|-f FILE] [-n N] [--chat] ..."},
    {"tokenize", cmd_tokenize, "text on stdin to ids: msa tokenize (-m MODEL|--tokenizer FILE) [--json] [--special] [--decode]"},
    {"bank", cmd_bank, "memory banks: msa bank create|add|rm|ls|info|verify|compact|export|import ..."},
    {"ask", cmd_ask, "answer from a bank: msa ask -m MODEL --bank BANK -q QUESTION [--json]"},
    {"chat", cmd_chat, "interactive questions over a bank: msa chat -m MODEL --bank BANK"},
    {"bench", cmd_bench, "benchmarks: msa bench prefill|decode|mem|... [--json]"},
    {"eval", cmd_eval, "retrieval quality: msa eval qa|niah -m MODEL --bank BANK ... [--answer] [--json]"},
    {"train-router", cmd_train_router, "train read-mode router projections: msa train-router -m MODEL --data PAIRS.jsonl -o OUT"},
    {"demo", cmd_demo, "build a bank from the bundled corpus with the default model and ask it questions"},
};

int cli_fail(msa_status st) {
    const char *msg = msa_last_error();
    fprintf(stderr, "msa: %s\n", (msg && msg[0]) ? msg : msa_strerror(st));
    return msa_status_exit_code(st);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "msa %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 64;
}

static void usage(FILE *f) {
    fprintf(f, "msa %s — Memory Sparse Attention engine\n\nusage: msa COMMAND [ARGS]\n\n", msa_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`msa COMMAND --help` for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("msa %s\n", msa_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "msa: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 64;
}
