/* test_device.c — msa_model_params.device: the spellings accepted and refused, "auto" resolved against what
 * the build and the machine have (the plain build and a CUDA build on a machine without a GPU both run on
 * the CPU; asking for CUDA there is a clear MSA_ERR_UNSUPPORTED, never a crash), and the backend a loaded
 * model ends up with. */
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda_probe.h"
#include "backend/device.h"
#include "model/model.h"
#include "test.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

TEST(device_spellings) {
    msa_device d;
    const char *good[] = {NULL, "", "auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:1023"};
    const msa_device_kind kinds[] = {MSA_DEVICE_AUTO, MSA_DEVICE_AUTO, MSA_DEVICE_AUTO, MSA_DEVICE_CPU,
                                     MSA_DEVICE_CUDA, MSA_DEVICE_CUDA, MSA_DEVICE_CUDA, MSA_DEVICE_CUDA};
    const int index[] = {0, 0, 0, 0, 0, 0, 7, 1023};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CHECK_EQ_INT(msa_device_parse(good[i], &d), MSA_OK);
        CHECK_EQ_INT(d.kind, kinds[i]);
        CHECK_EQ_INT(d.index, index[i]);
    }
    const char *bad[] = {"gpu", "CUDA", "cuda:", "cuda:-1", "cuda:1024", "cuda:1x", "cuda0", "cpu:0", " cpu", "cuda:99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_EQ_INT(msa_device_parse(bad[i], &d), MSA_ERR_INVALID_ARG);
        CHECK(strstr(msa_last_error(), "expected cpu, cuda, cuda:N or auto") != NULL);
    }
    char name[16];
    d = (msa_device){MSA_DEVICE_CUDA, 3};
    msa_device_name(&d, name, sizeof name);
    CHECK(!strcmp(name, "cuda:3"));
}

TEST(auto_follows_the_probe) {
    int n = -1;
    const char *why = NULL;
    msa_status probe = msa_cuda_probe(&n, &why);
    CHECK(why != NULL);
    msa_device d = {MSA_DEVICE_AUTO, 0};
    CHECK_EQ_INT(msa_device_resolve(&d), MSA_OK);
    CHECK_EQ_INT(d.kind, probe == MSA_OK && n > 0 ? MSA_DEVICE_CUDA : MSA_DEVICE_CPU);
    d = (msa_device){MSA_DEVICE_CUDA, 0};
    msa_status st = msa_device_resolve(&d);
    if (probe == MSA_OK && n > 0) {
        CHECK_EQ_INT(st, MSA_OK);
    } else {
        CHECK_EQ_INT(st, MSA_ERR_UNSUPPORTED);
        CHECK(strstr(msa_last_error(), "cuda:0") != NULL);
    }
    d = (msa_device){MSA_DEVICE_CUDA, 1000};
    CHECK_EQ_INT(msa_device_resolve(&d), MSA_ERR_UNSUPPORTED);
    d = (msa_device){MSA_DEVICE_CPU, 0};
    CHECK_EQ_INT(msa_device_resolve(&d), MSA_OK);
}

TEST(model_load_on_devices) {
    FILE *f = fopen(DEFAULT_MODEL, "rb");
    if (!f) SKIP("default model not installed (make model)");
    fclose(f);
    msa_model_params mp = msa_model_default_params();
    CHECK(mp.device == NULL);
    mp.n_threads = 1;
    msa_model *m = NULL;
    mp.device = "cpu";
    CHECK_EQ_INT(msa_model_load(DEFAULT_MODEL, &mp, &m), MSA_OK);
    CHECK(m && !strcmp(m->be->ops->name, "cpu") && m->be->device.kind == MSA_DEVICE_CPU);
    msa_model_free(m);
    m = NULL;
    mp.device = "tpu";
    CHECK_EQ_INT(msa_model_load(DEFAULT_MODEL, &mp, &m), MSA_ERR_INVALID_ARG);
    CHECK(m == NULL);
    int n = 0;
    const char *why;
    const bool gpu = msa_cuda_probe(&n, &why) == MSA_OK && n > 0;
    mp.device = "cuda:1000";
    CHECK_EQ_INT(msa_model_load(DEFAULT_MODEL, &mp, &m), MSA_ERR_UNSUPPORTED);
    CHECK(m == NULL);
    mp.device = NULL; /* auto */
    CHECK_EQ_INT(msa_model_load(DEFAULT_MODEL, &mp, &m), MSA_OK);
    CHECK(m && !strcmp(m->be->ops->name, gpu ? "cuda" : "cpu"));
    msa_model_free(m);
}

int main(void) {
    RUN(device_spellings);
    RUN(auto_follows_the_probe);
    RUN(model_load_on_devices);
    return test_summary();
}
