/* bench_bank.c — `msa bench bank ...`: memory-bank benchmarks against this machine's ceilings.
 *   build DIR [--tokens N] [--doc-tokens D] [--shape msa-4b]   synthetic bank (vectors from a fast PRNG)
 *   open DIR                 time to open (manifest, headers, document tables), 5 runs
 *   scan DIR [--cold]        full routing-key scan: a bf16/f32 dot product of one query per chunk per router
 *                            layer (the routing inner loop), all threads; GB/s of keys
 *   verify DIR [--cold]      full checksum scan, GB/s
 *   fetch DIR [--cold]       random documents' K̄/V̄ of every router layer: mapping vs one pread per layer
 *   ceilings DIR             memory bandwidth (RAM buffer reduction) and disk bandwidth (cold sequential read
 *                            of the largest segment)
 *   scale DIR [--docs N] [--single M] [--calls C]  N small documents added in one call, then replaced in
 *                            one call; then M single-document adds, M replaces and M deletes on one writer
 *                            handle, each with its own durable commit (a server's use); then C of each as
 *                            separate calls (open, stage, commit, close, as `msa bank add` does: the open
 *                            validates and indexes the whole bank, O(N)). Time per operation in the first and
 *                            the last tenth of each phase (flat = no growth with the bank), segments, the
 *                            writer's and a reader's open files, open times, peak RSS. Synthetic-small shape.
 *                            Defaults N = 10^6, M = 10^4, C = 100.
 * --cold drops the bank's files from the page cache first (posix_fadvise DONTNEED). Output: the table every
 * `msa bench` prints (bench_util: time per call with min/max/IQR and named rates), `--json` the same report
 * as one msa.bench/1 document. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "commands.h"
#include "util/cpu_count.h"
#include "util/error.h"

static bool bank_json; /* --json: the report is one JSON document */

static bench_report *report(const char *suite) {
    bench_opts o = bench_default_opts();
    o.json = bank_json;
    o.reps = 0, o.warmup = 0; /* each benchmark says in its rows how many runs it made */
    return bench_report_new(suite, &o);
}

/* Statistics of a single measurement. */
static bench_stats one(double seconds) {
    bench_stats b = {.n = 1, .median = seconds, .min = seconds, .max = seconds, .q1 = seconds, .q3 = seconds};
    return b;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


/* Drop every file of dir from the page cache (best effort). */
static void drop_cache(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096 + 300];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        int fd = open(p, O_RDONLY);
        if (fd < 0) continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
}

/* ---------------------------------------------------------------------------------------------- build */

static uint64_t xs(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* small finite values: bf16/f32 bit patterns with a fixed exponent */
static void fill(void *buf, uint64_t n, msa_bank_dtype dt, uint64_t *seed) {
    if (dt == MSA_BANK_BF16) {
        uint16_t *p = buf;
        uint64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            uint64_t r = xs(seed);
            for (int k = 0; k < 4; k++) p[i + (uint64_t)k] = (uint16_t)(0x3c00 | ((r >> (16 * k)) & 0x80ff));
        }
        for (; i < n; i++) p[i] = 0x3c00;
    } else {
        float *p = buf;
        for (uint64_t i = 0; i < n; i++) p[i] = (float)(int)(xs(seed) & 0xff) / 256.0f - 0.5f;
    }
}

