/* test_route_resident.c — read mode's resident routing keys (src/memory/route_resident.c) without a GPU: a
 * test backend whose "device memory" is host memory it counts, with a memory budget, and whose route_maxsim is
 * backend.h's contract written out plainly here (msa_route_dot_ref's canonical order, double norms). Checks:
 * the scores equal the CPU scan's (msa_read_doc_scores) bit for bit — so the upload's span concatenation and
 * skip rule and the shared centring are right; the model's cache uploads a snapshot once, replaces it for a new
 * snapshot and frees everything; keys that do not fit, a dim the scan refuses and MSA_ROUTE_ON_HOST leave the
 * caller to the CPU scan without an error; a chunk of a document beyond the bank is BAD_DATA. The CUDA kernel
 * itself is checked against the CPU on a GPU (tests/gpu/test_cuda_ops.c). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory/ask.h"
#include "memory/route_resident.h"
#include "memory/route_scan.h"
#include "model/model.h"
#include "test.h"
#include "util/threadpool.h"
#include "util/error.h"

/* ---- the test backend */

typedef struct {
    msa_backend base;
    size_t budget, in_use;  /* bytes it will hand out, bytes handed out */
    int live, uploads;      /* allocations alive; upload calls */
    size_t uploaded;        /* bytes uploaded */
    int fills;              /* upload_fill's pieces */
    int allocs;             /* alloc calls */
} test_backend;

typedef struct { size_t bytes; max_align_t pad[]; } hdr; /* each buffer remembers its size */

static msa_buf *tb_alloc(msa_backend *be, size_t bytes) {
    test_backend *t = (test_backend *)be;
    if (t->in_use + bytes > t->budget) {
        msa_fail(MSA_ERR_NOMEM, "test device: %zu bytes do not fit", bytes);
        return NULL;
    }
    hdr *h = calloc(1, sizeof(hdr) + bytes);
    if (!h) return NULL;
    h->bytes = bytes;
    t->in_use += bytes, t->live++, t->allocs++;
    return (msa_buf *)(void *)h->pad;
}
static hdr *hdr_of(const msa_buf *b) { return (hdr *)(void *)((char *)(void *)(uintptr_t)b - offsetof(hdr, pad)); }
static void tb_free(msa_backend *be, msa_buf *b) {
    test_backend *t = (test_backend *)be;
    if (!b) return;
    t->in_use -= hdr_of(b)->bytes, t->live--;
    free(hdr_of(b));
}
static msa_status tb_upload(msa_backend *be, msa_buf *dst, size_t off, const void *src, size_t bytes) {
    test_backend *t = (test_backend *)be;
    if (off + bytes > hdr_of(dst)->bytes) return msa_fail(MSA_ERR_INVALID_ARG, "upload past the buffer");
    memcpy((char *)(void *)dst + off, src, bytes);
    t->uploads++, t->uploaded += bytes;
    return MSA_OK;
}
/* backend.h's upload_fill, in pieces of an odd size (they straddle key rows) through a staging buffer */
static msa_status tb_upload_fill(msa_backend *be, msa_buf *dst, size_t off, size_t bytes,
                                 bool (*fill)(void *, void *, size_t, size_t), void *ctx) {
    test_backend *t = (test_backend *)be;
    enum { PIECE = 1000 };
    char piece[PIECE];
    if (off + bytes > hdr_of(dst)->bytes) return msa_fail(MSA_ERR_INVALID_ARG, "upload past the buffer");
    for (size_t o = 0; o < bytes; o += PIECE) {
        const size_t n = bytes - o < PIECE ? bytes - o : PIECE;
        if (!fill(ctx, piece, o, n)) return msa_fail(MSA_ERR_IO, "test device: the source failed");
        memcpy((char *)(void *)dst + off + o, piece, n);
        t->fills++;
    }
    t->uploaded += bytes;
    return MSA_OK;
}
static msa_status tb_download(msa_backend *be, void *dst, const msa_buf *src, size_t off, size_t bytes) {
    (void)be;
    if (off + bytes > hdr_of(src)->bytes) return msa_fail(MSA_ERR_INVALID_ARG, "download past the buffer");
    memcpy(dst, (const char *)(const void *)src + off, bytes);
    return MSA_OK;
}
static msa_status tb_sync(msa_backend *be) { return (void)be, MSA_OK; }
static size_t tb_total; /* what the memory op reports as the device's size */
static void tb_memory(msa_backend *be, size_t *used, size_t *total) {
    *used = ((test_backend *)be)->in_use, *total = tb_total;
}

