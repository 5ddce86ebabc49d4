/* test_safetensors.c — the safetensors loader on files written here (single file, a directory with
 * model.safetensors, a sharded directory with an index) and on hostile input: truncation at every offset,
 * bit flips, oversized header length, unsupported and unknown dtypes, shape/offset inconsistencies,
 * overlaps, broken indexes. Every failure must be a status with one line. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/weights.h"
#include "test.h"

/* header JSON (padded with spaces to a multiple of 8 bytes unless raw, as every writer does) + data bytes
 * -> a whole file image (malloc'd) */
static uint8_t *st_image_ex(const char *header, size_t data_len, size_t *len, int raw) {
    size_t hl = strlen(header), pad = raw ? 0 : (8 - hl % 8) % 8;
    *len = 8 + hl + pad + data_len;
    uint8_t *b = malloc(*len);
    uint64_t h = hl + pad;
    memcpy(b, &h, 8);
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', pad);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + pad + i] = (uint8_t)(i * 13 + 5);
    return b;
}

static uint8_t *st_image(const char *header, size_t data_len, size_t *len) {
    return st_image_ex(header, data_len, len, 0);
}

/* f32 [2,3] at 0..24, bf16 [4] at 24..32, f16 [] (scalar) at 32..34, a zero-size f32 [0,5] at 34..34 */
#define GOOD_HEADER                                                                             \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                                    \
    "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}," \
    "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"         \
    "\"temperature\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[32,34]},"                 \
    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[34,34]}}      "
#define GOOD_DATA 34

static int fails_with(const uint8_t *buf, size_t len, msa_status want, const char *needle) {
    msa_weights *w = (msa_weights *)1;
    msa_status st = msa_safetensors_parse(buf, len, &w);
    const char *msg = msa_last_error();
    int ok = st == want && w == NULL && msg[0] && !strchr(msg, '\n') && (!needle || strstr(msg, needle));
    if (!ok) fprintf(stderr, "  got status %d (%s), want %d, message '%s'\n", st, msa_strerror(st), want, msg);
    if (st == MSA_OK) msa_weights_free(w);
    return ok;
}

static int header_fails(const char *header, size_t data_len, msa_status want, const char *needle) {
    size_t len;
    uint8_t *b = st_image(header, data_len, &len);
    int ok = fails_with(b, len, want, needle);
    if (!ok) fprintf(stderr, "  header: %s\n", header);
    free(b);
    return ok;
}

TEST(safetensors_parses) {
    size_t len;
    uint8_t *b = st_image(GOOD_HEADER, GOOD_DATA, &len);
    msa_weights *w = NULL;
    msa_status st = msa_safetensors_parse(b, len, &w);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); free(b); return; }
    CHECK_EQ_INT(msa_weights_count(w), 4);
    const uint8_t *data = b + len - GOOD_DATA;
    const msa_tensor *t = msa_weights_find(w, "model.embed_tokens.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->data == data && t->nbytes == 24);
    t = msa_weights_find(w, "model.norm.weight");
    CHECK(t && t->dtype == MSA_DTYPE_BF16 && t->n_dims == 1 && t->shape[0] == 4 && t->data == data + 24);
    t = msa_weights_find(w, "temperature");
    CHECK(t && t->dtype == MSA_DTYPE_F16 && t->n_dims == 0 && msa_tensor_nelements(t) == 1 && t->nbytes == 2);
    t = msa_weights_find(w, "empty");
    CHECK(t && t->nbytes == 0 && msa_tensor_nelements(t) == 0);
    CHECK(msa_weights_find(w, "__metadata__") == NULL);
    CHECK(msa_weights_find(w, "lm_head.weight") == NULL);
    /* names in file order */
    CHECK(strcmp(msa_weights_at(w, 0)->name, "model.embed_tokens.weight") == 0);
    CHECK(msa_weights_at(w, 4) == NULL);
    uint64_t h1 = msa_weights_header_hash(w);
    msa_weights_free(w);
    /* the header hash depends on shapes, not on data bytes */
    b[len - 1] ^= 0xff;
    CHECK_EQ_INT(msa_safetensors_parse(b, len, &w), MSA_OK);
    CHECK(w && msa_weights_header_hash(w) == h1);
    msa_weights_free(w);
    free(b);
    b = st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}}", 24, &len);
    CHECK_EQ_INT(msa_safetensors_parse(b, len, &w), MSA_OK);
    CHECK(w && msa_weights_header_hash(w) != h1);
    uint64_t h2 = w ? msa_weights_header_hash(w) : 0;
    msa_weights_free(w);
    free(b);
    b = st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, &len);
    CHECK_EQ_INT(msa_safetensors_parse(b, len, &w), MSA_OK);
    CHECK(w && msa_weights_header_hash(w) != h2);
    msa_weights_free(w);
    free(b);
}