static int bench_build(const char *dir, uint64_t tokens, uint64_t doc_tokens, const char *shape_name) {
    msa_bank_create_params cp = {0};
    if (msa_bank_shape_named(shape_name, &cp.shape)) return cli_fail(MSA_ERR_INVALID_ARG);
    memcpy(cp.fingerprint, "bench-bank-synthetic-fingerprint", 32);
    msa_status st = msa_bank_create(dir, &cp);
    if (st) return cli_fail(st);
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    op.max_pending_bytes = (size_t)256 << 20;
    msa_bank *b;
    if ((st = msa_bank_open(dir, &op, &b))) return cli_fail(st);
    const msa_bank_shape *sh = &cp.shape;
    uint32_t n_chunks = (uint32_t)((doc_tokens + (uint64_t)sh->pooling - 1) / (uint64_t)sh->pooling);
    size_t es = msa_bank_dtype_size(sh->dtype);
    uint64_t kv = (uint64_t)n_chunks * (uint64_t)sh->n_kv_heads * (uint64_t)sh->head_dim;
    void *rk[MSA_BANK_MAX_LAYERS], *km[MSA_BANK_MAX_LAYERS], *vm[MSA_BANK_MAX_LAYERS];
    for (int s = 0; s < sh->n_router; s++) {
        rk[s] = malloc((uint64_t)n_chunks * (uint64_t)sh->route_dim[s] * es);
        km[s] = malloc(kv * es);
        vm[s] = malloc(kv * es);
        if (!rk[s] || !km[s] || !vm[s]) return cli_fail(MSA_ERR_NOMEM);
    }
    size_t text_len = doc_tokens * 4;
    char *text = malloc(text_len + 1);
    if (!text) return cli_fail(MSA_ERR_NOMEM);
    uint64_t seed = 0x9e3779b97f4a7c15ULL, n_docs = (tokens + doc_tokens - 1) / doc_tokens;
    static const char *words[] = {"memory ", "sparse ", "router ", "chunk ", "token ", "bank ", "query ", "doc "};
    double t0 = now_s(), last = 0;
    for (uint64_t d = 0; d < n_docs && !st; d++) {
        for (int s = 0; s < sh->n_router; s++) { /* fresh vectors per document: no dedup, real bytes */
            fill(rk[s], (uint64_t)n_chunks * (uint64_t)sh->route_dim[s], sh->dtype, &seed);
            fill(km[s], kv, sh->dtype, &seed);
            fill(vm[s], kv, sh->dtype, &seed);
        }
        size_t n = 0;
        while (n < text_len) {
            const char *w = words[xs(&seed) & 7];
            size_t wl = strlen(w);
            if (wl > text_len - n) wl = text_len - n;
            memcpy(text + n, w, wl);
            n += wl;
        }
        char id[64];
        snprintf(id, sizeof id, "bench/%08" PRIu64, d);
        msa_bank_doc doc = {.id = id, .text = text, .text_len = text_len, .n_tokens = doc_tokens,
                            .n_chunks = n_chunks, .route_keys = (const void *const *)rk,
                            .k_mean = (const void *const *)km, .v_mean = (const void *const *)vm};
        st = msa_bank_add(b, &doc, false, NULL, NULL);
        double t = now_s();
        if (isatty(2) && t - last > 0.5) {
            double rate = (double)(d + 1) * (double)doc_tokens / (t - t0);
            fprintf(stderr, "\rbuilding: %" PRIu64 "/%" PRIu64 " documents, %.0f tokens/s, ETA %.0f s   ", d + 1,
                    n_docs, rate, (double)(n_docs - d - 1) * (double)doc_tokens / rate);
            last = t;
        }
    }
    if (!st) st = msa_bank_compact(b); /* one segment: each layer's keys one contiguous span */
    double dt = now_s() - t0;
    if (isatty(2)) fputc('\n', stderr);
    msa_bank_info in;
    msa_bank_get_info(b, &in);
    msa_bank_close(b);
    for (int s = 0; s < sh->n_router; s++) {
        free(rk[s]);
        free(km[s]);
        free(vm[s]);
    }
    free(text);
    if (st) return cli_fail(st);
    bench_report *r = report("bank build");
    bench_report_meta(r, "bank", "%s (%s shape, %" PRIu64 " documents of %" PRIu64 " tokens)", dir, shape_name,
                      in.n_docs, doc_tokens);
    bench_stats bs = one(dt);
    bench_metric m[2] = {{"tokens/s", (double)in.n_tokens, 0}, {"GB/s", (double)in.bytes / 1e9, 0}};
    char note[160];
    snprintf(note, sizeof note, "%.2f GB, %.1f bytes/token (vectors %.0f + text and tables), compaction included",
             (double)in.bytes / 1e9, (double)in.bytes / (double)in.n_tokens,
             (double)(in.bytes - in.text_bytes) / (double)in.n_tokens);
    bench_report_row(r, "build", &bs, m, 2, note);
    return bench_report_finish(r);
}

/* ------------------------------------------------------------------------------------------------ open */

