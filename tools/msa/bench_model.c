/* bench_model.c — `msa bench prefill|decode`: model-level speed.
 *   prefill: one forward of -p N prompt tokens into an empty cache (tokens/s = N / time);
 *   decode:  -n N single-token forwards from an empty cache, as llama-bench's tg test (tokens/s = N / time).
 * Each row shows the median with spread (bench_util), the weight bytes streamed per second (decode reads every
 * matrix once per token) against this machine's measured streaming-read bandwidth, and, with --peer, the
 * same test by llama.cpp's llama-bench on the same GGUF and thread count in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <unistd.h>

#include "bench_peer.h"
#include "backend/cpu/kernels.h"
#include "bench_util.h"
#include "commands.h"
#include "model/model.h"
#include "msa.h"

static const char usage[] =
    "usage: msa bench prefill|decode -m MODEL [-p N] [-n N] [-t N] [--reps R] [--warmup W] [--json]\n"
    "                                 [--peer LLAMA_BENCH]\n"
    "  -p N    prompt tokens of the prefill test (default 512)\n"
    "  -n N    generated tokens of the decode test (default 128)\n"
    "  --peer  run llama.cpp's llama-bench (this path; 'auto' = $MSA_LLAMA_BENCH or the default build) on the\n"
    "          same GGUF with the same threads and print its numbers beside ours\n";

typedef struct {
    msa_session *s;
    const int32_t *ids;
    int n;
    bool decode;
    float *logits;
    msa_status st;
} run_ctx;

static void run_once(void *p) {
    run_ctx *c = p;
    msa_session_reset(c->s);
    if (c->decode) {
        for (int i = 0; i < c->n && c->st == MSA_OK; i++) c->st = msa_session_eval(c->s, &c->ids[i], 1, false, c->logits);
    } else {
        c->st = msa_session_eval(c->s, c->ids, (size_t)c->n, false, c->logits);
    }
}

/* Streaming read bandwidth of all threads over 512 MiB (GB/s), the ceiling of batch-1 decode. */
typedef struct {
    const uint64_t *buf;
    size_t n;
    uint64_t sink[64];
} read_ctx;

static void read_job(void *p, int ith, int nth) {
    read_ctx *r = p;
    size_t per = r->n / (size_t)nth, lo = per * (size_t)ith, hi = ith == nth - 1 ? r->n : lo + per;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = lo; i + 4 <= hi; i += 4) a += r->buf[i], b ^= r->buf[i + 1], c += r->buf[i + 2], d ^= r->buf[i + 3];
    r->sink[ith % 64] = a ^ b ^ c ^ d;
}

typedef struct {
    msa_threadpool *tp;
    read_ctx *r;
} read_run;

static void read_once(void *p) {
    read_run *rr = p;
    msa_threadpool_run(rr->tp, read_job, rr->r);
}

static double measure_read_gbs(msa_threadpool *tp) {
    const size_t bytes = (size_t)512 << 20;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    read_ctx r = {.buf = buf, .n = bytes / 8};
    read_run rr = {tp, &r};
    bench_stats s;
    bench_time(read_once, &rr, 1, 5, &s);
    free(buf);
    return s.median > 0 ? (double)bytes / 1e9 / s.median : 0;
}

