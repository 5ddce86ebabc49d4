/* cmd_eval.c — `msa eval`: retrieval and answer quality of read mode, measured in the engine.
 *
 *   msa eval qa   -m MODEL --bank BANK QUESTIONS.jsonl [options]
 *   msa eval niah -m MODEL --bank DIR --tokens N [--seed S] [--per-task N] [--haystack FILE] [options]
 *
 * qa: QUESTIONS.jsonl holds one object per line {"id", "kind", "question", "gold": [doc ids], "answer": str |
 * [str] | null} over a bank made with `msa bank add --jsonl PASSAGES` (scripts/make_retrieval_data.py makes
 * both); passages ({"id", "text"} lines without "question") may come in the same file or in --passages FILE, and
 * are added to the bank (created when missing, with its BM25 index, as `msa bank add` leaves it) first.
 * niah: RULER-style needle-in-a-haystack (eval_niah.c makes the haystack, needles and questions, seeded); the bank
 * at DIR is created and filled when it does not hold them yet, then evaluated like qa.
 *
 * Metrics per question kind: recall@k (k = 1, 5, 10) of the gold documents (the fraction of a question's gold
 * documents ranked within the first k; ties ranked against the gold) for every router layer alone and for the
 * fused score read mode ranks by; with --answer, read mode answers from the top --docs documents of the fused
 * ranking (always exactly that many: every system reads the same number) and the answer is exact-match correct
 * when its normalised text (lower case, letters and digits) contains every gold answer; seconds per question
 * (routing; answering). --ranking FILE replaces the routing by an external ranking (jsonl {"id", "ranking":
 * [doc ids best first]}: the baselines of scripts/eval_baselines.py go through the same reader this way).
 * --scores-out FILE writes every question's fused scores ({"docs": [ids]} first, then {"id", "fused": [...]}).
 * --full-context: the baseline without retrieval: every question answered by the same reader and prompt with all
 * the documents in it (niah: the haystack in order; qa: the bank's documents in index order), refused with 64
 * before anything is answered when any question's prompt plus the -n answer budget is over the model's context;
 * no recall then (nothing is ranked); each answered question reports prompt_tokens and docs_in_prompt (the
 * documents read that the prompt holds, found in reading order by their "[index]. " headers).
 * --json prints one object. Nothing here aborts on malformed input: a bad line is an error naming it. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "eval.h"
#include "memory/ask.h"
#include "memory/bm25.h"
#include "util/error.h"
#include "model_glue.h"
#include "msa.h"

#define N_KS 3
static const int KS[N_KS] = {1, 5, 10};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void eval_questions_free(eval_question *q, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(q[i].id), free(q[i].kind), free(q[i].question);
        for (int j = 0; j < q[i].n_gold; j++) free(q[i].gold[j]);
        for (int j = 0; j < q[i].n_answer; j++) free(q[i].answer[j]);
    }
    free(q);
}

static char *dupstr(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

int eval_bank_fill(const eval_opts *o, msa_model *model, const msa_doc_input *docs, size_t n, msa_bank **out,
                   msa_ingest_report *rep) {
    msa_status st = MSA_OK;
    struct stat sb;
    if (stat(o->bank, &sb) != 0) { /* a read bank for this model (and --router's layers when one is given) */
        msa_bank_create_params cp = {0};
        st = model_glue_bank_params(o->model, o->router && strcmp(o->router, "none") ? o->router : NULL, true, 1, &cp);
        if (!st) st = msa_bank_create(o->bank, &cp);
    }
    msa_bank *bank = NULL;
    msa_bank_open_params bp = msa_bank_default_open_params();
    bp.writable = true;
    if (!st) st = msa_bank_open(o->bank, &bp, &bank);
    uint8_t fp[32];
    msa_model_fingerprint(model, fp);
    if (!st) st = msa_bank_check_fingerprint(bank, fp);
    msa_ingest_params ip = msa_ingest_default_params();
    ip.progress = o->progress;
    if (!st) st = msa_bank_ingest(bank, model, docs, n, &ip, rep); /* unchanged documents are skipped */
    /* as `msa bank add` leaves a read bank: with its BM25 index, so read mode's default fusion is measured */
    if (!st && !o->no_lexical) st = msa_bm25_refresh(bank, MSA_BM25_DEFAULT_WEIGHT, NULL);
    if (st) {
        msa_bank_close(bank);
        return cli_fail(st);
    }
    *out = bank;
    return 0;
}

/* The passages a qa file or --passages brings ({"id", "text"} lines): added to the bank before evaluating. */
typedef struct eval_passages {
    msa_doc_input *d; /* [n]; id and text owned */
    size_t n, cap;
} eval_passages;

static void passages_free(eval_passages *p) {
    for (size_t i = 0; i < p->n; i++) free((char *)p->d[i].id), free((char *)p->d[i].text);
    free(p->d);
    memset(p, 0, sizeof *p);
}

