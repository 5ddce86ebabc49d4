/* test_model_files.c — the file layer under every loader: src/util/mmap (whole-file mappings and small
 * reads with size limits and clear errors), and a Hugging Face directory in its real on-disk layout
 * (config.json, generation_config.json, sharded safetensors with an index) read through the io API. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "io/weights.h"
#include "model/hparams.h"
#include "test.h"
#include "util/error.h"
#include "util/mmap.h"

static char dir[64];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_file(const char *name, const void *data, size_t len) {
    char p[256];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

TEST(mmap_errors_and_limits) {
    msa_mapped_file m;
    char p[256];
    CHECK_EQ_INT(msa_map_file("/nonexistent/dir/file", 0, &m), MSA_ERR_NOT_FOUND);
    CHECK(m.data == NULL && strstr(msa_last_error(), "/nonexistent/dir/file: no such file"));
    CHECK_EQ_INT(msa_map_file(dir, 0, &m), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "is a directory") != NULL);
    write_file("empty", "", 0);
    path_of(p, sizeof p, "empty");
    CHECK_EQ_INT(msa_map_file(p, 0, &m), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "empty") != NULL);
    write_file("ten", "0123456789", 10);
    path_of(p, sizeof p, "ten");
    CHECK_EQ_INT(msa_map_file(p, 9, &m), MSA_ERR_LIMIT);
    CHECK(strstr(msa_last_error(), "too large") != NULL);
    CHECK_EQ_INT(msa_map_file(p, 10, &m), MSA_OK);
    CHECK(m.size == 10 && m.data && memcmp(m.data, "0123456789", 10) == 0);
    msa_unmap_file(&m);
    CHECK(m.data == NULL);
    msa_unmap_file(&m); /* twice is harmless */
    char *buf;
    size_t len;
    CHECK_EQ_INT(msa_read_file(p, 0, &buf, &len), MSA_OK);
    CHECK(len == 10 && buf && buf[10] == '\0' && strcmp(buf, "0123456789") == 0);
    free(buf);
    CHECK_EQ_INT(msa_read_file(p, 5, &buf, &len), MSA_ERR_LIMIT);
    CHECK(buf == NULL);
    path_of(p, sizeof p, "empty");
    CHECK_EQ_INT(msa_read_file(p, 0, &buf, &len), MSA_OK); /* small reads allow empty files */
    CHECK(len == 0 && buf && buf[0] == '\0');
    free(buf);
    path_of(p, sizeof p, "fifo");
    if (mkfifo(p, 0600) == 0) {
        CHECK_EQ_INT(msa_map_file(p, 0, &m), MSA_ERR_BAD_DATA);
        CHECK(strstr(msa_last_error(), "not a regular file") != NULL);
        unlink(p);
    }
    path_of(p, sizeof p, "ten");
    if (geteuid() != 0) {
        chmod(p, 0);
        CHECK_EQ_INT(msa_map_file(p, 0, &m), MSA_ERR_IO);
        CHECK(strstr(msa_last_error(), "permission denied") != NULL);
        CHECK_EQ_INT(msa_read_file(p, 0, &buf, &len), MSA_ERR_IO);
        chmod(p, 0600);
    }
    CHECK(msa_path_is_file(p) && !msa_path_is_dir(p) && msa_path_is_dir(dir) && !msa_path_is_file(dir));
    path_of(p, sizeof p, "ten/x"); /* a file used as a directory */
    CHECK_EQ_INT(msa_map_file(p, 0, &m), MSA_ERR_NOT_FOUND);
}

static void write_st(const char *name, const char *header, size_t data_len) {
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8, len = 8 + hl + pad + data_len;
    uint8_t *b = calloc(1, len);
    uint64_t h = hl + pad;
    memcpy(b, &h, 8);
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', pad);
    write_file(name, b, len);
    free(b);
}

static msa_status read_config(msa_hparams *hp) {
    char p[256], *buf;
    size_t len;
    path_of(p, sizeof p, "config.json");
    MSA_TRY(msa_read_file(p, 1 << 20, &buf, &len));
    msa_status st = msa_hfconfig_parse(buf, len, hp);
    free(buf);
    if (st) return st;
    path_of(p, sizeof p, "generation_config.json");
    MSA_TRY(msa_read_file(p, 1 << 20, &buf, &len));
    st = msa_genconfig_parse(buf, len, hp);
    free(buf);
    return st;
}

