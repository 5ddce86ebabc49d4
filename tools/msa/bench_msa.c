/* bench_msa.c — `msa bench route` and `msa bench encode`: the MSA memory costs.
 *
 *   msa bench route [--max-tokens N] [--layers L] [--query-tokens S] [-t THREADS] [--plot FILE.png]
 *       the per-query routing scan over synthetic bf16 routing keys of MSA-4B's shape (8 kv-heads x 128, P=64,
 *       32 query heads, head mean / token max / chunk max, top-16) for 10K, 100K, 1M, 10M tokens: ms per router
 *       layer, ms per query (x L router layers, 18 for MSA-4B) and GB/s of keys scanned.
 *   msa bench encode -m MODEL [--tokens N] [-t THREADS]
 *       stage-1 encoding (read-mode shape) of synthetic documents of ~120 tokens: tokens/s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_msa.h"
#include "commands.h"
#include "memory/encode.h"
#include "memory/route.h"
#include "model/model.h"
#include "model/tensor.h"
#include "util/threadpool.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench_route(int argc, char **argv) {
    double max_tokens = 1e7;
    int layers = 18, S = 50, threads = 0;
    const char *plot = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("bench route", "%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--max-tokens")) max_tokens = atof(v);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(v);
        else if (!strcmp(argv[i], "--query-tokens")) S = atoi(v);
        else if (!strcmp(argv[i], "-t")) threads = atoi(v);
        else if (!strcmp(argv[i], "--plot")) plot = v;
        else return cli_usage_error("bench route", "unknown option '%s'", argv[i]);
    }
    if (S < 1 || layers < 1) return cli_usage_error("bench route", "bad sizes");
    msa_threadpool *tp;
    if (msa_threadpool_new(threads, &tp)) return cli_fail(MSA_ERR_NOMEM);
    const int NH = 32, KV = 8, HD = 128, P = 64, K = 16, DOC_CHUNKS = 16;
    const size_t D = (size_t)KV * HD;
    msa_route_params rp = {.n_head = NH, .n_head_kv = KV, .head_dim = HD, .head_reduce = MSA_REDUCE_MEAN,
                           .query_reduce = MSA_REDUCE_MAX, .chunk_reduce = MSA_REDUCE_MAX};
    float *qr = malloc((size_t)S * NH * HD * sizeof *qr);
    uint8_t *mask = malloc((size_t)S);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < (size_t)S * NH * HD; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        qr[i] = (float)((x >> 40) / (double)(1 << 24)) - 0.5f;
    }
    memset(mask, 1, (size_t)S);
    msa_route_query q;
    if (msa_route_query_prepare(&rp, qr, mask, S, &q)) return cli_fail(MSA_ERR_INTERNAL);
    FILE *dat = NULL;
    char datpath[512] = "";
    if (plot) {
        snprintf(datpath, sizeof datpath, "%s.dat", plot);
        dat = fopen(datpath, "w");
    }
    printf("routing scan, MSA-4B shape (bf16 keys 8x128 per chunk, P=64, %d query tokens, top-%d), %d threads\n", S, K,
           msa_threadpool_size(tp));
    printf("%12s %10s %12s %11s%-3d %10s\n", "tokens", "chunks", "ms/layer", "ms/query x", layers, "GB/s");
    for (double tokens = 1e4; tokens <= max_tokens * 1.0001; tokens *= 10) {
        uint64_t C = (uint64_t)(tokens / P);
        uint16_t *keys = malloc(C * D * sizeof *keys);
        uint32_t *doc = malloc(C * sizeof *doc);
        if (!keys || !doc) {
            fprintf(stderr, "msa bench route: out of memory at %.0f tokens\n", tokens);
            free(keys), free(doc);
            break;
        }
        for (uint64_t i = 0; i < C * D; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            keys[i] = msa_f32_to_bf16((float)((x >> 40) / (double)(1 << 24)) - 0.5f);
        }
        uint64_t n_docs = (C + DOC_CHUNKS - 1) / DOC_CHUNKS;
        for (uint64_t c = 0; c < C; c++) doc[c] = (uint32_t)(c / DOC_CHUNKS);
        float *scores = malloc(n_docs * sizeof *scores);
        uint32_t idx[16];
        float top[16];
        msa_route_span sp = {keys, doc, C};
        int reps = tokens >= 1e7 ? 2 : tokens >= 1e6 ? 3 : 7;
        double best = INFINITY;
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            msa_route_doc_scores(&rp, &q, &sp, 1, MSA_ROUTE_BF16, n_docs, scores, tp);
            msa_route_topk(scores, n_docs, K, idx, top);
            double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        double gbs = (double)C * D * 2 / best / 1e9;
        printf("%12.0f %10llu %12.2f %14.1f %10.2f\n", tokens, (unsigned long long)C, best * 1e3, best * 1e3 * layers, gbs);
        fflush(stdout);
        static double first_ms = 0;
        if (first_ms == 0) first_ms = best * 1e3 * layers;
        if (dat) fprintf(dat, "%.0f %.4f %.4f %.4f\n", tokens, best * 1e3 * layers, gbs, first_ms * tokens / 1e4);
        free(keys), free(doc), free(scores);
    }
    if (dat) {
        fclose(dat);
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "gnuplot -e \"set terminal png size 800,500; set output '%s'; set logscale xy; "
                 "set xlabel 'memory tokens'; set ylabel 'ms per query (%d router layers)'; set grid; "
                 "set title 'msa: routing scan per query (MSA-4B shape, bf16, this machine)'; "
                 "plot '%s' using 1:2 with linespoints title 'routing', '%s' using 1:4 with lines dt 2 title 'linear from 10K'\"",
                 plot, layers, datpath, datpath);
        if (system(cmd) != 0) fprintf(stderr, "msa bench route: gnuplot failed; data in %s\n", datpath);
        else fprintf(stderr, "msa bench route: plot written to %s\n", plot);
    }
    msa_route_query_free(&q);
    free(qr), free(mask);
    msa_threadpool_free(tp);
    return 0;
}

static int bench_encode(int argc, char **argv) {
    const char *model_path = NULL;
    int tokens = 4096, threads = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return cli_usage_error("bench encode", "%s needs a value", argv[i]);
        if (!strcmp(argv[i], "-m")) model_path = v;
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(v);
        else if (!strcmp(argv[i], "-t")) threads = atoi(v);
        else return cli_usage_error("bench encode", "unknown option '%s'", argv[i]);
    }
    if (!model_path) return cli_usage_error("bench encode", "-m MODEL is required");
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = threads;
    msa_model *m;
    msa_status st = msa_model_load(model_path, &mp, &m);
    if (st) return cli_fail(st);
    msa_bank_shape sh;
    st = msa_memory_bank_shape(m, m->hp.msa.present ? MSA_BANK_NATIVE : MSA_BANK_READ, 0, &sh);
    msa_encoder *e = NULL;
    if (!st) st = msa_encoder_new(m, &sh, 2048, &e);
    if (st) {
        msa_model_free(m);
        return cli_fail(st);
    }
    const int per = 120, n_docs = (tokens + per - 1) / per;
    int32_t **ids = calloc((size_t)n_docs, sizeof *ids);
    size_t *lens = calloc((size_t)n_docs, sizeof *lens);
    for (int d = 0; d < n_docs; d++) {
        ids[d] = malloc(per * sizeof **ids);
        for (int t = 0; t < per; t++) ids[d][t] = 1000 + (d * 7919 + t * 104729) % 20000;
        lens[d] = per;
    }
    msa_encoded_doc *out = calloc((size_t)n_docs, sizeof *out);
    double t0 = now_s();
    st = msa_encoder_run(e, (const int32_t *const *)ids, lens, (size_t)n_docs, out);
    double dt = now_s() - t0;
    if (!st)
        printf("stage-1 encode (%s mode, %d router layers, P=%d): %d documents, %d tokens in %.2f s = %.0f tokens/s\n",
               sh.mode == MSA_BANK_NATIVE ? "native" : "read", sh.n_router, sh.pooling, n_docs, n_docs * per, dt,
               n_docs * per / dt);
    for (int d = 0; d < n_docs; d++) msa_encoded_doc_free(&out[d]), free(ids[d]);
    free(out), free(ids), free(lens);
    msa_encoder_free(e);
    msa_model_free(m);
    return st ? cli_fail(st) : 0;
}

int bench_msa(const char *what, int argc, char **argv) {
    if (!strcmp(what, "route")) return bench_route(argc, argv);
    return bench_encode(argc, argv);
}
