/* bank_add.c — `msa bank add`: documents from files, directories, stdin and JSONL into a bank, with memory
 * bounded by a batch of text rather than by the input (docs/bank-format.md, "Streaming add"). Three passes:
 *   1. collect (bank_inputs.c): every input found and every id checked, before the bank is opened; texts are
 *      not kept;
 *   2. plan: each document read once more, split into parts when longer than --split-tokens, hashed; an id
 *      given twice with different content, or one already in the bank with other content (without
 *      --replace), is refused here, before anything is encoded; parts the bank already holds unchanged are
 *      dropped, so a rerun reads only what is missing;
 *   3. encode: the planned parts read again in batches of at most --batch-mib MiB of text; each batch is
 *      encoded (msa_bank_ingest; --synthetic: vectors from the text) and committed durably on its own.
 * Each batch is its own commit so that staged data never grows with the input (the writer buffers a commit's
 * routing keys and text in memory). A crash in pass 3 leaves the batches committed before it durable and
 * nothing of the batch in flight visible; the same add run again finds those unchanged and encodes the rest.
 * What stays in memory for the whole run is, per document, its id and about 110 bytes of locator, hashes and
 * duplicate table: what checking every id before encoding any needs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bank_inputs.h"
#include "commands.h"
#include "memory/bm25.h"
#include "memory/encode.h"
#include "util/error.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One document as it will be added: an input, or one part of a split input. */
typedef struct add_part {
    const char *id;    /* the input's id, or "ID#k" (owned by the plan) */
    uint32_t input;    /* index in the input list */
    bool skip;         /* already in the bank unchanged, or a repeat of an earlier part: nothing to do */
    uint64_t off, len; /* the part's bytes within the input's text */
    uint64_t raw_hash; /* XXH3-64 of those bytes: pass 3 refuses an input that changed since pass 2 */
    uint8_t hash[16];  /* the content hash the bank will store */
} add_part;

typedef struct add_plan {
    add_part *parts;
    size_t n, cap;
    uint32_t *slots; /* open addressing over part ids: part index + 1, 0 = empty */
    size_t n_slots;
    char **ids;      /* the "ID#k" strings */
    size_t n_ids, cap_ids;
    size_t n_todo, n_unchanged, n_split;
    uint64_t todo_bytes;
} add_plan;

static void plan_free(add_plan *p) {
    for (size_t i = 0; i < p->n_ids; i++) free(p->ids[i]);
    free(p->ids);
    free(p->parts);
    free(p->slots);
}

static msa_status plan_grow_slots(add_plan *p) {
    size_t ns = p->n_slots ? 2 * p->n_slots : 1024;
    uint32_t *s = calloc(ns, sizeof *s);
    if (!s) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        size_t h = XXH3_64bits(p->parts[i].id, strlen(p->parts[i].id)) & (ns - 1);
        while (s[h]) h = (h + 1) & (ns - 1);
        s[h] = (uint32_t)(i + 1);
    }
    free(p->slots);
    p->slots = s;
    p->n_slots = ns;
    return MSA_OK;
}

/* Add one part: an id seen before in this input is a repeat (same content: nothing to do) or a conflict
 * (other content); an id the bank holds with the same content is skipped, with other content a conflict
 * unless replace — all decided before any document is encoded. */
