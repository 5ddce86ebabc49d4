/* ingest.c — msa_bank_ingest: stage-1 encoding of documents into a bank, and the bank shape a model's memory
 * needs. Documents are checked first (duplicate ids, conflicts, length), unchanged ones skipped without
 * encoding (resume costs nothing), the rest encoded many per batch and staged with the stable index the bank
 * will give them (that index is part of the rendered text "[i]. ..."), committed at the end and every ~30 s.
 * Invalid UTF-8 is replaced by U+FFFD before hashing, storing and encoding. A document longer than the model's
 * context is rejected with MSA_ERR_LIMIT (split it before adding; docs/msa-deviations.md). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "memory/encode.h"
#include "model/model.h"
#include "model/tensor.h"
#include "util/error.h"

msa_ingest_params msa_ingest_default_params(void) {
    msa_ingest_params p = {.batch_tokens = 0, .replace = false, .progress = true};
    return p;
}

msa_status msa_memory_bank_shape(const msa_model *model, msa_bank_mode mode, int pooling, msa_bank_shape *out) {
    const msa_hparams *hp = msa_model_hparams(model);
    memset(out, 0, sizeof *out);
    out->mode = mode;
    out->n_layers = hp->n_layer;
    out->n_kv_heads = hp->n_head_kv;
    out->head_dim = hp->head_dim;
    out->n_template = 3;
    if (mode == MSA_BANK_NATIVE) {
        if (!hp->msa.present)
            return msa_fail(MSA_ERR_UNSUPPORTED, "the model has no msa_config: native memory needs an MSA checkpoint "
                                                 "(use read mode)");
        out->pooling = hp->msa.pooling_kernel_size;
        for (int l = 0; l < hp->n_layer; l++)
            if (hp->msa.router_layer[l]) out->router_layers[out->n_router++] = l;
        out->dtype = model->bf16_acts ? MSA_BANK_BF16 : MSA_BANK_F32;
    } else {
        /* router weights given by --router (router_file.c): their layers; else the identity router: the
         * model's own keys in the upper half of its layers */
        out->pooling = pooling > 0 ? pooling : 1; /* read mode scores per token (max-sim); see readmode.c */
        if (model->router_st && !model->router_query_only) {
            for (int l = 0; l < hp->n_layer; l++)
                if (msa_model_router_k(model, l)) out->router_layers[out->n_router++] = l;
        } else {
            for (int l = hp->n_layer / 2; l < hp->n_layer; l++) out->router_layers[out->n_router++] = l;
        }
        out->dtype = MSA_BANK_BF16;
    }
    if (out->n_router == 0 || out->n_router > MSA_BANK_MAX_LAYERS)
        return msa_fail(MSA_ERR_UNSUPPORTED, "the model has no router layers");
    for (int s = 0; s < out->n_router; s++) out->route_dim[s] = hp->n_head_kv * hp->head_dim;
    return MSA_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* f32 -> bank dtype, in place when the dtype is f32 (returns src) or into dst. */
static const void *to_bank(msa_bank_dtype dt, const float *src, size_t n, uint16_t *dst) {
    if (dt == MSA_BANK_F32) return src;
    for (size_t i = 0; i < n; i++) dst[i] = msa_f32_to_bf16(src[i]);
    return dst;
}

typedef struct pending {
    size_t input;        /* index into docs[] */
    char *text;          /* sanitized */
    size_t text_len;
    uint32_t index;      /* the stable index it will get */
    int32_t *ids;
    size_t n_ids;
    uint8_t hash[16];    /* content hash (for duplicates within one call) */
} pending;

/* MSA_NO_PROGRESS set to anything but "" or "0" silences progress lines. */
static bool msa_no_progress(void) {
    const char *e = getenv("MSA_NO_PROGRESS");
    return e && *e && strcmp(e, "0");
}

/* Progress on a terminal, by time: the encoder reports after each group of documents, and a ticker thread
 * redraws the line every second in between (one group of a large model can take several seconds on a CPU),
 * with the rate and an ETA from the tokens still to encode. */
typedef struct progress_line {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t ticker;
    bool on, ticking, stop;
    size_t done, total;
    uint64_t tokens, total_tokens;
    double t0, last;
} progress_line;

