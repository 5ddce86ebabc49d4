/* model_glue.c — `msa bank` and models (see model_glue.h). Model loading has not landed yet: until it does
 * these report "unsupported" and banks are made with --shape-of and filled with --synthetic. */
#include "model_glue.h"

#include "util/error.h"

msa_status model_glue_bank_params(const char *model_path, bool read_mode, int pooling, msa_bank_create_params *cp) {
    (void)read_mode; (void)pooling; (void)cp;
    return msa_fail(MSA_ERR_UNSUPPORTED, "%s: loading models is not built yet (use --shape-of)", model_path);
}

msa_status model_glue_ingest(msa_bank *bank, const char *model_path, const msa_doc_input *docs, size_t n_docs,
                             bool replace, msa_ingest_report *report) {
    (void)bank; (void)docs; (void)n_docs; (void)replace; (void)report;
    return msa_fail(MSA_ERR_UNSUPPORTED, "%s: loading models is not built yet (use --synthetic)", model_path);
}
