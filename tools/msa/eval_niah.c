/* eval_niah.c — `msa eval niah`: a RULER-style needle-in-a-haystack set over a bank, made deterministically
 * from a seed and evaluated by eval_run (cmd_eval.c).
 *
 * Haystack: public-domain text (default data/corpora/moby-dick/moby-dick.txt), from a seeded sentence on,
 * wrapping around, cut at sentence ends into documents of about --doc-tokens tokens until --tokens tokens.
 * Needles (--per-task samples of each task; the same seed gives the same needles at every size, each at the
 * same relative depth, so sizes compare like with like):
 *   single_1  "One of the special magic numbers for {word-word} is: {7 digits}."   value a number
 *   single_2  "One of the special magic words for {word-word} is: {word}."         value a word
 *   single_3  "One of the special magic uuids for {word-word} is: {uuid}."         value a uuid
 *   multikey_1  the target needle (number) + 3 needles of other keys (distractors)
 *   multikey_2  the target needle (number) + 7 distractors
 *   multikey_3  keys and values are uuids, 3 distractors
 *   multivalue  4 needles with the same key and different numbers; all 4 are asked for (4 gold documents)
 *   multiquery  4 keys, one needle each; all 4 numbers asked in one question (4 gold documents)
 * Deviation from RULER: all samples share one haystack per size (a bank is encoded once per size, not once per
 * sample), so the other samples' needles are further distractors; single_1 uses the text haystack, not RULER's
 * repeated-noise one. The bank at --bank is created (read mode, P=1, with --router if given) when missing and
 * the haystack documents are added (unchanged ones are skipped).
 * --write-set FILE writes the same documents and questions as one QA-format JSONL ({"id", "text"} lines, then
 * {"id", "kind", "question", "gold", "answer"} lines) and stops before the bank: `msa eval qa` reads it, and
 * scripts/eval_baselines.py ranks it for the BM25 and MiniLM rows, which then run here with --ranking. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "eval.h"
#include "model_glue.h"
#include "model/model.h"
#include "msa.h"

static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rnd(uint64_t *s, uint64_t n) { return n ? sm64(s) % n : 0; }

static const char *const ADJ[] = {"amber", "brisk", "calm", "dusty", "eager", "faded", "gentle", "hollow", "icy",
                                  "jolly", "keen", "lofty", "mellow", "nimble", "olive", "prickly", "quiet", "rusty",
                                  "silent", "tawny", "upbeat", "vivid", "woolly", "zesty"};
static const char *const NOUN[] = {"otter", "lantern", "meadow", "violin", "harbor", "pepper", "falcon", "teapot",
                                   "glacier", "compass", "walnut", "beacon", "thimble", "saddle", "orchid", "pebble",
                                   "anvil", "quill", "ribbon", "sparrow", "tunnel", "velvet", "willow", "yarn"};
static const char *const WORDS[] = {"marmalade", "sunrise", "cobalt", "paprika", "thunder", "juniper", "copper",
                                    "lullaby", "nectar", "granite", "saffron", "tundra", "zephyr", "bramble"};

static void key_word(uint64_t *s, char *out, size_t n) {
    snprintf(out, n, "%s-%s", ADJ[rnd(s, sizeof ADJ / sizeof *ADJ)], NOUN[rnd(s, sizeof NOUN / sizeof *NOUN)]);
}
static void uuid(uint64_t *s, char *out, size_t n) {
    uint64_t a = sm64(s), b = sm64(s);
    snprintf(out, n, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
             (unsigned)a & 0xffff, (unsigned)(b >> 48), (unsigned long long)(b & 0xffffffffffffull));
}

typedef struct needle {
    double depth;      /* relative position in the haystack, [0, 1) */
    char text[400];
    int q;             /* question it belongs to (gold), -1: a distractor */
} needle;

typedef struct sbuf { char *s; size_t n, cap; } sbuf;
static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 1024;
        while (c < b->n + n + 1) c *= 2;
        char *t = realloc(b->s, c);
        if (!t) return -1;
        b->s = t, b->cap = c;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

