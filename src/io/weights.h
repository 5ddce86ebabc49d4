/* weights.h — a read-only set of named tensors from one model file or a sharded set of files, memory-mapped.
 * Produced by the safetensors loader (HF names, "model.layers.0.self_attn.q_proj.weight") and by the GGUF
 * loader (GGUF names, "blk.0.attn_q.weight"); model.c maps either naming to the architecture.
 * Every tensor's byte range has been checked to lie inside its mapped file and to match dtype x shape. */
#ifndef MSA_IO_WEIGHTS_H
#define MSA_IO_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "model/tensor.h"
#include "msa.h"

typedef struct msa_weights msa_weights;

/* Open model.safetensors, a single *.safetensors file, or (given a directory) the shards listed in
 * model.safetensors.index.json. Hostile input: bounded header size (100 MiB), checked offsets, dtypes
 * outside F32/F16/BF16 refused with MSA_ERR_UNSUPPORTED naming the tensor. On success *out is owned by the
 * caller (msa_weights_free). */
msa_status msa_safetensors_open(const char *path, msa_weights **out);

/* Parse a safetensors header from memory (the fuzz entry point; buf is the whole file). */
msa_status msa_safetensors_parse(const uint8_t *buf, size_t len, msa_weights **out);

size_t msa_weights_count(const msa_weights *w);
const msa_tensor *msa_weights_at(const msa_weights *w, size_t i);
/* NULL when absent. */
const msa_tensor *msa_weights_find(const msa_weights *w, const char *name);
void msa_weights_free(msa_weights *w);

/* A hash of the weight set's headers (names, dtypes, shapes in order) for the model fingerprint. */
uint64_t msa_weights_header_hash(const msa_weights *w);

#endif
