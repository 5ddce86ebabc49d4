/* test_msa_interleave.c — the Memory Interleave state machine (src/memory/interleave.c) driven by a scripted
 * model and a byte-level fake tokenizer: the transcript of msa-reference.md §4.3 reproduced exactly, the
 * routing roles of every round, and every branch (round end, retrieval end, EOS, token limit, character limit,
 * round cap, unknown/duplicate/absent ids). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory/interleave.h"
#include "test.h"

/* ---- fake tokenizer: specials are single ids >= 1000, every other byte is its own id */
static const char *specials[] = {"<|im_start|>", "<|im_end|>", "<|object_ref_end|>", "<|endoftext|>"};
#define N_SPECIAL 4

static msa_status fk_tokenize(void *ctx, const char *text, size_t len, bool special, int32_t **ids, size_t *n) {
    (void)ctx;
    int32_t *out = malloc((len + 1) * sizeof *out);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        int sp = -1;
        for (int s = 0; special && s < N_SPECIAL; s++)
            if (strlen(specials[s]) <= len - i && !memcmp(text + i, specials[s], strlen(specials[s]))) sp = s;
        if (sp >= 0) {
            out[k++] = 1000 + sp;
            i += strlen(specials[sp]);
        } else {
            out[k++] = (unsigned char)text[i++];
        }
    }
    *ids = out;
    *n = k;
    return MSA_OK;
}

static int fk_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    (void)ctx;
    if (id >= 1000 && id < 1000 + N_SPECIAL) {
        size_t n = strlen(specials[id - 1000]);
        memcpy(buf, specials[id - 1000], n < cap ? n : cap);
        return (int)n;
    }
    if (id < 0 || id > 255) return -1;
    buf[0] = (char)id;
    return 1;
}

static bool fk_eos(void *ctx, int32_t id) { (void)ctx; return id == 1001 || id == 1003; }

/* ---- scripted model */
typedef struct script {
    const char *rounds[8];     /* what the model "generates" in each call, in order, incl. discarded tokens */
    int32_t *toks;
    size_t n, at;
    int round;
    int n_prefill;
    char route_text[8][512];   /* text of the role-0 tokens of each prefill */
    int n_blocks;              /* multi-token feeds */
    char block_text[512];
    const char *docs[10];
} script;

static const char *fk_doc(void *ctx, uint64_t idx, size_t *len) {
    script *s = ctx;
    if (idx >= 10 || !s->docs[idx]) return NULL;
    *len = strlen(s->docs[idx]);
    return s->docs[idx];
}

static int32_t next_tok(script *s) { return s->at < s->n ? s->toks[s->at++] : 1003; }

static msa_status sc_prefill(void *ctx, int round, const int32_t *ids, const int8_t *roles, size_t n, int32_t *next) {
    script *s = ctx;
    s->n_prefill++;
    s->round = round;
    char *rt = s->route_text[round < 8 ? round : 7];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (roles[i] == MSA_ROLE_ROUTE && k + 32 < 512) k += (size_t)fk_piece(NULL, ids[i], rt + k, 511 - k);
    rt[k] = 0;
    free(s->toks);
    s->toks = NULL;
    /* a round past the script (a bug under test, e.g. a larger cap) generates nothing but EOS: a clean FAIL */
    const char *txt = round < 8 && s->rounds[round] ? s->rounds[round] : "";
    fk_tokenize(NULL, txt, strlen(txt), true, &s->toks, &s->n);
    s->at = 0;
    *next = next_tok(s);
    return MSA_OK;
}

static msa_status sc_feed(void *ctx, const int32_t *ids, size_t n, int32_t *next) {
    script *s = ctx;
    if (n > 1) {
        s->n_blocks++;
        size_t k = 0;
        for (size_t i = 0; i < n && k + 32 < 512; i++) k += (size_t)fk_piece(NULL, ids[i], s->block_text + k, 511 - k);
        s->block_text[k] = 0;
    }
    *next = next_tok(s);
    return MSA_OK;
}

static msa_il_ops ops_for(script *s) {
    msa_il_ops o = {s, fk_tokenize, fk_piece, fk_eos, fk_doc, sc_prefill, sc_feed};
    return o;
}

