/* test_gguf.c — the GGUF loader on files written here (every value type, every supported tensor type) and
 * on the default model; and hostile input: truncation at every offset, bit flips, huge counts, bad
 * alignment, unsupported types, out-of-file offsets. Every failure must be a status with one line. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/gguf.h"
#include "test.h"

/* ------------------------------------------------------------------------------------ a GGUF writer */

typedef struct { uint8_t *p; size_t n, cap; } gbuf;

static void put(gbuf *b, const void *x, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_u32(gbuf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, 4); put_u32(b, v); }
static void kv_f32(gbuf *b, const char *k, float v) { put_str(b, k); put_u32(b, 6); put(b, &v, 4); }
static void kv_str(gbuf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, 8); put_str(b, v); }

/* Offsets of fields the bad-input cases patch. */
typedef struct {
    size_t version, n_tensors, n_kv, name_len, align_val, t0_ndims, t0_ne0, t0_type, t0_offset, last_offset;
    size_t data_start;
} layout;

typedef struct { const char *name; uint32_t type; int n_dims; uint64_t ne[4]; size_t nbytes; } tspec;

#define N_VOCAB 8
#define N_EMBD 64
/* ggml types: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16 */
static const tspec tensors[] = {
    {"token_embd.weight", 8, 2, {N_EMBD, N_VOCAB}, N_VOCAB * 2 * 34},
    {"output_norm.weight", 0, 1, {N_EMBD}, N_EMBD * 4},
    {"blk.0.attn_q.weight", 2, 2, {N_EMBD, N_EMBD}, N_EMBD * 2 * 18},
    {"blk.0.attn_k.weight", 3, 2, {N_EMBD, 32}, 32 * 2 * 20},
    {"blk.0.ffn_up.weight", 1, 2, {N_EMBD, 3}, 3 * N_EMBD * 2},
    {"blk.0.ffn_down.weight", 30, 3, {2, 3, 4}, 24 * 2},
};
#define N_TENSORS (sizeof tensors / sizeof tensors[0])

