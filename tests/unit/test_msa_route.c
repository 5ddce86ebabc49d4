/* test_msa_route.c — routing math (src/memory/route.c) against a direct transcription of
 * msa-reference.md §2.3 (per token, per head, per chunk, then the reductions), for every head/query/chunk
 * reduce method, cosine and scaled dot, f32 and bf16 keys, keys split over several spans; the top-k tie rule;
 * documents without chunks (deleted) never chosen; k larger than the bank. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory/route.h"
#include "model/tensor.h"
#include "test.h"

enum { NH = 4, NKV = 2, HD = 8, NTOK = 6, NDOC = 7 };

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

/* The spec, literally. */
static void spec_doc_scores(const msa_route_params *p, const float *qr, const uint8_t *mask, int ntok,
                            const float *keys, const uint32_t *doc, int nch, float *out) {
    double S[64];
    for (int c = 0; c < nch; c++) {
        double acc = 0, best = -INFINITY, lastv = 0;
        int n = 0;
        for (int t = 0; t < ntok; t++) {
            if (!mask[t]) continue;
            double y = p->head_reduce == MSA_REDUCE_MEAN ? 0 : -INFINITY;
            for (int h = 0; h < NH; h++) {
                const float *q = qr + (t * NH + h) * HD;
                double nq = 0;
                for (int i = 0; i < HD; i++) nq += (double)q[i] * q[i];
                double s = p->cosine ? 1 / sqrt(nq) : 1 / sqrt((double)HD);
                double x = 0;
                for (int i = 0; i < HD; i++) x += q[i] * s * keys[(c * NKV + h / (NH / NKV)) * HD + i];
                if (p->head_reduce == MSA_REDUCE_MEAN) y += x / NH;
                else if (x > y) y = x;
            }
            acc += y, n++, lastv = y;
            if (y > best) best = y;
        }
        S[c] = p->query_reduce == MSA_REDUCE_MAX ? best : p->query_reduce == MSA_REDUCE_MEAN ? acc / n : lastv;
    }
    for (int d = 0; d < NDOC; d++) {
        double best = -INFINITY, sum = 0;
        int n = 0;
        for (int c = 0; c < nch; c++)
            if ((int)doc[c] == d) {
                sum += S[c], n++;
                if (S[c] > best) best = S[c];
            }
        out[d] = n == 0 ? -INFINITY : (float)(p->chunk_reduce == MSA_REDUCE_MAX ? best : sum / n);
    }
}

TEST(scores_every_variant) {
    float qr[NTOK * NH * HD], keys[20 * NKV * HD];
    uint16_t keys16[20 * NKV * HD];
    for (size_t i = 0; i < sizeof qr / sizeof *qr; i++) qr[i] = frand();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        keys16[i] = msa_f32_to_bf16(frand());
        keys[i] = msa_bf16_to_f32(keys16[i]);
    }
    /* 20 chunks: docs 0 (3 chunks), 1 (1), 3 (5), 4 (2), 6 (9); doc 2 and 5 have none (deleted) */
    uint32_t doc[20];
    int lens[NDOC] = {3, 1, 0, 5, 2, 0, 9}, c = 0;
    for (int d = 0; d < NDOC; d++)
        for (int k = 0; k < lens[d]; k++) doc[c++] = (uint32_t)d;
    uint8_t mask[NTOK] = {1, 0, 1, 1, 0, 1};
    const msa_reduce hr[] = {MSA_REDUCE_MEAN, MSA_REDUCE_MAX}, qrd[] = {MSA_REDUCE_MAX, MSA_REDUCE_MEAN, MSA_REDUCE_LAST},
                     cr[] = {MSA_REDUCE_MAX, MSA_REDUCE_MEAN};
    int n_checked = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            for (int cc = 0; cc < 2; cc++)
                for (int cos = 0; cos < 2; cos++)
                    for (int bf = 0; bf < 2; bf++) {
                        msa_route_params p = {.n_head = NH, .n_head_kv = NKV, .head_dim = HD, .head_reduce = hr[a],
                                              .query_reduce = qrd[b], .chunk_reduce = cr[cc], .cosine = cos};
                        float want[NDOC], got[NDOC];
                        spec_doc_scores(&p, qr, mask, NTOK, keys, doc, 20, want);
                        msa_route_query q;
                        CHECK(msa_route_query_prepare(&p, qr, mask, NTOK, &q) == MSA_OK);
                        /* split into spans at doc boundaries 4 and 9 */
                        const void *kb = bf ? (const void *)keys16 : (const void *)keys;
                        size_t es = bf ? 2 : 4;
                        msa_route_span spans[3] = {
                            {kb, doc, 4},
                            {(const char *)kb + 4 * NKV * HD * es, doc + 4, 5},
                            {(const char *)kb + 9 * NKV * HD * es, doc + 9, 11}};
                        CHECK(msa_route_doc_scores(&p, &q, spans, 3, bf ? MSA_ROUTE_BF16 : MSA_ROUTE_F32, NDOC, got,
                                                   NULL) == MSA_OK);
                        for (int d = 0; d < NDOC; d++) {
                            if (isinf(want[d])) CHECK(isinf(got[d]) && got[d] < 0);
                            else CHECK_NEAR(got[d], want[d], 1e-5);
                        }
                        msa_route_query_free(&q);
                        n_checked++;
                    }
    CHECK_EQ_INT(n_checked, 48);
}

