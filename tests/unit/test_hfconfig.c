/* test_hfconfig.c — config.json (Qwen3, MSA with msa_config, Llama) and generation_config.json into
 * msa_hparams: real-shaped configs give the right values; broken ones (truncated, wrong types, missing keys,
 * nonsense values, unsupported features) give the right status and a one-line message naming the key. */
#include "model/hparams.h"
#include "test.h"

/* The released MSA-4B config.json (msa-reference.md §0), abridged to the keys that matter. */
static const char *msa4b =
    "{\"architectures\":[\"MSAForCausalLM\"],\"model_type\":\"msa\",\"torch_dtype\":\"bfloat16\","
    "\"hidden_size\":2560,\"intermediate_size\":9728,\"num_hidden_layers\":36,\"num_attention_heads\":32,"
    "\"num_key_value_heads\":8,\"head_dim\":128,\"rms_norm_eps\":1e-06,\"rope_theta\":5000000,"
    "\"rope_scaling\":null,\"max_position_embeddings\":262144,\"tie_word_embeddings\":true,"
    "\"attention_bias\":false,\"hidden_act\":\"silu\",\"vocab_size\":151936,\"bos_token_id\":151643,"
    "\"eos_token_id\":151645,\"sliding_window\":false,\"use_sliding_window\":false,"
    "\"msa_config\":{\"router_layer_idx\":\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\","
    "\"pooling_kernel_size\":64,\"top_k_docs\":16,\"decouple_router\":true,"
    "\"aux_loss_method\":\"INFONCE_DECOUPLE\",\"head_reduce_method\":\"mean\",\"query_reduce_method\":\"max\","
    "\"chunk_reduce_method\":\"max\",\"decouple_pooling_mode\":\"mean\",\"rewrite_position\":true,"
    "\"infonce_loss_temp\":0.1,\"aux_loss\":false}}";

static const char *qwen3 =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"max_position_embeddings\":4096,"
    "\"tie_word_embeddings\":false,\"vocab_size\":151936,\"bos_token_id\":null,\"eos_token_id\":[151645,151643]}";

static const char *llama =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":576,\"intermediate_size\":1536,"
    "\"num_hidden_layers\":30,\"num_attention_heads\":9,\"num_key_value_heads\":3,\"rms_norm_eps\":1e-05,"
    "\"rope_theta\":100000,\"rope_scaling\":null,\"max_position_embeddings\":8192,\"tie_word_embeddings\":true,"
    "\"vocab_size\":49152,\"bos_token_id\":1,\"eos_token_id\":2,\"mlp_bias\":false}";

static msa_status parse(const char *s, msa_hparams *hp) { return msa_hfconfig_parse(s, strlen(s), hp); }

/* A copy of base with `from` replaced by `to` (first occurrence), parsed; expects want and needle. */
static int edit_fails(const char *base, const char *from, const char *to, msa_status want, const char *needle) {
    const char *at = strstr(base, from);
    if (!at) {
        fprintf(stderr, "  test bug: '%s' not in config\n", from);
        return 0;
    }
    size_t n = strlen(base) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    size_t pre = (size_t)(at - base);
    memcpy(s, base, pre);
    strcpy(s + pre, to);
    strcat(s, at + strlen(from));
    msa_hparams hp;
    msa_status st = msa_hfconfig_parse(s, n, &hp);
    const char *m = msa_last_error();
    int ok = st == want && m[0] && !strchr(m, '\n') && (!needle || strstr(m, needle));
    if (!ok) fprintf(stderr, "  '%s' -> '%s': status %d (%s) '%s'\n", from, to, st, msa_strerror(st), m);
    free(s);
    return ok;
}

