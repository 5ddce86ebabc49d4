/* cmd_make_questions.c — `msa make-questions`: router training pairs whose queries a language model wrote.
 * For each passage of a JSONL file the model continues a few-shot prompt ("Passage: ... / Question: ...")
 * greedily; the first line it writes becomes the query, the passage its positive (train-router --data). This
 * is the third kind of training data issue 11 asks for, beside inverse-cloze pairs and planted facts: questions
 * in a model's own words rather than a sentence of the passage, so the router learns paraphrase, not overlap.
 * Instruct models as small as the default one answer a bare "write a question" request with chatter, so the
 * prompt is plain completion with worked examples; the examples are written for this tool about texts that are
 * in neither the benchmark nor the training corpora, and --examples replaces them. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "tokenizer/strmap.h"
#include "util/mmap.h"

#define MAX_LINE (1 << 20)  /* a passage line longer than this is refused, not read */
#define MAX_QUERY 512       /* bytes of generated question kept at most */

static const char default_examples[] =
    "Passage: The harvest of wheat in the western valleys was larger than in any year before, and the railways "
    "carried it to the ports at lower rates than ever.\n"
    "Question: How large was the wheat harvest in the western valleys?\n\n"
    "Passage: The lighthouse on the northern cape was rebuilt in stone after the storm of the previous winter had "
    "destroyed the wooden tower.\n"
    "Question: Why was the lighthouse on the northern cape rebuilt?\n\n"
    "Passage: In the dry years the farmers of the upper valley dug a canal from the river, and the water it "
    "brought doubled the land they could plough.\n"
    "Question: What did the farmers of the upper valley do in the dry years?\n\n";

/* Whether a question speaks of the prompt rather than its content ("What is the main idea of the passage?"):
 * such a question fits every passage, so as a training pair it teaches nothing and mislabels the others. */
static bool is_generic(const char *q) {
    static const char *const words[] = {"passage", "the text", "this text", "the author", "the story"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasestr(q, words[i])) return true;
    return false;
}

/* The question a generation holds: its first line, trimmed, cut after the first '?'. NULL when it has no '?',
 * fewer than 3 or more than 40 words (the model rambled or answered instead of asking), or is generic. */
static char *clean_question(const char *gen) {
    while (*gen == ' ' || *gen == '\t') gen++;
    const char *end = strchr(gen, '\n');
    size_t n = end ? (size_t)(end - gen) : strlen(gen);
    const char *q = memchr(gen, '?', n);
    if (!q) return NULL;
    n = (size_t)(q - gen) + 1;
    int words = 0;
    for (size_t i = 0; i < n; i++)
        if (gen[i] != ' ' && (i == 0 || gen[i - 1] == ' ')) words++;
    if (words < 3 || words > 40) return NULL;
    char *s = malloc(n + 1);
    if (s) memcpy(s, gen, n), s[n] = '\0';
    if (s && is_generic(s)) free(s), s = NULL;
    return s;
}

/* Greedy continuation of ids (prompt) until a newline or '?', an end token or max_new tokens; the text in out. */
static msa_status generate_line(msa_session *sess, const msa_model_info *info, const msa_tokenizer *tok,
                                const int32_t *ids, size_t n_ids, int max_new, float *logits, char *out, size_t cap) {
    msa_session_reset(sess);
    msa_status st = msa_session_eval(sess, ids, n_ids, false, logits);
    size_t len = 0;
    out[0] = '\0';
    msa_sampler_params sp = msa_sampler_default_params(); /* greedy */
    uint64_t rng = msa_sampler_seed(0);
    for (int t = 0; st == MSA_OK && t < max_new; t++) {
        int32_t next = msa_sample(logits, info->n_vocab, &sp, &rng);
        if (cli_is_eos(info, next)) break;
        char piece[256];
        int pl = msa_token_to_piece(tok, next, piece, sizeof piece);
        if (pl < 0 || pl >= (int)sizeof piece) break;
        if (len + (size_t)pl >= cap) break;
        memcpy(out + len, piece, (size_t)pl);
        len += (size_t)pl;
        out[len] = '\0';
        if (memchr(piece, '\n', (size_t)pl) || memchr(piece, '?', (size_t)pl)) break; /* the question ended */
        st = msa_session_eval(sess, &next, 1, false, logits);
    }
    return st;
}

/* What every passage's generation needs. */
typedef struct mq_ctx {
    msa_model *model;
    msa_model_info info;
    const msa_tokenizer *tok;
    msa_session *sess;
    int n_ctx, max_new;
    const char *examples; /* the few-shot prefix */
    float *logits;        /* [n_vocab] */
    char gen[MAX_QUERY * 4];
} mq_ctx;

/* The question the model writes for text (malloc'd, caller frees), or *q = NULL when it wrote none usable or the
 * prompt would not fit the session. */
static msa_status question_for(mq_ctx *c, const char *text, char **q) {
    *q = NULL;
    /* the prompt: examples, then this passage on one line (the examples' form) */
    size_t tl = strlen(text), el = strlen(c->examples);
    char *prompt = malloc(el + tl + 32);
    if (!prompt) return MSA_ERR_NOMEM;
    memcpy(prompt, c->examples, el);
    char *p = prompt + el;
    p += sprintf(p, "Passage: ");
    for (size_t i = 0; i < tl; i++) *p++ = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
    strcpy(p, "\nQuestion:");
    bool bos = msa_model_add_bos(c->model) && c->info.bos_id >= 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    msa_status st = msa_tokenize(c->tok, prompt, strlen(prompt), false, &ids, &n_ids);
    free(prompt);
    if (st == MSA_OK && (long)n_ids + bos + c->max_new <= c->n_ctx) {
        int32_t *b = bos ? realloc(ids, (n_ids + 1) * sizeof *ids) : ids;
        if (!b) {
            st = MSA_ERR_NOMEM;
        } else {
            if (bos) memmove(b + 1, b, n_ids * sizeof *b), b[0] = c->info.bos_id, n_ids++;
            ids = b;
            st = generate_line(c->sess, &c->info, c->tok, ids, n_ids, c->max_new, c->logits, c->gen, sizeof c->gen);
            if (st == MSA_OK) *q = clean_question(c->gen);
        }
    }
    free(ids);
    return st;
}