/* A small qwen3-shaped file with every metadata value type; alignment 0 = no general.alignment key. */
static uint8_t *make_gguf(uint32_t alignment, const char *arch, size_t *len, layout *L) {
    gbuf b = {0};
    layout l = {0};
    put_u32(&b, 0x46554747u);
    l.version = b.n;
    put_u32(&b, 3);
    l.n_tensors = b.n;
    put_u64(&b, N_TENSORS);
    l.n_kv = b.n;
    put_u64(&b, 0); /* patched below */
    uint64_t n_kv = 0;
    l.name_len = b.n;
    kv_str(&b, "general.name", "tiny"), n_kv++;
    kv_str(&b, "general.architecture", arch), n_kv++;
    if (alignment) {
        put_str(&b, "general.alignment");
        put_u32(&b, 4);
        l.align_val = b.n;
        put_u32(&b, alignment);
        n_kv++;
    }
    char key[96];
#define AK(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    kv_u32(&b, AK("context_length"), 128), n_kv++;
    kv_u32(&b, AK("embedding_length"), N_EMBD), n_kv++;
    kv_u32(&b, AK("block_count"), 1), n_kv++;
    kv_u32(&b, AK("feed_forward_length"), 3), n_kv++;
    kv_u32(&b, AK("attention.head_count"), 4), n_kv++;
    kv_u32(&b, AK("attention.head_count_kv"), 2), n_kv++;
    kv_f32(&b, AK("attention.layer_norm_rms_epsilon"), 1e-6f), n_kv++;
    kv_f32(&b, AK("rope.freq_base"), 1e6f), n_kv++;
    /* every scalar type once */
    uint8_t u8 = 200; int8_t i8 = -5; uint16_t u16 = 60000; int16_t i16 = -300; int32_t i32 = -70000;
    uint64_t u64 = 1ull << 40; int64_t i64 = -(1ll << 40); double f64 = 2.5; uint8_t bl = 1;
    put_str(&b, "t.u8"), put_u32(&b, 0), put(&b, &u8, 1), n_kv++;
    put_str(&b, "t.i8"), put_u32(&b, 1), put(&b, &i8, 1), n_kv++;
    put_str(&b, "t.u16"), put_u32(&b, 2), put(&b, &u16, 2), n_kv++;
    put_str(&b, "t.i16"), put_u32(&b, 3), put(&b, &i16, 2), n_kv++;
    put_str(&b, "t.i32"), put_u32(&b, 5), put(&b, &i32, 4), n_kv++;
    put_str(&b, "t.bool"), put_u32(&b, 7), put(&b, &bl, 1), n_kv++;
    put_str(&b, "t.u64"), put_u32(&b, 10), put(&b, &u64, 8), n_kv++;
    put_str(&b, "t.i64"), put_u32(&b, 11), put(&b, &i64, 8), n_kv++;
    put_str(&b, "t.f64"), put_u32(&b, 12), put(&b, &f64, 8), n_kv++;
    /* tokenizer arrays: strings, i32, f32; and an array of arrays */
    put_str(&b, "tokenizer.ggml.tokens"), put_u32(&b, 9), put_u32(&b, 8), put_u64(&b, N_VOCAB), n_kv++;
    for (int i = 0; i < N_VOCAB; i++) {
        char t[8];
        snprintf(t, sizeof t, "t%d", i * 11);
        put_str(&b, t);
    }
    put_str(&b, "tokenizer.ggml.token_type"), put_u32(&b, 9), put_u32(&b, 5), put_u64(&b, N_VOCAB), n_kv++;
    for (int32_t i = 0; i < N_VOCAB; i++) put(&b, &i, 4);
    put_str(&b, "tokenizer.ggml.scores"), put_u32(&b, 9), put_u32(&b, 6), put_u64(&b, N_VOCAB), n_kv++;
    for (int i = 0; i < N_VOCAB; i++) { float f = -(float)i; put(&b, &f, 4); }
    put_str(&b, "t.nested"), put_u32(&b, 9), put_u32(&b, 9), put_u64(&b, 2), n_kv++;
    put_u32(&b, 4), put_u64(&b, 1), put_u32(&b, 7);
    put_u32(&b, 8), put_u64(&b, 2), put_str(&b, "a"), put_str(&b, "bc");
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 1), n_kv++;
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 2), n_kv++;
    kv_u32(&b, "tokenizer.ggml.eot_token_id", 3), n_kv++;
    memcpy(b.p + l.n_kv, &n_kv, 8);

    uint32_t align = alignment ? alignment : 32;
    uint64_t off = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tspec *t = &tensors[i];
        put_str(&b, t->name);
        if (i == 0) l.t0_ndims = b.n;
        put_u32(&b, (uint32_t)t->n_dims);
        if (i == 0) l.t0_ne0 = b.n;
        for (int d = 0; d < t->n_dims; d++) put_u64(&b, t->ne[d]);
        if (i == 0) l.t0_type = b.n;
        put_u32(&b, t->type);
        if (i == 0) l.t0_offset = b.n;
        l.last_offset = b.n;
        put_u64(&b, off);
        off += t->nbytes;
        if (i + 1 < N_TENSORS) off = (off + align - 1) / align * align;
    }
    while (b.n % align) put(&b, "", 1);
    l.data_start = b.n;
    size_t data_len = (size_t)off;
    for (size_t i = 0; i < data_len; i++) {
        uint8_t x = (uint8_t)(i * 7 + 1);
        put(&b, &x, 1);
    }
    *len = b.n;
    if (L) *L = l;
    return b.p;
}

static uint8_t *good(size_t *len, layout *l) { return make_gguf(64, "qwen3", len, l); }

/* Parse expecting failure with status want; the message must be one non-empty line. */
static int fails_with(const uint8_t *buf, size_t len, msa_status want, const char *needle) {
    msa_gguf *g = (msa_gguf *)1;
    msa_status st = msa_gguf_parse(buf, len, &g);
    const char *msg = msa_last_error();
    int ok = st == want && g == NULL && msg[0] && !strchr(msg, '\n') && (!needle || strstr(msg, needle));
    if (!ok) fprintf(stderr, "  got status %d (%s), want %d, message '%s'\n", st, msa_strerror(st), want, msg);
    if (st == MSA_OK) msa_gguf_free(g);
    return ok;
}

