/* test_backend_ops.c — the CPU backend's RoPE, attention and stage-1 pooling ops (a bare backend: no model) against
 * definitions written out here in double precision, independent of any checkpoint or reference fixture:
 * - norm_rope: each pair (x0, x1) rotated by its angle a is (x0 cos a - x1 sin a, x1 cos a + x0 sin a)
 *   (RoFormer eq. 34; HF rotate_half), for NEOX pairs (i, i + d/2) and NORM pairs (2i, 2i+1), on all three
 *   numeric paths (f32, ggml's fma contraction, transformers' bf16 rounding); and the rotation keeps the
 *   length of every pair (a property that a sign error breaks).
 * - attention: softmax(q.k / sqrt(D)) over exactly the visible cache slots (masked slots and other sequences
 *   hidden, a row's own slot always seen), f32 and llama.cpp numerics.
 * - pool: each chunk is the mean of its own rows — a full chunk of 64 rows and partial ones of 1, 5 and 63
 *   rows — so a divisor of the pooling size instead of the chunk's length is visible.
 * The other programs that see these ops go through whole models (test_backbone, test_msa_numerics,
 * test_llamacpp_greedy); this one names the op that broke. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "test.h"

static msa_backend *be;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double rnd(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ULL << 52) - 1.0;
}

static msa_buf *put(const void *src, size_t bytes) {
    msa_buf *b = be->ops->alloc(be, bytes);
    if (b && be->ops->upload(be, b, 0, src, bytes) != MSA_OK) return NULL;
    return b;
}

static float bf16r(float f) { /* round to nearest even bf16, written out (not the engine's helper) */
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

TEST(rope_rotates_pairs) {
    const int D = 64, n = 5, heads = 3, half = D / 2;
    int checked = 0;
    for (int mode = 0; mode < 6; mode++) {
        const msa_rope_style style = mode & 1 ? MSA_ROPE_NORM : MSA_ROPE_NEOX;
        const int path = mode / 2; /* 0 f32, 1 ggml, 2 bf16 */
        float *x = malloc((size_t)n * heads * D * sizeof *x), *cs = malloc((size_t)n * half * sizeof *cs),
              *sn = malloc((size_t)n * half * sizeof *sn), *y = malloc((size_t)n * heads * D * sizeof *y);
        for (int i = 0; i < n * heads * D; i++) x[i] = (float)(2.0 * rnd());
        if (path == 2)
            for (int i = 0; i < n * heads * D; i++) x[i] = bf16r(x[i]);
        for (int i = 0; i < n * half; i++) { /* angles away from 0 and pi: sin is never small */
            double a = 0.4 + 2.3 * (rnd() + 1.0) / 2.0;
            cs[i] = (float)cos(a), sn[i] = (float)sin(a);
            if (path == 2) cs[i] = bf16r(cs[i]), sn[i] = bf16r(sn[i]);
        }
        msa_buf *bx = put(x, (size_t)n * heads * D * sizeof *x), *bc = put(cs, (size_t)n * half * sizeof *cs),
                *bs = put(sn, (size_t)n * half * sizeof *sn);
        CHECK(bx && bc && bs);
        if (!bx || !bc || !bs) return;
        be->ops->norm_rope(be, bx, n, heads, D, NULL, 1e-6f, bc, bs, style, path == 2, path == 1);
        CHECK_EQ_INT(be->ops->download(be, y, bx, 0, (size_t)n * heads * D * sizeof *y), MSA_OK);
        /* bf16 rounds each product and each sum: a few units of 2^-8 relative to the pair's length */
        const double tol = path == 2 ? 3.0 / 256 : 1e-6;
        double worst = 0, worst_len = 0;
        for (int t = 0; t < n; t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    const int i0 = style == MSA_ROPE_NEOX ? i : 2 * i, i1 = style == MSA_ROPE_NEOX ? i + half : 2 * i + 1;
                    const size_t o = ((size_t)t * heads + h) * D;
                    const double x0 = x[o + i0], x1 = x[o + i1], c = cs[t * half + i], s = sn[t * half + i];
                    const double r = sqrt(x0 * x0 + x1 * x1) + 1e-3;
                    const double e0 = x0 * c - x1 * s, e1 = x1 * c + x0 * s;
                    const double d = fmax(fabs(y[o + i0] - e0), fabs(y[o + i1] - e1)) / r;
                    const double len = sqrt((double)y[o + i0] * y[o + i0] + (double)y[o + i1] * y[o + i1]);
                    worst = fmax(worst, d);
                    worst_len = fmax(worst_len, fabs(len - sqrt(x0 * x0 + x1 * x1)) / r);
                    checked++;
                }
        if (worst > tol || worst_len > tol)
            printf("  rope %s %s: worst error %.3g, length change %.3g (tol %.3g)\n", style == MSA_ROPE_NEOX ? "neox" : "norm",
                   path == 0 ? "f32" : path == 1 ? "ggml" : "bf16", worst, worst_len, tol);
        CHECK(worst <= tol);
        CHECK(worst_len <= tol);
        be->ops->free(be, bx), be->ops->free(be, bc), be->ops->free(be, bs);
        free(x), free(cs), free(sn), free(y);
    }
    CHECK_EQ_INT(checked, 6 * 5 * 3 * 32);
}