/* One output row: {"query", "positive", "kind": "generated", "source": the passage's id when it has one}. */
static int write_pair(FILE *out, const char *q, const char *text, json_t *id) {
    json_t *row = json_object();
    json_object_set_new(row, "query", json_string(q));
    json_object_set_new(row, "positive", json_string(text));
    json_object_set_new(row, "kind", json_string("generated"));
    if (json_is_string(id)) json_object_set(row, "source", id);
    return cli_put_json_line(out, row) ? 74 : 0;
}

int cmd_make_questions(const cli_args *a) {
    const char *model_path = cli_get(a, "--model"), *in_path = cli_get(a, "--passages"),
               *out_path = cli_get(a, "--output"), *ex_path = cli_get(a, "--examples");
    long limit = cli_int(a, "--limit", 0), skip = cli_int(a, "--skip", 0);
    if (!model_path) return cli_usage_error("make-questions", "-m MODEL is required");
    if (!in_path || !out_path) return cli_usage_error("make-questions", "--passages FILE and -o OUT are required");

    char *examples = NULL;
    size_t ex_len = 0;
    if (ex_path && msa_read_file(ex_path, MAX_LINE, &examples, &ex_len) != MSA_OK) {
        fprintf(stderr, "msa make-questions: %s: unreadable or over 1 MiB\n", ex_path);
        return 66;
    }
    FILE *in = fopen(in_path, "rb");
    if (!in) {
        fprintf(stderr, "msa make-questions: %s: %s\n", in_path, strerror(errno));
        free(examples);
        return errno == ENOENT ? 66 : 74;
    }
    mq_ctx *c = calloc(1, sizeof *c);
    msa_model_params mp = cli_model_params(a);
    msa_status st = c ? msa_model_load(model_path, &mp, &c->model) : MSA_ERR_NOMEM;
    FILE *out = NULL;
    int rc = 0;
    if (st == MSA_OK) {
        msa_model_get_info(c->model, &c->info);
        c->tok = msa_model_tokenizer(c->model);
        c->examples = examples ? examples : default_examples;
        c->max_new = (int)cli_int(a, "--n-predict", 40);
        msa_session_params spar = msa_session_default_params();
        spar.n_ctx = c->n_ctx = c->info.n_ctx_train < 4096 ? c->info.n_ctx_train : 4096; /* passage + examples */
        c->logits = malloc((size_t)c->info.n_vocab * sizeof(float));
        st = c->logits ? msa_session_new(c->model, &spar, &c->sess) : MSA_ERR_NOMEM;
    }
    if (st == MSA_OK && !(out = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout)) {
        fprintf(stderr, "msa make-questions: %s: %s\n", out_path, strerror(errno));
        rc = 73;
    }

    char *line = NULL;
    size_t lcap = 0;
    ssize_t ll;
    long lineno = 0, n_read = 0, n_kept = 0, n_dropped = 0, n_repeated = 0;
    tok_strmap seen = {0}; /* questions written so far: a repeat names no one passage, so only its first is kept */
    cli_progress prog;
    cli_progress_start(&prog, "make-questions");
    while (st == MSA_OK && !rc && !(limit && n_read >= limit) && (ll = getline(&line, &lcap, in)) > 0) {
        if (++lineno <= skip) continue;
        json_t *o = ll <= MAX_LINE ? json_loads(line, 0, NULL) : NULL;
        const char *text = json_string_value(json_object_get(o, "text"));
        if (!text) {
            fprintf(stderr, "msa make-questions: %s:%ld: %s\n", in_path, lineno,
                    ll > MAX_LINE ? "line over 1 MiB" : "not a JSON object with a \"text\" string");
            rc = 65;
        } else {
            n_read++;
            char *q = NULL;
            int32_t unused;
            st = question_for(c, text, &q);
            if (!q) {
                n_dropped += st == MSA_OK;
            } else if (tok_strmap_get(&seen, q, strlen(q), &unused)) {
                n_repeated++;
            } else if ((st = tok_strmap_put(&seen, q, strlen(q), 0)) == MSA_OK) {
                rc = write_pair(out, q, text, json_object_get(o, "id"));
                n_kept++;
            }
            free(q);
        }
        json_decref(o);
        cli_progress_update(&prog, (double)n_read, limit ? (double)limit : 0, "passages");
    }
    cli_progress_end(&prog);
    free(line);
    tok_strmap_free(&seen);
    if (!rc && st == MSA_OK && ferror(in)) rc = 74;
    if (out && !rc && st == MSA_OK)
        fprintf(stderr, "msa make-questions: %ld passages, %ld questions kept, %ld dropped (no question, too long or "
                "generic), %ld repeats dropped\n", n_read, n_kept, n_dropped, n_repeated);
    if (st != MSA_OK) rc = cli_fail(st);
    if (out && out != stdout && fclose(out) && !rc) {
        fprintf(stderr, "msa make-questions: %s: write failed\n", out_path);
        rc = 74;
    } else if (out == stdout && fflush(stdout) && !rc) {
        rc = 74;
    }
    if (c) {
        msa_session_free(c->sess);
        free(c->logits);
        msa_model_free(c->model);
        free(c);
    }
    fclose(in);
    free(examples);
    return rc;
}
