/* test_sampling.c — msa_sample: greedy ties, temperature/top-k/top-p filtering, the empirical distribution,
 * and reproducibility per seed. */
#include <math.h>

#include "msa.h"
#include "test.h"

TEST(greedy_lowest_id_on_ties) {
    float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f, 1.9f};
    msa_sampler_params p = msa_sampler_default_params();
    CHECK_EQ_INT(msa_sample(l, 6, &p, NULL), 1);
    CHECK_EQ_INT(msa_sample(l, 6, NULL, NULL), 1);
    p.temperature = 0.7f;
    p.top_k = 1; /* top-k 1 is greedy whatever the temperature */
    uint64_t rng = msa_sampler_seed(3);
    CHECK_EQ_INT(msa_sample(l, 6, &p, &rng), 1);
}

TEST(distribution_matches_softmax) {
    float l[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    msa_sampler_params p = msa_sampler_default_params();
    p.temperature = 1.0f;
    uint64_t rng = msa_sampler_seed(42);
    int count[3] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        int32_t t = msa_sample(l, 3, &p, &rng);
        CHECK(t >= 0 && t < 3);
        if (t >= 0 && t < 3) count[t]++;
    }
    CHECK_NEAR(count[0] / (double)N, 0.5, 0.02);
    CHECK_NEAR(count[1] / (double)N, 0.3, 0.02);
    CHECK_NEAR(count[2] / (double)N, 0.2, 0.02);
    /* a low temperature sharpens: the best token dominates */
    p.temperature = 0.1f;
    int best = 0;
    for (int i = 0; i < 2000; i++) best += msa_sample(l, 3, &p, &rng) == 0;
    CHECK(best > 1950);
}

TEST(top_k_and_top_p_filter) {
    float l[100];
    for (int i = 0; i < 100; i++) l[i] = (float)(i % 10) * 0.1f; /* ids 9,19,...,99 share the top logit */
    msa_sampler_params p = msa_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 3; /* the 3 best by logit, lower id first on ties: 9, 19, 29 */
    uint64_t rng = msa_sampler_seed(7);
    int seen[100] = {0};
    for (int i = 0; i < 3000; i++) {
        int32_t t = msa_sample(l, 100, &p, &rng);
        if (t >= 0 && t < 100) seen[t]++;
    }
    CHECK(seen[9] > 0 && seen[19] > 0 && seen[29] > 0);
    CHECK_EQ_INT(seen[9] + seen[19] + seen[29], 3000);
    /* top-p: probabilities 0.6, 0.25, 0.15 -> p=0.5 keeps only the first, p=0.8 the first two */
    float m[3] = {logf(0.6f), logf(0.25f), logf(0.15f)};
    p.top_k = 0;
    p.top_p = 0.5f;
    for (int i = 0; i < 500; i++) CHECK_EQ_INT(msa_sample(m, 3, &p, &rng), 0);
    p.top_p = 0.8f;
    int c[3] = {0};
    for (int i = 0; i < 4000; i++) c[msa_sample(m, 3, &p, &rng)]++;
    CHECK_EQ_INT(c[2], 0);
    CHECK_NEAR(c[0] / 4000.0, 0.6 / 0.85, 0.03);
}

TEST(seed_reproducible) {
    float l[50];
    for (int i = 0; i < 50; i++) l[i] = sinf((float)i);
    msa_sampler_params p = msa_sampler_default_params();
    p.temperature = 1.5f;
    p.top_p = 0.95f;
    uint64_t a = msa_sampler_seed(123), b = msa_sampler_seed(123), c = msa_sampler_seed(124);
    int same = 1, differs = 0;
    for (int i = 0; i < 200; i++) {
        int32_t x = msa_sample(l, 50, &p, &a), y = msa_sample(l, 50, &p, &b), z = msa_sample(l, 50, &p, &c);
        same &= x == y;
        differs |= x != z;
    }
    CHECK(same);
    CHECK(differs);
    CHECK(msa_sampler_seed(0) != 0);
}

int main(void) {
    RUN(greedy_lowest_id_on_ties);
    RUN(distribution_matches_softmax);
    RUN(top_k_and_top_p_filter);
    RUN(seed_reproducible);
    return test_summary();
}
