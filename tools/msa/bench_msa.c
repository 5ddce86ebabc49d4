/* bench_msa.c — `msa bench route`, `msa bench read` and `msa bench encode`: how the MSA memory costs grow with
 * its size.
 *
 *   msa bench route [--sizes 1e4,3e4,...] [--max-tokens N] [--layers L] [--query-tokens S] [--doc-tokens D]
 *                   [--dir DIR] [--in-memory] [--keep] [-t T] [--reps R] [--warmup W] [--json]
 *       Per-query routing over a synthetic bank of MSA-4B's routing shape (L = 18 router layers of bf16 keys
 *       8 kv-heads x 128 per chunk, P = 64, documents of D = 1024 tokens), for each size (default 10K, 30K,
 *       100K, 300K, 1M, 3M, 10M tokens, capped by --max-tokens): the bank is written through the real bank
 *       writer (msa_bank_add + compaction, into DIR, deleted afterwards unless --keep) and read back through
 *       its mapping (msa_bank_route_spans), then one query = for every router layer: an S-token routing
 *       query with 32 heads (head mean, token max, chunk max) scored against every chunk, and the top-16
 *       documents — what the model's router hook does (context.c). Time per query (median, min-max, IQR),
 *       memory tokens/s, GB/s of routing keys, GMAC/s, CPU seconds. --in-memory scans malloc'd arrays
 *       instead of a bank; --keep keeps the banks and reuses them in the next run with the same --dir.
 *   msa bench read [--sizes 1e5,3e5,...] [--max-tokens N] [--layers L] [--kv-dim K] [--query-tokens S]
 *                  [--doc-tokens D] [--device cuda[:N]] [-t T] [--reps R] [--warmup W] [--json]
 *       Read mode's routing scan per question (readmode.c: every routing token against every P=1 key, the best
 *       cosine per document, centred per token) over in-memory synthetic keys of the default model's shape
 *       (L = 15 router layers, K = 192 = 3 kv-heads x 64, documents of D = 110 tokens like the QA passages),
 *       on the host (the norms kept per snapshot, as the engine does; their one-off cost in the note) and, with
 *       --device, over keys resident on the GPU (route_resident.c) in the same run, its scores checked equal to
 *       the host's (exit 70 if not). Default sizes 1e5, 3e5, 1e6 tokens (--max-tokens raises the cap).
 *   msa bench encode -m MODEL [--sizes ...] [--max-tokens N] [--doc-tokens D] [--mode native|read]
 *                   [--dir DIR] [--keep] [-t T] [--json]
 *       Stage-1 encoding through msa_bank_ingest (tokenize, one causal forward per document, chunk pooling,
 *       durable write) of synthetic documents of about D tokens (default 512) into a fresh bank per size
 *       (default 10K, 30K, 100K tokens): seconds and tokens/s, one run per size.
 * Sizes accept 1e4-style numbers. Progress goes to stderr on a terminal. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_msa.h"
#include "bench_util.h"
#include "commands.h"
#include "backend/backend.h"
#include "backend/device.h"
#include "memory/ask.h"
#include "memory/route.h"
#include "memory/route_resident.h"
#include "model/tensor.h"
#include "msa.h"
#include "util/cpu_count.h"
#include "util/error.h"
#include "util/threadpool.h"

#define MAX_SIZES 32

/* CPU seconds of this process (all threads): on a shared machine wall time says what a user waits, CPU time
 * what the work costs. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t xs(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return *s = x;
}

/* Parse "1e4,3e4,1e5" into sizes (tokens). Returns the count, or -1 when malformed. */
static int parse_sizes(const char *s, double *out) {
    int n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || v < 1 || v > 1e12 || n == MAX_SIZES) return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* Remove dir and the files directly inside it (a bank directory is flat). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096 + 300];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int common_sizes(const char *cmd, const char *sizes_arg, double max_tokens, const double *defaults,
                        int n_defaults, double *sizes) {
    int n;
    if (sizes_arg) {
        n = parse_sizes(sizes_arg, sizes);
        if (n <= 0) return cli_usage_error(cmd, "--sizes: a comma-separated list of token counts (1e4,3e4,...)"), -1;
    } else {
        n = 0;
        for (int i = 0; i < n_defaults; i++)
            if (defaults[i] <= max_tokens * 1.0001) sizes[n++] = defaults[i];
    }
    return n;
}

/* ----------------------------------------------------------------------------------------------- route */