/* questions and needles of every task (independent of the haystack size) */
static int make_needles(uint64_t seed, int per_task, eval_question **qs_out, size_t *nq_out, needle **nd_out,
                        size_t *nn_out) {
    uint64_t s = seed * 0x1000193ull + 17;
    const int n_tasks = 8;
    size_t nq = (size_t)n_tasks * per_task, nn_cap = nq * 8, nn = 0;
    eval_question *qs = calloc(nq, sizeof *qs);
    needle *nd = calloc(nn_cap, sizeof *nd);
    if (!qs || !nd) {
        free(qs), free(nd);
        return 70;
    }
    static const char *const names[] = {"single_1", "single_2", "single_3", "multikey_1", "multikey_2",
                                        "multikey_3", "multivalue", "multiquery"};
    size_t qi = 0;
    int rc = 0;
    for (int t = 0; t < n_tasks && !rc; t++)
        for (int k = 0; k < per_task && !rc; k++, qi++) {
            eval_question *q = &qs[qi];
            char id[64], key[80], val[80], qt[512];
            snprintf(id, sizeof id, "%s-%03d", names[t], k);
            q->id = strdup(id);
            q->kind = strdup(names[t]);
            const bool uuid_keys = t == 5;
            const char *what = t == 1 ? "words" : (t == 2 || t == 5) ? "uuids" : "numbers";
            const char *what1 = t == 1 ? "word" : (t == 2 || t == 5) ? "uuid" : "number";
            int n_target = t == 6 || t == 7 ? 4 : 1;
            int n_distract = t == 3 || t == 5 ? 3 : t == 4 ? 7 : 0;
            char keys[4][80];
            if (uuid_keys) uuid(&s, key, sizeof key);
            else key_word(&s, key, sizeof key);
            for (int j = 0; j < n_target; j++) {
                if (t == 7 && j > 0) key_word(&s, keys[j], sizeof keys[j]);
                else snprintf(keys[j], sizeof keys[j], "%s", key);
                if (t == 1) snprintf(val, sizeof val, "%s", WORDS[rnd(&s, sizeof WORDS / sizeof *WORDS)]);
                else if (t == 2 || t == 5) uuid(&s, val, sizeof val);
                else snprintf(val, sizeof val, "%07llu", (unsigned long long)(1000000 + rnd(&s, 9000000)));
                needle *n = &nd[nn++];
                n->depth = (double)rnd(&s, 1000000) / 1e6;
                n->q = (int)qi;
                snprintf(n->text, sizeof n->text, "One of the special magic %s for %s is: %s.", what, keys[j], val);
                q->answer[q->n_answer++] = strdup(val);
            }
            for (int j = 0; j < n_distract; j++) {
                char dk[80], dv[80];
                if (uuid_keys) uuid(&s, dk, sizeof dk), uuid(&s, dv, sizeof dv);
                else {
                    key_word(&s, dk, sizeof dk);
                    if (!strcmp(dk, key)) continue;
                    snprintf(dv, sizeof dv, "%07llu", (unsigned long long)(1000000 + rnd(&s, 9000000)));
                }
                needle *n = &nd[nn++];
                n->depth = (double)rnd(&s, 1000000) / 1e6;
                n->q = -1;
                snprintf(n->text, sizeof n->text, "One of the special magic %s for %s is: %s.", what, dk, dv);
            }
            if (t == 6)
                snprintf(qt, sizeof qt, "What are all the special magic numbers for %s mentioned in the provided text?", key);
            else if (t == 7)
                snprintf(qt, sizeof qt, "What are all the special magic numbers for %s, %s, %s and %s mentioned in the provided text?",
                         keys[0], keys[1], keys[2], keys[3]);
            else
                snprintf(qt, sizeof qt, "What is the special magic %s for %s mentioned in the provided text?", what1, key);
            q->question = strdup(qt);
            if (!q->id || !q->kind || !q->question) rc = 70;
        }
    *qs_out = qs, *nq_out = nq, *nd_out = nd, *nn_out = nn;
    return rc;
}

/* the set as eval qa reads it: documents in haystack order, then the questions with their gold ids and answers */
static int write_set(const char *path, const msa_doc_input *docs, size_t n_docs, const eval_question *qs, size_t nq) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "msa eval niah: cannot write %s\n", path);
        return 73;
    }
    int rc = 0;
    for (size_t i = 0; i < n_docs && !rc; i++)
        rc = cli_put_json_line(f, json_pack("{s:s, s:s%}", "id", docs[i].id, "text", docs[i].text, docs[i].text_len));
    for (size_t i = 0; i < nq && !rc; i++) {
        json_t *gold = json_array(), *ans = json_array();
        for (int g = 0; g < qs[i].n_gold; g++) json_array_append_new(gold, json_string(qs[i].gold[g]));
        for (int a = 0; a < qs[i].n_answer; a++) json_array_append_new(ans, json_string(qs[i].answer[a]));
        rc = cli_put_json_line(f, json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", qs[i].id, "kind", qs[i].kind, "question",
                                        qs[i].question, "gold", gold, "answer", ans));
    }
    if (fclose(f) && !rc) rc = 74;
    if (rc == 74) fprintf(stderr, "msa eval niah: writing %s failed\n", path);
    return rc;
}

