/* router_file.c — read mode with trained router weights (`--router FILE`, design.md §2): per-layer router
 * projectors from a safetensors file, in MSA-4B's tensor names, attached to a loaded model that has none.
 *
 *   model.layers.{l}.self_attn.router_q_proj.weight   [n_head*head_dim, n_embd]     (".0.weight" also accepted,
 *   model.layers.{l}.self_attn.router_k_proj.weight   [n_head_kv*head_dim, n_embd]   MSA-4B's spelling)
 *
 * F32, F16 or BF16. The layers that carry both become the router layers of a read-mode bank (encode.c stores
 * router_k_proj(h) as routing keys, context.c routes with router_q_proj(h): no norm, no RoPE, as in MSA).
 * The model's fingerprint then also covers the router (names, shapes and every byte), so a bank built with one
 * router refuses another one, or none, through the usual fingerprint check. The file is hostile input: every
 * tensor it has must be a known router tensor of an existing layer with the exact shape.
 * A file with router_q_proj tensors only, each [n_head_kv*head_dim, n_embd], is a query-side router
 * (`msa train-router --query-only`): see msa_model_load_router. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "model/model.h"
#include "util/error.h"

/* Parses "model.layers.{l}.self_attn.router_{q|k}_proj[.0].weight": *layer, *which ('q'/'k'); false if not. */
static bool router_name(const char *name, long *layer, char *which) {
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre))) return false;
    const char *p = name + strlen(pre);
    if (*p < '0' || *p > '9') return false;
    char *end;
    long l = strtol(p, &end, 10);
    if (end - p > 6) return false;
    const char *tail = end;
    static const char *const forms[] = {".self_attn.router_q_proj.weight", ".self_attn.router_q_proj.0.weight",
                                        ".self_attn.router_k_proj.weight", ".self_attn.router_k_proj.0.weight"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(tail, forms[i])) {
            *layer = l;
            *which = i < 2 ? 'q' : 'k';
            return true;
        }
    return false;
}

static void fold_fingerprint(msa_model *m, const msa_weights *w) {
    uint8_t out[32];
    for (int half = 0; half < 2; half++) {
        XXH3_state_t *s = XXH3_createState();
        if (!s) return;
        XXH3_128bits_reset_withSeed(s, 0x726f75746572ull + (XXH64_hash_t)half);
        XXH3_128bits_update(s, m->fingerprint, 32);
        XXH3_128bits_update(s, "router", 6);
        for (size_t i = 0; i < msa_weights_count(w); i++) {
            const msa_tensor *t = msa_weights_at(w, i);
            XXH3_128bits_update(s, t->name, strlen(t->name) + 1);
            XXH3_128bits_update(s, &t->dtype, sizeof t->dtype);
            XXH3_128bits_update(s, t->shape, sizeof t->shape);
            XXH3_128bits_update(s, t->data, t->nbytes); /* small: a few MB for MSA-4B's shapes */
        }
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
        memcpy(out + 16 * half, c.digest, 16);
        XXH3_freeState(s);
    }
    memcpy(m->fingerprint, out, 32);
}

msa_status msa_model_load_router(msa_model *model, const char *path) {
    const msa_hparams *hp = msa_model_hparams(model);
    if (model->router_st)
        return msa_fail(MSA_ERR_INVALID_ARG, "%s: the model already has a router file loaded", path);
    for (int l = 0; l < hp->n_layer; l++)
        if (model->layers[l].router_q || model->layers[l].router_k || model->layers[l].router_qr)
            return msa_fail(MSA_ERR_UNSUPPORTED, "%s: the model has its own trained router (an MSA checkpoint); "
                                                 "--router is for models without one", path);
    msa_weights *w = NULL;
    MSA_TRY(msa_safetensors_open(path, &w));
    const msa_tensor **q = calloc((size_t)hp->n_layer, sizeof *q), **k = calloc((size_t)hp->n_layer, sizeof *k);
    msa_status st = q && k ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    const int64_t E = hp->n_embd, DQ = (int64_t)hp->n_head * hp->head_dim, DK = (int64_t)hp->n_head_kv * hp->head_dim;
    for (size_t i = 0; i < msa_weights_count(w) && !st; i++) {
        const msa_tensor *t = msa_weights_at(w, i);
        long l;
        char which;
        if (!router_name(t->name, &l, &which)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' is not a router_q_proj/router_k_proj weight", path,
                          t->name);
            break;
        }
        if (l < 0 || l >= hp->n_layer) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' names layer %ld; the model has %d layers", path, t->name,
                          l, hp->n_layer);
            break;
        }
        /* router_q_proj: [n_head*head_dim] (with router_k_proj) or [n_head_kv*head_dim] (a query-side router) */
        const int64_t rows = which == 'q' && t->n_dims == 2 && t->shape[0] == DK ? DK : which == 'q' ? DQ : DK;
        if (t->dtype != MSA_DTYPE_F32 && t->dtype != MSA_DTYPE_F16 && t->dtype != MSA_DTYPE_BF16)
            st = msa_fail(MSA_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", path,
                          t->name, msa_dtype_name(t->dtype));
        else if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != E)
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: tensor '%s' has shape [%lld, %lld] (%d dims); the model needs [%lld, %lld]",
                          path, t->name, (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                          t->n_dims, (long long)rows, (long long)E);
        else if ((which == 'q' ? q : k)[l])
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: layer %ld has two router_%c_proj tensors", path, l, which);
        else
            (which == 'q' ? q : k)[l] = t;
    }
    int n_router = 0, n_k = 0, n_qkv = 0;
    for (int l = 0; l < hp->n_layer && !st; l++) n_k += k[l] != NULL, n_qkv += q[l] && q[l]->shape[0] == DK;
    /* A query-side router: router_q_proj only, [n_head_kv*head_dim, n_embd] per layer. Read mode maps the question
     * with it in place of k_proj (the identity router's query) on the layers it names; documents keep their
     * identity keys, so the model's fingerprint is unchanged and identity banks serve it as they are. */
    const bool query_only = !st && n_k == 0 && n_qkv > 0;
    for (int l = 0; l < hp->n_layer && !st && query_only; l++) {
        if (q[l] && q[l]->shape[0] != DK)
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: layer %d: a query-side router_q_proj needs [%lld, %lld]", path, l,
                          (long long)DK, (long long)E);
        n_router += q[l] != NULL;
    }
    if (query_only && !st) {
        for (int l = 0; l < hp->n_layer; l++) model->layers[l].router_qr = q[l];
        model->router_st = w;
        model->router_query_only = true;
        free(q), free(k);
        return MSA_OK;
    }
    for (int l = 0; l < hp->n_layer && !st; l++) {
        if (!q[l] != !k[l])
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: layer %d has router_%c_proj but no router_%c_proj", path, l,
                          q[l] ? 'q' : 'k', q[l] ? 'k' : 'q');
        n_router += q[l] != NULL;
    }
    if (!st && n_router == 0) st = msa_fail(MSA_ERR_BAD_DATA, "%s: no router_q_proj/router_k_proj tensors", path);
    if (!st) {
        for (int l = 0; l < hp->n_layer; l++) model->layers[l].router_q = q[l], model->layers[l].router_k = k[l];
        model->router_st = w;
        fold_fingerprint(model, w);
        w = NULL;
    }
    free(q), free(k);
    msa_weights_free(w);
    return st;
}