TEST(gguf_parses_every_type) {
    size_t len;
    layout l;
    uint8_t *buf = good(&len, &l);
    msa_gguf *g = NULL;
    msa_status st = msa_gguf_parse(buf, len, &g);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); free(buf); return; }
    const msa_weights *w = msa_gguf_weights(g);
    CHECK_EQ_INT(msa_weights_count(w), N_TENSORS);
    const msa_tensor *t = msa_weights_find(w, "token_embd.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q8_0 && t->n_dims == 2 && t->shape[0] == N_VOCAB && t->shape[1] == N_EMBD);
    CHECK(t && t->nbytes == N_VOCAB * 2 * 34 && (const uint8_t *)t->data == buf + l.data_start);
    t = msa_weights_find(w, "blk.0.ffn_down.weight");
    CHECK(t && t->dtype == MSA_DTYPE_BF16 && t->n_dims == 3 && t->shape[0] == 4 && t->shape[1] == 3 && t->shape[2] == 2);
    CHECK(t && (const uint8_t *)t->data + t->nbytes == buf + len);
    CHECK(t && ((const uint8_t *)t->data - (buf + l.data_start)) % 64 == 0);
    t = msa_weights_find(w, "blk.0.attn_q.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q4_0);
    t = msa_weights_find(w, "blk.0.attn_k.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q4_1 && t->shape[0] == 32);
    t = msa_weights_find(w, "blk.0.ffn_up.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F16 && t->shape[0] == 3 && t->shape[1] == N_EMBD);
    CHECK(msa_weights_find(w, "output.weight") == NULL);

    int64_t v;
    CHECK(msa_gguf_get_int(g, "t.u8", &v) && v == 200);
    CHECK(msa_gguf_get_int(g, "t.i8", &v) && v == -5);
    CHECK(msa_gguf_get_int(g, "t.u16", &v) && v == 60000);
    CHECK(msa_gguf_get_int(g, "t.i16", &v) && v == -300);
    CHECK(msa_gguf_get_int(g, "t.i32", &v) && v == -70000);
    CHECK(msa_gguf_get_int(g, "t.u64", &v) && v == (1ll << 40));
    CHECK(msa_gguf_get_int(g, "t.i64", &v) && v == -(1ll << 40));
    CHECK(!msa_gguf_get_int(g, "t.f64", &v));
    CHECK(!msa_gguf_get_int(g, "t.missing", &v));
    float f;
    CHECK(msa_gguf_get_f32(g, "t.f64", &f) && f == 2.5f);
    CHECK(!msa_gguf_get_f32(g, "t.u8", &f));
    bool bl;
    CHECK(msa_gguf_get_bool(g, "t.bool", &bl) && bl);
    const char *s;
    size_t n;
    CHECK(msa_gguf_get_str(g, "general.name", &s, &n) && n == 4 && memcmp(s, "tiny", 4) == 0);
    CHECK(!msa_gguf_get_str(g, "t.u8", &s, &n));
    CHECK(msa_gguf_get_str_array(g, "tokenizer.ggml.tokens", &n) && n == N_VOCAB);
    CHECK(msa_gguf_str_array_at(g, "tokenizer.ggml.tokens", 7, &s, &n) && n == 3 && memcmp(s, "t77", 3) == 0);
    CHECK(!msa_gguf_str_array_at(g, "tokenizer.ggml.tokens", N_VOCAB, &s, &n));
    const int32_t *iv;
    CHECK(msa_gguf_get_i32_array(g, "tokenizer.ggml.token_type", &iv, &n) && n == N_VOCAB && iv[5] == 5);
    const float *fv;
    CHECK(msa_gguf_get_f32_array(g, "tokenizer.ggml.scores", &fv, &n) && n == N_VOCAB && fv[3] == -3.0f);
    CHECK(!msa_gguf_get_str_array(g, "t.nested", &n));
    int type, et;
    size_t nkv = msa_gguf_kv_count(g), found = 0;
    for (size_t i = 0; i < nkv; i++) {
        CHECK(msa_gguf_kv_at(g, i, &s, &n, &type, &et));
        if (n == 8 && memcmp(s, "t.nested", 8) == 0) found = (type == 9 && et == 9);
    }
    CHECK(found);

    msa_hparams hp;
    st = msa_gguf_hparams(g, &hp);
    CHECK_EQ_INT(st, MSA_OK);
    CHECK(hp.arch == MSA_ARCH_QWEN3 && hp.rope_style == MSA_ROPE_NEOX && hp.qk_norm);
    CHECK(hp.n_embd == N_EMBD && hp.n_layer == 1 && hp.n_head == 4 && hp.n_head_kv == 2 && hp.head_dim == 16);
    CHECK(hp.n_ff == 3 && hp.n_ctx_train == 128 && hp.n_vocab == N_VOCAB);
    CHECK_NEAR(hp.rope_theta, 1e6, 1);
    CHECK_NEAR(hp.rms_eps, 1e-6, 1e-12);
    CHECK(hp.tie_embeddings);
    CHECK(hp.bos_id == 1 && hp.n_eos == 2 && hp.eos_ids[0] == 2 && hp.eos_ids[1] == 3);
    msa_gguf_free(g);
    free(buf);
}

TEST(gguf_default_alignment_and_llama) {
    size_t len;
    uint8_t *buf = make_gguf(0, "llama", &len, NULL);
    msa_gguf *g = NULL;
    CHECK_EQ_INT(msa_gguf_parse(buf, len, &g), MSA_OK);
    msa_hparams hp;
    if (g) {
        CHECK_EQ_INT(msa_gguf_hparams(g, &hp), MSA_OK);
        CHECK(hp.arch == MSA_ARCH_LLAMA && hp.rope_style == MSA_ROPE_NORM && !hp.qk_norm);
        msa_gguf_free(g);
    }
    free(buf);
    buf = make_gguf(32, "gpt2", &len, NULL);
    CHECK_EQ_INT(msa_gguf_parse(buf, len, &g), MSA_OK);
    if (g) {
        CHECK_EQ_INT(msa_gguf_hparams(g, &hp), MSA_ERR_UNSUPPORTED);
        CHECK(strstr(msa_last_error(), "gpt2") != NULL);
        msa_gguf_free(g);
    }
    free(buf);
}

TEST(gguf_truncated_everywhere) {
    size_t len;
    uint8_t *buf = good(&len, NULL);
    size_t rejected = 0; /* every cut must be rejected with a message: all len of them */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size so ASan sees any over-read */
        memcpy(copy, buf, cut);
        msa_gguf *g = NULL;
        msa_status st = msa_gguf_parse(copy, cut, &g);
        if (st != MSA_ERR_BAD_DATA || !msa_last_error()[0]) {
            fprintf(stderr, "  cut at %zu: status %d '%s'\n", cut, st, msa_last_error());
            CHECK(0);
            msa_gguf_free(g);
            free(copy);
            break;
        }
        rejected++;
        free(copy);
    }
    CHECK_EQ_INT(rejected, len);
    free(buf);
}

TEST(gguf_bit_flips_never_crash) {
    size_t len;
    layout l;
    uint8_t *buf = good(&len, &l);
    size_t n_ok = 0, n_err = 0;
    /* every bit of the header and tensor infos (the data section is not interpreted) */
    for (size_t i = 0; i < l.data_start; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, buf, len);
            copy[i] ^= (uint8_t)(1 << bit);
            msa_gguf *g = NULL;
            msa_status st = msa_gguf_parse(copy, len, &g);
            if (st == MSA_OK) {
                msa_hparams hp;
                (void)msa_gguf_hparams(g, &hp); /* must not crash either */
                const msa_weights *w = msa_gguf_weights(g);
                for (size_t k = 0; k < msa_weights_count(w); k++) {
                    const msa_tensor *t = msa_weights_at(w, k);
                    CHECK((const uint8_t *)t->data >= copy && (const uint8_t *)t->data + t->nbytes <= copy + len);
                }
                n_ok++;
            } else {
                const char *m = msa_last_error();
                if (!m[0] || strchr(m, '\n')) CHECK(0);
                n_err++;
            }
            msa_gguf_free(g);
            free(copy);
        }
    }
    fprintf(stderr, "  %zu flips parsed, %zu rejected\n", n_ok, n_err);
    CHECK(n_err > 0);
    free(buf);
}

