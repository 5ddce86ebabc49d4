/* test_llamacpp_greedy.c — msa against llama.cpp on the default model: the fixture
 * tests/fixtures/llamacpp/greedy-smollm2-q4_1.json holds llama.cpp's prompt ids, greedy 32 tokens, the runner-up
 * token and the top-1/top-2 logit gap at every step (README.md there says how it was made).
 *
 * With Q4_1 weights every matmul rounds its activations to 8 bits, which makes the forward pass chaotic: any
 * difference at all, even one f32 ulp anywhere, flips some roundings and moves the logits by ~0.1-1. So msa
 * computes what llama.cpp computes bit for bit on GGUF models (the q8 activation blocks and vec_dot order in
 * src/backend/cpu/kernels.h; ggml's RMSNorm, RoPE angles, f16 flash attention and SwiGLU expf in
 * src/model/forward.c; docs/model-files.md "Numerics of GGUF models"), and this test holds it to that:
 *   - prompt tokens, BOS policy and the chat rendering are identical;
 *   - teacher-forced on llama.cpp's tokens (prompt as one batch, then one token per step, as llama.cpp ran),
 *     msa's argmax equals llama.cpp's at every step and the top-1/top-2 gap equals llama.cpp's to the
 *     fixture's 4 decimals;
 *   - free-running greedy: all tokens equal llama.cpp's, on every case. */
#include <jansson.h>
#include <unistd.h>

#include "msa.h"
#include "test.h"

#define FIXTURE "tests/fixtures/llamacpp/greedy-smollm2-q4_1.json"
#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
/* The fixture's gaps are printed to 4 decimals. */
#define GAP_TOL 1e-3

static msa_model *model;
static json_t *fixture;

static size_t ids_from_json(json_t *arr, int32_t *out, size_t cap) {
    size_t i, n = 0;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (n < cap) out[n++] = (int32_t)json_integer_value(v);
    }
    return n;
}

static int argmax2(const float *l, int n, int *second) {
    int b = 0, s = -1;
    for (int i = 1; i < n; i++) {
        if (l[i] > l[b]) {
            s = b;
            b = i;
        } else if (s < 0 || l[i] > l[s]) {
            s = i;
        }
    }
    *second = s;
    return b;
}

/* the fixture is committed: without it the case fails; the model is a SKIP only when it is not installed */
#define NEED_INPUTS()                                                                      \
    do {                                                                                   \
        CHECK(fixture != NULL);                                                            \
        if (!fixture) return;                                                              \
        SKIP_UNLESS_LOADED(model, MODEL, "default model not installed (make model)");      \
    } while (0)

/* Cases to run the model on: all, or under ASan+UBSan (about 10x slower) the first two. */
static size_t n_model_cases(void) {
    const char *suite = getenv("MSA_SUITE");
    size_t n = json_array_size(json_object_get(fixture, "cases"));
    return suite && strcmp(suite, "asan") == 0 && n > 2 ? 2 : n;
}

TEST(fixture_loads) { CHECK(fixture != NULL); }

TEST(bos_policy_matches) {
    NEED_INPUTS();
    CHECK(msa_model_add_bos(model) == json_is_true(json_object_get(fixture, "add_bos")));
}

TEST(prompt_ids_match) {
    NEED_INPUTS();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(fixture, "cases"), i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        bool special = json_is_true(json_object_get(c, "parse_special"));
        int32_t want[512], *ids = NULL;
        size_t n_want = ids_from_json(json_object_get(c, "prompt_ids"), want, 512), n = 0;
        CHECK_EQ_INT(msa_tokenize(msa_model_tokenizer(model), prompt, strlen(prompt), special, &ids, &n), MSA_OK);
        CHECK(n == n_want && memcmp(ids, want, n * sizeof *ids) == 0);
        free(ids);
    }
}

TEST(chat_rendering_matches) {
    NEED_INPUTS();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(fixture, "cases"), i, c) {
        json_t *msgs = json_object_get(c, "messages");
        if (!msgs) continue;
        const char *roles[8], *contents[8];
        size_t n = json_array_size(msgs);
        if (n > 8) n = 8;
        for (size_t k = 0; k < n; k++) {
            roles[k] = json_string_value(json_object_get(json_array_get(msgs, k), "role"));
            contents[k] = json_string_value(json_object_get(json_array_get(msgs, k), "content"));
        }
        char *text = NULL;
        CHECK_EQ_INT(msa_chat_render(model, roles, contents, n, true, &text), MSA_OK);
        const char *want = json_string_value(json_object_get(c, "prompt"));
        CHECK(text && strcmp(text, want) == 0);
        if (text && strcmp(text, want) != 0) fprintf(stderr, "  got:  %s\n  want: %s\n", text, want);
        free(text);
    }
}