enum { R_HEADS = 32, R_KV = 8, R_HD = 128, R_P = 64, R_TOPK = 16, R_KDIM = R_KV * R_HD };

typedef struct route_ctx {
    int layers, S;
    const float *qr;               /* [layers][S][R_HEADS*R_HD] raw router queries */
    const uint8_t *mask;           /* [S] all routing tokens */
    msa_route_params rp;
    const msa_route_span *spans[MSA_BANK_MAX_LAYERS];
    size_t n_spans[MSA_BANK_MAX_LAYERS];
    uint64_t n_index;
    float *scores;                 /* [n_index] */
    msa_threadpool *tp;
    msa_status st;
    uint32_t top[R_TOPK];
} route_ctx;

/* One query: every router layer routes independently (query preparation, scan, top-k), as context.c does. */
static void route_query(void *arg) {
    route_ctx *c = arg;
    for (int l = 0; l < c->layers && !c->st; l++) {
        msa_route_query q;
        c->st = msa_route_query_prepare(&c->rp, c->qr + (size_t)l * c->S * R_HEADS * R_HD, c->mask, c->S, &q);
        if (c->st) return;
        c->st = msa_route_doc_scores(&c->rp, &q, c->spans[l], c->n_spans[l], MSA_ROUTE_BF16, c->n_index, c->scores,
                                     c->tp);
        float ts[R_TOPK];
        if (!c->st) msa_route_topk(c->scores, c->n_index, R_TOPK, c->top, ts);
        msa_route_query_free(&q);
    }
}

/* Random bf16 routing keys in [-0.5, 0.5). */
static void fill_keys(uint16_t *k, uint64_t n, uint64_t *seed) {
    for (uint64_t i = 0; i < n; i++) k[i] = msa_f32_to_bf16((float)((xs(seed) >> 40) / (double)(1 << 24)) - 0.5f);
}

/* A read-mode bank of MSA-4B's routing shape through the real writer; one segment after compaction. */
static msa_status build_route_bank(const char *dir, int layers, uint64_t n_docs, int doc_tokens, double *seconds) {
    msa_bank_create_params cp = {0};
    cp.shape = (msa_bank_shape){.mode = MSA_BANK_READ, .dtype = MSA_BANK_BF16, .n_layers = 36, .n_router = layers,
                                .n_kv_heads = R_KV, .head_dim = R_HD, .pooling = R_P, .n_template = 3};
    for (int s = 0; s < layers; s++) {
        cp.shape.router_layers[s] = 36 - layers + s;
        cp.shape.route_dim[s] = R_KDIM;
    }
    memcpy(cp.fingerprint, "msa-bench-route-synthetic-bank!!", 32);
    double t0 = bench_now();
    MSA_TRY(msa_bank_create(dir, &cp));
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    op.max_pending_bytes = (size_t)256 << 20;
    msa_bank *b;
    MSA_TRY(msa_bank_open(dir, &op, &b));
    const uint32_t n_chunks = (uint32_t)((doc_tokens + R_P - 1) / R_P);
    const uint64_t per_layer = (uint64_t)n_chunks * R_KDIM;
    uint16_t *keys = malloc((size_t)(per_layer * (uint64_t)layers) * sizeof *keys);
    const void *rk[MSA_BANK_MAX_LAYERS];
    msa_status st = keys ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "bench route: out of memory");
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (int s = 0; s < layers && keys; s++) rk[s] = keys + (uint64_t)s * per_layer;
    double last = 0;
    for (uint64_t d = 0; d < n_docs && !st; d++) {
        fill_keys(keys, per_layer * (uint64_t)layers, &seed); /* fresh keys per document */
        char id[32], text[64];
        snprintf(id, sizeof id, "doc%08" PRIu64, d);
        int tl = snprintf(text, sizeof text, "synthetic routing document %" PRIu64, d);
        msa_bank_doc doc = {.id = id, .text = text, .text_len = (size_t)tl, .n_tokens = (uint64_t)doc_tokens,
                            .n_chunks = n_chunks, .route_keys = rk};
        st = msa_bank_add(b, &doc, false, NULL, NULL);
        double t = bench_now();
        if (isatty(2) && t - last > 0.5) {
            fprintf(stderr, "\rbuilding bank: %" PRIu64 "/%" PRIu64 " documents   ", d + 1, n_docs);
            last = t;
        }
    }
    if (!st) st = msa_bank_commit(b);
    if (!st) st = msa_bank_compact(b); /* one segment: each layer's keys one contiguous span */
    if (isatty(2)) fprintf(stderr, "\r%60s\r", "");
    msa_bank_close(b);
    free(keys);
    *seconds = bench_now() - t0;
    return st;
}

