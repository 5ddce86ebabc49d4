/* device.c — msa_model_params.device: parsing and resolving "auto" (see device.h). */
#include "backend/device.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda_probe.h"
#include "util/error.h"

msa_status msa_device_parse(const char *name, msa_device *out) {
    out->kind = MSA_DEVICE_AUTO;
    out->index = 0;
    if (!name || !*name || strcmp(name, "auto") == 0) return MSA_OK;
    if (strcmp(name, "cpu") == 0) {
        out->kind = MSA_DEVICE_CPU;
        return MSA_OK;
    }
    if (strncmp(name, "cuda", 4) == 0) {
        const char *rest = name + 4;
        out->kind = MSA_DEVICE_CUDA;
        if (!*rest) return MSA_OK;
        if (*rest == ':' && rest[1] >= '0' && rest[1] <= '9') {
            char *end;
            errno = 0;
            long n = strtol(rest + 1, &end, 10);
            if (!*end && errno == 0 && n >= 0 && n < 1024) {
                out->index = (int)n;
                return MSA_OK;
            }
        }
    }
    return msa_fail(MSA_ERR_INVALID_ARG, "device '%s': expected cpu, cuda, cuda:N or auto", name);
}

msa_status msa_device_resolve(msa_device *dev) {
    int n_gpus = 0;
    const char *why = NULL;
    msa_status rc = msa_cuda_probe(&n_gpus, &why);
    if (dev->kind == MSA_DEVICE_AUTO) {
        *dev = (rc == MSA_OK && n_gpus > 0) ? (msa_device){MSA_DEVICE_CUDA, 0} : (msa_device){MSA_DEVICE_CPU, 0};
        return MSA_OK;
    }
    if (dev->kind == MSA_DEVICE_CPU) return MSA_OK;
    if (rc != MSA_OK) return msa_fail(MSA_ERR_UNSUPPORTED, "device cuda:%d: %s", dev->index, why);
    if (dev->index >= n_gpus)
        return msa_fail(MSA_ERR_UNSUPPORTED, "device cuda:%d: this machine has %d GPU%s", dev->index, n_gpus,
                        n_gpus == 1 ? "" : "s");
    return MSA_OK;
}

void msa_device_name(const msa_device *dev, char *buf, int size) {
    if (dev->kind == MSA_DEVICE_CUDA)
        snprintf(buf, (size_t)size, "cuda:%d", dev->index);
    else
        snprintf(buf, (size_t)size, "%s", dev->kind == MSA_DEVICE_CPU ? "cpu" : "auto");
}
