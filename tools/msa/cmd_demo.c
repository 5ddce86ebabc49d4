/* cmd_demo.c — `msa demo`: the end-to-end demo on the default model. Builds (or reuses) a read-mode bank from
 * the corpus shipped in data/demo/ (public-domain passages plus planted facts), then asks the planted facts'
 * questions and prints each answer with the documents it was routed to.
 *
 *   msa demo [-m MODEL] [--corpus DIR] [--bank DIR] [--docs K] [-n N] [-t THREADS] [--device DEV] [--check]
 *
 * Defaults: MODEL models/SmolLM2-135M-Instruct.Q4_1.gguf, corpus data/demo (both also looked up next to the
 * executable's ../), bank $XDG_CACHE_HOME/msa/demo-bank-pP (else ~/.cache/msa/demo-bank-pP, P the pooling). Rerunning reuses the
 * bank: unchanged documents are not encoded again. --check exits 1 unless, for every planted fact, its
 * document is among the injected (top-k) documents and the answer contains the fact's expected answer
 * (case-insensitive). The summary also counts the facts whose document was routed first. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "model_glue.h"
#include "msa.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* path if it exists, else the same path next to the binary (model_glue_locate); path itself when neither is
 * there, so that the error names the path the user would expect */
static const char *locate(const char *path, char *buf, size_t cap) {
    const char *p = model_glue_locate(path, buf, cap);
    return p ? p : path;
}

static int mkdirs(const char *path) {
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof tmp) return -1;
    memcpy(tmp, path, strlen(path) + 1);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return 0;
}

typedef struct jl { json_t **v; size_t n; } jl;

static int read_jsonl(const char *path, jl *out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "msa demo: cannot open %s: %s\n", path, strerror(errno));
        return 66;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    out->v = NULL;
    out->n = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n <= 1) continue;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)n, 0, &err);
        if (!j || !json_is_string(json_object_get(j, "id")) || !json_is_string(json_object_get(j, "text"))) {
            fprintf(stderr, "msa demo: %s:%zu: not a {\"id\", \"text\"} object\n", path, lineno);
            json_decref(j);
            free(line);
            fclose(f);
            return 65;
        }
        json_t **v = realloc(out->v, (out->n + 1) * sizeof *v);
        if (!v) {
            json_decref(j);
            break;
        }
        out->v = v;
        out->v[out->n++] = j;
    }
    free(line);
    fclose(f);
    return 0;
}

static void jl_free(jl *l) {
    for (size_t i = 0; i < l->n; i++) json_decref(l->v[i]);
    free(l->v);
}

