/* test_cuda_ops.c — every operation of the CUDA backend against the CPU backend (the numerical reference),
 * on fresh random inputs of several shapes (llm.c's habit and ggml's test-backend-ops). Before each call the
 * output buffers of both backends are poisoned with NaN bytes, so an element the GPU leaves unwritten is a
 * failure, not a coincidence. Error measure: max |gpu - cpu| / max |cpu| over the output, with a threshold
 * per numeric class:
 *   exact copies, gathers, f32/bf16 roundings, adds       0 (bit-identical)
 *   f32 arithmetic in another summation order              1e-5
 *   bf16 rounding points (one bf16 ulp may flip)           1/128
 *   quantized weights (CPU rounds activations to q8)       3e-2
 * Needs a CUDA GPU: built by `make CUDA=1 tests-gpu`, run by tests/gpu/run.sh on the GPU machine. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "memory/ask.h"
#include "memory/route_resident.h"
#include "model/tensor.h"
#include "test.h"

static msa_backend *cpu, *gpu;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rnd_f(void) { return (float)((rnd_u32() & 0xFFFFFF) / 8388608.0 - 1.0); } /* [-1, 1) */

/* One buffer on each backend. */
typedef struct {
    msa_buf *c, *g;
    size_t bytes;
} pair;

static pair pair_new(size_t bytes) {
    pair p = {cpu->ops->alloc(cpu, bytes), gpu->ops->alloc(gpu, bytes), bytes};
    if (!p.c || !p.g) {
        fprintf(stderr, "allocation of %zu bytes failed: %s\n", bytes, msa_last_error());
        exit(1);
    }
    return p;
}

static void pair_free(pair *p) {
    cpu->ops->free(cpu, p->c);
    gpu->ops->free(gpu, p->g);
}

static void pair_put(pair *p, const void *host) {
    CHECK(cpu->ops->upload(cpu, p->c, 0, host, p->bytes) == MSA_OK);
    CHECK(gpu->ops->upload(gpu, p->g, 0, host, p->bytes) == MSA_OK);
}

static void pair_poison(pair *p) {
    void *nan = malloc(p->bytes);
    memset(nan, 0xFF, p->bytes);
    pair_put(p, nan);
    free(nan);
}

static pair pair_random(size_t n_floats, float scale) {
    pair p = pair_new(n_floats * sizeof(float));
    float *h = malloc(p.bytes);
    for (size_t i = 0; i < n_floats; i++) h[i] = rnd_f() * scale;
    pair_put(&p, h);
    free(h);
    return p;
}

static pair pair_ints(const int32_t *v, size_t n) {
    pair p = pair_new(n * sizeof(int32_t));
    pair_put(&p, v);
    return p;
}

/* Compare n floats; returns the normalised error and checks it against tol (and for NaNs). */
static double pair_check(const char *what, pair *p, size_t n, double tol) {
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    CHECK(cpu->ops->download(cpu, a, p->c, 0, n * sizeof(float)) == MSA_OK);
    CHECK(gpu->ops->sync(gpu) == MSA_OK);
    CHECK(gpu->ops->download(gpu, b, p->g, 0, n * sizeof(float)) == MSA_OK);
    double maxref = 0, maxdiff = 0;
    size_t nan = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            nan++;
            continue;
        }
        double d = fabs((double)a[i] - b[i]);
        if (fabs(a[i]) > maxref) maxref = fabs(a[i]);
        if (d > maxdiff) maxdiff = d, worst = i;
    }
    double err = maxref > 0 ? maxdiff / maxref : maxdiff;
    printf("  %-52s err %.3g (tol %.3g)%s\n", what, err, tol, nan ? "  NaN!" : "");
    if (nan) fprintf(stderr, "  %s: %zu NaN elements (unwritten output?)\n", what, nan);
    if (err > tol)
        fprintf(stderr, "  %s: worst element %zu cpu %.9g gpu %.9g\n", what, worst, (double)a[worst], (double)b[worst]);
    CHECK(nan == 0);
    CHECK(err <= tol);
    free(a);
    free(b);
    return err;
}

/* ----------------------------------------------------------------------------------------- weights */

