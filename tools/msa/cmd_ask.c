/* cmd_ask.c — `msa ask` (one question over a bank) and `msa chat` (an interactive conversation over a bank).
 *
 * Both stream the answer as it is generated (both modes; native mode streams the text decoded after the
 * question injection) and stop it on Ctrl-C. chat reads lines through libedit on a terminal (line editing, history), understands /help, /bye,
 * /docs, /context and /clear, joins lines ending in '\' and """ blocks, ignores blank lines, and carries the previous
 * turns into each new question (bounded by --history and the model's context; docs/cli.md). --json output
 * and errors follow the versioned schemas in docs/cli.md. */
#include <editline/readline.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "model_glue.h"
#include "msa.h"

typedef struct ask_opts {
    const char *model, *bank, *question, *router;
    msa_ask_params ap;
    bool json, verbose, random_seed;
    int history;
} ask_opts;

/* With --json an error is also an object on stdout (cli_json_errors, set by main.c, makes cli_fail and
 * cli_usage_error print it). */
static int fail_json(bool json, msa_status st) {
    (void)json;
    return cli_fail(st);
}

static int usage_json(bool json, const char *cmd, const char *msg) {
    (void)json;
    return cli_usage_error(cmd, "%s", msg);
}

static void from_args(const cli_args *a, ask_opts *o) {
    memset(o, 0, sizeof *o);
    o->ap = msa_ask_default_params();
    o->model = cli_get(a, "--model");
    o->bank = cli_get(a, "--bank");
    o->question = cli_get(a, "--question");
    if (!o->question) o->question = cli_get(a, "--prompt"); /* llama.cpp's -p */
    o->router = cli_get(a, "--router");
    const char *mode = cli_get(a, "--mode");
    if (mode) o->ap.mode = !strcmp(mode, "native") ? MSA_ASK_NATIVE : MSA_ASK_READ;
    o->ap.top_k = (int)cli_int(a, "--docs", 0);
    o->ap.max_rounds = (int)cli_int(a, "--rounds", 8);
    o->ap.max_new_tokens = (int)cli_int(a, "--n-predict", 512);
    o->ap.temperature = (float)cli_float(a, "--temp", 0);
    o->ap.top_p = (float)cli_float(a, "--top-p", 1);
    o->ap.min_p = (float)cli_float(a, "--min-p", 0);
    o->ap.repeat_penalty = (float)cli_float(a, "--repeat-penalty", 1);
    o->ap.repeat_last_n = (int)cli_int(a, "--repeat-last-n", 64);
    const char *seed = cli_get(a, "--seed");
    o->random_seed = !seed || !strcmp(seed, "-1");
    o->ap.seed = o->random_seed ? cli_random_seed() : strtoull(seed, NULL, 10);
    o->json = cli_has(a, "--json");
    o->verbose = cli_has(a, "--verbose");
    o->history = (int)cli_int(a, "--history", 4);
}

/* ---------------------------------------------------------------------------------------------- output */

/* Strings are passed as bytes (the model may emit partial UTF-8; jansson needs valid UTF-8, so invalid
 * bytes are replaced). */
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

