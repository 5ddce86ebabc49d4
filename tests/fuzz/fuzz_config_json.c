/* fuzz_config_json.c — libFuzzer target: any byte string as config.json (and as generation_config.json
 * on top of a parsed config). Must return a status, never crash; accepted configs pass the sanity bounds. */
#include <stdint.h>
#include <stdlib.h>

#include "model/hparams.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msa_hparams hp;
    if (msa_hfconfig_parse((const char *)data, size, &hp) == MSA_OK) {
        if (hp.n_layer < 1 || hp.n_layer > MSA_MAX_LAYERS || hp.n_head % hp.n_head_kv != 0 || hp.n_embd <= 0)
            abort();
        (void)msa_genconfig_parse((const char *)data, size, &hp);
        if (hp.n_eos > 4) abort();
    }
    return 0;
}