TEST(teacher_forced_logits_equal) {
    NEED_INPUTS();
    msa_model_info info;
    msa_model_get_info(model, &info);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(fixture, "cases"), i, c) {
        if (i >= n_model_cases()) break;
        int32_t ids[512], gen[64], second[64];
        size_t n_p = ids_from_json(json_object_get(c, "prompt_ids"), ids, 512);
        size_t n_g = ids_from_json(json_object_get(c, "generated_ids"), gen, 64);
        ids_from_json(json_object_get(c, "runner_up_ids"), second, 64);
        json_t *gaps = json_object_get(c, "top1_minus_top2_logit");
        float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
        msa_session *s = NULL;
        CHECK_EQ_INT(msa_session_new(model, NULL, &s), MSA_OK);
        CHECK_EQ_INT(msa_session_eval(s, ids, n_p, false, logits), MSA_OK);
        int agree = 0;
        double max_gap_err = 0;
        for (size_t k = 0; k < n_g; k++) {
            int snd, top = argmax2(logits, info.n_vocab, &snd);
            double gap = json_number_value(json_array_get(gaps, k));
            double msa_gap = (double)logits[gen[k]] - (double)logits[second[k]];
            if (fabs(msa_gap - gap) > max_gap_err) max_gap_err = fabs(msa_gap - gap);
            agree += top == gen[k];
            if (k + 1 < n_g) CHECK_EQ_INT(msa_session_eval(s, &gen[k], 1, false, logits), MSA_OK);
        }
        fprintf(stderr, "  %-16s teacher-forced argmax agrees at %d/%zu steps; max |gap(msa) - gap(llama.cpp)| %.5f\n",
                json_string_value(json_object_get(c, "name")), agree, n_g, max_gap_err);
        CHECK_EQ_INT(agree, (int)n_g);
        CHECK(max_gap_err <= GAP_TOL);
        msa_session_free(s);
        free(logits);
    }
}

TEST(free_running_greedy_equal) {
    NEED_INPUTS();
    msa_model_info info;
    msa_model_get_info(model, &info);
    msa_sampler_params sp = msa_sampler_default_params();
    sp.temperature = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(fixture, "cases"), i, c) {
        if (i >= n_model_cases()) break;
        int32_t ids[512], gen[64];
        size_t n_p = ids_from_json(json_object_get(c, "prompt_ids"), ids, 512);
        size_t n_g = ids_from_json(json_object_get(c, "generated_ids"), gen, 64);
        float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
        msa_session *s = NULL;
        uint64_t rng = msa_sampler_seed(0);
        CHECK_EQ_INT(msa_session_new(model, NULL, &s), MSA_OK);
        CHECK_EQ_INT(msa_session_eval(s, ids, n_p, false, logits), MSA_OK);
        size_t same = 0;
        for (size_t k = 0; k < n_g; k++) {
            int32_t t = msa_sample(logits, info.n_vocab, &sp, &rng);
            if (t != gen[k]) break;
            same++;
            if (k + 1 < n_g && msa_session_eval(s, &t, 1, false, logits) != MSA_OK) break;
        }
        fprintf(stderr, "  %-16s free-running greedy: %zu/%zu tokens equal llama.cpp's\n",
                json_string_value(json_object_get(c, "name")), same, n_g);
        CHECK_EQ_INT(same, n_g);
        msa_session_free(s);
        free(logits);
    }
}

/* Batch invariance end to end: the logits of every position of a prompt are the same bits whether the prompt
 * is prefilled at once, in pieces of various sizes, or one token at a time (prompts under 64 tokens, where
 * GGUF attention follows llama.cpp's one-chunk path). */
TEST(prefill_batch_invariant) {
    NEED_INPUTS();
    msa_model_info info;
    msa_model_get_info(model, &info);
    json_t *c = json_array_get(json_object_get(fixture, "cases"), 3); /* chat-arithmetic: 38 prompt tokens */
    int32_t ids[512], gen[64];
    size_t n_p = ids_from_json(json_object_get(c, "prompt_ids"), ids, 512);
    size_t n_g = ids_from_json(json_object_get(c, "generated_ids"), gen, 64);
    memcpy(ids + n_p, gen, n_g * sizeof *gen);
    const char *suite = getenv("MSA_SUITE");
    size_t cap = suite && !strcmp(suite, "asan") ? 40 : 63; /* ASan+UBSan: about 10x slower */
    size_t n = n_p + n_g < cap ? n_p + n_g : cap, V = (size_t)info.n_vocab;
    float *all = malloc(n * V * sizeof(float)), *part = malloc(n * V * sizeof(float));
    msa_session *s = NULL;
    CHECK_EQ_INT(msa_session_new(model, NULL, &s), MSA_OK);
    CHECK_EQ_INT(msa_session_eval(s, ids, n, true, all), MSA_OK);
    static const int pieces[][6] = {{1, 1, 1, 1, 1, 1}, {7, 9, 16, 1, 17, 33}, {20, 3, 33, 8, 15, 16}};
    for (int p = 0; p < 3; p++) {
        msa_session_reset(s);
        size_t at = 0;
        for (int k = 0; at < n; k = (k + 1) % 6) {
            size_t m = (size_t)pieces[p][k] < n - at ? (size_t)pieces[p][k] : n - at;
            CHECK_EQ_INT(msa_session_eval(s, ids + at, m, true, part + at * V), MSA_OK);
            at += m;
        }
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) differ += memcmp(all + i * V, part + i * V, V * sizeof(float)) != 0;
        fprintf(stderr, "  pieces pattern %d: %zu/%zu positions differ from the one-batch prefill\n", p, differ, n);
        CHECK_EQ_INT(differ, 0);
    }
    msa_session_free(s);
    free(all);
    free(part);
}

int main(void) {
    json_error_t jerr;
    fixture = json_load_file(FIXTURE, 0, &jerr);
    if (!fixture) fprintf(stderr, "%s: %s\n", FIXTURE, jerr.text);
    if (access(MODEL, R_OK) == 0) {
        msa_model_params mp = msa_model_default_params();
        mp.n_threads = 2;
        if (msa_model_load(MODEL, &mp, &model) != MSA_OK) fprintf(stderr, "%s: %s\n", MODEL, msa_last_error());
    }
    RUN(fixture_loads);
    RUN(bos_policy_matches);
    RUN(prompt_ids_match);
    RUN(chat_rendering_matches);
    RUN(teacher_forced_logits_equal);
    RUN(free_running_greedy_equal);
    RUN(prefill_batch_invariant);
    if (model) msa_model_free(model);
    json_decref(fixture);
    return test_summary();
}
