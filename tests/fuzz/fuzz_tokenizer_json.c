/* fuzz_tokenizer_json.c — libFuzzer target: any byte string as a tokenizer.json. Parsing must return a status,
 * never crash; a tokenizer that loads must encode text (including the input itself) and decode its ids back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msa.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msa_tokenizer *t = NULL;
    if (msa_tokenizer_from_json((const char *)data, size, &t) != MSA_OK) {
        if (t) abort();
        if (!msa_last_error()[0] || strchr(msa_last_error(), '\n')) abort();  /* one clear line */
        return 0;
    }
    static const char sample[] = "Hello world, it's 12345 <s> <|im_start|>\n\n  x\xff\xe2\x82 caf\xc3\xa9";
    for (int k = 0; k < 2; k++) {
        const char *text = k ? (const char *)data : sample;
        size_t len = k ? (size < 4096 ? size : 4096) : sizeof sample - 1;
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (msa_tokenize(t, text, len, special, &ids, &n) != MSA_OK) continue;
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || (size_t)ids[i] >= msa_tokenizer_vocab_size(t)) abort();
            char *dec = NULL;
            size_t dlen = 0;
            if (msa_detokenize(t, ids, n, &dec, &dlen) != MSA_OK) abort();  /* every id it made decodes */
            free(dec);
            free(ids);
        }
    }
    msa_tokenizer_free(t);
    return 0;
}
