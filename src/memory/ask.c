/* ask.c — msa_ask: answer a question from a bank. Native mode drives the Memory Interleave machine
 * (interleave.c) with the memory session (context.c) as its model; read mode is in readmode.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory/ask.h"
#include "memory/interleave.h"
#include "model/model.h"
#include "util/error.h"

msa_ask_params msa_ask_default_params(void) {
    msa_ask_params p = {.mode = MSA_ASK_AUTO, .top_k = 0, .max_rounds = 8, .max_new_tokens = 512,
                        .temperature = 0.0f, .seed = 0, .max_question_tokens = 1024,
                        .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .repeat_last_n = 64};
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *id_of(msa_bank *bank, uint32_t index) {
    msa_bank_doc_info di;
    if (msa_bank_doc_by_index(bank, index, &di) != MSA_OK) return strdup("");
    return strdup(di.id);
}

msa_status msa_ask_record_routing(const msa_memctx *c, msa_bank *bank, msa_ask_round *round) {
    const msa_memctx_layer *L;
    int nl;
    uint64_t n_index;
    msa_memctx_routing(c, &L, &nl, &n_index);
    round->routing = calloc((size_t)(nl ? nl : 1), sizeof *round->routing);
    if (!round->routing) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    round->n_routing = nl;
    for (int i = 0; i < nl; i++) {
        msa_ask_routing *r = &round->routing[i];
        r->layer = L[i].layer;
        r->n = L[i].n;
        r->index = malloc((r->n ? r->n : 1) * sizeof *r->index);
        r->score = malloc((r->n ? r->n : 1) * sizeof *r->score);
        r->doc_id = calloc(r->n ? r->n : 1, sizeof *r->doc_id);
        if (!r->index || !r->score || !r->doc_id) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        for (size_t j = 0; j < r->n; j++) {
            r->index[j] = L[i].index[j];
            r->score[j] = L[i].score[j];
            if (!(r->doc_id[j] = id_of(bank, r->index[j]))) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        }
    }
    return MSA_OK;
}

msa_status msa_ask_record_injected(msa_bank *bank, const uint32_t *index, size_t n, msa_ask_round *round) {
    round->injected_index = malloc((n ? n : 1) * sizeof *round->injected_index);
    round->injected_id = calloc(n ? n : 1, sizeof *round->injected_id);
    if (!round->injected_index || !round->injected_id) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    round->n_injected = n;
    for (size_t i = 0; i < n; i++) {
        round->injected_index[i] = index[i];
        if (!(round->injected_id[i] = id_of(bank, index[i]))) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    return MSA_OK;
}

void msa_ask_result_free(msa_ask_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_rounds; i++) {
        msa_ask_round *R = &r->rounds[i];
        for (int j = 0; j < R->n_routing; j++) {
            for (size_t k = 0; k < R->routing[j].n; k++) free(R->routing[j].doc_id ? R->routing[j].doc_id[k] : NULL);
            free(R->routing[j].doc_id), free(R->routing[j].index), free(R->routing[j].score);
        }
        free(R->routing);
        for (size_t k = 0; k < R->n_injected; k++) free(R->injected_id ? R->injected_id[k] : NULL);
        free(R->injected_id), free(R->injected_index), free(R->generated);
    }
    free(r->rounds);
    free(r->answer);
    free(r->transcript);
    memset(r, 0, sizeof *r);
}

msa_status msa_ask_check_question(const msa_model *model, const char *question, size_t len, const msa_ask_params *p) {
    if (!question || len == 0) return msa_fail(MSA_ERR_INVALID_ARG, "the question is empty");
    int32_t *ids = NULL;
    size_t n = 0;
    MSA_TRY(msa_tokenize(msa_model_tokenizer(model), question, len, false, &ids, &n));
    free(ids);
    if (p->max_question_tokens > 0 && n > (size_t)p->max_question_tokens)
        return msa_fail(MSA_ERR_LIMIT, "the question is %zu tokens; at most %d are allowed", n, p->max_question_tokens);
    return MSA_OK;
}

/* ---- native mode: the interleave machine's callbacks over the memory session */

typedef struct native {
    msa_model *model;
    msa_bank *bank;
    msa_memctx *mc;
    int pos0;                 /* 3 + top_k */
    char *doc;                /* last doc_text result */
    msa_ask_round *rounds;    /* routing per prefill, filled as rounds start */
    int n_rounds, cap;
    uint64_t n_prompt, n_gen;
    double t_route;
} native;

