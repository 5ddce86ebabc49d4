/* test_hf_fixtures.c — checks the committed transformers fixtures (tests/fixtures/hf/) are whole and
 * self-consistent, so that a backbone test failing against them is the engine's fault, not a damaged fixture:
 * every array listed in a meta.json exists with the size its shape says, token ids are in the vocabulary,
 * and the redundant views of the logits agree with each other (top-k vs argmax vs the full last row vs the
 * sampled columns vs log-sum-exp). Covers every fixture directory manifest.json names: transformers' runs,
 * their f32compute twins and the GGUF dequantized references. Format: tests/fixtures/hf/README.md.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define FIXTURES "tests/fixtures/hf"

/* One array of a fixture, loaded whole. data holds n float or int32 values (4 bytes each). */
typedef struct {
    void *data;
    size_t n;      /* element count = product of shape */
    long shape[4]; /* dims, unused ones 0 */
    int ndim;
} fx_array;

static int load_array(const char *dir, json_t *files, const char *name, fx_array *a) {
    memset(a, 0, sizeof *a);
    json_t *info = json_object_get(files, name);
    if (!info && strcmp(name, "logits_last") == 0) return 0; /* optional: only transformers' own runs have it */
    if (!info) {
        fprintf(stderr, "  %s: meta.json lists no array '%s'\n", dir, name);
        return -1;
    }
    json_t *shape = json_object_get(info, "shape");
    a->n = 1;
    for (size_t i = 0; i < json_array_size(shape) && i < 4; i++) {
        a->shape[i] = (long)json_integer_value(json_array_get(shape, i));
        a->n *= (size_t)a->shape[i];
        a->ndim++;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(info, "file")));
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "  %s: cannot open\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size != (long)(a->n * 4)) {
        fprintf(stderr, "  %s: %ld bytes, its shape says %zu\n", path, size, a->n * 4);
        fclose(f);
        return -1;
    }
    a->data = malloc(a->n * 4 + 1);
    size_t got = fread(a->data, 4, a->n, f);
    fclose(f);
    return got == a->n ? 0 : -1;
}

/* dir: a fixture directory relative to the repository root, as manifest.json names it. */
static void check_fixture(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    json_error_t err;
    json_t *meta = json_load_file(path, 0, &err);
    CHECK(meta != NULL);
    if (!meta) {
        fprintf(stderr, "  %s: %s\n", path, err.text);
        return;
    }
    json_t *files = json_object_get(meta, "files");
    long T = (long)json_integer_value(json_object_get(meta, "n_tokens"));
    long L = (long)json_integer_value(json_object_get(meta, "n_layers"));
    long H = (long)json_integer_value(json_object_get(meta, "hidden_size"));
    long V = (long)json_integer_value(json_object_get(meta, "vocab_size"));
    enum { TOKENS, HIDDEN, LAYER_OUT, LAST, COLS, AT_COLS, TOPK_IDS, TOPK_LOGITS, ARGMAX, MAX, LSE, GREEDY, N_ARR };
    static const char *names[N_ARR] = {"tokens", "hidden", "layer_out", "logits_last", "logit_cols",
                                       "logits_at_cols", "topk_ids", "topk_logits", "argmax", "max_logit",
                                       "logsumexp", "greedy"};
    fx_array a[N_ARR];
    int ok = 1;
    for (int i = 0; i < N_ARR; i++)
        if (load_array(dir, files, names[i], &a[i]) != 0) ok = 0;
    CHECK(ok);
    if (ok) {
        const int32_t *tok = a[TOKENS].data, *cols = a[COLS].data, *topk = a[TOPK_IDS].data;
        const int32_t *amax = a[ARGMAX].data, *greedy = a[GREEDY].data;
        const float *last = a[LAST].data, *at_cols = a[AT_COLS].data, *topv = a[TOPK_LOGITS].data;
        const float *mx = a[MAX].data, *lse = a[LSE].data;
        long K = a[TOPK_IDS].shape[1], C = a[COLS].shape[0];
        CHECK_EQ_INT(a[TOKENS].n, T);
        CHECK(a[HIDDEN].shape[0] == L + 1 && a[HIDDEN].shape[1] == T && a[HIDDEN].shape[2] == H);
        CHECK(a[LAYER_OUT].shape[0] == L && a[LAYER_OUT].shape[1] == T && a[LAYER_OUT].shape[2] == H);
        CHECK(a[LAST].data == NULL || (long)a[LAST].n == V);
        for (long t = 0; t < T; t++) CHECK(tok[t] >= 0 && tok[t] < V);
        for (long i = 0; i < (long)a[GREEDY].n; i++) CHECK(greedy[i] >= 0 && greedy[i] < V);
        for (long t = 0; t < T; t++) {
            CHECK_EQ_INT(amax[t], topk[t * K]);
            CHECK(mx[t] == topv[t * K]);
            for (long k = 1; k < K; k++) CHECK(topv[t * K + k] <= topv[t * K + k - 1]);
            CHECK(lse[t] >= mx[t] - 1e-4f && lse[t] <= mx[t] + logf((float)V) + 1e-4f);
        }
        for (long c = 0; c < C; c++) CHECK(cols[c] >= 0 && cols[c] < V);
        /* the sampled columns never exceed the row maximum, and the top-k logits at sampled ids agree */
        for (long t = 0; t < T; t++)
            for (long c = 0; c < C; c++) {
                CHECK(at_cols[t * C + c] <= mx[t]);
                for (long k = 0; k < K; k++)
                    if (topk[t * K + k] == cols[c]) CHECK(at_cols[t * C + c] == topv[t * K + k]);
            }
        if (last) { /* the last position's full row agrees with every other view of it */
            long best = 0;
            for (long v = 1; v < V; v++)
                if (last[v] > last[best]) best = v;
            CHECK_EQ_INT(best, amax[T - 1]);
            for (long k = 0; k < K; k++) CHECK(last[topk[(T - 1) * K + k]] == topv[(T - 1) * K + k]);
            for (long c = 0; c < C; c++) CHECK(at_cols[(T - 1) * C + c] == last[cols[c]]);
            double sum = 0;
            for (long v = 0; v < V; v++) sum += exp((double)last[v] - mx[T - 1]);
            CHECK_NEAR(mx[T - 1] + log(sum), lse[T - 1], 1e-3);
        }
        /* the first greedy token is the prompt's last argmax */
        CHECK_EQ_INT(greedy[0], amax[T - 1]);
    }
    for (int i = 0; i < N_ARR; i++) free(a[i].data);
    json_decref(meta);
}

/* Checks every fixture directory that manifest.json names under `list`/`key`; returns how many. */
static int check_listed(const char *list, const char *key) {
    json_error_t err;
    json_t *m = json_load_file(FIXTURES "/manifest.json", 0, &err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "  " FIXTURES "/manifest.json: %s\n", err.text);
        return 0;
    }
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(m, list), i, c) {
        const char *dir = json_string_value(json_object_get(c, key));
        if (dir) {
            check_fixture(dir);
            n++;
        }
    }
    json_decref(m);
    return n;
}

TEST(transformers_fixtures) { CHECK_EQ_INT(check_listed("checkpoints", "fixture"), 6); }
TEST(transformers_f32compute_fixtures) { CHECK_EQ_INT(check_listed("checkpoints", "f32compute_fixture"), 3); }
TEST(gguf_dequantized_fixtures) { CHECK_EQ_INT(check_listed("gguf", "dequant_fixture"), 9); }

int main(void) {
    RUN(transformers_fixtures);
    RUN(transformers_f32compute_fixtures);
    RUN(gguf_dequantized_fixtures);
    return test_summary();
}