int eval_niah(const eval_opts *o) {
    const char *hay = o->haystack ? o->haystack : "data/corpora/moby-dick/moby-dick.txt";
    FILE *f = fopen(hay, "rb");
    if (!f) {
        fprintf(stderr, "msa eval niah: cannot open the haystack text %s (--haystack FILE)\n", hay);
        return 66;
    }
    sbuf text = {0};
    char buf[65536];
    size_t r;
    int rc = 0;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0 && !rc)
        if (sb_add(&text, buf, r)) rc = 70;
    fclose(f);
    if (rc || text.n < 1000) {
        free(text.s);
        fprintf(stderr, "msa eval niah: the haystack text is too short or unreadable\n");
        return rc ? rc : 65;
    }
    for (size_t i = 0; i < text.n; i++) /* whitespace runs as one space */
        if (text.s[i] == '\n' || text.s[i] == '\r' || text.s[i] == '\t' || text.s[i] == 0) text.s[i] = ' ';
    /* sentence starts */
    size_t *ss = NULL, nss = 0, sscap = 0;
    for (size_t i = 0; i + 1 < text.n && !rc; i++)
        if ((text.s[i] == '.' || text.s[i] == '!' || text.s[i] == '?') && text.s[i + 1] == ' ') {
            if (nss == sscap) {
                sscap = sscap ? sscap * 2 : 4096;
                size_t *t = realloc(ss, sscap * sizeof *t);
                if (!t) rc = 70;
                else ss = t;
            }
            if (!rc) ss[nss++] = i + 2;
        }
    if (!rc && nss < 16) rc = 65;
    msa_model *model = NULL;
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = (int)o->threads;
    mp.device = o->device;
    msa_status st = rc ? MSA_OK : msa_model_load(o->model, &mp, &model);
    if (!rc && !st) st = model_glue_read_router(model, o->router, NULL);
    if (st) rc = cli_fail(st);
    eval_question *qs = NULL;
    needle *nd = NULL;
    size_t nq = 0, nn = 0;
    if (!rc) rc = make_needles((uint64_t)o->seed, (int)o->per_task, &qs, &nq, &nd, &nn);
    /* documents: sentences from a seeded start, ~doc_tokens tokens each, until o->tokens */
    msa_doc_input *docs = NULL;
    char **dtext = NULL, **did = NULL;
    size_t nd_docs = 0, dcap = 0;
    if (!rc) {
        uint64_t s = (uint64_t)o->seed * 31 + 7;
        size_t si = (size_t)rnd(&s, nss);
        long long total = 0;
        sbuf cur = {0};
        long long cur_tok = 0;
        const msa_tokenizer *tok = msa_model_tokenizer(model);
        while (total < o->tokens && !rc) {
            size_t a = ss[si], b = si + 1 < nss ? ss[si + 1] : text.n;
            si = si + 1 < nss ? si + 1 : 0;
            while (a < b && text.s[a] == ' ') a++;
            if (b <= a) continue;
            int32_t *ids = NULL;
            size_t nt = 0;
            if (msa_tokenize(tok, text.s + a, b - a, false, &ids, &nt)) {
                rc = 70;
                break;
            }
            free(ids);
            if (sb_add(&cur, text.s + a, b - a)) rc = 70;
            cur_tok += (long long)nt;
            total += (long long)nt;
            if (cur_tok >= o->doc_tokens || total >= o->tokens) {
                if (nd_docs == dcap) {
                    dcap = dcap ? dcap * 2 : 256;
                    char **t1 = realloc(dtext, dcap * sizeof *t1);
                    if (t1) dtext = t1;
                    char **t2 = realloc(did, dcap * sizeof *t2);
                    if (t2) did = t2;
                    if (!t1 || !t2) {
                        rc = 70;
                        break;
                    }
                }
                dtext[nd_docs] = cur.s;
                did[nd_docs] = malloc(64);
                if (did[nd_docs]) snprintf(did[nd_docs], 64, "niah-s%lld-%06zu", o->seed, nd_docs);
                nd_docs++;
                memset(&cur, 0, sizeof cur);
                cur_tok = 0;
            }
        }
        free(cur.s);
    }
    /* plant the needles: document floor(depth * n), appended after one of its sentences (seeded) */
    if (!rc) {
        uint64_t s = (uint64_t)o->seed * 131 + 3;
        for (size_t i = 0; i < nn && !rc; i++) {
            size_t d = (size_t)(nd[i].depth * (double)nd_docs);
            if (d >= nd_docs) d = nd_docs - 1;
            char *t = dtext[d];
            size_t len = strlen(t), cut[64], nc = 0;
            cut[nc++] = 0;
            for (size_t j = 0; j + 1 < len && nc < 64; j++)
                if ((t[j] == '.' || t[j] == '!' || t[j] == '?') && t[j + 1] == ' ') cut[nc++] = j + 2;
            size_t at = cut[rnd(&s, nc)];
            sbuf nb = {0};
            if (sb_add(&nb, t, at) || sb_add(&nb, nd[i].text, strlen(nd[i].text)) || sb_add(&nb, " ", 1) ||
                sb_add(&nb, t + at, len - at))
                rc = 70;
            else {
                free(dtext[d]);
                dtext[d] = nb.s;
            }
            if (!rc && nd[i].q >= 0) { /* gold: once per document */
                eval_question *q = &qs[nd[i].q];
                bool have = false;
                for (int g = 0; g < q->n_gold; g++) have |= !strcmp(q->gold[g], did[d]);
                if (!have && q->n_gold < EVAL_MAX_GOLD) q->gold[q->n_gold++] = strdup(did[d]);
            }
        }
    }
    if (!rc) {
        docs = calloc(nd_docs ? nd_docs : 1, sizeof *docs);
        if (!docs) rc = 70;
        for (size_t i = 0; !rc && i < nd_docs; i++)
            docs[i] = (msa_doc_input){.id = did[i], .text = dtext[i], .text_len = strlen(dtext[i])};
    }
    if (!rc && o->write_set) {
        rc = write_set(o->write_set, docs, nd_docs, qs, nq);
        if (!rc && !o->json)
            printf("niah: wrote %zu documents and %zu questions to %s\n", nd_docs, nq, o->write_set);
        goto done;
    }
    /* --full-context: the haystack alone over the model's context is refused before encoding it (eval_run then
     * checks each question's whole prompt) */
    if (!rc && o->full_context) {
        long long hay_tok = 0;
        const msa_tokenizer *tok = msa_model_tokenizer(model);
        for (size_t i = 0; i < nd_docs && !rc; i++) {
            int32_t *ids = NULL;
            size_t nt = 0;
            if (msa_tokenize(tok, dtext[i], strlen(dtext[i]), false, &ids, &nt)) rc = 70;
            free(ids);
            hay_tok += (long long)nt;
        }
        const long long max_new = o->max_new > 0 ? o->max_new : 48;
        const int n_ctx = msa_model_hparams(model)->n_ctx_train;
        if (!rc && hay_tok + max_new > n_ctx)
            rc = cli_usage_error("eval", "--full-context: the haystack is %zu documents, %lld tokens with its needles; "
                                 "with %lld answer tokens (-n) that is over the model's context of %d tokens (use "
                                 "a smaller --tokens, or read mode)", nd_docs, hay_tok, max_new, n_ctx);
    }
    /* the bank: create when missing, add the haystack (unchanged documents are skipped) */
    msa_bank *bank = NULL;
    msa_ingest_report rep = {0};
    if (!rc) rc = eval_bank_fill(o, model, docs, nd_docs, &bank, &rep);
    if (!rc && !o->json)
        printf("niah: %zu documents (%llu tokens of %s, seed %lld), %zu questions, %zu needles; encoded %llu "
               "tokens in %.1f s\n", nd_docs, (unsigned long long)0 + (unsigned long long)o->tokens, hay, o->seed,
               nq, nn, (unsigned long long)rep.n_tokens_encoded, rep.seconds);
    eval_opts ro = *o; /* full context reads the haystack's documents in haystack order */
    ro.context_ids = (const char *const *)did, ro.n_context = nd_docs;
    if (!rc) rc = eval_run(model, bank, qs, nq, &ro);
    if (bank) msa_bank_close(bank);
done:
    if (model) msa_model_free(model);
    for (size_t i = 0; i < nd_docs; i++) free(dtext[i]), free(did[i]);
    free(dtext), free(did), free(docs), free(nd), free(ss), free(text.s);
    eval_questions_free(qs, nq);
    return rc;
}