/* backend.h's route_maxsim, as its comment states it */
static msa_status tb_route_maxsim(msa_backend *be, const msa_buf *keys, bool bf16, const msa_buf *doc,
                                  uint64_t n_chunks, int dim, const msa_buf *q, int nq, msa_buf *best, uint64_t n_docs) {
    (void)be;
    if (dim % 16) return msa_fail(MSA_ERR_UNSUPPORTED, "test device: dim %d", dim);
    const int32_t *dc = (const int32_t *)(const void *)doc;
    const float *qf = (const float *)(const void *)q;
    float *bs = (float *)(void *)best, *k = malloc((size_t)dim * sizeof *k);
    for (uint64_t i = 0; i < (uint64_t)nq * n_docs; i++) bs[i] = -INFINITY;
    for (uint64_t c = 0; c < n_chunks; c++) {
        if (dc[c] < 0) continue;
        for (int i = 0; i < dim; i++) {
            if (bf16) {
                uint32_t u = (uint32_t)((const uint16_t *)(const void *)keys)[c * dim + i] << 16;
                memcpy(&k[i], &u, 4);
            } else k[i] = ((const float *)(const void *)keys)[c * dim + i];
        }
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)k[i] * k[i];
        const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int t = 0; t < nq; t++) {
            const float v = msa_route_dot_ref(qf + (size_t)t * dim, k, dim) * inv;
            float *b = &bs[(size_t)t * n_docs + (uint64_t)dc[c]];
            if (v > *b) *b = v;
        }
    }
    free(k);
    return MSA_OK;
}

static const msa_backend_ops tb_ops = {
    .name = "test", .alloc = tb_alloc, .free = tb_free, .upload = tb_upload, .download = tb_download,
    .sync = tb_sync, .route_maxsim = tb_route_maxsim,
};

static const msa_backend_ops tb_ops_fill = {
    .name = "test-fill", .alloc = tb_alloc, .free = tb_free, .upload = tb_upload, .download = tb_download,
    .sync = tb_sync, .route_maxsim = tb_route_maxsim, .upload_fill = tb_upload_fill,
};

static test_backend tbe(size_t budget) {
    return (test_backend){.base = {.ops = &tb_ops}, .budget = budget};
}

/* ---- a random slot: two spans, documents of 1..12 chunks with deleted ones between */

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rndf(void) { return (float)((rnd() & 0xFFFFFF) / 8388608.0 - 1.0); }

typedef struct {
    uint16_t *keys;
    uint32_t *doc;
    uint64_t n, n_index;
    msa_route_span sp[2];
    float *q;
    msa_route_query rq;
} slot;

static slot slot_new(uint64_t n, int dim, int nq) {
    slot s = {.keys = malloc(n * dim * 2), .doc = malloc(n * 4), .n = n, .q = malloc((size_t)nq * dim * 4)};
    uint32_t d = 0;
    for (uint64_t c = 0; c < n;) {
        for (uint32_t i = 0, len = 1 + rnd() % 12; i < len && c < n; i++) s.doc[c++] = d;
        d += 1 + (rnd() % 5 == 0);
    }
    s.n_index = d + 2;
    for (uint64_t i = 0; i < n * dim; i++) {
        float v = rndf();
        uint32_t u;
        memcpy(&u, &v, 4);
        s.keys[i] = (uint16_t)(u >> 16);
    }
    memset(s.keys + 3 * dim, 0, (size_t)dim * 2); /* a zero key */
    for (int i = 0; i < nq * dim; i++) s.q[i] = rndf();
    uint64_t cut = n / 2;
    while (cut < n && s.doc[cut] == s.doc[cut - 1]) cut++;
    s.sp[0] = (msa_route_span){s.keys, s.doc, cut};
    s.sp[1] = (msa_route_span){s.keys + cut * dim, s.doc + cut, n - cut};
    s.rq = (msa_route_query){.n = nq, .dim = dim, .q = s.q};
    return s;
}
static void slot_free(slot *s) { free(s->keys), free(s->doc), free(s->q); }

