/* cmd_train_router.c — `msa train-router`: trains read-mode router projections (router_q_proj / router_k_proj
 * per router layer) with the InfoNCE loss of src/memory/router_train.c on the frozen model's hidden states.
 *
 *   msa train-router -m MODEL --data PAIRS.jsonl -o ROUTER.safetensors [--layers 15,20,25] [--steps N]
 *                    [--batch B] [--lr LR] [--tau T] [--holdout N] [--eval-every K] [--seed S] [--curve FILE] [-t N]
 *
 * PAIRS.jsonl: {"query": str, "positive": str, "group"?: str} per line (scripts/make_retrieval_data.py train
 * makes them: inverse-cloze pairs and key->value facts). Pairs of one group go into one batch, so the other
 * facts about the same subject are hard negatives; every other positive of the batch is a negative too.
 *
 * 1. The hidden states are computed once: the question as read mode routes it ("<|im_start|>" not routed, its
 *    tokens routed, positions from 0) and the positive rendered as a bank document ("<|im_start|>[i]. text[i]
 *    <|im_end|>", positions from 0, msa_render_doc); the input-layernormed states at the router layers are kept
 *    (documents as P=1 chunks without the first, the sink), the forward stops after the last router layer.
 * 2. Initialisation: both projections start as the layer's own k_proj, which is exactly read mode's identity
 *    router (key-key cosine) for models without k_norm (Llama, the default model); for k_norm models (Qwen3) it
 *    is the identity router up to the per-head RMS normalisation. Training then only moves away from it where
 *    the held-out recall says it helps: the weights of the step with the best held-out recall@1 are written.
 * 3. Adam (beta 0.9/0.999), a pull towards the initial weights (--decay), batches of --batch pairs.
 * Output: safetensors, BF16, model.layers.{l}.self_attn.router_{q,k}_proj.weight ([n_head*head_dim, n_embd]: the
 * trained query map repeated for every head of a kv group, which read mode's head-mean fold maps back to it;
 * [n_head_kv*head_dim, n_embd]); `--router FILE` loads it (bank create/add, ask, eval). The training curve (step,
 * train loss, held-out loss, held-out recall@1/@5 among the held-out positives, seconds) goes to stdout and
 * --curve FILE. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/kernels.h"
#include "commands.h"
#include "memory/encode.h"
#include "memory/router_train.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tensor.h"
#include "msa.h"
#include "util/error.h"

#define MAX_RL 32
#define MAX_DATA 16 /* --data files at most */

typedef struct tr_opts {
    const char *model, *out, *curve, *device; /* device: where the frozen backbone caches hidden states */
    const char *data[MAX_DATA]; /* --data files, read in order (as if concatenated) */
    int n_data;
    int layers[MAX_RL], n_layers;
    long steps, batch, holdout, eval_every, threads, max_pairs;
    double lr, tau, decay;
    uint64_t seed;
    int query_only; /* --query-only: train router_q_proj only, documents keep the identity keys k_proj(h) */
} tr_opts;

typedef struct seqf { float *x[MAX_RL]; int n; } seqf; /* rows per layer */

typedef struct feat_ctx {
    const tr_opts *o;
    msa_model *m;
    int din, dout;
    const seqf *doc0; /* with --query-only: sequences from here on are documents, kept as keys k_proj(xn) */
    int slot_of[256];
    /* current batch: sequences and their row ranges */
    int n_seq, *row0, *len, *skip;
    seqf **dst;
    msa_status err;
} feat_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static msa_status hook_in(void *user, int layer, const float *xn, int n) {
    feat_ctx *c = user;
    int s = layer < 256 ? c->slot_of[layer] : -1;
    if (s < 0) return MSA_OK;
    for (int i = 0; i < c->n_seq; i++) {
        seqf *f = c->dst[i];
        const int keep = c->len[i] - c->skip[i];
        const bool key = c->doc0 && f >= c->doc0;
        const int w = key ? c->dout : c->din;
        if (!f->x[s]) {
            f->x[s] = malloc((size_t)keep * w * sizeof(float));
            if (!f->x[s]) return msa_fail(MSA_ERR_NOMEM, "out of memory for cached hidden states");
        }
        if (key) /* the identity router's document keys: k_proj(xn) (the default model has no k_norm) */
            msa_matmul(msa_model_threadpool(c->m), c->m->layers[layer].wk, xn + (size_t)(c->row0[i] + c->skip[i]) * c->din,
                       f->x[s], keep);
        else
            memcpy(f->x[s], xn + (size_t)(c->row0[i] + c->skip[i]) * c->din, (size_t)keep * c->din * sizeof(float));
        f->n = keep;
    }
    return MSA_OK;
}

