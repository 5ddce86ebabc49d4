/* fuzz_gguf.c — libFuzzer target: any byte string as a GGUF file. Parsing, every metadata getter and the
 * hyper-parameter reader must return a status, never crash; accepted tensors must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msa_gguf *g = NULL;
    if (msa_gguf_parse(data, size, &g) != MSA_OK) return 0;
    const msa_weights *w = msa_gguf_weights(g);
    for (size_t i = 0; i < msa_weights_count(w); i++) {
        const msa_tensor *t = msa_weights_at(w, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) abort();
    }
    char key[256];
    for (size_t i = 0; i < msa_gguf_kv_count(g); i++) {
        const char *k, *s;
        size_t kl, n;
        int type, et;
        msa_gguf_kv_at(g, i, &k, &kl, &type, &et);
        if (kl >= sizeof key) continue;
        memcpy(key, k, kl);
        key[kl] = '\0';
        int64_t iv;
        float f;
        bool b;
        const int32_t *ia;
        const float *fa;
        (void)msa_gguf_get_int(g, key, &iv);
        (void)msa_gguf_get_f32(g, key, &f);
        (void)msa_gguf_get_bool(g, key, &b);
        (void)msa_gguf_get_str(g, key, &s, &n);
        if (msa_gguf_get_i32_array(g, key, &ia, &n) && n) iv = ia[n - 1];
        if (msa_gguf_get_f32_array(g, key, &fa, &n) && n) f = fa[n - 1];
        if (msa_gguf_get_str_array(g, key, &n))
            for (size_t j = 0; j < n; j++)
                if (msa_gguf_str_array_at(g, key, j, &s, &kl) && kl && (const uint8_t *)s + kl > data + size) abort();
    }
    msa_hparams hp;
    (void)msa_gguf_hparams(g, &hp);
    msa_gguf_free(g);
    return 0;
}
