/* bank.h — internals of the memory bank shared by bank.c (open, versions, reads), writer.c (staging,
 * commit, compaction), tier.c (mapping and content reads), verify.c and export.c. */
#ifndef MSA_BANK_BANK_H
#define MSA_BANK_BANK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bank/format.h"
#include "msa.h"

/* One opened segment: a mapping (or a borrowed byte range of an export file) and what was derived from it. */
typedef struct bank_seg_view {
    bank_segment seg;
    void *map;              /* mmap of the whole file, NULL when borrowed */
    size_t map_len;
    int fd;                 /* always -1: no descriptor is kept (the mapping is enough; reads open on demand) */
    bool file;              /* a mapped file (else a borrowed byte range of an export) */
    dev_t dev;              /* the mapped file's identity, to tell it from a later file of the same name */
    ino_t ino;
    char *name;             /* file name for messages */
    uint8_t *route_ram[MSA_BANK_MAX_LAYERS]; /* routing keys copied to RAM (routing_in_ram), else NULL */
    int refs;               /* versions sharing this view */
} bank_seg_view;

typedef struct bank_live {  /* one document record of a version (an "entry"), live or deleted */
    uint32_t index;
    uint32_t seg;           /* position in version->segs */
    uint32_t rec;           /* record number in that segment */
    uint32_t dead;          /* tombstoned: kept in place (positions stay stable) until its segment is rewritten */
} bank_live;

typedef struct bank_run {   /* a maximal run of live chunks in one segment: one routing span */
    uint64_t first, n;
} bank_run;

typedef struct bank_seg_state { /* per segment of a version */
    bank_run *runs;
    uint32_t n_runs, cap_runs;
    uint64_t n_ent, n_dead; /* its entries in the table, and how many of them are deleted */
} bank_seg_state;

/* An immutable snapshot: a parsed manifest and the segments it names. */
typedef struct bank_version {
    bank_manifest man;
    bank_seg_view **segs;   /* [man.n_segs] */
    bank_seg_view *tmpl;    /* the template segment or NULL */
    uint32_t **chunk_doc;   /* [n_segs][n_chunks] stable index of each chunk, MSA_BANK_NO_DOC when deleted */
    bank_seg_state *sst;    /* [n_segs] */
    bank_live *live;        /* [n_ent] every record of the document segments, sorted by index */
    _Atomic unsigned char *verified; /* [n_ent] content checksum already checked (verify_content) */
    uint64_t n_ent, cap_ent;
    uint32_t *fen;          /* Fenwick tree over the entries' liveness [fen_cap + 1]: the i-th live entry */
    uint64_t fen_cap;
    uint64_t n_live, n_deleted, n_tokens, n_chunks, text_bytes, bytes;
    uint64_t *id_slots;     /* open-addressing table of live entry positions + 1 (0 = empty), id_cap entries */
    uint64_t id_cap;
    msa_bank_span *spans[MSA_BANK_MAX_LAYERS]; /* [n_spans] per router slot */
    size_t n_spans;
    uint64_t serial;        /* unique in the process (msa_bank_snapshot_id) */
} bank_version;

typedef struct bank_pending bank_pending;

struct msa_bank {
    char *path;
    msa_bank_open_params params;
    bank_version *v;
    int lock_fd;            /* writer: the flock'd LOCK file, else -1 */
    bool writable;
    bool poisoned;          /* an I/O failure happened on this writer */
    bank_pending *pend;     /* writer staging (NULL when nothing staged) */
    bank_manifest work;     /* writer: the next manifest being prepared */
};

/* Build a version of the bank at path from manifest m (taken over). Segment views of prev (may be NULL) with
 * the same id are shared instead of mapped again. For a reader a missing segment means the manifest moved
 * on (compaction): MSA_ERR_NOT_FOUND is returned so the caller can retry with the newer manifest. */
msa_status bank_version_build(const char *path, bank_manifest *m, const bank_version *prev, bool routing_in_ram,
                              bank_version **out);
/* The version after a writer's own commit or merge (manifest m, taken over): derived from prev (whose
 * structures it may take over; the caller frees prev after success) in time proportional to the change,
 * else rebuilt. */
msa_status bank_version_next(const char *path, bank_manifest *m, bank_version *prev, bool routing_in_ram,
                             bank_version **out);
