/* fuzz_tokenizer_encode.c — libFuzzer target: arbitrary bytes (any UTF-8 validity) through the Qwen3 tokenizer
 * (tests/fixtures/tokenizer/qwen3/tokenizer.json, relative to the repository root where tests/run.sh runs
 * fuzzers; MSA_FUZZ_TOKENIZER overrides). The first input byte picks parse_special. Encoding must succeed,
 * produce valid ids, and decoding must give back the input when it is ASCII without special-token text
 * (NFC leaves ASCII alone). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msa.h"

static msa_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("MSA_FUZZ_TOKENIZER");
    if (msa_tokenizer_load(path ? path : "tests/fixtures/tokenizer/qwen3/tokenizer.json", &tok) != MSA_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (msa_tokenize(tok, text, len, special, &ids, &n) != MSA_OK) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= msa_tokenizer_vocab_size(tok)) abort();
    if (!special)
        for (size_t i = 0; i < n; i++)
            if (msa_tokenizer_is_special(tok, ids[i])) abort();  /* text must never forge special tokens */
    char *dec = NULL;
    size_t dlen = 0;
    if (msa_detokenize(tok, ids, n, &dec, &dlen) != MSA_OK) abort();
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++) ascii = (uint8_t)text[i] < 0x80;
    if (ascii && (dlen != len || memcmp(dec, text, len))) abort();
    free(dec);
    free(ids);
    return 0;
}