static int bench_open(const char *dir) {
    double t[5];
    msa_bank_info in = {0};
    for (int i = 0; i < 5; i++) {
        if (i == 0) drop_cache(dir);
        double t0 = now_s();
        msa_bank *b;
        msa_status st = msa_bank_open(dir, NULL, &b);
        t[i] = now_s() - t0;
        if (st) return cli_fail(st);
        msa_bank_get_info(b, &in);
        msa_bank_close(b);
    }
    bench_report *r = report("bank open");
    bench_report_meta(r, "bank", "%s: %" PRIu64 " tokens, %" PRIu64 " documents, %.2f GB", dir, in.n_tokens, in.n_docs,
                      (double)in.bytes / 1e9);
    bench_stats cs = one(t[0]), ws;
    bench_stats_from(t + 1, 4, &ws);
    bench_report_row(r, "open, cold (page cache dropped)", &cs, NULL, 0, NULL);
    bench_report_row(r, "open, warm (4 runs)", &ws, NULL, 0, NULL);
    return bench_report_finish(r);
}

/* ------------------------------------------------------------------------------------------------ scan */

typedef struct scan_job {
    const msa_bank *b;
    const msa_bank_shape *sh;
    int ith, nth;
    const float *q;        /* [route_dim] query, f32 */
    double best;           /* max score seen (keeps the work alive) */
    uint64_t bytes;
} scan_job;

static float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void *scan_worker(void *arg) {
    scan_job *j = arg;
    const msa_bank_shape *sh = j->sh;
    double best = -1e30;
    for (int s = 0; s < sh->n_router; s++) {
        const msa_bank_span *sp;
        size_t n;
        if (msa_bank_route_spans(j->b, s, &sp, &n)) continue;
        uint64_t dim = (uint64_t)sh->route_dim[s];
        for (size_t i = 0; i < n; i++) {
            uint64_t c0 = sp[i].n_chunks * (uint64_t)j->ith / (uint64_t)j->nth;
            uint64_t c1 = sp[i].n_chunks * (uint64_t)(j->ith + 1) / (uint64_t)j->nth;
            for (uint64_t c = c0; c < c1; c++) {
                float acc[16] = {0};
                if (sh->dtype == MSA_BANK_BF16) {
                    const uint16_t *k = (const uint16_t *)sp[i].keys + c * dim;
                    for (uint64_t e = 0; e + 16 <= dim; e += 16)
                        for (int t = 0; t < 16; t++) acc[t] += bf16f(k[e + (uint64_t)t]) * j->q[e + (uint64_t)t];
                } else {
                    const float *k = (const float *)sp[i].keys + c * dim;
                    for (uint64_t e = 0; e + 16 <= dim; e += 16)
                        for (int t = 0; t < 16; t++) acc[t] += k[e + (uint64_t)t] * j->q[e + (uint64_t)t];
                }
                float sum = 0;
                for (int t = 0; t < 16; t++) sum += acc[t];
                if (sum > best) best = sum;
            }
            j->bytes += (c1 - c0) * dim * msa_bank_dtype_size(sh->dtype);
        }
    }
    j->best = best;
    return NULL;
}

static int bench_scan(const char *dir, bool cold) {
    if (cold) drop_cache(dir);
    msa_bank *b;
    msa_status st = msa_bank_open(dir, NULL, &b);
    if (st) return cli_fail(st);
    msa_bank_info in;
    msa_bank_get_info(b, &in);
    int nth = msa_cpu_count();
    float *q = malloc((size_t)MSA_BANK_MAX_LAYERS * 4096 * sizeof *q);
    for (int i = 0; i < MSA_BANK_MAX_LAYERS * 4096; i++) q[i] = (float)(i % 17) / 17.0f - 0.5f;
    int runs = cold ? 1 : 3;
    double samples[3], bytes = 0;
    for (int r = 0; r < runs; r++) {
        scan_job jobs[256];
        pthread_t th[256];
        if (nth > 256) nth = 256;
        double t0 = now_s();
        for (int i = 0; i < nth; i++) {
            jobs[i] = (scan_job){b, &in.shape, i, nth, q, 0, 0};
            pthread_create(&th[i], NULL, scan_worker, &jobs[i]);
        }
        bytes = 0;
        for (int i = 0; i < nth; i++) {
            pthread_join(th[i], NULL);
            bytes += (double)jobs[i].bytes;
        }
        samples[r] = now_s() - t0;
    }
    msa_bank_close(b);
    free(q);
    bench_report *r = report("bank scan");
    bench_report_meta(r, "scan", "%s: routing keys of %" PRIu64 " chunks x %d router layers, %.2f GB, dot product per "
                      "chunk per layer, %d threads", dir, in.n_chunks, in.shape.n_router, bytes / 1e9, nth);
    bench_stats bs;
    bench_stats_from(samples, runs, &bs);
    bench_metric m[2] = {{"GB/s", bytes / 1e9, 0}, {"M scores/s", (double)in.n_chunks * in.shape.n_router / 1e6, 0}};
    bench_report_row(r, cold ? "scan, cold" : "scan, warm (3 runs)", &bs, m, 2, NULL);
    return bench_report_finish(r);
}