static int bench_route(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    o.reps = 5;
    o.warmup = 1;
    double max_tokens = 1e7;
    int layers = 18, S = 50, doc_tokens = 1024;
    const char *dir = "/tmp/msa-bench-route", *sizes_arg = NULL;
    bool in_memory = false, keep = false;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench route", argc, argv, &i, &rc)) {
            if (rc) return rc;
            continue;
        }
        if (!strcmp(argv[i], "--in-memory")) { in_memory = true; continue; }
        if (!strcmp(argv[i], "--keep")) { keep = true; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("bench route", "unknown option '%s' (or it needs a value)", argv[i]);
        i++;
        if (!strcmp(argv[i - 1], "--max-tokens")) max_tokens = atof(v);
        else if (!strcmp(argv[i - 1], "--sizes")) sizes_arg = v;
        else if (!strcmp(argv[i - 1], "--layers")) layers = atoi(v);
        else if (!strcmp(argv[i - 1], "--query-tokens")) S = atoi(v);
        else if (!strcmp(argv[i - 1], "--doc-tokens")) doc_tokens = atoi(v);
        else if (!strcmp(argv[i - 1], "--dir")) dir = v;
        else return cli_usage_error("bench route", "unknown option '%s'", argv[i - 1]);
    }
    if (S < 1 || S > 4096 || layers < 1 || layers > MSA_BANK_MAX_LAYERS || doc_tokens < 1 || doc_tokens > 1 << 20)
        return cli_usage_error("bench route", "bad --query-tokens, --layers or --doc-tokens");
    static const double defaults[] = {1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7};
    double sizes[MAX_SIZES];
    int n_sizes = common_sizes("bench route", sizes_arg, max_tokens, defaults, 7, sizes);
    if (n_sizes < 0) return 64;

    msa_threadpool *tp;
    if (msa_threadpool_new(o.n_threads, &tp)) return cli_fail(MSA_ERR_NOMEM);
    route_ctx c = {.layers = layers, .S = S, .tp = tp};
    c.rp = (msa_route_params){.n_head = R_HEADS, .n_head_kv = R_KV, .head_dim = R_HD, .head_reduce = MSA_REDUCE_MEAN,
                              .query_reduce = MSA_REDUCE_MAX, .chunk_reduce = MSA_REDUCE_MAX};
    float *qr = malloc((size_t)layers * S * R_HEADS * R_HD * sizeof *qr);
    uint8_t *mask = malloc((size_t)S);
    if (!qr || !mask) return cli_fail(MSA_ERR_NOMEM);
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < (size_t)layers * S * R_HEADS * R_HD; i++)
        qr[i] = (float)((xs(&seed) >> 40) / (double)(1 << 24)) - 0.5f;
    memset(mask, 1, (size_t)S);
    c.qr = qr, c.mask = mask;

    bench_report *r = bench_report_new("route", &o);
    bench_report_meta(r, "threads", "%d", msa_threadpool_size(tp));
    bench_report_meta(r, "shape", "MSA-4B routing: %d router layers, bf16 keys %dx%d per chunk, P=%d, %d-token documents",
                      layers, R_KV, R_HD, R_P, doc_tokens);
    bench_report_meta(r, "query", "%d routing tokens x %d heads, head mean / token max / chunk max, top-%d per layer",
                      S, R_HEADS, R_TOPK);
    bench_report_meta(r, "source", "%s", in_memory ? "in-memory arrays" : "bank files (real writer, mmap'd, warm)");
    bench_report_meta(r, "row", "tokens=N: one query over all router layers; GB/s of routing keys");
    int rc = 0;
    for (int si = 0; si < n_sizes && !rc; si++) {
        const uint64_t n_docs = (uint64_t)ceil(sizes[si] / doc_tokens);
        const uint64_t chunks_per_doc = (uint64_t)(doc_tokens + R_P - 1) / R_P, C = n_docs * chunks_per_doc;
        const uint64_t tokens = n_docs * (uint64_t)doc_tokens;
        char path[4096], name[64];
        snprintf(name, sizeof name, "tokens=%" PRIu64, tokens);
        bench_progress(si + 1, n_sizes, name);
        msa_bank *b = NULL;
        uint16_t *keys = NULL;
        uint32_t *doc = NULL;
        msa_route_span *mem_spans = NULL;
        double build_s = 0;
        bool reused = false;
        msa_status st = MSA_OK;
        c.st = MSA_OK;
        if (in_memory) {
            keys = malloc((size_t)(C * R_KDIM * (uint64_t)layers) * sizeof *keys);
            doc = malloc((size_t)C * sizeof *doc);
            mem_spans = malloc((size_t)layers * sizeof *mem_spans);
            if (!keys || !doc || !mem_spans) st = msa_fail(MSA_ERR_NOMEM, "bench route: out of memory at %" PRIu64 " tokens", tokens);
            if (!st) {
                uint64_t s2 = 0x9E3779B97F4A7C15ull;
                fill_keys(keys, C * R_KDIM * (uint64_t)layers, &s2);
                for (uint64_t k = 0; k < C; k++) doc[k] = (uint32_t)(k / chunks_per_doc);
                for (int l = 0; l < layers; l++) {
                    mem_spans[l] = (msa_route_span){keys + (uint64_t)l * C * R_KDIM, doc, C};
                    c.spans[l] = &mem_spans[l];
                    c.n_spans[l] = 1;
                }
                c.n_index = n_docs;
            }
        } else {
            snprintf(path, sizeof path, "%s/route-%" PRIu64 "-L%d", dir, tokens, layers);
            mkdir(dir, 0755);
            if (keep && msa_bank_open(path, NULL, &b) == MSA_OK) { /* --keep: reuse the bank of an earlier run */
                msa_bank_info in;
                msa_bank_get_info(b, &in);
                if (in.n_docs != n_docs) msa_bank_close(b), b = NULL;
                reused = b != NULL;
            }
            if (!b) {
                remove_dir(path);
                st = build_route_bank(path, layers, n_docs, doc_tokens, &build_s);
                if (!st) st = msa_bank_open(path, NULL, &b);
            }
            msa_bank_info in;
            if (!st) {
                msa_bank_get_info(b, &in);
                c.n_index = in.next_index;
            }
            size_t total = 0;
            for (int l = 0; l < layers && !st; l++) {
                const msa_bank_span *bs;
                st = msa_bank_route_spans(b, l, &bs, &c.n_spans[l]);
                total += c.n_spans[l];
            }
            mem_spans = st ? NULL : malloc((total ? total : 1) * sizeof *mem_spans);
            if (!st && !mem_spans) st = msa_fail(MSA_ERR_NOMEM, "bench route: out of memory");
            for (int l = 0, at = 0; l < layers && !st; l++) {
                const msa_bank_span *bs;
                st = msa_bank_route_spans(b, l, &bs, &c.n_spans[l]);
                c.spans[l] = mem_spans + at;
                for (size_t i = 0; i < c.n_spans[l]; i++, at++)
                    mem_spans[at] = (msa_route_span){bs[i].keys, bs[i].doc_index, bs[i].n_chunks};
            }
        }
        c.scores = st ? NULL : malloc((size_t)(c.n_index ? c.n_index : 1) * sizeof *c.scores);
        if (!st && !c.scores) st = msa_fail(MSA_ERR_NOMEM, "bench route: out of memory");
        if (!st) {
            bench_stats s;
            double cpu0 = cpu_now();
            bench_time(route_query, &c, o.warmup, o.reps, &s);
            double cpu_q = (cpu_now() - cpu0) / (o.warmup + o.reps);
            st = c.st;
            double key_bytes = (double)C * R_KDIM * 2 * layers;
            bench_metric m[] = {{"tokens/s", (double)tokens, 0},
                                {"GB/s", key_bytes / 1e9, 0},
                                {"GMAC/s", (double)S * (double)C * R_KDIM * layers / 1e9, 0},
                                {"layers/s", (double)layers, 0}};
            char note[200];
            int nn = snprintf(note, sizeof note, "%" PRIu64 " chunks, %.1f MB keys/layer, CPU %.4f s/query (%.1f GMAC per CPU-s)",
                              C, key_bytes / layers / 1e6, cpu_q, (double)S * (double)C * R_KDIM * layers / 1e9 / cpu_q);
            if (reused) snprintf(note + nn, sizeof note - (size_t)nn, ", bank reused");
            else if (!in_memory) snprintf(note + nn, sizeof note - (size_t)nn, ", bank build %.1f s", build_s);
            if (!st) bench_report_row(r, name, &s, m, 4, note);
        }
        free(c.scores), free(keys), free(doc), free(mem_spans);
        if (b) msa_bank_close(b);
        if (!in_memory && !keep) remove_dir(path);
        if (st) {
            fprintf(stderr, "msa bench route: %s\n", msa_last_error());
            rc = cli_fail(st);
        }
    }
    bench_progress_done();
    bench_report_finish(r);
    free(qr), free(mask);
    msa_threadpool_free(tp);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ read */