static int passages_push(eval_passages *p, const char *id, const char *text, size_t len) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        msa_doc_input *t = realloc(p->d, cap * sizeof *t);
        if (!t) return 70;
        p->d = t, p->cap = cap;
    }
    char *i = dupstr(id), *x = malloc(len + 1);
    if (!i || !x) return free(i), free(x), 70;
    memcpy(x, text, len), x[len] = 0;
    p->d[p->n++] = (msa_doc_input){.id = i, .text = x, .text_len = len};
    return 0;
}

/* Parse a questions file; *out malloc'd. A line {"id", "text"} without "question" is a passage, appended to
 * *pass when pass is given (a passages + questions file), refused otherwise; a file of passages only (--passages)
 * is read with questions_ok false. Returns 0 or an exit code (message printed). */
static int load_lines(const char *path, bool questions_ok, eval_passages *pass, eval_question **out, size_t *n_out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "msa eval: cannot open %s\n", path);
        return 66;
    }
    eval_question *q = NULL;
    size_t n = 0, cap = 0, line_no = 0;
    char *line = NULL;
    size_t lcap = 0;
    int rc = 0;
    while (getline(&line, &lcap, f) > 0 && !rc) {
        line_no++;
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!o) {
            size_t k = strspn(line, " \t\r\n");
            if (line[k] == 0) continue;
            fprintf(stderr, "msa eval: %s:%zu: %s\n", path, line_no, err.text);
            rc = 65;
            break;
        }
        const char *id = json_string_value(json_object_get(o, "id"));
        const char *qt = json_string_value(json_object_get(o, "question"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        json_t *txt = json_object_get(o, "text");
        if (pass && !json_object_get(o, "question") && id && *id && json_is_string(txt)) { /* a passage */
            rc = passages_push(pass, id, json_string_value(txt), json_string_length(txt));
            json_decref(o);
            continue;
        }
        if (!questions_ok) {
            fprintf(stderr, "msa eval: %s:%zu: a passage needs \"id\" and \"text\" (strings)\n", path, line_no);
            json_decref(o);
            rc = 65;
            break;
        }
        json_t *gold = json_object_get(o, "gold"), *ans = json_object_get(o, "answer");
        if (!id || !qt || !*qt || !json_is_array(gold) || json_array_size(gold) == 0 ||
            json_array_size(gold) > EVAL_MAX_GOLD || (ans && !json_is_null(ans) && !json_is_string(ans) &&
                                                      !(json_is_array(ans) && json_array_size(ans) <= EVAL_MAX_GOLD))) {
            fprintf(stderr, "msa eval: %s:%zu: needs \"id\", \"question\", \"gold\" (1..%d ids), \"answer\" "
                            "(string, array or null)\n", path, line_no, EVAL_MAX_GOLD);
            json_decref(o);
            rc = 65;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            eval_question *t = realloc(q, cap * sizeof *t);
            if (!t) {
                json_decref(o);
                rc = 70;
                break;
            }
            q = t;
        }
        eval_question *e = &q[n++];
        memset(e, 0, sizeof *e);
        e->id = dupstr(id);
        e->question = dupstr(qt);
        e->kind = dupstr(kind ? kind : "all");
        for (size_t j = 0; j < json_array_size(gold); j++) {
            const char *g = json_string_value(json_array_get(gold, j));
            e->gold[e->n_gold++] = dupstr(g ? g : "");
        }
        if (json_is_string(ans)) e->answer[e->n_answer++] = dupstr(json_string_value(ans));
        else if (json_is_array(ans))
            for (size_t j = 0; j < json_array_size(ans); j++) {
                const char *a = json_string_value(json_array_get(ans, j));
                if (a) e->answer[e->n_answer++] = dupstr(a);
            }
        json_decref(o);
        if (!e->id || !e->question || !e->kind) rc = 70;
    }
    free(line);
    fclose(f);
    if (rc) {
        eval_questions_free(q, n);
        return rc;
    }
    if (out) *out = q, *n_out = n;
    else eval_questions_free(q, n); /* none: a passages-only file */
    return 0;
}

/* letters and digits, lower case, runs of anything else as one space */
static char *normalise(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 3);
    if (!o) return NULL;
    size_t k = 0;
    o[k++] = ' ';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c >= 0x80) o[k++] = (char)tolower(c);
        else if (o[k - 1] != ' ') o[k++] = ' ';
    }
    if (o[k - 1] != ' ') o[k++] = ' ';
    o[k] = 0;
    return o;
}

bool eval_answer_matches(const char *answer, char *const *gold, int n_gold) {
    char *a = normalise(answer);
    bool ok = a != NULL && n_gold > 0;
    for (int i = 0; ok && i < n_gold; i++) {
        char *g = normalise(gold[i]);
        ok = g && strstr(a, g) != NULL; /* whole words: both padded with spaces */
        free(g);
    }
    free(a);
    return ok;
}

