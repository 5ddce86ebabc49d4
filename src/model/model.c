/* model.c — msa_model_load: a Hugging Face directory (Qwen3ForCausalLM, MSAForCausalLM, LlamaForCausalLM) or a
 * GGUF file (llama, qwen3) becomes one msa_model: hyper-parameters, every weight bound by name and checked
 * against them (shape and dtype), the tokenizer, chat template choice, fingerprint and thread pool.
 * Weights stay in the mmap in their stored dtype; only norm vectors are copied to f32. */
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <xxhash.h>

#include "backend/backend.h"
#include "backend/device.h"
#include "memory/route_resident.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#define MAX_JSON_BYTES (64u << 20) /* config/tokenizer JSON larger than this is not a real model file */

msa_model_params msa_model_default_params(void) {
    msa_model_params p = {.n_threads = 0, .prefault = false, .device = NULL};
    return p;
}

/* Read a whole small file. Returns MSA_ERR_NOT_FOUND when absent (caller decides if that is optional). */
static msa_status read_small_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file", path);
        return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > MAX_JSON_BYTES) {
        fclose(f);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: %lld bytes is too large for a JSON config", path,
                        (long long)st.st_size);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        fclose(f);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    int err = ferror(f);
    fclose(f);
    if (err || n != (size_t)st.st_size) {
        free(b);
        return msa_fail(MSA_ERR_IO, "%s: short read", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------- tensor binding */

static const char *model_path_for_errors; /* set during one load (loads are not concurrent per thread) */

static msa_status find_tensor(const msa_model *m, const char *name, const msa_tensor **out) {
    *out = msa_weights_find(m->weights, name);
    if (!*out) return msa_fail(MSA_ERR_BAD_DATA, "%s: missing tensor '%s'", model_path_for_errors, name);
    return MSA_OK;
}

static msa_status check_shape(const msa_tensor *t, int n_dims, int64_t d0, int64_t d1) {
    bool ok = true;
    if (n_dims == 1) {
        ok = msa_tensor_nelements(t) == d0 && t->shape[0] == d0;
    } else {
        ok = t->n_dims == 2 && t->shape[0] == d0 && t->shape[1] == d1;
    }
    if (!ok) {
        char got[96] = "";
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof got; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (n_dims == 1)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' has shape [%s], expected [%lld]",
                            model_path_for_errors, t->name, got, (long long)d0);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]",
                        model_path_for_errors, t->name, got, (long long)d0, (long long)d1);
    }
    return MSA_OK;
}

/* A matrix [d0, d1]: any dtype the kernels handle; quantized rows need whole 32-element blocks. */
static msa_status bind_matrix(const msa_model *m, const char *name, int64_t d0, int64_t d1,
                              const msa_tensor **out) {
    MSA_TRY(find_tensor(m, name, out));
    MSA_TRY(check_shape(*out, 2, d0, d1));
    if ((*out)->dtype >= MSA_DTYPE_COUNT || msa_dtype_row_bytes((*out)->dtype, d1) == 0)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' has dtype %s, unusable for rows of %lld",
                        model_path_for_errors, name, msa_dtype_name((*out)->dtype), (long long)d1);
    return MSA_OK;
}

/* A vector [n] copied to f32 (norm weights). */
static msa_status bind_vector(const msa_model *m, const char *name, int64_t n, float **out) {
    const msa_tensor *t;
    MSA_TRY(find_tensor(m, name, &t));
    MSA_TRY(check_shape(t, 1, n, 1));
    if (t->dtype != MSA_DTYPE_F32 && t->dtype != MSA_DTYPE_F16 && t->dtype != MSA_DTYPE_BF16)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' has dtype %s, expected f32, f16 or bf16",
                        model_path_for_errors, name, msa_dtype_name(t->dtype));
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_row_to_f32(t->dtype, t->data, *out, n);
    return MSA_OK;
}

