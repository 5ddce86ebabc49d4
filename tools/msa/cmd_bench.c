/* cmd_bench.c — `msa bench`: the machine's memory ceiling (mem), the matmul kernels on real model shapes
 * against it (matmul), the thread pool's dispatch cost (pool), and model-level prefill/decode (bench_model.c).
 * Every number is a median over --reps runs after --warmup runs, with its spread. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "bench_msa.h"
#include "bench_util.h"
#include "commands.h"
#include "util/threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1
#endif

static void *xalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "msa bench: cannot allocate %zu MiB\n", n >> 20);
        exit(71);
    }
    return p;
}

static msa_threadpool *make_pool(int n_threads) {
    msa_threadpool *tp = NULL;
    msa_status st = msa_threadpool_new(n_threads, &tp);
    if (st != MSA_OK) exit(cli_fail(st));
    return tp;
}

/* ------------------------------------------------------------------------------------------------ mem */

typedef struct mem_ctx {
    msa_threadpool *tp;
    uint8_t *src, *dst;
    size_t bytes;
    uint64_t sink[64];
} mem_ctx;

#ifdef HAVE_X86
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

static uint64_t read_scalar(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    const uint64_t *q = (const uint64_t *)p;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) a ^= q[i], b ^= q[i + 1], c ^= q[i + 2], d ^= q[i + 3];
    return a ^ b ^ c ^ d;
}

static void slice(size_t bytes, int ith, int nth, size_t *off, size_t *len) {
    size_t per = (bytes / (size_t)nth) & ~(size_t)127;
    *off = per * (size_t)ith;
    *len = ith == nth - 1 ? bytes - *off : per;
}

static void mem_read_job(void *arg, int ith, int nth) {
    mem_ctx *m = arg;
    size_t off, len;
    slice(m->bytes, ith, nth, &off, &len);
#ifdef HAVE_X86
    if (__builtin_cpu_supports("avx2")) {
        m->sink[ith % 64] ^= read_avx2(m->src + off, len);
        return;
    }
#endif
    m->sink[ith % 64] ^= read_scalar(m->src + off, len);
}

static void mem_copy_job(void *arg, int ith, int nth) {
    mem_ctx *m = arg;
    size_t off, len;
    slice(m->bytes, ith, nth, &off, &len);
    memcpy(m->dst + off, m->src + off, len);
}

static void mem_read(void *arg) {
    mem_ctx *m = arg;
    msa_threadpool_run(m->tp, mem_read_job, m);
}

static void mem_copy(void *arg) {
    mem_ctx *m = arg;
    msa_threadpool_run(m->tp, mem_copy_job, m);
}

/* Multi-threaded streaming read bandwidth over `bytes` (GB/s median), used as the matmul ceiling too. */
static double measure_read(msa_threadpool *tp, size_t bytes, int warmup, int reps, bench_stats *s) {
    mem_ctx m = {.tp = tp, .bytes = bytes};
    m.src = xalloc(bytes);
    memset(m.src, 1, bytes);
    bench_time(mem_read, &m, warmup, reps, s);
    free(m.src);
    return s->median > 0 ? (double)bytes / 1e9 / s->median : 0;
}

static int bench_mem(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    o.reps = 7;
    int mib = 1024;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench mem", argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            mib = atoi(argv[++i]);
            if (mib < 16 || mib > 65536) return cli_usage_error("bench mem", "--size: MiB in [16, 65536]");
        } else {
            return cli_usage_error("bench mem", "unknown option '%s' (options: -t N --reps R --warmup W --size MiB --json)", argv[i]);
        }
    }
    msa_threadpool *tp = make_pool(o.n_threads);
    bench_report *r = bench_report_new("mem", &o);
    bench_report_meta(r, "threads", "%d", msa_threadpool_size(tp));
    bench_report_meta(r, "buffer", "%d MiB", mib);
    size_t bytes = (size_t)mib << 20;
    bench_stats s;
    bench_progress(1, 2, "read");
    measure_read(tp, bytes, o.warmup, o.reps, &s);
    bench_metric m_read = {"GB/s", (double)bytes / 1e9, 0};
    bench_report_row(r, "read (streaming, all threads)", &s, &m_read, 1, NULL);

    bench_progress(2, 2, "copy");
    mem_ctx m = {.tp = tp, .bytes = bytes / 2};
    m.src = xalloc(bytes / 2);
    m.dst = xalloc(bytes / 2);
    memset(m.src, 1, bytes / 2);
    memset(m.dst, 2, bytes / 2);
    bench_time(mem_copy, &m, o.warmup, o.reps, &s);
    bench_metric m_copy = {"GB/s", (double)bytes / 1e9, 0}; /* read + write, as STREAM counts it */
    bench_report_row(r, "copy (memcpy, read+write counted)", &s, &m_copy, 1, NULL);
    free(m.src);
    free(m.dst);
    msa_threadpool_free(tp);
    return bench_report_finish(r);
}