/* The backend caches weights and norm vectors by address for its lifetime (backend.h): everything passed as
 * one stays allocated, unchanged, until the program ends, so no two cases can share an address. */
static void *kept[4096];
static int n_kept;
static void *keep(void *p) {
    if (n_kept < (int)(sizeof kept / sizeof *kept)) kept[n_kept++] = p;
    return p;
}

/* A random [rows, cols] tensor of dtype t (the view and its data kept alive: keep()). */
static const msa_tensor *make_tensor(msa_dtype t, int64_t rows, int64_t cols) {
    size_t rb = msa_dtype_row_bytes(t, cols), nb = rb * (size_t)rows;
    uint8_t *p = malloc(nb);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = p + (size_t)r * rb;
        for (int64_t i = 0; i < cols; i++) {
            float v = rnd_f() * 0.1f;
            if (t == MSA_DTYPE_F32) memcpy(row + 4 * i, &v, 4);
            if (t == MSA_DTYPE_F16) {
                uint16_t h = msa_f32_to_f16(v);
                memcpy(row + 2 * i, &h, 2);
            }
            if (t == MSA_DTYPE_BF16) {
                uint16_t h = msa_f32_to_bf16(v);
                memcpy(row + 2 * i, &h, 2);
            }
        }
        if (t == MSA_DTYPE_Q8_0 || t == MSA_DTYPE_Q4_0 || t == MSA_DTYPE_Q4_1) {
            size_t bs = t == MSA_DTYPE_Q8_0 ? 34 : t == MSA_DTYPE_Q4_0 ? 18 : 20;
            for (int64_t b = 0; b < cols / 32; b++) {
                uint8_t *blk = row + (size_t)b * bs;
                uint16_t d = msa_f32_to_f16(0.001f + 0.01f * (rnd_u32() % 100) / 100.0f);
                memcpy(blk, &d, 2);
                size_t q0 = 2;
                if (t == MSA_DTYPE_Q4_1) {
                    uint16_t m = msa_f32_to_f16(-0.05f * (rnd_u32() % 100) / 100.0f);
                    memcpy(blk + 2, &m, 2);
                    q0 = 4;
                }
                for (size_t j = q0; j < bs; j++) blk[j] = (uint8_t)rnd_u32();
            }
        }
    }
    msa_tensor *w = keep(malloc(sizeof *w));
    *w = (msa_tensor){.name = "random", .dtype = t, .n_dims = 2, .shape = {rows, cols, 1, 1}, .data = keep(p), .nbytes = nb};
    return w;
}

/* --------------------------------------------------------------------------------------------- cases */

TEST(embed_every_dtype) {
    const msa_dtype types[] = {MSA_DTYPE_F32, MSA_DTYPE_F16, MSA_DTYPE_BF16, MSA_DTYPE_Q8_0, MSA_DTYPE_Q4_0,
                               MSA_DTYPE_Q4_1};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const msa_tensor *t = make_tensor(types[ti], 100, 96);
        int32_t ids[7];
        for (int i = 0; i < 7; i++) ids[i] = (int32_t)(rnd_u32() % 100);
        pair pid = pair_ints(ids, 7), x = pair_new(7 * 96 * sizeof(float));
        pair_poison(&x);
        cpu->ops->embed(cpu, t, pid.c, 7, x.c);
        gpu->ops->embed(gpu, t, pid.g, 7, x.g);
        char what[64];
        snprintf(what, sizeof what, "embed %s", msa_dtype_name(types[ti]));
        pair_check(what, &x, 7 * 96, 0.0);
        pair_free(&pid);
        pair_free(&x);
    }
}

