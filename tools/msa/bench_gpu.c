/* bench_gpu.c — `msa bench gpu`: the model on a device (the GPU by default), every number beside the
 * device's ceiling measured in the same run (backend.h ceilings: device copy bandwidth, a bf16 GEMM):
 *   load     model load time (weights mapped, copied to the device) and device memory after it;
 *   prefill  one forward of -p N tokens into an empty cache: tokens/s and TFLOP/s (2 x matrix params per
 *            token) against the GEMM ceiling;
 *   decode   B independent sequences (--batches 1,4,16,64), each with --ctx C tokens already in the cache
 *            (the sparse context of an MSA question: template + 16 selected documents' chunks + the question
 *            is about 1.5K tokens), then -n steps of B tokens with greedy ids computed on the device:
 *            aggregate tokens/s and the weight bytes streamed per second against the copy ceiling;
 *   encode   stage 1 (msa_encoder) over the text files of --encode-dir cut into documents of 200-2,000
 *            tokens, up to --encode-tokens: tokens/s.
 * Medians with spread over --reps (bench_util); --json for one JSON document. */
#include <dirent.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "bench_util.h"
#include "commands.h"
#include "memory/encode.h"
#include "model/forward.h"
#include "model/model.h"
#include "util/error.h"
#include "msa.h"

/* Options and help: the "bench gpu" row of cli_table.c (docs/cli.md). */

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int32_t synthetic_id(int64_t i, int n_vocab) { return (int32_t)(((uint64_t)i * 7919u + 13u) % (uint64_t)n_vocab); }

/* ------------------------------------------------------------------------------------------ prefill */

typedef struct {
    msa_session *s;
    const int32_t *ids;
    int n;
    int32_t next;
    msa_status st;
} prefill_ctx;

static void prefill_once(void *p) {
    prefill_ctx *c = p;
    msa_session_reset(c->s);
    int32_t last = c->n - 1;
    msa_fwd_batch b = {.n_tokens = c->n, .ids = c->ids, .logit_rows = &last, .n_logit_rows = 1, .argmax = &c->next};
    if (c->st == MSA_OK) c->st = msa_fwd_eval(c->s, &b);
}

/* ------------------------------------------------------------------------------------------- decode */

typedef struct {
    msa_session *s;
    int batch, ctx, steps, n_vocab;
    int32_t *ids, *pos, *seq, *rows, *next; /* [batch] */
    msa_status st;
} decode_ctx;

/* B sequences of ctx tokens each, one forward per sequence (document-wise positions from 0). */
static msa_status decode_fill(decode_ctx *c) {
    int32_t *ids = malloc((size_t)c->ctx * 4), *pos = malloc((size_t)c->ctx * 4), *seq = malloc((size_t)c->ctx * 4);
    msa_status st = ids && pos && seq ? MSA_OK : MSA_ERR_NOMEM;
    msa_session_reset(c->s);
    for (int b = 0; st == MSA_OK && b < c->batch; b++) {
        for (int i = 0; i < c->ctx; i++) ids[i] = synthetic_id((int64_t)b * 1000003 + i, c->n_vocab), pos[i] = i, seq[i] = b;
        msa_fwd_batch fb = {.n_tokens = c->ctx, .ids = ids, .pos = pos, .seq = seq};
        st = msa_fwd_eval(c->s, &fb);
    }
    free(ids), free(pos), free(seq);
    return st;
}

static void decode_once(void *p) {
    decode_ctx *c = p;
    if (c->st != MSA_OK) return;
    const int base = c->batch * c->ctx;
    msa_fwd_truncate(c->s, base); /* every repetition decodes from the same filled caches */
    for (int b = 0; b < c->batch; b++) c->ids[b] = synthetic_id(b, c->n_vocab);
    for (int t = 0; t < c->steps && c->st == MSA_OK; t++) {
        for (int b = 0; b < c->batch; b++) c->pos[b] = c->ctx + t, c->seq[b] = b, c->rows[b] = b;
        msa_fwd_batch fb = {.n_tokens = c->batch, .ids = c->ids, .pos = c->pos, .seq = c->seq, .logit_rows = c->rows,
                            .n_logit_rows = c->batch, .argmax = c->next};
        c->st = msa_fwd_eval(c->s, &fb);
        memcpy(c->ids, c->next, (size_t)c->batch * sizeof(int32_t));
    }
}

/* ------------------------------------------------------------------------------------------- encode */