static msa_status plan_part(add_plan *p, msa_bank *b, add_part q, bool replace) {
    if (p->n >= UINT32_MAX - 1) return msa_fail(MSA_ERR_LIMIT, "too many documents in one add");
    if (2 * (p->n + 1) > p->n_slots) MSA_TRY(plan_grow_slots(p));
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        add_part *np = realloc(p->parts, cap * sizeof *np);
        if (!np) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        p->parts = np;
        p->cap = cap;
    }
    size_t h = XXH3_64bits(q.id, strlen(q.id)) & (p->n_slots - 1);
    for (; p->slots[h]; h = (h + 1) & (p->n_slots - 1)) {
        const add_part *e = &p->parts[p->slots[h] - 1];
        if (strcmp(e->id, q.id)) continue;
        if (memcmp(e->hash, q.hash, 16))
            return msa_fail(MSA_ERR_CONFLICT, "document id '%s' is given twice with different content", q.id);
        p->n_unchanged++; /* a repeat: not added to the table again */
        return MSA_OK;
    }
    msa_bank_doc_state ds = msa_bank_doc_state_of(b, q.id, q.hash);
    if (ds == MSA_BANK_DOC_DIFFERENT && !replace)
        return msa_fail(MSA_ERR_CONFLICT, "document id '%s' is already in the bank with different content "
                                          "(replace it explicitly)", q.id);
    q.skip = ds == MSA_BANK_DOC_UNCHANGED;
    if (q.skip) p->n_unchanged++;
    else p->n_todo++, p->todo_bytes += q.len;
    p->slots[h] = (uint32_t)(p->n + 1);
    p->parts[p->n++] = q;
    return MSA_OK;
}

static const char *plan_keep_id(add_plan *p, char *s) {
    if (!s) return NULL;
    if (p->n_ids == p->cap_ids) {
        size_t cap = p->cap_ids ? 2 * p->cap_ids : 64;
        char **n = realloc(p->ids, cap * sizeof *n);
        if (!n) {
            free(s);
            return NULL;
        }
        p->ids = n;
        p->cap_ids = cap;
    }
    p->ids[p->n_ids++] = s;
    return s;
}

/* Splitting (docs/bank-format.md "Long documents"): a document over `budget` tokens becomes parts of at most
 * `budget` tokens, cut at token boundaries: at the last blank line in the second half of a part's window,
 * else the last line break there, else the last sentence end (". "), else at the budget. *cuts (malloc'd)
 * gets the n_parts + 1 byte offsets of the parts' bounds; 1 part when the document fits. */
