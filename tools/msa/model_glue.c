/* model_glue.c — `msa bank` and models (see model_glue.h): bank parameters from a loaded model (shape from
 * its config and msa_config via the memory module's msa_memory_bank_shape, its fingerprint, its absolute
 * path) and encoding documents through msa_bank_ingest after checking the bank was made for this model. */
#include "model_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static msa_status load(const char *model_path, const char *router_path, const msa_model_params *mp, msa_model **m) {
    MSA_TRY(msa_model_load(model_path, mp, m));
    msa_status st = router_path ? msa_model_load_router(*m, router_path) : MSA_OK;
    if (st) {
        msa_model_free(*m);
        *m = NULL;
    }
    return st;
}

msa_status model_glue_bank_params(const char *model_path, const char *router_path, int mode, int pooling, msa_bank_create_params *cp) {
    msa_model *m = NULL;
    msa_model_params mp = msa_model_default_params();
    MSA_TRY(load(model_path, router_path, &mp, &m));
    msa_model_info info;
    msa_model_get_info(m, &info);
    /* no --mode: native where the model can (an MSA checkpoint's own router), read otherwise */
    if (mode < 0) mode = info.is_msa && !router_path ? MSA_BANK_NATIVE : MSA_BANK_READ;
    msa_status st = msa_memory_bank_shape(m, (msa_bank_mode)mode, pooling, &cp->shape);
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

msa_status model_glue_ingest(msa_bank *bank, const char *model_path, const char *router_path, const msa_model_params *mp,
                             const msa_doc_input *docs, size_t n_docs, bool replace, msa_ingest_report *report) {
    msa_model *m = NULL;
    MSA_TRY(load(model_path, router_path, mp, &m));
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