static int differ(const float *a, const float *b, uint64_t n) {
    int d = 0;
    for (uint64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

TEST(scores_equal_cpu_scan) {
    const int shapes[][3] = {{2000, 64, 7}, {700, 192, 1}, {1500, 32, 20}};
    for (int k = 0; k < 6; k++) { /* each shape uploaded through upload and, from k = 3, upload_fill */
        slot s = slot_new((uint64_t)shapes[k % 3][0], shapes[k % 3][1], shapes[k % 3][2]);
        test_backend t = tbe(SIZE_MAX / 2);
        if (k >= 3) t.base.ops = &tb_ops_fill;
        float *want = malloc(s.n_index * 4), *got = malloc(s.n_index * 4);
        CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
        msa_read_keys keys;
        CHECK_EQ_INT(msa_read_keys_upload(&t.base, s.sp, 2, MSA_ROUTE_BF16, shapes[k % 3][1], s.n_index, &keys), MSA_OK);
        CHECK_EQ_INT(keys.n_chunks, s.n);
        if (k >= 3) CHECK(t.fills > 2); /* the keys went through the pieces */
        CHECK_EQ_INT(msa_read_keys_scores(&t.base, &keys, &s.rq, s.n_index, got, NULL, NULL), MSA_OK);
        CHECK_EQ_INT(differ(want, got, s.n_index), 0);
        int finite = 0;
        for (uint64_t i = 0; i < s.n_index; i++) finite += isfinite(want[i]);
        CHECK(finite > 0 && (uint64_t)finite < s.n_index); /* deleted documents stay -inf */
        msa_read_keys_free(&t.base, &keys);
        CHECK_EQ_INT(t.live, 0);
        free(want), free(got);
        slot_free(&s);
    }
}

/* The centring, written out plainly (the single-pass loop it replaced): per token the mean best over the documents
 * that have chunks, subtracted, summed over tokens in order, averaged */
static void center_ref(const float *best, int nq, uint64_t n, size_t ts, size_t ds, float *out) {
    double *acc = calloc(n, sizeof *acc);
    for (int t = 0; t < nq; t++) {
        double sum = 0;
        uint64_t c = 0;
        for (uint64_t d = 0; d < n; d++)
            if (isfinite(best[t * ts + d * ds])) sum += best[t * ts + d * ds], c++;
        const double mu = c ? sum / (double)c : 0;
        for (uint64_t d = 0; d < n; d++)
            if (isfinite(best[t * ts + d * ds])) acc[d] += best[t * ts + d * ds] - mu;
    }
    for (uint64_t d = 0; d < n; d++) out[d] = isfinite(best[d * ds]) ? (float)(acc[d] / nq) : -INFINITY;
    free(acc);
}

/* msa_read_center: both layouts (token-major from a GPU, document-major from the host scan), any thread count,
 * the reference's bits; documents without chunks stay -inf */
TEST(centring_same_bits_any_threads) {
    enum { NQ = 13, N = 1001 };
    float *best = malloc(NQ * N * sizeof *best), *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    for (uint64_t d = 0; d < N; d++) {
        const bool none = rnd() % 9 == 0;
        for (int t = 0; t < NQ; t++) best[t * N + d] = none ? -INFINITY : rndf();
    }
    for (int layout = 0; layout < 2; layout++) {
        const size_t ts = layout ? 1 : N, ds = layout ? NQ : 1;
        float *b = best, *dm = NULL;
        if (layout) { /* the same values, document-major */
            dm = malloc(NQ * N * sizeof *dm);
            for (int t = 0; t < NQ; t++)
                for (uint64_t d = 0; d < N; d++) dm[d * NQ + t] = best[t * N + d];
            b = dm;
        }
        center_ref(b, NQ, N, ts, ds, want);
        int finite = 0;
        for (uint64_t d = 0; d < N; d++) finite += isfinite(want[d]);
        CHECK(finite > N / 2 && finite < N);
        const int threads[] = {0, 1, 2, 5, 64};
        for (int i = 0; i < 5; i++) {
            msa_threadpool *tp = NULL;
            if (threads[i]) CHECK_EQ_INT(msa_threadpool_new(threads[i], &tp), MSA_OK);
            CHECK_EQ_INT(msa_read_center(b, NQ, N, ts, ds, got, tp), MSA_OK);
            CHECK_EQ_INT(differ(want, got, N), 0);
            msa_threadpool_free(tp);
        }
        free(dm);
    }
    free(best), free(want), free(got);
}

/* The CPU scan itself gives the same bits on any number of threads (each thread takes a run of whole documents:
 * small spans leave some threads nothing, large ones cut mid-span at document starts). */
TEST(cpu_scan_same_bits_any_threads) {
    slot s = slot_new(3000, 64, 9);
    float *want = malloc(s.n_index * 4), *got = malloc(s.n_index * 4);
    CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
    const int threads[] = {1, 2, 3, 7, 64};
    for (int i = 0; i < 5; i++) {
        msa_threadpool *tp = NULL;
        CHECK_EQ_INT(msa_threadpool_new(threads[i], &tp), MSA_OK);
        if (!tp) continue;
        CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, got, tp), MSA_OK);
        CHECK_EQ_INT(differ(want, got, s.n_index), 0);
        msa_threadpool_free(tp);
    }
    slot tiny = slot_new(5, 16, 1); /* fewer chunks than threads */
    msa_threadpool *tp = NULL;
    CHECK_EQ_INT(msa_threadpool_new(7, &tp), MSA_OK);
    CHECK_EQ_INT(msa_read_doc_scores(&tiny.rq, tiny.sp, 2, MSA_ROUTE_BF16, tiny.n_index, want, NULL), MSA_OK);
    if (tp) CHECK_EQ_INT(msa_read_doc_scores(&tiny.rq, tiny.sp, 2, MSA_ROUTE_BF16, tiny.n_index, got, tp), MSA_OK);
    CHECK_EQ_INT(differ(want, got, tiny.n_index), 0);
    msa_threadpool_free(tp);
    slot_free(&tiny);
    free(want), free(got);
    slot_free(&s);
}

