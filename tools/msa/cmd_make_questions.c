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
#include <xxhash.h>

#include "commands.h"

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

static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(MAX_LINE + 1);
    size_t n = b ? fread(b, 1, MAX_LINE, f) : 0;
    bool more = b && fgetc(f) != EOF;
    fclose(f);
    if (!b || more) {
        free(b);
        return NULL;
    }
    b[n] = '\0';
    return b;
}

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

/* Questions already written, by 64-bit hash (open addressing; 0 marks a free slot): a repeated question
 * ("What is the purpose of the navy?") names no one passage, so only its first pair is kept. */
typedef struct seen_set {
    uint64_t *slot;
    size_t cap, n;
} seen_set;

/* Whether q was seen before; records it. -1 when out of memory. */
static int seen_before(seen_set *s, const char *q) {
    uint64_t h = XXH3_64bits(q, strlen(q)) | 1;
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i])
                for (size_t j = s->slot[i] & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!t[j]) {
                        t[j] = s->slot[i];
                        break;
                    }
        free(s->slot);
        s->slot = t, s->cap = cap;
    }
    for (size_t j = h & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (s->slot[j] == h) return 1;
        if (!s->slot[j]) {
            s->slot[j] = h, s->n++;
            return 0;
        }
    }
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

int cmd_make_questions(const cli_args *a) {
    const char *model_path = cli_get(a, "--model"), *in_path = cli_get(a, "--passages"),
               *out_path = cli_get(a, "--output"), *ex_path = cli_get(a, "--examples");
    long limit = cli_int(a, "--limit", 0), skip = cli_int(a, "--skip", 0), max_new = cli_int(a, "--n-predict", 40);
    if (!model_path) return cli_usage_error("make-questions", "-m MODEL is required");
    if (!in_path || !out_path) return cli_usage_error("make-questions", "--passages FILE and -o OUT are required");

    char *examples = NULL;
    if (ex_path && !(examples = read_small_file(ex_path))) {
        fprintf(stderr, "msa make-questions: %s: unreadable or over 1 MiB\n", ex_path);
        return 66;
    }
    FILE *in = fopen(in_path, "rb");
    if (!in) {
        fprintf(stderr, "msa make-questions: %s: %s\n", in_path, strerror(errno));
        free(examples);
        return errno == ENOENT ? 66 : 74;
    }
    msa_model_params mp = cli_model_params(a);
    msa_model *model = NULL;
    msa_status st = msa_model_load(model_path, &mp, &model);
    if (st != MSA_OK) {
        fclose(in);
        free(examples);
        return cli_fail(st);
    }
    msa_model_info info;
    msa_model_get_info(model, &info);
    const msa_tokenizer *tok = msa_model_tokenizer(model);
    msa_session_params spar = msa_session_default_params();
    spar.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096; /* a passage plus the examples */
    msa_session *sess = NULL;
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    char *gen = malloc(MAX_QUERY * 4);
    FILE *out = strcmp(out_path, "-") ? fopen(out_path, "wb") : stdout;
    int rc = 0;
    if (!out) {
        fprintf(stderr, "msa make-questions: %s: %s\n", out_path, strerror(errno));
        rc = 73;
        goto done;
    }
    if (!logits || !gen) {
        st = MSA_ERR_NOMEM;
        goto fail;
    }
    if ((st = msa_session_new(model, &spar, &sess)) != MSA_OK) goto fail;

    char *line = NULL;
    size_t lcap = 0;
    ssize_t ll;
    long lineno = 0, n_read = 0, n_kept = 0, n_dropped = 0, n_repeated = 0;
    seen_set seen = {0};
    cli_progress prog;
    cli_progress_start(&prog, "make-questions");
    while ((ll = getline(&line, &lcap, in)) > 0) {
        lineno++;
        if (ll > MAX_LINE) {
            fprintf(stderr, "msa make-questions: %s:%ld: line over 1 MiB\n", in_path, lineno);
            rc = 65;
            break;
        }
        if (lineno <= skip) continue;
        if (limit && n_read >= limit) break;
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        const char *text = o ? json_string_value(json_object_get(o, "text")) : NULL;
        if (!text) {
            fprintf(stderr, "msa make-questions: %s:%ld: not a JSON object with a \"text\" string\n", in_path, lineno);
            json_decref(o);
            rc = 65;
            break;
        }
        n_read++;
        /* the prompt: examples, then this passage on one line (the examples' form) */
        size_t tl = strlen(text), el = strlen(examples ? examples : default_examples);
        char *prompt = malloc(el + tl + 32);
        if (!prompt) {
            json_decref(o);
            st = MSA_ERR_NOMEM;
            goto fail_loop;
        }
        memcpy(prompt, examples ? examples : default_examples, el);
        char *p = prompt + el;
        p += sprintf(p, "Passage: ");
        for (size_t i = 0; i < tl; i++) *p++ = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
        strcpy(p, "\nQuestion:");
        int32_t *ids = NULL;
        size_t n_ids = 0;
        st = msa_tokenize(tok, prompt, strlen(prompt), false, &ids, &n_ids);
        free(prompt);
        bool fits = st == MSA_OK && (long)n_ids + max_new + 1 <= spar.n_ctx;
        if (st == MSA_OK && fits && msa_model_add_bos(model) && info.bos_id >= 0) {
            int32_t *b = realloc(ids, (n_ids + 1) * sizeof *ids);
            if (!b) st = MSA_ERR_NOMEM;
            else memmove(b + 1, b, n_ids * sizeof *b), b[0] = info.bos_id, ids = b, n_ids++;
        }
        if (st == MSA_OK && fits)
            st = generate_line(sess, &info, tok, ids, n_ids, (int)max_new, logits, gen, MAX_QUERY * 4);
        free(ids);
        if (st != MSA_OK) {
            json_decref(o);
            goto fail_loop;
        }
        char *q = fits ? clean_question(gen) : NULL;
        int dup = q ? seen_before(&seen, q) : 0;
        if (dup < 0) {
            free(q);
            json_decref(o);
            st = MSA_ERR_NOMEM;
            goto fail_loop;
        }
        if (dup) free(q), q = NULL, n_repeated++;
        if (q) {
            json_t *row = json_object();
            json_object_set_new(row, "query", json_string(q));
            json_object_set_new(row, "positive", json_string(text));
            json_object_set_new(row, "kind", json_string("generated"));
            json_t *id = json_object_get(o, "id");
            if (json_is_string(id)) json_object_set(row, "source", id);
            char *s = json_dumps(row, JSON_COMPACT | JSON_ENSURE_ASCII);
            if (!s || fprintf(out, "%s\n", s) < 0) rc = 74;
            free(s);
            json_decref(row);
            n_kept++;
        } else if (!dup) {
            n_dropped++;
        }
        free(q);
        json_decref(o);
        cli_progress_update(&prog, (double)n_read, limit ? (double)limit : 0, "passages");
        if (rc) break;
    }
    cli_progress_end(&prog);
    free(line);
    if (!rc && ferror(in)) rc = 74;
    fprintf(stderr, "msa make-questions: %ld passages, %ld questions kept, %ld dropped (no question, too long or "
            "generic), %ld repeats dropped\n", n_read, n_kept, n_dropped, n_repeated);
    free(seen.slot);
    goto done;
fail_loop:
    cli_progress_end(&prog);
    free(line);
    free(seen.slot);
fail:
    rc = cli_fail(st);
done:
    if (out && out != stdout && fclose(out) && !rc) {
        fprintf(stderr, "msa make-questions: %s: write failed\n", out_path);
        rc = 74;
    } else if (out == stdout && fflush(stdout) && !rc) {
        rc = 74;
    }
    msa_session_free(sess);
    free(gen);
    free(logits);
    msa_model_free(model);
    fclose(in);
    free(examples);
    return rc;
}