/* ----------------------------------------------------------------------------------------------- fetch */

/* Random documents' content K̄/V̄ of every router layer, as the context assembly after routing reads them:
 * through the mapping (touching every byte) and with one pread per layer into a buffer (what a pinned-host or
 * GPU staging tier does). */
static volatile uint64_t fetch_sink;

static int bench_fetch(const char *dir, bool cold) {
    if (cold) drop_cache(dir);
    msa_bank *b;
    msa_status st = msa_bank_open(dir, NULL, &b);
    if (st) return cli_fail(st);
    msa_bank_info in;
    msa_bank_get_info(b, &in);
    if (!in.n_docs || in.shape.mode != MSA_BANK_NATIVE) {
        msa_bank_close(b);
        return cli_fail(msa_fail(MSA_ERR_INVALID_ARG, "%s: no documents with content to fetch", dir));
    }
    int n = in.n_docs < 256 ? (int)in.n_docs : 256;
    uint64_t seed = 12345;
    double lat[2][256], bytes[2] = {0, 0};
    void *kb = NULL, *vb = NULL;
    size_t cap = 0;
    for (int mode = 0; mode < 2 && !st; mode++) {
        if (cold && mode == 1) drop_cache(dir);
        for (int i = 0; i < n && !st; i++) {
            msa_bank_doc_info d;
            st = msa_bank_doc_at(b, xs(&seed) % in.n_docs, &d);
            size_t half = (size_t)d.n_chunks * (size_t)in.shape.n_kv_heads * (size_t)in.shape.head_dim *
                          msa_bank_dtype_size(in.shape.dtype);
            if (half > cap) {
                free(kb);
                free(vb);
                kb = malloc(half);
                vb = malloc(half);
                cap = half;
            }
            double t0 = now_s();
            uint64_t sum = 0;
            for (int s = 0; s < in.shape.n_router && !st; s++) {
                if (mode == 0) {
                    const void *k, *v;
                    st = msa_bank_doc_content(b, d.index, s, &k, &v);
                    for (size_t o = 0; !st && o < half; o += 64) sum += ((const uint8_t *)k)[o] + ((const uint8_t *)v)[o];
                } else {
                    st = msa_bank_read_content(b, d.index, s, kb, vb);
                    sum += ((uint8_t *)kb)[0];
                }
                bytes[mode] += 2.0 * (double)half;
            }
            fetch_sink += sum; /* keep the reads */
            lat[mode][i] = now_s() - t0;
        }
    }
    free(kb);
    free(vb);
    msa_bank_close(b);
    if (st) return cli_fail(st);
    bench_report *r = report("bank fetch");
    bench_report_meta(r, "fetch", "%s: K/V means of all %d router layers of %d random documents, %s", dir,
                      in.shape.n_router, n, cold ? "cold" : "warm");
    for (int mode = 0; mode < 2; mode++) {
        bench_stats bs;
        bench_stats_from(lat[mode], n, &bs); /* sorts */
        bench_metric m = {"GB/s", bytes[mode] / n / 1e9, 0};
        char note[64];
        snprintf(note, sizeof note, "p99 %.3f ms per document", lat[mode][n * 99 / 100] * 1e3);
        bench_report_row(r, mode == 0 ? "fetch via the mapping" : "fetch with pread", &bs, &m, 1, note);
    }
    return bench_report_finish(r);
}

/* ---------------------------------------------------------------------------------------------- verify */

