/* backend.c — choosing the backend of a model (backend.h): the CPU reference or the CUDA backend. */
#include "backend/backend.h"

#include "util/error.h"

msa_status msa_backend_new(struct msa_model *model, const msa_device *dev, msa_backend **out) {
    *out = NULL;
    msa_status rc = dev->kind == MSA_DEVICE_CUDA ? msa_backend_cuda_new(model, dev->index, out)
                                                 : msa_backend_cpu_new(model, out);
    if (rc == MSA_OK) (*out)->device = *dev;
    return rc;
}

void msa_backend_free(msa_backend *be) {
    if (be) be->ops->destroy(be);
}