TEST(hfconfig_msa4b) {
    msa_hparams hp;
    msa_status st = parse(msa4b, &hp);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); return; }
    CHECK(hp.arch == MSA_ARCH_MSA && hp.qk_norm && hp.rope_style == MSA_ROPE_NEOX);
    CHECK(hp.n_embd == 2560 && hp.n_ff == 9728 && hp.n_layer == 36 && hp.n_head == 32 && hp.n_head_kv == 8);
    CHECK(hp.head_dim == 128 && hp.n_vocab == 151936 && hp.n_ctx_train == 262144 && hp.tie_embeddings);
    CHECK_NEAR(hp.rope_theta, 5e6, 1);
    CHECK_NEAR(hp.rms_eps, 1e-6, 1e-12);
    CHECK(hp.bos_id == 151643 && hp.n_eos == 1 && hp.eos_ids[0] == 151645);
    const msa_msa_config *m = &hp.msa;
    CHECK(m->present && m->n_router_layers == 18 && !m->router_layer[17] && m->router_layer[18] && m->router_layer[35]);
    CHECK(m->pooling_kernel_size == 64 && m->top_k_docs == 16 && m->decouple_router && m->rewrite_position);
    CHECK(strcmp(m->aux_loss_method, "INFONCE_DECOUPLE") == 0);
    CHECK(m->head_reduce == MSA_REDUCE_MEAN && m->query_reduce == MSA_REDUCE_MAX && m->chunk_reduce == MSA_REDUCE_MAX);
}

TEST(hfconfig_msa_config_variants) {
    msa_hparams hp;
    /* "all", a list, doc_top_k over top_k_docs, defaults */
    const char *variants[][2] = {
        {"\"router_layer_idx\":\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\"", "\"router_layer_idx\":\"all\""},
        {"\"router_layer_idx\":\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\"", "\"router_layer_idx\":[0, 35]"},
        {"\"top_k_docs\":16", "\"top_k_docs\":2,\"doc_top_k\":7"},
        {"\"query_reduce_method\":\"max\"", "\"query_reduce_method\":\"last\""},
    };
    for (int i = 0; i < 4; i++) {
        char buf[4096];
        const char *at = strstr(msa4b, variants[i][0]);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - msa4b), msa4b, variants[i][1], at + strlen(variants[i][0]));
        msa_status st = parse(buf, &hp);
        CHECK_EQ_INT(st, MSA_OK);
        if (st) { fprintf(stderr, "  %s\n", msa_last_error()); continue; }
        if (i == 0) CHECK(hp.msa.n_router_layers == 36 && hp.msa.router_layer[0]);
        if (i == 1) CHECK(hp.msa.n_router_layers == 2 && hp.msa.router_layer[0] && hp.msa.router_layer[35]);
        if (i == 2) CHECK_EQ_INT(hp.msa.top_k_docs, 7);
        if (i == 3) CHECK(hp.msa.query_reduce == MSA_REDUCE_LAST);
    }
    const char *minimal =
        "{\"architectures\":[\"MSAForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
        "\"vocab_size\":1000,\"msa_config\":{}}";
    CHECK_EQ_INT(parse(minimal, &hp), MSA_OK);
    CHECK(hp.msa.present && hp.msa.n_router_layers == 4 && hp.msa.pooling_kernel_size == 64 && hp.msa.top_k_docs == 16);
    CHECK(!hp.msa.decouple_router && strcmp(hp.msa.aux_loss_method, "INFONCE") == 0);
    CHECK(hp.msa.head_reduce == MSA_REDUCE_MAX && hp.msa.query_reduce == MSA_REDUCE_MAX);
    CHECK(!hp.tie_embeddings && hp.bos_id == -1 && hp.n_eos == 0 && hp.n_ctx_train == 32768);
    CHECK_NEAR(hp.rope_theta, 10000, 1e-3);
}

TEST(hfconfig_qwen3_and_llama) {
    msa_hparams hp;
    CHECK_EQ_INT(parse(qwen3, &hp), MSA_OK);
    CHECK(hp.arch == MSA_ARCH_QWEN3 && hp.qk_norm && !hp.msa.present && hp.head_dim == 64 && !hp.tie_embeddings);
    CHECK(hp.bos_id == -1 && hp.n_eos == 2 && hp.eos_ids[0] == 151645 && hp.eos_ids[1] == 151643);
    CHECK_EQ_INT(parse(llama, &hp), MSA_OK);
    CHECK(hp.arch == MSA_ARCH_LLAMA && !hp.qk_norm && hp.rope_style == MSA_ROPE_NEOX);
    CHECK(hp.head_dim == 64 && hp.n_head_kv == 3 && hp.n_layer == 30 && hp.tie_embeddings && hp.bos_id == 1);
    /* generation_config.json adds end ids */
    const char *gen = "{\"bos_token_id\":1,\"eos_token_id\":[2,7],\"do_sample\":false}";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_OK);
    CHECK(hp.n_eos == 2 && hp.eos_ids[0] == 2 && hp.eos_ids[1] == 7);
    gen = "{\"eos_token_id\":3}";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_OK);
    CHECK(hp.n_eos == 3 && hp.eos_ids[2] == 3);
    gen = "{\"eos_token_id\":\"x\"}";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "generation_config.json") != NULL);
    gen = "{\"eos_token_id\":99999999}";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_ERR_BAD_DATA);
    gen = "{\"eos_token_id\":";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_ERR_BAD_DATA);
    gen = "[]";
    CHECK_EQ_INT(msa_genconfig_parse(gen, strlen(gen), &hp), MSA_ERR_BAD_DATA);
}

