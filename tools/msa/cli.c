/* cli.c — the option parser, generated help and docs/cli.md, random seeds and time-based progress of the
 * msa CLI (see cli.h). The tables themselves live in cli_table.c. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "msa.h"

const char *cli_current = "";

static const cli_opt help_opt = {"--help", "-h", NULL, CLI_FLAG, 0, 0, NULL, "print this help and exit 0", NULL, false, NULL};

static const cli_opt *shared_by_name(const char *name) {
    for (const cli_opt *o = cli_shared; o->name; o++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

/* The option spelled s (a name or an alias) for cmd, or NULL. Own flags first: a command may redefine. */
static const cli_opt *lookup(const cli_cmd *cmd, const char *s) {
    if (!strcmp(s, "--help") || !strcmp(s, "-h")) return &help_opt;
    for (const cli_opt *o = cmd->own; o && o->name; o++)
        if (!strcmp(o->name, s) || (o->alias && !strcmp(o->alias, s))) return o;
    for (const char *const *n = cmd->shared; n && *n; n++) {
        const cli_opt *o = shared_by_name(*n);
        if (o && (!strcmp(o->name, s) || (o->alias && !strcmp(o->alias, s)))) return o;
    }
    return NULL;
}

char cli_usage_message[512];

static int usage_err(const cli_cmd *cmd, const char *fmt, const char *x, const char *y) {
    char m[400];
    snprintf(m, sizeof m, fmt, x, y);
    snprintf(cli_usage_message, sizeof cli_usage_message, "%s (msa %s --help)", m, cmd->name);
    fprintf(stderr, "msa %s: %s\n", cmd->name, cli_usage_message);
    return 64;
}

static bool valid_device(const char *v) {
    if (!strcmp(v, "cpu") || !strcmp(v, "auto") || !strcmp(v, "cuda")) return true;
    if (strncmp(v, "cuda:", 5) || !v[5]) return false;
    for (const char *p = v + 5; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return strlen(v + 5) <= 4;
}

static bool in_choices(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

static int check_value(const cli_cmd *cmd, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    char range[96];
    switch (o->type) {
    case CLI_FLAG: return 0;
    case CLI_STR:
        if (o->choices && !in_choices(o->choices, v)) return usage_err(cmd, "%s must be one of %s", o->name, o->choices);
        return 0;
    case CLI_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || (double)x < o->lo || (double)x > o->hi) {
            snprintf(range, sizeof range, "'%s' is not an integer in [%.0f, %.0f]", v, o->lo, o->hi);
            return usage_err(cmd, "%s: %s", o->name, range);
        }
        return 0;
    }
    case CLI_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < o->lo || x > o->hi) {
            snprintf(range, sizeof range, "'%s' is not a number in [%g, %g]", v, o->lo, o->hi);
            return usage_err(cmd, "%s: %s", o->name, range);
        }
        return 0;
    }
    case CLI_DEVICE:
        if (!valid_device(v)) return usage_err(cmd, "%s: '%s' is not cpu, cuda, cuda:N or auto", o->name, v);
        return 0;
    }
    return 0;
}

static int push(cli_args *a, const cli_opt *o, const char *v) {
    void *p = realloc(a->set, (size_t)(a->n_set + 1) * sizeof *a->set);
    if (!p) {
        fprintf(stderr, "msa: out of memory\n");
        return 71;
    }
    a->set = p;
    a->set[a->n_set].opt = o;
    a->set[a->n_set].val = v;
    a->n_set++;
    return 0;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    if (!a->pos) return 71;
    /* --help anywhere wins: `msa bank rm BANK --help` is a request for help, not a document id */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_help(stdout, cmd);
            cli_args_free(a);
            return -1;
        }
    }
    bool only_pos = false;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *s = argv[i];
        if (only_pos || s[0] != '-' || !s[1]) { /* "-" alone is stdin/stdout: a positional */
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (!strcmp(s, "--")) {
            only_pos = true;
            continue;
        }
        char name[64];
        const char *inline_val = NULL;
        const char *eq = !strncmp(s, "--", 2) ? strchr(s, '=') : NULL;
        if (eq && (size_t)(eq - s) < sizeof name) {
            memcpy(name, s, (size_t)(eq - s));
            name[eq - s] = 0;
            inline_val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", s);
        }
        const cli_opt *o = lookup(cmd, name);
        if (!o) {
            /* a negative number where a positional is expected is not an option */
            if ((s[1] >= '0' && s[1] <= '9')) {
                a->pos[a->n_pos++] = s;
                continue;
            }
            rc = usage_err(cmd, "unknown option '%s'%s", s, "");
            break;
        }
        const char *v = NULL;
        if (o->type == CLI_FLAG) {
            if (inline_val) {
                rc = usage_err(cmd, "%s takes no value%s", o->name, "");
                break;
            }
        } else if (inline_val) {
            v = inline_val;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            rc = usage_err(cmd, "%s needs a value (%s)", o->name, o->metavar ? o->metavar : "");
            break;
        }
        const cli_opt *target = o;
        if (o->deprecated_for) {
            target = lookup(cmd, o->deprecated_for);
            fprintf(stderr, "msa %s: warning: %s is deprecated here; use %s (the old spelling goes in the next release)\n",
                    cmd->name, o->name, o->deprecated_for);
            if (!target) target = o;
        }
        if (v && (rc = check_value(cmd, target, v))) break;
        if (!target->repeat)
            for (int k = 0; k < a->n_set; k++)
                if (a->set[k].opt == target) a->set[k].val = NULL; /* the last one counts */
        rc = push(a, target, v ? v : "");
    }
    if (!rc && a->n_pos < cmd->min_pos) {
        rc = usage_err(cmd, "missing %s%s", cmd->args && cmd->args[0] ? cmd->args : "arguments", "");
    } else if (!rc && cmd->max_pos >= 0 && a->n_pos > cmd->max_pos) {
        rc = usage_err(cmd, "unexpected argument '%s'%s", a->pos[cmd->max_pos], "");
    }
    if (rc) cli_args_free(a);
    return rc;
}