/* ------------------------------------------------------------------------------------------------ pool */

static void empty_job(void *arg, int ith, int nth) {
    (void)arg;
    (void)ith;
    (void)nth;
}

typedef struct pool_ctx {
    msa_threadpool *tp;
    int calls;
} pool_ctx;

static void pool_calls(void *arg) {
    pool_ctx *p = arg;
    for (int i = 0; i < p->calls; i++) msa_threadpool_run(p->tp, empty_job, NULL);
}

static int bench_pool(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench pool", argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else {
            return cli_usage_error("bench pool", "unknown option '%s' (options: -t N --reps R --warmup W --json)", argv[i]);
        }
    }
    msa_threadpool *tp = make_pool(o.n_threads);
    bench_report *r = bench_report_new("pool", &o);
    bench_report_meta(r, "threads", "%d", msa_threadpool_size(tp));
    pool_ctx p = {.tp = tp, .calls = 10000};
    bench_stats s;
    bench_time(pool_calls, &p, o.warmup, o.reps, &s);
    /* per call */
    s.median /= p.calls, s.min /= p.calls, s.max /= p.calls, s.q1 /= p.calls, s.q3 /= p.calls;
    bench_metric m = {"Mcalls/s", 1e-6, 0};
    bench_report_row(r, "msa_threadpool_run (empty job)", &s, &m, 1, "back to back; workers spinning");
    msa_threadpool_free(tp);
    return bench_report_finish(r);
}

/* --------------------------------------------------------------------------------------------- matmul */

typedef struct shape {
    const char *model, *name;
    int64_t n_out, n_in;
} shape;

static const shape shapes[] = {
    {"smollm2-135m", "attn_q/o 576x576", 576, 576},
    {"smollm2-135m", "attn_k/v 192x576", 192, 576},
    {"smollm2-135m", "ffn_gate/up 1536x576", 1536, 576},
    {"smollm2-135m", "ffn_down 576x1536", 576, 1536},
    {"smollm2-135m", "lm_head 49152x576", 49152, 576},
    {"qwen3-4b", "attn_q 4096x2560", 4096, 2560},
    {"qwen3-4b", "attn_k/v 1024x2560", 1024, 2560},
    {"qwen3-4b", "attn_o 2560x4096", 2560, 4096},
    {"qwen3-4b", "ffn_gate/up 9728x2560", 9728, 2560},
    {"qwen3-4b", "ffn_down 2560x9728", 2560, 9728},
    {"qwen3-4b", "lm_head 151936x2560", 151936, 2560},
};

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random weights with normal (never subnormal, NaN or infinite) values and scales. */
static void fill_weights(msa_dtype t, uint8_t *p, size_t bytes, int64_t n_out, int64_t n_in) {
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t v = rng64();
        memcpy(p + i, &v, 8);
    }
    size_t rb = msa_dtype_row_bytes(t, n_in);
    for (int64_t r = 0; r < n_out; r++) {
        uint8_t *row = p + (size_t)r * rb;
        if (t == MSA_DTYPE_F32) {
            for (int64_t i = 0; i < n_in; i++) {
                uint32_t v;
                memcpy(&v, row + 4 * i, 4);
                v = (v & 0x807fffffu) | (uint32_t)(120 + (v >> 23 & 7)) << 23;
                memcpy(row + 4 * i, &v, 4);
            }
        } else if (t == MSA_DTYPE_F16 || t == MSA_DTYPE_BF16) {
            for (int64_t i = 0; i < n_in; i++) {
                uint16_t v;
                memcpy(&v, row + 2 * i, 2);
                if (t == MSA_DTYPE_F16) v = (uint16_t)((v & 0x83ffu) | (uint16_t)((10 + (v >> 10 & 3)) << 10));
                else v = (uint16_t)((v & 0x807fu) | (uint16_t)((120 + (v >> 7 & 7)) << 7));
                memcpy(row + 2 * i, &v, 2);
            }
        } else {
            size_t bb = t == MSA_DTYPE_Q8_0 ? 34 : t == MSA_DTYPE_Q4_0 ? 18 : 20;
            for (int64_t b = 0; b < n_in / 32; b++) {
                uint16_t d = msa_f32_to_f16(0.01f), m = msa_f32_to_f16(-0.05f);
                memcpy(row + b * bb, &d, 2);
                if (t == MSA_DTYPE_Q4_1) memcpy(row + b * bb + 2, &m, 2);
            }
        }
    }
}