static msa_status split_cuts(const msa_tokenizer *tok, const char *text, size_t len, size_t budget, size_t **cuts_out,
                             size_t *n_parts, size_t *n_tokens) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    MSA_TRY(msa_tokenize(tok, text, len, false, &ids, &n_ids));
    *n_tokens = n_ids;
    size_t *cuts = malloc(2 * sizeof *cuts);
    if (!cuts) {
        free(ids);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    if (n_ids <= budget) {
        free(ids);
        cuts[0] = 0, cuts[1] = len;
        *cuts_out = cuts, *n_parts = 1;
        return MSA_OK;
    }
    free(cuts);
    /* byte offset of every token boundary from the pieces (byte-level BPE: pieces concatenate to the text) */
    size_t *off = malloc((n_ids + 1) * sizeof *off);
    cuts = malloc((n_ids / (budget / 2 > 0 ? budget / 2 : 1) + 3) * sizeof *cuts);
    if (!off || !cuts) {
        free(ids), free(off), free(cuts);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    off[0] = 0;
    char buf[256];
    for (size_t k = 0; k < n_ids; k++) {
        int pl = msa_token_to_piece(tok, ids[k], buf, sizeof buf);
        off[k + 1] = off[k] + (size_t)(pl > 0 ? pl : 0);
    }
    if (off[n_ids] != len) { /* invalid UTF-8 was replaced: scale offsets to the text */
        for (size_t k = 0; k <= n_ids; k++) off[k] = (size_t)((double)off[k] * (double)len / (double)off[n_ids]);
        off[n_ids] = len;
    }
    size_t t0 = 0, n = 0;
    cuts[n++] = 0;
    while (t0 < n_ids) {
        size_t t1 = t0 + budget < n_ids ? t0 + budget : n_ids;
        if (t1 < n_ids) {
            const char *pats[3] = {"\n\n", "\n", ". "};
            size_t best = 0;
            for (int pi = 0; pi < 3 && !best; pi++)
                for (size_t k = t1; k > t0 + (t1 - t0) / 2 && !best; k--) {
                    size_t pl = strlen(pats[pi]), b = off[k];
                    if (b >= pl && !memcmp(text + b - pl, pats[pi], pl)) best = k;
                }
            if (best) t1 = best;
        }
        cuts[n++] = off[t1]; /* each part ends past the middle of its window: n stays within the bound above */
        t0 = t1;
    }
    free(off);
    free(ids);
    *cuts_out = cuts, *n_parts = n - 1;
    return MSA_OK;
}

/* The content hash the bank will store for a part: ingest replaces invalid UTF-8 before hashing (the
 * synthetic path stores the bytes as given). */
static msa_status part_hash(const char *text, size_t len, const char *meta, bool sanitize, uint8_t out[16]) {
    if (!sanitize) {
        msa_bank_content_hash(text, len, meta, out);
        return MSA_OK;
    }
    char *s;
    size_t sl;
    msa_utf8_sanitize(text, len, &s, &sl);
    if (!s) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_bank_content_hash(s, sl, meta, out);
    free(s);
    return MSA_OK;
}

/* Pass 2: every input read once, split, hashed and checked against the input so far and the bank. */
static msa_status plan_inputs(const bank_inputs *in, msa_bank *b, const msa_tokenizer *tok, size_t budget,
                              bool replace, add_plan *p) {
    msa_status st = MSA_OK;
    for (size_t i = 0; i < bank_inputs_count(in) && !st; i++) {
        const bank_input *d = bank_inputs_get(in, i);
        char *text, *meta;
        size_t len;
        if ((st = bank_input_load(in, i, &text, &len, &meta))) break;
        size_t *cuts = NULL, n_parts = 1, n_tokens = 0, whole[2] = {0, len};
        if (tok) st = split_cuts(tok, text, len, budget, &cuts, &n_parts, &n_tokens);
        const size_t *c = cuts ? cuts : whole;
        for (size_t k = 0; k < n_parts && !st; k++) {
            add_part q = {.id = d->id, .input = (uint32_t)i, .off = c[k], .len = c[k + 1] - c[k]};
            if (n_parts > 1) {
                size_t il = strlen(d->id) + 24;
                char *nid = malloc(il);
                if (nid) snprintf(nid, il, "%s#%zu", d->id, k);
                if (!(q.id = plan_keep_id(p, nid))) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            }
            q.raw_hash = XXH3_64bits(text + q.off, q.len);
            if (!st) st = part_hash(text + q.off, q.len, meta, tok != NULL, q.hash);
            if (!st) st = plan_part(p, b, q, replace);
        }
        if (!st && n_parts > 1) {
            fprintf(stderr, "msa bank add: %s is %zu tokens: split into %s#0..#%zu (--split-tokens %zu)\n", d->id,
                    n_tokens, d->id, n_parts - 1, budget);
            p->n_split++;
        }
        free(cuts);
        free(text);
        free(meta);
    }
    return st;
}

/* --synthetic: deterministic vectors from the text (for tests and benchmarks without a model) */
static msa_status add_synthetic(msa_bank *b, const msa_doc_input *docs, size_t n, bool replace, msa_ingest_report *rep) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    const msa_bank_shape *sh = &bi.shape;
    size_t es = msa_bank_dtype_size(sh->dtype);
    double t0 = now_s(), last = 0;
    bool tty = isatty(2);
    msa_status st = MSA_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const msa_doc_input *in = &docs[i];
        uint64_t n_tokens = in->text_len / 4 + 1;
        uint32_t n_chunks = (uint32_t)((n_tokens + (uint64_t)sh->pooling - 1) / (uint64_t)sh->pooling);
        uint64_t seed = XXH3_64bits(in->text, in->text_len);
        void *rk[MSA_BANK_MAX_LAYERS] = {0}, *km[MSA_BANK_MAX_LAYERS] = {0}, *vm[MSA_BANK_MAX_LAYERS] = {0};
        uint64_t kv = (uint64_t)n_chunks * (uint64_t)sh->n_kv_heads * (uint64_t)sh->head_dim;
        for (int s = 0; s < sh->n_router && !st; s++) {
            uint64_t nr = (uint64_t)n_chunks * (uint64_t)sh->route_dim[s];
            rk[s] = malloc(nr * es);
            if (sh->mode == MSA_BANK_NATIVE) {
                km[s] = malloc(kv * es);
                vm[s] = malloc(kv * es);
            }
            if (!rk[s] || (sh->mode == MSA_BANK_NATIVE && (!km[s] || !vm[s]))) {
                st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                break;
            }
            void *bufs[3] = {rk[s], km[s], vm[s]};
            uint64_t counts[3] = {nr, kv, kv};
            for (int k = 0; k < 3; k++) {
                if (!bufs[k]) continue;
                uint64_t x = seed ^ ((uint64_t)s << 40) ^ ((uint64_t)k << 56);
                for (uint64_t e = 0; e < counts[k]; e++) {
                    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                    float f = (float)((int64_t)(x >> 40) - (1 << 23)) / (float)(1 << 23);
                    if (sh->dtype == MSA_BANK_F32) memcpy((float *)bufs[k] + e, &f, 4);
                    else {
                        uint32_t u;
                        memcpy(&u, &f, 4);
                        ((uint16_t *)bufs[k])[e] = (uint16_t)(u >> 16);
                    }
                }
            }
        }
        if (!st) {
            msa_bank_doc d = {.id = in->id, .text = in->text, .text_len = in->text_len, .meta_json = in->meta_json,
                              .n_tokens = n_tokens, .n_chunks = n_chunks, .route_keys = (const void *const *)rk,
                              .k_mean = (const void *const *)km, .v_mean = (const void *const *)vm};
            msa_bank_doc_state ds;
            st = msa_bank_add(b, &d, replace, &ds, NULL);
            if (!st) {
                if (ds == MSA_BANK_DOC_UNCHANGED) rep->n_unchanged++;
                else {
                    rep->n_tokens_encoded += n_tokens;
                    if (ds == MSA_BANK_DOC_DIFFERENT) rep->n_replaced++;
                    else rep->n_added++;
                }
            }
        }
        for (int s = 0; s < MSA_BANK_MAX_LAYERS; s++) {
            free(rk[s]);
            free(km[s]);
            free(vm[s]);
        }
        double t = now_s();
        if (tty && (t - last > 0.2 || i + 1 == n)) {
            double dt = t - t0, tps = dt > 0 ? (double)rep->n_tokens_encoded / dt : 0;
            fprintf(stderr, "\radding: %zu/%zu documents of this batch, %.0f tokens/s   ", i + 1, n, tps);
            last = t;
        }
    }
    if (tty) fputc('\n', stderr);
    if (!st) st = msa_bank_commit(b);
    return st;
}

