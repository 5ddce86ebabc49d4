/* chat.c — msa_chat_render: a conversation rendered with the model's chat template. Two families are
 * recognised: ChatML (Qwen3/MSA, and GGUF templates using <|im_start|>, such as SmolLM2's, including its
 * default system message when the conversation does not start with one) and Llama-3 headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n + 1);
    b->len += n;
}

msa_status msa_chat_render(const msa_model *model, const char *const *roles, const char *const *contents,
                           size_t n_messages, bool add_assistant_prefix, char **text) {
    *text = NULL;
    if (!model || (n_messages && (!roles || !contents)))
        return msa_fail(MSA_ERR_INVALID_ARG, "msa_chat_render: NULL argument");
    for (size_t i = 0; i < n_messages; i++) {
        if (!roles[i] || !contents[i]) return msa_fail(MSA_ERR_INVALID_ARG, "msa_chat_render: message %zu is NULL", i);
        if (strcmp(roles[i], "system") && strcmp(roles[i], "user") && strcmp(roles[i], "assistant"))
            return msa_fail(MSA_ERR_INVALID_ARG, "msa_chat_render: unknown role '%.32s'", roles[i]);
    }
    sbuf b = {0};
    put(&b, "");
    if (model->chat_kind == MSA_CHAT_LLAMA3) {
        /* BOS is not text here: callers prepend the id when msa_model_add_bos() says so */
        for (size_t i = 0; i < n_messages; i++) {
            put(&b, "<|start_header_id|>");
            put(&b, roles[i]);
            put(&b, "<|end_header_id|>\n\n");
            put(&b, contents[i]);
            put(&b, "<|eot_id|>");
        }
        if (add_assistant_prefix) put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    } else {
        if (model->chat_default_system && (n_messages == 0 || strcmp(roles[0], "system"))) {
            put(&b, "<|im_start|>system\n");
            put(&b, model->chat_default_system);
            put(&b, "<|im_end|>\n");
        }
        for (size_t i = 0; i < n_messages; i++) {
            put(&b, "<|im_start|>");
            put(&b, roles[i]);
            put(&b, "\n");
            put(&b, contents[i]);
            put(&b, "<|im_end|>\n");
        }
        if (add_assistant_prefix) put(&b, "<|im_start|>assistant\n");
    }
    if (b.oom) {
        free(b.buf);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    *text = b.buf;
    return MSA_OK;
}

bool msa_model_add_bos(const msa_model *model) { return model->add_bos; }
