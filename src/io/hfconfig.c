/* hfconfig.c — Hugging Face config.json (+ the msa_config of MSA checkpoints) and generation_config.json
 * into msa_hparams, and the sanity bounds every msa_hparams must pass. Defaults follow transformers'
 * Qwen3Config / LlamaConfig so that a config means what it means to the checkpoint's authors. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hparams_check.h"
#include "util/error.h"

#define CFG "config.json"
#define MAX_DIM 1000000
#define MAX_VOCAB (1 << 24)

/* An integer key: required when dflt < 0 (then absence is an error). Floats with an integral value
 * (2560.0) are refused: transformers writes integers, and anything else is a broken file. */
static msa_status get_int(json_t *root, const char *key, long long dflt, long long lo, long long hi, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (dflt < 0) return msa_fail(MSA_ERR_BAD_DATA, CFG ": missing '%s'", key);
        *out = (int)dflt;
        return MSA_OK;
    }
    if (!json_is_integer(v)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": '%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": '%s' = %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *out = (int)x;
    return MSA_OK;
}

static msa_status get_float(json_t *root, const char *key, double dflt, double lo, double hi, float *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return MSA_OK;
    }
    if (!json_is_number(v)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": '%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x > lo && x < hi)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": '%s' = %g is out of range (%g, %g)", key, x, lo, hi);
    *out = (float)x;
    return MSA_OK;
}

static msa_status get_bool(json_t *obj, const char *label, const char *key, bool dflt, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return MSA_OK;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return MSA_OK;
    }
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *out = json_integer_value(v) == 1;
        return MSA_OK;
    }
    return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s' must be true or false", label, key);
}

static void add_eos(msa_hparams *hp, long long id) {
    for (int i = 0; i < hp->n_eos; i++)
        if (hp->eos_ids[i] == id) return;
    if (hp->n_eos < 4) hp->eos_ids[hp->n_eos++] = (int)id; /* more than 4 end ids: the first 4 are kept */
}

/* eos_token_id: null, an int or a list of ints. */
static msa_status parse_eos(json_t *v, const char *label, int n_vocab, msa_hparams *hp) {
    if (!v || json_is_null(v)) return MSA_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: 'eos_token_id' must be an integer or a list of integers", label);
        if (json_integer_value(e) < 0 || (n_vocab > 0 && json_integer_value(e) >= n_vocab))
            return msa_fail(MSA_ERR_BAD_DATA, "%s: 'eos_token_id' %lld is outside the vocabulary", label,
                            (long long)json_integer_value(e));
        add_eos(hp, json_integer_value(e));
    }
    return MSA_OK;
}

static msa_status parse_reduce(json_t *cfg, const char *key, const char *dflt, bool allow_last, msa_reduce *out) {
    json_t *v = json_object_get(cfg, key);
    const char *s = dflt;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config '%s' must be a string", key);
        s = json_string_value(v);
    }
    if (strcmp(s, "mean") == 0) *out = MSA_REDUCE_MEAN;
    else if (strcmp(s, "max") == 0) *out = MSA_REDUCE_MAX;
    else if (allow_last && strcmp(s, "last") == 0) *out = MSA_REDUCE_LAST;
    else
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config '%s' = '%.32s' (expected mean, max%s)", key, s,
                        allow_last ? " or last" : "");
    return MSA_OK;
}

static msa_status set_router_layer(msa_msa_config *m, long long idx, int n_layer) {
    if (idx < 0 || idx >= n_layer)
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' has layer %lld outside 0..%d", idx,
                        n_layer - 1);
    if (!m->router_layer[idx]) m->n_router_layers++;
    m->router_layer[idx] = true;
    return MSA_OK;
}