TEST(hfconfig_missing_and_wrong_types) {
    CHECK(edit_fails(qwen3, "\"hidden_size\":256,", "", MSA_ERR_BAD_DATA, "config.json: missing 'hidden_size'"));
    CHECK(edit_fails(qwen3, "\"vocab_size\":151936,", "", MSA_ERR_BAD_DATA, "missing 'vocab_size'"));
    CHECK(edit_fails(qwen3, "\"num_hidden_layers\":2,", "", MSA_ERR_BAD_DATA, "missing 'num_hidden_layers'"));
    CHECK(edit_fails(qwen3, "\"intermediate_size\":512,", "", MSA_ERR_BAD_DATA, "missing 'intermediate_size'"));
    CHECK(edit_fails(qwen3, "\"num_attention_heads\":4,", "", MSA_ERR_BAD_DATA, "missing 'num_attention_heads'"));
    CHECK(edit_fails(qwen3, "\"architectures\":[\"Qwen3ForCausalLM\"],", "", MSA_ERR_BAD_DATA, "missing 'architectures'"));
    CHECK(edit_fails(qwen3, "256", "\"256\"", MSA_ERR_BAD_DATA, "'hidden_size' must be an integer"));
    CHECK(edit_fails(qwen3, "256", "256.0", MSA_ERR_BAD_DATA, "'hidden_size' must be an integer"));
    CHECK(edit_fails(qwen3, "1000000.0", "\"big\"", MSA_ERR_BAD_DATA, "'rope_theta' must be a number"));
    CHECK(edit_fails(qwen3, "[\"Qwen3ForCausalLM\"]", "\"Qwen3ForCausalLM\"", MSA_ERR_BAD_DATA, "'architectures'"));
    CHECK(edit_fails(qwen3, "\"tie_word_embeddings\":false", "\"tie_word_embeddings\":\"no\"", MSA_ERR_BAD_DATA,
                     "'tie_word_embeddings'"));
    CHECK(edit_fails(qwen3, "[151645,151643]", "[151645,\"x\"]", MSA_ERR_BAD_DATA, "eos_token_id"));
    CHECK(edit_fails(qwen3, "\"bos_token_id\":null", "\"bos_token_id\":-3", MSA_ERR_BAD_DATA, "bos_token_id"));
    CHECK(edit_fails(msa4b, "\"msa_config\":{", "\"other\":{", MSA_ERR_BAD_DATA, "missing 'msa_config'"));
    CHECK(edit_fails(msa4b, "\"pooling_kernel_size\":64", "\"pooling_kernel_size\":\"64\"", MSA_ERR_BAD_DATA,
                     "'pooling_kernel_size'"));
    CHECK(edit_fails(msa4b, "\"decouple_router\":true", "\"decouple_router\":\"yes\"", MSA_ERR_BAD_DATA,
                     "'decouple_router'"));
    CHECK(edit_fails(msa4b, "\"INFONCE_DECOUPLE\"", "7", MSA_ERR_BAD_DATA, "'aux_loss_method'"));
}