/* Run the sequences (token lists) through the model up to the last router layer, keeping rows from skip[i] on. */
static msa_status extract(msa_model *m, const tr_opts *o, int32_t **toks, const size_t *ntok, const int *skip,
                          seqf *out, size_t n) {
    const msa_hparams *hp = msa_model_hparams(m);
    int last = 0;
    feat_ctx c = {.o = o, .m = m, .din = hp->n_embd, .dout = hp->n_head_kv * hp->head_dim,
                  .doc0 = o->query_only ? out + n / 2 : NULL};
    for (int i = 0; i < 256; i++) c.slot_of[i] = -1;
    for (int s = 0; s < o->n_layers; s++) {
        c.slot_of[o->layers[s]] = s;
        if (o->layers[s] > last) last = o->layers[s];
    }
    const int cap = 2048;
    msa_session *sess = NULL;
    msa_session_params sp = msa_session_default_params();
    sp.n_ctx = cap;
    MSA_TRY(msa_session_new(m, &sp, &sess));
    int32_t *ids = malloc(cap * sizeof *ids), *pos = malloc(cap * sizeof *pos), *seq = malloc(cap * sizeof *seq);
    int *row0 = malloc(cap * sizeof *row0), *len = malloc(cap * sizeof *len), *sk = malloc(cap * sizeof *sk);
    seqf **dst = malloc(cap * sizeof *dst);
    msa_status st = (ids && pos && seq && row0 && len && sk && dst) ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_fwd_hooks hooks = {.user = &c, .attn_input = hook_in};
    double t0 = now_s();
    for (size_t i = 0; i < n && !st;) {
        int nt = 0, ns = 0;
        size_t j = i;
        while (j < n && ns < cap && (nt + (int)ntok[j] <= cap)) {
            row0[ns] = nt, len[ns] = (int)ntok[j], sk[ns] = skip[j], dst[ns] = &out[j];
            for (size_t t = 0; t < ntok[j]; t++) ids[nt + t] = toks[j][t], pos[nt + t] = (int32_t)t, seq[nt + t] = ns;
            nt += (int)ntok[j];
            ns++, j++;
        }
        if (ns == 0) { /* longer than a batch: truncate to the cap */
            row0[0] = 0, len[0] = cap, sk[0] = skip[i], dst[0] = &out[i];
            for (int t = 0; t < cap; t++) ids[t] = toks[i][t], pos[t] = t, seq[t] = 0;
            nt = cap, ns = 1, j = i + 1;
        }
        c.n_seq = ns, c.row0 = row0, c.len = len, c.skip = sk, c.dst = dst;
        msa_session_reset(sess);
        msa_fwd_batch b = {.n_tokens = nt, .ids = ids, .pos = pos, .seq = seq, .n_layers = last + 1, .hooks = &hooks};
        st = msa_fwd_eval(sess, &b);
        i = j;
        if (isatty(2)) fprintf(stderr, "\rhidden states: %zu/%zu sequences, %.0f s", i, n, now_s() - t0);
    }
    if (isatty(2)) fputc('\n', stderr);
    free(ids), free(pos), free(seq), free(row0), free(len), free(sk), free(dst);
    msa_session_free(sess);
    return st;
}