TEST(rmsnorm_shapes_rows_bf16) {
    const int dims[] = {64, 576, 2560}, ns[] = {1, 5, 33};
    for (int di = 0; di < 3; di++)
        for (int ni = 0; ni < 3; ni++)
            for (int mode = 0; mode < 4; mode++) {
                const int dim = dims[di], n = ns[ni];
                const bool bf16 = mode & 1, rows = mode & 2;
                float *w = keep(malloc((size_t)dim * sizeof(float)));
                for (int i = 0; i < dim; i++) w[i] = 1.0f + 0.5f * rnd_f();
                int32_t *rl = malloc((size_t)n * sizeof(int32_t));
                for (int i = 0; i < n; i++) rl[i] = (int32_t)(rnd_u32() % (unsigned)n);
                pair x = pair_random((size_t)n * dim, 3.0f), y = pair_new((size_t)n * dim * sizeof(float));
                pair pr = pair_ints(rl, (size_t)n);
                pair_poison(&y);
                cpu->ops->rmsnorm(cpu, y.c, x.c, rows ? pr.c : NULL, w, n, dim, 1e-6f, bf16);
                gpu->ops->rmsnorm(gpu, y.g, x.g, rows ? pr.g : NULL, w, n, dim, 1e-6f, bf16);
                char what[96];
                snprintf(what, sizeof what, "rmsnorm dim %d n %d%s%s", dim, n, bf16 ? " bf16" : "", rows ? " rows" : "");
                pair_check(what, &y, (size_t)n * dim, bf16 ? 1.0 / 128 : 1e-5);
                pair_free(&x);
                pair_free(&y);
                pair_free(&pr);
                free(rl);
            }
}

TEST(matmul_every_dtype_and_shape) {
    const msa_dtype types[] = {MSA_DTYPE_F32, MSA_DTYPE_F16, MSA_DTYPE_BF16, MSA_DTYPE_Q8_0, MSA_DTYPE_Q4_0,
                               MSA_DTYPE_Q4_1};
    const int64_t shapes[][2] = {{64, 64}, {96, 576}, {2560, 1024}, {1000, 256}};
    const int ns[] = {1, 3, 64};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++)
        for (int si = 0; si < 4; si++)
            for (int ni = 0; ni < 3; ni++) {
                const int64_t out = shapes[si][0], in = shapes[si][1];
                const int n = ns[ni];
                const msa_tensor *w = make_tensor(types[ti], out, in);
                pair x = pair_random((size_t)n * in, 1.0f), y = pair_new((size_t)n * out * sizeof(float));
                pair_poison(&y);
                const msa_tensor *ws[] = {w};
                cpu->ops->matmul(cpu, 1, ws, x.c, (msa_buf *const[]){y.c}, n);
                gpu->ops->matmul(gpu, 1, ws, x.g, (msa_buf *const[]){y.g}, n);
                char what[96];
                snprintf(what, sizeof what, "matmul %s [%lld x %lld] n %d", msa_dtype_name(types[ti]), (long long)out,
                         (long long)in, n);
                const bool quant = types[ti] >= MSA_DTYPE_Q8_0;
                pair_check(what, &y, (size_t)n * out, quant ? 3e-2 : 1e-5);
                pair_free(&x);
                pair_free(&y);
            }
}

TEST(matmul_multi_shares_input) {
    const msa_tensor *ws[] = {make_tensor(MSA_DTYPE_BF16, 256, 128), make_tensor(MSA_DTYPE_BF16, 64, 128),
                              make_tensor(MSA_DTYPE_BF16, 64, 128)};
    pair x = pair_random(9 * 128, 1.0f), ya = pair_new(9 * 256 * 4), yb = pair_new(9 * 64 * 4), yc = pair_new(9 * 64 * 4);
    pair_poison(&ya), pair_poison(&yb), pair_poison(&yc);
    cpu->ops->matmul(cpu, 3, ws, x.c, (msa_buf *const[]){ya.c, yb.c, yc.c}, 9);
    gpu->ops->matmul(gpu, 3, ws, x.g, (msa_buf *const[]){ya.g, yb.g, yc.g}, 9);
    pair_check("matmul x3 bf16 (q/k/v)", &ya, 9 * 256, 1e-5);
    pair_check("matmul x3 bf16 (q/k/v) second", &yb, 9 * 64, 1e-5);
    pair_check("matmul x3 bf16 (q/k/v) third", &yc, 9 * 64, 1e-5);
    pair_free(&x), pair_free(&ya), pair_free(&yb), pair_free(&yc);
}