static void progress_draw(progress_line *pl) { /* pl->mu held */
    double t = now_s();
    pl->last = t;
    double dt = t - pl->t0;
    double tps = dt > 0 ? (double)pl->tokens / dt : 0;
    double eta = tps > 0 && pl->total_tokens > pl->tokens ? (double)(pl->total_tokens - pl->tokens) / tps : 0;
    char eta_s[32] = "ETA -"; /* unknown until the first group is done */
    if (tps > 0) snprintf(eta_s, sizeof eta_s, "ETA %.0f s", eta);
    fprintf(stderr, "\r\033[Kencoding: %zu/%zu documents, %llu/%llu tokens, %.0f tokens/s, %.0f s elapsed, %s",
            pl->done, pl->total, (unsigned long long)pl->tokens, (unsigned long long)pl->total_tokens, tps, dt, eta_s);
    if (pl->done == pl->total) fputc('\n', stderr);
}

static void *progress_tick(void *arg) {
    progress_line *pl = arg;
    pthread_mutex_lock(&pl->mu);
    while (!pl->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&pl->wake, &pl->mu, &until);
        if (!pl->stop && pl->done < pl->total && now_s() - pl->last >= 0.9) progress_draw(pl);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static void progress_start(progress_line *pl, const msa_ingest_params *p, size_t total, uint64_t total_tokens,
                           double t0) {
    *pl = (progress_line){.on = p->progress && isatty(2) && !msa_no_progress(), .total = total,
                          .total_tokens = total_tokens, .t0 = t0};
    if (!pl->on) return;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->wake, NULL);
    progress_draw(pl);
    /* without the thread the line still updates after every group */
    pl->ticking = total > 0 && pthread_create(&pl->ticker, NULL, progress_tick, pl) == 0;
}

static void progress_update(progress_line *pl, size_t done, uint64_t tokens) {
    if (!pl->on) return;
    pthread_mutex_lock(&pl->mu);
    pl->done = done, pl->tokens = tokens;
    if (done == pl->total || now_s() - pl->last >= 0.5) progress_draw(pl);
    pthread_mutex_unlock(&pl->mu);
}

static void progress_stop(progress_line *pl) {
    if (!pl->on) return;
    if (pl->ticking) {
        pthread_mutex_lock(&pl->mu);
        pl->stop = true;
        pthread_cond_signal(&pl->wake);
        pthread_mutex_unlock(&pl->mu);
        pthread_join(pl->ticker, NULL);
    }
    if (pl->done < pl->total) fputc('\n', stderr); /* a failure part-way: end the line */
    pthread_cond_destroy(&pl->wake);
    pthread_mutex_destroy(&pl->mu);
}

