/* format.h — the bank's on-disk structures (docs/bank-format.md is the byte-level spec): the MANIFEST and
 * segment files, their little-endian encoding and their hostile-input parsers (fuzzed by
 * tests/fuzz/fuzz_bank_manifest.c and fuzz_bank_segment.c). Nothing here touches the file system. */
#ifndef MSA_BANK_FORMAT_H
#define MSA_BANK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"

#define BANK_MAJOR 1
#define BANK_MINOR 0
#define BANK_MANIFEST_MAGIC "MSA-MAN\0"
#define BANK_SEGMENT_MAGIC "MSA-SEG\0"
#define BANK_EXPORT_MAGIC "MSA-EXP\0"
#define BANK_SEG_HEADER_SIZE 4096u  /* fixed; the header checksum is its last 8 bytes */
#define BANK_ALIGN 64u              /* every section starts at a multiple of this */
#define BANK_DOC_RECORD_SIZE 112u
#define BANK_MAX_SECTIONS 120u      /* fits the header: 104 + 32*120 <= 4088 */
#define BANK_MAX_ID_LEN 4096u
#define BANK_MAX_META_LEN (16u << 20)
#define BANK_MAX_TEXT_LEN ((uint64_t)1 << 32)
#define BANK_MAX_MODEL_PATH 4096u

enum { BANK_SEG_DOCS = 1, BANK_SEG_TEMPLATE = 2 };  /* segment kinds */

enum {                      /* section types */
    BANK_SEC_DOCS = 1,      /* n_docs records of BANK_DOC_RECORD_SIZE bytes */
    BANK_SEC_STRINGS = 2,   /* ids and metadata, each NUL-terminated */
    BANK_SEC_TEXT = 3,      /* zstd frames, one per document */
    BANK_SEC_ROUTE = 4,     /* layer = router slot: [n_chunks, route_dim[slot]] */
    BANK_SEC_CONTENT = 5,   /* per document, per slot: K̄ [C, H, d] then V̄ [C, H, d] */
    BANK_SEC_TEMPLATE = 6,  /* per model layer: K [H, T, d] then V [H, T, d] */
};

typedef struct bank_seg_ref {   /* one segment named by the manifest */
    uint64_t seg_id, file_size, header_hash, n_docs, n_chunks;
} bank_seg_ref;

typedef struct bank_manifest {
    uint16_t minor;
    uint64_t generation;        /* +1 per commit */
    uint8_t fingerprint[32];
    uint8_t uuid[16];           /* random per bank; every segment carries it */
    msa_bank_shape shape;
    uint64_t next_index;        /* the index the next new document gets (indices are never reused) */
    uint64_t next_seg_id;       /* segment ids are never reused either */
    uint64_t template_seg;      /* seg_id of the template segment, 0 = none */
    char *model_path;           /* malloc'd, NUL-terminated ("" when none) */
    bank_seg_ref *segs;         /* [n_segs], the template segment included */
    size_t n_segs;
    uint64_t *tombstones;       /* [n_tombstones] deleted indices, strictly increasing */
    size_t n_tombstones;
} bank_manifest;

typedef struct bank_doc_rec {   /* one decoded document record */
    uint64_t index, n_tokens, chunk_first;  /* chunk_first: first chunk within the segment */
    uint32_t n_chunks, flags;
    uint64_t id_off;                        /* in STRINGS */
    uint32_t id_len, meta_len;
    uint64_t meta_off;                      /* in STRINGS */
    uint64_t text_off, text_zlen, text_len; /* in TEXT */
    uint8_t hash[16];
    uint64_t content_off;                   /* in CONTENT */
    uint64_t content_hash;                  /* XXH3-64 of the document's content bytes */
} bank_doc_rec;

typedef struct bank_section {
    uint32_t type, layer;
    uint64_t offset, size, hash;
} bank_section;

typedef struct bank_segment {   /* a parsed segment over a byte range (a mapped file or part of an export) */
    const uint8_t *base;
    uint64_t size;
    uint64_t seg_id, n_docs, n_chunks, header_hash;
    uint32_t kind;
    uint32_t n_sections;
    bank_section sections[BANK_MAX_SECTIONS];
    const uint8_t *docs, *strings, *text, *content, *tmpl;
    uint64_t strings_size, text_size, content_size;
    const uint8_t *route[MSA_BANK_MAX_LAYERS];
} bank_segment;

/* little-endian access */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static inline uint64_t bank_align_up(uint64_t x) { return (x + BANK_ALIGN - 1) & ~(uint64_t)(BANK_ALIGN - 1); }

/* Shape checks shared by create and the parsers (bounded dims, increasing router layers). */
msa_status bank_shape_validate(const msa_bank_shape *s, const char *name);
/* Bytes per chunk of one slot: routing keys, and K̄ (= V̄) */
uint64_t bank_route_row_bytes(const msa_bank_shape *s, int slot);
uint64_t bank_kv_row_bytes(const msa_bank_shape *s);
/* Content bytes of a document of n_chunks (all slots, K̄ and V̄); 0 in read mode. */
uint64_t bank_doc_content_bytes(const msa_bank_shape *s, uint64_t n_chunks);
uint64_t bank_template_bytes(const msa_bank_shape *s);

/* Parse a MANIFEST image (hostile input). name labels messages. On success *out owns malloc'd arrays
 * (bank_manifest_free). MSA_ERR_BAD_DATA for anything malformed, including an unknown major version. */
msa_status bank_manifest_parse(const uint8_t *buf, size_t len, const char *name, bank_manifest *out);
/* Encode m; *buf is malloc'd (caller frees). */
msa_status bank_manifest_encode(const bank_manifest *m, uint8_t **buf, size_t *len);
void bank_manifest_free(bank_manifest *m);
/* Deep copy (for a writer's next version). */
msa_status bank_manifest_copy(const bank_manifest *src, bank_manifest *dst);

/* Parse a segment image: header, section table, the document table and strings (their checksums are
 * checked here; routing, content and text checksums only by verify). shape and uuid come from the manifest. */
msa_status bank_segment_parse(const uint8_t *base, uint64_t size, const msa_bank_shape *shape,
                              const uint8_t uuid[16], const char *name, bank_segment *out);
/* Decode record i (< n_docs) of a parsed segment (already validated by bank_segment_parse). */
void bank_segment_doc(const bank_segment *seg, uint64_t i, bank_doc_rec *out);
void bank_doc_rec_encode(const bank_doc_rec *r, uint8_t out[BANK_DOC_RECORD_SIZE]);

/* Header checksum of a segment header image (its first 4088 bytes). */
uint64_t bank_seg_header_hash(const uint8_t *hdr);

#endif