/* The host scan's norms kept between questions: the same bits as computing them per question; one array per
 * snapshot and slot, made once. */
TEST(cpu_scan_norms_cached) {
    slot s = slot_new(2500, 64, 6);
    float *want = malloc(s.n_index * 4), *got = malloc(s.n_index * 4), *inv = malloc(s.n * 4);
    CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
    msa_threadpool *tp = NULL;
    CHECK_EQ_INT(msa_threadpool_new(3, &tp), MSA_OK);
    CHECK_EQ_INT(msa_read_inv_norms(s.sp, 2, MSA_ROUTE_BF16, 64, inv, tp), MSA_OK);
    CHECK(inv[3] == 0.0f && inv[4] > 0.0f); /* slot_new's zero key */
    CHECK_EQ_INT(msa_read_doc_scores_inv(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, inv, got, tp), MSA_OK);
    CHECK_EQ_INT(differ(want, got, s.n_index), 0);
    test_backend t = tbe(SIZE_MAX / 2);
    msa_backend_ops cpu_like = tb_ops;
    cpu_like.route_maxsim = NULL; /* a backend without the scan: the host scan and its cached norms */
    t.base.ops = &cpu_like;
    msa_model m = {.be = &t.base, .tp = tp};
    msa_status st = MSA_ERR_IO;
    const float *a = msa_read_resident_norms(&m, 5, 1, 2, s.sp, 2, MSA_ROUTE_BF16, 64, &st);
    CHECK(a != NULL && st == MSA_OK);
    if (a) CHECK(!memcmp(a, inv, s.n * 4));
    CHECK(msa_read_resident_norms(&m, 5, 1, 2, s.sp, 2, MSA_ROUTE_BF16, 64, &st) == a); /* kept */
    CHECK(msa_read_resident_norms(&m, 5, 2, 2, s.sp, 2, MSA_ROUTE_BF16, 64, &st) == NULL && st == MSA_OK);
    const float *b = msa_read_resident_norms(&m, 6, 1, 2, s.sp, 2, MSA_ROUTE_BF16, 64, &st); /* new snapshot */
    CHECK(b != NULL);
    if (b) CHECK(!memcmp(b, inv, s.n * 4));
    msa_read_resident_free(&m);
    CHECK(m.read_resident == NULL);
    msa_threadpool_free(tp);
    free(want), free(got), free(inv);
    slot_free(&s);
}

