/* model_glue.c — `msa bank` and models (see model_glue.h): bank parameters from a loaded model (shape from its
 * config and msa_config, its fingerprint, its absolute path) and encoding documents through msa_bank_ingest
 * after checking the bank was made for this model. */
#include "model_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

static msa_status load(const char *model_path, msa_model **m) {
    msa_model_params mp = msa_model_default_params();
    return msa_model_load(model_path, &mp, m);
}

/* The memory shape a model's encoder produces (the rule of the memory module's msa_memory_bank_shape):
 * native = the checkpoint's router layers and pooling, K̄_R of n_kv_heads x head_dim, dtype bf16 when the
 * model computes with bf16 activations; read = the upper half of the layers, the model's own keys. */
static msa_status shape_of(const msa_model *m, bool read_mode, int pooling, msa_bank_shape *out) {
    const msa_hparams *hp = msa_model_hparams(m);
    memset(out, 0, sizeof *out);
    out->mode = read_mode ? MSA_BANK_READ : MSA_BANK_NATIVE;
    out->n_layers = hp->n_layer;
    out->n_kv_heads = hp->n_head_kv;
    out->head_dim = hp->head_dim;
    out->n_template = 3;
    if (!read_mode) {
        if (!hp->msa.present)
            return msa_fail(MSA_ERR_UNSUPPORTED, "the model has no msa_config: native memory needs an MSA checkpoint "
                                                 "(use --mode read)");
        out->pooling = pooling > 0 ? pooling : hp->msa.pooling_kernel_size;
        for (int l = 0; l < hp->n_layer && l < MSA_BANK_MAX_LAYERS; l++)
            if (hp->msa.router_layer[l]) out->router_layers[out->n_router++] = l;
        out->dtype = m->bf16_acts ? MSA_BANK_BF16 : MSA_BANK_F32;
    } else {
        out->pooling = pooling > 0 ? pooling : 16;
        for (int l = hp->n_layer / 2; l < hp->n_layer && l < MSA_BANK_MAX_LAYERS; l++)
            out->router_layers[out->n_router++] = l;
        out->dtype = MSA_BANK_BF16;
    }
    if (out->n_router == 0) return msa_fail(MSA_ERR_UNSUPPORTED, "the model has no router layers");
    for (int s = 0; s < out->n_router; s++) out->route_dim[s] = hp->n_head_kv * hp->head_dim;
    return MSA_OK;
}

msa_status model_glue_bank_params(const char *model_path, bool read_mode, int pooling, msa_bank_create_params *cp) {
    msa_model *m = NULL;
    MSA_TRY(load(model_path, &m));
    msa_status st = shape_of(m, read_mode, pooling, &cp->shape);
    if (!st) {
        msa_model_fingerprint(m, cp->fingerprint);
        /* an absolute path: `msa bank add` may run from another directory */
        static _Thread_local char keep[4096];
        char *abs = realpath(model_path, NULL);
        snprintf(keep, sizeof keep, "%s", abs ? abs : model_path);
        free(abs);
        cp->model_path = keep;
    }
    msa_model_free(m);
    return st;
}

msa_status model_glue_ingest(msa_bank *bank, const char *model_path, const msa_doc_input *docs, size_t n_docs,
                             bool replace, msa_ingest_report *report) {
    msa_model *m = NULL;
    MSA_TRY(load(model_path, &m));
    uint8_t fp[32];
    msa_model_fingerprint(m, fp);
    msa_status st = msa_bank_check_fingerprint(bank, fp);
    if (!st) {
        msa_ingest_params ip = msa_ingest_default_params();
        ip.replace = replace;
        ip.progress = true;
        st = msa_bank_ingest(bank, m, docs, n_docs, &ip, report);
    }
    msa_model_free(m);
    return st;
}