static void print_json(const char *schema, const ask_opts *o, const char *question, const msa_ask_result *r) {
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string(schema));
    json_object_set_new(root, "question", jstr(question));
    json_object_set_new(root, "answer", jstr(r->answer));
    json_object_set_new(root, "mode", json_string(o->ap.mode == MSA_ASK_NATIVE ? "native" : "read"));
    json_object_set_new(root, "model", jstr(o->model));
    json_object_set_new(root, "bank", jstr(o->bank));
    json_object_set_new(root, "seed", json_integer((json_int_t)o->ap.seed));
    json_object_set_new(root, "truncated", json_boolean(r->truncated));
    json_object_set_new(root, "cancelled", json_boolean(r->cancelled));
    json_object_set_new(root, "tokens", json_pack("{s:I, s:I}", "prompt", (json_int_t)r->n_prompt_tokens, "generated",
                                                  (json_int_t)r->n_generated_tokens));
    json_object_set_new(root, "timings", json_pack("{s:f, s:f}", "route_s", r->seconds_route, "total_s", r->seconds_total));
    json_t *rounds = json_array();
    for (int i = 0; i < r->n_rounds; i++) {
        const msa_ask_round *R = &r->rounds[i];
        json_t *jr = json_object(), *routing = json_array(), *inj = json_array();
        for (int l = 0; l < R->n_routing; l++) {
            const msa_ask_routing *rt = &R->routing[l];
            json_t *docs = json_array();
            for (size_t k = 0; k < rt->n; k++)
                json_array_append_new(docs, json_pack("{s:o, s:I, s:f}", "id", jstr(rt->doc_id[k]), "index",
                                                      (json_int_t)rt->index[k], "score", (double)rt->score[k]));
            json_array_append_new(routing, json_pack("{s:i, s:o}", "layer", rt->layer, "docs", docs));
        }
        for (size_t k = 0; k < R->n_injected; k++)
            json_array_append_new(inj, json_pack("{s:o, s:I}", "id", jstr(R->injected_id[k]), "index",
                                                 (json_int_t)R->injected_index[k]));
        json_object_set_new(jr, "generated", jstr(R->generated));
        json_object_set_new(jr, "injected", inj);
        json_object_set_new(jr, "routing", routing);
        json_array_append_new(rounds, jr);
    }
    json_object_set_new(root, "rounds", rounds);
    cli_put_json_line(stdout, root);
    fflush(stdout);
}

static void print_routing(FILE *f, const msa_ask_result *r) {
    for (int i = 0; i < r->n_rounds; i++) {
        const msa_ask_round *R = &r->rounds[i];
        fprintf(f, "round %d: injected", i + 1);
        if (!R->n_injected) fprintf(f, " nothing");
        for (size_t k = 0; k < R->n_injected; k++) fprintf(f, " %s", R->injected_id[k]);
        fputc('\n', f);
        for (int l = 0; l < R->n_routing; l++) {
            fprintf(f, "  layer %d:", R->routing[l].layer);
            for (size_t k = 0; k < R->routing[l].n; k++)
                fprintf(f, " %s(%.3g)", R->routing[l].doc_id[k], R->routing[l].score[k]);
            fputc('\n', f);
        }
    }
}

/* The timing line (-v; `msa ask` also when Ctrl-C stopped the answer). */
static void print_timings(FILE *f, const char *cmd, const msa_ask_result *r, float temperature) {
    char hist[96] = "";
    if (!strcmp(cmd, "chat"))
        snprintf(hist, sizeof hist, " with %zu previous messages of the conversation", r->n_history_used);
    fprintf(f, "msa %s: prompt %llu tokens%s | answer %llu tokens | routing %.2f s, total %.2f s%s\n", cmd,
            (unsigned long long)r->n_prompt_tokens, hist, (unsigned long long)r->n_generated_tokens, r->seconds_route,
            r->seconds_total, temperature > 0 ? "" : " | greedy");
}

/* Streaming: pieces go to stdout as they come; the leading whitespace of an answer is dropped (the answer
 * field is trimmed the same way). */
typedef struct stream {
    bool started, any;
} stream;

static void on_text(const char *text, size_t len, void *user) {
    stream *s = user;
    if (!s->started) {
        while (len && (*text == ' ' || *text == '\n')) text++, len--;
        if (!len) return;
        s->started = true;
    }
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    s->any = true;
}

/* Ctrl-C: during an answer the first one cancels it; a second one, or one with no answer running, quits. */
static volatile int cancel_flag;
static volatile sig_atomic_t answering;
static void on_sigint(int sig) {
    (void)sig;
    if (answering && !cancel_flag) {
        cancel_flag = 1;
        return;
    }
    if (write(1, "\n", 1) < 0) { /* nothing to do about it */
    }
    _exit(130);
}

