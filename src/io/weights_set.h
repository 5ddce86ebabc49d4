/* weights_set.h — building an msa_weights (internal to src/io/): the loaders add checked tensors and the
 * file mappings that back them, then freeze the set, which builds the name index and rejects duplicates. */
#ifndef MSA_IO_WEIGHTS_SET_H
#define MSA_IO_WEIGHTS_SET_H

#include "io/weights.h"
#include "util/mmap.h"

/* An empty set. On success *out is owned by the caller (msa_weights_free). */
msa_status msa_weights_new(msa_weights **out);

/* Take ownership of a mapping (unmapped by msa_weights_free). Returns its index. */
msa_status msa_weights_add_map(msa_weights *w, msa_mapped_file *m, size_t *index);

/* Add one tensor; name is copied (name_len bytes, must not contain NUL). shape is outermost-first with
 * n_dims entries; data/nbytes must already be checked by the caller. source is a loader-defined tag
 * (the shard index for safetensors). */
msa_status msa_weights_add(msa_weights *w, const char *name, size_t name_len, msa_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data, size_t nbytes, int source);

/* The tag given to msa_weights_add for tensor i. */
int msa_weights_source(const msa_weights *w, size_t i);

/* Build the name index; label names the input in the duplicate-name error. */
msa_status msa_weights_freeze(msa_weights *w, const char *label);

/* Elements of a shape, or -1 on overflow / negative dims. */
int64_t msa_shape_nelements(int n_dims, const int64_t *shape);

#endif