/* What encode_docs collects: documents of 200..2,000 tokens until `want` tokens. */
typedef struct {
    const msa_model *m;
    int64_t want, total;
    int32_t **docs;
    size_t *lens, n_docs, cap;
    uint64_t rng;
} doc_set;

/* Cut one text file into documents. */
static msa_status add_file_docs(doc_set *ds, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return MSA_OK;
    char *text = NULL;
    size_t len = 0, got;
    char buf[1 << 16];
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        char *t = realloc(text, len + got + 1);
        if (!t) break;
        text = t;
        memcpy(text + len, buf, got);
        len += got;
    }
    fclose(f);
    msa_status st = MSA_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    if (text && msa_tokenize(msa_model_tokenizer(ds->m), text, len, false, &ids, &n) == MSA_OK) {
        for (size_t at = 0; at + 200 <= n && ds->total < ds->want;) {
            ds->rng = ds->rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t dl = 200 + (size_t)((ds->rng >> 33) % 1801);
            if (at + dl > n) dl = n - at;
            if (ds->n_docs == ds->cap) {
                size_t cap = ds->cap ? 2 * ds->cap : 1024;
                int32_t **nd = realloc(ds->docs, cap * sizeof *nd);
                if (nd) ds->docs = nd;
                size_t *nls = realloc(ds->lens, cap * sizeof *nls);
                if (nls) ds->lens = nls;
                if (!nd || !nls) {
                    st = MSA_ERR_NOMEM;
                    break;
                }
                ds->cap = cap;
            }
            int32_t *doc = malloc(dl * sizeof *doc);
            if (!doc) {
                st = MSA_ERR_NOMEM;
                break;
            }
            memcpy(doc, ids + at, dl * sizeof *doc);
            ds->docs[ds->n_docs] = doc;
            ds->lens[ds->n_docs++] = dl;
            ds->total += (int64_t)dl;
            at += dl;
        }
    }
    free(ids);
    free(text);
    return st;
}

/* The *.txt files of dir and its subdirectories (a few levels: data/corpora keeps one folder per corpus). */
static msa_status add_dir_docs(doc_set *ds, const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return depth ? MSA_OK : msa_fail(MSA_ERR_NOT_FOUND, "--encode-dir %s: cannot open", dir);
    msa_status st = MSA_OK;
    struct dirent *e;
    while (st == MSA_OK && ds->total < ds->want && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        size_t nl = strlen(e->d_name);
        if (S_ISDIR(sb.st_mode) && depth < 3) st = add_dir_docs(ds, path, depth + 1);
        else if (S_ISREG(sb.st_mode) && nl >= 5 && !strcmp(e->d_name + nl - 4, ".txt")) st = add_file_docs(ds, path);
    }
    closedir(d);
    return st;
}

static msa_status encode_docs(const msa_model *m, const char *dir, int64_t want, int32_t ***docs, size_t **lens,
                              size_t *n_docs, int64_t *total) {
    doc_set ds = {.m = m, .want = want, .rng = 42};
    msa_status st = add_dir_docs(&ds, dir, 0);
    if (st == MSA_OK && ds.n_docs == 0) st = msa_fail(MSA_ERR_NOT_FOUND, "--encode-dir %s: no *.txt text found", dir);
    *docs = ds.docs, *lens = ds.lens, *n_docs = ds.n_docs, *total = ds.total;
    return st;
}

typedef struct {
    msa_encoder *e;
    int32_t **docs;
    size_t *lens, n_docs;
    msa_status st;
} encode_ctx;

static void encode_once(void *p) {
    encode_ctx *c = p;
    const size_t per_call = 256; /* documents per msa_encoder_run: bounded host memory for the results */
    msa_encoded_doc *out = calloc(per_call, sizeof *out);
    if (!out) {
        c->st = MSA_ERR_NOMEM;
        return;
    }
    for (size_t at = 0; at < c->n_docs && c->st == MSA_OK; at += per_call) {
        size_t k = c->n_docs - at < per_call ? c->n_docs - at : per_call;
        c->st = msa_encoder_run(c->e, (const int32_t *const *)c->docs + at, c->lens + at, k, out);
        for (size_t i = 0; c->st == MSA_OK && i < k; i++) msa_encoded_doc_free(&out[i]);
    }
    free(out);
}

/* --------------------------------------------------------------------------------------------- main */

