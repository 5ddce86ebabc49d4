/* model_glue.c — `msa bank` and models (see model_glue.h): bank parameters from a loaded model (shape from
 * its config and msa_config via the memory module's msa_memory_bank_shape, its fingerprint, its absolute
 * path) and encoding documents through msa_bank_ingest after checking the bank was made for this model. */
#include "model_glue.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

static msa_status load(const char *model_path, const char *router_path, const msa_model_params *mp, msa_model **m) {
    MSA_TRY(msa_model_load(model_path, mp, m));
    msa_status st = router_path && strcmp(router_path, "none") ? msa_model_load_router(*m, router_path) : MSA_OK;
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

/* The shipped query-side routers (msa train-router --query-only; README, docs/quality.md): the fingerprint of
 * the model each was trained for (msa_model_fingerprint, as `msa bank info` prints it) and its path in the
 * repository. */
static const struct {
    const char *fingerprint, *path;
} SHIPPED_ROUTERS[] = {
    {"f6201d248403716e64fa0daa1e537d7fc3b12e6cd56de6531f2dc6a3d3649d15", "data/routers/smollm2-135m.safetensors"},
};

const char *model_glue_locate(const char *path, char *buf, size_t cap) {
    if (access(path, R_OK) == 0) return path;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *s = strrchr(exe, '/');
    if (!s) return NULL;
    *s = 0;
    if ((size_t)snprintf(buf, cap, "%s/../%s", exe, path) >= cap) return NULL;
    return access(buf, R_OK) == 0 ? buf : NULL;
}

msa_status model_glue_read_router(msa_model *model, const char *router_opt, const char **used) {
    static char buf[PATH_MAX];
    if (used) *used = NULL;
    if (router_opt && !strcmp(router_opt, "none")) return MSA_OK;
    if (router_opt) {
        MSA_TRY(msa_model_load_router(model, router_opt));
        if (used) *used = router_opt;
        return MSA_OK;
    }
    uint8_t fp[32];
    char hex[65];
    msa_model_fingerprint(model, fp);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    for (size_t i = 0; i < sizeof SHIPPED_ROUTERS / sizeof SHIPPED_ROUTERS[0]; i++) {
        if (strcmp(hex, SHIPPED_ROUTERS[i].fingerprint)) continue;
        const char *p = model_glue_locate(SHIPPED_ROUTERS[i].path, buf, sizeof buf);
        if (!p) return MSA_OK; /* not installed with the binary: the identity router */
        MSA_TRY(msa_model_load_router(model, p));
        if (used) *used = p;
        return MSA_OK;
    }
    return MSA_OK;
}
