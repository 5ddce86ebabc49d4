/* device.h — naming where a model runs: the parser of msa_model_params.device ("cpu", "cuda", "cuda:N",
 * "auto") and the resolution of "auto" against what this build and machine have. One place, so every
 * command and the library agree on the spelling and on the errors. */
#ifndef MSA_BACKEND_DEVICE_H
#define MSA_BACKEND_DEVICE_H

#include "msa.h"

typedef enum { MSA_DEVICE_AUTO, MSA_DEVICE_CPU, MSA_DEVICE_CUDA } msa_device_kind;

typedef struct msa_device {
    msa_device_kind kind;
    int index; /* GPU ordinal for MSA_DEVICE_CUDA (0 for "cuda"); 0 otherwise */
} msa_device;

/* Parse a device name (NULL and "" mean "auto"). MSA_ERR_INVALID_ARG with a message naming the accepted
 * spellings for anything else. */
msa_status msa_device_parse(const char *name, msa_device *out);

/* Resolve "auto" and check availability: AUTO becomes CUDA 0 when this build has CUDA and a GPU is
 * present, else CPU. CUDA where the build has none, or where the GPU ordinal does not exist, fails with
 * MSA_ERR_UNSUPPORTED and a message saying which. */
msa_status msa_device_resolve(msa_device *dev);

/* "cpu" or "cuda:N" into buf (at least 16 bytes). */
void msa_device_name(const msa_device *dev, char *buf, int size);

#endif