/* A batch: the documents of one commit and the input texts they point into. */
typedef struct add_batch {
    msa_doc_input *docs;
    size_t n, cap;
    char **bufs; /* loaded texts and metadata, freed after the batch */
    size_t n_bufs, cap_bufs;
    uint64_t bytes;
} add_batch;

static msa_status batch_keep(add_batch *bt, char *buf) {
    if (!buf) return MSA_OK;
    if (bt->n_bufs == bt->cap_bufs) {
        size_t cap = bt->cap_bufs ? 2 * bt->cap_bufs : 64;
        char **n = realloc(bt->bufs, cap * sizeof *n);
        if (!n) {
            free(buf);
            return msa_fail(MSA_ERR_NOMEM, "out of memory");
        }
        bt->bufs = n;
        bt->cap_bufs = cap;
    }
    bt->bufs[bt->n_bufs++] = buf;
    return MSA_OK;
}

/* Empty the batch; the texts of the input being read (keep_text, keep_meta) stay for its later parts. */
static void batch_reset(add_batch *bt, const char *keep_text, const char *keep_meta) {
    size_t k = 0;
    for (size_t i = 0; i < bt->n_bufs; i++) {
        if (bt->bufs[i] == keep_text || (keep_meta && bt->bufs[i] == keep_meta)) bt->bufs[k++] = bt->bufs[i];
        else free(bt->bufs[i]);
    }
    bt->n_bufs = k;
    bt->n = 0;
    bt->bytes = 0;
}