static void patch32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }
static void patch64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }

TEST(gguf_bad_headers) {
    size_t len;
    layout l;
    uint8_t *buf = good(&len, &l), *c = malloc(len);
#define FRESH() memcpy(c, buf, len)
    FRESH(); c[0] = 'X';
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "magic"));
    FRESH(); patch32(c, l.version, 4);
    CHECK(fails_with(c, len, MSA_ERR_UNSUPPORTED, "version 4"));
    FRESH(); patch32(c, l.version, 2);
    msa_gguf *g = NULL;
    CHECK_EQ_INT(msa_gguf_parse(c, len, &g), MSA_OK); /* v2 has the same layout */
    msa_gguf_free(g);
    FRESH(); patch64(c, l.n_tensors, UINT64_MAX);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "tensor count"));
    FRESH(); patch64(c, l.n_kv, 1ull << 40);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "metadata count"));
    FRESH(); patch64(c, l.name_len, UINT64_MAX - 3);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, NULL));
    FRESH(); patch32(c, l.align_val, 48);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "alignment"));
    FRESH(); patch32(c, l.align_val, 0);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "alignment"));
    FRESH(); patch32(c, l.align_val, 1u << 31);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "alignment"));
    FRESH(); patch32(c, l.t0_ndims, 5);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "token_embd.weight"));
    FRESH(); patch32(c, l.t0_type, 14); /* Q6_K */
    CHECK(fails_with(c, len, MSA_ERR_UNSUPPORTED, "'token_embd.weight': type Q6_K"));
    FRESH(); patch32(c, l.t0_type, 1000);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "invalid ggml type"));
    FRESH(); patch64(c, l.t0_ne0, 63); /* not a multiple of the Q8_0 block */
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "multiple of 32"));
    FRESH(); patch64(c, l.t0_ne0, 1ull << 62);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "token_embd.weight"));
    FRESH(); patch64(c, l.t0_ne0, UINT64_MAX);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "negative"));
    FRESH(); patch64(c, l.t0_ne0, 64 * 1024); /* inside the file's arithmetic, beyond its end */
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "beyond end of file"));
    FRESH(); patch64(c, l.t0_offset, 1);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "not a multiple of the alignment"));
    FRESH(); patch32(c, l.t0_type, 1); /* Q8_0 -> F16: 4x the bytes, runs into the next tensor */
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "overlap"));
    FRESH(); patch64(c, l.last_offset, UINT64_MAX - 63);
    CHECK(fails_with(c, len, MSA_ERR_BAD_DATA, "beyond end of file"));
    CHECK(fails_with(buf, 3, MSA_ERR_BAD_DATA, "too short"));
    CHECK(fails_with(buf, 0, MSA_ERR_BAD_DATA, NULL));