void cli_args_free(cli_args *a) {
    free(a->set);
    free(a->pos);
    a->set = NULL;
    a->pos = NULL;
    a->n_set = a->n_pos = 0;
}

const char *cli_get(const cli_args *a, const char *name) {
    for (int k = a->n_set - 1; k >= 0; k--)
        if (a->set[k].val && !strcmp(a->set[k].opt->name, name)) return a->set[k].val;
    return NULL;
}

bool cli_has(const cli_args *a, const char *name) { return cli_get(a, name) != NULL; }

long cli_int(const cli_args *a, const char *name, long def) {
    const char *v = cli_get(a, name);
    return v ? strtol(v, NULL, 10) : def;
}

double cli_float(const cli_args *a, const char *name, double def) {
    const char *v = cli_get(a, name);
    return v ? strtod(v, NULL) : def;
}

int cli_all(const cli_args *a, const char *name, const char **out, int cap) {
    int n = 0;
    for (int k = 0; k < a->n_set; k++)
        if (a->set[k].val && !strcmp(a->set[k].opt->name, name)) {
            if (out && n < cap) out[n] = a->set[k].val;
            n++;
        }
    return n;
}

const cli_cmd *cli_find(const char *name) {
    for (size_t i = 0; i < cli_n_commands; i++)
        if (!strcmp(cli_commands[i].name, name)) return &cli_commands[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------------- help */

static void opt_label(const cli_opt *o, char *buf, size_t cap) {
    if (o->alias && o->metavar) snprintf(buf, cap, "%s, %s %s", o->alias, o->name, o->metavar);
    else if (o->alias) snprintf(buf, cap, "%s, %s", o->alias, o->name);
    else if (o->metavar) snprintf(buf, cap, "%s %s", o->name, o->metavar);
    else snprintf(buf, cap, "%s", o->name);
}

typedef void (*opt_fn)(FILE *f, const cli_opt *o);

static void each_opt(FILE *f, const cli_cmd *cmd, opt_fn fn) {
    for (const cli_opt *o = cmd->own; o && o->name; o++)
        if (!o->deprecated_for) fn(f, o);
    for (const char *const *n = cmd->shared; n && *n; n++) {
        const cli_opt *o = shared_by_name(*n);
        if (o) fn(f, o);
    }
    for (const cli_opt *o = cmd->own; o && o->name; o++)
        if (o->deprecated_for) fn(f, o);
    fn(f, &help_opt);
}

/* Word-wrapped at 100 columns under a 29-column label, so help stays readable in an ordinary terminal. */
static void text_opt(FILE *f, const cli_opt *o) {
    char label[96], text[1024];
    opt_label(o, label, sizeof label);
    fprintf(f, "  %-26s ", label);
    if (strlen(label) > 26) fprintf(f, "\n  %-26s ", "");
    if (o->deprecated_for)
        snprintf(text, sizeof text, "old spelling of %s (accepted with a warning for one release)", o->deprecated_for);
    else
        snprintf(text, sizeof text, "%s%s%s%s", o->help, o->def ? " (default: " : "", o->def ? o->def : "", o->def ? ")" : "");
    const int indent = 29, width = 100;
    int col = indent;
    for (const char *w = text; *w;) {
        while (*w == ' ') w++;
        size_t n = strcspn(w, " ");
        if (!n) break;
        if (col > indent && col + 1 + (int)n > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(w, 1, n, f);
        col += (int)n;
        w += n;
    }
    fputc('\n', f);
}

void cli_help(FILE *f, const cli_cmd *cmd) {
    fprintf(f, "usage: msa %s%s%s [options]\n\n%s\n\noptions:\n", cmd->name, cmd->args && cmd->args[0] ? " " : "",
            cmd->args ? cmd->args : "", cmd->summary);
    each_opt(f, cmd, text_opt);
    if (cmd->notes) fprintf(f, "\n%s\n", cmd->notes);
}

void cli_help_top(FILE *f) {
    fprintf(f, "msa %s — Memory Sparse Attention engine\n\nusage: msa COMMAND [ARGS] [options]\n\ncommands:\n",
            msa_version());
    for (size_t i = 0; i < cli_n_commands; i++)
        fprintf(f, "  %-16s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(f, "\n`msa COMMAND --help` or `msa help COMMAND` for a command's options; `msa help --markdown` prints\n"
               "the whole reference (docs/cli.md).\n");
}

void cli_help_group(FILE *f, const char *group) {
    size_t n = strlen(group);
    fprintf(f, "usage: msa %s SUBCOMMAND [ARGS] [options]\n\nsubcommands:\n", group);
    for (size_t i = 0; i < cli_n_commands; i++)
        if (!strncmp(cli_commands[i].name, group, n) && cli_commands[i].name[n] == ' ')
            fprintf(f, "  %-16s %s\n", cli_commands[i].name + n + 1, cli_commands[i].summary);
    fprintf(f, "\n`msa %s SUBCOMMAND --help` for its options.\n", group);
}

static void md_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

static void md_opt(FILE *f, const cli_opt *o) {
    char label[96];
    opt_label(o, label, sizeof label);
    fputs("| `", f);
    fputs(label, f);
    fputs("` | ", f);
    if (o->deprecated_for) fprintf(f, "old spelling of `%s` (accepted with a warning for one release)", o->deprecated_for);
    else md_escape(f, o->help);
    fputs(" | ", f);
    if (o->def) md_escape(f, o->def);
    fputs(" |\n", f);
}

extern const char cli_doc_intro[], cli_doc_outro[];

void cli_markdown(FILE *f) {
    fputs(cli_doc_intro, f);
    fputs("\n## Commands\n\n", f);
    for (size_t i = 0; i < cli_n_commands; i++) {
        const cli_cmd *c = &cli_commands[i];
        fprintf(f, "### msa %s\n\n```\nmsa %s%s%s [options]\n```\n\n%s\n\n| option | meaning | default |\n|---|---|---|\n",
                c->name, c->name, c->args && c->args[0] ? " " : "", c->args ? c->args : "", c->summary);
        each_opt(f, c, md_opt);
        if (c->notes) fprintf(f, "\n```\n%s\n```\n", c->notes);
        fputc('\n', f);
    }
    fputs(cli_doc_outro, f);
}

/* ----------------------------------------------------------------------------------------- seeds, progress */

unsigned long long cli_random_seed(void) {
    unsigned long long s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^ ((unsigned long long)getpid() << 40);
    }
    /* printed and given back with --seed: keep it in the range --seed accepts (and readable) */
    return s % 4294967296ull;
}

/* MSA_NO_PROGRESS set to anything but "" or "0" silences progress lines. */
static bool msa_no_progress(void) {
    const char *e = getenv("MSA_NO_PROGRESS");
    return e && *e && strcmp(e, "0");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_start(cli_progress *p, const char *label) {
    p->label = label;
    p->t0 = now_s();
    p->last = -1;
    p->tty = isatty(2) && !msa_no_progress();
    p->drawn = false;
}

void cli_progress_update(cli_progress *p, double done, double total, const char *unit) {
    if (!p->tty) return;
    double t = now_s();
    /* at least every second (and not much more often, a terminal redraw is not free) */
    if (p->last >= 0 && t - p->last < 0.5 && done < total) return;
    p->last = t;
    double dt = t - p->t0, rate = dt > 0 ? done / dt : 0;
    char eta[32] = "?";
    if (rate > 0 && total >= done) snprintf(eta, sizeof eta, "%.0f s", (total - done) / rate);
    fprintf(stderr, "\r\033[K%s: %.0f/%.0f %s, %.1f %s/s, %.0f s elapsed, ETA %s", p->label, done, total, unit, rate, unit,
            dt, eta);
    p->drawn = true;
}

void cli_progress_end(cli_progress *p) {
    if (p->tty && p->drawn) fputs("\r\033[K", stderr);
    p->drawn = false;
}