static int parse_layers(const char *s, tr_opts *o) {
    o->n_layers = 0;
    while (*s) {
        char *e;
        long l = strtol(s, &e, 10);
        if (e == s || l < 0 || l > 255 || o->n_layers >= MAX_RL) return -1;
        for (int i = 0; i < o->n_layers; i++)
            if (o->layers[i] == l) return -1;
        o->layers[o->n_layers++] = (int)l;
        s = e;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return o->n_layers ? 0 : -1;
}

static int write_router(const char *path, const tr_opts *o, int n_head, int n_head_kv, int hd, int din,
                        float *const *Wq, float *const *Wk) {
    const int dout = n_head_kv * hd, g = n_head / n_head_kv;
    json_t *h = json_object();
    size_t off = 0;
    for (int s = 0; s < o->n_layers; s++)
        for (int w = 0; w < 2 - o->query_only; w++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.self_attn.router_%c_proj.weight", o->layers[s], w ? 'k' : 'q');
            size_t rows = w || o->query_only ? (size_t)dout : (size_t)n_head * hd, bytes = rows * din * 2;
            json_object_set_new(h, name, json_pack("{s:s,s:[I,I],s:[I,I]}", "dtype", "BF16", "shape", (json_int_t)rows,
                                                   (json_int_t)din, "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
            off += bytes;
        }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", o->query_only ? "msa-router-query" : "msa-router"));
    char *hj = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (!hj) return 70;
    size_t hl = strlen(hj), pad = (8 - hl % 8) % 8;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(hj);
        fprintf(stderr, "msa train-router: cannot write %s\n", tmp);
        return 73;
    }
    uint64_t n8 = hl + pad;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n8 >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hj, 1, hl, f) == hl && fwrite("        ", 1, pad, f) == pad;
    free(hj);
    /* tensors in the header's (sorted) order: layers sorted as strings, q before k */
    json_t *names = json_array();
    for (int s = 0; s < o->n_layers; s++)
        for (int w = 0; w < 2 - o->query_only; w++) json_array_append_new(names, json_pack("[i,i]", s, w));
    /* offsets were assigned in (slot, q/k) order, so write in that order */
    uint16_t *row = malloc((size_t)din * sizeof *row);
    for (size_t k = 0; ok && row && k < json_array_size(names); k++) {
        int s = (int)json_integer_value(json_array_get(json_array_get(names, k), 0));
        int w = (int)json_integer_value(json_array_get(json_array_get(names, k), 1));
        int rows = w || o->query_only ? dout : n_head * hd;
        for (int r = 0; r < rows && ok; r++) {
            /* q: head h of kv group h/g gets the trained group block; query-only: the [dout] map itself */
            const float *src = w || o->query_only ? (w ? Wk[s] : Wq[s]) + (size_t)r * din
                                                  : Wq[s] + (size_t)(((r / hd) / g) * hd + r % hd) * din;
            for (int i = 0; i < din; i++) row[i] = msa_f32_to_bf16(src[i]);
            ok = fwrite(row, 2, (size_t)din, f) == (size_t)din;
        }
    }
    json_decref(names);
    free(row);
    ok = ok && fflush(f) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        fprintf(stderr, "msa train-router: writing %s failed\n", path);
        return 74;
    }
    return 0;
}

typedef struct pair { char *q, *p, *group; } pair;

/* Append the pairs of one JSONL file to *pairs (np used, pcap allocated), stopping at max_pairs in all (0 = no
 * limit). Returns 0, or the exit code after printing why (66 unreadable, 65 a bad line, 70 out of memory). */