static int bench_verify(const char *dir, bool cold) {
    if (cold) drop_cache(dir);
    msa_bank *b;
    msa_status st = msa_bank_open(dir, NULL, &b);
    if (st) return cli_fail(st);
    msa_bank_verify_report rep;
    st = msa_bank_verify(b, NULL, NULL, &rep);
    msa_bank_close(b);
    if (st) return cli_fail(st);
    bench_report *r = report("bank verify");
    bench_stats bs = one(rep.seconds);
    bench_metric m = {"GB/s", (double)rep.bytes_checked / 1e9, 0};
    char note[64];
    snprintf(note, sizeof note, "%.2f GB checked, all threads", (double)rep.bytes_checked / 1e9);
    bench_report_row(r, cold ? "verify, cold" : "verify, warm", &bs, &m, 1, note);
    return bench_report_finish(r);
}

/* -------------------------------------------------------------------------------------------- ceilings */

typedef struct bw_job {
    const uint64_t *p;
    uint64_t n;
    uint64_t sum;
} bw_job;

static void *bw_worker(void *arg) {
    bw_job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (uint64_t i = 0; i + 4 <= j->n; i += 4) {
        s0 += j->p[i];
        s1 += j->p[i + 1];
        s2 += j->p[i + 2];
        s3 += j->p[i + 3];
    }
    j->sum = s0 ^ s1 ^ s2 ^ s3;
    return NULL;
}

static int bench_ceilings(const char *dir) {
    /* memory: a 2 GiB buffer read by all threads, best of 3 */
    uint64_t words = ((uint64_t)2 << 30) / 8;
    uint64_t *buf = malloc(words * 8);
    if (!buf) return cli_fail(MSA_ERR_NOMEM);
    for (uint64_t i = 0; i < words; i++) buf[i] = i;
    int nth = msa_cpu_count();
    if (nth > 64) nth = 64;
    double mem_t[3];
    for (int r = 0; r < 3; r++) {
        bw_job jobs[64];
        pthread_t th[64];
        double t0 = now_s();
        for (int i = 0; i < nth; i++) {
            jobs[i] = (bw_job){buf + words * (uint64_t)i / (uint64_t)nth, words / (uint64_t)nth, 0};
            pthread_create(&th[i], NULL, bw_worker, &jobs[i]);
        }
        for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
        mem_t[r] = now_s() - t0;
    }
    free(buf);
    /* disk: the largest file of the bank, dropped from the cache, read sequentially in 8 MiB blocks */
    DIR *d = opendir(dir);
    char biggest[4096 + 300] = "";
    off_t big = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[4096 + 300];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > big) {
            big = sb.st_size;
            snprintf(biggest, sizeof biggest, "%s", p);
        }
    }
    if (d) closedir(d);
    double disk_t = 0, disk_bytes = 0;
    if (biggest[0]) {
        int fd = open(biggest, O_RDONLY);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        char *blk = malloc((size_t)8 << 20);
        double t0 = now_s();
        ssize_t n;
        uint64_t limit = (uint64_t)8 << 30; /* at most 8 GiB */
        while (blk && disk_bytes < (double)limit && (n = read(fd, blk, (size_t)8 << 20)) > 0) disk_bytes += (double)n;
        disk_t = now_s() - t0;
        free(blk);
        close(fd);
    }
    bench_report *r = report("bank ceilings");
    bench_stats ms;
    bench_stats_from(mem_t, 3, &ms);
    bench_metric mm = {"GB/s", (double)words * 8 / 1e9, 0};
    char name[64];
    snprintf(name, sizeof name, "memory read (%d threads, 3 runs)", nth);
    bench_report_row(r, name, &ms, &mm, 1, "a 2 GiB buffer");
    if (disk_t > 0) {
        bench_stats ds = one(disk_t);
        bench_metric dm = {"GB/s", disk_bytes / 1e9, 0};
        char note[4096 + 400];
        snprintf(note, sizeof note, "%.2f GB of %s, page cache dropped", disk_bytes / 1e9, biggest);
        bench_report_row(r, "disk sequential read", &ds, &dm, 1, note);
    }
    return bench_report_finish(r);
}

/* ---------------------------------------------------------------------------------------------- scale */

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ".", ".." and the descriptor of the listing itself */
}