typedef struct read_ctx {
    int layers, S, K;
    msa_route_query q[MSA_BANK_MAX_LAYERS]; /* [S][K] per layer */
    msa_route_span span;                    /* one layer's keys; every layer scans its own copy (keys + l * C * K) */
    const uint16_t *keys;
    uint64_t C, n_index;
    const float *inv;                       /* [layers][C] host scan: the norms kept per snapshot */
    msa_backend *be;                        /* device scan: NULL for the host */
    msa_read_keys dk[MSA_BANK_MAX_LAYERS];
    msa_read_scratch scratch;               /* the device scan's buffers, kept between questions as read mode does */
    float *scores;                          /* [n_index] */
    msa_threadpool *tp;
    msa_status st;
} read_ctx;

/* One question: every router layer's read-mode scan and its centring, as context.c runs them. */
static void read_query(void *arg) {
    read_ctx *c = arg;
    for (int l = 0; l < c->layers && !c->st; l++) {
        if (c->be) {
            c->st = msa_read_keys_scores(c->be, &c->dk[l], &c->q[l], c->n_index, c->scores, &c->scratch, c->tp);
            continue;
        }
        const msa_route_span sp = {c->keys + (uint64_t)l * c->C * c->K, c->span.doc_index, c->C};
        c->st = msa_read_doc_scores_inv(&c->q[l], &sp, 1, MSA_ROUTE_BF16, c->n_index, c->inv + (uint64_t)l * c->C,
                                        c->scores, c->tp);
    }
}