typedef struct mm_ctx {
    msa_threadpool *tp;
    msa_tensor w[64]; /* copies, cycled so that decode streams from memory as in a real model */
    int n_copies, next;
    const float *x;
    float *y;
    int n_tok;
} mm_ctx;

static void mm_call(void *arg) {
    mm_ctx *c = arg;
    msa_matmul(c->tp, &c->w[c->next], c->x, c->y, c->n_tok);
    c->next = (c->next + 1) % c->n_copies;
}

static int parse_dtype(const char *s, msa_dtype *out) {
    for (int t = 0; t < MSA_DTYPE_COUNT; t++)
        if (!strcmp(s, msa_dtype_name((msa_dtype)t))) {
            *out = (msa_dtype)t;
            return 1;
        }
    return 0;
}

static int bench_matmul(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    const char *model = "all";
    int have_dtype = 0, n_prefill = 128;
    msa_dtype dtype = MSA_DTYPE_Q4_1;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (bench_parse_opt(&o, "bench matmul", argc, argv, &i, &rc)) {
            if (rc) return rc;
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            if (!parse_dtype(argv[++i], &dtype)) return cli_usage_error("bench matmul", "--dtype: one of f32 f16 bf16 q8_0 q4_0 q4_1");
            have_dtype = 1;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
            if (strcmp(model, "all") && strcmp(model, "smollm2-135m") && strcmp(model, "qwen3-4b"))
                return cli_usage_error("bench matmul", "--model: smollm2-135m, qwen3-4b or all");
        } else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) {
            n_prefill = atoi(argv[++i]);
            if (n_prefill < 2 || n_prefill > 8192) return cli_usage_error("bench matmul", "--tokens: 2..8192");
        } else {
            return cli_usage_error("bench matmul", "unknown option '%s' (options: --dtype D --model M --tokens N -t N --reps R --warmup W --json)", argv[i]);
        }
    }
    msa_threadpool *tp = make_pool(o.n_threads);
    bench_report *r = bench_report_new("matmul", &o);
    bench_report_meta(r, "threads", "%d", msa_threadpool_size(tp));
    bench_report_meta(r, "simd", "%s", msa_cpu_simd_name());
    bench_report_meta(r, "panel_kernels", "%s", getenv("MSA_PANEL") && !strcmp(getenv("MSA_PANEL"), "1") ? "on (MSA_PANEL=1)" : "off");
    bench_progress(0, 1, "memory ceiling");
    bench_stats ms;
    double ceiling = measure_read(tp, (size_t)512 << 20, 1, 5, &ms);
    bench_report_meta(r, "read_ceiling_gbs", "%.2f", ceiling);
    bench_report_meta(r, "prefill_tokens", "%d", n_prefill);

    int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < n_shapes; si++) {
        const shape *sh = &shapes[si];
        if (strcmp(model, "all") && strcmp(model, sh->model)) continue;
        msa_dtype dt = have_dtype ? dtype : !strcmp(sh->model, "qwen3-4b") ? MSA_DTYPE_BF16 : MSA_DTYPE_Q4_1;
        size_t bytes = msa_dtype_row_bytes(dt, sh->n_in) * (size_t)sh->n_out;
        mm_ctx c;
        memset(&c, 0, sizeof c);
        c.tp = tp;
        /* Enough copies to pass 512 MiB, so decode reads from memory, not from the 105 MB-class caches. */
        c.n_copies = (int)(((size_t)512 << 20) / bytes + 1);
        if (c.n_copies > 64) c.n_copies = 64;
        for (int k = 0; k < c.n_copies; k++) {
            uint8_t *p = xalloc(bytes);
            fill_weights(dt, p, bytes, sh->n_out, sh->n_in);
            c.w[k] = (msa_tensor){.name = sh->name, .dtype = dt, .n_dims = 2, .shape = {sh->n_out, sh->n_in, 1, 1},
                                  .data = p, .nbytes = bytes};
        }
        float *x = xalloc(sizeof(float) * (size_t)sh->n_in * (size_t)n_prefill);
        c.y = xalloc(sizeof(float) * (size_t)sh->n_out * (size_t)n_prefill);
        for (int64_t i = 0; i < sh->n_in * n_prefill; i++) x[i] = (float)((int64_t)(rng64() % 2001) - 1000) * 1e-3f;
        c.x = x;
        char name[96];
        for (int pass = 0; pass < 2; pass++) {
            c.n_tok = pass == 0 ? 1 : n_prefill;
            snprintf(name, sizeof name, "%s %s %s", pass == 0 ? "decode " : "prefill", msa_dtype_name(dt), sh->name);
            bench_progress(si + 1, n_shapes, name);
            bench_stats s;
            int reps = o.reps, warm = o.warmup;
            if (pass == 0) { /* decode calls are short: time batches of calls, report per call */
                int inner = (int)(2e8 / (double)bytes) + 1;
                if (inner > 200) inner = 200;
                double *t = xalloc(sizeof(double) * (size_t)reps);
                for (int i = 0; i < warm * inner; i++) mm_call(&c);
                for (int rep = 0; rep < reps; rep++) {
                    double t0 = bench_now();
                    for (int i = 0; i < inner; i++) mm_call(&c);
                    t[rep] = (bench_now() - t0) / inner;
                }
                bench_stats_from(t, reps, &s);
                free(t);
            } else {
                bench_time(mm_call, &c, warm, reps, &s);
            }
            double flop = 2.0 * (double)sh->n_out * (double)sh->n_in * c.n_tok;
            bench_metric m[2] = {{"weight GB/s (% of read)", (double)bytes / 1e9, ceiling}, {"GFLOP/s", flop / 1e9, 0}};
            bench_report_row(r, name, &s, m, 2, NULL);
        }
        for (int k = 0; k < c.n_copies; k++) free((void *)c.w[k].data);
        free(x);
        free(c.y);
    }
    char kernels[512];
    msa_cpu_kernel_summary(kernels, sizeof kernels);
    bench_report_meta(r, "kernels", "%s", kernels);
    msa_threadpool_free(tp);
    return bench_report_finish(r);
}