TEST(round_bf16_f16) {
    for (int f16 = 0; f16 < 2; f16++) {
        pair x = pair_random(10007, 100.0f);
        cpu->ops->round(cpu, x.c, 10007, f16);
        gpu->ops->round(gpu, x.g, 10007, f16);
        pair_check(f16 ? "round f16" : "round bf16", &x, 10007, 0.0);
        pair_free(&x);
    }
}

TEST(norm_rope_styles) {
    const int dims[] = {64, 128};
    for (int di = 0; di < 2; di++)
        for (int mode = 0; mode < 16; mode++) {
            const int D = dims[di], n = 7, heads = 3 + (mode & 1) * 5;
            const bool with_w = mode & 2, bf16 = mode & 4;
            const msa_rope_style style = (mode & 8) ? MSA_ROPE_NORM : MSA_ROPE_NEOX;
            for (int ggml = 0; ggml < (bf16 ? 1 : 2); ggml++) {
                float *w = keep(malloc((size_t)D * sizeof(float))), *cs = malloc((size_t)n * D / 2 * sizeof(float)),
                      *sn = malloc((size_t)n * D / 2 * sizeof(float));
                for (int i = 0; i < D; i++) w[i] = 1.0f + 0.3f * rnd_f();
                for (int i = 0; i < n * D / 2; i++) {
                    float ang = 10.0f * rnd_f();
                    cs[i] = cosf(ang), sn[i] = sinf(ang);
                }
                pair x = pair_random((size_t)n * heads * D, 2.0f), pc = pair_new((size_t)n * D / 2 * 4),
                     ps = pair_new((size_t)n * D / 2 * 4);
                pair_put(&pc, cs), pair_put(&ps, sn);
                cpu->ops->norm_rope(cpu, x.c, n, heads, D, with_w ? w : NULL, 1e-6f, pc.c, ps.c, style, bf16, ggml);
                gpu->ops->norm_rope(gpu, x.g, n, heads, D, with_w ? w : NULL, 1e-6f, pc.g, ps.g, style, bf16, ggml);
                char what[96];
                snprintf(what, sizeof what, "norm_rope D %d heads %d%s%s%s%s", D, heads, with_w ? " norm" : "",
                         bf16 ? " bf16" : "", style == MSA_ROPE_NORM ? " pairs" : " neox", ggml ? " ggml" : "");
                pair_check(what, &x, (size_t)n * heads * D, bf16 ? 1.0 / 128 : 1e-5);
                pair_free(&x), pair_free(&pc), pair_free(&ps);
                free(cs), free(sn);
            }
        }
}

TEST(kv_store_layout) {
    const int KV = 4, D = 64, n_ctx = 50, base = 13, n = 9;
    pair kc = pair_random((size_t)KV * n_ctx * D, 1.0f), vc = pair_random((size_t)KV * n_ctx * D, 1.0f);
    pair k = pair_random((size_t)n * KV * D, 1.0f), v = pair_random((size_t)n * KV * D, 1.0f);
    cpu->ops->kv_store(cpu, kc.c, vc.c, k.c, v.c, base, n, KV, D, n_ctx);
    gpu->ops->kv_store(gpu, kc.g, vc.g, k.g, v.g, base, n, KV, D, n_ctx);
    pair_check("kv_store k cache", &kc, (size_t)KV * n_ctx * D, 0.0);
    pair_check("kv_store v cache", &vc, (size_t)KV * n_ctx * D, 0.0);
    pair_free(&kc), pair_free(&vc), pair_free(&k), pair_free(&v);
}