static int bench_read(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    o.reps = 5;
    o.warmup = 1;
    double max_tokens = 1e6;
    int layers = 15, S = 25, K = 192, doc_tokens = 110;
    const char *sizes_arg = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench read", argc, argv, &i, &rc)) {
            if (rc) return rc;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("bench read", "unknown option '%s' (or it needs a value)", argv[i]);
        i++;
        if (!strcmp(argv[i - 1], "--max-tokens")) max_tokens = atof(v);
        else if (!strcmp(argv[i - 1], "--sizes")) sizes_arg = v;
        else if (!strcmp(argv[i - 1], "--layers")) layers = atoi(v);
        else if (!strcmp(argv[i - 1], "--query-tokens")) S = atoi(v);
        else if (!strcmp(argv[i - 1], "--kv-dim")) K = atoi(v);
        else if (!strcmp(argv[i - 1], "--doc-tokens")) doc_tokens = atoi(v);
        else return cli_usage_error("bench read", "unknown option '%s'", argv[i - 1]);
    }
    if (S < 1 || S > 4096 || layers < 1 || layers > MSA_BANK_MAX_LAYERS || doc_tokens < 2 || doc_tokens > 1 << 20 ||
        K < 1 || K > 8192)
        return cli_usage_error("bench read", "bad --query-tokens, --layers, --kv-dim or --doc-tokens");
    static const double defaults[] = {1e5, 3e5, 1e6, 3e6, 1e7};
    double sizes[MAX_SIZES];
    int n_sizes = common_sizes("bench read", sizes_arg, max_tokens, defaults, 5, sizes);
    if (n_sizes < 0) return 64;
    msa_backend *be = NULL;
    if (o.device && strcmp(o.device, "cpu")) {
        msa_device dev;
        msa_status st = msa_device_parse(o.device, &dev);
        if (!st && dev.kind != MSA_DEVICE_CUDA) st = msa_fail(MSA_ERR_INVALID_ARG, "--device: cpu or cuda[:N]");
        if (!st) st = msa_backend_cuda_new(NULL, dev.index, &be);
        if (st) return cli_fail(st);
    }
    msa_threadpool *tp;
    if (msa_threadpool_new(o.n_threads, &tp)) return cli_fail(MSA_ERR_NOMEM);
    read_ctx c = {.layers = layers, .S = S, .K = K, .tp = tp};
    float *qbuf = malloc((size_t)layers * S * K * sizeof *qbuf);
    if (!qbuf) return cli_fail(MSA_ERR_NOMEM);
    uint64_t seed = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < (size_t)layers * S * K; i++) qbuf[i] = (float)((xs(&seed) >> 40) / (double)(1 << 24)) - 0.5f;
    for (int l = 0; l < layers; l++) c.q[l] = (msa_route_query){.n = S, .dim = K, .q = qbuf + (size_t)l * S * K};

    bench_report *r = bench_report_new("read", &o);
    bench_report_meta(r, "threads", "%d", msa_threadpool_size(tp));
    bench_report_meta(r, "shape", "read mode: %d router layers, bf16 keys of %d per token (P=1), %d-token documents",
                      layers, K, doc_tokens);
    bench_report_meta(r, "query", "%d routing tokens: best cosine per document, centred per token, every layer", S);
    bench_report_meta(r, "rows", "host: the CPU scan with the keys' norms kept; %s: keys resident on the device, "
                      "the same scores checked against the host's", be ? o.device : "(no --device)");
    int rc = 0;
    for (int si = 0; si < n_sizes && !rc; si++) {
        const uint64_t n_docs = (uint64_t)ceil(sizes[si] / doc_tokens), C = n_docs * (uint64_t)doc_tokens;
        const double key_bytes = (double)C * K * 2 * layers;
        uint16_t *keys = malloc((size_t)(C * (uint64_t)K * (uint64_t)layers) * sizeof *keys);
        uint32_t *doc = malloc((size_t)C * sizeof *doc);
        float *inv = malloc((size_t)(C * (uint64_t)layers) * sizeof *inv);
        float *host = malloc((size_t)n_docs * sizeof *host);
        c.scores = malloc((size_t)n_docs * sizeof *c.scores);
        msa_status st = keys && doc && inv && host && c.scores
                            ? MSA_OK
                            : msa_fail(MSA_ERR_NOMEM, "bench read: out of memory at %" PRIu64 " tokens", C);
        if (!st) {
            uint64_t s2 = 0x9E3779B97F4A7C15ull;
            fill_keys(keys, C * (uint64_t)K * (uint64_t)layers, &s2);
            for (uint64_t k = 0; k < C; k++) doc[k] = (uint32_t)(k / (uint64_t)doc_tokens);
            c.keys = keys, c.span.doc_index = doc, c.C = C, c.n_index = n_docs, c.inv = inv, c.be = NULL;
        }
        double norms_s = bench_now();
        for (int l = 0; l < layers && !st; l++) {
            const msa_route_span sp = {keys + (uint64_t)l * C * K, doc, C};
            st = msa_read_inv_norms(&sp, 1, MSA_ROUTE_BF16, K, inv + (uint64_t)l * C, tp);
        }
        norms_s = bench_now() - norms_s;
        char name[64], note[200];
        if (!st) {
            bench_stats s;
            c.st = MSA_OK;
            bench_time(read_query, &c, o.warmup, o.reps, &s);
            st = c.st;
            memcpy(host, c.scores, (size_t)n_docs * sizeof *host); /* the last layer's, for the device check */
            bench_metric m[] = {{"tokens/s", (double)C, 0}, {"GB/s", key_bytes / 1e9, 0},
                                {"GMAC/s", (double)S * (double)C * K * layers / 1e9, 0}};
            snprintf(name, sizeof name, "host tokens=%" PRIu64, C);
            snprintf(note, sizeof note, "%" PRIu64 " documents, %.1f MB keys/layer, norms once %.3f s", n_docs,
                     key_bytes / layers / 1e6, norms_s);
            if (!st) bench_report_row(r, name, &s, m, 3, note);
        }
        if (!st && be) {
            double up = bench_now();
            for (int l = 0; l < layers && !st; l++) {
                const msa_route_span sp = {keys + (uint64_t)l * C * K, doc, C};
                st = msa_read_keys_upload(be, &sp, 1, MSA_ROUTE_BF16, K, n_docs, &c.dk[l]);
            }
            up = bench_now() - up;
            c.be = be;
            bench_stats s;
            c.st = MSA_OK;
            if (!st) bench_time(read_query, &c, o.warmup, o.reps, &s), st = c.st;
            if (!st && memcmp(host, c.scores, (size_t)n_docs * sizeof *host))
                st = msa_fail(MSA_ERR_INTERNAL, "bench read: the device's scores differ from the host's");
            bench_metric m[] = {{"tokens/s", (double)C, 0}, {"GB/s", key_bytes / 1e9, 0},
                                {"GMAC/s", (double)S * (double)C * K * layers / 1e9, 0}};
            snprintf(name, sizeof name, "%s tokens=%" PRIu64, o.device, C);
            snprintf(note, sizeof note, "scores equal to the host's; upload %.2f s (%.1f GB/s)", up, key_bytes / up / 1e9);
            if (!st) bench_report_row(r, name, &s, m, 3, note);
            for (int l = 0; l < layers; l++) msa_read_keys_free(be, &c.dk[l]);
            msa_read_scratch_free(be, &c.scratch);
        }
        free(keys), free(doc), free(inv), free(host), free(c.scores);
        if (st) rc = cli_fail(st);
    }
    bench_report_finish(r);
    free(qbuf);
    msa_threadpool_free(tp);
    if (be) msa_backend_free(be);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- encode */