TEST(safetensors_truncated_everywhere) {
    size_t len;
    uint8_t *b = st_image(GOOD_HEADER, GOOD_DATA, &len);
    size_t rejected = 0; /* every cut must be rejected with a message: all len of them */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b, cut);
        msa_weights *w = NULL;
        msa_status st = msa_safetensors_parse(copy, cut, &w);
        /* cutting only trailing bytes of the last tensor's data, or nothing the header describes, is not
         * detectable for zero-size tails; everything here ends with real data so every cut must fail */
        if (st != MSA_ERR_BAD_DATA || !msa_last_error()[0]) {
            fprintf(stderr, "  cut at %zu: status %d '%s'\n", cut, st, msa_last_error());
            CHECK(0);
            msa_weights_free(w);
            free(copy);
            break;
        }
        rejected++;
        free(copy);
    }
    CHECK_EQ_INT(rejected, len);
    free(b);
}

TEST(safetensors_bit_flips_never_crash) {
    size_t len;
    uint8_t *b = st_image(GOOD_HEADER, GOOD_DATA, &len);
    size_t n_ok = 0, n_err = 0;
    for (size_t i = 0; i < len - GOOD_DATA; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, b, len);
            copy[i] ^= (uint8_t)(1 << bit);
            msa_weights *w = NULL;
            msa_status st = msa_safetensors_parse(copy, len, &w);
            if (st == MSA_OK) {
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
            msa_weights_free(w);
            free(copy);
        }
    }
    fprintf(stderr, "  %zu flips parsed, %zu rejected\n", n_ok, n_err);
    CHECK(n_err > 0);
    free(b);
}