/* router_layer_idx: "all", "18,19,...,35" or a list of ints. */
static msa_status parse_router_layers(json_t *v, int n_layer, msa_msa_config *m) {
    if (!v || json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "all") == 0)) {
        for (int i = 0; i < n_layer; i++) m->router_layer[i] = true;
        m->n_router_layers = n_layer;
        return MSA_OK;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_integer(e))
                return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' must list integers");
            MSA_TRY(set_router_layer(m, json_integer_value(e), n_layer));
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while (*s) {
            while (*s == ' ') s++;
            if (!isdigit((unsigned char)*s))
                return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' must be \"all\" or \"i,j,...\"");
            long long idx = 0;
            while (isdigit((unsigned char)*s) && idx <= MSA_MAX_LAYERS) idx = idx * 10 + (*s++ - '0');
            MSA_TRY(set_router_layer(m, idx, n_layer));
            while (*s == ' ') s++;
            if (*s == ',') {
                s++;
                if (!*s) return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' ends with ','");
            } else if (*s) {
                return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' must be \"all\" or \"i,j,...\"");
            }
        }
    } else {
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' must be a string or a list");
    }
    if (m->n_router_layers == 0) return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'router_layer_idx' is empty");
    return MSA_OK;
}

/* msa-reference.md §1.2: the keys inference reads, with the defaults the reference's inference uses. */
static msa_status parse_msa_config(json_t *cfg, int n_layer, msa_msa_config *m) {
    if (!json_is_object(cfg)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'msa_config' must be an object");
    memset(m, 0, sizeof *m);
    m->present = true;
    MSA_TRY(parse_router_layers(json_object_get(cfg, "router_layer_idx"), n_layer, m));
    MSA_TRY(get_int(cfg, "pooling_kernel_size", 64, 1, 1 << 16, &m->pooling_kernel_size));
    /* the benchmark reads doc_top_k (default 16); top_k_docs is the training name of the same idea */
    json_t *k = json_object_get(cfg, "doc_top_k");
    MSA_TRY(get_int(cfg, k && !json_is_null(k) ? "doc_top_k" : "top_k_docs", 16, 1, 1 << 20, &m->top_k_docs));
    MSA_TRY(get_bool(cfg, CFG ": msa_config", "decouple_router", false, &m->decouple_router));
    MSA_TRY(get_bool(cfg, CFG ": msa_config", "rewrite_position", false, &m->rewrite_position));
    json_t *aux = json_object_get(cfg, "aux_loss_method");
    const char *auxs = "INFONCE";
    if (aux && !json_is_null(aux)) {
        if (!json_is_string(aux) || json_string_length(aux) >= sizeof m->aux_loss_method)
            return msa_fail(MSA_ERR_BAD_DATA, CFG ": msa_config 'aux_loss_method' must be a short string");
        auxs = json_string_value(aux);
    }
    snprintf(m->aux_loss_method, sizeof m->aux_loss_method, "%s", auxs);
    MSA_TRY(parse_reduce(cfg, "head_reduce_method", "max", false, &m->head_reduce));
    MSA_TRY(parse_reduce(cfg, "query_reduce_method", "max", true, &m->query_reduce));
    MSA_TRY(parse_reduce(cfg, "chunk_reduce_method", "max", false, &m->chunk_reduce));
    return MSA_OK;
}

static msa_status parse_root(json_t *root, msa_hparams *hp) {
    if (!json_is_object(root)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": not a JSON object");
    json_t *archs = json_object_get(root, "architectures");
    const char *arch = NULL;
    if (json_is_array(archs) && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0))) {
        arch = json_string_value(json_array_get(archs, 0));
    } else if (archs && !json_is_null(archs)) {
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'architectures' must be a list of strings");
    } else {
        return msa_fail(MSA_ERR_BAD_DATA, CFG ": missing 'architectures'");
    }
    if (strcmp(arch, "Qwen3ForCausalLM") == 0) hp->arch = MSA_ARCH_QWEN3;
    else if (strcmp(arch, "MSAForCausalLM") == 0) hp->arch = MSA_ARCH_MSA;
    else if (strcmp(arch, "LlamaForCausalLM") == 0) hp->arch = MSA_ARCH_LLAMA;
    else
        return msa_fail(MSA_ERR_UNSUPPORTED,
                        CFG ": architecture '%.64s' is not supported (Qwen3ForCausalLM, MSAForCausalLM, LlamaForCausalLM are)",
                        arch);
    bool llama = hp->arch == MSA_ARCH_LLAMA;
    hp->rope_style = MSA_ROPE_NEOX; /* HF checkpoints rotate halves, both Qwen3 and Llama */
    hp->qk_norm = !llama;

    MSA_TRY(get_int(root, "vocab_size", -1, 1, MAX_VOCAB, &hp->n_vocab));
    MSA_TRY(get_int(root, "hidden_size", -1, 1, MAX_DIM - 1, &hp->n_embd));
    MSA_TRY(get_int(root, "num_hidden_layers", -1, 1, MSA_MAX_LAYERS, &hp->n_layer));
    MSA_TRY(get_int(root, "num_attention_heads", -1, 1, MAX_DIM - 1, &hp->n_head));
    MSA_TRY(get_int(root, "num_key_value_heads", hp->n_head, 1, MAX_DIM - 1, &hp->n_head_kv));
    MSA_TRY(get_int(root, "intermediate_size", -1, 1, MAX_DIM - 1, &hp->n_ff));
    /* LlamaConfig derives head_dim from hidden/heads; Qwen3Config's default is 128 */
    MSA_TRY(get_int(root, "head_dim", llama ? hp->n_embd / hp->n_head : 128, 1, MAX_DIM - 1, &hp->head_dim));
    MSA_TRY(get_int(root, "max_position_embeddings", llama ? 2048 : 32768, 1, 1 << 30, &hp->n_ctx_train));
    MSA_TRY(get_float(root, "rms_norm_eps", 1e-6, 0, 1, &hp->rms_eps));
    MSA_TRY(get_float(root, "rope_theta", 10000.0, 0, 1e12, &hp->rope_theta));
    /* transformers >= 5 writes rope_parameters {rope_theta, rope_type} instead of rope_theta/rope_scaling */
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'rope_parameters' must be an object");
        json_t *th = json_object_get(rp, "rope_theta");
        if (th && !json_is_null(th)) {
            if (!json_is_number(th) || !(json_number_value(th) > 0 && json_number_value(th) < 1e12))
                return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'rope_parameters.rope_theta' must be a positive number");
            if (json_object_get(root, "rope_theta") && (float)json_number_value(th) != hp->rope_theta)
                return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'rope_theta' and 'rope_parameters.rope_theta' differ");
            hp->rope_theta = (float)json_number_value(th);
        }
        json_t *rt = json_object_get(rp, "rope_type");
        if (rt && !json_is_null(rt) && (!json_is_string(rt) || strcmp(json_string_value(rt), "default") != 0))
            return msa_fail(MSA_ERR_UNSUPPORTED, CFG ": rope_parameters rope_type '%.32s' is not supported",
                            json_is_string(rt) ? json_string_value(rt) : "?");
    }
    MSA_TRY(get_bool(root, CFG, "tie_word_embeddings", false, &hp->tie_embeddings));

    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'rope_scaling' must be an object or null");
        json_t *t = json_object_get(rs, "rope_type");
        if (!t) t = json_object_get(rs, "type");
        if (!json_is_string(t)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'rope_scaling' without a 'rope_type'");
        if (strcmp(json_string_value(t), "default") != 0)
            return msa_fail(MSA_ERR_UNSUPPORTED, CFG ": rope_scaling type '%.32s' is not supported", json_string_value(t));
    }
    bool flag;
    MSA_TRY(get_bool(root, CFG, "attention_bias", false, &flag));
    if (flag) return msa_fail(MSA_ERR_UNSUPPORTED, CFG ": 'attention_bias' true is not supported");
    MSA_TRY(get_bool(root, CFG, "mlp_bias", false, &flag));
    if (flag) return msa_fail(MSA_ERR_UNSUPPORTED, CFG ": 'mlp_bias' true is not supported");
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return msa_fail(MSA_ERR_UNSUPPORTED, CFG ": 'hidden_act' must be \"silu\"");

    hp->bos_id = -1;
    json_t *bos = json_object_get(root, "bos_token_id");
    if (json_is_array(bos) && json_array_size(bos) > 0) bos = json_array_get(bos, 0);
    if (bos && !json_is_null(bos) && !json_is_array(bos)) {
        if (!json_is_integer(bos) || json_integer_value(bos) < 0 || json_integer_value(bos) >= hp->n_vocab)
            return msa_fail(MSA_ERR_BAD_DATA, CFG ": 'bos_token_id' must be a token id below the vocabulary size");
        hp->bos_id = (int)json_integer_value(bos);
    }
    MSA_TRY(parse_eos(json_object_get(root, "eos_token_id"), CFG, hp->n_vocab, hp));

    json_t *mc = json_object_get(root, "msa_config");
    if (hp->arch == MSA_ARCH_MSA) {
        if (!mc || json_is_null(mc)) return msa_fail(MSA_ERR_BAD_DATA, CFG ": missing 'msa_config'");
        MSA_TRY(parse_msa_config(mc, hp->n_layer, &hp->msa));
    }
    return msa_hparams_check(hp, CFG, 0);
}