TEST(add_and_swiglu) {
    for (int bf16 = 0; bf16 < 2; bf16++) {
        pair x = pair_random(5 * 777, 4.0f), y = pair_random(5 * 777, 4.0f);
        cpu->ops->add(cpu, x.c, y.c, 5 * 777, bf16);
        gpu->ops->add(gpu, x.g, y.g, 5 * 777, bf16);
        pair_check(bf16 ? "add bf16" : "add f32", &x, 5 * 777, 0.0);
        pair_free(&x), pair_free(&y);
    }
    const msa_swiglu_kind kinds[] = {MSA_SWIGLU_F32, MSA_SWIGLU_BF16, MSA_SWIGLU_GGML};
    const char *names[] = {"swiglu f32", "swiglu bf16", "swiglu ggml"};
    for (int k = 0; k < 3; k++) {
        const int n = 5, F = 1000; /* F % 16 != 0: ggml's tail path too */
        pair g = pair_random((size_t)n * F, 6.0f), u = pair_random((size_t)n * F, 2.0f);
        cpu->ops->swiglu(cpu, g.c, u.c, n, F, kinds[k]);
        gpu->ops->swiglu(gpu, g.g, u.g, n, F, kinds[k]);
        pair_check(names[k], &g, (size_t)n * F, kinds[k] == MSA_SWIGLU_BF16 ? 1.0 / 128 : 1e-5);
        pair_free(&g), pair_free(&u);
    }
}

TEST(pool_chunks_bit_identical) {
    const int D = 1024, rows = 300;
    int32_t row0[6] = {0, 64, 128, 130, 200, 299}, len[6] = {64, 64, 2, 70, 99, 1};
    pair src = pair_random((size_t)rows * D, 3.0f), dst = pair_new(6 * (size_t)D * 4);
    pair r0 = pair_ints(row0, 6), ln = pair_ints(len, 6);
    pair_poison(&dst);
    CHECK(cpu->ops->pool(cpu, src.c, D, r0.c, ln.c, 6, dst.c) == MSA_OK);
    CHECK(gpu->ops->pool(gpu, src.g, D, r0.g, ln.g, 6, dst.g) == MSA_OK);
    pair_check("pool 6 chunks x 1024 (double sums in row order)", &dst, 6 * (size_t)D, 0.0);
    pair_free(&src), pair_free(&dst), pair_free(&r0), pair_free(&ln);
}

TEST(argmax_rows) {
    const int cols[] = {10, 1000, 49152, 151936};
    for (int ci = 0; ci < 4; ci++) {
        const int rows = 5, n = cols[ci];
        float *h = malloc((size_t)rows * n * sizeof(float));
        for (int i = 0; i < rows * n; i++) h[i] = rnd_f();
        h[(size_t)1 * n + n / 2] = 5.0f, h[(size_t)1 * n + n / 3] = 5.0f; /* a tie: the lower index wins */
        h[(size_t)2 * n] = NAN;                                          /* NaN never wins */
        pair x = pair_new((size_t)rows * n * 4), ids = pair_new((size_t)rows * 4);
        pair_put(&x, h);
        cpu->ops->argmax(cpu, x.c, rows, n, ids.c);
        gpu->ops->argmax(gpu, x.g, rows, n, ids.g);
        int32_t a[5], b[5];
        CHECK(cpu->ops->download(cpu, a, ids.c, 0, sizeof a) == MSA_OK);
        CHECK(gpu->ops->download(gpu, b, ids.g, 0, sizeof b) == MSA_OK);
        for (int r = 0; r < rows; r++) CHECK_EQ_INT(b[r], a[r]);
        CHECK_EQ_INT(a[1], n / 3);
        printf("  argmax %d x %d: ids equal\n", rows, n);
        pair_free(&x), pair_free(&ids);
        free(h);
    }
}

/* Read mode's routing scan on the GPU against the CPU's (msa_read_doc_scores, the production path): two spans,
 * documents of 1..40 chunks with gaps in their indices (deleted ones), zero keys, a NaN key; the scores must be
 * the same bits. Also the time of one scan of a bank-sized slot (1M chunks). */