int bench_model(const char *what, int argc, char **argv) {
    const bool decode = !strcmp(what, "decode");
    bench_opts o = bench_default_opts();
    o.reps = 5;
    o.warmup = 1;
    const char *model_path = NULL, *peer = NULL;
    long n_prompt = 512, n_gen = 128;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "bench %s", what);
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, cmd, argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            model_path = argv[++i];
        } else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
            n_prompt = strtol(argv[++i], NULL, 10);
            if (n_prompt < 1 || n_prompt > 65536) return cli_usage_error(cmd, "-p: tokens in [1, 65536]");
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            n_gen = strtol(argv[++i], NULL, 10);
            if (n_gen < 1 || n_gen > 65536) return cli_usage_error(cmd, "-n: tokens in [1, 65536]");
        } else if (!strcmp(argv[i], "--peer") && i + 1 < argc) {
            peer = argv[++i];
        } else {
            return cli_usage_error(cmd, "unknown option '%s' (see msa bench %s --help)", argv[i], what);
        }
    }
    if (!model_path) return cli_usage_error(cmd, "-m MODEL is required");
    if (peer && !strcmp(peer, "auto")) {
        peer = bench_peer_find();
        if (!peer)
            fprintf(stderr, "msa %s: no llama-bench found ($MSA_LLAMA_BENCH, $LLAMA_CPP_DIR/%s or $PATH; "
                            "scripts/build-llamacpp.sh builds one)\n", cmd, BENCH_PEER_SUBPATH);
    } else if (peer && access(peer, X_OK) != 0) {
        /* a path the user typed must exist: reporting "no peer" with exit 0 hides the typo */
        fprintf(stderr, "msa %s: --peer %s: %s\n", cmd, peer, errno == ENOENT ? "no such file" : "not an executable");
        return 66;
    }

    msa_model_params mp = msa_model_default_params();
    mp.n_threads = o.n_threads;
    mp.device = o.device;
    mp.prefault = true;
    msa_model *m = NULL;
    msa_status st = msa_model_load(model_path, &mp, &m);
    if (st != MSA_OK) return cli_fail(st);
    msa_model_info info;
    msa_model_get_info(m, &info);
    const int n = (int)(decode ? n_gen : n_prompt);
    msa_session_params sp = msa_session_default_params();
    sp.n_ctx = n;
    msa_session *s = NULL;
    st = msa_session_new(m, &sp, &s);
    if (st != MSA_OK) {
        msa_model_free(m);
        return cli_fail(st);
    }
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *logits = malloc((size_t)info.n_vocab * sizeof(float));
    if (!ids || !logits) {
        free(ids);
        free(logits);
        msa_session_free(s);
        msa_model_free(m);
        return cli_fail(MSA_ERR_NOMEM);
    }
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(((uint64_t)i * 7919u + 13u) % (uint64_t)info.n_vocab);

    /* bytes streamed per decoded token: every matrix of every layer, the norms, and the lm_head; the
     * embedding table only when it is not also the lm_head (then just one row, negligible) */
    uint64_t per_token = m->weight_bytes;
    if (m->output != m->tok_embd) per_token -= m->tok_embd->nbytes;

    int threads = msa_threadpool_size(m->tp);
    double ceiling = measure_read_gbs(m->tp);
    bench_report *r = bench_report_new(what, &o);
    bench_report_meta(r, "model", "%s", model_path);
    bench_report_meta(r, "arch", "%s %s, %.1f M params, %.1f MB of weights", info.arch, info.weight_dtype,
                      (double)info.n_params / 1e6, (double)info.weight_bytes / 1e6);
    bench_report_meta(r, "threads", "%d", threads);
    bench_report_meta(r, "simd", "%s", msa_cpu_simd_name());
    bench_report_meta(r, "read_bandwidth", "%.2f GB/s (streaming read, all threads)", ceiling);

    run_ctx c = {.s = s, .ids = ids, .n = n, .decode = decode, .logits = logits, .st = MSA_OK};
    bench_stats bs;
    bench_progress(1, peer ? 2 : 1, "msa");
    bench_time(run_once, &c, o.warmup, o.reps, &bs);
    bench_progress_done();
    char kernels[512];
    msa_cpu_kernel_summary(kernels, sizeof kernels);
    bench_report_meta(r, "kernels", "%s", kernels);
    int rc = 0;
    if (c.st != MSA_OK) {
        rc = cli_fail(c.st);
        goto out;
    }
    char name[96];
    snprintf(name, sizeof name, "msa %s %s%d", decode ? "decode" : "prefill", decode ? "tg" : "pp", n);
    bench_metric mets[2] = {{"tok/s", (double)n, 0}, {"GB/s", (double)per_token * n / 1e9, ceiling}};
    bench_report_row(r, name, &bs, mets, decode ? 2 : 1, decode ? "weights streamed per token vs read bandwidth" : NULL);

    if (peer) {
        bench_peer_result pr;
        char line[1024];
        bench_peer_command(line, sizeof line, peer, model_path, decode ? 0 : n, decode ? n : 0, threads, o.reps);
        bench_report_meta(r, "peer_command", "%s", line);
        bench_progress(2, 2, "llama.cpp");
        st = bench_peer_run(peer, model_path, decode ? 0 : n, decode ? n : 0, threads, o.reps, &pr);
        bench_progress_done();
        if (st != MSA_OK) {
            fprintf(stderr, "msa %s: llama.cpp peer failed: %s\n", cmd, msa_last_error());
        } else {
            const bench_peer_rate *pt = decode ? &pr.tg : &pr.pp;
            /* express llama.cpp's tokens/s as seconds per run so it fits the same table */
            bench_stats ps = {.n = pt->n_samples,
                              .median = n / pt->median_ts,
                              .min = n / pt->max_ts,
                              .max = n / pt->min_ts,
                              .q1 = n / pt->max_ts,
                              .q3 = n / pt->min_ts};
            char pname[128];
            snprintf(pname, sizeof pname, "llama.cpp %s %s%d (%.12s)", decode ? "decode" : "prefill",
                     decode ? "tg" : "pp", n, pr.build_commit);
            bench_report_row(r, pname, &ps, mets, decode ? 2 : 1, NULL);
            double ours = bs.median > 0 ? n / bs.median : 0;
            bench_report_meta(r, "ratio_msa_over_llamacpp", "%.3f (median tok/s %.1f vs %.1f)",
                              ours / pt->median_ts, ours, pt->median_ts);
        }
    }
out:
    if (rc == 0) rc = bench_report_finish(r);
    free(ids);
    free(logits);
    msa_session_free(s);
    msa_model_free(m);
    return rc;
}