static msa_status nv_tokenize(void *ctx, const char *text, size_t len, bool special, int32_t **ids, size_t *n) {
    native *nv = ctx;
    return msa_tokenize(msa_model_tokenizer(nv->model), text, len, special, ids, n);
}
static int nv_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    native *nv = ctx;
    return msa_token_to_piece(msa_model_tokenizer(nv->model), id, buf, cap);
}
static bool nv_eos(void *ctx, int32_t id) {
    native *nv = ctx;
    const msa_hparams *hp = msa_model_hparams(nv->model);
    for (int i = 0; i < hp->n_eos; i++)
        if (hp->eos_ids[i] == id) return true;
    return false;
}
static const char *nv_doc(void *ctx, uint64_t idx, size_t *len) {
    native *nv = ctx;
    free(nv->doc);
    nv->doc = NULL;
    if (idx > UINT32_MAX || msa_bank_doc_text(nv->bank, (uint32_t)idx, &nv->doc, len) != MSA_OK) return NULL;
    return nv->doc;
}
static msa_status nv_prefill(void *ctx, int round, const int32_t *ids, const int8_t *roles, size_t n, int32_t *next) {
    native *nv = ctx;
    double t0 = now_s();
    if (n > INT32_MAX) return msa_fail(MSA_ERR_LIMIT, "prompt too long");
    MSA_TRY(msa_memctx_prefill(nv->mc, ids, roles, (int)n, nv->pos0, true, next));
    nv->t_route += now_s() - t0;
    nv->n_prompt += n;
    nv->n_gen++;
    if (round >= nv->cap) return msa_fail(MSA_ERR_INTERNAL, "interleave: round %d beyond the cap", round);
    nv->n_rounds = round + 1;
    return msa_ask_record_routing(nv->mc, nv->bank, &nv->rounds[round]);
}
static msa_status nv_feed(void *ctx, const int32_t *ids, size_t n, int32_t *next) {
    native *nv = ctx;
    nv->n_gen++;
    return msa_memctx_feed(nv->mc, ids, (int)n, next);
}

static msa_status native_answer(msa_model *model, msa_bank *bank, const char *question, size_t len,
                                const msa_ask_params *p, msa_ask_result *out) {
    const msa_hparams *hp = msa_model_hparams(model);
    native nv = {.model = model, .bank = bank};
    msa_memctx_params mp = {.top_k = p->top_k > 0 ? p->top_k : hp->msa.top_k_docs, .attend_memory = true};
    if (mp.top_k > 1024) mp.top_k = 1024;
    mp.n_ctx = hp->n_ctx_train < 8192 ? hp->n_ctx_train : 8192;
    mp.sampler = msa_sampler_default_params();
    mp.sampler.temperature = p->temperature;
    mp.sampler.seed = p->seed;
    mp.sampler.top_p = p->top_p > 0 ? p->top_p : 1.0f;
    mp.sampler.min_p = p->min_p;
    nv.pos0 = 3 + mp.top_k;
    nv.cap = p->max_rounds > 0 ? p->max_rounds : 8;
    nv.rounds = calloc((size_t)nv.cap, sizeof *nv.rounds);
    if (!nv.rounds) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_status st = msa_memctx_new(model, bank, &mp, &nv.mc);
    msa_il_result r = {0};
    if (!st) {
        msa_il_ops ops = {&nv, nv_tokenize, nv_piece, nv_eos, nv_doc, nv_prefill, nv_feed};
        msa_il_params ip = msa_il_default_params();
        ip.max_rounds = nv.cap;
        ip.max_new_tokens = p->max_new_tokens > 0 ? p->max_new_tokens : 512;
        ip.on_answer = p->on_text;
        ip.user = p->user;
        ip.cancel = p->cancel;
        st = msa_il_run(&ops, &ip, question, len, &r);
    }
    if (!st) {
        out->rounds = nv.rounds;
        out->n_rounds = nv.n_rounds;
        nv.rounds = NULL;
        for (int i = 0; i < r.n_rounds && i < out->n_rounds && !st; i++) {
            out->rounds[i].generated = r.rounds[i].generated;
            r.rounds[i].generated = NULL;
            st = msa_ask_record_injected(bank, r.rounds[i].injected, r.rounds[i].n_injected, &out->rounds[i]);
        }
        out->answer = r.answer;
        out->transcript = r.transcript;
        r.answer = r.transcript = NULL;
        out->n_prompt_tokens = nv.n_prompt;
        out->n_generated_tokens = nv.n_gen;
        out->seconds_route = nv.t_route;
        out->cancelled = r.cancelled;
        out->truncated = r.truncated;
    }
    msa_il_result_free(&r);
    if (nv.rounds) {
        msa_ask_result tmp = {.rounds = nv.rounds, .n_rounds = nv.n_rounds};
        msa_ask_result_free(&tmp);
    }
    free(nv.doc);
    msa_memctx_free(nv.mc);
    return st;
}

msa_status msa_ask(msa_model *model, msa_bank *bank, const char *question, size_t len, const msa_ask_params *params,
                   msa_ask_result *out) {
    memset(out, 0, sizeof *out);
    msa_ask_params p = params ? *params : msa_ask_default_params();
    const double t0 = now_s();
    uint8_t fp[32];
    msa_model_fingerprint(model, fp);
    MSA_TRY(msa_bank_check_fingerprint(bank, fp));
    MSA_TRY(msa_ask_check_question(model, question, len, &p));
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    msa_ask_mode mode = p.mode;
    if (mode == MSA_ASK_AUTO) mode = info.shape.mode == MSA_BANK_NATIVE ? MSA_ASK_NATIVE : MSA_ASK_READ;
    if (mode == MSA_ASK_NATIVE && info.shape.mode != MSA_BANK_NATIVE)
        return msa_fail(MSA_ERR_UNSUPPORTED, "this bank was built for read mode (routing keys only): use --mode read");
    /* read mode over a native bank routes with the checkpoint's trained router and injects text */
    msa_status st = mode == MSA_ASK_NATIVE ? native_answer(model, bank, question, len, &p, out)
                                           : msa_read_answer(model, bank, question, len, &p, out);
    if (st) msa_ask_result_free(out);
    else out->seconds_total = now_s() - t0;
    return st;
}
