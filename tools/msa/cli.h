/* cli.h — the one option parser and the one table of flags of the msa CLI (cli.c).
 *
 * Every subcommand is a row of the command table (cli_commands, cli_table.c) naming the shared flags it takes
 * (cli_shared: name, meaning, default, validation — one meaning per flag across the whole CLI, llama.cpp's
 * where it has one) plus its own. The parser validates values against the table before the command runs, and
 * the same table generates each command's `--help`, `msa help CMD` and the docs/cli.md reference
 * (`msa help --markdown`), so help and behaviour cannot drift apart. */
#ifndef MSA_TOOLS_CLI_H
#define MSA_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum cli_type {
    CLI_FLAG,   /* no value */
    CLI_STR,    /* any string (choices, when set, restrict it) */
    CLI_INT,    /* integer in [lo, hi] */
    CLI_FLOAT,  /* finite number in [lo, hi] */
    CLI_DEVICE, /* cpu | cuda | cuda:N | auto */
} cli_type;

typedef struct cli_opt {
    const char *name;           /* "--top-k" */
    const char *alias;          /* "-k", or NULL */
    const char *metavar;        /* "K" (NULL for flags) */
    cli_type type;
    double lo, hi;              /* range for CLI_INT / CLI_FLOAT */
    const char *def;            /* default as shown in help, or NULL */
    const char *help;           /* one sentence: what it means */
    const char *choices;        /* "native|read" for a CLI_STR with fixed values, or NULL */
    bool repeat;                /* may be given several times; every value is kept */
    const char *deprecated_for; /* an old spelling: accepted with a warning, stored under this name */
} cli_opt;

struct cli_cmd;
typedef struct cli_args cli_args;

typedef struct cli_cmd {
    const char *name;          /* "run", "bank add" */
    const char *args;          /* positional synopsis ("BANK [FILE|DIR|-]..."), or "" */
    const char *summary;       /* one line */
    const char *const *shared; /* names of cli_shared flags it takes, NULL-terminated (may be NULL) */
    const cli_opt *own;        /* its own flags, terminated by a row with name NULL (may be NULL) */
    const char *notes;         /* more help text (paragraphs), or NULL */
    int min_pos, max_pos;      /* positional arguments allowed (max -1 = any) */
    int (*run)(const cli_args *a);      /* parsed by cli_parse */
    int (*raw)(int argc, char **argv);  /* or: argv handed over as is after --help is handled (bench) */
} cli_cmd;

/* The parsed command line of one command. */
struct cli_args {
    const cli_cmd *cmd;
    int n_set;
    struct { const cli_opt *opt; const char *val; } *set; /* in command-line order */
    int n_pos;
    const char **pos;
};

extern const cli_opt cli_shared[];
extern const cli_cmd cli_commands[];
extern const size_t cli_n_commands;

/* The running command's name ("bank add"): error messages start with "msa <name>: ". */
extern const char *cli_current;

/* Parse argv (argv[0] is the command's last word) for cmd into *a. Returns 0 when parsed, -1 when --help
 * was printed (exit 0), else the exit code after printing why (64 usage, 69 cuda unavailable). */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, cli_args *a);
void cli_args_free(cli_args *a);

/* The message of the last usage error cli_parse printed ("" when none). */
extern char cli_usage_message[512];

/* The last value given for a flag (by its canonical name), or NULL. */
const char *cli_get(const cli_args *a, const char *name);
bool cli_has(const cli_args *a, const char *name);
long cli_int(const cli_args *a, const char *name, long def);
double cli_float(const cli_args *a, const char *name, double def);
/* Every value of a repeatable flag, in order; returns how many (out may be NULL to count). */
int cli_all(const cli_args *a, const char *name, const char **out, int cap);

/* Generated help. */
void cli_help(FILE *f, const cli_cmd *cmd);
void cli_help_top(FILE *f);
void cli_help_group(FILE *f, const char *group); /* "bank": its subcommands */
void cli_markdown(FILE *f);                      /* docs/cli.md */
const cli_cmd *cli_find(const char *name);

/* A random seed (getrandom, else time and pid) for sampling without --seed or with --seed -1. */
unsigned long long cli_random_seed(void);

/* Progress on stderr, by time: at most every `interval` seconds and only when stderr is a terminal
 * (quiet in pipes). cli_progress(p, done, total, unit) draws "label: done/total unit, rate/s, ETA". */
typedef struct cli_progress {
    const char *label;
    double t0, last;
    bool tty, drawn;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, double done, double total, const char *unit);
void cli_progress_end(cli_progress *p);

#endif
