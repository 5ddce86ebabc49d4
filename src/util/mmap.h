/* mmap.h — map a whole file read-only, with a size limit and one-line errors for the usual failures.
 * Model weights are used straight from the mapping (never copied), so this is the only way loaders read
 * large files. */
#ifndef MSA_UTIL_MMAP_H
#define MSA_UTIL_MMAP_H

#include <stddef.h>
#include <stdint.h>

#include "msa.h"

typedef struct msa_mapped_file {
    const uint8_t *data; /* first byte of the file; NULL when not mapped */
    size_t size;         /* exact file size in bytes (> 0 when mapped) */
} msa_mapped_file;

/* Map path read-only. max_size 0 means no limit beyond what the address space allows.
 * Errors: MSA_ERR_NOT_FOUND (no such file), MSA_ERR_IO (permission, read/mmap failure),
 * MSA_ERR_BAD_DATA (empty file, a directory or other non-regular file), MSA_ERR_LIMIT (larger than max_size).
 * On success the caller owns the mapping and releases it with msa_unmap_file. */
msa_status msa_map_file(const char *path, size_t max_size, msa_mapped_file *out);

/* Unmap; safe on a zeroed or already-unmapped struct. */
void msa_unmap_file(msa_mapped_file *m);

/* Read a whole (small) file into a malloc'd, NUL-terminated buffer (config and JSON files). The same
 * errors as msa_map_file; empty files are allowed here. On success *buf is owned by the caller (free()). */
msa_status msa_read_file(const char *path, size_t max_size, char **buf, size_t *len);

/* Whether path names an existing directory / regular file (no error set). */
int msa_path_is_dir(const char *path);
int msa_path_is_file(const char *path);

#endif