static void route_case(int dim, int nq, bool bf16, uint64_t n_chunks, bool timed) {
    const size_t esz = bf16 ? 2 : 4;
    uint8_t *keys = malloc(n_chunks * dim * esz);
    uint32_t *doc = malloc(n_chunks * sizeof *doc);
    uint32_t d = 0;
    for (uint64_t c = 0; c < n_chunks;) {
        const uint64_t len = 1 + rnd_u32() % 40;
        for (uint64_t i = 0; i < len && c < n_chunks; i++) doc[c++] = d;
        d += 1 + (rnd_u32() % 8 == 0); /* a gap: a deleted document */
    }
    const uint64_t n_index = (uint64_t)d + 3;
    for (uint64_t i = 0; i < n_chunks * dim; i++) {
        const float v = rnd_f() * 2.0f;
        if (bf16) {
            uint32_t u;
            memcpy(&u, &v, 4);
            ((uint16_t *)keys)[i] = (uint16_t)(u >> 16);
        } else ((float *)keys)[i] = v;
    }
    memset(keys + 5 * dim * esz, 0, dim * esz);  /* a zero key: cosine 0 */
    if (bf16) ((uint16_t *)keys)[9 * dim + 3] = 0x7fc0;
    else ((float *)keys)[9 * dim + 3] = NAN;     /* a NaN key never wins */
    float *q = malloc((size_t)nq * dim * sizeof *q);
    for (int i = 0; i < nq * dim; i++) q[i] = rnd_f();
    const uint64_t half = n_chunks / 3; /* a span boundary between two chunks of one document is not allowed: */
    uint64_t cut = half;                /* move it to a document boundary */
    while (cut > 0 && cut < n_chunks && doc[cut] == doc[cut - 1]) cut++;
    msa_route_span sp[2] = {{keys, doc, cut}, {keys + cut * dim * esz, doc + cut, n_chunks - cut}};
    msa_route_query rq = {.n = nq, .dim = dim, .q = q};
    const msa_route_dtype dt = bf16 ? MSA_ROUTE_BF16 : MSA_ROUTE_F32;
    float *want = malloc(n_index * sizeof *want), *got = malloc(n_index * sizeof *got);
    CHECK_EQ_INT(msa_read_doc_scores(&rq, sp, 2, dt, n_index, want, NULL), MSA_OK);
    msa_read_keys k;
    CHECK_EQ_INT(msa_read_keys_upload(gpu, sp, 2, dt, dim, n_index, &k), MSA_OK);
    CHECK_EQ_INT(msa_read_keys_scores(gpu, &k, &rq, n_index, got, NULL, NULL), MSA_OK);
    uint64_t differ = 0, finite = 0;
    for (uint64_t i = 0; i < n_index; i++) {
        differ += memcmp(&want[i], &got[i], 4) != 0;
        finite += isfinite(want[i]);
    }
    printf("  route scan dim %d, %d tokens, %s keys, %llu chunks, %llu documents (%llu routed): %llu differ\n", dim,
           nq, bf16 ? "bf16" : "f32", (unsigned long long)n_chunks, (unsigned long long)n_index,
           (unsigned long long)finite, (unsigned long long)differ);
    CHECK(differ == 0);
    CHECK(finite > 0 && finite < n_index);
    if (timed) {
        msa_buf *dq = gpu->ops->alloc(gpu, (size_t)nq * dim * 4), *best = gpu->ops->alloc(gpu, (size_t)nq * n_index * 4);
        CHECK(dq && best);
        CHECK(gpu->ops->upload(gpu, dq, 0, q, (size_t)nq * dim * 4) == MSA_OK);
        double ts[7];
        for (int r = 0; r < 7; r++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            CHECK(gpu->ops->route_maxsim(gpu, k.keys, bf16, k.doc, k.n_chunks, dim, dq, nq, best, n_index) == MSA_OK);
            CHECK(gpu->ops->sync(gpu) == MSA_OK);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ts[r] = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        }
        for (int i = 1; i < 7; i++)
            for (int j = i; j > 0 && ts[j] < ts[j - 1]; j--) {
                const double t = ts[j];
                ts[j] = ts[j - 1], ts[j - 1] = t;
            }
        const double flop = 2.0 * (double)n_chunks * nq * dim, bytes = (double)n_chunks * dim * esz;
        printf("  route scan timing: median %.3f ms (min %.3f, max %.3f) of 7: %.1f TFLOP/s f32 FMA, %.0f GB/s of keys\n",
               ts[3] * 1e3, ts[0] * 1e3, ts[6] * 1e3, flop / ts[3] * 1e-12, bytes / ts[3] * 1e-9);
        gpu->ops->free(gpu, dq), gpu->ops->free(gpu, best);
    }
    msa_read_keys_free(gpu, &k);
    free(keys), free(doc), free(q), free(want), free(got);
}

