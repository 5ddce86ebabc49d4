/* main.c — the msa command-line entry point: finds the command's row in the table (cli_table.c), parses
 * its flags (cli.c) and runs it; `msa help` prints the generated help and docs/cli.md. */
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

bool cli_json_errors;

void cli_json_error(const char *status, int code, const char *msg) {
    json_t *o = json_pack("{s:s, s:{s:s, s:i, s:s}}", "schema", "msa.error/1", "error", "status", status, "exit_code",
                          code, "message", msg);
    if (!o) { /* a message that is not UTF-8: the object without it rather than no object */
        o = json_pack("{s:s, s:{s:s, s:i, s:s}}", "schema", "msa.error/1", "error", "status", status, "exit_code", code,
                      "message", "(message not valid UTF-8; see stderr)");
    }
    cli_put_json_line(stdout, o);
    fflush(stdout);
}

int cli_put_json_line(FILE *f, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    const int rc = !s ? 70 : fputs(s, f) < 0 || fputc('\n', f) < 0 ? 74 : 0;
    free(s);
    return rc;
}

int cli_fail(msa_status st) {
    const char *msg = msa_last_error();
    if (!msg || !msg[0]) msg = msa_strerror(st);
    fprintf(stderr, "msa%s%s: %s\n", cli_current[0] ? " " : "", cli_current, msg);
    int code = msa_status_exit_code(st);
    if (cli_json_errors) cli_json_error(msa_strerror(st), code, msg);
    return code;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "msa %s: %s\n", cmd, msg);
    if (cli_json_errors) cli_json_error("usage", 64, msg);
    return 64;
}

msa_model_params cli_model_params(const cli_args *a) {
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = (int)cli_int(a, "--threads", 0);
    mp.device = cli_get(a, "--device");
    return mp;
}

static bool is_group(const char *w) { return !strcmp(w, "bank") || !strcmp(w, "bench") || !strcmp(w, "eval"); }

/* The command named by argv[1] (and argv[2] for a group); *words gets how many argv entries named it. */
static const cli_cmd *find(int argc, char **argv, int *words) {
    if (argc >= 3 && is_group(argv[1])) {
        char name[64];
        snprintf(name, sizeof name, "%s %s", argv[1], argv[2]);
        *words = 2;
        return cli_find(name);
    }
    *words = 1;
    return cli_find(argv[1]);
}

static int help(int argc, char **argv) {
    if (argc < 3) {
        cli_help_top(stdout);
        return 0;
    }
    if (!strcmp(argv[2], "--markdown")) {
        cli_markdown(stdout);
        return 0;
    }
    if (!strcmp(argv[2], "--list")) { /* every command, one per line (tests walk it) */
        for (size_t i = 0; i < cli_n_commands; i++) puts(cli_commands[i].name);
        return 0;
    }
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", argv[2], argc > 3 ? " " : "", argc > 3 ? argv[3] : "");
    const cli_cmd *c = cli_find(name);
    if (c) {
        cli_help(stdout, c);
        return 0;
    }
    if (is_group(argv[2]) && argc == 3) {
        cli_help_group(stdout, argv[2]);
        return 0;
    }
    fprintf(stderr, "msa help: no command '%s'\n", name);
    cli_help_top(stderr);
    return 64;
}

int main(int argc, char **argv) {
    /* a failing disk under a bank is exit 74 with a message, not a SIGBUS core dump (msa.h) */
    msa_catch_mapping_faults();
    if (argc < 2) {
        cli_help_top(stderr);
        return 64;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return help(argc, argv);
    if (!strcmp(argv[1], "--version")) {
        printf("msa %s\n", msa_version());
        return 0;
    }
    int words;
    const cli_cmd *c = find(argc, argv, &words);
    if (!c) {
        if (is_group(argv[1])) {
            bool want_help = argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h") || !strcmp(argv[2], "help"));
            if (!want_help) {
                if (argc >= 3) fprintf(stderr, "msa %s: unknown subcommand '%s'\n", argv[1], argv[2]);
                else fprintf(stderr, "msa %s: missing subcommand\n", argv[1]);
            }
            cli_help_group(want_help ? stdout : stderr, argv[1]);
            return want_help ? 0 : 64;
        }
        fprintf(stderr, "msa: unknown command '%s'\n", argv[1]);
        cli_help_top(stderr);
        return 64;
    }
    cli_current = c->name;
    if (c->raw) {
        for (int i = 1 + words; i < argc; i++)
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                cli_help(stdout, c);
                return 0;
            }
        for (int i = 1 + words; i < argc; i++)
            if (!strcmp(argv[i], "--json")) cli_json_errors = true;
        return c->raw(argc - 1, argv + 1);
    }
    cli_args a;
    int rc = cli_parse(c, argc - words, argv + words, &a);
    if (rc > 0) {
        /* with --json the error is JSON on stdout too (docs/cli.md), also when the command line is wrong */
        for (int i = 1 + words; i < argc; i++)
            if (!strcmp(argv[i], "--json")) {
                cli_json_error("usage", rc, cli_usage_message);
                break;
            }
    }
    if (rc) return rc < 0 ? 0 : rc;
    cli_json_errors = cli_has(&a, "--json");
    rc = c->run(&a);
    cli_args_free(&a);
    return rc;
}
