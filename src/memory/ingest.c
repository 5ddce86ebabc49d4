/* ingest.c — msa_bank_ingest: stage-1 encoding of documents into a bank. Placeholder until the memory module
 * lands (it replaces this file whole). */
#include "msa.h"
#include "util/error.h"

msa_ingest_params msa_ingest_default_params(void) {
    msa_ingest_params p = {.batch_tokens = 0, .replace = false, .progress = true};
    return p;
}

msa_status msa_bank_ingest(msa_bank *bank, msa_model *model, const msa_doc_input *docs, size_t n_docs,
                           const msa_ingest_params *params, msa_ingest_report *report) {
    (void)bank; (void)model; (void)docs; (void)n_docs; (void)params; (void)report;
    return msa_fail(MSA_ERR_UNSUPPORTED, "document encoding is not built yet");
}