TEST(route_scan_bit_identical) {
    route_case(192, 30, true, 5000, false);   /* the default model: 3 kv heads x 64 */
    route_case(192, 1, true, 777, false);
    route_case(64, 45, false, 3001, false);   /* two query tiles, a partial pass */
    route_case(1024, 9, true, 1500, false);   /* MSA-4B: 8 x 128 */
    /* a 1M-token slot, timed; under compute-sanitizer (tests/gpu/run.sh sets MSA_TEST_SMALL) 16K chunks, untimed:
     * racecheck instruments every shared-memory access and did not finish the 1M slot in 60 s */
    const bool small = getenv("MSA_TEST_SMALL") != NULL;
    route_case(192, 30, true, small ? 1u << 14 : 1u << 20, !small);
    msa_read_keys k;
    float q[8] = {0}, s[4];
    uint16_t key[8] = {0};
    uint32_t doc[1] = {0};
    msa_route_span sp = {key, doc, 1};
    msa_route_query rq = {.n = 1, .dim = 8, .q = q};
    CHECK_EQ_INT(msa_read_keys_upload(gpu, &sp, 1, MSA_ROUTE_BF16, 8, 4, &k), MSA_OK);
    CHECK_EQ_INT(msa_read_keys_scores(gpu, &k, &rq, 4, s, NULL, NULL), MSA_ERR_UNSUPPORTED); /* dim 8: the CPU scans it */
    msa_read_keys_free(gpu, &k);
}

/* A batch of n rows after `base` cached slots, several sequences interleaved in runs, random validity and
 * multi-token blocks; the per-row controls computed as forward.c does (independently written here). */
static void attention_case(int H, int KV, int D, int base, int n, int n_ex, bool bf16) {
    const int n_ctx = base + n + 3;
    int32_t *slot_seq = calloc((size_t)n_ctx, 4), *q_seq = malloc((size_t)n * 4), *q_begin = malloc((size_t)n * 4),
            *q_end = malloc((size_t)n * 4), *block = malloc((size_t)n * 4);
    uint8_t *valid = calloc((size_t)n_ctx, 1);
    for (int t = 0; t < base; t++) slot_seq[t] = (int32_t)(t * 3 / (base + 1)), valid[t] = rnd_u32() % 5 != 0;
    for (int i = 0; i < n; i++) {
        slot_seq[base + i] = (int32_t)(i * 3 / n);
        valid[base + i] = rnd_u32() % 6 != 0;
        block[i] = (i > 0 && rnd_u32() % 3 == 0) ? block[i - 1] : i; /* some multi-token blocks */
    }
    for (int i = 0; i < n; i++) {
        q_seq[i] = slot_seq[base + i];
        int j = i;
        while (j + 1 < n && block[j + 1] <= block[i]) j++;
        q_end[i] = base + j + 1;
        q_begin[i] = base + i;
        for (int t = 0; t < base + i; t++)
            if (slot_seq[t] == q_seq[i]) {
                q_begin[i] = t;
                break;
            }
    }
    pair q = pair_random((size_t)n * H * D, 1.0f), out = pair_new((size_t)n * H * D * 4);
    pair kc = pair_random((size_t)KV * n_ctx * D, 1.0f), vc = pair_random((size_t)KV * n_ctx * D, 1.0f);
    pair ek = pair_random((size_t)KV * (n_ex ? n_ex : 1) * D, 1.0f), ev = pair_random((size_t)KV * (n_ex ? n_ex : 1) * D, 1.0f);
    pair ps = pair_ints(slot_seq, (size_t)n_ctx), pv = pair_new((size_t)n_ctx);
    pair_put(&pv, valid);
    pair pq = pair_ints(q_seq, (size_t)n), pb = pair_ints(q_begin, (size_t)n), pe = pair_ints(q_end, (size_t)n);
    /* shared_keys is a hint that picks a kernel: the GPU runs with it true and false, both must match the CPU */
    for (int run = 0; run < 3; run++) {
        const int side = run > 0;
        const bool hint = run == 2;
        msa_backend *be = side ? gpu : cpu;
        if (run == 0) pair_poison(&out);
        if (run == 2) { /* poison only the GPU side: the CPU's result stays the reference */
            float *nan = malloc((size_t)n * H * D * 4);
            memset(nan, 0xFF, (size_t)n * H * D * 4);
            CHECK(gpu->ops->upload(gpu, out.g, 0, nan, (size_t)n * H * D * 4) == MSA_OK);
            free(nan);
        }
#define B(p) (side ? (p).g : (p).c)
        msa_attn_args a = {.n = n, .base = base, .n_ctx = n_ctx, .q = B(q), .out = B(out), .k_cache = B(kc),
                           .v_cache = B(vc), .ex_k = n_ex ? B(ek) : NULL, .ex_v = n_ex ? B(ev) : NULL, .n_ex = n_ex,
                           .slot_seq = B(ps), .slot_valid = B(pv), .q_seq = B(pq), .q_begin = B(pb), .q_end = B(pe),
                           .bf16 = bf16, .llamacpp = false, .shared_keys = hint};
#undef B
        CHECK(be->ops->attention(be, &a, H, KV, D) == MSA_OK);
        if (run == 0) continue;
        char what[112];
        snprintf(what, sizeof what, "attention H %d KV %d D %d base %d n %d ex %d%s%s", H, KV, D, base, n, n_ex,
                 bf16 ? " bf16" : "", hint ? " shared" : "");
        pair_check(what, &out, (size_t)n * H * D, bf16 ? 1.0 / 128 : 1e-5);
    }
    pair *all[] = {&q, &out, &kc, &vc, &ek, &ev, &ps, &pv, &pq, &pb, &pe};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
    free(slot_seq), free(q_seq), free(q_begin), free(q_end), free(block), free(valid);
}