typedef struct scale_doc {
    char id[32], text[64];
    float rk[2][2 * 16], km[2][2 * 16], vm[2][2 * 16];
    const void *rkp[2], *kmp[2], *vmp[2];
    msa_bank_doc d;
} scale_doc;

static void scale_make(scale_doc *s, uint64_t k, uint32_t variant) {
    snprintf(s->id, sizeof s->id, "d%" PRIu64, k);
    int tl = snprintf(s->text, sizeof s->text, "document %" PRIu64 " variant %u", k, variant);
    uint64_t seed = k * 2654435761u + variant + 1;
    for (int l = 0; l < 2; l++) {
        fill(s->rk[l], 32, MSA_BANK_F32, &seed);
        fill(s->km[l], 32, MSA_BANK_F32, &seed);
        fill(s->vm[l], 32, MSA_BANK_F32, &seed);
        s->rkp[l] = s->rk[l];
        s->kmp[l] = s->km[l];
        s->vmp[l] = s->vm[l];
    }
    uint64_t n_tokens = 5; /* pooling 4: 2 chunks */
    s->d = (msa_bank_doc){.id = s->id, .text = s->text, .text_len = (size_t)tl, .n_tokens = n_tokens, .n_chunks = 2,
                          .route_keys = s->rkp, .k_mean = s->kmp, .v_mean = s->vmp};
}

typedef struct scale_phase {
    const char *name;
    uint64_t n;
    double total, first, last; /* seconds; per-operation means of the first and last tenth */
    /* single operations: medians of the first and last tenth, wall clock and process CPU time (the CPU time
     * leaves out waiting for fsync, whose latency on a shared disk varies far more than the work does) */
    double med_first, med_last, cpu_first, cpu_last;
    uint64_t segments;
} scale_phase;

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *a, uint64_t n) {
    if (!n) return 0;
    qsort(a, n, sizeof *a, cmp_double);
    return n % 2 ? a[n / 2] : (a[n / 2 - 1] + a[n / 2]) / 2;
}

/* per-operation samples of a phase -> medians of its first and last tenth */
static void phase_medians(scale_phase *ph, double *wall, double *cpu, uint64_t m) {
    uint64_t tenth = m / 10 ? m / 10 : 1;
    ph->med_first = median(wall, tenth);
    ph->med_last = median(wall + (m - tenth), tenth);
    ph->cpu_first = median(cpu, tenth);
    ph->cpu_last = median(cpu + (m - tenth), tenth);
}

static msa_status scale_open_w(const char *dir, msa_bank **b) {
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    return msa_bank_open(dir, &op, b);
}

/* one call: n documents staged in one handle (add or replace), committed at the end */
static msa_status scale_one_call(const char *dir, uint64_t n, uint32_t variant, scale_phase *ph) {
    msa_bank *b;
    MSA_TRY(scale_open_w(dir, &b));
    double t0 = now_s(), tenth = 0;
    uint64_t step = n / 10 ? n / 10 : 1;
    msa_status st = MSA_OK;
    for (uint64_t k = 0; k < n && !st; k++) {
        scale_doc sd;
        scale_make(&sd, k, variant);
        st = msa_bank_add(b, &sd.d, true, NULL, NULL);
        if ((k + 1) % step == 0) {
            double t = now_s();
            if (k + 1 == step) ph->first = (t - t0) / (double)step;
            ph->last = (t - tenth) / (double)step;
            tenth = t;
        }
        if (k + 1 == step) tenth = now_s();
    }
    if (!st) st = msa_bank_commit(b);
    ph->total = now_s() - t0;
    ph->n = n;
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    ph->segments = bi.n_segments;
    msa_bank_close(b);
    return st;
}

/* m single-document operations, each one add (kind 0), replace (1) or delete (2) followed by its own durable
 * commit (segment and manifest fsynced, the merge policy run): on the writer w (a server's use; the most open
 * files seen go to *max_fds), or with w NULL each in its own open and close of dir (a CLI process's use) */
