/* test_router_train.c — router training (src/memory/router_train.c): the InfoNCE loss over read mode's routing
 * score against a direct evaluation of the formula, and its analytic gradients against central finite
 * differences, on small random shapes (two layers, uneven query/document lengths). Bounded: milliseconds. */
#include <math.h>
#include <stdint.h>

#include "memory/router_train.h"
#include "test.h"

static uint64_t rs = 12345;
static float urand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

enum { L = 2, DIN = 7, DOUT = 5, NQ = 3, ND = 4 };
static float X[L][NQ + ND][4][DIN];
static const int QN[NQ] = {2, 3, 1}, DN[ND] = {3, 1, 4, 2};
static msa_rt_seq qs[L * NQ], ds[L * ND];
static const int POS[NQ] = {0, 2, 3};
static float wq[L][DOUT * DIN], wk[L][DOUT * DIN], gq_[L][DOUT * DIN], gk_[L][DOUT * DIN];

static msa_rt_batch setup(void) {
    for (int l = 0; l < L; l++) {
        for (int s = 0; s < NQ + ND; s++)
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < DIN; i++) X[l][s][r][i] = urand();
        for (int i = 0; i < NQ; i++) qs[l * NQ + i] = (msa_rt_seq){&X[l][i][0][0], QN[i]};
        for (int i = 0; i < ND; i++) ds[l * ND + i] = (msa_rt_seq){&X[l][NQ + i][0][0], DN[i]};
        for (int i = 0; i < DOUT * DIN; i++) wq[l][i] = urand(), wk[l][i] = urand();
    }
    return (msa_rt_batch){.n_layers = L, .din = DIN, .dout = DOUT, .n_q = NQ, .n_d = ND, .q = qs, .d = ds,
                          .pos = POS, .tau = 0.1f};
}

static double cosv(const float *w1, const float *x, const float *w2, const float *y) {
    double a[DOUT], b[DOUT], na = 0, nb = 0, d = 0;
    for (int o = 0; o < DOUT; o++) {
        a[o] = b[o] = 0;
        for (int i = 0; i < DIN; i++) a[o] += (double)w1[o * DIN + i] * x[i], b[o] += (double)w2[o * DIN + i] * y[i];
        na += a[o] * a[o], nb += b[o] * b[o], d += a[o] * b[o];
    }
    return d / sqrt(na * nb);
}

TEST(router_loss_matches_formula) {
    msa_rt_batch b = setup();
    float *pq[L] = {wq[0], wq[1]}, *pk[L] = {wk[0], wk[1]};
    float loss = 0, sc[NQ * ND];
    CHECK(msa_rt_loss(&b, pq, pk, &loss, NULL, NULL, sc, NULL) == MSA_OK);
    double tot = 0;
    for (int i = 0; i < NQ; i++) {
        double z[ND], m = -1e30, se = 0;
        for (int d = 0; d < ND; d++) {
            z[d] = 0;
            for (int l = 0; l < L; l++) {
                double s = 0;
                for (int t = 0; t < QN[i]; t++) {
                    double best = -2;
                    for (int c = 0; c < DN[d]; c++) best = fmax(best, cosv(wq[l], X[l][i][t], wk[l], X[l][NQ + d][c]));
                    s += best;
                }
                z[d] += s / QN[i];
            }
            CHECK_NEAR(sc[i * ND + d], z[d], 1e-4);
            z[d] /= 0.1;
            m = fmax(m, z[d]);
        }
        for (int d = 0; d < ND; d++) se += exp(z[d] - m);
        tot += m + log(se) - z[POS[i]];
    }
    CHECK_NEAR(loss, tot / NQ, 1e-3);
}