typedef struct add_run {
    msa_bank *b;
    msa_model *m; /* NULL: --synthetic */
    bool replace;
    msa_ingest_report rep;
    size_t n_batches;
} add_run;

static msa_status batch_flush(add_run *r, add_batch *bt) {
    if (!bt->n) return MSA_OK;
    msa_ingest_report rep = {0};
    msa_status st;
    if (!r->m) st = add_synthetic(r->b, bt->docs, bt->n, r->replace, &rep);
    else {
        msa_ingest_params ip = msa_ingest_default_params();
        ip.replace = r->replace;
        ip.progress = true;
        st = msa_bank_ingest(r->b, r->m, bt->docs, bt->n, &ip, &rep); /* durable on return */
    }
    r->rep.n_added += rep.n_added;
    r->rep.n_replaced += rep.n_replaced;
    r->rep.n_unchanged += rep.n_unchanged;
    r->rep.n_tokens_encoded += rep.n_tokens_encoded;
    r->n_batches++;
    return st;
}

/* Pass 3: the planned parts read again, batch_bytes of text at a time, each batch committed. */
static msa_status encode_plan(const bank_inputs *in, const add_plan *p, uint64_t batch_bytes, add_run *r) {
    add_batch bt = {0};
    msa_status st = MSA_OK;
    uint32_t cur = UINT32_MAX; /* the input whose text is loaded */
    char *text = NULL, *meta = NULL;
    size_t len = 0;
    for (size_t i = 0; i < p->n && !st; i++) {
        const add_part *q = &p->parts[i];
        if (q->skip) continue;
        if (q->input != cur) {
            if ((st = bank_input_load(in, q->input, &text, &len, &meta))) break;
            cur = q->input;
            if ((st = batch_keep(&bt, text)) || (st = batch_keep(&bt, meta))) break;
        }
        if (q->off + q->len > len || XXH3_64bits(text + q->off, q->len) != q->raw_hash) {
            st = msa_fail(MSA_ERR_CONFLICT, "input '%s' changed while it was being added; run the add again", q->id);
            break;
        }
        if (bt.n == bt.cap) {
            size_t cap = bt.cap ? 2 * bt.cap : 256;
            msa_doc_input *nd = realloc(bt.docs, cap * sizeof *nd);
            if (!nd) {
                st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                break;
            }
            bt.docs = nd;
            bt.cap = cap;
        }
        bt.docs[bt.n++] = (msa_doc_input){.id = q->id, .text = text + q->off, .text_len = q->len, .meta_json = meta};
        bt.bytes += q->len;
        if (bt.bytes >= batch_bytes) {
            st = batch_flush(r, &bt);
            batch_reset(&bt, text, meta);
        }
    }
    if (!st) st = batch_flush(r, &bt);
    batch_reset(&bt, NULL, NULL);
    free(bt.bufs);
    free(bt.docs);
    return st;
}