/* ---------------------------------------------------------------------------------------------- main */

static void usage(FILE *f) {
    fprintf(f, "usage: msa bench WHAT [options]\n"
               "  mem      memory bandwidth ceiling: streaming read and copy over >= 1 GiB [--size MiB]\n"
               "  matmul   matmul kernels on SmolLM2-135M (q4_1) and Qwen3-4B (bf16) shapes, decode and prefill,\n"
               "           vs the read ceiling [--dtype D] [--model smollm2-135m|qwen3-4b|all] [--tokens N]\n"
               "  pool     thread-pool dispatch cost (us per msa_threadpool_run)\n"
               "  bank     memory-bank build/open/scan/verify (see msa bench bank --help)\n"
               "  prefill  model prefill tokens/s (see msa bench prefill --help)\n"
               "  decode   model decode tokens/s\n"
               "  gpu      load, prefill, batched decode and encode on a device beside its ceilings (--help)\n"
               "common: -t N threads (0 = the usable CPUs), --reps R, --warmup W, --json\n");
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    const char *what = argv[1];
    if (!strcmp(what, "--help") || !strcmp(what, "-h") || !strcmp(what, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(what, "mem")) return bench_mem(argc - 1, argv + 1);
    if (!strcmp(what, "matmul")) return bench_matmul(argc - 1, argv + 1);
    if (!strcmp(what, "pool")) return bench_pool(argc - 1, argv + 1);
    if (!strcmp(what, "bank")) return bench_bank(argc - 1, argv + 1);
    if (!strcmp(what, "route") || !strcmp(what, "read") || !strcmp(what, "encode")) return bench_msa(what, argc - 1, argv + 1);
    if (!strcmp(what, "prefill") || !strcmp(what, "decode")) return bench_model(what, argc - 1, argv + 1);
    if (!strcmp(what, "gpu")) return bench_gpu(argc - 1, argv + 1);
    fprintf(stderr, "msa bench: unknown benchmark '%s'\n", what);
    usage(stderr);
    return 64;
}