typedef struct {
    const char *embd, *out_norm, *output;
    /* per-layer patterns with one %d */
    const char *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ffn_norm, *gate, *up, *down;
} name_scheme;

static const name_scheme hf_names = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
    "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_norm.weight",
    "model.layers.%d.self_attn.k_norm.weight", "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
};

static const name_scheme gguf_names = {
    "token_embd.weight", "output_norm.weight", "output.weight",
    "blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight",
    "blk.%d.attn_output.weight", "blk.%d.attn_q_norm.weight", "blk.%d.attn_k_norm.weight",
    "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight",
};

static msa_status bind_weights(msa_model *m, const name_scheme *ns, bool hf) {
    const msa_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Dq = (int64_t)hp->n_head * hp->head_dim,
                  Dkv = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    char name[160];
    MSA_TRY(bind_matrix(m, ns->embd, V, E, &m->tok_embd));
    MSA_TRY(bind_vector(m, ns->out_norm, E, &m->output_norm));
    if (msa_weights_find(m->weights, ns->output)) {
        MSA_TRY(bind_matrix(m, ns->output, V, E, &m->output));
    } else {
        m->output = m->tok_embd; /* tied embeddings (tie_word_embeddings / GGUF without output.weight) */
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        msa_layer *L = &m->layers[l];
#define NAME(pat) (snprintf(name, sizeof name, pat, l), name)
        MSA_TRY(bind_vector(m, NAME(ns->attn_norm), E, &L->attn_norm));
        MSA_TRY(bind_matrix(m, NAME(ns->wq), Dq, E, &L->wq));
        MSA_TRY(bind_matrix(m, NAME(ns->wk), Dkv, E, &L->wk));
        MSA_TRY(bind_matrix(m, NAME(ns->wv), Dkv, E, &L->wv));
        MSA_TRY(bind_matrix(m, NAME(ns->wo), E, Dq, &L->wo));
        if (hp->qk_norm) {
            MSA_TRY(bind_vector(m, NAME(ns->q_norm), hp->head_dim, &L->q_norm));
            MSA_TRY(bind_vector(m, NAME(ns->k_norm), hp->head_dim, &L->k_norm));
        }
        MSA_TRY(bind_vector(m, NAME(ns->ffn_norm), E, &L->ffn_norm));
        MSA_TRY(bind_matrix(m, NAME(ns->gate), F, E, &L->w_gate));
        MSA_TRY(bind_matrix(m, NAME(ns->up), F, E, &L->w_up));
        MSA_TRY(bind_matrix(m, NAME(ns->down), E, F, &L->w_down));
        if (hf && hp->arch == MSA_ARCH_MSA && hp->msa.decouple_router && hp->msa.router_layer[l]) {
            MSA_TRY(bind_matrix(m, NAME("model.layers.%d.self_attn.router_q_proj.0.weight"), Dq, E,
                                &L->router_q));
            MSA_TRY(bind_matrix(m, NAME("model.layers.%d.self_attn.router_k_proj.0.weight"), Dkv, E,
                                &L->router_k));
        }
#undef NAME
    }
    return MSA_OK;
}

/* Totals and the dominant matrix dtype (by bytes) for msa_model_info. */
static void summarize_weights(msa_model *m) {
    uint64_t by_dtype[MSA_DTYPE_COUNT] = {0};
    size_t n = msa_weights_count(m->weights);
    for (size_t i = 0; i < n; i++) {
        const msa_tensor *t = msa_weights_at(m->weights, i);
        m->n_params += (uint64_t)msa_tensor_nelements(t);
        m->weight_bytes += t->nbytes;
        if (t->n_dims >= 2 && t->dtype < MSA_DTYPE_COUNT) by_dtype[t->dtype] += t->nbytes;
    }
    int best = 0;
    for (int d = 1; d < MSA_DTYPE_COUNT; d++)
        if (by_dtype[d] > by_dtype[best]) best = d;
    m->weight_dtype = msa_dtype_name((msa_dtype)best);
}