TEST(safetensors_bad_headers) {
    /* header length larger than the file, and absurdly large */
    size_t len;
    uint8_t *b = st_image(GOOD_HEADER, GOOD_DATA, &len);
    uint64_t h = len;
    memcpy(b, &h, 8);
    CHECK(fails_with(b, len, MSA_ERR_BAD_DATA, "truncated"));
    h = 1ull << 40;
    memcpy(b, &h, 8);
    CHECK(fails_with(b, len, MSA_ERR_BAD_DATA, "exceeds"));
    h = UINT64_MAX;
    memcpy(b, &h, 8);
    CHECK(fails_with(b, len, MSA_ERR_BAD_DATA, "exceeds"));
    CHECK(fails_with(b, 5, MSA_ERR_BAD_DATA, "truncated"));
    free(b);

#define T(dtype, shape, offs) "{\"w\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"
    CHECK(header_fails(T("I8", "[4]", "[0,4]"), 4, MSA_ERR_UNSUPPORTED, "tensor 'w': dtype I8"));
    CHECK(header_fails(T("F64", "[1]", "[0,8]"), 8, MSA_ERR_UNSUPPORTED, "F64"));
    CHECK(header_fails(T("F99", "[1]", "[0,4]"), 4, MSA_ERR_BAD_DATA, "unknown dtype"));
    CHECK(header_fails(T("F32", "[2,3]", "[0,20]"), 24, MSA_ERR_BAD_DATA, "need 24"));   /* size mismatch */
    CHECK(header_fails(T("BF16", "[2,3]", "[0,24]"), 24, MSA_ERR_BAD_DATA, "need 12"));  /* wrong dtype */
    CHECK(header_fails(T("F32", "[2,3]", "[8,32]"), 24, MSA_ERR_BAD_DATA, "outside")); /* beyond data */
    CHECK(header_fails(T("F32", "[2,3]", "[24,0]"), 24, MSA_ERR_BAD_DATA, "outside")); /* reversed */
    CHECK(header_fails(T("F32", "[-2,3]", "[0,24]"), 24, MSA_ERR_BAD_DATA, "shape[0]"));
    CHECK(header_fails(T("F32", "[2.0,3]", "[0,24]"), 24, MSA_ERR_BAD_DATA, "shape[0]"));
    CHECK(header_fails(T("F32", "[1,1,1,1,1]", "[0,4]"), 4, MSA_ERR_UNSUPPORTED, "5 dimensions"));
    CHECK(header_fails(T("F32", "[4294967296,4294967296,4]", "[0,4]"), 4, MSA_ERR_BAD_DATA, "too large"));
    CHECK(header_fails(T("F32", "[9223372036854775807,2]", "[0,4]"), 4, MSA_ERR_BAD_DATA, "too large"));
    CHECK(header_fails(T("F32", "[1]", "[0]"), 4, MSA_ERR_BAD_DATA, "data_offsets"));
    CHECK(header_fails(T("F32", "[1]", "[2,6]"), 8, MSA_ERR_BAD_DATA, "not aligned"));
    CHECK(header_fails(T("BF16", "[1]", "[1,3]"), 4, MSA_ERR_BAD_DATA, "not aligned"));
    uint8_t *odd = st_image_ex(T("F32", "[1]", "[0,4]") " ", 4, &len, 1); /* header of 57 bytes */
    CHECK(fails_with(odd, len, MSA_ERR_BAD_DATA, "not aligned"));
    free(odd);
    CHECK(header_fails(T("F32", "[1]", "[-4,0]"), 4, MSA_ERR_BAD_DATA, "data_offsets"));
    CHECK(header_fails(T("F32", "[1]", "[0,99999999999999999999999]"), 4, MSA_ERR_BAD_DATA, "JSON"));
    CHECK(header_fails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MSA_ERR_BAD_DATA, "dtype"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, MSA_ERR_BAD_DATA, "shape"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MSA_ERR_BAD_DATA, "data_offsets"));
    CHECK(header_fails("{\"w\":[1,2]}", 4, MSA_ERR_BAD_DATA, "not an object"));
    CHECK(header_fails("[1,2]", 0, MSA_ERR_BAD_DATA, "not a JSON object"));
    CHECK(header_fails("{\"w\":", 0, MSA_ERR_BAD_DATA, "JSON"));
    CHECK(header_fails("{\"__metadata__\":{\"a\":1}}", 0, MSA_ERR_BAD_DATA, "__metadata__"));
    CHECK(header_fails("{\"__metadata__\":[]}", 0, MSA_ERR_BAD_DATA, "__metadata__"));
    CHECK(header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       8, MSA_ERR_BAD_DATA, NULL)); /* duplicate name */
    CHECK(header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       12, MSA_ERR_BAD_DATA, "overlap"));
    CHECK(header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                       16, MSA_ERR_BAD_DATA, "overlap"));
    CHECK(header_fails("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MSA_ERR_BAD_DATA,
                       "empty tensor name"));
    CHECK(header_fails("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       MSA_ERR_BAD_DATA, "JSON"));
#undef T
}

/* ------------------------------------------------------------------------------- files and directories */

static char tmpdir[64];

static void write_file(const char *name, const void *data, size_t len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static void write_st(const char *name, const char *header, size_t data_len) {
    size_t len;
    uint8_t *b = st_image(header, data_len, &len);
    write_file(name, b, len);
    free(b);
}

static void rm_file(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    unlink(path);
}

static msa_status open_dir(msa_weights **w) { return msa_safetensors_open(tmpdir, w); }

#define SHARD1 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," \
               "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}"
#define SHARD2 "{\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}"
#define INDEX(extra) "{\"metadata\":{\"total_size\":22},\"weight_map\":{\"a\":\"s1.safetensors\"," \
                     "\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"" extra "}}"

static void write_index(const char *json) {
    write_file("model.safetensors.index.json", json, strlen(json));
}

