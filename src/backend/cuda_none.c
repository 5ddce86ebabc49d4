/* cuda_none.c — the CUDA probe of a build without the CUDA backend (the plain `make`). `make CUDA=1`
 * replaces this file with src/backend/cuda/probe.cu. */
#include "backend/backend.h"
#include "backend/cuda_probe.h"
#include "util/error.h"

msa_status msa_cuda_probe(int *n_gpus, const char **why) {
    *n_gpus = 0;
    *why = "this build has no CUDA backend (rebuild with make CUDA=1)";
    return MSA_ERR_UNSUPPORTED;
}

msa_status msa_backend_cuda_new(struct msa_model *model, int device_index, msa_backend **out) {
    (void)model, (void)device_index;
    *out = NULL;
    return msa_fail(MSA_ERR_UNSUPPORTED, "this build has no CUDA backend (rebuild with make CUDA=1)");
}
