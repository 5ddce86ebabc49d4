/* test_forward_mask.c — masked tokens in a forward batch (msa_fwd_batch.valid = 0: the slots Memory
 * Interleave and the ask prompts keep in the cache but hide) are invisible and take no position: on the small
 * synthetic checkpoint of tests/ref/make_msa_checkpoint.py (no default model needed), the logits after a
 * sequence with masked tokens inserted equal those of the same sequence without them (a property: the
 * reference is the plain forward of the shorter sequence), the next position counts only valid tokens, and
 * decoding afterwards still does not see them. test_backbone fwd_masked_token checks the same on the default
 * model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/forward.h"
#include "model/model.h"
#include "synth_ckpt.h"
#include "test.h"

static synth_ckpt ck;

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(fabs((double)a[i] - b[i]) <= d)) d = fabs((double)a[i] - b[i]);
        if (fabs((double)a[i]) > *scale) *scale = fabs((double)a[i]);
    }
    return d;
}

TEST(masked_tokens_invisible_and_positionless) {
    SYNTH_CKPT_REQUIRE(ck);
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = 2;
    mp.device = test_device();
    msa_model *m = NULL;
    CHECK_EQ_INT(msa_model_load(ck.path, &mp, &m), MSA_OK);
    if (!m) return;
    msa_model_info info;
    msa_model_get_info(m, &info);
    const int V = info.n_vocab;
    CHECK(V > 200);
    /* the sequence 11 57 123 8 190 42, with masked tokens before, inside (two in a row) and after it */
    const int32_t plain[6] = {11, 57, 123, 8, 190, 42};
    const int32_t ids[10] = {99, 11, 57, 150, 151, 123, 8, 190, 77, 42};
    const uint8_t valid[10] = {0, 1, 1, 0, 0, 1, 1, 1, 0, 1};
    float *want = malloc((size_t)V * 4), *got = malloc((size_t)V * 4);
    msa_session *ref = NULL, *s = NULL;
    CHECK_EQ_INT(msa_session_new(m, NULL, &ref), MSA_OK);
    CHECK_EQ_INT(msa_session_eval(ref, plain, 6, false, want), MSA_OK);
    CHECK_EQ_INT(msa_session_new(m, NULL, &s), MSA_OK);
    int32_t row = 9;
    msa_fwd_batch b = {.n_tokens = 10, .ids = ids, .valid = valid, .logit_rows = &row, .n_logit_rows = 1, .logits = got};
    CHECK_EQ_INT(msa_fwd_eval(s, &b), MSA_OK);
    CHECK_EQ_INT(msa_fwd_next_pos(s), 6);  /* only valid tokens advance the position */
    CHECK_EQ_INT(msa_fwd_n_cached(s), 10); /* the masked ones stay in the cache */
    double scale = 0, d = max_abs_diff(want, got, (size_t)V, &scale);
    fprintf(stderr, "  after the batch: max |difference| %.3g of max |logit| %.3g\n", d, scale);
    CHECK(scale > 0);
    CHECK(d <= 1e-4 * scale + 1e-5);
    /* decoding two more tokens: the masked slots stay invisible */
    const int32_t more[2] = {5, 77};
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(msa_session_eval(ref, &more[i], 1, false, want), MSA_OK);
        CHECK_EQ_INT(msa_session_eval(s, &more[i], 1, false, got), MSA_OK);
        scale = 0;
        d = max_abs_diff(want, got, (size_t)V, &scale);
        CHECK(d <= 1e-4 * scale + 1e-5);
    }
    CHECK_EQ_INT(msa_fwd_next_pos(s), 8);
    /* the premise: a position shift is visible (the same tokens one position later give other logits) */
    const int32_t shifted[7] = {99, 11, 57, 123, 8, 190, 42};
    msa_session *sh = NULL;
    CHECK_EQ_INT(msa_session_new(m, NULL, &sh), MSA_OK);
    float *other = malloc((size_t)V * 4);
    msa_session *r2 = NULL;
    CHECK_EQ_INT(msa_session_new(m, NULL, &r2), MSA_OK);
    CHECK_EQ_INT(msa_session_eval(r2, plain, 6, false, want), MSA_OK);
    CHECK_EQ_INT(msa_session_eval(sh, shifted, 7, false, other), MSA_OK);
    scale = 0;
    d = max_abs_diff(want, other, (size_t)V, &scale);
    fprintf(stderr, "  one more token in front: max |difference| %.3g (must be large)\n", d);
    CHECK(d > 1e-2 * scale);
    msa_session_free(sh), msa_session_free(r2), msa_session_free(ref), msa_session_free(s);
    free(want), free(got), free(other);
    msa_model_free(m);
}

int main(void) {
    if (synth_ckpt_make(&ck, "fwdmask")) return 1;
    RUN(masked_tokens_invisible_and_positionless);
    synth_ckpt_remove(&ck);
    return test_summary();
}