TEST(hfconfig_nonsense_values) {
    CHECK(edit_fails(qwen3, "\"hidden_size\":256", "\"hidden_size\":0", MSA_ERR_BAD_DATA, "'hidden_size'"));
    CHECK(edit_fails(qwen3, "\"hidden_size\":256", "\"hidden_size\":-256", MSA_ERR_BAD_DATA, "'hidden_size'"));
    CHECK(edit_fails(qwen3, "\"hidden_size\":256", "\"hidden_size\":10000000000", MSA_ERR_BAD_DATA, "'hidden_size'"));
    CHECK(edit_fails(qwen3, "\"num_hidden_layers\":2", "\"num_hidden_layers\":257", MSA_ERR_BAD_DATA,
                     "'num_hidden_layers'"));
    CHECK(edit_fails(qwen3, "\"num_key_value_heads\":2", "\"num_key_value_heads\":3", MSA_ERR_BAD_DATA,
                     "'num_key_value_heads' must divide"));
    CHECK(edit_fails(qwen3, "\"num_key_value_heads\":2", "\"num_key_value_heads\":8", MSA_ERR_BAD_DATA,
                     "'num_key_value_heads'"));
    CHECK(edit_fails(qwen3, "\"head_dim\":64", "\"head_dim\":63", MSA_ERR_BAD_DATA, "'head_dim'"));
    CHECK(edit_fails(qwen3, "\"rms_norm_eps\":1e-06", "\"rms_norm_eps\":0", MSA_ERR_BAD_DATA, "'rms_norm_eps'"));
    CHECK(edit_fails(qwen3, "\"rms_norm_eps\":1e-06", "\"rms_norm_eps\":5", MSA_ERR_BAD_DATA, "'rms_norm_eps'"));
    CHECK(edit_fails(qwen3, "\"rope_theta\":1000000.0", "\"rope_theta\":-1", MSA_ERR_BAD_DATA, "'rope_theta'"));
    CHECK(edit_fails(qwen3, "\"vocab_size\":151936", "\"vocab_size\":100", MSA_ERR_BAD_DATA, "eos_token_id"));
    CHECK(edit_fails(qwen3, "\"max_position_embeddings\":4096", "\"max_position_embeddings\":0", MSA_ERR_BAD_DATA,
                     "'max_position_embeddings'"));
    CHECK(edit_fails(msa4b, "\"18,19,", "\"18,36,", MSA_ERR_BAD_DATA, "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"18,19,", "\"18,x,", MSA_ERR_BAD_DATA, "router_layer_idx"));
    CHECK(edit_fails(msa4b, "34,35\"", "34,35,\"", MSA_ERR_BAD_DATA, "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"18,19,", "\"99999999999999999999,", MSA_ERR_BAD_DATA, "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\"", "[]", MSA_ERR_BAD_DATA,
                     "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\"", "[-1]", MSA_ERR_BAD_DATA,
                     "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35\"", "\"\"", MSA_ERR_BAD_DATA,
                     "router_layer_idx"));
    CHECK(edit_fails(msa4b, "\"head_reduce_method\":\"mean\"", "\"head_reduce_method\":\"last\"", MSA_ERR_BAD_DATA,
                     "'head_reduce_method'"));
    CHECK(edit_fails(msa4b, "\"chunk_reduce_method\":\"max\"", "\"chunk_reduce_method\":\"sum\"", MSA_ERR_BAD_DATA,
                     "'chunk_reduce_method'"));
    CHECK(edit_fails(msa4b, "\"query_reduce_method\":\"max\"", "\"query_reduce_method\":\"MAX\"", MSA_ERR_BAD_DATA,
                     "'query_reduce_method'"));
    CHECK(edit_fails(msa4b, "\"pooling_kernel_size\":64", "\"pooling_kernel_size\":0", MSA_ERR_BAD_DATA,
                     "'pooling_kernel_size'"));
    CHECK(edit_fails(msa4b, "\"top_k_docs\":16", "\"top_k_docs\":-1", MSA_ERR_BAD_DATA, "'top_k_docs'"));
}