int bench_gpu(int argc, char **argv) {
    bench_opts o = bench_default_opts();
    o.reps = 5;
    o.warmup = 1;
    const char *model_path = NULL, *encode_dir = NULL;
    long n_prompt = 2048, ctx = 1536, steps = 32, encode_tokens = 1000000;
    int batches[8] = {1, 4, 16, 64}, n_batches = 4;
    for (int i = 1; i < argc; i++) {
        int rc;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (bench_parse_opt(&o, "bench gpu", argc, argv, &i, &rc)) {
            if (rc) return rc;
            continue;
        }
        if (!v) return cli_usage_error("bench gpu", "unknown option '%s' (or it needs a value)", a);
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--encode-dir")) encode_dir = v;
        else if ((!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) && (n_prompt = strtol(v, NULL, 10)) >= 1 && n_prompt <= 1 << 20) continue;
        else if (!strcmp(a, "--ctx") && (ctx = strtol(v, NULL, 10)) >= 1 && ctx <= 1 << 20) continue;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && (steps = strtol(v, NULL, 10)) >= 1 && steps <= 1 << 16) continue;
        else if (!strcmp(a, "--encode-tokens") && (encode_tokens = strtol(v, NULL, 10)) >= 1000) continue;
        else if (!strcmp(a, "--batches") && (n_batches = parse_list(v, batches, 8)) > 0) continue;
        else return cli_usage_error("bench gpu", "bad option or value '%s %s' (see msa bench gpu --help)", a, v);
    }
    if (!model_path) return cli_usage_error("bench gpu", "-m MODEL is required");

    msa_model_params mp = msa_model_default_params();
    mp.n_threads = o.n_threads;
    mp.device = o.device; /* --device, a common bench option (bench_util) */
    msa_model *m = NULL;
    double t0 = bench_now();
    msa_status st = msa_model_load(model_path, &mp, &m);
    const double load_s = bench_now() - t0;
    if (st != MSA_OK) return cli_fail(st);
    msa_model_info info;
    msa_model_get_info(m, &info);
    msa_backend *be = m->be;
    char dev[16];
    msa_device_name(&be->device, dev, sizeof dev);

    bench_report *r = bench_report_new("gpu", &o);
    bench_report_meta(r, "model", "%s", model_path);
    bench_report_meta(r, "arch", "%s %s, %.2f B params, %.2f GB of weights", info.arch, info.weight_dtype,
                      (double)info.n_params / 1e9, (double)info.weight_bytes / 1e9);
    bench_report_meta(r, "device", "%s (%s backend)", dev, be->ops->name);
    bench_report_meta(r, "load", "%.2f s (weights mapped and copied to the device)", load_s);
    double copy_gbs = 0, gemm_tflops = 0;
    if (be->ops->ceilings) {
        st = be->ops->ceilings(be, &copy_gbs, &gemm_tflops);
        if (st != MSA_OK) fprintf(stderr, "msa bench gpu: ceilings: %s\n", msa_last_error());
        bench_report_meta(r, "ceiling_copy", "%.0f GB/s device-to-device copy (read + write)", copy_gbs);
        bench_report_meta(r, "ceiling_gemm", "%.1f TFLOP/s bf16 GEMM 8192^3 (cuBLASLt)", gemm_tflops);
    }
    size_t used = 0, total = 0, peak = 0;
    if (be->ops->memory) be->ops->memory(be, &used, &total), peak = used;

    /* bytes streamed per decode step: every matrix once (the embedding table only when it is not the lm_head) */
    uint64_t per_step = m->weight_bytes;
    if (m->output != m->tok_embd) per_step -= m->tok_embd->nbytes;
    const double flop_per_token = 2.0 * (double)info.n_params;
    int rc = 0;
    bench_stats bs;
    char name[96];

    { /* prefill */
        msa_session_params sp = msa_session_default_params();
        sp.n_ctx = (int)n_prompt;
        msa_session *s = NULL;
        int32_t *ids = malloc((size_t)n_prompt * 4);
        st = ids ? msa_session_new(m, &sp, &s) : MSA_ERR_NOMEM;
        if (st == MSA_OK) {
            for (long i = 0; i < n_prompt; i++) ids[i] = synthetic_id(i, info.n_vocab);
            prefill_ctx c = {.s = s, .ids = ids, .n = (int)n_prompt, .st = MSA_OK};
            bench_progress(1, 3, "prefill");
            bench_time(prefill_once, &c, o.warmup, o.reps, &bs);
            st = c.st;
            if (st == MSA_OK) {
                snprintf(name, sizeof name, "prefill pp%ld", n_prompt);
                bench_metric mets[2] = {{"tok/s", (double)n_prompt, 0},
                                        {"TFLOP/s", flop_per_token * n_prompt / 1e12, gemm_tflops}};
                bench_report_row(r, name, &bs, mets, 2, "2 x params FLOP per token vs the bf16 GEMM ceiling");
            }
        }
        if (be->ops->memory) be->ops->memory(be, &used, &total), peak = used > peak ? used : peak;
        msa_session_free(s);
        free(ids);
    }
    for (int bi = 0; st == MSA_OK && bi < n_batches; bi++) { /* decode at each batch size */
        const int B = batches[bi];
        msa_session_params sp = msa_session_default_params();
        sp.n_ctx = (int)(B * (ctx + steps) + 1);
        msa_session *s = NULL;
        decode_ctx c = {.batch = B, .ctx = (int)ctx, .steps = (int)steps, .n_vocab = info.n_vocab};
        c.ids = malloc((size_t)B * 4), c.pos = malloc((size_t)B * 4), c.seq = malloc((size_t)B * 4);
        c.rows = malloc((size_t)B * 4), c.next = malloc((size_t)B * 4);
        st = c.ids && c.pos && c.seq && c.rows && c.next ? msa_session_new(m, &sp, &s) : MSA_ERR_NOMEM;
        c.s = s;
        snprintf(name, sizeof name, "decode batch %d", B);
        bench_progress(2, 3, name);
        if (st == MSA_OK) st = decode_fill(&c);
        if (st == MSA_OK) {
            c.st = MSA_OK;
            bench_time(decode_once, &c, o.warmup, o.reps, &bs);
            st = c.st;
        }
        if (st == MSA_OK) {
            snprintf(name, sizeof name, "decode batch %d, ctx %ld, tg%ld", B, ctx, steps);
            bench_metric mets[2] = {{"tok/s", (double)B * steps, 0}, {"GB/s", (double)per_step * steps / 1e9, copy_gbs}};
            bench_report_row(r, name, &bs, mets, 2, B == 1 ? "weights streamed per step vs the copy ceiling" : NULL);
        }
        if (be->ops->memory) be->ops->memory(be, &used, &total), peak = used > peak ? used : peak;
        msa_session_free(s);
        free(c.ids), free(c.pos), free(c.seq), free(c.rows), free(c.next);
    }
    if (st == MSA_OK && encode_dir) { /* stage-1 encoding of real text */
        int32_t **docs = NULL;
        size_t *lens = NULL, n_docs = 0;
        int64_t tokens = 0;
        st = encode_docs(m, encode_dir, encode_tokens, &docs, &lens, &n_docs, &tokens);
        msa_bank_shape sh;
        msa_encoder *e = NULL;
        if (st == MSA_OK) st = msa_memory_bank_shape(m, info.is_msa ? MSA_BANK_NATIVE : MSA_BANK_READ, 0, &sh);
        if (st == MSA_OK) st = msa_encoder_new(m, &sh, 16384, &e);
        if (st == MSA_OK) {
            encode_ctx c = {.e = e, .docs = docs, .lens = lens, .n_docs = n_docs, .st = MSA_OK};
            bench_progress(3, 3, "encode");
            bench_time(encode_once, &c, 0, o.reps < 3 ? o.reps : 3, &bs);
            st = c.st;
            if (st == MSA_OK) {
                snprintf(name, sizeof name, "encode %zu docs, %lld tokens", n_docs, (long long)tokens);
                bench_metric mets[2] = {{"tok/s", (double)tokens, 0},
                                        {"TFLOP/s", flop_per_token * (double)tokens / 1e12, gemm_tflops}};
                bench_report_row(r, name, &bs, mets, 2, "documents of 200-2,000 tokens, many per forward batch");
            }
        }
        if (be->ops->memory) be->ops->memory(be, &used, &total), peak = used > peak ? used : peak;
        msa_encoder_free(e);
        for (size_t i = 0; i < n_docs; i++) free(docs[i]);
        free(docs), free(lens);
    }
    bench_progress_done();
    if (total) bench_report_meta(r, "device_memory", "%.2f GiB peak in use of %.2f GiB (sampled after each row)",
                                 peak / 1073741824.0, total / 1073741824.0);
    if (st != MSA_OK) rc = cli_fail(st);
    bench_report_finish(r);
    msa_model_free(m);
    return rc;
}