/* rank of document g under scores s (0 = first): better scores first, equal scores by lower index */
static uint64_t rank_of(const float *s, uint64_t n, uint64_t g) {
    uint64_t r = 0;
    const float sg = s[g];
    for (uint64_t d = 0; d < n; d++)
        if (d != g && (s[d] > sg || (s[d] == sg && d < g) || (!isfinite(sg) && isfinite(s[d])))) r++;
    return r;
}

typedef struct kind_acc {
    char *kind;
    int n, n_answered, n_correct;
    double *hit;   /* [(n_layers + 1) * N_KS]: sum of recall; the last row is fused */
    double t_route, t_answer;
} kind_acc;

typedef struct ranking_map { /* --ranking: question id -> doc ids */
    char **qid;
    char ***docs;
    size_t *n_docs, n;
} ranking_map;

static void ranking_free(ranking_map *r) {
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->n_docs[i]; j++) free(r->docs[i][j]);
        free(r->docs[i]), free(r->qid[i]);
    }
    free(r->qid), free(r->docs), free(r->n_docs);
}

static int load_ranking(const char *path, ranking_map *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "msa eval: cannot open %s\n", path);
        return 66;
    }
    char *line = NULL;
    size_t lcap = 0, cap = 0, ln = 0;
    int rc = 0;
    while (getline(&line, &lcap, f) > 0) {
        ln++;
        json_t *o = json_loads(line, 0, NULL);
        const char *id = o ? json_string_value(json_object_get(o, "id")) : NULL;
        json_t *rk = o ? json_object_get(o, "ranking") : NULL;
        if (!id || !json_is_array(rk)) {
            json_decref(o);
            if (line[strspn(line, " \t\r\n")] == 0) continue;
            fprintf(stderr, "msa eval: %s:%zu: needs {\"id\", \"ranking\": [doc ids]}\n", path, ln);
            rc = 65;
            break;
        }
        if (r->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **a = realloc(r->qid, cap * sizeof *a);
            if (a) r->qid = a;
            char ***b = realloc(r->docs, cap * sizeof *b);
            if (b) r->docs = b;
            size_t *c = realloc(r->n_docs, cap * sizeof *c);
            if (c) r->n_docs = c;
            if (!a || !b || !c) {
                json_decref(o);
                rc = 70;
                break;
            }
        }
        size_t m = json_array_size(rk);
        r->qid[r->n] = dupstr(id);
        r->docs[r->n] = calloc(m ? m : 1, sizeof(char *));
        r->n_docs[r->n] = 0;
        for (size_t j = 0; r->docs[r->n] && j < m; j++) {
            const char *d = json_string_value(json_array_get(rk, j));
            if (d) r->docs[r->n][r->n_docs[r->n]++] = dupstr(d);
        }
        r->n++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (rc) ranking_free(r);
    return rc;
}

/* --full-context: the documents to read (o->context_ids in that order, else every document of the bank in index
 * order), as read mode's prompt takes them (it prints its list last to first, the best next to the question, so
 * the list is reversed: the prompt shows them in reading order); refused (64) when any question's prompt plus
 * the answer budget is over the model's context. */
static int full_context_docs(msa_model *model, msa_bank *bank, const eval_question *qs, size_t n_q,
                             const eval_opts *o, uint32_t **out, size_t *n_out, size_t *max_tokens) {
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    size_t n = o->context_ids ? o->n_context : (size_t)info.next_index, k = 0;
    uint32_t *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) return 70;
    for (size_t i = 0; i < n; i++) {
        msa_bank_doc_info di;
        if (o->context_ids) {
            if (msa_bank_doc_by_id(bank, o->context_ids[i], &di)) {
                free(d);
                fprintf(stderr, "msa eval: --full-context: document %s is not in the bank\n", o->context_ids[i]);
                return 70;
            }
            d[k++] = di.index;
        } else if (!msa_bank_doc_by_index(bank, (uint32_t)i, &di)) {
            d[k++] = (uint32_t)i;
        }
    }
    for (size_t i = 0; i < k / 2; i++) { /* reading order -> read mode's best-first list */
        uint32_t t = d[i];
        d[i] = d[k - 1 - i], d[k - 1 - i] = t;
    }
    const int n_ctx = msa_model_hparams(model)->n_ctx_train;
    const long long max_new = o->max_new > 0 ? o->max_new : 48;
    size_t worst = 0;
    for (size_t qi = 0; qi < n_q; qi++) {
        size_t nt = 0;
        msa_status st = msa_read_prompt_tokens(model, bank, d, k, qs[qi].question, strlen(qs[qi].question), &nt, NULL);
        if (st) {
            free(d);
            return cli_fail(st);
        }
        if (nt > worst) worst = nt;
        if ((long long)nt + max_new > n_ctx) {
            free(d);
            return cli_usage_error("eval", "--full-context: the %zu documents with question %s make a %zu-token prompt; "
                                   "with %lld answer tokens (-n) that is over the model's context of %d tokens "
                                   "(use a smaller haystack, or read mode)", k, qs[qi].id, nt, max_new, n_ctx);
        }
    }
    *out = d, *n_out = k, *max_tokens = worst;
    return 0;
}

