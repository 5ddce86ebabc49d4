/* cmd_ask.c — `msa ask` (one question over a bank) and `msa chat` (one question per input line).
 *
 *   msa ask -m MODEL --bank BANK -q QUESTION [--mode native|read] [--top-k K] [--rounds R] [-n MAX_NEW_TOKENS]
 *           [--temp T] [--seed S] [-t THREADS] [--router FILE] [--json]
 *   msa chat -m MODEL --bank BANK [same options]
 *
 * --json prints one object: {"answer": str, "rounds": [{"routing": [{"layer": int, "docs": [ids], "scores":
 * [float]}], "generated": str, "injected": [ids]}]} (ids are the client ids given to `msa bank add`). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "msa.h"

typedef struct ask_opts {
    const char *model, *bank, *question, *router;
    msa_ask_params ap;
    int threads;
    bool json, verbose;
} ask_opts;

static void ask_usage(FILE *f, const char *cmd) {
    fprintf(f,
            "usage: msa %s -m MODEL --bank BANK%s [options]\n"
            "  --mode native|read   native: MSA sparse attention over routed memory (MSA checkpoints);\n"
            "                       read: route, then put the best documents' text in the prompt (any model)\n"
            "                       (default: the bank's mode)\n"
            "  --top-k K            documents per router layer (default: msa_config's, 3 in read mode)\n"
            "  --rounds R           Memory Interleave rounds at most (default 8)\n"
            "  -n N                 new tokens per round at most (default 512)\n"
            "  --temp T             sampling temperature (default 0 = greedy)\n"
            "  --seed S             sampling seed\n"
            "  -t N                 threads (default: all CPUs)\n"
            "  --router FILE        read mode with router weights from a safetensors file (per layer\n"
            "                       self_attn.router_q_proj / router_k_proj); the bank must have been built\n"
            "                       with the same file (default: the identity router)\n"
            "  --json               print {answer, rounds[{routing, generated, injected}]} as one JSON object\n"
            "  -v                   also print the routed documents\n",
            cmd, strcmp(cmd, "ask") ? "" : " -q QUESTION");
}

static int parse(const char *cmd, int argc, char **argv, ask_opts *o) {
    memset(o, 0, sizeof *o);
    o->ap = msa_ask_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                  \
    do {                                                                        \
        if (!v) return cli_usage_error(cmd, "%s needs a value", a);             \
        i++;                                                                    \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ask_usage(stdout, cmd);
            return -1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED(); o->model = v; }
        else if (!strcmp(a, "--bank") || !strcmp(a, "-b")) { NEED(); o->bank = v; }
        else if (!strcmp(a, "-q") || !strcmp(a, "--question")) { NEED(); o->question = v; }
        else if (!strcmp(a, "--router")) { NEED(); o->router = v; }
        else if (!strcmp(a, "--mode")) {
            NEED();
            if (!strcmp(v, "native")) o->ap.mode = MSA_ASK_NATIVE;
            else if (!strcmp(v, "read")) o->ap.mode = MSA_ASK_READ;
            else return cli_usage_error(cmd, "--mode must be native or read, not '%s'", v);
        } else if (!strcmp(a, "--top-k") || !strcmp(a, "-k")) {
            NEED();
            char *e;
            long k = strtol(v, &e, 10);
            if (*e || k < 1 || k > 1024) return cli_usage_error(cmd, "--top-k must be 1..1024");
            o->ap.top_k = (int)k;
        } else if (!strcmp(a, "--rounds")) {
            NEED();
            char *e;
            long r = strtol(v, &e, 10);
            if (*e || r < 1 || r > 1000) return cli_usage_error(cmd, "--rounds must be 1..1000");
            o->ap.max_rounds = (int)r;
        } else if (!strcmp(a, "-n")) {
            NEED();
            char *e;
            long n = strtol(v, &e, 10);
            if (*e || n < 1 || n > 1 << 20) return cli_usage_error(cmd, "-n must be 1..1048576");
            o->ap.max_new_tokens = (int)n;
        } else if (!strcmp(a, "--temp")) {
            NEED();
            char *e;
            double t = strtod(v, &e);
            if (*e || t < 0 || t > 100) return cli_usage_error(cmd, "--temp must be 0..100");
            o->ap.temperature = (float)t;
        } else if (!strcmp(a, "--seed")) {
            NEED();
            o->ap.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED();
            o->threads = atoi(v);
        } else if (!strcmp(a, "--json")) o->json = true;
        else if (!strcmp(a, "-v")) o->verbose = true;
        else return cli_usage_error(cmd, "unknown option '%s' (msa %s --help)", a, cmd);
#undef NEED
    }
    if (!o->model) return cli_usage_error(cmd, "-m MODEL is required");
    if (!o->bank) return cli_usage_error(cmd, "--bank BANK is required");
    return 0;
}

static json_t *ids_json(char **ids, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(ids[i] ? ids[i] : ""));
    return a;
}

/* The --json object. Strings are passed as bytes (the model may emit partial UTF-8; jansson needs valid
 * UTF-8, so invalid bytes are replaced). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s ? s : "");
    if (j) return j;
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c) return json_string("");
    for (size_t i = 0; i <= n; i++) c[i] = (s[i] & 0x80) ? '?' : s[i];
    j = json_string(c);
    free(c);
    return j ? j : json_string("");
}

static void print_json(const msa_ask_result *r) {
    json_t *o = json_object();
    json_object_set_new(o, "answer", jstr(r->answer));
    json_t *rounds = json_array();
    for (int i = 0; i < r->n_rounds; i++) {
        const msa_ask_round *R = &r->rounds[i];
        json_t *jr = json_object(), *routing = json_array();
        for (int l = 0; l < R->n_routing; l++) {
            const msa_ask_routing *rt = &R->routing[l];
            json_t *jl = json_object(), *sc = json_array();
            json_object_set_new(jl, "layer", json_integer(rt->layer));
            json_object_set_new(jl, "docs", ids_json(rt->doc_id, rt->n));
            for (size_t k = 0; k < rt->n; k++) json_array_append_new(sc, json_real(rt->score[k]));
            json_object_set_new(jl, "scores", sc);
            json_array_append_new(routing, jl);
        }
        json_object_set_new(jr, "routing", routing);
        json_object_set_new(jr, "generated", jstr(R->generated));
        json_object_set_new(jr, "injected", ids_json(R->injected_id, R->n_injected));
        json_array_append_new(rounds, jr);
    }
    json_object_set_new(o, "rounds", rounds);
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

static void print_text(const msa_ask_result *r, bool verbose) {
    printf("%s\n", r->answer ? r->answer : "");
    if (!verbose) return;
    for (int i = 0; i < r->n_rounds; i++) {
        const msa_ask_round *R = &r->rounds[i];
        fprintf(stderr, "round %d:", i + 1);
        if (R->n_injected) {
            fprintf(stderr, " injected");
            for (size_t k = 0; k < R->n_injected; k++) fprintf(stderr, " %s", R->injected_id[k]);
        }
        fputc('\n', stderr);
        for (int l = 0; l < R->n_routing; l++) {
            fprintf(stderr, "  layer %d:", R->routing[l].layer);
            for (size_t k = 0; k < R->routing[l].n; k++)
                fprintf(stderr, " %s(%.3g)", R->routing[l].doc_id[k], R->routing[l].score[k]);
            fputc('\n', stderr);
        }
    }
}

static int open_both(const ask_opts *o, msa_model **model, msa_bank **bank) {
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = o->threads;
    msa_status st = msa_model_load(o->model, &mp, model);
    if (st) return cli_fail(st);
    if (o->router && (st = msa_model_load_router(*model, o->router))) {
        msa_model_free(*model);
        return cli_fail(st);
    }
    msa_bank_open_params bp = msa_bank_default_open_params();
    st = msa_bank_open(o->bank, &bp, bank);
    if (st) {
        msa_model_free(*model);
        return cli_fail(st);
    }
    return 0;
}

int cmd_ask(int argc, char **argv) {
    ask_opts o;
    int rc = parse("ask", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.question) return cli_usage_error("ask", "-q QUESTION is required");
    msa_model *model;
    msa_bank *bank;
    if ((rc = open_both(&o, &model, &bank))) return rc;
    msa_ask_result r;
    msa_status st = msa_ask(model, bank, o.question, strlen(o.question), &o.ap, &r);
    if (st) {
        rc = cli_fail(st);
        if (st == MSA_ERR_MISMATCH)
            fprintf(stderr, "msa ask: a bank built with --router FILE is asked with the same --router FILE only, "
                            "and a bank built without one, without\n");
    }
    else {
        if (o.json) print_json(&r);
        else print_text(&r, o.verbose);
        msa_ask_result_free(&r);
    }
    msa_bank_close(bank);
    msa_model_free(model);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    ask_opts o;
    int rc = parse("chat", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    msa_model *model;
    msa_bank *bank;
    if ((rc = open_both(&o, &model, &bank))) return rc;
    const bool tty = isatty(0);
    if (tty) fprintf(stderr, "Ask questions about the bank (one per line; each is answered on its own). Ctrl-D ends.\n");
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        msa_ask_result r;
        msa_status st = msa_ask(model, bank, line, (size_t)n, &o.ap, &r);
        if (st) {
            cli_fail(st);
            if (st != MSA_ERR_LIMIT && st != MSA_ERR_INVALID_ARG) {
                rc = msa_status_exit_code(st);
                break;
            }
            continue;
        }
        if (o.json) print_json(&r);
        else print_text(&r, true);
        fflush(stdout);
        msa_ask_result_free(&r);
    }
    free(line);
    msa_bank_close(bank);
    msa_model_free(model);
    return rc;
}