TEST(rope_quarter_turn) {
    /* a = pi/2 exactly (cos 0, sin 1): (x0, x1) -> (-x1, x0), every path, no tolerance needed */
    const int D = 8;
    const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float want_neox[8] = {-5, -6, -7, -8, 1, 2, 3, 4}, want_norm[8] = {-2, 1, -4, 3, -6, 5, -8, 7};
    float cs[4] = {0, 0, 0, 0}, sn[4] = {1, 1, 1, 1}, y[8];
    for (int mode = 0; mode < 6; mode++) {
        const msa_rope_style style = mode & 1 ? MSA_ROPE_NORM : MSA_ROPE_NEOX;
        const int path = mode / 2;
        msa_buf *bx = put(x, sizeof x), *bc = put(cs, sizeof cs), *bs = put(sn, sizeof sn);
        CHECK(bx && bc && bs);
        if (!bx || !bc || !bs) return;
        be->ops->norm_rope(be, bx, 1, 1, D, NULL, 1e-6f, bc, bs, style, path == 2, path == 1);
        CHECK_EQ_INT(be->ops->download(be, y, bx, 0, sizeof y), MSA_OK);
        const float *want = style == MSA_ROPE_NEOX ? want_neox : want_norm;
        for (int i = 0; i < D; i++) CHECK_NEAR(y[i], want[i], 0.0);
        be->ops->free(be, bx), be->ops->free(be, bc), be->ops->free(be, bs);
    }
}

TEST(pool_means_partial_chunks) {
    /* chunks of a 64-token pooling: full (64 rows), partial (5), a single row, 63 rows; D = 24 */
    const int D = 24, n_chunks = 4;
    const int len[4] = {64, 5, 1, 63};
    int row0[4], rows = 0;
    for (int c = 0; c < n_chunks; c++) row0[c] = rows, rows += len[c];
    float *src = malloc((size_t)rows * D * sizeof *src), out[4 * 24];
    for (int i = 0; i < rows * D; i++) src[i] = (float)(3.0 + rnd()); /* mean far from 0: a wrong divisor shows */
    msa_buf *bsrc = put(src, (size_t)rows * D * sizeof *src), *br = put(row0, sizeof row0), *bl = put(len, sizeof len),
            *bd = be->ops->alloc(be, sizeof out);
    CHECK(bsrc && br && bl && bd);
    if (!bsrc || !br || !bl || !bd) return;
    CHECK_EQ_INT(be->ops->pool(be, bsrc, D, br, bl, n_chunks, bd), MSA_OK);
    CHECK_EQ_INT(be->ops->download(be, out, bd, 0, sizeof out), MSA_OK);
    for (int c = 0; c < n_chunks; c++)
        for (int i = 0; i < D; i++) {
            double s = 0;
            for (int r = 0; r < len[c]; r++) s += src[(size_t)(row0[c] + r) * D + i];
            const double want = s / len[c];
            CHECK_NEAR(out[c * D + i], want, 1e-6 * fabs(want));
        }
    be->ops->free(be, bsrc), be->ops->free(be, br), be->ops->free(be, bl), be->ops->free(be, bd);
    free(src);
}