TEST(safetensors_files_and_dirs) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/msa_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) SKIP("mkdtemp failed");
    msa_weights *w = NULL;
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_NOT_FOUND);
    CHECK(strstr(msa_last_error(), "model.safetensors") != NULL);

    write_st("model.safetensors", GOOD_HEADER, GOOD_DATA);
    CHECK_EQ_INT(open_dir(&w), MSA_OK);
    CHECK_EQ_INT(msa_weights_count(w), 4);
    msa_weights_free(w);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    CHECK_EQ_INT(msa_safetensors_open(path, &w), MSA_OK);
    CHECK(w && msa_weights_find(w, "model.norm.weight") != NULL);
    msa_weights_free(w);
    write_file("model.safetensors", "", 0);
    CHECK_EQ_INT(msa_safetensors_open(path, &w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "empty") != NULL);
    rm_file("model.safetensors");
    CHECK_EQ_INT(msa_safetensors_open(path, &w), MSA_ERR_NOT_FOUND);

    /* shards: the index wins over model.safetensors */
    write_st("s1.safetensors", SHARD1, 16);
    write_st("s2.safetensors", SHARD2, 6);
    write_index(INDEX(""));
    CHECK_EQ_INT(open_dir(&w), MSA_OK);
    CHECK_EQ_INT(msa_weights_count(w), 3);
    const msa_tensor *t = w ? msa_weights_find(w, "c") : NULL;
    CHECK(t && t->dtype == MSA_DTYPE_F16 && t->shape[0] == 3 && t->nbytes == 6);
    t = w ? msa_weights_find(w, "b") : NULL;
    CHECK(t && t->dtype == MSA_DTYPE_BF16 && t->shape[0] == 2 && t->shape[1] == 2);
    msa_weights_free(w);

    write_index(INDEX(",\"d\":\"s2.safetensors\""));
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "tensor 'd' listed in the index is missing") != NULL);
    write_index("{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "index says s2.safetensors") != NULL);
    write_index(INDEX(",\"d\":\"../etc/passwd\""));
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "plain file name") != NULL);
    write_index(INDEX(",\"d\":\"s3.safetensors\""));
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_NOT_FOUND);
    CHECK(strstr(msa_last_error(), "s3.safetensors") != NULL);
    write_index("{\"weight_map\":{}}");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    write_index("{\"weight_map\":[1]}");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    write_index("{\"weight_map\":{\"a\":3}}");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    write_index("{\"weight_map\":");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "not valid JSON") != NULL);
    /* a hostile index naming thousands of shards is refused before any is opened */
    size_t cap = 5000 * 48 + 64, n = 0;
    char *big = malloc(cap);
    n += (size_t)snprintf(big + n, cap - n, "{\"weight_map\":{");
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s\"t%d\":\"s%d.safetensors\"", i ? "," : "", i, i);
    snprintf(big + n, cap - n, "}}");
    write_index(big);
    free(big);
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "more than 4096 shard files") != NULL);
    /* the same tensor in two shards */
    write_st("s2.safetensors", "{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 6);
    write_index("{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}");
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "appears twice") != NULL);
    /* a broken shard names the shard */
    write_st("s2.safetensors", "{\"c\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,6]}}", 6);
    write_index(INDEX(""));
    CHECK_EQ_INT(open_dir(&w), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "s2.safetensors: tensor 'c'") != NULL);
    CHECK(!strchr(msa_last_error(), '\n'));

    rm_file("s1.safetensors");
    rm_file("s2.safetensors");
    rm_file("model.safetensors.index.json");
    rmdir(tmpdir);
}

TEST(safetensors_python_fixture) {
    /* written by tests/ref/make_io_fixtures.py with the `safetensors` package */
    const char *path = "tests/fixtures/io/tiny.safetensors";
    if (access(path, R_OK) != 0) SKIP("tests/fixtures/io/tiny.safetensors missing");
    msa_weights *w = NULL;
    msa_status st = msa_safetensors_open(path, &w);
    CHECK_EQ_INT(st, MSA_OK);
    if (st) { fprintf(stderr, "  %s\n", msa_last_error()); return; }
    const msa_tensor *t = msa_weights_find(w, "model.layers.0.self_attn.q_proj.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F32 && t->shape[0] == 8 && t->shape[1] == 4);
    if (t) { /* arange(32) */
        float v[32];
        memcpy(v, t->data, sizeof v);
        CHECK(v[0] == 0.0f && v[31] == 31.0f);
    }
    t = msa_weights_find(w, "model.norm.weight");
    CHECK(t && t->dtype == MSA_DTYPE_BF16 && t->shape[0] == 4);
    if (t) {
        uint16_t v[4];
        memcpy(v, t->data, sizeof v);
        CHECK(msa_bf16_to_f32(v[2]) == 1.5f);
    }
    t = msa_weights_find(w, "lm_head.weight");
    CHECK(t && t->dtype == MSA_DTYPE_F16 && t->shape[0] == 6 && t->shape[1] == 4);
    if (t) {
        uint16_t v[24];
        memcpy(v, t->data, sizeof v);
        CHECK(msa_f16_to_f32(v[23]) == -0.25f);
    }
    msa_weights_free(w);
}

int main(void) {
    RUN(safetensors_parses);
    RUN(safetensors_truncated_everywhere);
    RUN(safetensors_bit_flips_never_crash);
    RUN(safetensors_bad_headers);
    RUN(safetensors_files_and_dirs);
    RUN(safetensors_python_fixture);
    return test_summary();
}
