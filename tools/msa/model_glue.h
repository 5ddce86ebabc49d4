/* model_glue.h — what `msa bank` needs from a model: bank parameters (shape, fingerprint, path) and encoding
 * documents into a bank. Kept apart so cmd_bank.c stays about banks. */
#ifndef MSA_TOOLS_MODEL_GLUE_H
#define MSA_TOOLS_MODEL_GLUE_H

#include "msa.h"

/* Load the model at model_path (with router weights from router_path unless NULL: msa_model_load_router) and fill cp (shape from its config/msa_config, fingerprint, model path).
 * mode: MSA_BANK_NATIVE, MSA_BANK_READ, or -1 for the model's own (native for an MSA checkpoint, else read). */
msa_status model_glue_bank_params(const char *model_path, const char *router_path, int mode, int pooling, msa_bank_create_params *cp);

/* Load the model, check it matches the bank's fingerprint, and encode docs into the bank (durable on return). */
msa_status model_glue_ingest(msa_bank *bank, const char *model_path, const char *router_path, const msa_model_params *mp,
                             const msa_doc_input *docs, size_t n_docs, bool replace, msa_ingest_report *report);

/* Read mode's router for a loaded model: router_opt a safetensors file (msa_model_load_router), "none" (the identity
 * router), or NULL: the shipped query-side router trained for this exact model (data/routers/, matched by the
 * model's fingerprint; looked up in the working directory, then next to the binary) when there is one, else the
 * identity router. *used (may be NULL) receives the file loaded, or NULL. */
msa_status model_glue_read_router(msa_model *model, const char *router_opt, const char **used);

/* A repository file: path itself when readable (relative to the working directory), else the same path
 * relative to the executable's parent directory (build/msa run from anywhere) written into buf; NULL when
 * neither is readable. */
const char *model_glue_locate(const char *path, char *buf, size_t cap);

#endif