static msa_status scale_ops(msa_bank *w, const char *dir, uint64_t k0, uint64_t m, int kind, scale_phase *ph,
                            int *max_fds) {
    double t0 = now_s(), t_first = 0, t_last_start = 0;
    uint64_t tenth = m / 10 ? m / 10 : 1;
    double *wall = malloc(m * sizeof *wall), *cpu = malloc(m * sizeof *cpu);
    if (!wall || !cpu) {
        free(wall);
        free(cpu);
        return MSA_ERR_NOMEM;
    }
    msa_status st = MSA_OK;
    for (uint64_t i = 0; i < m && !st; i++) {
        if (i == m - tenth) t_last_start = now_s();
        double w0 = now_s(), c0 = cpu_s();
        msa_bank *b = w;
        if (!w && (st = scale_open_w(dir, &b))) break;
        scale_doc sd;
        scale_make(&sd, k0 + i, kind == 1 ? 7 : 0);
        if (kind == 2) st = msa_bank_remove(b, sd.id);
        else st = msa_bank_add(b, &sd.d, true, NULL, NULL);
        if (!st) st = msa_bank_commit(b);
        if (i + 1 == m || st) {
            msa_bank_info bi;
            msa_bank_get_info(b, &bi);
            ph->segments = bi.n_segments;
        }
        if (!w) msa_bank_close(b);
        wall[i] = now_s() - w0;
        cpu[i] = cpu_s() - c0;
        if (i + 1 == tenth) t_first = now_s() - t0;
        if (w && i % 256 == 0) {
            int fds = count_fds();
            if (fds > *max_fds) *max_fds = fds;
        }
    }
    ph->total = now_s() - t0;
    ph->n = m;
    ph->first = t_first / (double)tenth;
    ph->last = (now_s() - t_last_start) / (double)tenth;
    if (!st) phase_medians(ph, wall, cpu, m);
    free(wall);
    free(cpu);
    return st;
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* n documents in one call, replaced in one call; then m single-document adds, replaces and deletes on one
 * writer handle, each committed durably; then c of each as separate calls (open, operation, commit, close) */
static int bench_scale(const char *dir, uint64_t n, uint64_t m, uint64_t c) {
    if (m > n / 3) m = n / 3 ? n / 3 : 1;
    if (c > m) c = m;
    msa_bank_create_params cp = {0};
    msa_bank_shape_named("synthetic-small", &cp.shape);
    msa_status st = msa_bank_create(dir, &cp);
    if (st) return cli_fail(st);
    enum { NPH = 8 };
    scale_phase ph[NPH] = {{.name = "add, one call"}, {.name = "replace, one call"},
                           {.name = "add, single commits"}, {.name = "replace, single commits"},
                           {.name = "delete, single commits"}, {.name = "add, one per open"},
                           {.name = "replace, one per open"}, {.name = "delete, one per open"}};
    int writer_fds = 0, fd_base = count_fds();
    double open_s = 0;
    if (!st) st = scale_one_call(dir, n, 0, &ph[0]);
    if (!st) st = scale_one_call(dir, n, 1, &ph[1]);
    msa_bank *w = NULL;
    if (!st) {
        double t = now_s();
        st = scale_open_w(dir, &w);
        open_s = now_s() - t;
    }
    /* new documents n .. n+m-1; replace 0 .. m-1; delete n-m .. n-1 */
    if (!st) st = scale_ops(w, NULL, n, m, 0, &ph[2], &writer_fds);
    if (!st) st = scale_ops(w, NULL, 0, m, 1, &ph[3], &writer_fds);
    if (!st) st = scale_ops(w, NULL, n - m, m, 2, &ph[4], &writer_fds);
    msa_bank_close(w);
    /* per open: new documents n+m .., replace m .., delete n-m-c .. */
    if (!st) st = scale_ops(NULL, dir, n + m, c, 0, &ph[5], NULL);
    if (!st) st = scale_ops(NULL, dir, m, c, 1, &ph[6], NULL);
    if (!st) st = scale_ops(NULL, dir, n - m - c, c, 2, &ph[7], NULL);
    if (st) return cli_fail(st);
    writer_fds -= fd_base;
    int fd0 = count_fds();
    msa_bank *b;
    double t = now_s();
    if ((st = msa_bank_open(dir, NULL, &b))) return cli_fail(st);
    double reader_open_s = now_s() - t;
    int reader_fds = count_fds() - fd0;
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    msa_bank_close(b);
    bench_report *r = report("bank scale");
    bench_report_meta(r, "scale", "%" PRIu64 " documents in one call, then %" PRIu64 " single-document commits on "
                      "one writer, then %" PRIu64 " calls of each kind (open, operation, commit, close); time/call is "
                      "the mean per operation", n, m, c);
    for (int i = 0; i < NPH; i++) {
        double ratio = ph[i].first > 0 ? ph[i].last / ph[i].first : 0;
        double mr = ph[i].med_first > 0 ? ph[i].med_last / ph[i].med_first : 0;
        double cr = ph[i].cpu_first > 0 ? ph[i].cpu_last / ph[i].cpu_first : 0;
        bench_stats bs = one(ph[i].n ? ph[i].total / (double)ph[i].n : 0);
        bench_metric om = {"ops/s", 1, 0};
        char note[320];
        if (i < 2)
            snprintf(note, sizeof note, "%" PRIu64 " ops in %.2f s; first tenth %.2f us/op, last tenth %.2f us/op "
                     "(x%.2f); %" PRIu64 " segments", ph[i].n, ph[i].total, ph[i].first * 1e6, ph[i].last * 1e6,
                     ratio, ph[i].segments);
        else
            snprintf(note, sizeof note, "%" PRIu64 " ops in %.2f s; mean first/last tenth %.2f/%.2f us (x%.2f); "
                     "median %.2f -> %.2f us (x%.2f); CPU median %.2f -> %.2f us (x%.2f); %" PRIu64 " segments",
                     ph[i].n, ph[i].total, ph[i].first * 1e6, ph[i].last * 1e6, ratio, ph[i].med_first * 1e6,
                     ph[i].med_last * 1e6, mr, ph[i].cpu_first * 1e6, ph[i].cpu_last * 1e6, cr, ph[i].segments);
        bench_report_row(r, ph[i].name, &bs, &om, 1, note);
    }
    bench_report_meta(r, "writer", "writable open of %" PRIu64 " documents %.3f s; at most %d open files beyond "
                      "the process's own", n, open_s, writer_fds);
    bench_report_meta(r, "end", "%" PRIu64 " live documents, %" PRIu64 " segments, reader open %.3f s holding %d "
                      "open files, peak RSS %.2f GB", bi.n_docs, bi.n_segments, reader_open_s, reader_fds,
                      (double)peak_rss_kb() / 1e6);
    return bench_report_finish(r);
}

int bench_bank(int argc, char **argv) {
    bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    if (argc < 3 || help) {
        fprintf(help ? stdout : stderr, "usage: msa bench bank build|open|scan|verify|fetch|ceilings|scale DIR [--tokens N] [--doc-tokens D] "
                        "[--shape NAME] [--docs N] [--single M] [--calls C] [--cold] [--json]\n");
        return help ? 0 : 64;
    }
    const char *what = argv[1], *dir = argv[2], *shape = "msa-4b";
    uint64_t tokens = 10000000, doc_tokens = 4096, n_docs = 1000000, n_single = 10000, n_calls = 100;
    bool cold = false;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--doc-tokens") && i + 1 < argc) doc_tokens = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape = argv[++i];
        else if (!strcmp(argv[i], "--docs") && i + 1 < argc) n_docs = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--single") && i + 1 < argc) n_single = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc) n_calls = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--cold")) cold = true;
        else if (!strcmp(argv[i], "--json")) bank_json = true;
        else return cli_usage_error("bench bank", "unknown option '%s'", argv[i]);
    }
    if (!tokens || !doc_tokens) return cli_usage_error("bench bank", "--tokens and --doc-tokens must be positive");
    if (!strcmp(what, "build")) return bench_build(dir, tokens, doc_tokens, shape);
    if (!strcmp(what, "open")) return bench_open(dir);
    if (!strcmp(what, "scan")) return bench_scan(dir, cold);
    if (!strcmp(what, "verify")) return bench_verify(dir, cold);
    if (!strcmp(what, "fetch")) return bench_fetch(dir, cold);
    if (!strcmp(what, "ceilings")) return bench_ceilings(dir);
    if (!strcmp(what, "scale")) {
        if (!n_docs || !n_single || !n_calls)
            return cli_usage_error("bench bank", "--docs, --single and --calls must be positive");
        return bench_scale(dir, n_docs, n_single, n_calls);
    }
    return cli_usage_error("bench bank", "unknown benchmark '%s'", what);
}