int bank_add(const cli_args *a) {
    const char *path = a->pos[0], *model_path = cli_get(a, "--model"), *router = cli_get(a, "--router");
    const char *stdin_id = cli_get(a, "--id");
    if (!stdin_id) stdin_id = "stdin";
    bool replace = cli_has(a, "--replace"), synthetic = cli_has(a, "--synthetic");
    uint64_t batch_bytes = (uint64_t)(cli_float(a, "--batch-mib", 32) * (1 << 20)); /* a fraction: tests */
    int n_inputs = a->n_pos - 1, n_jsonl = cli_all(a, "--jsonl", NULL, 0);
    if (n_inputs + n_jsonl == 0) return cli_usage_error("bank add", "nothing to add (files, directories, - or --jsonl)");
    /* pass 1: every input found and every id checked before the bank is opened */
    bank_inputs *in = bank_inputs_new();
    msa_status st = in ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < n_inputs; i++) st = bank_inputs_add_path(in, a->pos[1 + i], stdin_id);
    const char **jl = st ? NULL : calloc((size_t)n_jsonl + 1, sizeof *jl);
    if (!st && !jl) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (jl) cli_all(a, "--jsonl", jl, n_jsonl);
    for (int i = 0; !st && i < n_jsonl; i++) st = bank_inputs_add_jsonl(in, jl[i]);
    free(jl);
    if (st) {
        bank_inputs_free(in);
        return cli_fail(st);
    }
    int n_skipped = bank_inputs_skipped(in);
    msa_bank *b = NULL;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    st = msa_bank_open(path, &op, &b);
    add_run run = {.b = b, .replace = replace};
    add_plan plan = {0};
    const double t0 = now_s();
    size_t budget = 0;
    if (!st && !synthetic) {
        msa_bank_info bi;
        msa_bank_get_info(b, &bi);
        if (!model_path && bi.model_path[0]) model_path = bi.model_path;
        msa_model_params mp = cli_model_params(a);
        if (!model_path) st = msa_fail(MSA_ERR_INVALID_ARG, "%s: no model recorded; give -m MODEL", path);
        if (!st) st = msa_model_load(model_path, &mp, &run.m);
        if (!st && router && strcmp(router, "none")) st = msa_model_load_router(run.m, router);
        if (!st) {
            uint8_t fp[32];
            msa_model_fingerprint(run.m, fp);
            st = msa_bank_check_fingerprint(b, fp);
        }
        if (!st) {
            msa_model_info info;
            msa_model_get_info(run.m, &info);
            /* the encoder adds a few tokens of its own around a document: keep a margin under the context */
            long bud = cli_int(a, "--split-tokens", info.n_ctx_train > 128 ? info.n_ctx_train - 64 : info.n_ctx_train);
            if (bud > info.n_ctx_train - 8) bud = info.n_ctx_train - 8;
            if (bud < 16) bud = 16;
            budget = (size_t)bud;
        }
    }
    /* pass 2: nothing is encoded before every part is known to be addable */
    if (!st) st = plan_inputs(in, b, run.m ? msa_model_tokenizer(run.m) : NULL, budget, replace, &plan);
    /* pass 3 */
    if (!st) st = encode_plan(in, &plan, batch_bytes, &run);
    /* the documents are durable now; the lexical index follows them (a crash before it is saved leaves it stale,
     * and read mode then routes alone until the next add) */
    bool lexical = false;
    if (!st && !cli_has(a, "--no-lexical"))
        st = msa_bm25_refresh(b, (float)cli_float(a, "--lexical", MSA_BM25_DEFAULT_WEIGHT), &lexical);
    msa_model_free(run.m);
    msa_bank_close(b);
    run.rep.n_unchanged += plan.n_unchanged;
    size_t n_split = plan.n_split;
    plan_free(&plan);
    bank_inputs_free(in);
    if (st) return cli_fail(st);
    printf("added %zu, replaced %zu, unchanged %zu; %" PRIu64 " tokens encoded in %.2f s (durable)", run.rep.n_added,
           run.rep.n_replaced, run.rep.n_unchanged, run.rep.n_tokens_encoded, now_s() - t0);
    if (run.n_batches > 1) printf("; %zu batches, each committed", run.n_batches);
    if (n_split) printf("; %zu long documents split", n_split);
    if (n_skipped) printf("; %d inputs skipped (see above)", n_skipped);
    if (lexical) printf("; lexical index updated");
    putchar('\n');
    return n_skipped ? 3 : 0;
}