#define Q "When was the Golden Gate Bridge opened?"
#define QSTR MSA_IL_INSTRUCTION Q MSA_IL_RETURN_DOCS "\n"

TEST(question_prompt_and_roles) {
    script s = {0};
    msa_il_ops o = ops_for(&s);
    int32_t *ids;
    int8_t *roles;
    size_t n, n_prefix;
    CHECK(msa_il_build_question(&o, Q, strlen(Q), &ids, &roles, &n, &n_prefix) == MSA_OK);
    CHECK_EQ_INT(n, strlen(QSTR) + 3);
    CHECK_EQ_INT(n_prefix, strlen(QSTR) - 1);
    for (size_t i = 0; i < strlen(QSTR); i++) CHECK(roles[i] == 0 && ids[i] == (unsigned char)QSTR[i]);
    CHECK(ids[n - 3] == 1001 && roles[n - 3] == -2);
    CHECK(ids[n - 2] == '\n' && roles[n - 2] == -2);
    CHECK(ids[n - 1] == 1000 && roles[n - 1] == -1);
    free(ids), free(roles);
    /* the question is plain text: a special-token string inside it stays bytes */
    CHECK(msa_il_build_question(&o, "<|im_end|>", 10, &ids, &roles, &n, NULL) == MSA_OK);
    for (size_t i = 0; i < n - 3; i++) CHECK(ids[i] < 256);
    free(ids), free(roles);
}