TEST(hfconfig_unsupported) {
    CHECK(edit_fails(qwen3, "Qwen3ForCausalLM", "MistralForCausalLM", MSA_ERR_UNSUPPORTED, "MistralForCausalLM"));
    CHECK(edit_fails(llama, "\"rope_scaling\":null",
                     "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}", MSA_ERR_UNSUPPORTED, "llama3"));
    CHECK(edit_fails(llama, "\"rope_scaling\":null", "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}",
                     MSA_ERR_UNSUPPORTED, "linear"));
    CHECK(edit_fails(llama, "\"rope_scaling\":null", "\"rope_scaling\":7", MSA_ERR_BAD_DATA, "rope_scaling"));
    CHECK(edit_fails(llama, "\"mlp_bias\":false", "\"mlp_bias\":true", MSA_ERR_UNSUPPORTED, "mlp_bias"));
    CHECK(edit_fails(msa4b, "\"attention_bias\":false", "\"attention_bias\":true", MSA_ERR_UNSUPPORTED,
                     "attention_bias"));
    CHECK(edit_fails(msa4b, "\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", MSA_ERR_UNSUPPORTED, "hidden_act"));
    msa_hparams hp;
    const char *ok = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                     "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                     "\"rope_scaling\":{\"rope_type\":\"default\"}}";
    CHECK_EQ_INT(parse(ok, &hp), MSA_OK);
    CHECK(hp.head_dim == 16 && hp.n_head_kv == 4 && hp.n_ctx_train == 2048);
}

TEST(hfconfig_transformers5_rope_parameters) {
    /* transformers 5 re-saves rope_theta inside rope_parameters */
    msa_hparams hp;
    char buf[2048];
    const char *at = strstr(qwen3, "\"rope_theta\":1000000.0,");
    snprintf(buf, sizeof buf, "%.*s\"rope_parameters\":{\"rope_theta\":5000000,\"rope_type\":\"default\"},%s",
             (int)(at - qwen3), qwen3, at + strlen("\"rope_theta\":1000000.0,"));
    CHECK_EQ_INT(parse(buf, &hp), MSA_OK);
    CHECK_NEAR(hp.rope_theta, 5e6, 1);
    CHECK(edit_fails(qwen3, "\"rope_theta\":1000000.0", "\"rope_parameters\":{\"rope_theta\":1e6,\"rope_type\":\"yarn\"}",
                     MSA_ERR_UNSUPPORTED, "yarn"));
    CHECK(edit_fails(qwen3, "\"rope_theta\":1000000.0", "\"rope_parameters\":{\"rope_theta\":\"x\"}", MSA_ERR_BAD_DATA,
                     "rope_parameters"));
    CHECK(edit_fails(qwen3, "\"rope_theta\":1000000.0", "\"rope_theta\":1000000.0,\"rope_parameters\":{\"rope_theta\":10000}",
                     MSA_ERR_BAD_DATA, "differ"));
    CHECK(edit_fails(qwen3, "\"rope_theta\":1000000.0", "\"rope_parameters\":[]", MSA_ERR_BAD_DATA, "rope_parameters"));
}

TEST(hfconfig_truncated_and_garbage) {
    size_t n = strlen(msa4b);
    msa_hparams hp;
    for (size_t cut = 0; cut < n; cut++) {
        char *s = malloc(cut ? cut : 1);
        memcpy(s, msa4b, cut);
        msa_status st = msa_hfconfig_parse(s, cut, &hp);
        if (st != MSA_ERR_BAD_DATA || strchr(msa_last_error(), '\n')) {
            fprintf(stderr, "  cut at %zu: %d '%s'\n", cut, st, msa_last_error());
            CHECK(0);
            free(s);
            break;
        }
        free(s);
    }
    const char *garbage[] = {"", "null", "[]", "42", "\"x\"", "{", "{}", "{\"architectures\":[]}",
                             "{\"architectures\":[7]}", "\xff\xfe{}", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        msa_status st = msa_hfconfig_parse(garbage[i], strlen(garbage[i]), &hp);
        if (st != MSA_ERR_BAD_DATA) fprintf(stderr, "  '%s': %d\n", garbage[i], st);
        CHECK_EQ_INT(st, MSA_ERR_BAD_DATA);
        CHECK(msa_last_error()[0] && strstr(msa_last_error(), "config.json"));
    }
}

int main(void) {
    RUN(hfconfig_msa4b);
    RUN(hfconfig_msa_config_variants);
    RUN(hfconfig_qwen3_and_llama);
    RUN(hfconfig_missing_and_wrong_types);
    RUN(hfconfig_nonsense_values);
    RUN(hfconfig_unsupported);
    RUN(hfconfig_transformers5_rope_parameters);
    RUN(hfconfig_truncated_and_garbage);
    return test_summary();
}
