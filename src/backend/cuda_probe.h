/* cuda_probe.h — whether this build has the CUDA backend and how many GPUs the machine shows. The plain
 * build answers "no CUDA" (cuda_probe_none.c); `make CUDA=1` links the real probe from src/backend/cuda/. */
#ifndef MSA_BACKEND_CUDA_PROBE_H
#define MSA_BACKEND_CUDA_PROBE_H

#include "msa.h"

/* MSA_OK with *n_gpus >= 0, or MSA_ERR_UNSUPPORTED with *why saying what is missing (a static string:
 * "this build has no CUDA backend (make CUDA=1)", "no CUDA driver", ...). Never fails otherwise. */
msa_status msa_cuda_probe(int *n_gpus, const char **why);

#endif