static int load_pairs(const char *path, long max_pairs, pair **pairs, size_t *np, size_t *pcap) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "msa train-router: cannot open %s\n", path);
        return 66;
    }
    char *line = NULL;
    size_t lcap = 0, ln = 0;
    int rc = 0;
    while (!(max_pairs && *np >= (size_t)max_pairs) && getline(&line, &lcap, f) > 0) {
        ln++;
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *q = j ? json_string_value(json_object_get(j, "query")) : NULL;
        const char *p = j ? json_string_value(json_object_get(j, "positive")) : NULL;
        const char *g = j ? json_string_value(json_object_get(j, "group")) : NULL;
        if (!q || !p || !*q || !*p) {
            json_decref(j);
            fprintf(stderr, "msa train-router: %s:%zu: needs {\"query\": str, \"positive\": str}\n", path, ln);
            rc = 65;
            break;
        }
        if (*np == *pcap) {
            size_t cap = *pcap ? *pcap * 2 : 256;
            pair *t = realloc(*pairs, cap * sizeof *t);
            if (!t) {
                json_decref(j);
                rc = 70;
                break;
            }
            *pairs = t, *pcap = cap;
        }
        pair *r = &(*pairs)[(*np)++];
        r->q = strdup(q), r->p = strdup(p), r->group = g ? strdup(g) : NULL;
        json_decref(j);
        if (!r->q || !r->p || (g && !r->group)) {
            rc = 70;
            break;
        }
    }
    free(line);
    if (!rc && ferror(f)) {
        fprintf(stderr, "msa train-router: %s: read error\n", path);
        rc = 74;
    }
    fclose(f);
    return rc;
}