/* how many of docs[0..n) (read mode's order: the prompt prints them last to first) the prompt text holds, found
 * in the prompt's order by their "[index]. " headers */
static size_t docs_in_prompt(const char *text, const uint32_t *docs, size_t n) {
    size_t found = 0;
    const char *at = text;
    for (size_t r = 0; at && r < n; r++) {
        char head[32];
        snprintf(head, sizeof head, "[%u]. ", docs[n - 1 - r]);
        const char *h = strstr(at, head);
        if (h) found++, at = h + strlen(head);
    }
    return found;
}

int eval_run(msa_model *model, msa_bank *bank, const eval_question *qs, size_t n_q, const eval_opts *o) {
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    const uint64_t n_index = info.next_index;
    ranking_map rk = {0};
    int rc = 0;
    uint32_t *ctx = NULL; /* --full-context: every document, in prompt order */
    size_t n_ctx_docs = 0, ctx_tokens = 0;
    if (o->full_context && (rc = full_context_docs(model, bank, qs, n_q, o, &ctx, &n_ctx_docs, &ctx_tokens))) return rc;
    if (o->ranking && (rc = load_ranking(o->ranking, &rk))) {
        free(ctx);
        return rc;
    }
    FILE *so = NULL;
    if (o->scores_out) {
        so = fopen(o->scores_out, "w");
        if (!so) {
            fprintf(stderr, "msa eval: cannot write %s\n", o->scores_out);
            ranking_free(&rk);
            free(ctx);
            return 73;
        }
        json_t *ids = json_array();
        for (uint64_t d = 0; d < n_index; d++) {
            msa_bank_doc_info di;
            json_array_append_new(ids, msa_bank_doc_by_index(bank, (uint32_t)d, &di) ? json_null() : json_string(di.id));
        }
        json_t *h = json_pack("{s:o}", "docs", ids);
        char *t = json_dumps(h, JSON_COMPACT);
        fprintf(so, "%s\n", t ? t : "{}");
        free(t);
        json_decref(h);
    }
    msa_bm25 *lex = NULL; /* read mode's fusion with BM25 over the bank's text: --lexical W, else the bank's own */
    if (o->lexical < 0 && !o->no_lexical && !o->ranking && !o->full_context) {
        if (msa_bm25_load(bank, msa_bm25_bank_dir(bank), &lex) != MSA_OK) msa_clear_error(), lex = NULL; /* as ask */
    } else if (o->lexical >= 0 && !o->ranking) {
        msa_status st = msa_bm25_build(bank, &lex);
        if (!st) msa_bm25_set_weight(lex, (float)o->lexical);
        if (!st && o->save_lexical) st = msa_bm25_save(lex, msa_bm25_bank_dir(bank));
        if (st) {
            if (so) fclose(so);
            ranking_free(&rk);
            free(ctx);
            return cli_fail(st);
        }
    }
    kind_acc *acc = NULL;
    size_t n_kinds = 0;
    int n_layers = -1;
    int *layers = NULL;
    json_t *per_q = json_array();
    float *ext = malloc((n_index ? n_index : 1) * sizeof *ext);
    if (!ext) rc = 70;
    for (size_t qi = 0; qi < n_q && !rc; qi++) {
        const eval_question *q = &qs[qi];
        msa_read_scores rs = {0};
        const float *fused = NULL;
        double t0 = now_s(), t_route = 0;
        if (o->full_context) {
            fused = NULL; /* no ranking: every document is read */
            if (n_layers < 0) n_layers = 0;
        } else if (o->ranking) {
            size_t w = 0;
            while (w < rk.n && strcmp(rk.qid[w], q->id)) w++;
            for (uint64_t d = 0; d < n_index; d++) ext[d] = -INFINITY;
            if (w < rk.n)
                for (size_t j = 0; j < rk.n_docs[w]; j++) {
                    msa_bank_doc_info di;
                    if (!msa_bank_doc_by_id(bank, rk.docs[w][j], &di) && di.index < n_index &&
                        !isfinite(ext[di.index]))
                        ext[di.index] = (float)(rk.n_docs[w] - j);
                }
            fused = ext;
            if (n_layers < 0) n_layers = 0;
        } else {
            msa_status st = msa_read_route_rounds(model, bank, lex, q->question, strlen(q->question),
                                                  o->rounds > 0 ? (int)o->rounds : 1, &rs);
            if (st) {
                rc = cli_fail(st);
                break;
            }
            t_route = now_s() - t0;
            if (n_layers < 0) {
                n_layers = rs.n_layers;
                layers = malloc((size_t)(n_layers ? n_layers : 1) * sizeof *layers);
                if (!layers) {
                    msa_read_scores_free(&rs);
                    rc = 70;
                    break;
                }
                memcpy(layers, rs.layer, (size_t)n_layers * sizeof *layers);
            }
            if (rs.n_layers != n_layers || rs.n_index != n_index) {
                msa_read_scores_free(&rs);
                fprintf(stderr, "msa eval: routing shape changed between questions\n");
                rc = 70;
                break;
            }
            fused = rs.fused;
            if (so) {
                json_t *a = json_array();
                for (uint64_t d = 0; d < n_index; d++)
                    json_array_append_new(a, isfinite(fused[d]) ? json_real(fused[d]) : json_null());
                json_t *h = json_pack("{s:s,s:o}", "id", q->id, "fused", a);
                char *t = json_dumps(h, JSON_COMPACT | JSON_REAL_PRECISION(7));
                fprintf(so, "%s\n", t ? t : "{}");
                free(t);
                json_decref(h);
            }
        }
        /* kind accumulator */
        size_t k = 0;
        while (k < n_kinds && strcmp(acc[k].kind, q->kind)) k++;
        if (k == n_kinds) {
            kind_acc *t = realloc(acc, (n_kinds + 1) * sizeof *t);
            if (!t) {
                msa_read_scores_free(&rs);
                rc = 70;
                break;
            }
            acc = t;
            memset(&acc[k], 0, sizeof acc[k]);
            acc[k].kind = q->kind;
            acc[k].hit = calloc((size_t)(n_layers + 1) * N_KS, sizeof(double));
            n_kinds++;
            if (!acc[k].hit) {
                msa_read_scores_free(&rs);
                rc = 70;
                break;
            }
        }
        kind_acc *A = &acc[k];
        A->n++;
        A->t_route += t_route;
        uint64_t gidx[EVAL_MAX_GOLD];
        int ng = 0;
        for (int g = 0; g < q->n_gold; g++) {
            msa_bank_doc_info di;
            if (!msa_bank_doc_by_id(bank, q->gold[g], &di) && di.index < n_index) gidx[ng++] = di.index;
            else if (o->verbose) fprintf(stderr, "msa eval: %s: gold document %s is not in the bank\n", q->id, q->gold[g]);
        }
        uint64_t fused_rank[EVAL_MAX_GOLD];
        for (int g = 0; g < q->n_gold; g++) fused_rank[g] = UINT64_MAX;
        for (int row = 0; fused && row <= n_layers; row++) {
            const float *s = row < n_layers ? rs.per_layer + (size_t)row * n_index : fused;
            for (int g = 0; g < q->n_gold; g++) { /* a gold document missing from the bank counts as a miss */
                uint64_t r = g < ng ? rank_of(s, n_index, gidx[g]) : UINT64_MAX;
                if (row == n_layers) fused_rank[g] = r;
                for (int ki = 0; ki < N_KS; ki++)
                    if (r < (uint64_t)KS[ki]) A->hit[(size_t)row * N_KS + ki] += 1.0 / q->n_gold;
            }
        }
        json_t *pq = json_pack("{s:s,s:s}", "id", q->id, "kind", q->kind);
        json_t *ranks = json_array();
        for (int g = 0; g < q->n_gold; g++)
            json_array_append_new(ranks, fused_rank[g] == UINT64_MAX ? json_null() : json_integer((json_int_t)fused_rank[g] + 1));
        if (fused) json_object_set_new(pq, "gold_rank", ranks);
        else json_decref(ranks);
        json_object_set_new(pq, "seconds_route", json_real(t_route));
        if (o->answer && q->n_answer > 0) {
            uint32_t top[64];
            float ts[64];
            int want = o->top_k > 0 ? (o->top_k > 64 ? 64 : o->top_k) : 3;
            const uint32_t *read = top;
            size_t nt = fused ? msa_route_topk(fused, n_index, (size_t)want, top, ts) : 0;
            if (o->full_context) read = ctx, nt = n_ctx_docs;
            msa_ask_result ar;
            memset(&ar, 0, sizeof ar);
            msa_ask_params ap = msa_ask_default_params();
            ap.max_new_tokens = o->max_new > 0 ? o->max_new : 48;
            double t1 = now_s();
            msa_status st = msa_read_answer_docs(model, bank, read, nt, q->question, strlen(q->question), &ap, &ar);
            A->t_answer += now_s() - t1;
            if (st) {
                msa_ask_result_free(&ar);
                msa_read_scores_free(&rs);
                json_decref(pq);
                rc = cli_fail(st);
                break;
            }
            bool ok = eval_answer_matches(ar.answer ? ar.answer : "", q->answer, q->n_answer);
            A->n_answered++;
            A->n_correct += ok;
            json_object_set_new(pq, "answer", json_string(ar.answer ? ar.answer : ""));
            json_object_set_new(pq, "correct", json_boolean(ok));
            json_object_set_new(pq, "prompt_tokens", json_integer((json_int_t)ar.n_prompt_tokens));
            json_object_set_new(pq, "docs_in_prompt",
                                json_integer((json_int_t)docs_in_prompt(ar.transcript ? ar.transcript : "", read, nt)));
            msa_ask_result_free(&ar);
        }
        json_array_append_new(per_q, pq);
        msa_read_scores_free(&rs);
        if (o->progress) fprintf(stderr, "\r%zu/%zu", qi + 1, n_q);
    }
    if (o->progress) fputc('\n', stderr);
    if (so) fclose(so);
    const double lex_w = lex ? msa_bm25_weight(lex) : -1; /* for the report: < 0, routing alone */
    msa_bm25_free(lex);
    free(ext), free(ctx);
    ranking_free(&rk);
    if (!rc) { /* report */
        json_t *res = json_object(), *kinds = json_object();
        char sys[64]; /* the default name says whether read mode fused */
        if (lex_w >= 0) snprintf(sys, sizeof sys, "read+bm25 w %.2f", lex_w);
        const char *sysname = o->system ? o->system : o->full_context ? "full-context" : o->ranking ? "external" : lex_w >= 0 ? sys : "read";
        json_object_set_new(res, "system", json_string(sysname));
        if (lex_w >= 0) json_object_set_new(res, "lexical_weight", json_real(lex_w));
        if (o->full_context) {
            json_object_set_new(res, "full_context", json_true());
            json_object_set_new(res, "context_docs", json_integer((json_int_t)n_ctx_docs));
            json_object_set_new(res, "context_tokens", json_integer((json_int_t)ctx_tokens));
        }
        json_object_set_new(res, "n_docs", json_integer((json_int_t)msa_bank_n_docs(bank)));
        json_object_set_new(res, "n_tokens", json_integer((json_int_t)info.n_tokens));
        if (!o->json) {
            printf("%-11s %5s %6s %6s %6s %6s %8s %8s   (%s, %llu documents, %llu tokens)\n", "kind", "n", "R@1",
                   "R@5", "R@10", "EM", "route_s", "answer_s", sysname,
                   (unsigned long long)msa_bank_n_docs(bank), (unsigned long long)info.n_tokens);
        }
        for (size_t k = 0; k < n_kinds; k++) {
            kind_acc *A = &acc[k];
            const double *f = A->hit + (size_t)n_layers * N_KS;
            json_t *kj = json_object();
            json_object_set_new(kj, "n", json_integer(A->n));
            for (int ki = 0; !o->full_context && ki < N_KS; ki++) {
                char key[16];
                snprintf(key, sizeof key, "recall@%d", KS[ki]);
                json_object_set_new(kj, key, json_real(f[ki] / A->n));
            }
            if (A->n_answered) json_object_set_new(kj, "em", json_real((double)A->n_correct / A->n_answered));
            json_object_set_new(kj, "seconds_route", json_real(A->t_route / A->n));
            if (A->n_answered) json_object_set_new(kj, "seconds_answer", json_real(A->t_answer / A->n_answered));
            json_t *pl = json_array();
            for (int l = 0; l < n_layers; l++) {
                const double *h = A->hit + (size_t)l * N_KS;
                json_array_append_new(pl, json_pack("{s:i,s:f,s:f,s:f}", "layer", layers[l], "recall@1", h[0] / A->n,
                                                    "recall@5", h[1] / A->n, "recall@10", h[2] / A->n));
            }
            json_object_set_new(kj, "per_layer", pl);
            json_object_set_new(kinds, A->kind, kj);
            if (!o->json) {
                char em[16] = "-", ta[16] = "-";
                if (A->n_answered) {
                    snprintf(em, sizeof em, "%.3f", (double)A->n_correct / A->n_answered);
                    snprintf(ta, sizeof ta, "%.2f", A->t_answer / A->n_answered);
                }
                if (o->full_context)
                    printf("%-11s %5d %6s %6s %6s %6s %8s %8s\n", A->kind, A->n, "-", "-", "-", em, "-", ta);
                else
                    printf("%-11s %5d %6.3f %6.3f %6.3f %6s %8.3f %8s\n", A->kind, A->n, f[0] / A->n, f[1] / A->n,
                           f[2] / A->n, em, A->t_route / A->n, ta);
            }
        }
        if (!o->json && n_layers > 0 && o->verbose) {
            printf("per layer, all kinds: layer R@1 R@5\n");
            for (int l = 0; l < n_layers; l++) {
                double h1 = 0, h5 = 0;
                int n = 0;
                for (size_t k = 0; k < n_kinds; k++)
                    h1 += acc[k].hit[(size_t)l * N_KS], h5 += acc[k].hit[(size_t)l * N_KS + 1], n += acc[k].n;
                printf("  %2d %6.3f %6.3f\n", layers[l], h1 / n, h5 / n);
            }
        }
        json_object_set_new(res, "kinds", kinds);
        if (o->json) {
            json_object_set_new(res, "questions", per_q);
            per_q = NULL;
            char *t = json_dumps(res, JSON_INDENT(1) | JSON_REAL_PRECISION(5));
            printf("%s\n", t ? t : "{}");
            free(t);
        }
        json_decref(res);
    }
    json_decref(per_q);
    for (size_t k = 0; k < n_kinds; k++) free(acc[k].hit);
    free(acc), free(layers);
    return rc;
}

