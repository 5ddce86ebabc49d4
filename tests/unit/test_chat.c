/* test_chat.c — msa_chat_render with the default model's template (SmolLM2: ChatML with a default system
 * message taken from its GGUF chat template). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "msa.h"
#include "test.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static msa_model *load(void) {
    struct stat st;
    if (stat(DEFAULT_MODEL, &st) != 0) return NULL;
    msa_model *m = NULL;
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = 1;
    return msa_model_load(DEFAULT_MODEL, &mp, &m) == MSA_OK ? m : NULL;
}

TEST(smollm2_template) {
    msa_model *m = load();
    SKIP_UNLESS_LOADED(m, DEFAULT_MODEL, "default model not installed (make model)");
    const char *roles[3] = {"user", "assistant", "user"};
    const char *contents[3] = {"Hi", "Hello!", "What is 2+2?"};
    char *t = NULL;
    CHECK_EQ_INT(msa_chat_render(m, roles, contents, 1, true, &t), MSA_OK);
    CHECK(t && !strcmp(t, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                          "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    free(t);
    CHECK_EQ_INT(msa_chat_render(m, roles, contents, 3, false, &t), MSA_OK);
    CHECK(t && strstr(t, "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"));
    free(t);
    /* an explicit system message replaces the default one */
    const char *r2[2] = {"system", "user"}, *c2[2] = {"Be brief.", "Hi"};
    CHECK_EQ_INT(msa_chat_render(m, r2, c2, 2, true, &t), MSA_OK);
    CHECK(t && !strcmp(t, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                          "<|im_start|>assistant\n"));
    free(t);
    const char *bad[1] = {"robot"};
    t = NULL;
    CHECK_EQ_INT(msa_chat_render(m, bad, c2, 1, true, &t), MSA_ERR_INVALID_ARG);
    CHECK(t == NULL);
    msa_model_free(m);
}

int main(void) {
    RUN(smollm2_template);
    return test_summary();
}