/* The same over segments inside one mapped export image (borrowed; no files opened). */
msa_status bank_version_from_image(const uint8_t *base, uint64_t size, bank_manifest *m, const uint64_t *seg_off,
                                   const uint64_t *seg_size, const char *name, bank_version **out);
void bank_version_free(bank_version *v);
/* Read and parse dir/MANIFEST. */
msa_status bank_read_manifest(const char *path, bank_manifest *out);
/* Position of live document with id in v, or UINT64_MAX. */
uint64_t bank_version_find_id(const bank_version *v, const char *id);
/* Records indexed by version builds and derivations since the process started (tests: the work of a commit). */
uint64_t bank_records_indexed(void);

/* An id of the handle's current snapshot, unique within the process (a new one after every refresh or commit):
 * what caches of a snapshot's routing keys key on (memory/route_resident.c). */
uint64_t msa_bank_snapshot_id(const msa_bank *b);
/* Entry position of the i-th live document (i < n_live), in index order. */
uint64_t bank_version_nth(const bank_version *v, uint64_t i);
/* Position of live index in v, or UINT64_MAX. */
uint64_t bank_version_find_index(const bank_version *v, uint64_t index);
void bank_version_doc(const bank_version *v, uint64_t pos, bank_doc_rec *rec, const bank_seg_view **seg);

/* tier.c: map one segment file; copy routing keys to RAM when asked. */
msa_status bank_seg_map(const char *dir, const bank_seg_ref *ref, const msa_bank_shape *shape,
                        const uint8_t uuid[16], bool routing_in_ram, bank_seg_view **out);
void bank_seg_unref(bank_seg_view *sv);
/* Routing keys of slot inside a view (RAM copy or mapping). */
const uint8_t *bank_seg_route(const bank_seg_view *sv, int slot);
/* Decompress document record r's text frame from segment sv's mapping into buf (r->text_len bytes): MSA_OK,
 * MSA_ERR_BAD_DATA for a corrupt frame, MSA_ERR_IO when the mapped read faulted (fault_guard.h). */
msa_status bank_seg_text(const bank_seg_view *sv, const bank_doc_rec *r, char *buf);

/* writer.c */
void bank_pending_free(bank_pending *p);
/* Write the live documents of v's segments with ids >= min_seg_id (0: all) as one segment into fd at base
 * (compaction, the merge policy, export); *ref describes it. */
msa_status bank_write_compacted(const bank_version *v, uint64_t min_seg_id, int fd, uint64_t base, uint64_t seg_id,
                                const char *name, bank_seg_ref *ref);
/* Tests and benchmarks: switch the automatic merge at commit off (on by default). */
void bank_set_auto_compact(bool on);
/* Write the manifest m atomically into dir (temp, fsync, rename, fsync dir); *renamed (may be NULL) says
 * whether the rename happened (then a failure came from the directory fsync and the new manifest may stand). */
msa_status bank_write_manifest(const char *dir, const bank_manifest *m, bool *renamed);
/* Stage a document with a given index (>= the next index); add and import use it. */
msa_status bank_stage_doc(msa_bank *b, const msa_bank_doc *d, const uint8_t hash[16], uint64_t index);
/* Import: copy a verified document segment image into the bank as a new segment (header patched with this
 * bank's segment id and uuid), fsynced now, published by the next commit (writer.c). max_index: its highest
 * document index. drop_pages: img is a read-only shared file mapping whose pages may be dropped as copied. */
msa_status bank_stage_segment_copy(msa_bank *b, const uint8_t *img, uint64_t size, uint64_t n_docs, uint64_t n_chunks,
                                   uint64_t max_index, bool drop_pages);
/* bank.c: create a bank's files in a new directory path (mkdir, exclusive); remove a directory this process
 * made (never through a symbolic link); rename a finished bank directory tmp to path (only onto nothing or an
 * empty directory: MSA_ERR_CONFLICT otherwise, tmp removed) and fsync the parent. */
msa_status bank_create_dir(const char *path, const msa_bank_create_params *params);
msa_status bank_remove_dir(const char *dir);
msa_status bank_publish_dir(const char *tmp, const char *path);
/* Remove the work directories of creates and imports of path whose process died (see bank.c). */
void bank_clean_stale_work_dirs(const char *path);
/* Writer open: remove files a crashed writer left behind. */
void bank_clean_orphans(msa_bank *b);
/* Segment file name of id inside dir into buf. */
void bank_seg_path(char *buf, size_t size, const char *dir, uint64_t seg_id);

#endif
