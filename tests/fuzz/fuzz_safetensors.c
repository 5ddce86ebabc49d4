/* fuzz_safetensors.c — libFuzzer target: any byte string as a whole safetensors file. Must return a status,
 * never crash, and every accepted tensor must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "io/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msa_weights *w = NULL;
    if (msa_safetensors_parse(data, size, &w) != MSA_OK) return 0;
    for (size_t i = 0; i < msa_weights_count(w); i++) {
        const msa_tensor *t = msa_weights_at(w, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size || msa_weights_find(w, t->name) != t) abort();
    }
    (void)msa_weights_header_hash(w);
    msa_weights_free(w);
    return 0;
}