#undef FRESH
    free(c);
    free(buf);
}

/* Small hand-made files for the metadata edge cases. */
static uint8_t *meta_file(int which, size_t *len) {
    gbuf b = {0};
    put_u32(&b, 0x46554747u), put_u32(&b, 3), put_u64(&b, 0), put_u64(&b, 2);
    kv_str(&b, "general.architecture", "llama");
    if (which == 0) { /* arrays nested 5 deep */
        put_str(&b, "deep");
        put_u32(&b, 9);
        for (int i = 0; i < 5; i++) put_u32(&b, 9), put_u64(&b, 1);
        put_u32(&b, 4), put_u64(&b, 0);
    } else if (which == 1) { /* duplicate key */
        kv_str(&b, "general.architecture", "qwen3");
    } else if (which == 2) { /* invalid value type */
        put_str(&b, "bad"), put_u32(&b, 13), put_u32(&b, 0);
    } else if (which == 3) { /* array with a huge count */
        put_str(&b, "big"), put_u32(&b, 9), put_u32(&b, 8), put_u64(&b, 1ull << 60);
    } else if (which == 4) { /* string array element longer than the file */
        put_str(&b, "s"), put_u32(&b, 9), put_u32(&b, 8), put_u64(&b, 1), put_u64(&b, 1000);
    } else if (which == 5) { /* key with a NUL */
        put_u64(&b, 3), put(&b, "a\0b", 3), put_u32(&b, 4), put_u32(&b, 1);
    } else { /* a valid file: missing hparams keys */
        kv_u32(&b, "llama.block_count", 2);
    }
    *len = b.n;
    return b.p;
}