/* Read mode's standardized scores: z[t,c] = (y[t,c] - mean_c y[t,.]) / std_c y[t,.], then the reductions. */
TEST(standardized_scores) {
    enum { NC = 12 };
    float qr[NTOK * NH * HD], keys[NC * NKV * HD];
    for (size_t i = 0; i < sizeof qr / sizeof *qr; i++) qr[i] = frand();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) keys[i] = frand();
    uint32_t doc[NC] = {0, 0, 1, 3, 3, 3, 4, 5, 5, 6, 6, 6};
    uint8_t mask[NTOK] = {1, 1, 0, 1, 1, 1};
    for (int qm = 0; qm < 2; qm++) {
        msa_route_params p = {.n_head = NH, .n_head_kv = NKV, .head_dim = HD, .head_reduce = MSA_REDUCE_MEAN,
                              .query_reduce = qm ? MSA_REDUCE_MEAN : MSA_REDUCE_MAX, .chunk_reduce = MSA_REDUCE_MAX,
                              .standardize = true};
        /* y[t][c] by the plain path: one chunk at a time with query_reduce "last" on a one-token mask */
        double y[NTOK][NC];
        for (int t = 0; t < NTOK; t++) {
            uint8_t m1[NTOK] = {0};
            m1[t] = 1;
            msa_route_params p1 = p;
            p1.standardize = false;
            p1.query_reduce = MSA_REDUCE_LAST;
            msa_route_query q1;
            CHECK(msa_route_query_prepare(&p1, qr, m1, NTOK, &q1) == MSA_OK);
            float s[NC];
            msa_route_score_chunks(&p1, &q1, keys, MSA_ROUTE_F32, NC, s, NULL);
            for (int c = 0; c < NC; c++) y[t][c] = s[c];
            msa_route_query_free(&q1);
        }
        float want[NDOC];
        for (int d = 0; d < NDOC; d++) want[d] = -INFINITY;
        for (int c = 0; c < NC; c++) {
            double best = -INFINITY, acc = 0;
            int n = 0;
            for (int t = 0; t < NTOK; t++) {
                if (!mask[t]) continue;
                double m = 0, v = 0;
                for (int k = 0; k < NC; k++) m += y[t][k] / NC;
                for (int k = 0; k < NC; k++) v += (y[t][k] - m) * (y[t][k] - m) / NC;
                double z = (y[t][c] - m) / sqrt(v);
                if (z > best) best = z;
                acc += z, n++;
            }
            float S = (float)(qm ? acc / n : best);
            if (S > want[doc[c]]) want[doc[c]] = S;
        }
        msa_route_query q;
        CHECK(msa_route_query_prepare(&p, qr, mask, NTOK, &q) == MSA_OK);
        msa_route_span sp = {keys, doc, NC};
        float got[NDOC];
        CHECK(msa_route_doc_scores(&p, &q, &sp, 1, MSA_ROUTE_F32, NDOC, got, NULL) == MSA_OK);
        for (int d = 0; d < NDOC; d++) {
            if (isinf(want[d])) CHECK(isinf(got[d]));
            else CHECK_NEAR(got[d], want[d], 1e-4);
        }
        msa_route_query_free(&q);
    }
}

TEST(no_routing_tokens) {
    float qr[NH * HD] = {0};
    uint8_t mask[1] = {0};
    msa_route_params p = {.n_head = NH, .n_head_kv = NKV, .head_dim = HD, .head_reduce = MSA_REDUCE_MEAN,
                          .query_reduce = MSA_REDUCE_MAX, .chunk_reduce = MSA_REDUCE_MAX};
    msa_route_query q;
    CHECK(msa_route_query_prepare(&p, qr, mask, 1, &q) == MSA_ERR_INVALID_ARG);
}

TEST(topk_tie_rule) {
    const float s[] = {0.5f, 2.0f, -INFINITY, 2.0f, 1.0f, NAN, 2.0f, -3.0f};
    uint32_t idx[8];
    float sc[8];
    size_t n = msa_route_topk(s, 8, 4, idx, sc);
    CHECK_EQ_INT(n, 4);
    CHECK(idx[0] == 1 && idx[1] == 3 && idx[2] == 6 && idx[3] == 4);
    CHECK(sc[0] == 2.0f && sc[3] == 1.0f);
    /* k larger than the bank: every finite document, best first */
    n = msa_route_topk(s, 8, 100 > 8 ? 8 : 100, idx, sc);
    CHECK_EQ_INT(n, 6);
    CHECK(idx[4] == 0 && idx[5] == 7);
    /* an empty bank */
    CHECK_EQ_INT(msa_route_topk(s, 0, 4, idx, sc), 0);
    /* all equal: lowest indices win, in index order */
    const float e[] = {1, 1, 1, 1, 1};
    n = msa_route_topk(e, 5, 3, idx, sc);
    CHECK(n == 3 && idx[0] == 0 && idx[1] == 1 && idx[2] == 2);
}

TEST(normalize_rows) {
    float x[6] = {3, 4, 0, 0, 0, 0};
    msa_l2_normalize_rows(x, 2, 3);
    CHECK_NEAR(x[0], 0.6, 1e-7);
    CHECK_NEAR(x[1], 0.8, 1e-7);
    CHECK(x[3] == 0 && x[4] == 0 && x[5] == 0);
}

int main(void) {
    RUN(scores_every_variant);
    RUN(standardized_scores);
    RUN(no_routing_tokens);
    RUN(topk_tie_rule);
    RUN(normalize_rows);
    return test_summary();
}