static void eval_usage(FILE *f) {
    fprintf(f, "usage: msa eval qa -m MODEL --bank BANK QUESTIONS.jsonl [--passages PASSAGES.jsonl] [options]\n"
               "       msa eval niah -m MODEL --bank DIR --tokens N [--seed S] [--per-task N] [--doc-tokens T]\n"
               "                     [--haystack FILE] [--write-set FILE] [options]\n"
               "  qa: {\"id\", \"text\"} lines (in QUESTIONS.jsonl or --passages) are passages: added to BANK first\n"
               "                  (created when missing; unchanged passages are skipped), then the questions run\n"
               "  --router FILE   read mode with trained router weights (a full router: the bank must be built with\n"
               "                  them; a query-side one: any identity bank); none: the identity router; default: the\n"
               "                  shipped query-side router trained for this model (data/routers/), if any\n"
               "  --answer        also answer (read mode, top --docs documents, default 3) and score exact match\n"
               "  --docs K        documents read per answer (default 3)\n"
               "  -n N            answer tokens at most (default 48)\n"
               "  --limit N       the first N questions only\n"
               "  --rounds R      routing rounds (default 1); round r re-routes the question + the r-th best text\n"
               "  --ranking FILE  rank by an external ranking (jsonl {id, ranking: [doc ids]}) instead of routing\n"
               "  --full-context  answer from every document at once (niah: haystack order; qa: the bank's order), no\n"
               "                  routing; refused (64) when the prompt + -n answer tokens exceed the model's context\n"
               "  --scores-out F  write every question's fused scores (jsonl)\n"
               "  --write-set F   niah: write the documents and questions as one qa-format JSONL (for eval qa and\n"
               "                  scripts/eval_baselines.py), then stop: no bank, no --bank needed\n"
               "  --system NAME   the system's name in the report\n"
               "  --lexical W     fuse read mode's routing with BM25 over the bank's text: W z(routing) + (1-W) z(bm25);\n"
               "                  without it, the bank's own current index is fused as read mode does (msa bank add\n"
               "                  keeps one in read banks), else routing alone\n"
               "  --save-lexical  also store that index with W in the bank (LEXICAL_BM25): read mode then fuses with it\n"
               "  --no-lexical    routing alone, even where the bank holds an index\n"
               "  --device DEV    cpu, cuda, cuda:N or auto (default: a GPU when this build has CUDA and one is present)\n"
               "  -t N            threads; --json one JSON object; -v per-layer table, missing golds\n");
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        eval_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 64 : 0;
    }
    const char *what = argv[1];
    if (strcmp(what, "qa") && strcmp(what, "niah")) return cli_usage_error("eval", "unknown kind '%s' (qa or niah)", what);
    eval_opts o = {.top_k = 3, .seed = 1, .per_task = 5, .doc_tokens = 128, .lexical = -1};
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                      \
    do {                                                                             \
        if (!v) return cli_usage_error("eval", "%s needs a value", a);               \
        i++;                                                                         \
    } while (0)
