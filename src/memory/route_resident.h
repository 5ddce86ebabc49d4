/* route_resident.h — read mode's routing keys kept in a backend's memory (a GPU; design.md §7 "routing keys in
 * GPU memory"), and the host scan's key norms kept between questions: uploaded once per bank snapshot and router slot, after which routing a question reads no host
 * memory, runs backend.h's route_maxsim and moves back only the [tokens][documents] best cosines. The scores
 * are msa_read_doc_scores' bits (route.cu's exactness note), so a GPU routes exactly as the CPU does. */
#ifndef MSA_MEMORY_ROUTE_RESIDENT_H
#define MSA_MEMORY_ROUTE_RESIDENT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "memory/route.h"
#include "util/threadpool.h"

/* One router slot's keys on a backend. */
typedef struct msa_read_keys {
    msa_buf *keys;      /* [n_chunks][dim] bf16 (f32 when !bf16): every span's keys, in span order */
    msa_buf *doc;       /* [n_chunks] int32: the chunk's document index, -1 for a chunk read mode skips */
    uint64_t n_chunks;
    int dim;
    bool bf16;
} msa_read_keys;

/* Copies the spans' keys to be (through a host bounce buffer, so that a SIGBUS under the bank's mapping is an
 * error, not a crash) with the document table read mode routes by (a document's first chunk skipped when it
 * has others). MSA_ERR_BAD_DATA for a chunk of a document >= n_index; MSA_ERR_NOMEM when the device is full,
 * MSA_ERR_LIMIT beyond 2^31 chunks or documents (nothing is kept). On success *out holds backend buffers the caller releases with msa_read_keys_free. */
msa_status msa_read_keys_upload(msa_backend *be, const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype,
                                int dim, uint64_t n_index, msa_read_keys *out);
void msa_read_keys_free(msa_backend *be, msa_read_keys *k);

/* The buffers msa_read_keys_scores needs, kept between calls and grown when a call needs more: a question routes
 * every router slot with the same shapes, and allocating device memory per call synchronises the device (and
 * a fresh host array of tokens x documents floats is page-faulted in anew). Zero-initialise; release with
 * msa_read_scratch_free. */
typedef struct msa_read_scratch {
    msa_buf *q, *best;          /* backend: [nq][dim] f32 queries, [nq][n_docs] f32 bests */
    float *host_q, *host_best;  /* the same on the host */
    size_t q_bytes, best_bytes; /* the capacity of each pair */
} msa_read_scratch;
void msa_read_scratch_free(msa_backend *be, msa_read_scratch *s);

/* msa_read_doc_scores over keys on the backend: doc_scores [n_index], bit-identical to the CPU scan. scratch:
 * buffers reused between calls (NULL: allocated and released by this call); tp (may be NULL): the host threads
 * that centre the bests (msa_read_center). */
msa_status msa_read_keys_scores(msa_backend *be, const msa_read_keys *k, const msa_route_query *q, uint64_t n_index,
                                float *doc_scores, msa_read_scratch *scratch, msa_threadpool *tp);

struct msa_model;
/* The model's cache of one bank snapshot's keys (snapshot: msa_bank_snapshot_id; n_slots router slots),
 * made on first use: doc_scores of slot `slot` computed on the model's backend. *done is false, with nothing
 * computed and no error, when the backend has no routing scan or the keys of all n_slots slots would not fit
 * its memory with a tenth of it (at least 2 GiB) left for the forward pass (the caller scans on the CPU; a
 * snapshot that did not fit is not tried again). */
msa_status msa_read_resident_scores(struct msa_model *model, uint64_t snapshot, int slot, int n_slots,
                                    const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype,
                                    const msa_route_query *q, uint64_t n_index, float *doc_scores, bool *done);
/* The CPU scan's question-independent half, cached the same way: every chunk key's 1/|key| of slot `slot`
 * (msa_read_inv_norms, for msa_read_doc_scores_inv), computed on the model's threads on first use. NULL when
 * there is no memory for it (the scan then computes them itself) or on an error, which *st then holds (a SIGBUS
 * under the bank's mapping: MSA_ERR_IO). The array belongs to the cache (valid until the next snapshot). */
const float *msa_read_resident_norms(struct msa_model *model, uint64_t snapshot, int slot, int n_slots,
                                     const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype, int dim,
                                     msa_status *st);
/* Releases the model's cache (msa_model_free calls it). */
void msa_read_resident_free(struct msa_model *model);

#endif