static void install_sigint(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* ----------------------------------------------------------------------------------------- model + bank */

static int open_both(ask_opts *o, const char *cmd, msa_model **model, msa_bank **bank, const cli_args *a) {
    msa_bank_open_params bp = msa_bank_default_open_params();
    msa_status st = msa_bank_open(o->bank, &bp, bank);
    if (st) return fail_json(o->json, st);
    msa_bank_info bi;
    msa_bank_get_info(*bank, &bi);
    static char stored[4096];
    if (!o->model) { /* like `msa bank add`: the model the bank was created with */
        if (!bi.model_path[0]) {
            msa_bank_close(*bank);
            return usage_json(o->json, cmd, "this bank records no model: give -m MODEL");
        }
        snprintf(stored, sizeof stored, "%s", bi.model_path);
        o->model = stored;
    }
    if (o->ap.mode == MSA_ASK_AUTO) o->ap.mode = bi.shape.mode == MSA_BANK_NATIVE ? MSA_ASK_NATIVE : MSA_ASK_READ;
    msa_model_params mp = cli_model_params(a);
    st = msa_model_load(o->model, &mp, model);
    if (st) {
        msa_bank_close(*bank);
        return fail_json(o->json, st);
    }
    if ((st = model_glue_read_router(*model, o->router, NULL))) {
        msa_model_free(*model);
        msa_bank_close(*bank);
        return fail_json(o->json, st);
    }
    return 0;
}

static void mismatch_hint(const ask_opts *o, const char *cmd, msa_status st) {
    /* only when a router is in play: otherwise the remark sends the user after a flag they never gave */
    if (st == MSA_ERR_MISMATCH && o->router)
        fprintf(stderr, "msa %s: a bank built with --router FILE is asked with the same --router FILE only\n", cmd);
}

int cmd_ask(const cli_args *a) {
    ask_opts o;
    from_args(a, &o);
    if (!o.question) return usage_json(o.json, "ask", "-q QUESTION (or -p QUESTION) is required");
    if (!o.bank) return usage_json(o.json, "ask", "--bank BANK is required");
    msa_model *model;
    msa_bank *bank;
    int rc = open_both(&o, "ask", &model, &bank, a);
    if (rc) return rc;
    stream sm = {0};
    if (!o.json) {
        o.ap.on_text = on_text;
        o.ap.user = &sm;
    }
    o.ap.cancel = &cancel_flag;
    answering = 1;
    install_sigint();
    msa_ask_result r;
    msa_status st = msa_ask(model, bank, o.question, strlen(o.question), &o.ap, &r);
    answering = 0;
    if (st) {
        rc = fail_json(o.json, st);
        mismatch_hint(&o, "ask", st);
    } else {
        if (o.json) {
            print_json("msa.ask/1", &o, o.question, &r);
        } else {
            if (!sm.any && r.answer) fputs(r.answer, stdout); /* nothing was streamed (e.g. --json off mid-way) */
            fputc('\n', stdout);
            fflush(stdout);
            if (o.verbose) print_routing(stderr, &r);
        }
        if (r.truncated)
            fprintf(stderr, "msa ask: warning: the answer was cut at -n %d tokens\n", o.ap.max_new_tokens);
        if (r.cancelled) {
            fprintf(stderr, "msa ask: interrupted\n");
            rc = 130;
        }
        if (!o.json && (r.cancelled || o.verbose)) print_timings(stderr, "ask", &r, o.ap.temperature);
        msa_ask_result_free(&r);
    }
    msa_bank_close(bank);
    msa_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------------------------------------- chat */

typedef struct history {
    char **role, **text;
    size_t n, cap;
} history;

static void hist_push(history *h, const char *role, const char *text, size_t max_msgs) {
    while (h->n && h->n + 1 > max_msgs) { /* drop the oldest */
        free(h->text[0]);
        memmove(h->text, h->text + 1, (h->n - 1) * sizeof *h->text);
        memmove(h->role, h->role + 1, (h->n - 1) * sizeof *h->role);
        h->n--;
    }
    if (!max_msgs) return;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        char **r = realloc(h->role, cap * sizeof *r);
        if (r) h->role = r;
        char **t = realloc(h->text, cap * sizeof *t);
        if (t) h->text = t;
        if (!r || !t) return;
        h->cap = cap;
    }
    char *c = strdup(text);
    if (!c) return;
    h->role[h->n] = (char *)role;
    h->text[h->n++] = c;
}

static void hist_clear(history *h) {
    for (size_t i = 0; i < h->n; i++) free(h->text[i]);
    h->n = 0;
}

/* One input line: libedit on a terminal, getline otherwise. NULL at end of input. */
static char *read_line(bool tty, const char *prompt) {
    if (tty) {
        char *l = readline(prompt);
        return l;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

static bool append(char **buf, size_t *len, const char *s, size_t n) {
    char *b = realloc(*buf, *len + n + 2);
    if (!b) return false;
    memcpy(b + *len, s, n);
    *len += n;
    b[*len] = 0;
    *buf = b;
    return true;
}

/* Whether another whole line is already waiting on the terminal (a terminal in canonical mode polls readable
 * only once a line is complete): within 30 ms of the last one, as a paste delivers its lines. */
static bool pasted_more(void) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    return poll(&p, 1, 30) > 0 && (p.revents & POLLIN);
}

/* A whole question: joins lines ending in '\' and """ ... """ blocks. NULL at end of input. */
static char *read_question(bool tty) {
    char *line = read_line(tty, tty ? ">>> " : "");
    if (!line) return NULL;
    char *q = NULL;
    size_t n = 0;
    if (!strcmp(line, "\"\"\"")) { /* a block: everything up to the closing """ */
        free(line);
        while ((line = read_line(tty, tty ? "... " : ""))) {
            if (!strcmp(line, "\"\"\"")) break;
            if (n) append(&q, &n, "\n", 1);
            append(&q, &n, line, strlen(line));
            free(line);
        }
        free(line);
        return q ? q : strdup("");
    }
    const bool command = line[strspn(line, " \t")] == '/';
    for (;;) {
        size_t l = strlen(line);
        bool more = l && line[l - 1] == '\\';
        if (more) line[--l] = 0;
        append(&q, &n, line, l);
        free(line);
        /* pasted text: on a terminal, lines that are already waiting when one ends came in one burst (a
         * paste, not typing) and belong to the same question */
        if (!more && !(tty && !command && n && pasted_more())) break;
        append(&q, &n, "\n", 1);
        if (!(line = read_line(tty, tty ? "... " : ""))) break;
    }
    return q ? q : strdup("");
}

static const char chat_help[] =
    "  /help     this list\n"
    "  /bye      end the chat (Ctrl-D too)\n"
    "  /docs     the documents the last answer was routed to\n"
    "  /context  the prompt of the last answer as the model read it (documents, previous turns, question)\n"
    "  /clear    forget the conversation so far\n"
    "  A line ending in \\ continues on the next one; \"\"\" on its own line starts and ends a block;\n"
    "  pasted lines are one question.\n"
    "  Ctrl-C stops an answer; a second Ctrl-C quits.\n";

static void history_path(char *buf, size_t cap) {
    const char *st = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char dir[4000];
    if (st && *st) snprintf(dir, sizeof dir, "%s/msa", st);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/state/msa", home);
    else {
        buf[0] = 0;
        return;
    }
    /* create the directory chain quietly; no history file is no error */
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
    snprintf(buf, cap, "%s/chat_history", dir);
}

int cmd_chat(const cli_args *a) {
    ask_opts o;
    from_args(a, &o);
    if (!o.bank) return usage_json(o.json, "chat", "--bank BANK is required");
    msa_model *model;
    msa_bank *bank;
    int rc = open_both(&o, "chat", &model, &bank, a);
    if (rc) return rc;
    const bool tty = isatty(0);
    char hpath[4096] = "";
    if (tty) {
        using_history();
        history_path(hpath, sizeof hpath);
        if (hpath[0]) read_history(hpath);
        fprintf(stderr, "msa chat: %s over %s. /help for commands, /bye or Ctrl-D to end.\n", o.model, o.bank);
    }
    install_sigint();
    history h = {0};
    msa_ask_result last = {0};
    bool have_last = false;
    const char *first = o.question; /* -q: the first question, then the conversation goes on */
    for (;;) {
        char *q = first ? strdup(first) : read_question(tty);
        first = NULL;
        if (!q) {
            if (tty) fputc('\n', stdout); /* Ctrl-D: leave the terminal on a fresh line */
            break;
        }
        size_t n = strlen(q);
        size_t b = 0;
        while (b < n && (q[b] == ' ' || q[b] == '\t' || q[b] == '\n')) b++;
        if (b == n) { /* blank: not a question */
            free(q);
            continue;
        }
        if (tty) add_history(q);
        if (q[b] == '/') {
            const char *c = q + b;
            if (!strcmp(c, "/bye") || !strcmp(c, "/exit") || !strcmp(c, "/quit")) {
                free(q);
                break;
            } else if (!strcmp(c, "/help") || !strcmp(c, "/?")) {
                fputs(chat_help, stdout);
            } else if (!strcmp(c, "/docs")) {
                if (have_last) print_routing(stdout, &last);
                else puts("no answer yet");
            } else if (!strcmp(c, "/context")) {
                if (have_last && last.transcript) {
                    fputs(last.transcript, stdout);
                    if (last.transcript[0] && last.transcript[strlen(last.transcript) - 1] != '\n') fputc('\n', stdout);
                } else {
                    puts("no answer yet");
                }
            } else if (!strcmp(c, "/clear")) {
                hist_clear(&h);
                puts("conversation cleared");
            } else {
                printf("unknown command %s (/help lists them)\n", c);
            }
            fflush(stdout);
            free(q);
            continue;
        }
        stream sm = {0};
        msa_ask_params ap = o.ap;
        if (!o.json) {
            ap.on_text = on_text;
            ap.user = &sm;
        }
        ap.cancel = &cancel_flag;
        ap.history_roles = (const char *const *)h.role;
        ap.history_contents = (const char *const *)h.text;
        ap.n_history = h.n;
        if (o.random_seed) ap.seed = cli_random_seed();
        msa_ask_result r;
        cancel_flag = 0;
        answering = 1;
        msa_status st = msa_ask(model, bank, q + b, n - b, &ap, &r);
        answering = 0;
        if (st) {
            fail_json(o.json, st);
            mismatch_hint(&o, "chat", st);
            free(q);
            if (st != MSA_ERR_LIMIT && st != MSA_ERR_INVALID_ARG) {
                rc = msa_status_exit_code(st);
                break;
            }
            continue;
        }
        if (o.json) {
            ask_opts oo = o;
            oo.ap.seed = ap.seed;
            print_json("msa.chat/1", &oo, q + b, &r);
        } else {
            if (!sm.any && r.answer) fputs(r.answer, stdout);
            fputc('\n', stdout);
            if (r.cancelled) fputs("[answer stopped]\n", stdout);
            else if (r.truncated) fprintf(stdout, "[cut at -n %d tokens]\n", o.ap.max_new_tokens);
            fflush(stdout);
            if (o.verbose) {
                print_routing(stderr, &r);
                print_timings(stderr, "chat", &r, ap.temperature);
            }
        }
        /* the turn joins the conversation (a stopped answer too: it is what the user saw) */
        size_t max_msgs = (size_t)o.history * 2;
        hist_push(&h, "user", q + b, max_msgs);
        hist_push(&h, "assistant", r.answer ? r.answer : "", max_msgs);
        if (have_last) msa_ask_result_free(&last);
        last = r;
        have_last = true;
        free(q);
    }
    if (tty && hpath[0]) write_history(hpath);
    if (have_last) msa_ask_result_free(&last);
    hist_clear(&h);
    free(h.role);
    free(h.text);
    msa_bank_close(bank);
    msa_model_free(model);
    return rc;
}