#define NUMV(dst, lo, hi)                                                            \
    do {                                                                             \
        NEEDV();                                                                     \
        char *e_;                                                                    \
        long long x_ = strtoll(v, &e_, 10);                                          \
        if (*e_ || e_ == v || x_ < (lo) || x_ > (hi))                                \
            return cli_usage_error("eval", "%s must be %lld..%lld", a, (long long)(lo), (long long)(hi)); \
        dst = x_;                                                                    \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); o.model = v; }
        else if (!strcmp(a, "--bank") || !strcmp(a, "-b")) { NEEDV(); o.bank = v; }
        else if (!strcmp(a, "--router")) { NEEDV(); o.router = v; }
        else if (!strcmp(a, "--ranking")) { NEEDV(); o.ranking = v; }
        else if (!strcmp(a, "--scores-out")) { NEEDV(); o.scores_out = v; }
        else if (!strcmp(a, "--system")) { NEEDV(); o.system = v; }
        else if (!strcmp(a, "--haystack")) { NEEDV(); o.haystack = v; }
        else if (!strcmp(a, "--passages")) { NEEDV(); o.passages = v; }
        else if (!strcmp(a, "--write-set")) { NEEDV(); o.write_set = v; }
        else if (!strcmp(a, "--device")) { NEEDV(); o.device = v; }
        else if (!strcmp(a, "--answer")) o.answer = true;
        else if (!strcmp(a, "--full-context")) o.full_context = true;
        else if (!strcmp(a, "--save-lexical")) o.save_lexical = true;
        else if (!strcmp(a, "--no-lexical")) o.no_lexical = true;
        else if (!strcmp(a, "--lexical")) {
            NEEDV();
            char *e_;
            o.lexical = strtod(v, &e_);
            if (*e_ || e_ == v || !(o.lexical >= 0 && o.lexical <= 1)) return cli_usage_error("eval", "--lexical must be in [0, 1]");
        }
        else if (!strcmp(a, "--json")) o.json = true;
        else if (!strcmp(a, "-v")) o.verbose = true;
        else if (!strcmp(a, "--docs") || !strcmp(a, "--top-k") || !strcmp(a, "-k")) NUMV(o.top_k, 1, 64); /* documents (docs/cli.md: --docs; --top-k is the old spelling) */
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) NUMV(o.max_new, 1, 4096);
        else if (!strcmp(a, "--limit")) NUMV(o.limit, 1, 100000000);
        else if (!strcmp(a, "--rounds")) NUMV(o.rounds, 1, 8);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) NUMV(o.threads, 1, 1024);
        else if (!strcmp(a, "--tokens")) NUMV(o.tokens, 1024, 100000000);
        else if (!strcmp(a, "--seed")) NUMV(o.seed, 0, 1LL << 62);
        else if (!strcmp(a, "--per-task")) NUMV(o.per_task, 1, 1000);
        else if (!strcmp(a, "--doc-tokens")) NUMV(o.doc_tokens, 32, 4096);
        else if (a[0] == '-' && a[1]) return cli_usage_error("eval", "unknown option '%s'", a);
        else if (!file) file = a;
        else return cli_usage_error("eval", "one questions file only");
