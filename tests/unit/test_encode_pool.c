/* test_encode_pool.c — read mode's identity-router chunk means (encode.c's host-side pooling) by a property
 * that needs no reference implementation: on the same model and documents, a chunk of a P-token pooling is
 * the mean of the P = 1 keys of its tokens (each P = 1 chunk is one token's key: no divisor can be wrong
 * there), including each document's partial last chunk, for P = 3, 4 and 7 and two documents packed in one
 * batch. The model is the small synthetic checkpoint of tests/ref/make_msa_checkpoint.py, asked in read mode
 * (it has no router file, so the identity router and the host-side pooling are used). test_encode_read
 * checks the same keys against an independent double-precision k_proj on the default model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory/encode.h"
#include "model/model.h"
#include "synth_ckpt.h"
#include "test.h"

static synth_ckpt ck;

static const char *texts[2] = {
    "The lighthouse keeper on Skerry Island kept a logbook of every ship that passed in the night, and rain.",
    "Quartz crystals vibrate at a precise frequency when a voltage is applied across them, and so clocks count it.",
};

TEST(chunk_means_of_token_keys) {
    SYNTH_CKPT_REQUIRE(ck);
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = 2;
    mp.device = test_device();
    msa_model *m = NULL;
    CHECK_EQ_INT(msa_model_load(ck.path, &mp, &m), MSA_OK);
    if (!m) return;
    int32_t *ids[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    for (int d = 0; d < 2; d++) CHECK_EQ_INT(msa_render_doc(m, (uint32_t)d, texts[d], strlen(texts[d]), &ids[d], &n[d]), MSA_OK);
    msa_bank_shape s1;
    CHECK_EQ_INT(msa_memory_bank_shape(m, MSA_BANK_READ, 1, &s1), MSA_OK);
    const int D = s1.route_dim[0];
    msa_encoder *e1 = NULL;
    msa_encoded_doc one[2];
    CHECK_EQ_INT(msa_encoder_new(m, &s1, 0, &e1), MSA_OK);
    CHECK_EQ_INT(msa_encoder_run(e1, (const int32_t *const *)ids, n, 2, one), MSA_OK);
    const int pools[3] = {3, 4, 7};
    int partial = 0, compared = 0;
    double worst = 0, scale = 0;
    for (int pi = 0; pi < 3; pi++) {
        const int P = pools[pi];
        msa_bank_shape sp;
        CHECK_EQ_INT(msa_memory_bank_shape(m, MSA_BANK_READ, P, &sp), MSA_OK);
        CHECK_EQ_INT(sp.pooling, P);
        msa_encoder *e = NULL;
        msa_encoded_doc out[2];
        CHECK_EQ_INT(msa_encoder_new(m, &sp, 0, &e), MSA_OK);
        CHECK_EQ_INT(msa_encoder_run(e, (const int32_t *const *)ids, n, 2, out), MSA_OK);
        for (int d = 0; d < 2; d++) {
            CHECK_EQ_INT(out[d].n_chunks, (n[d] + (size_t)P - 1) / (size_t)P);
            CHECK_EQ_INT(one[d].n_chunks, n[d]);
            partial += n[d] % (size_t)P != 0;
            for (int s = 0; s < sp.n_router; s++)
                for (uint32_t c = 0; c < out[d].n_chunks; c++) {
                    const size_t t0 = (size_t)c * P, t1 = t0 + (size_t)P < n[d] ? t0 + (size_t)P : n[d];
                    for (int i = 0; i < D; i++) {
                        double mean = 0;
                        for (size_t t = t0; t < t1; t++) mean += one[d].route[s][t * (size_t)D + i];
                        mean /= (double)(t1 - t0);
                        worst = fmax(worst, fabs(out[d].route[s][(size_t)c * D + i] - mean));
                        scale = fmax(scale, fabs(mean));
                        compared++;
                    }
                }
            msa_encoded_doc_free(&out[d]);
        }
        msa_encoder_free(e);
    }
    fprintf(stderr, "  %zu and %zu tokens, %d chunk values compared: worst |difference| %.3g of max %.3g\n", n[0], n[1],
            compared, worst, scale);
    CHECK_EQ_INT(partial, 6); /* the premise: every last chunk partial (31 and 29 tokens: no multiple of 3, 4, 7) */
    CHECK(compared > 0);
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * scale); /* both are double sums of the same f32 keys */
    for (int d = 0; d < 2; d++) msa_encoded_doc_free(&one[d]), free(ids[d]);
    msa_encoder_free(e1);
    msa_model_free(m);
}

int main(void) {
    if (synth_ckpt_make(&ck, "encpool")) return 1;
    RUN(chunk_means_of_token_keys);
    synth_ckpt_remove(&ck);
    return test_summary();
}
