/* test_msa_route.c — routing math (src/memory/route.c) against a direct transcription of
 * msa-reference.md §2.3 (per token, per head, per chunk, then the reductions), for every head/query/chunk
 * reduce method, cosine and scaled dot, f32 and bf16 keys, keys split over several spans; the top-k tie rule;
 * documents without chunks (deleted) never chosen; k larger than the bank. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"
#include "memory/route.h"
#include "memory/route_scan.h"
#include "model/tensor.h"
#include "test.h"
#include "util/threadpool.h"

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

/* The spec for any shape, in double (msa-reference.md §2.3 and the standardized variant: each routing token's
 * chunk scores z-scored over all chunks of the bank before the query reduce): the independent expectation of
 * simd_and_threads_equal_scalar and standardized_scores, which otherwise compared the code with itself. */
static void ref_doc_scores(const msa_route_params *p, const float *qr, const uint8_t *mask, int ntok,
                           const float *keys, const uint32_t *doc, int nch, int ndoc, float *out) {
    const int H = p->n_head, KV = p->n_head_kv, D = p->head_dim;
    double *y = malloc(sizeof(double) * (size_t)ntok * (size_t)nch), *S = malloc(sizeof(double) * (size_t)nch);
    int last = -1;
    for (int t = 0; t < ntok; t++) if (mask[t]) last = t;
    for (int t = 0; t < ntok; t++) {
        if (!mask[t]) continue;
        for (int c = 0; c < nch; c++) {
            double yy = p->head_reduce == MSA_REDUCE_MEAN ? 0 : -INFINITY;
            for (int h = 0; h < H; h++) {
                const float *q = qr + ((size_t)t * H + h) * D;
                double nq = 0, x = 0;
                for (int i = 0; i < D; i++) nq += (double)q[i] * q[i];
                const double sc = p->cosine ? 1 / sqrt(nq) : 1 / sqrt((double)D);
                for (int i = 0; i < D; i++) x += q[i] * sc * keys[((size_t)c * KV + h / (H / KV)) * D + i];
                if (p->head_reduce == MSA_REDUCE_MEAN) yy += x / H;
                else if (x > yy) yy = x;
            }
            y[(size_t)t * nch + c] = yy;
        }
        if (p->standardize) {
            double m = 0, v = 0;
            for (int c = 0; c < nch; c++) m += y[(size_t)t * nch + c] / nch;
            for (int c = 0; c < nch; c++) v += (y[(size_t)t * nch + c] - m) * (y[(size_t)t * nch + c] - m) / nch;
            for (int c = 0; c < nch; c++) y[(size_t)t * nch + c] = (y[(size_t)t * nch + c] - m) / sqrt(v);
        }
    }
    for (int c = 0; c < nch; c++) {
        double acc = 0, best = -INFINITY;
        int n = 0;
        for (int t = 0; t < ntok; t++) {
            if (!mask[t]) continue;
            acc += y[(size_t)t * nch + c], n++;
            if (y[(size_t)t * nch + c] > best) best = y[(size_t)t * nch + c];
        }
        S[c] = p->query_reduce == MSA_REDUCE_MAX ? best : p->query_reduce == MSA_REDUCE_MEAN ? acc / n
                                                                                   : y[(size_t)last * nch + c];
    }
    for (int d = 0; d < ndoc; d++) {
        double best = -INFINITY, sum = 0;
        int n = 0;
        for (int c = 0; c < nch; c++)
            if ((int)doc[c] == d) {
                sum += S[c], n++;
                if (S[c] > best) best = S[c];
            }
        out[d] = n == 0 ? -INFINITY : (float)(p->chunk_reduce == MSA_REDUCE_MAX ? best : sum / n);
    }
    free(y), free(S);
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
        float want[NDOC]; /* from the double-precision reference, not from the code's own chunk scores */
        ref_doc_scores(&p, qr, mask, NTOK, keys, doc, NC, NDOC, want);
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

/* The tie rule end to end: documents whose chunk keys are identical score exactly alike (the same arithmetic on
 * the same numbers), so top-k must pick the lowest document indices, whatever order their chunks lie in the
 * bank (here: reversed). Expected from the rule in route.h, not from msa_route_topk. */
TEST(topk_ties_through_routing) {
    enum { NC = NDOC * 2 };
    float qr[NTOK * NH * HD], keys[NC * NKV * HD], chunk0[2][NKV * HD];
    for (size_t i = 0; i < sizeof qr / sizeof *qr; i++) qr[i] = frand();
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < NKV * HD; i++) chunk0[j][i] = frand();
    uint32_t doc[NC];
    for (int c = 0; c < NC; c++) { /* documents NDOC-1 .. 0, two chunks each, all with the same two keys */
        doc[c] = (uint32_t)(NDOC - 1 - c / 2);
        memcpy(keys + (size_t)c * NKV * HD, chunk0[c % 2], sizeof chunk0[0]);
    }
    uint8_t mask[NTOK] = {1, 1, 0, 1, 1, 1};
    int checked = 0;
    for (int v = 0; v < 4; v++) {
        msa_route_params p = {.n_head = NH, .n_head_kv = NKV, .head_dim = HD, .head_reduce = MSA_REDUCE_MEAN,
                              .query_reduce = v & 1 ? MSA_REDUCE_MEAN : MSA_REDUCE_MAX,
                              .chunk_reduce = v & 2 ? MSA_REDUCE_MEAN : MSA_REDUCE_MAX};
        msa_route_query q;
        CHECK(msa_route_query_prepare(&p, qr, mask, NTOK, &q) == MSA_OK);
        msa_route_span sp = {keys, doc, NC};
        float sc[NDOC], top_s[3];
        uint32_t top[3];
        CHECK(msa_route_doc_scores(&p, &q, &sp, 1, MSA_ROUTE_F32, NDOC, sc, NULL) == MSA_OK);
        for (int d = 1; d < NDOC; d++) CHECK(sc[d] == sc[0]); /* the premise: a true tie */
        CHECK_EQ_INT(msa_route_topk(sc, NDOC, 3, top, top_s), 3);
        CHECK_EQ_INT(top[0], 0);
        CHECK_EQ_INT(top[1], 1);
        CHECK_EQ_INT(top[2], 2);
        msa_route_query_free(&q);
        checked++;
    }
    CHECK_EQ_INT(checked, 4);
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

/* The kernels' inner products equal the scalar canonical dot bit for bit, for every length (tails of the
 * 16-lane loop included) and every tile remainder of chunks and tokens; f32 keys and bf16 keys read directly. */
TEST(kernel_dots_equal_scalar) {
    enum { LMAX = 70, NC = 13, NT = 9 };
    static float k[NC * LMAX], q[NT * LMAX], want[NC * NT], got[NC * NT];
    static uint16_t kb[NC * LMAX];
    for (int i = 0; i < NC * LMAX; i++) {
        kb[i] = msa_f32_to_bf16(frand());
        k[i] = msa_bf16_to_f32(kb[i]);
    }
    for (int i = 0; i < NT * LMAX; i++) q[i] = frand();
    const msa_simd levels[] = {MSA_SIMD_AVX2, MSA_SIMD_AVX512};
    int n_levels = 0;
    for (int l = 0; l < 2; l++) {
        if (!msa_cpu_set_simd(levels[l])) continue;
        n_levels++;
        for (int len = 1; len <= LMAX; len++)
            for (int nc = 1; nc <= NC; nc += 3)
                for (int nt = 1; nt <= NT; nt++) {
                    for (int c = 0; c < nc; c++)
                        for (int t = 0; t < nt; t++) want[c * nt + t] = msa_route_dot_ref(q + t * LMAX, k + c * LMAX, len);
                    msa_route_dots(k, LMAX, nc, q, LMAX, nt, len, got, (size_t)nt);
                    CHECK(memcmp(want, got, (size_t)nc * nt * sizeof *got) == 0);
                    /* bf16 keys read directly (AVX-512 only; the same bits) */
                    memset(got, 0, sizeof got);
                    if (msa_route_dots_bf16(kb, LMAX, nc, q, LMAX, nt, len, got, (size_t)nt)) {
                        CHECK(levels[l] == MSA_SIMD_AVX512);
                        CHECK(memcmp(want, got, (size_t)nc * nt * sizeof *got) == 0);
                    }
                }
        uint16_t b[37];
        float w1[37], w2[37];
        for (int i = 0; i < 37; i++) b[i] = msa_f32_to_bf16(frand() * 1e3f);
        msa_route_widen_bf16(b, 37, w1);
        for (int i = 0; i < 37; i++) w2[i] = msa_bf16_to_f32(b[i]);
        CHECK(memcmp(w1, w2, sizeof w1) == 0);
    }
    msa_cpu_set_simd(msa_cpu_simd_max());
    if (n_levels == 0) SKIP("this CPU has neither AVX2 nor AVX-512: only the scalar path exists");
}

/* The running maximum read mode keeps per routing token: every SIMD level equals the scalar comparison bit for bit,
 * for every length (vector tails included), rows that repeat (one document's several keys), NaN products (never
 * replace), equal values of either zero sign (keep best's bits) and -inf starts. */
TEST(max_scaled_equal_scalar) {
    enum { N = 41, M = 5, R = 3 };
    static float y[M * N], start[R * N], want[R * N], got[R * N];
    const uint32_t row[M] = {2, 0, 2, 1, 2};
    float scale[M];
    int n_levels = 0;
    for (int l = MSA_SIMD_SCALAR; l < MSA_SIMD_COUNT; l++) {
        if (!msa_cpu_set_simd((msa_simd)l)) continue;
        n_levels++;
        for (int trial = 0; trial < 20; trial++)
            for (int n = 0; n <= N; n++) {
                for (int b = 0; b < M; b++) scale[b] = trial % 4 == 0 ? 0.75f : frand() + 1.5f;
                for (int i = 0; i < M * N; i++) y[i] = frand();
                for (int i = 0; i < R * N; i++) start[i] = trial == 0 ? -INFINITY : frand();
                for (int t = 0; t < n; t++) { /* rows 0 and 1 of y write best rows 2 and 0 */
                    if (t % 7 == 3) y[t] = NAN;
                    if (t % 11 == 5) y[t] = 0.0f, start[2 * n + t] = -0.0f; /* +0 * s against -0: keep -0 */
                    if (t % 13 == 6) y[n + t] = -0.0f, start[t] = 0.0f;
                    if (t % 5 == 1) start[2 * n + t] = y[t] * scale[0]; /* equal: keep */
                }
                memcpy(want, start, sizeof want);
                for (int b = 0; b < M; b++)
                    for (int t = 0; t < n; t++) {
                        const float v = y[b * n + t] * scale[b];
                        if (v > want[row[b] * n + t]) want[row[b] * n + t] = v;
                    }
                memcpy(got, start, sizeof got);
                msa_route_max_scaled(y, scale, row, M, n, got);
                CHECK(memcmp(want, got, sizeof got) == 0); /* past the rows untouched too */
            }
    }
    msa_cpu_set_simd(msa_cpu_simd_max());
    CHECK(n_levels >= 1);
}

/* Random banks through msa_route_doc_scores: every reduce variant, cosine and scaled dot, bf16 and f32 keys
 * (query_reduce "last" and the 3-token mask take the direct-bf16 path), standardized or not; the scalar path with no thread pool is the reference, and every SIMD level with 1, 2
 * and 3 threads must give the same scores bit for bit and the same top-k, ties included (documents 5 and 9
 * hold identical keys, so they tie exactly). */
TEST(simd_and_threads_equal_scalar) {
    enum { H = 8, KV = 2, D = 24, T = 7, NCH = 600, ND = 40, DIM = KV * D };
    float *qr = malloc(sizeof(float) * T * H * D), *kf = malloc(sizeof(float) * NCH * DIM);
    uint16_t *kb = malloc(sizeof(uint16_t) * NCH * DIM);
    uint32_t *doc = malloc(sizeof(uint32_t) * NCH);
    for (int i = 0; i < T * H * D; i++) qr[i] = frand();
    /* documents of 1..29 chunks; 5 and 9 get identical chunk keys (same count) */
    int c = 0;
    uint32_t d = 0;
    int start[ND + 1] = {0};
    while (c < NCH && d < ND) {
        int n = d == 9 ? start[6] - start[5] : 1 + (int)((rng >> 20) % 29);
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        start[d] = c;
        for (int j = 0; j < n && c < NCH; j++, c++) {
            doc[c] = d;
            for (int e = 0; e < DIM; e++)
                kb[(size_t)c * DIM + e] = d == 9 ? kb[(size_t)(start[5] + j) * DIM + e] : msa_f32_to_bf16(frand());
        }
        d++;
    }
    const int nch = c;
    for (int i = 0; i < nch * DIM; i++) kf[i] = msa_bf16_to_f32(kb[i]);
    /* 6 routing tokens, or 3 (up to 4 rows the AVX-512 path reads bf16 keys directly) with chunk mean */
    const uint8_t masks[2][T] = {{1, 1, 0, 1, 1, 1, 1}, {0, 1, 0, 0, 1, 1, 0}};
    msa_threadpool *pools[3];
    for (int i = 0; i < 3; i++) CHECK(msa_threadpool_new(i + 1, &pools[i]) == MSA_OK);
    const msa_reduce hr[] = {MSA_REDUCE_MEAN, MSA_REDUCE_MAX}, qrd[] = {MSA_REDUCE_MAX, MSA_REDUCE_MEAN, MSA_REDUCE_LAST},
                     cr[] = {MSA_REDUCE_MAX, MSA_REDUCE_MEAN};
    int n_compared = 0, n_ties = 0;
    for (int v = 0; v < 2 * 3 * 2 * 2 * 2 * 2; v++) {
        int a = v % 2, b = v / 2 % 3, cc = v / 6 % 2, cos = v / 12 % 2, bf = v / 24 % 2, stdz = v / 48;
        if (stdz && b == 2) continue; /* standardizing one routing token is the "last" case again */
        msa_route_params p = {.n_head = H, .n_head_kv = KV, .head_dim = D, .head_reduce = hr[a], .query_reduce = qrd[b],
                              .chunk_reduce = cr[cc], .cosine = cos, .standardize = stdz};
        msa_route_query q;
        CHECK(msa_route_query_prepare(&p, qr, masks[cc], T, &q) == MSA_OK);
        /* two spans, split inside document 3 (the second, > 256 chunks, runs on the pool's threads) */
        const void *keys = bf ? (const void *)kb : (const void *)kf;
        size_t es = bf ? 2 : 4, cut = (size_t)start[3] + 1;
        msa_route_span sp[2] = {{keys, doc, cut}, {(const char *)keys + cut * DIM * es, doc + cut, (uint64_t)nch - cut}};
        msa_route_dtype dt = bf ? MSA_ROUTE_BF16 : MSA_ROUTE_F32;
        float want[ND], got[ND], ws[8], gs[8];
        uint32_t wi[8], gi[8];
        CHECK(msa_cpu_set_simd(MSA_SIMD_SCALAR));
        CHECK(msa_route_doc_scores(&p, &q, sp, 2, dt, ND, want, NULL) == MSA_OK);
        float ref[ND]; /* kf holds the bf16 keys' exact values: one reference for both key types */
        ref_doc_scores(&p, qr, masks[cc], T, kf, doc, nch, ND, ref);
        int off = 0;
        for (int dd = 0; dd < ND; dd++)
            off += isinf(ref[dd]) ? !isinf(want[dd]) : !(fabs(want[dd] - ref[dd]) <= 2e-4 * (1 + fabs(ref[dd])));
        if (off) fprintf(stderr, "  variant %d: %d documents off the reference\n", v, off);
        CHECK_EQ_INT(off, 0);
        size_t wn = msa_route_topk(want, ND, 8, wi, ws);
        if (want[5] == want[9]) n_ties++;
        for (int l = MSA_SIMD_SCALAR; l < MSA_SIMD_COUNT; l++) {
            if (!msa_cpu_set_simd((msa_simd)l)) continue;
            for (int pi = l == MSA_SIMD_SCALAR ? 2 : 0; pi < 3; pi++) { /* scalar: threads only (it is slow) */
                CHECK(msa_route_doc_scores(&p, &q, sp, 2, dt, ND, got, pools[pi]) == MSA_OK);
                CHECK(memcmp(want, got, sizeof got) == 0);
                size_t gn = msa_route_topk(got, ND, 8, gi, gs);
                CHECK(gn == wn && memcmp(wi, gi, gn * sizeof *gi) == 0);
                n_compared++;
            }
        }
        msa_route_query_free(&q);
    }
    msa_cpu_set_simd(msa_cpu_simd_max());
    CHECK(n_compared >= 80 * 1); /* 80 variants x (scalar on 3 threads, then each SIMD level on 1, 2, 3) */
    if (msa_cpu_simd_max() >= MSA_SIMD_AVX2) CHECK(n_compared >= 80 * 4);
    CHECK(n_ties >= 40);         /* documents 5 and 9 tie in (almost) every variant */
    for (int i = 0; i < 3; i++) msa_threadpool_free(pools[i]);
    free(qr), free(kf), free(kb), free(doc);
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
    RUN(topk_ties_through_routing);
    RUN(normalize_rows);
    RUN(kernel_dots_equal_scalar);
    RUN(max_scaled_equal_scalar);
    RUN(simd_and_threads_equal_scalar);
    return test_summary();
}