TEST(paper_transcript) {
    script s = {.rounds = {"[4]<|object_ref_end|>ignored", "[3]<|object_ref_end|>",
                           "<End-of-Retrieve>X" "The answer to the question is: May 5, 1939<|im_end|>junk"}};
    s.docs[3] = "Doc three text.";
    s.docs[4] = "Doc four text.";
    msa_il_ops o = ops_for(&s);
    msa_il_result r;
    CHECK(msa_il_run(&o, NULL, Q, strlen(Q), &r) == MSA_OK);
    const char *want = QSTR "<|im_end|>\n<|im_start|>"
                       "[4]<|object_ref_end|>[4]. Doc four text.\n<|object_ref_end|>"
                       "[3]<|object_ref_end|>[3]. Doc three text.\n<|object_ref_end|>"
                       "<End-of-Retrieve><|im_start|>The user's question is: " Q "\n<|object_ref_end|>"
                       "The answer to the question is: May 5, 1939<|im_end|>";
    CHECK(r.transcript && !strcmp(r.transcript, want));
    if (r.transcript && strcmp(r.transcript, want)) fprintf(stderr, "  got: %s\n", r.transcript);
    CHECK(r.answer && !strcmp(r.answer, "May 5, 1939"));
    CHECK_EQ_INT(r.n_rounds, 3);
    CHECK_EQ_INT(s.n_prefill, 3);
    CHECK(r.n_rounds == 3 && r.rounds[0].n_injected == 1 && r.rounds[0].injected[0] == 4);
    CHECK(r.n_rounds == 3 && r.rounds[1].n_injected == 1 && r.rounds[1].injected[0] == 3);
    CHECK(r.n_rounds == 3 && r.rounds[2].question_injected && !r.rounds[0].question_injected);
    CHECK(r.n_rounds == 3 && !strcmp(r.rounds[0].generated, "[4]<|object_ref_end|>"));
    CHECK(!r.capped);
    /* routing roles: round 1 the whole question string; later rounds region 2 + the last injected docs */
    CHECK(!strcmp(s.route_text[0], QSTR));
    CHECK(!strcmp(s.route_text[1], MSA_IL_INSTRUCTION Q MSA_IL_RETURN_DOCS "[4]. Doc four text.\n"));
    CHECK(!strcmp(s.route_text[2], MSA_IL_INSTRUCTION Q MSA_IL_RETURN_DOCS "[3]. Doc three text.\n"));
    /* the question injection was fed as one block */
    CHECK_EQ_INT(s.n_blocks, 1);
    CHECK(!strcmp(s.block_text, "<|im_start|>The user's question is: " Q "\n<|object_ref_end|>"));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(ids_sorted_unique_existing) {
    script s = {.rounds = {"[7][5] and [2][5][x][][99999999999]<|object_ref_end|>", "<|object_ref_end|>",
                           "I do not know.<|im_end|>"}};
    s.docs[2] = "two";
    s.docs[5] = "five";
    s.docs[0] = "zero";
    msa_il_ops o = ops_for(&s);
    msa_il_result r;
    CHECK(msa_il_run(&o, NULL, Q, strlen(Q), &r) == MSA_OK);
    CHECK_EQ_INT(r.n_rounds, 3);
    CHECK(r.rounds[0].n_injected == 2 && r.rounds[0].injected[0] == 2 && r.rounds[0].injected[1] == 5);
    CHECK(strstr(r.transcript, "<|object_ref_end|>[2]. two\n[5]. five\n<|object_ref_end|>") != NULL);
    /* a round with no ids injects only the end marker; region 1 is then empty */
    CHECK_EQ_INT(r.rounds[1].n_injected, 0);
    CHECK(!strcmp(s.route_text[2], MSA_IL_INSTRUCTION Q MSA_IL_RETURN_DOCS));
    CHECK(!strcmp(r.answer, "I do not know."));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(document_zero_is_a_document) {
    script s = {.rounds = {"[0]<|object_ref_end|>", "A<|im_end|>"}};
    s.docs[0] = "zero";
    msa_il_ops o = ops_for(&s);
    msa_il_result r;
    CHECK(msa_il_run(&o, NULL, Q, strlen(Q), &r) == MSA_OK);
    CHECK(r.n_rounds == 2 && r.rounds[0].n_injected == 1 && r.rounds[0].injected[0] == 0);
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(eos_first_round) {
    script s = {.rounds = {"The answer to the question is: 42<|im_end|>"}};
    msa_il_ops o = ops_for(&s);
    msa_il_result r;
    CHECK(msa_il_run(&o, NULL, Q, strlen(Q), &r) == MSA_OK);
    CHECK_EQ_INT(r.n_rounds, 1);
    CHECK(!strcmp(r.answer, "42"));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(token_limit) {
    script s = {.rounds = {"abcdefghijklmnop"}};
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_new_tokens = 5;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(!strcmp(r.answer, "abcde"));
    CHECK_EQ_INT(r.n_rounds, 1);
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(character_limit_ends_retrieval) {
    script s = {.rounds = {"[1][1][1][1Zanswer<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_retrieval_chars = 10;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK_EQ_INT(r.n_rounds, 1);
    CHECK(r.rounds[0].question_injected);
    CHECK(!strcmp(r.rounds[0].generated, "[1][1][1][1"));
    /* the 11th byte ends retrieval: it is fed once ('Z' discarded), then the question block, then the answer */
    CHECK(!strcmp(r.answer, "answer"));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(round_cap_forces_answer) {
    script s = {.rounds = {"[1]<|object_ref_end|>", "[1]<|object_ref_end|>?final<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_rounds = 2;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK_EQ_INT(r.n_rounds, 2);
    CHECK(r.capped);
    CHECK(r.rounds[1].question_injected && r.rounds[1].n_injected == 0);
    CHECK(!strcmp(r.answer, "final"));
    msa_il_result_free(&r);
    free(s.toks);
}

/* The default cap is the paper's 8 rounds (docs/architecture.md): a model that asks for documents every time
 * gets 8 rounds, the last one capped. */
TEST(default_round_cap_is_8) {
    script s = {.rounds = {"[1]<|object_ref_end|>", "[1]<|object_ref_end|>", "[1]<|object_ref_end|>",
                           "[1]<|object_ref_end|>", "[1]<|object_ref_end|>", "[1]<|object_ref_end|>",
                           "[1]<|object_ref_end|>", "[1]<|object_ref_end|>?final<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    CHECK_EQ_INT(p.max_rounds, 8);
    msa_il_result r;
    CHECK(msa_il_run(&o, NULL, Q, strlen(Q), &r) == MSA_OK); /* NULL: the defaults */
    CHECK_EQ_INT(r.n_rounds, 8);
    CHECK(r.capped);
    CHECK(!strcmp(r.answer, "final"));
    msa_il_result_free(&r);
    free(s.toks);
}

/* Streaming: the answer decoded after the question injection reaches on_answer piece by piece, without the
 * leading answer mark and without the end marker; a cancel flag stops the run after the current token. */
typedef struct sink {
    char text[256];
    size_t n;
    int calls;
    size_t cancel_after; /* bytes; 0 = never */
    volatile int cancel;
} sink;

static void sink_text(const char *t, size_t n, void *user) {
    sink *k = user;
    if (k->n + n < sizeof k->text) memcpy(k->text + k->n, t, n), k->n += n;
    k->text[k->n] = 0;
    k->calls++;
    if (k->cancel_after && k->n >= k->cancel_after) k->cancel = 1;
}

TEST(answer_streams_without_mark) {
    script s = {.rounds = {"[1][1][1][1Z The answer to the question is: Paris<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_retrieval_chars = 10;
    sink k = {0};
    p.on_answer = sink_text;
    p.user = &k;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(!strcmp(r.answer, "Paris"));
    CHECK(!strcmp(k.text, " Paris"));
    CHECK(k.calls == 6); /* held back until the mark is complete, then one call per piece: " ", "P", ... */
    CHECK(!r.cancelled && !r.truncated);
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(answer_without_mark_streams_all_of_it) {
    script s = {.rounds = {"[1][1][1][1ZThe keeper<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_retrieval_chars = 10;
    sink k = {0};
    p.on_answer = sink_text;
    p.user = &k;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(!strcmp(r.answer, "The keeper"));
    CHECK(!strcmp(k.text, "The keeper"));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(retrieval_round_answer_passed_at_the_end) {
    script s = {.rounds = {"The answer to the question is: 42<|im_end|>"}};
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    sink k = {0};
    p.on_answer = sink_text;
    p.user = &k;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(!strcmp(r.answer, "42") && !strcmp(k.text, "42") && k.calls == 1);
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(cancel_stops_the_answer) {
    script s = {.rounds = {"[1][1][1][1Zabcdefghijklmnop<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_retrieval_chars = 10;
    sink k = {.cancel_after = 3};
    p.on_answer = sink_text;
    p.user = &k;
    p.cancel = &k.cancel;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(r.cancelled && !r.truncated);
    CHECK(!strcmp(r.answer, "abc") && !strcmp(k.text, "abc"));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(cancel_while_retrieving_no_answer) {
    script s = {.rounds = {"[1][1][1]<|object_ref_end|>x<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    volatile int stop = 1;
    p.cancel = &stop;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(r.cancelled && r.n_rounds == 1 && !strcmp(r.answer, ""));
    msa_il_result_free(&r);
    free(s.toks);
}

TEST(token_limit_in_answer_is_truncated) {
    script s = {.rounds = {"[1][Zabcdefghijklmnop<|im_end|>"}};
    s.docs[1] = "one";
    msa_il_ops o = ops_for(&s);
    msa_il_params p = msa_il_default_params();
    p.max_retrieval_chars = 3;
    p.max_new_tokens = 4;
    msa_il_result r;
    CHECK(msa_il_run(&o, &p, Q, strlen(Q), &r) == MSA_OK);
    CHECK(r.truncated && !strcmp(r.answer, "abcd"));
    msa_il_result_free(&r);
    free(s.toks);
}

int main(void) {
    RUN(question_prompt_and_roles);
    RUN(paper_transcript);
    RUN(ids_sorted_unique_existing);
    RUN(document_zero_is_a_document);
    RUN(eos_first_round);
    RUN(token_limit);
    RUN(character_limit_ends_retrieval);
    RUN(round_cap_forces_answer);
    RUN(default_round_cap_is_8);
    RUN(answer_streams_without_mark);
    RUN(answer_without_mark_streams_all_of_it);
    RUN(retrieval_round_answer_passed_at_the_end);
    RUN(cancel_stops_the_answer);
    RUN(cancel_while_retrieving_no_answer);
    RUN(token_limit_in_answer_is_truncated);
    return test_summary();
}