TEST(attention_sees_only_visible_slots) {
    /* one query head pair sharing one K/V head, head_dim 8, a cache of 8 slots: slot 2 masked (never attended
     * by a later query), slot 4 of another sequence; query rows at slots 5 and 6 (slot 6 itself masked: a row
     * always sees its own slot). Expected: softmax(q.k / sqrt(D)) over exactly the visible slots, times v. */
    enum { H = 2, KV = 1, D = 8, NCTX = 8, N = 2, BASE = 5 };
    float q[N * H * D], kc[KV * NCTX * D], vc[KV * NCTX * D], out[N * H * D];
    for (int i = 0; i < N * H * D; i++) q[i] = (float)(1.5 * rnd());
    for (int i = 0; i < KV * NCTX * D; i++) kc[i] = (float)(1.5 * rnd()), vc[i] = (float)rnd();
    int32_t seq[NCTX] = {0, 0, 0, 0, 1, 0, 0, 0}, qseq[N] = {0, 0}, qbeg[N] = {0, 0}, qend[N] = {BASE + 1, BASE + 2};
    uint8_t valid[NCTX] = {1, 1, 0, 1, 1, 1, 0, 0};
    const int visible[N][8] = {{0, 1, 3, 5, -1}, {0, 1, 3, 5, 6, -1}};
    for (int llamacpp = 0; llamacpp < 2; llamacpp++) {
        msa_buf *bq = put(q, sizeof q), *bk = put(kc, sizeof kc), *bv = put(vc, sizeof vc), *bo = be->ops->alloc(be, sizeof out),
                *bseq = put(seq, sizeof seq), *bval = put(valid, sizeof valid), *bqs = put(qseq, sizeof qseq),
                *bqb = put(qbeg, sizeof qbeg), *bqe = put(qend, sizeof qend);
        CHECK(bq && bk && bv && bo && bseq && bval && bqs && bqb && bqe);
        if (!bq || !bk || !bv || !bo || !bseq || !bval || !bqs || !bqb || !bqe) return;
        msa_attn_args a = {.n = N, .base = BASE, .n_ctx = NCTX, .q = bq, .out = bo, .k_cache = bk, .v_cache = bv,
                           .slot_seq = bseq, .slot_valid = bval, .q_seq = bqs, .q_begin = bqb, .q_end = bqe,
                           .llamacpp = llamacpp};
        CHECK_EQ_INT(be->ops->attention(be, &a, H, KV, D), MSA_OK);
        CHECK_EQ_INT(be->ops->download(be, out, bo, 0, sizeof out), MSA_OK);
        /* llama.cpp's numerics hold K, V and the running sums in f16: about 1e-3 */
        const double tol = llamacpp ? 4e-3 : 1e-5;
        for (int r = 0; r < N; r++)
            for (int h = 0; h < H; h++) {
                double sc[8], mx = -1e300, z = 0;
                int nv = 0;
                for (; visible[r][nv] >= 0; nv++) {
                    const int t = visible[r][nv];
                    double d = 0;
                    for (int i = 0; i < D; i++) d += (double)q[(r * H + h) * D + i] * kc[t * D + i];
                    sc[nv] = d / sqrt((double)D);
                    mx = fmax(mx, sc[nv]);
                }
                for (int j = 0; j < nv; j++) z += exp(sc[j] - mx);
                for (int i = 0; i < D; i++) {
                    double o = 0;
                    for (int j = 0; j < nv; j++) o += exp(sc[j] - mx) / z * vc[visible[r][j] * D + i];
                    CHECK_NEAR(out[(r * H + h) * D + i], o, tol);
                }
            }
        be->ops->free(be, bq), be->ops->free(be, bk), be->ops->free(be, bv), be->ops->free(be, bo);
        be->ops->free(be, bseq), be->ops->free(be, bval), be->ops->free(be, bqs), be->ops->free(be, bqb),
            be->ops->free(be, bqe);
    }
}

int main(void) {
    if (msa_backend_cpu_new(NULL, &be) != MSA_OK || !be) {
        printf("FAIL backend (msa_backend_cpu_new: %s)\n", msa_last_error());
        return 1;
    }
    RUN(rope_rotates_pairs);
    RUN(rope_quarter_turn);
    RUN(pool_means_partial_chunks);
    RUN(attention_sees_only_visible_slots);
    msa_backend_free(be);
    return test_summary();
}
