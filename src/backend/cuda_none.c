/* cuda_none.c — the CUDA probe of a build without the CUDA backend (the plain `make`). `make CUDA=1`
 * replaces this file with src/backend/cuda/probe.cu. */
#include "backend/cuda_probe.h"

msa_status msa_cuda_probe(int *n_gpus, const char **why) {
    *n_gpus = 0;
    *why = "this build has no CUDA backend (rebuild with make CUDA=1)";
    return MSA_ERR_UNSUPPORTED;
}