/* ----------------------------------------------------------------------------------------------- GGUF */

/* The ChatML default system message of templates like SmolLM2's:
 * {% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n...<|im_end|>\n' }} */
static char *chatml_default_system(const char *t, size_t len) {
    const char *end = t + len;
    const char *cond = memmem(t, len, "messages[0]['role'] != 'system'", 31);
    if (!cond) return NULL;
    static const char open[] = "<|im_start|>system\n";
    const char *a = memmem(cond, (size_t)(end - cond), open, sizeof open - 1);
    if (!a) return NULL;
    a += sizeof open - 1;
    const char *b = memmem(a, (size_t)(end - a), "<|im_end|>", 10);
    if (!b || memchr(a, '{', (size_t)(b - a)) || memchr(a, '\'', (size_t)(b - a))) return NULL;
    return strndup(a, (size_t)(b - a));
}

static msa_status load_gguf(msa_model *m, const char *path) {
    MSA_TRY(msa_gguf_open(path, &m->gguf));
    m->weights = msa_gguf_weights(m->gguf);
    msa_status st = msa_gguf_hparams(m->gguf, &m->hp);
    if (st != MSA_OK) return msa_fail_prefix(st, "%s", path);
    m->arch_name = m->hp.arch == MSA_ARCH_QWEN3 ? "qwen3" : "llama";
    bool b;
    m->add_bos = msa_gguf_get_bool(m->gguf, "tokenizer.ggml.add_bos_token", &b) ? b : false;
    m->llamacpp_attn = true;
    if (m->hp.bos_id < 0) m->add_bos = false;
    MSA_TRY(bind_weights(m, &gguf_names, false));
    MSA_TRY(msa_tokenizer_load(path, &m->tok));
    const char *t;
    size_t tlen;
    m->chat_kind = MSA_CHAT_CHATML;
    if (msa_gguf_get_str(m->gguf, "tokenizer.chat_template", &t, &tlen)) {
        if (memmem(t, tlen, "<|start_header_id|>", 19)) {
            m->chat_kind = MSA_CHAT_LLAMA3;
        } else if (memmem(t, tlen, "<|im_start|>", 12)) {
            m->chat_kind = MSA_CHAT_CHATML;
            m->chat_default_system = chatml_default_system(t, tlen);
        }
    } else if (msa_tokenizer_find(m->tok, "<|start_header_id|>") >= 0) {
        m->chat_kind = MSA_CHAT_LLAMA3;
    }
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------------ HF directory */

/* HF tokenizers add BOS through post_processor TemplateProcessing ("single": [{"SpecialToken": ..}, ...]). */
static bool hf_post_processor_adds_bos(const char *json, size_t len) {
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    if (!root) return false;
    bool adds = false;
    json_t *pp = json_object_get(root, "post_processor");
    json_t *single = pp ? json_object_get(pp, "single") : NULL;
    if (json_is_array(single) && json_array_size(single) > 0)
        adds = json_object_get(json_array_get(single, 0), "SpecialToken") != NULL;
    json_decref(root);
    return adds;
}

static msa_status load_hf(msa_model *m, const char *dir) {
    char path[4096];
    char *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    MSA_TRY(read_small_file(path, &buf, &len));
    msa_status st = msa_hfconfig_parse(buf, len, &m->hp);
    free(buf);
    if (st != MSA_OK) return msa_fail_prefix(st, "%s", path);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    st = read_small_file(path, &buf, &len);
    if (st == MSA_OK) {
        st = msa_genconfig_parse(buf, len, &m->hp);
        free(buf);
        if (st != MSA_OK) return msa_fail_prefix(st, "%s", path);
    } else if (st != MSA_ERR_NOT_FOUND) {
        return st;
    }
    msa_clear_error();
    m->arch_name = m->hp.arch == MSA_ARCH_MSA ? "msa" : m->hp.arch == MSA_ARCH_QWEN3 ? "qwen3" : "llama";
    /* HF modelling code rotates halves for every architecture (no q/k permutation in HF layout) */
    m->hp.rope_style = MSA_ROPE_NEOX;
    m->hp.qk_norm = m->hp.arch != MSA_ARCH_LLAMA;
    MSA_TRY(msa_safetensors_open(dir, &m->st));
    m->weights = m->st;
    MSA_TRY(bind_weights(m, &hf_names, true));
    if (!m->hp.tie_embeddings && m->output == m->tok_embd)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: missing tensor 'lm_head.weight' (tie_word_embeddings is false)", dir);
    MSA_TRY(msa_tokenizer_load(dir, &m->tok));
    m->chat_kind = MSA_CHAT_CHATML;
    if (m->hp.arch == MSA_ARCH_LLAMA) {
        if (msa_tokenizer_find(m->tok, "<|start_header_id|>") >= 0) m->chat_kind = MSA_CHAT_LLAMA3;
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (read_small_file(path, &buf, &len) == MSA_OK) {
            m->add_bos = hf_post_processor_adds_bos(buf, len) && m->hp.bos_id >= 0;
            free(buf);
        }
        msa_clear_error();
    }
    /* The checkpoint's authors ran it in bf16: emulate transformers' bf16 activation rounding. */
    m->bf16_acts = m->layers[0].wq->dtype == MSA_DTYPE_BF16;
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------------ fingerprint */

static void compute_fingerprint(msa_model *m) {
    XXH3_state_t *s = XXH3_createState();
    if (!s) return;
    uint8_t out[32];
    for (int half = 0; half < 2; half++) {
        XXH3_128bits_reset_withSeed(s, (XXH64_hash_t)half * 0x9e3779b97f4a7c15ull);
        const msa_hparams *hp = &m->hp;
        char desc[512];
        int n = snprintf(desc, sizeof desc,
                         "arch=%s vocab=%d embd=%d layer=%d head=%d kv=%d hd=%d ff=%d eps=%.9g theta=%.9g rope=%d "
                         "qknorm=%d tie=%d bf16=%d",
                         m->arch_name, hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv,
                         hp->head_dim, hp->n_ff, (double)hp->rms_eps, (double)hp->rope_theta, (int)hp->rope_style,
                         (int)hp->qk_norm, (int)hp->tie_embeddings, (int)m->bf16_acts);
        XXH3_128bits_update(s, desc, (size_t)n);
        if (hp->msa.present) {
            const msa_msa_config *c = &hp->msa;
            n = snprintf(desc, sizeof desc, "msa P=%d k=%d dec=%d aux=%s h=%d q=%d c=%d", c->pooling_kernel_size,
                         c->top_k_docs, (int)c->decouple_router, c->aux_loss_method, (int)c->head_reduce,
                         (int)c->query_reduce, (int)c->chunk_reduce);
            XXH3_128bits_update(s, desc, (size_t)n);
            for (int l = 0; l < hp->n_layer; l++) XXH3_128bits_update(s, &c->router_layer[l], 1);
        }
        size_t nv = msa_tokenizer_vocab_size(m->tok);
        char piece[256];
        for (size_t i = 0; i < nv; i++) {
            int pl = msa_token_to_piece(m->tok, (int32_t)i, piece, sizeof piece);
            if (pl > 0) XXH3_128bits_update(s, piece, (size_t)(pl > (int)sizeof piece ? (int)sizeof piece : pl));
            XXH3_128bits_update(s, "\0", 1);
        }
        uint64_t hh = msa_weights_header_hash(m->weights);
        XXH3_128bits_update(s, &hh, sizeof hh);
        size_t nt = msa_weights_count(m->weights);
        for (size_t i = 0; i < nt; i++) { /* sampled weight bytes: start, middle, end of every tensor */
            const msa_tensor *t = msa_weights_at(m->weights, i);
            size_t take = t->nbytes < 64 ? t->nbytes : 64;
            const uint8_t *d = t->data;
            XXH3_128bits_update(s, d, take);
            XXH3_128bits_update(s, d + t->nbytes / 2 - (t->nbytes / 2 >= take ? take / 2 : 0), take / 2);
            XXH3_128bits_update(s, d + t->nbytes - take, take);
        }
        XXH128_hash_t h = XXH3_128bits_digest(s);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        memcpy(out + 16 * half, c.digest, 16);
    }
    XXH3_freeState(s);
    memcpy(m->fingerprint, out, 32);
}

/* --------------------------------------------------------------------------------------------- public */

static void prefault(const msa_model *m) {
    volatile uint8_t sink = 0;
    size_t nt = msa_weights_count(m->weights);
    for (size_t i = 0; i < nt; i++) {
        const msa_tensor *t = msa_weights_at(m->weights, i);
        const volatile uint8_t *d = t->data;
        for (size_t o = 0; o < t->nbytes; o += 4096) sink ^= d[o];
    }
    (void)sink;
}

msa_status msa_model_load(const char *path, const msa_model_params *params, msa_model **out) {
    *out = NULL;
    msa_model_params defaults = msa_model_default_params();
    if (!params) params = &defaults;
    if (!path) return msa_fail(MSA_ERR_INVALID_ARG, "msa_model_load: path is NULL");
    msa_device dev;
    msa_status drc = msa_device_parse(params->device, &dev);
    if (drc == MSA_OK) drc = msa_device_resolve(&dev);
    if (drc != MSA_OK) return drc;
    struct stat st;
    if (stat(path, &st) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    msa_model *m = calloc(1, sizeof *m);
    if (!m) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    model_path_for_errors = path;
    msa_status rc = S_ISDIR(st.st_mode) ? load_hf(m, path) : load_gguf(m, path);
    if (rc == MSA_OK) rc = msa_threadpool_new(params->n_threads, &m->tp);
    if (rc == MSA_OK) rc = msa_backend_new(m, &dev, &m->be);
    if (rc != MSA_OK) {
        msa_model_free(m);
        return rc;
    }
    summarize_weights(m);
    compute_fingerprint(m);
    if (params->prefault) prefault(m);
    msa_clear_error();
    *out = m;
    return MSA_OK;
}

void msa_model_free(msa_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
            free(m->layers[l].q_norm);
            free(m->layers[l].k_norm);
        }
        free(m->layers);
    }
    free(m->output_norm);
    free(m->chat_default_system);
    msa_read_resident_free(m); /* backend buffers: before the backend */
    msa_backend_free(m->be);
    if (m->tp) msa_threadpool_free(m->tp);
    if (m->tok) msa_tokenizer_free(m->tok);
    if (m->gguf) msa_gguf_free(m->gguf);
    if (m->st) msa_weights_free(m->st);
    if (m->router_st) msa_weights_free(m->router_st);
    free(m);
}

const msa_tokenizer *msa_model_tokenizer(const msa_model *m) { return m->tok; }

void msa_model_get_info(const msa_model *m, msa_model_info *info) {
    const msa_hparams *hp = &m->hp;
    memset(info, 0, sizeof *info);
    info->arch = m->arch_name;
    info->n_vocab = hp->n_vocab;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->n_ff = hp->n_ff;
    info->n_ctx_train = hp->n_ctx_train;
    info->bos_id = hp->bos_id;
    info->n_eos = hp->n_eos;
    for (int i = 0; i < hp->n_eos && i < 4; i++) info->eos_ids[i] = hp->eos_ids[i];
    info->is_msa = hp->arch == MSA_ARCH_MSA && hp->msa.present;
    info->weight_dtype = m->weight_dtype;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
}

void msa_model_fingerprint(const msa_model *m, uint8_t out[32]) { memcpy(out, m->fingerprint, 32); }