TEST(attention_visibility_shapes) {
    attention_case(8, 2, 64, 0, 1, 0, false);     /* one token, nothing cached */
    attention_case(8, 2, 64, 40, 1, 0, false);    /* decode */
    attention_case(8, 8, 128, 40, 1, 5, true);    /* decode over extra K/V, bf16 */
    attention_case(32, 8, 128, 0, 70, 0, false);  /* prefill, three sequences, blocks */
    attention_case(32, 8, 128, 100, 37, 16, true); /* prefill after a cache, with extras, bf16 */
    attention_case(9, 3, 64, 300, 5, 3, false);
    attention_case(4, 1, 256, 20, 9, 2, false);   /* the widest head */
    attention_case(9, 3, 64, 50, 100, 3, false);  /* tiled prefill kernel, head_dim 64, a partial last tile */
    attention_case(9, 3, 64, 0, 33, 0, true);
    attention_case(16, 4, 128, 700, 300, 40, false); /* tiles over a cache and more than one tile of extras */
    attention_case(32, 8, 128, 3000, 1, 16, false); /* decode over many keys: split over blocks, merged */
    attention_case(32, 8, 128, 5000, 2, 0, true);
    attention_case(8, 2, 64, 20000, 1, 0, false);
}

int main(void) {
    if (msa_backend_cpu_new(NULL, &cpu) != MSA_OK) return 1;
    if (msa_backend_cuda_new(NULL, 0, &gpu) != MSA_OK) {
        fprintf(stderr, "test_cuda_ops needs a CUDA GPU: %s\n", msa_last_error());
        printf("FAIL cuda_backend_available\n");
        return 1;
    }
    RUN(embed_every_dtype);
    RUN(rmsnorm_shapes_rows_bf16);
    RUN(matmul_every_dtype_and_shape);
    RUN(matmul_multi_shares_input);
    RUN(round_bf16_f16);
    RUN(norm_rope_styles);
    RUN(kv_store_layout);
    RUN(add_and_swiglu);
    RUN(attention_visibility_shapes);
    RUN(argmax_rows);
    RUN(pool_chunks_bit_identical);
    RUN(route_scan_bit_identical);
    msa_backend_free(gpu);
    msa_backend_free(cpu);
    for (int i = 0; i < n_kept; i++) free(kept[i]);
    return test_summary();
}