TEST(chunk_beyond_the_bank_is_bad_data) {
    slot s = slot_new(100, 16, 2);
    test_backend t = tbe(SIZE_MAX / 2);
    msa_read_keys keys;
    CHECK_EQ_INT(msa_read_keys_upload(&t.base, s.sp, 2, MSA_ROUTE_BF16, 16, s.doc[s.n - 1], &keys), MSA_ERR_BAD_DATA);
    CHECK_EQ_INT(t.live, 0);
    slot_free(&s);
}

/* The model's cache: msa_read_resident_scores on a model whose backend is the test one. */
TEST(cache_uploads_once_per_snapshot) {
    slot s = slot_new(800, 64, 5);
    test_backend t = tbe(SIZE_MAX / 2);
    msa_model m = {.be = &t.base};
    float *want = malloc(s.n_index * 4), *got = malloc(s.n_index * 4);
    CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
    bool done = false;
    CHECK_EQ_INT(msa_read_resident_scores(&m, 7, 1, 3, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(done);
    CHECK_EQ_INT(differ(want, got, s.n_index), 0);
    const size_t first = t.uploaded;
    CHECK(first >= s.n * 64 * 2);
    const int allocs = t.allocs, live_first = t.live;
    CHECK_EQ_INT(msa_read_resident_scores(&m, 7, 1, 3, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(done);
    CHECK(t.uploaded - first < s.n * 64 * 2); /* only the query: the keys stayed */
    CHECK_EQ_INT(t.allocs, allocs);           /* and the scan's buffers too */
    CHECK_EQ_INT(differ(want, got, s.n_index), 0);
    { /* a longer question: the buffers grow, the scores stay the CPU's */
        float *qb = malloc((size_t)s.rq.n * 3 * 64 * sizeof *qb);
        for (int i = 0; i < s.rq.n * 3 * 64; i++) qb[i] = rndf();
        const msa_route_query big = {.n = s.rq.n * 3, .dim = 64, .q = qb};
        CHECK_EQ_INT(msa_read_doc_scores(&big, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
        CHECK_EQ_INT(msa_read_resident_scores(&m, 7, 1, 3, s.sp, 2, MSA_ROUTE_BF16, &big, s.n_index, got, &done), MSA_OK);
        CHECK(done && t.allocs > allocs && t.live == live_first);
        CHECK_EQ_INT(differ(want, got, s.n_index), 0);
        CHECK_EQ_INT(msa_read_doc_scores(&s.rq, s.sp, 2, MSA_ROUTE_BF16, s.n_index, want, NULL), MSA_OK);
        free(qb);
    }
    const int live_one = t.live;
    CHECK_EQ_INT(msa_read_resident_scores(&m, 7, 0, 3, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(t.live == live_one + 2); /* slot 0's keys and table beside slot 1's */
    CHECK_EQ_INT(msa_read_resident_scores(&m, 8, 1, 3, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(done && t.live == live_one); /* a new snapshot: the old keys freed, this slot's uploaded */
    CHECK_EQ_INT(differ(want, got, s.n_index), 0);
    msa_read_resident_free(&m);
    CHECK_EQ_INT(t.live, 0);
    CHECK(m.read_resident == NULL);
    free(want), free(got);
    slot_free(&s);
}

TEST(falls_back_to_the_cpu_without_error) {
    slot s = slot_new(600, 64, 3);
    float *got = malloc(s.n_index * 4);
    bool done = true;
    /* keys that do not fit: nothing kept, no error, not tried again for the snapshot */
    test_backend t = tbe(600 * 64 * 2 + 100);
    msa_model m = {.be = &t.base};
    msa_clear_error();
    CHECK_EQ_INT(msa_read_resident_scores(&m, 3, 0, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(!done);
    CHECK_EQ_INT(t.live, 0);
    CHECK(msa_last_error()[0] == '\0');
    const int uploads = t.uploads;
    CHECK_EQ_INT(msa_read_resident_scores(&m, 3, 1, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(!done && t.uploads == uploads);
    t.budget = SIZE_MAX / 2; /* a new snapshot is tried again */
    CHECK_EQ_INT(msa_read_resident_scores(&m, 4, 1, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(done);
    /* a device that reports its memory: the whole bank (two slots) plus the reserve must fit, or nothing goes up */
    msa_backend_ops with_memory = tb_ops;
    with_memory.memory = tb_memory;
    test_backend tm = tbe(SIZE_MAX / 2);
    tm.base.ops = &with_memory;
    msa_model mm = {.be = &tm.base};
    const size_t bank = 2 * 600 * (64 * 2 + 4), gib2 = (size_t)2 << 30;
    tb_total = bank + gib2 - 1; /* one byte short */
    CHECK_EQ_INT(msa_read_resident_scores(&mm, 1, 0, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(!done && tm.live == 0 && tm.uploads == 0);
    msa_read_resident_free(&mm);
    tb_total = bank + gib2 + 4096; /* room for the keys, the tables and the scratch of one question */
    CHECK_EQ_INT(msa_read_resident_scores(&mm, 2, 0, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(done);
    msa_read_resident_free(&mm);
    /* MSA_ROUTE_ON_HOST: the CPU scan even where the backend has one */
    setenv("MSA_ROUTE_ON_HOST", "1", 1);
    CHECK_EQ_INT(msa_read_resident_scores(&m, 4, 1, 2, s.sp, 2, MSA_ROUTE_BF16, &s.rq, s.n_index, got, &done), MSA_OK);
    CHECK(!done);
    unsetenv("MSA_ROUTE_ON_HOST");
    msa_read_resident_free(&m);
    CHECK_EQ_INT(t.live, 0);
    slot_free(&s);
    /* a dim the scan refuses: no error, the CPU scan */
    slot s8 = slot_new(50, 8, 2);
    test_backend t8 = tbe(SIZE_MAX / 2);
    msa_model m8 = {.be = &t8.base};
    CHECK_EQ_INT(msa_read_resident_scores(&m8, 1, 0, 1, s8.sp, 2, MSA_ROUTE_BF16, &s8.rq, s8.n_index, got, &done),
                 MSA_OK);
    CHECK(!done);
    CHECK_EQ_INT(t8.live, 0);
    msa_read_resident_free(&m8);
    /* a backend without the scan (the CPU's): nothing is allocated */
    msa_backend_ops bare = tb_ops;
    bare.route_maxsim = NULL;
    test_backend tn = tbe(SIZE_MAX / 2);
    tn.base.ops = &bare;
    msa_model mn = {.be = &tn.base};
    CHECK_EQ_INT(msa_read_resident_scores(&mn, 1, 0, 1, s8.sp, 2, MSA_ROUTE_BF16, &s8.rq, s8.n_index, got, &done),
                 MSA_OK);
    CHECK(!done && tn.live == 0 && mn.read_resident == NULL);
    slot_free(&s8);
    free(got);
}

int main(void) {
    RUN(scores_equal_cpu_scan);
    RUN(cpu_scan_same_bits_any_threads);
    RUN(centring_same_bits_any_threads);
    RUN(cpu_scan_norms_cached);
    RUN(chunk_beyond_the_bank_is_bad_data);
    RUN(cache_uploads_once_per_snapshot);
    RUN(falls_back_to_the_cpu_without_error);
    return test_summary();
}