#undef NUMV
#undef NEEDV
    }
    if (o.write_set && strcmp(what, "niah")) return cli_usage_error("eval", "--write-set is for niah");
    if (!o.model || (!o.bank && !o.write_set)) return cli_usage_error("eval", "-m MODEL and --bank BANK are required");
    if (!strcmp(what, "qa") && !file) return cli_usage_error("eval", "qa needs a QUESTIONS.jsonl file");
    if (!strcmp(what, "niah") && !o.tokens) return cli_usage_error("eval", "niah needs --tokens N");
    if (o.full_context) {
        if (o.ranking || o.scores_out || o.lexical >= 0 || o.rounds > 1 || o.save_lexical || o.no_lexical)
            return cli_usage_error("eval", "--full-context reads every document: no --ranking, --scores-out, --lexical, "
                                           "--save-lexical, --no-lexical or --rounds");
        o.answer = true; /* the point of it: exact match with everything in the prompt */
    }
    o.progress = isatty(2);
    if (!strcmp(what, "niah")) return eval_niah(&o);
    eval_question *qs = NULL;
    size_t n_q = 0;
    eval_passages pass = {0};
    int rc = load_lines(file, true, &pass, &qs, &n_q);
    if (!rc && o.passages) rc = load_lines(o.passages, false, &pass, NULL, NULL);
    if (!rc && n_q == 0) rc = cli_usage_error("eval", "%s holds no questions", file);
    if (rc) {
        eval_questions_free(qs, n_q);
        passages_free(&pass);
        return rc;
    }
    const size_t n_all = n_q;
    if (o.limit && (size_t)o.limit < n_q) n_q = (size_t)o.limit;
    msa_model *model = NULL;
    msa_bank *bank = NULL;
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = o.threads;
    mp.device = o.device;
    msa_status st = msa_model_load(o.model, &mp, &model);
    const char *router_used = NULL;
    if (!st) st = model_glue_read_router(model, o.router, &router_used);
    if (!st && o.verbose && !o.ranking) fprintf(stderr, "msa eval: router %s\n", router_used ? router_used : "identity");
    if (!st && pass.n) { /* the passages go into the bank first (created when missing): a passages + questions file */
        msa_ingest_report rep = {0};
        rc = eval_bank_fill(&o, model, pass.d, pass.n, &bank, &rep);
        if (!rc && !o.json)
            printf("passages: %zu in the bank (%zu added, %zu replaced, %zu unchanged; %llu tokens encoded in %.1f s)\n",
                   pass.n, rep.n_added, rep.n_replaced, rep.n_unchanged, (unsigned long long)rep.n_tokens_encoded,
                   rep.seconds);
    } else {
        msa_bank_open_params bp = msa_bank_default_open_params();
        if (!st) st = msa_bank_open(o.bank, &bp, &bank);
        if (!st && !o.ranking && !o.full_context) { /* routing needs the bank's keys to be this model's */
            uint8_t fp[32];
            msa_model_fingerprint(model, fp);
            st = msa_bank_check_fingerprint(bank, fp);
        }
        if (st) rc = cli_fail(st);
    }
    passages_free(&pass);
    if (!rc) rc = eval_run(model, bank, qs, n_q, &o);
    if (bank) msa_bank_close(bank);
    if (model) msa_model_free(model);
    eval_questions_free(qs, n_all);
    return rc;
}
