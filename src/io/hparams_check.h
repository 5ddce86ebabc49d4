/* hparams_check.h — the sanity bounds every msa_hparams must pass, whichever file it came from
 * (config.json or GGUF metadata); internal to src/io/. */
#ifndef MSA_IO_HPARAMS_CHECK_H
#define MSA_IO_HPARAMS_CHECK_H

#include "model/hparams.h"

/* MSA_ERR_BAD_DATA "<label>: '<key>' ..." for the first violated bound. key_style 0 names config.json keys
 * (hidden_size), 1 names GGUF keys (embedding_length). */
msa_status msa_hparams_check(const msa_hparams *hp, const char *label, int key_style);

#endif