int cmd_train_router(int argc, char **argv) {
    tr_opts o = {.steps = 200, .batch = 32, .holdout = 100, .eval_every = 20, .lr = 5e-4, .tau = 0.1,
                 .decay = 0.0, .seed = 1};
    const char *layers = "15,20,25";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: msa train-router -m MODEL --data PAIRS.jsonl [--data MORE.jsonl]... -o ROUTER.safetensors\n"
                   "       [--layers L,L,...]\n"
                   "       [--steps N] [--batch B] [--lr LR] [--tau T] [--decay D] [--holdout N] [--eval-every K]\n"
                   "       [--max-pairs N] [--seed S] [--curve FILE] [--query-only] [--device DEV] [-t N]\n"
                   "  --device DEV  where the frozen model computes the cached hidden states: cpu, cuda, cuda:N or\n"
                   "                auto (default: a GPU when this build has CUDA and one is present)\n"
                   "  --query-only  train router_q_proj only ([n_head_kv*head_dim, n_embd] per layer, starting at\n"
                   "                k_proj): documents keep the identity router's keys, so identity banks serve it\n");
            return 0;
        }
        if (!strcmp(a, "--query-only")) {
            o.query_only = 1;
            continue;
        }
        if (!v) return cli_usage_error("train-router", "%s needs a value (or is unknown)", a);
        i++;
        char *e = NULL;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--data")) {
            if (o.n_data == MAX_DATA) return cli_usage_error("train-router", "--data: at most %d files", MAX_DATA);
            o.data[o.n_data++] = v;
        }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--curve")) o.curve = v;
        else if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--layers")) layers = v;
        else if (!strcmp(a, "--steps")) { o.steps = strtol(v, &e, 10); if (*e || o.steps < 0 || o.steps > 1000000) return cli_usage_error("train-router", "--steps must be 0..1000000"); }
        else if (!strcmp(a, "--batch")) { o.batch = strtol(v, &e, 10); if (*e || o.batch < 2 || o.batch > 4096) return cli_usage_error("train-router", "--batch must be 2..4096"); }
        else if (!strcmp(a, "--holdout")) { o.holdout = strtol(v, &e, 10); if (*e || o.holdout < 0 || o.holdout > 100000) return cli_usage_error("train-router", "--holdout must be 0..100000"); }
        else if (!strcmp(a, "--eval-every")) { o.eval_every = strtol(v, &e, 10); if (*e || o.eval_every < 1) return cli_usage_error("train-router", "--eval-every must be >= 1"); }
        else if (!strcmp(a, "--max-pairs")) { o.max_pairs = strtol(v, &e, 10); if (*e || o.max_pairs < 1) return cli_usage_error("train-router", "--max-pairs must be >= 1"); }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { o.threads = strtol(v, &e, 10); if (*e || o.threads < 1 || o.threads > 1024) return cli_usage_error("train-router", "-t must be 1..1024"); }
        else if (!strcmp(a, "--seed")) { o.seed = strtoull(v, &e, 10); if (*e) return cli_usage_error("train-router", "bad --seed"); }
        else if (!strcmp(a, "--lr")) { o.lr = strtod(v, &e); if (*e || !(o.lr > 0 && o.lr < 1)) return cli_usage_error("train-router", "--lr must be in (0, 1)"); }
        else if (!strcmp(a, "--tau")) { o.tau = strtod(v, &e); if (*e || !(o.tau > 0 && o.tau < 100)) return cli_usage_error("train-router", "--tau must be in (0, 100)"); }
        else if (!strcmp(a, "--decay")) { o.decay = strtod(v, &e); if (*e || !(o.decay >= 0 && o.decay < 100)) return cli_usage_error("train-router", "--decay must be in [0, 100)"); }
        else return cli_usage_error("train-router", "unknown option '%s'", a);
    }
    if (!o.model || !o.n_data || !o.out) return cli_usage_error("train-router", "-m MODEL, --data PAIRS.jsonl and -o OUT are required");
    if (parse_layers(layers, &o)) return cli_usage_error("train-router", "--layers must be distinct layer numbers, e.g. 15,20,25");
    const double t_start = now_s();
    /* pairs */
    pair *pairs = NULL;
    size_t np = 0, pcap = 0;
    int rc = 0;
    for (int d = 0; !rc && d < o.n_data; d++) rc = load_pairs(o.data[d], o.max_pairs, &pairs, &np, &pcap);
    if (!rc && np < (size_t)o.holdout + 2) {
        fprintf(stderr, "msa train-router: %zu pairs: need more than --holdout (%ld) + 2\n", np, o.holdout);
        rc = 65;
    }
    msa_model *m = NULL;
    if (!rc) {
        msa_model_params mp = msa_model_default_params();
        mp.n_threads = (int)o.threads;
        mp.device = o.device;
        msa_status st = msa_model_load(o.model, &mp, &m);
        if (st) rc = cli_fail(st);
    }
    const msa_hparams *hp = m ? msa_model_hparams(m) : NULL;
    for (int s = 0; !rc && s < o.n_layers; s++)
        if (o.layers[s] >= hp->n_layer) rc = cli_usage_error("train-router", "layer %d: the model has %d layers", o.layers[s], hp->n_layer);
    for (int s = 0; !rc && o.query_only && s < o.n_layers; s++)
        if (m->layers[o.layers[s]].k_norm)
            rc = cli_usage_error("train-router", "--query-only: layer %d has k_norm (Qwen3); the query-side router is "
                                 "for models without it", o.layers[s]);
    const int din = hp ? hp->n_embd : 0, dout = hp ? hp->n_head_kv * hp->head_dim : 0, L = o.n_layers;
    /* token sequences: queries then documents */
    int32_t **toks = rc ? NULL : calloc(2 * np, sizeof *toks);
    size_t *ntok = rc ? NULL : calloc(2 * np, sizeof *ntok);
    int *skip = rc ? NULL : calloc(2 * np, sizeof *skip);
    seqf *feat = rc ? NULL : calloc(2 * np, sizeof *feat);
    if (!rc && (!toks || !ntok || !skip || !feat)) rc = 70;
    int32_t im = m ? msa_tokenizer_find(msa_model_tokenizer(m), "<|im_start|>") : -1;
    for (size_t i = 0; !rc && i < np; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        msa_status st = msa_tokenize(msa_model_tokenizer(m), pairs[i].q, strlen(pairs[i].q), false, &ids, &n);
        if (!st && n > 256) n = 256;
        if (!st) {
            toks[i] = malloc((n + 1) * sizeof **toks);
            if (!toks[i]) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        }
        if (!st) {
            int h = im >= 0;
            if (h) toks[i][0] = im;
            memcpy(toks[i] + h, ids, n * sizeof *ids);
            ntok[i] = n + (size_t)h;
            skip[i] = h;
        }
        free(ids);
        if (!st) st = msa_render_doc(m, (uint32_t)(i % 10000), pairs[i].p, strlen(pairs[i].p), &toks[np + i], &ntok[np + i]);
        if (!st && ntok[np + i] > 2048) ntok[np + i] = 2048;
        skip[np + i] = ntok[np + i] > 1 ? 1 : 0; /* the sink chunk (P = 1) */
        if (!st && ntok[i] <= (size_t)skip[i]) st = msa_fail(MSA_ERR_INVALID_ARG, "pair %zu: the query has no tokens", i + 1);
        if (st) rc = cli_fail(st);
    }
    if (!rc) {
        msa_status st = extract(m, &o, toks, ntok, skip, feat, 2 * np);
        if (st) rc = cli_fail(st);
    }
    const double t_feat = now_s() - t_start;
    if (!rc) printf("hidden states of %zu pairs at %d layers cached in %.1f s\n", np, L, t_feat);
    /* weights: k_proj of each layer (W^T = k_proj applied to the identity) */
    float *Wq[MAX_RL] = {0}, *Wk[MAX_RL] = {0}, *W0[MAX_RL] = {0}, *Gq[MAX_RL] = {0}, *Gk[MAX_RL] = {0};
    float *Mq[MAX_RL] = {0}, *Vq[MAX_RL] = {0}, *Mk[MAX_RL] = {0}, *Vk[MAX_RL] = {0}, *Bq[MAX_RL] = {0}, *Bk[MAX_RL] = {0};
    const size_t nw = (size_t)dout * din;
    for (int s = 0; !rc && s < L; s++) {
        float *eye = calloc((size_t)din * din, sizeof *eye), *y = malloc((size_t)din * dout * sizeof *y);
        Wq[s] = malloc(nw * 4), Wk[s] = malloc(nw * 4), W0[s] = malloc(nw * 4), Gq[s] = malloc(nw * 4), Gk[s] = malloc(nw * 4);
        Mq[s] = calloc(nw, 4), Vq[s] = calloc(nw, 4), Mk[s] = calloc(nw, 4), Vk[s] = calloc(nw, 4);
        Bq[s] = malloc(nw * 4), Bk[s] = malloc(nw * 4);
        if (!eye || !y || !Wq[s] || !Wk[s] || !W0[s] || !Gq[s] || !Gk[s] || !Mq[s] || !Vq[s] || !Mk[s] || !Vk[s] || !Bq[s] || !Bk[s]) {
            free(eye), free(y);
            rc = 70;
            break;
        }
        for (int i = 0; i < din; i++) eye[(size_t)i * din + i] = 1;
        msa_matmul(msa_model_threadpool(m), m->layers[o.layers[s]].wk, eye, y, din); /* y[i][o] = W[o][i] */
        for (int r = 0; r < dout; r++)
            for (int i = 0; i < din; i++) W0[s][(size_t)r * din + i] = y[(size_t)i * dout + r];
        memcpy(Wq[s], W0[s], nw * 4), memcpy(Wk[s], W0[s], nw * 4), memcpy(Bq[s], W0[s], nw * 4), memcpy(Bk[s], W0[s], nw * 4);
        free(eye), free(y);
    }
    /* split and batch order: units = groups (hard negatives together) or single pairs */
    size_t *order = rc ? NULL : malloc(np * sizeof *order);
    if (!rc && !order) rc = 70;
    uint64_t rs = o.seed * 0x9E37ull + 1;
    if (!rc) {
        for (size_t i = 0; i < np; i++) order[i] = i;
        for (size_t i = np; i > 1; i--) {
            size_t j = sm64(&rs) % i, t = order[i - 1];
            order[i - 1] = order[j], order[j] = t;
        }
    }
    const size_t n_hold = (size_t)o.holdout, n_train = np - n_hold;
    /* held-out: the last n_hold of the shuffled order (with their whole groups not split: approximately) */
    FILE *cf = o.curve && !rc ? fopen(o.curve, "w") : NULL;
    if (o.curve && !rc && !cf) rc = cli_usage_error("train-router", "cannot write %s", o.curve);
    if (cf) fprintf(cf, "step\ttrain_loss\theldout_loss\theldout_r1\theldout_r5\tseconds\n");
    if (!rc) printf("%6s %10s %12s %10s %10s %8s\n", "step", "train_loss", "heldout_loss", "heldout_R@1", "heldout_R@5", "seconds");
    msa_rt_seq *bq = rc ? NULL : malloc((size_t)L * (o.batch > (long)n_hold ? o.batch : (long)n_hold) * sizeof *bq);
    msa_rt_seq *bd = rc ? NULL : malloc((size_t)L * (o.batch > (long)n_hold ? o.batch : (long)n_hold) * sizeof *bd);
    int *bpos = rc ? NULL : malloc((size_t)(o.batch > (long)n_hold ? o.batch : (long)n_hold) * sizeof *bpos);
    float *hsc = rc ? NULL : malloc((n_hold * n_hold + 1) * sizeof *hsc);
    if (!rc && (!bq || !bd || !bpos || !hsc)) rc = 70;
    /* training order: the training pairs grouped (pairs of one group adjacent), reshuffled per epoch */
    size_t *tord = rc ? NULL : malloc((n_train + 1) * sizeof *tord);
    if (!rc && !tord) rc = 70;
    size_t tpos = n_train;
    double best_r1 = -1, best_loss = INFINITY, run_loss = 0;
    long best_step = 0, n_run = 0;
    for (long step = 0; !rc && step <= o.steps; step++) {
        if (step % o.eval_every == 0 || step == o.steps) { /* held-out */
            if (n_hold >= 2) {
                for (size_t i = 0; i < n_hold; i++) {
                    size_t p = order[n_train + i];
                    for (int s = 0; s < L; s++) {
                        bq[(size_t)s * n_hold + i] = (msa_rt_seq){feat[p].x[s], feat[p].n};
                        bd[(size_t)s * n_hold + i] = (msa_rt_seq){feat[np + p].x[s], feat[np + p].n};
                    }
                    bpos[i] = (int)i;
                }
                msa_rt_batch hb = {L, din, dout, (int)n_hold, (int)n_hold, bq, bd, bpos, (float)o.tau, o.query_only};
                float hl = 0;
                msa_status st = msa_rt_loss(&hb, Wq, Wk, &hl, NULL, NULL, hsc, msa_model_threadpool(m));
                if (st) {
                    rc = cli_fail(st);
                    break;
                }
                int r1 = 0, r5 = 0;
                for (size_t i = 0; i < n_hold; i++) {
                    int rank = 0;
                    for (size_t d = 0; d < n_hold; d++)
                        if (d != i && (hsc[i * n_hold + d] > hsc[i * n_hold + i] || (hsc[i * n_hold + d] == hsc[i * n_hold + i] && d < i))) rank++;
                    r1 += rank < 1, r5 += rank < 5;
                }
                const double R1 = (double)r1 / n_hold, R5 = (double)r5 / n_hold;
                printf("%6ld %10.4f %12.4f %10.3f %10.3f %8.1f\n", step, n_run ? run_loss / n_run : NAN, hl, R1, R5, now_s() - t_start);
                fflush(stdout);
                if (cf) fprintf(cf, "%ld\t%.5f\t%.5f\t%.4f\t%.4f\t%.1f\n", step, n_run ? run_loss / n_run : NAN, hl, R1, R5, now_s() - t_start), fflush(cf);
                if (R1 > best_r1 || (R1 == best_r1 && hl < best_loss)) {
                    best_r1 = R1, best_loss = hl, best_step = step;
                    for (int s = 0; s < L; s++) memcpy(Bq[s], Wq[s], nw * 4), memcpy(Bk[s], Wk[s], nw * 4);
                }
            }
            run_loss = 0, n_run = 0;
        }
        if (step == o.steps) break;
        /* batch */
        if (tpos + (size_t)o.batch > n_train) { /* new epoch: shuffle, then bring each group together */
            for (size_t i = 0; i < n_train; i++) tord[i] = order[i];
            for (size_t i = n_train; i > 1; i--) {
                size_t j = sm64(&rs) % i, t = tord[i - 1];
                tord[i - 1] = tord[j], tord[j] = t;
            }
            for (size_t i = 0; i < n_train; i++) /* stable: pull later members of i's group right after it */
                if (pairs[tord[i]].group)
                    for (size_t k = i + 1; k < n_train; k++)
                        if (pairs[tord[k]].group && !strcmp(pairs[tord[k]].group, pairs[tord[i]].group)) {
                            size_t t = tord[k];
                            memmove(tord + i + 2, tord + i + 1, (k - i - 1) * sizeof *tord);
                            tord[++i] = t;
                        }
            tpos = 0;
        }
        const int B = (int)o.batch;
        for (int i = 0; i < B; i++) {
            size_t p = tord[tpos + (size_t)i];
            for (int s = 0; s < L; s++) {
                bq[(size_t)s * B + i] = (msa_rt_seq){feat[p].x[s], feat[p].n};
                bd[(size_t)s * B + i] = (msa_rt_seq){feat[np + p].x[s], feat[np + p].n};
            }
            bpos[i] = i;
        }
        tpos += (size_t)B;
        msa_rt_batch tb = {L, din, dout, B, B, bq, bd, bpos, (float)o.tau, o.query_only};
        float loss = 0;
        msa_status st = msa_rt_loss(&tb, Wq, Wk, &loss, Gq, Gk, NULL, msa_model_threadpool(m));
        if (st) {
            rc = cli_fail(st);
            break;
        }
        run_loss += loss, n_run++;
        const double b1 = 0.9, b2 = 0.999, c1 = 1 - pow(b1, (double)step + 1), c2 = 1 - pow(b2, (double)step + 1);
        for (int s = 0; s < L; s++)
            for (int w = 0; w < 2 - o.query_only; w++) {
                float *W = w ? Wk[s] : Wq[s], *G = w ? Gk[s] : Gq[s], *M = w ? Mk[s] : Mq[s], *V = w ? Vk[s] : Vq[s];
                for (size_t i = 0; i < nw; i++) {
                    const float g = G[i] + (float)o.decay * (W[i] - W0[s][i]);
                    M[i] = (float)(b1 * M[i] + (1 - b1) * g);
                    V[i] = (float)(b2 * V[i] + (1 - b2) * g * g);
                    W[i] -= (float)(o.lr * (M[i] / c1) / (sqrt(V[i] / c2) + 1e-8));
                }
            }
    }
    if (cf) fclose(cf);
    if (!rc) {
        printf("best held-out recall@1 %.3f at step %ld; writing %s\n", best_r1, best_step, o.out);
        rc = write_router(o.out, &o, hp->n_head, hp->n_head_kv, hp->head_dim, din, Bq, Bk);
        if (!rc) printf("done in %.1f s (hidden states %.1f s)\n", now_s() - t_start, t_feat);
    }
    for (int s = 0; s < L; s++)
        free(Wq[s]), free(Wk[s]), free(W0[s]), free(Gq[s]), free(Gk[s]), free(Mq[s]), free(Vq[s]), free(Mk[s]),
            free(Vk[s]), free(Bq[s]), free(Bk[s]);
    for (size_t i = 0; feat && i < 2 * np; i++)
        for (int s = 0; s < L; s++) free(feat[i].x[s]);
    for (size_t i = 0; toks && i < 2 * np; i++) free(toks[i]);
    for (size_t i = 0; i < np; i++) free(pairs[i].q), free(pairs[i].p), free(pairs[i].group);
    free(pairs), free(toks), free(ntok), free(skip), free(feat), free(order), free(tord), free(bq), free(bd), free(bpos), free(hsc);
    if (m) msa_model_free(m);
    return rc;
}