int cmd_demo(const cli_args *a) {
    const char *model_path = cli_get(a, "--model"), *corpus = cli_get(a, "--corpus"), *bank_path = cli_get(a, "--bank");
    int top_k = (int)cli_int(a, "--docs", 3), max_new = (int)cli_int(a, "--n-predict", 48),
        pooling = (int)cli_int(a, "--pooling", 0);
    bool check = cli_has(a, "--check");
    if (top_k > 64) return cli_usage_error("demo", "--docs must be 1..64");
    if (max_new < 1) return cli_usage_error("demo", "-n must be >= 1");
    char mbuf[PATH_MAX], cbuf[PATH_MAX], bbuf[PATH_MAX], pbuf[PATH_MAX];
    if (!model_path) model_path = locate(DEFAULT_MODEL, mbuf, sizeof mbuf);
    if (!corpus) corpus = locate("data/demo", cbuf, sizeof cbuf);
    if (!bank_path) {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        /* The pooling is part of the name: a bank cached by a run with another P would be reused as it is
         * (its documents are unchanged) and route with the wrong key granularity. */
        int p = pooling > 0 ? pooling : 1;
        if (xdg && *xdg) snprintf(bbuf, sizeof bbuf, "%s/msa/demo-bank-p%d", xdg, p);
        else snprintf(bbuf, sizeof bbuf, "%s/.cache/msa/demo-bank-p%d", home && *home ? home : "/tmp", p);
        bank_path = bbuf;
    }

    fprintf(stderr, "msa demo: model %s\n", model_path);
    msa_model_params mp = cli_model_params(a);
    msa_model *model;
    msa_status st = msa_model_load(model_path, &mp, &model);
    if (st) {
        if (st == MSA_ERR_NOT_FOUND) fprintf(stderr, "msa demo: install the default model first: make model\n");
        return cli_fail(st);
    }
    const char *router_used = NULL; /* read mode's default: the shipped query-side router of this model, if any */
    st = model_glue_read_router(model, NULL, &router_used);
    if (st) {
        msa_model_free(model);
        return cli_fail(st);
    }
    fprintf(stderr, "msa demo: router %s\n", router_used ? router_used : "identity (the model's own keys)");
    jl docs = {0}, facts = {0};
    snprintf(pbuf, sizeof pbuf, "%s/passages.jsonl", corpus);
    int rc = read_jsonl(pbuf, &docs);
    snprintf(pbuf, sizeof pbuf, "%s/facts.jsonl", corpus);
    if (!rc) rc = read_jsonl(pbuf, &facts);
    msa_bank *bank = NULL;
    uint8_t fp[32];
    msa_model_fingerprint(model, fp);
    if (!rc && access(bank_path, F_OK) != 0) {
        msa_bank_create_params cp = {0};
        memcpy(cp.fingerprint, fp, 32);
        cp.model_path = model_path;
        st = msa_memory_bank_shape(model, MSA_BANK_READ, pooling, &cp.shape);
        if (!st && mkdirs(bank_path)) st = MSA_ERR_IO;
        if (!st) st = msa_bank_create(bank_path, &cp);
        if (st) rc = cli_fail(st);
    }
    if (!rc) {
        msa_bank_open_params bp = msa_bank_default_open_params();
        bp.writable = true;
        st = msa_bank_open(bank_path, &bp, &bank);
        if (!st) st = msa_bank_check_fingerprint(bank, fp);
        if (st) {
            rc = cli_fail(st);
            if (st == MSA_ERR_MISMATCH || st == MSA_ERR_BAD_DATA)
                fprintf(stderr, "msa demo: remove %s (made by another model or damaged) or pass --bank DIR\n", bank_path);
        }
    }
    if (!rc) {
        fprintf(stderr, "msa demo: bank %s, %zu documents from %s\n", bank_path, docs.n, corpus);
        msa_doc_input *in = calloc(docs.n ? docs.n : 1, sizeof *in);
        for (size_t i = 0; in && i < docs.n; i++) {
            in[i].id = json_string_value(json_object_get(docs.v[i], "id"));
            in[i].text = json_string_value(json_object_get(docs.v[i], "text"));
            in[i].text_len = json_string_length(json_object_get(docs.v[i], "text"));
        }
        msa_ingest_params ip = msa_ingest_default_params();
        ip.progress = true;
        msa_ingest_report rep;
        st = in ? msa_bank_ingest(bank, model, in, docs.n, &ip, &rep) : MSA_ERR_NOMEM;
        free(in);
        if (st) rc = cli_fail(st);
        else
            fprintf(stderr, "msa demo: encoded %zu new documents (%llu tokens) in %.1f s; %zu already in the bank\n",
                    rep.n_added + rep.n_replaced, (unsigned long long)rep.n_tokens_encoded, rep.seconds, rep.n_unchanged);
    }
    int n_first = 0, n_routed = 0, n_answered = 0;
    for (size_t i = 0; !rc && i < facts.n; i++) {
        const char *q = json_string_value(json_object_get(facts.v[i], "question"));
        const char *want = json_string_value(json_object_get(facts.v[i], "id"));
        const char *expect = json_string_value(json_object_get(facts.v[i], "answer"));
        if (!q || !want) continue;
        msa_ask_params ap = msa_ask_default_params();
        ap.mode = MSA_ASK_READ;
        ap.top_k = top_k;
        ap.max_new_tokens = max_new;
        msa_ask_result r;
        st = msa_ask(model, bank, q, strlen(q), &ap, &r);
        if (st) {
            rc = cli_fail(st);
            break;
        }
        const msa_ask_round *R = &r.rounds[0];
        size_t rank = 0; /* 1-based place of the fact's document among the injected ones; 0: not injected */
        for (size_t k = 0; k < R->n_injected && !rank; k++)
            if (!strcmp(R->injected_id[k], want)) rank = k + 1;
        bool answered = expect && r.answer && strcasestr(r.answer, expect);
        n_first += rank == 1;
        n_routed += rank > 0;
        n_answered += answered;
        printf("\nQ: %s\nA: %s\n   routed to:", q, r.answer ? r.answer : "");
        for (size_t k = 0; k < R->n_injected; k++) printf("%s %s", k ? "," : "", R->injected_id[k]);
        printf("\n   [%s] %s document %s; answer %s '%s' (%.2f s routing, %.1f s total)\n",
               rank && answered ? "ok" : "miss", want,
               rank == 1 ? "routed first" : rank ? "routed (not first)" : "NOT routed",
               answered ? "contains" : "lacks", expect ? expect : "?", r.seconds_route, r.seconds_total);
        fflush(stdout);
        msa_ask_result_free(&r);
    }
    if (!rc) {
        printf("\nplanted facts: %d/%zu documents routed first, %d/%zu among the injected (top %d), %d/%zu answers contain "
               "the fact\n", n_first, facts.n, n_routed, facts.n, top_k, n_answered, facts.n);
        if (check && ((size_t)n_routed != facts.n || (size_t)n_answered != facts.n)) rc = 1;
    }
    if (bank) msa_bank_close(bank);
    jl_free(&docs);
    jl_free(&facts);
    msa_model_free(model);
    return rc;
}