TEST(router_gradients_match_finite_differences) {
    msa_rt_batch b = setup();
    float *pq[L] = {wq[0], wq[1]}, *pk[L] = {wk[0], wk[1]}, *gq[L] = {gq_[0], gq_[1]}, *gk[L] = {gk_[0], gk_[1]};
    float loss = 0;
    CHECK(msa_rt_loss(&b, pq, pk, &loss, gq, gk, NULL, NULL) == MSA_OK);
    int bad = 0, n = 0;
    double worst = 0;
    for (int l = 0; l < L; l++)
        for (int which = 0; which < 2; which++)
            for (int i = 0; i < DOUT * DIN; i += 3) {
                float *w = which ? &wk[l][i] : &wq[l][i];
                const float g = which ? gk_[l][i] : gq_[l][i], keep = *w, h = 1e-3f;
                float lp = 0, lm = 0;
                *w = keep + h;
                msa_rt_loss(&b, pq, pk, &lp, NULL, NULL, NULL, NULL);
                *w = keep - h;
                msa_rt_loss(&b, pq, pk, &lm, NULL, NULL, NULL, NULL);
                *w = keep;
                const double fd = ((double)lp - lm) / (2.0 * h), err = fabs(fd - g) / fmax(1e-2, fabs(fd) + fabs(g));
                if (err > worst) worst = err;
                bad += err > 2e-2;
                n++;
            }
    if (bad) fprintf(stderr, "  %d of %d gradient entries off (worst relative error %.3g)\n", bad, n, worst);
    CHECK(bad == 0);
    CHECK(n > 20);
}

TEST(router_loss_rejects_bad_batches) {
    msa_rt_batch b = setup();
    float *pq[L] = {wq[0], wq[1]}, *pk[L] = {wk[0], wk[1]};
    float loss;
    int bad_pos[NQ] = {0, 9, 1};
    b.pos = bad_pos;
    CHECK(msa_rt_loss(&b, pq, pk, &loss, NULL, NULL, NULL, NULL) != MSA_OK);
    b = setup();
    b.tau = 0;
    CHECK(msa_rt_loss(&b, pq, pk, &loss, NULL, NULL, NULL, NULL) != MSA_OK);
}

/* the query-side router's batches: documents given as keys Wk y (d_keys) give the same loss, scores and query
 * gradient as the full batch, with no Wk or gk */
TEST(router_query_side_matches_full) {
    msa_rt_batch b = setup();
    float *pq[L] = {wq[0], wq[1]}, *pk[L] = {wk[0], wk[1]}, *gq[L] = {gq_[0], gq_[1]}, *gk[L] = {gk_[0], gk_[1]};
    float loss = 0, sc[NQ * ND];
    CHECK(msa_rt_loss(&b, pq, pk, &loss, gq, gk, sc, NULL) == MSA_OK);
    static float Y[L][ND][4][DOUT], g2[L][DOUT * DIN];
    static msa_rt_seq dk[L * ND];
    for (int l = 0; l < L; l++)
        for (int d = 0; d < ND; d++) {
            for (int c = 0; c < DN[d]; c++)
                for (int o = 0; o < DOUT; o++) {
                    double a = 0;
                    for (int i = 0; i < DIN; i++) a += (double)wk[l][o * DIN + i] * X[l][NQ + d][c][i];
                    Y[l][d][c][o] = (float)a;
                }
            dk[l * ND + d] = (msa_rt_seq){&Y[l][d][0][0], DN[d]};
        }
    b.d = dk;
    b.d_keys = 1;
    float loss2 = 0, sc2[NQ * ND], *gq2[L] = {g2[0], g2[1]};
    CHECK(msa_rt_loss(&b, pq, NULL, &loss2, gq2, NULL, sc2, NULL) == MSA_OK);
    CHECK_NEAR(loss2, loss, 1e-4);
    for (int i = 0; i < NQ * ND; i++) CHECK_NEAR(sc2[i], sc[i], 1e-5);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < DOUT * DIN; i++) CHECK_NEAR(g2[l][i], gq_[l][i], 1e-4);
}

int main(void) {
    RUN(router_loss_matches_formula);
    RUN(router_gradients_match_finite_differences);
    RUN(router_loss_rejects_bad_batches);
    RUN(router_query_side_matches_full);
    return test_summary();
}