/* Plain English-like text of n_words words, deterministic per document. */
static char *synth_text(uint64_t d, int n_words, size_t *len) {
    static const char *words[] = {"the", "memory", "of", "a", "river", "is", "long", "and", "every", "stone",
                                  "remembers", "water", "that", "passed", "over", "it", "in", "spring", "when",
                                  "snow", "melts", "from", "mountains", "north", "village", "people", "built",
                                  "bridges", "across", "wide", "valleys", "before", "winter", "came", "again"};
    const int nw = (int)(sizeof words / sizeof *words);
    size_t cap = (size_t)n_words * 12 + 64, n = 0;
    char *t = malloc(cap);
    if (!t) return NULL;
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (d * 0xD1B54A32D192ED03ull);
    n += (size_t)snprintf(t, cap, "Record %" PRIu64 ":", d);
    for (int i = 0; i < n_words; i++) {
        const char *w = words[xs(&seed) % (uint64_t)nw];
        n += (size_t)snprintf(t + n, cap - n, " %s%s", w, i % 13 == 12 ? "." : "");
    }
    *len = n;
    return t;
}

static int bench_encode(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    o.reps = 1; /* one run per size (a run at 1M tokens takes minutes); --reps is ignored */
    o.warmup = 0;
    const char *model_path = NULL, *dir = "/tmp/msa-bench-encode", *sizes_arg = NULL, *mode_arg = NULL;
    double max_tokens = 1e5;
    int doc_tokens = 512;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench encode", argc, argv, &i, &rc)) {
            if (rc) return rc;
            continue;
        }
        if (!strcmp(argv[i], "--keep")) { keep = true; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("bench encode", "unknown option '%s' (or it needs a value)", argv[i]);
        i++;
        if (!strcmp(argv[i - 1], "-m")) model_path = v;
        else if (!strcmp(argv[i - 1], "--max-tokens") || !strcmp(argv[i - 1], "--tokens")) max_tokens = atof(v);
        else if (!strcmp(argv[i - 1], "--sizes")) sizes_arg = v;
        else if (!strcmp(argv[i - 1], "--doc-tokens")) doc_tokens = atoi(v);
        else if (!strcmp(argv[i - 1], "--mode")) mode_arg = v;
        else if (!strcmp(argv[i - 1], "--dir")) dir = v;
        else return cli_usage_error("bench encode", "unknown option '%s'", argv[i - 1]);
    }
    if (!model_path) return cli_usage_error("bench encode", "-m MODEL is required");
    if (doc_tokens < 8 || doc_tokens > 1 << 16) return cli_usage_error("bench encode", "--doc-tokens: 8..65536");
    if (mode_arg && strcmp(mode_arg, "native") && strcmp(mode_arg, "read"))
        return cli_usage_error("bench encode", "--mode native|read");
    static const double defaults[] = {1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7};
    double sizes[MAX_SIZES];
    int n_sizes = common_sizes("bench encode", sizes_arg, max_tokens, defaults, 7, sizes);
    if (n_sizes < 0) return 64;

    msa_model_params mp = msa_model_default_params();
    mp.n_threads = o.n_threads;
    mp.device = o.device;
    msa_model *m;
    msa_status st = msa_model_load(model_path, &mp, &m);
    if (st) return cli_fail(st);
    msa_model_info info;
    msa_model_get_info(m, &info);
    msa_bank_create_params cp = {0};
    bool native = mode_arg ? !strcmp(mode_arg, "native") : info.is_msa;
    st = msa_memory_bank_shape(m, native ? MSA_BANK_NATIVE : MSA_BANK_READ, 0, &cp.shape);
    if (st) {
        msa_model_free(m);
        return cli_fail(st);
    }
    msa_model_fingerprint(m, cp.fingerprint);
    /* documents must fit the model's context with their rendering ("<|im_start|>[i]. ...[i]<|im_end|>") */
    if (info.n_ctx_train > 0 && doc_tokens > info.n_ctx_train - 32) doc_tokens = info.n_ctx_train - 32;
    if (doc_tokens < 8) doc_tokens = 8;
    /* words per document for about doc_tokens tokens, from one sample document */
    size_t len;
    char *sample = synth_text(0, 200, &len);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    st = sample ? msa_tokenize(msa_model_tokenizer(m), sample, len, false, &ids, &n_ids) : MSA_ERR_NOMEM;
    free(sample), free(ids);
    int words = n_ids ? (int)(200.0 * doc_tokens / (double)n_ids * 0.97) : doc_tokens; /* a little under */
    if (words < 1) words = 1;

    bench_report *r = bench_report_new("encode", &o);
    bench_report_meta(r, "model", "%s (%s, %d layers, %s)", model_path, info.arch, info.n_layer, info.weight_dtype);
    bench_report_meta(r, "mode", "%s: %d router layers, P=%d, %s", native ? "native" : "read", cp.shape.n_router,
                      cp.shape.pooling, cp.shape.dtype == MSA_BANK_BF16 ? "bf16" : "f32");
    bench_report_meta(r, "threads", "%d", o.n_threads ? o.n_threads : msa_cpu_count());
    bench_report_meta(r, "documents", "synthetic English-like text, about %d tokens each (%d words)", doc_tokens, words);
    bench_report_meta(r, "row", "tokens=N: msa_bank_ingest of N tokens into a fresh bank (encode + durable write), 1 run");
    int rc = st ? cli_fail(st) : 0;
    for (int si = 0; si < n_sizes && !rc; si++) {
        /* documents until the estimate reaches the size; the row reports the tokens actually encoded */
        size_t n_docs = (size_t)ceil(sizes[si] / doc_tokens);
        msa_doc_input *docs = calloc(n_docs, sizeof *docs);
        char (*idbuf)[32] = malloc(n_docs * sizeof *idbuf);
        st = docs && idbuf ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "bench encode: out of memory");
        for (size_t d = 0; d < n_docs && !st; d++) {
            snprintf(idbuf[d], sizeof idbuf[d], "doc%08zu", d);
            docs[d].id = idbuf[d];
            docs[d].text = synth_text(d, words, &docs[d].text_len);
            if (!docs[d].text) st = msa_fail(MSA_ERR_NOMEM, "bench encode: out of memory");
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/encode-%.0f", dir, sizes[si]);
        mkdir(dir, 0755);
        remove_dir(path);
        msa_bank *b = NULL;
        if (!st) st = msa_bank_create(path, &cp);
        msa_bank_open_params op = msa_bank_default_open_params();
        op.writable = true;
        if (!st) st = msa_bank_open(path, &op, &b);
        msa_ingest_report rep = {0};
        double t0 = bench_now(), cpu0 = cpu_now();
        if (!st) {
            msa_ingest_params ip = msa_ingest_default_params();
            ip.progress = true;
            st = msa_bank_ingest(b, m, docs, n_docs, &ip, &rep);
        }
        double dt = bench_now() - t0, cpu = cpu_now() - cpu0;
        if (b) msa_bank_close(b);
        if (!st) {
            bench_stats s = {.n = 1, .median = dt, .min = dt, .max = dt, .q1 = dt, .q3 = dt};
            char name[64], note[160];
            snprintf(name, sizeof name, "tokens=%" PRIu64, rep.n_tokens_encoded);
            snprintf(note, sizeof note, "%zu documents, CPU %.1f s (%.0f tokens per CPU-s)", n_docs, cpu,
                     (double)rep.n_tokens_encoded / cpu);
            bench_metric mt[] = {{"tokens/s", (double)rep.n_tokens_encoded, 0}};
            bench_report_row(r, name, &s, mt, 1, note);
        }
        for (size_t d = 0; docs && d < n_docs; d++) free((char *)docs[d].text);
        free(docs), free(idbuf);
        if (!keep) remove_dir(path);
        if (st) {
            fprintf(stderr, "msa bench encode: %s\n", msa_last_error());
            rc = cli_fail(st);
        }
    }
    bench_report_finish(r);
    msa_model_free(m);
    return rc;
}

int bench_msa(const char *what, int argc, char **argv) {
    if (!strcmp(what, "route")) return bench_route(argc, argv);
    if (!strcmp(what, "read")) return bench_read(argc, argv);
    return bench_encode(argc, argv);
}