msa_status msa_hfconfig_parse(const char *json, size_t len, msa_hparams *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) return msa_fail(MSA_ERR_BAD_DATA, CFG ": not valid JSON: %s (line %d)", err.text, err.line);
    msa_status st = parse_root(root, out);
    json_decref(root);
    return st;
}

msa_status msa_genconfig_parse(const char *json, size_t len, msa_hparams *hp) {
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return msa_fail(MSA_ERR_BAD_DATA, "generation_config.json: not valid JSON: %s (line %d)", err.text, err.line);
    msa_status st = MSA_OK;
    if (!json_is_object(root)) st = msa_fail(MSA_ERR_BAD_DATA, "generation_config.json: not a JSON object");
    else st = parse_eos(json_object_get(root, "eos_token_id"), "generation_config.json", hp->n_vocab, hp);
    json_decref(root);
    return st;
}

msa_status msa_hparams_check(const msa_hparams *hp, const char *label, int key_style) {
    const char *k_embd = key_style ? "embedding_length" : "hidden_size";
    const char *k_head = key_style ? "attention.head_count" : "num_attention_heads";
    const char *k_kv = key_style ? "attention.head_count_kv" : "num_key_value_heads";
    const char *k_hd = key_style ? "attention.key_length" : "head_dim";
    const char *k_layer = key_style ? "block_count" : "num_hidden_layers";
    const char *k_ff = key_style ? "feed_forward_length" : "intermediate_size";
    const char *k_vocab = key_style ? "vocab_size" : "vocab_size";
    const char *k_ctx = key_style ? "context_length" : "max_position_embeddings";
    const char *k_eps = key_style ? "attention.layer_norm_rms_epsilon" : "rms_norm_eps";
    const char *k_theta = key_style ? "rope.freq_base" : "rope_theta";
#define BOUND(cond, key, what) \
    if (!(cond)) return msa_fail(MSA_ERR_BAD_DATA, "%s: '%s' %s", label, key, what)
    BOUND(hp->n_embd > 0 && hp->n_embd < MAX_DIM, k_embd, "must be in 1..999999");
    BOUND(hp->n_layer > 0 && hp->n_layer <= MSA_MAX_LAYERS, k_layer, "must be in 1..256");
    BOUND(hp->n_head > 0 && hp->n_head < MAX_DIM, k_head, "must be in 1..999999");
    BOUND(hp->n_head_kv > 0 && hp->n_head_kv <= hp->n_head, k_kv, "must be in 1..number of heads");
    BOUND(hp->n_head % hp->n_head_kv == 0, k_kv, "must divide the number of attention heads");
    BOUND(hp->head_dim > 0 && hp->head_dim < 65536 && hp->head_dim % 2 == 0, k_hd, "must be even and in 2..65534");
    BOUND((long long)hp->head_dim * hp->n_head < MAX_DIM * 16LL, k_hd, "times the head count is too large");
    BOUND(hp->n_ff > 0 && hp->n_ff < MAX_DIM, k_ff, "must be in 1..999999");
    BOUND(hp->n_vocab > 0 && hp->n_vocab <= MAX_VOCAB, k_vocab, "must be in 1..16777216");
    BOUND(hp->n_ctx_train > 0, k_ctx, "must be positive");
    BOUND(isfinite(hp->rms_eps) && hp->rms_eps > 0 && hp->rms_eps < 1, k_eps, "must be in (0, 1)");
    BOUND(isfinite(hp->rope_theta) && hp->rope_theta > 0, k_theta, "must be positive");
    BOUND(hp->bos_id >= -1 && hp->bos_id < hp->n_vocab, "bos_token_id", "is outside the vocabulary");
    for (int i = 0; i < hp->n_eos; i++) BOUND(hp->eos_ids[i] >= 0 && hp->eos_ids[i] < hp->n_vocab, "eos_token_id", "is outside the vocabulary");
#undef BOUND
    return MSA_OK;
}