TEST(gguf_bad_metadata) {
    size_t len;
    const char *needles[] = {"nested too deeply", "appears twice", "invalid value type", "does not fit",
                             "beyond end of file", "malformed metadata key"};
    for (int i = 0; i < 6; i++) {
        uint8_t *b = meta_file(i, &len);
        CHECK(fails_with(b, len, MSA_ERR_BAD_DATA, needles[i]));
        free(b);
    }
    uint8_t *b = meta_file(6, &len);
    msa_gguf *g = NULL;
    CHECK_EQ_INT(msa_gguf_parse(b, len, &g), MSA_OK);
    msa_hparams hp;
    if (g) {
        CHECK_EQ_INT(msa_gguf_hparams(g, &hp), MSA_ERR_BAD_DATA);
        CHECK(strstr(msa_last_error(), "missing 'llama.context_length'") != NULL);
        CHECK_EQ_INT(msa_weights_count(msa_gguf_weights(g)), 0);
    }
    msa_gguf_free(g);
    free(b);
}

TEST(gguf_open_errors) {
    msa_gguf *g = NULL;
    CHECK_EQ_INT(msa_gguf_open("/nonexistent/x.gguf", &g), MSA_ERR_NOT_FOUND);
    CHECK(g == NULL && strstr(msa_last_error(), "/nonexistent/x.gguf"));
    char dir[] = "/tmp/msa_test_gguf_XXXXXX";
    if (!mkdtemp(dir)) SKIP("mkdtemp failed");
    CHECK_EQ_INT(msa_gguf_open(dir, &g), MSA_ERR_BAD_DATA);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    FILE *f = fopen(path, "wb");
    if (f) fclose(f);
    CHECK_EQ_INT(msa_gguf_open(path, &g), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "empty") != NULL);
    /* a good file through the mmap path */
    size_t len;
    uint8_t *buf = good(&len, NULL);
    f = fopen(path, "wb");
    if (f) { fwrite(buf, 1, len, f); fclose(f); }
    CHECK_EQ_INT(msa_gguf_open(path, &g), MSA_OK);
    if (g) CHECK_EQ_INT(msa_weights_count(msa_gguf_weights(g)), N_TENSORS);
    msa_gguf_free(g);
    if (getuid() != 0) { /* root reads anything */
        chmod(path, 0);
        CHECK_EQ_INT(msa_gguf_open(path, &g), MSA_ERR_IO);
    }
    unlink(path);
    rmdir(dir);
    free(buf);
}