msa_status msa_bank_ingest(msa_bank *bank, msa_model *model, const msa_doc_input *docs, size_t n_docs,
                           const msa_ingest_params *params, msa_ingest_report *report) {
    msa_ingest_params p = params ? *params : msa_ingest_default_params();
    msa_ingest_report rep = {0};
    const double t0 = now_s();
    MSA_TRY(msa_bank_check_fingerprint(bank, model->fingerprint));
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    const msa_bank_shape *sh = &info.shape;
    const msa_hparams *hp = msa_model_hparams(model);

    pending *pd = calloc(n_docs ? n_docs : 1, sizeof *pd);
    if (!pd) return msa_fail(MSA_ERR_NOMEM, "out of memory for %zu documents", n_docs);
    size_t n_new = 0;
    msa_status st = MSA_OK;
    uint64_t next_index = info.next_index;
    /* 0. every id is valid (length, UTF-8, no control characters) before anything is tokenized or encoded:
     * a bad id on the last line fails at once, not after the work on the others */
    for (size_t i = 0; i < n_docs && !st; i++) {
        if (msa_bank_check_id(docs[i].id) != MSA_OK) {
            char why[256]; /* a copy: the message buffer cannot be formatted into itself */
            snprintf(why, sizeof why, "%s", msa_last_error());
            st = msa_fail(MSA_ERR_INVALID_ARG, "document %zu: %s", i + 1, why);
        }
    }
    /* duplicate ids within this call: an open-addressing table over pd (position + 1), O(1) per document */
    size_t dup_cap = 64;
    while (dup_cap < 2 * n_docs + 2) dup_cap *= 2;
    uint64_t *dup_slots = st ? NULL : calloc(dup_cap, sizeof *dup_slots);
    if (!st && !dup_slots) st = msa_fail(MSA_ERR_NOMEM, "out of memory for %zu documents", n_docs);
    /* 1. check every document before encoding any */
    for (size_t i = 0; i < n_docs && !st; i++) {
        const msa_doc_input *d = &docs[i];
        char *text;
        size_t tl;
        msa_utf8_sanitize(d->text ? d->text : "", d->text ? d->text_len : 0, &text, &tl);
        if (!text) {
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        uint8_t hash[16];
        msa_bank_content_hash(text, tl, d->meta_json, hash);
        /* a duplicate id earlier in this same call */
        bool dup = false;
        uint64_t h = XXH3_64bits(d->id, strlen(d->id)) & (dup_cap - 1);
        for (; dup_slots[h]; h = (h + 1) & (dup_cap - 1)) {
            const pending *e = &pd[dup_slots[h] - 1];
            if (strcmp(docs[e->input].id, d->id)) continue;
            if (memcmp(e->hash, hash, 16))
                st = msa_fail(MSA_ERR_CONFLICT, "document id '%s' is given twice with different content", d->id);
            dup = true;
            break;
        }
        if (st || dup) {
            if (!st) rep.n_unchanged++;
            free(text);
            continue;
        }
        msa_bank_doc_state ds = msa_bank_doc_state_of(bank, d->id, hash);
        if (ds == MSA_BANK_DOC_UNCHANGED) {
            rep.n_unchanged++;
            free(text);
            continue;
        }
        if (ds == MSA_BANK_DOC_DIFFERENT && !p.replace) {
            free(text);
            st = msa_fail(MSA_ERR_CONFLICT, "document id '%s' is already in the bank with different content "
                                            "(replace it explicitly)", d->id);
            break;
        }
        if (next_index >= UINT32_MAX) {
            free(text);
            st = msa_fail(MSA_ERR_LIMIT, "the bank has used all 2^32-1 document indices");
            break;
        }
        pending *q = &pd[n_new];
        memcpy(q->hash, hash, 16);
        dup_slots[h] = n_new + 1; /* h: the empty slot the probe above stopped at */
        q->input = i;
        q->text = text;
        q->text_len = tl;
        q->index = (uint32_t)next_index;
        st = msa_render_doc(model, q->index, text, tl, &q->ids, &q->n_ids);
        n_new++;
        if (st) break;
        if (q->n_ids > (size_t)hp->n_ctx_train) {
            st = msa_fail(MSA_ERR_LIMIT, "document '%s' is %zu tokens, more than the model's context of %d "
                                         "(split it into smaller documents)", d->id, q->n_ids, hp->n_ctx_train);
            break;
        }
        if (ds == MSA_BANK_DOC_DIFFERENT) rep.n_replaced++;
        next_index++;
    }

    free(dup_slots);
    /* 2. encode and stage in groups; commit every ~30 s and at the end */
    msa_encoder *enc = NULL;
    if (!st && n_new) st = msa_encoder_new(model, sh, p.batch_tokens, &enc);
    if (!st && n_new && sh->mode == MSA_BANK_NATIVE && !info.has_template) {
        float *tk, *tv;
        st = msa_encoder_template(enc, &tk, &tv);
        if (!st) {
            size_t n = (size_t)sh->n_layers * sh->n_kv_heads * sh->n_template * sh->head_dim;
            uint16_t *bk = sh->dtype == MSA_BANK_F32 ? NULL : malloc(n * 2), *bv = sh->dtype == MSA_BANK_F32 ? NULL : malloc(n * 2);
            if (sh->dtype != MSA_BANK_F32 && (!bk || !bv))
                st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            else
                st = msa_bank_set_template(bank, to_bank(sh->dtype, tk, n, bk), to_bank(sh->dtype, tv, n, bv));
            free(bk), free(bv), free(tk), free(tv);
        }
    }
    const size_t group = 64;
    msa_encoded_doc *enc_out = calloc(group, sizeof *enc_out);
    const int32_t **toks = calloc(group, sizeof *toks);
    size_t *lens = calloc(group, sizeof *lens);
    if (!enc_out || !toks || !lens) st = st ? st : msa_fail(MSA_ERR_NOMEM, "out of memory");
    double last_commit = now_s();
    uint64_t total_tokens = 0;
    for (size_t i = 0; i < n_new; i++) total_tokens += pd[i].n_ids;
    progress_line pl = {0};
    if (n_new) progress_start(&pl, &p, n_new, total_tokens, t0);
    /* groups of at most 64 documents and about 2048 tokens: progress and commits come at least that often */
    for (size_t g0 = 0, gn = 0; g0 < n_new && !st; g0 += gn) {
        size_t g_tokens = 0;
        gn = 0;
        while (g0 + gn < n_new && gn < group && (gn == 0 || g_tokens + pd[g0 + gn].n_ids <= 2048)) g_tokens += pd[g0 + gn++].n_ids;
        for (size_t k = 0; k < gn; k++) toks[k] = pd[g0 + k].ids, lens[k] = pd[g0 + k].n_ids;
        st = msa_encoder_run(enc, toks, lens, gn, enc_out);
        for (size_t k = 0; k < gn && !st; k++) {
            const pending *q = &pd[g0 + k];
            const msa_encoded_doc *e = &enc_out[k];
            const size_t per = (size_t)e->n_chunks * sh->n_kv_heads * sh->head_dim;
            const void *rk[MSA_BANK_MAX_LAYERS], *km[MSA_BANK_MAX_LAYERS], *vm[MSA_BANK_MAX_LAYERS];
            uint16_t *conv = NULL;
            if (sh->dtype != MSA_BANK_F32) {
                conv = malloc(per * 3 * (size_t)sh->n_router * sizeof *conv);
                if (!conv) {
                    st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                    break;
                }
            }
            for (int s = 0; s < sh->n_router; s++) {
                rk[s] = to_bank(sh->dtype, e->route[s], per, conv ? conv + per * (3 * (size_t)s) : NULL);
                if (sh->mode == MSA_BANK_NATIVE) {
                    km[s] = to_bank(sh->dtype, e->k[s], per, conv ? conv + per * (3 * (size_t)s + 1) : NULL);
                    vm[s] = to_bank(sh->dtype, e->v[s], per, conv ? conv + per * (3 * (size_t)s + 2) : NULL);
                }
            }
            msa_bank_doc bd = {.id = docs[q->input].id, .text = q->text, .text_len = q->text_len,
                               .meta_json = docs[q->input].meta_json, .n_tokens = e->n_tokens,
                               .n_chunks = e->n_chunks, .route_keys = rk,
                               .k_mean = sh->mode == MSA_BANK_NATIVE ? km : NULL,
                               .v_mean = sh->mode == MSA_BANK_NATIVE ? vm : NULL};
            msa_bank_doc_state ds;
            uint32_t got = 0;
            st = msa_bank_add(bank, &bd, p.replace, &ds, &got);
            free(conv);
            if (!st && got != q->index)
                st = msa_fail(MSA_ERR_INTERNAL, "document '%s' was encoded as [%u] but the bank gave it index %u "
                                                "(another writer?)", bd.id, q->index, got);
            if (!st) {
                rep.n_added++;
                rep.n_tokens_encoded += e->n_tokens;
            }
        }
        for (size_t k = 0; k < gn; k++) msa_encoded_doc_free(&enc_out[k]);
        if (!st && now_s() - last_commit > 30) {
            st = msa_bank_commit(bank);
            last_commit = now_s();
        }
        progress_update(&pl, g0 + gn, rep.n_tokens_encoded);
    }
    progress_stop(&pl);
    if (!st) st = msa_bank_commit(bank);
    msa_encoder_free(enc);
    free(enc_out), free(toks), free(lens);
    for (size_t i = 0; i < n_new; i++) free(pd[i].text), free(pd[i].ids);
    free(pd);
    if (rep.n_added >= rep.n_replaced) rep.n_added -= rep.n_replaced;
    rep.seconds = now_s() - t0;
    if (report) *report = rep;
    return st;
}