/* A 1-layer Qwen3 "checkpoint" split over two shards, the way save_pretrained lays it out. */
TEST(hf_directory_layout) {
    static const char config[] =
        "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\",\"hidden_size\":8,"
        "\"intermediate_size\":16,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
        "\"head_dim\":4,\"vocab_size\":10,\"tie_word_embeddings\":true,\"bos_token_id\":0,\"eos_token_id\":1,"
        "\"torch_dtype\":\"bfloat16\",\"rms_norm_eps\":1e-06,\"rope_theta\":1000000}";
    static const char gen[] = "{\"bos_token_id\":0,\"eos_token_id\":[1,2],\"temperature\":0.7}";
    write_file("config.json", config, sizeof config - 1);
    write_file("generation_config.json", gen, sizeof gen - 1);
    write_st("model-00001-of-00002.safetensors",
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[10,8],\"data_offsets\":[0,160]},"
             "\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[8,8],\"data_offsets\":[160,288]},"
             "\"model.layers.0.self_attn.q_norm.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[288,296]}}",
             296);
    write_st("model-00002-of-00002.safetensors",
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]}}",
             16);
    static const char index[] =
        "{\"metadata\":{\"total_size\":312},\"weight_map\":{"
        "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
        "\"model.layers.0.self_attn.q_norm.weight\":\"model-00001-of-00002.safetensors\","
        "\"model.layers.0.self_attn.q_proj.weight\":\"model-00001-of-00002.safetensors\","
        "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}";
    write_file("model.safetensors.index.json", index, sizeof index - 1);

    msa_hparams hp;
    msa_status st = read_config(&hp);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) fprintf(stderr, "  %s\n", msa_last_error());
    CHECK(hp.arch == MSA_ARCH_QWEN3 && hp.tie_embeddings && hp.n_eos == 2 && hp.eos_ids[1] == 2 && hp.head_dim == 4);
    msa_weights *w = NULL;
    st = msa_safetensors_open(dir, &w);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) fprintf(stderr, "  %s\n", msa_last_error());
    CHECK_EQ_INT(msa_weights_count(w), 4);
    const msa_tensor *t = msa_weights_find(w, "model.embed_tokens.weight");
    CHECK(t && t->shape[0] == hp.n_vocab && t->shape[1] == hp.n_embd && t->dtype == MSA_DTYPE_BF16);
    t = msa_weights_find(w, "model.layers.0.self_attn.q_norm.weight");
    CHECK(t && t->shape[0] == hp.head_dim);
    CHECK(msa_weights_find(w, "lm_head.weight") == NULL); /* tied */
    uint64_t hash = msa_weights_header_hash(w);
    msa_weights_free(w);
    /* the same set again hashes the same; a changed shape does not */
    CHECK_EQ_INT(msa_safetensors_open(dir, &w), MSA_OK);
    CHECK(w && msa_weights_header_hash(w) == hash);
    msa_weights_free(w);
    write_st("model-00002-of-00002.safetensors",
             "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
    CHECK_EQ_INT(msa_safetensors_open(dir, &w), MSA_OK);
    CHECK(w && msa_weights_header_hash(w) != hash);
    msa_weights_free(w);
    /* a shard deleted: not found, naming the shard */
    char p[256];
    path_of(p, sizeof p, "model-00002-of-00002.safetensors");
    unlink(p);
    CHECK_EQ_INT(msa_safetensors_open(dir, &w), MSA_ERR_NOT_FOUND);
    CHECK(strstr(msa_last_error(), "model-00002-of-00002.safetensors") != NULL);
    /* a truncated shard */
    write_st("model-00002-of-00002.safetensors",
             "{\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]}}", 10);
    CHECK_EQ_INT(msa_safetensors_open(dir, &w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "model-00002-of-00002.safetensors: tensor 'model.norm.weight'") != NULL);

    const char *names[] = {"config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < 5; i++) {
        path_of(p, sizeof p, names[i]);
        unlink(p);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/msa_test_files_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(mmap_errors_and_limits);
    RUN(hf_directory_layout);
    char p[256];
    const char *left[] = {"empty", "ten"};
    for (size_t i = 0; i < 2; i++) {
        path_of(p, sizeof p, left[i]);
        unlink(p);
    }
    rmdir(dir);
    return test_summary();
}