TEST(gguf_default_model) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (access(path, R_OK) != 0) SKIP("models/SmolLM2-135M-Instruct.Q4_1.gguf not installed (make model)");
    msa_gguf *g = NULL;
    msa_status st = msa_gguf_open(path, &g);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); return; }
    for (size_t i = 0; i < msa_gguf_kv_count(g); i++) {
        const char *k;
        size_t n;
        int type, et;
        msa_gguf_kv_at(g, i, &k, &n, &type, &et);
        fprintf(stderr, "  key %.*s: %s%s%s\n", (int)n, k, msa_gguf_value_type_name(type), et >= 0 ? " of " : "",
                et >= 0 ? msa_gguf_value_type_name(et) : "");
    }
    const msa_weights *w = msa_gguf_weights(g);
    size_t by_type[MSA_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < msa_weights_count(w); i++) by_type[msa_weights_at(w, i)->dtype]++;
    for (int t = 0; t < MSA_DTYPE_COUNT; t++)
        if (by_type[t]) fprintf(stderr, "  %zu tensors %s\n", by_type[t], msa_dtype_name((msa_dtype)t));
    CHECK_EQ_INT(msa_weights_count(w), 272);
    CHECK_EQ_INT(by_type[MSA_DTYPE_Q4_1], 210);
    CHECK_EQ_INT(by_type[MSA_DTYPE_F32], 61);
    CHECK_EQ_INT(by_type[MSA_DTYPE_Q8_0], 1);
    const msa_tensor *t = msa_weights_find(w, "token_embd.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q8_0 && t->shape[0] == 49152 && t->shape[1] == 576);
    t = msa_weights_find(w, "blk.0.ffn_down.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q4_1 && t->shape[0] == 576 && t->shape[1] == 1536);
    msa_hparams hp;
    st = msa_gguf_hparams(g, &hp);
    CHECK_EQ_INT(st, MSA_OK);
    CHECK(hp.arch == MSA_ARCH_LLAMA && hp.rope_style == MSA_ROPE_NORM && !hp.qk_norm);
    CHECK_EQ_INT(hp.n_layer, 30);
    CHECK_EQ_INT(hp.n_embd, 576);
    CHECK_EQ_INT(hp.n_head, 9);
    CHECK_EQ_INT(hp.n_head_kv, 3);
    CHECK_EQ_INT(hp.head_dim, 64);
    CHECK_EQ_INT(hp.n_ff, 1536);
    CHECK_EQ_INT(hp.n_vocab, 49152);
    CHECK_EQ_INT(hp.n_ctx_train, 8192);
    CHECK(hp.tie_embeddings);
    fprintf(stderr, "  bos %d eos %d (n_eos %d) rope_theta %g rms_eps %g\n", hp.bos_id, hp.eos_ids[0], hp.n_eos,
            hp.rope_theta, hp.rms_eps);
    msa_gguf_free(g);
}

TEST(gguf_python_fixture) {
    /* written by tests/ref/make_io_fixtures.py with the `gguf` package (its own alignment and layout) */
    const char *path = "tests/fixtures/io/tiny.gguf";
    if (access(path, R_OK) != 0) SKIP("tests/fixtures/io/tiny.gguf missing");
    msa_gguf *g = NULL;
    msa_status st = msa_gguf_open(path, &g);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); return; }
    const msa_weights *w = msa_gguf_weights(g);
    CHECK_EQ_INT(msa_weights_count(w), 3);
    const msa_tensor *t = msa_weights_find(w, "token_embd.weight");
    CHECK(t && t->dtype == MSA_DTYPE_Q8_0 && t->shape[0] == 6 && t->shape[1] == 32 && t->nbytes == 6 * 34);
    t = msa_weights_find(w, "blk.0.attn_q.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F16 && t->shape[0] == 32 && t->shape[1] == 32);
    t = msa_weights_find(w, "output_norm.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F32 && t->n_dims == 1 && t->shape[0] == 32);
    if (t) {
        float v[32];
        memcpy(v, t->data, sizeof v);
        CHECK(v[0] == 1.0f && v[31] == 1.0f);
    }
    size_t n;
    const char *s;
    CHECK(msa_gguf_get_str_array(g, "tokenizer.ggml.merges", &n) && n == 1);
    CHECK(msa_gguf_str_array_at(g, "tokenizer.ggml.tokens", 5, &s, &n) && n == 10 && memcmp(s, "<|im_end|>", 10) == 0);
    msa_hparams hp;
    CHECK_EQ_INT(msa_gguf_hparams(g, &hp), MSA_OK);
    CHECK(hp.arch == MSA_ARCH_QWEN3 && hp.n_embd == 32 && hp.head_dim == 8 && hp.n_head == 4 && hp.n_head_kv == 2);
    CHECK(hp.n_vocab == 6 && hp.bos_id == 4 && hp.n_eos == 1 && hp.eos_ids[0] == 5 && hp.tie_embeddings);
    msa_gguf_free(g);
}

int main(void) {
    RUN(gguf_parses_every_type);
    RUN(gguf_default_alignment_and_llama);
    RUN(gguf_truncated_everywhere);
    RUN(gguf_bit_flips_never_crash);
    RUN(gguf_bad_headers);
    RUN(gguf_bad_metadata);
    RUN(gguf_open_errors);
    RUN(gguf_python_fixture);
    RUN(gguf_default_model);
    return test_summary();
}
