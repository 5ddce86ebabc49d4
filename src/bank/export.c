/* export.c — one portable file holding a bank's live content: a checksummed header, the template segment,
 * one compacted document segment and a manifest naming them (docs/bank-format.md, "Export file").
 * Import verifies the whole file, then recreates the bank with the same document indices. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "bank/bank.h"
#include "bank/bank_io.h"
#include "util/error.h"

#define EXPORT_HEADER 4096u
#define EXPORT_MAX_SEGS 2u

static msa_status export_version(const msa_bank *b, const bank_version *v, const char *path_in);

/* Export holds a shared lock on LOCK for its whole run: no writer can open the bank, so none can publish a
 * version while the file is written, and what is exported is the bank's newest version at the time the
 * lock was taken (a reader handle's pinned version may be older: it is read again, without changing the
 * handle). A writer already at work makes export fail with MSA_ERR_LOCKED, as it does a second writer. A
 * writer handle exports its own version: it holds the exclusive lock itself. */
msa_status msa_bank_export(const msa_bank *b, const char *path_in) {
    if (!b || !path_in) return msa_fail(MSA_ERR_INVALID_ARG, "msa_bank_export: NULL argument");
    if (b->writable) return export_version(b, b->v, path_in);
    char lock[4096 + 16];
    snprintf(lock, sizeof lock, "%s/LOCK", b->path);
    int fd = open(lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return msa_fail(errno == ELOOP ? MSA_ERR_BAD_DATA : MSA_ERR_IO, "%s: cannot open: %s", lock, strerror(errno));
    struct stat sb;
    msa_status st = MSA_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file (bank files must be regular files)", lock);
    else if (flock(fd, LOCK_SH | LOCK_NB) != 0)
        st = errno == EWOULDBLOCK ? msa_fail(MSA_ERR_LOCKED, "%s: locked by a writer; export when it is done", b->path)
                                  : msa_fail(MSA_ERR_IO, "%s: cannot lock: %s", lock, strerror(errno));
    bank_manifest m;
    if (!st) st = bank_read_manifest(b->path, &m);
    if (!st && m.generation == b->v->man.generation && !memcmp(m.uuid, b->v->man.uuid, 16)) {
        bank_manifest_free(&m);
        st = export_version(b, b->v, path_in);
    } else if (!st) {
        bank_version *v = NULL; /* the newest version, built beside the handle's (shared segment mappings) */
        st = bank_version_build(b->path, &m, b->v, false, &v);
        if (st == MSA_ERR_NOT_FOUND) st = MSA_ERR_BAD_DATA; /* under the lock no writer can move files away */
        if (!st) st = export_version(b, v, path_in);
        bank_version_free(v);
    }
    close(fd); /* releases the shared lock */
    return st;
}

static msa_status export_version(const msa_bank *b, const bank_version *v, const char *path_in) {
    char path[4096], dir[4096], tmp[4096 + 128];
    MSA_TRY(bank_path_norm(path_in, path, sizeof path, "bank export"));
    bank_parent_dir(path, dir, sizeof dir);
    /* an export never lands inside a bank directory: a name there (MANIFEST, a segment, LOCK) is the bank's */
    struct stat sd, sb, sp;
    if (stat(dir, &sd) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: %s", dir, strerror(errno));
    if (stat(b->path, &sb) == 0 && sd.st_dev == sb.st_dev && sd.st_ino == sb.st_ino)
        return msa_fail(MSA_ERR_INVALID_ARG, "%s: an export cannot be written inside the bank directory", path);
    char probe[4096 + 16];
    snprintf(probe, sizeof probe, "%s/MANIFEST", dir);
    char lock[4096 + 16];
    snprintf(lock, sizeof lock, "%s/LOCK", dir);
    if (lstat(probe, &sp) == 0 && lstat(lock, &sp) == 0)
        return msa_fail(MSA_ERR_INVALID_ARG, "%s: an export cannot be written inside a bank directory", path);
    if (lstat(path, &sp) == 0 && !S_ISREG(sp.st_mode))
        return msa_fail(MSA_ERR_CONFLICT, "%s: exists and is not a regular file", path);
    bank_tmp_name(tmp, sizeof tmp, dir, bank_base_name(path), "export"); /* unique: never another's temp */
    int fd = bank_io()->open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    bank_manifest m;
    msa_status st = bank_manifest_copy(&v->man, &m);
    if (st) {
        bank_io()->close(fd);
        bank_io()->unlink(tmp);
        return st;
    }
    uint64_t pos = EXPORT_HEADER, offs[EXPORT_MAX_SEGS], sizes[EXPORT_MAX_SEGS];
    size_t n = 0;
    if (v->tmpl) { /* the template segment byte for byte */
        for (size_t i = 0; i < v->man.n_segs; i++)
            if (v->man.segs[i].seg_id == v->man.template_seg) m.segs[n] = v->man.segs[i];
        st = bank_write_all(fd, v->tmpl->seg.base, v->tmpl->seg.size, pos, tmp);
        offs[n] = pos;
        sizes[n] = v->tmpl->seg.size;
        pos = bank_align_up(pos + sizes[n]);
        n++;
    }
    if (!st && v->n_live) {
        uint64_t seg_id = v->man.next_seg_id;
        st = bank_write_compacted(v, 0, fd, pos, seg_id, tmp, &m.segs[n]);
        m.next_seg_id = seg_id + 1;
        offs[n] = pos;
        sizes[n] = m.segs[n].file_size;
        pos = bank_align_up(pos + sizes[n]);
        n++;
    }
    m.n_segs = n;
    m.n_tombstones = 0;
    uint8_t *mbuf = NULL;
    size_t mlen = 0;
    if (!st) st = bank_manifest_encode(&m, &mbuf, &mlen);
    if (!st) st = bank_write_all(fd, mbuf, mlen, pos, tmp);
    if (!st) {
        uint8_t h[EXPORT_HEADER];
        memset(h, 0, sizeof h);
        memcpy(h, BANK_EXPORT_MAGIC, 8);
        wr16(h + 8, BANK_MAJOR);
        wr16(h + 10, BANK_MINOR);
        wr32(h + 12, (uint32_t)n);
        wr64(h + 16, pos + mlen);
        wr64(h + 24, pos);
        wr64(h + 32, mlen);
        for (size_t i = 0; i < n; i++) {
            wr64(h + 40 + 24 * i, m.segs[i].seg_id);
            wr64(h + 48 + 24 * i, offs[i]);
            wr64(h + 56 + 24 * i, sizes[i]);
        }
        wr64(h + EXPORT_HEADER - 8, XXH3_64bits(h, EXPORT_HEADER - 8));
        st = bank_write_all(fd, h, sizeof h, 0, tmp);
    }
    free(mbuf);
    bank_manifest_free(&m);
    if (!st) st = bank_fsync(fd, tmp);
    bank_io()->close(fd);
    if (!st && bank_io()->rename(tmp, path) != 0) st = msa_fail(MSA_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (st) {
        bank_io()->unlink(tmp);
        return st;
    }
    return bank_fsync_dir(dir);
}

/* Map and fully check an export file; *v is a version over the mapping (borrowed segments). */
static msa_status open_export(const char *path, void **map, size_t *map_len, bank_version **out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? msa_fail(MSA_ERR_NOT_FOUND, "%s: no such file", path)
                               : msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)EXPORT_HEADER) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank export (too short)", path);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return msa_fail(MSA_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    msa_status st = MSA_OK;
    if (memcmp(p, BANK_EXPORT_MAGIC, 8) != 0) st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank export (bad magic)", path);
    else if (rd16(p + 8) != BANK_MAJOR)
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: unknown export format major version %u", path, rd16(p + 8));
    else if (rd64(p + EXPORT_HEADER - 8) != XXH3_64bits(p, EXPORT_HEADER - 8))
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: export header checksum mismatch (corrupt)", path);
    else if (rd64(p + 16) != len)
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: export is %zu bytes but declares %llu (truncated?)", path, len,
                      (unsigned long long)rd64(p + 16));
    uint32_t n = st ? 0 : rd32(p + 12);
    uint64_t moff = rd64(p + 24), mlen = rd64(p + 32);
    if (!st && (n > EXPORT_MAX_SEGS || moff > len || mlen > len - moff))
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: export table out of range", path);
    bank_manifest m;
    if (!st) st = bank_manifest_parse(p + moff, mlen, path, &m);
    if (!st && m.n_segs != n) {
        bank_manifest_free(&m);
        st = msa_fail(MSA_ERR_BAD_DATA, "%s: export table and manifest disagree", path);
    }
    uint64_t offs[EXPORT_MAX_SEGS] = {0}, sizes[EXPORT_MAX_SEGS] = {0};
    for (uint32_t i = 0; !st && i < n; i++) {
        if (rd64(p + 40 + 24 * i) != m.segs[i].seg_id) {
            bank_manifest_free(&m);
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: export table and manifest disagree", path);
            break;
        }
        offs[i] = rd64(p + 48 + 24 * i);
        sizes[i] = rd64(p + 56 + 24 * i);
    }
    bank_version *v = NULL;
    if (!st) st = bank_version_from_image(p, len, &m, offs, sizes, path, &v);
    if (!st && v->n_deleted) st = msa_fail(MSA_ERR_BAD_DATA, "%s: export holds deleted documents", path);
    size_t n_doc_segs = 0; /* an export has one compacted document segment (import copies it whole) */
    for (size_t i = 0; !st && i < v->man.n_segs; i++) n_doc_segs += v->segs[i]->seg.kind == BANK_SEG_DOCS;
    if (!st && n_doc_segs > 1) st = msa_fail(MSA_ERR_BAD_DATA, "%s: export holds more than one document segment", path);
    if (!st) { /* every checksum, before anything is written */
        msa_bank tmp = {.path = (char *)path, .v = v, .lock_fd = -1};
        st = msa_bank_verify(&tmp, NULL, NULL, NULL);
        /* the scan read the whole file through the mapping: give those pages back (page cache, read again
         * on demand) so that import's resident memory does not grow with the export */
        madvise(p, len, MADV_DONTNEED);
    }
    if (st) {
        bank_version_free(v);
        munmap(p, len);
        return st;
    }
    *map = p;
    *map_len = len;
    *out = v;
    return MSA_OK;
}

static bool same_shape(const msa_bank_shape *a, const msa_bank_shape *b) {
    if (a->mode != b->mode || a->dtype != b->dtype || a->n_layers != b->n_layers || a->n_router != b->n_router ||
        a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim || a->pooling != b->pooling ||
        a->n_template != b->n_template)
        return false;
    for (int i = 0; i < a->n_router; i++)
        if (a->router_layers[i] != b->router_layers[i] || a->route_dim[i] != b->route_dim[i]) return false;
    return true;
}

/* Whether path is absent or an empty directory (then import makes a new bank there). */
static bool import_target_new(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return errno == ENOENT;
    if (!S_ISDIR(sb.st_mode)) return false;
    DIR *d = opendir(path);
    if (!d) return false;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
    closedir(d);
    return empty;
}

msa_status msa_bank_import(const char *path, const char *bank_path_in, uint64_t *n_docs) {
    char bank_path[4096];
    MSA_TRY(bank_path_norm(bank_path_in, bank_path, sizeof bank_path, "bank import"));
    void *map = NULL;
    size_t map_len = 0;
    bank_version *ev = NULL;
    MSA_TRY(open_export(path, &map, &map_len, &ev));
    const msa_bank_shape *sh = &ev->man.shape;
    msa_status st = MSA_OK;
    /* a new bank is built whole in a hidden sibling of a unique name (made with mkdir: exclusive, never a
     * name another import or a symbolic link could own) and renamed into place, which succeeds only onto
     * nothing or an empty directory: of two imports into one new path exactly one wins; a failed import
     * removes only its own directory */
    char tmp_path[4096 + 128] = "";
    const char *target = bank_path;
    if (import_target_new(bank_path)) {
        bank_clean_stale_work_dirs(bank_path);
        char parent[4096];
        bank_parent_dir(bank_path, parent, sizeof parent);
        bank_tmp_name(tmp_path, sizeof tmp_path, parent, bank_base_name(bank_path), "importing");
        target = tmp_path;
        msa_bank_create_params cp = {.shape = *sh, .model_path = ev->man.model_path};
        memcpy(cp.fingerprint, ev->man.fingerprint, 32);
        st = bank_create_dir(target, &cp);
        if (st) tmp_path[0] = '\0'; /* nothing of ours to remove */
    }
    if (!st && !tmp_path[0]) {
        /* an existing bank that ever held a document is refused before taking its lock: the answer is
         * "conflict" whether or not another writer happens to hold it right now */
        msa_bank *rb = NULL;
        st = msa_bank_open(bank_path, NULL, &rb);
        if (!st && (rb->v->man.next_index != 0 || rb->v->n_live != 0))
            st = msa_fail(MSA_ERR_CONFLICT, "%s: import needs a new or empty bank (documents keep their indices)",
                          bank_path);
        msa_bank_close(rb);
    }
    msa_bank *b = NULL;
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = true;
    /* one commit at the end, new bank or existing empty one: the documents arrive as one copied segment
     * (bank_stage_segment_copy), never staged in memory, so nothing partial is ever visible and memory does
     * not grow with the export */
    if (!st) st = msa_bank_open(target, &op, &b);
    if (!st && !same_shape(&b->v->man.shape, sh))
        st = msa_fail(MSA_ERR_MISMATCH, "%s: bank shape differs from the export's", bank_path);
    if (!st) st = msa_bank_check_fingerprint(b, ev->man.fingerprint);
    if (!st && (b->work.next_index != 0 || b->v->n_live != 0))
        st = msa_fail(MSA_ERR_CONFLICT, "%s: import needs a new or empty bank (documents keep their indices)", bank_path);
    if (!st && ev->tmpl) {
        uint64_t half = bank_template_bytes(sh) / 2 / (uint64_t)sh->n_layers;
        uint8_t *k = malloc(bank_template_bytes(sh) + 1), *vv = malloc(bank_template_bytes(sh) + 1);
        if (!k || !vv) st = msa_fail(MSA_ERR_NOMEM, "import: out of memory");
        for (int l = 0; !st && l < sh->n_layers; l++) {
            memcpy(k + (uint64_t)l * half, ev->tmpl->seg.tmpl + (uint64_t)l * 2 * half, half);
            memcpy(vv + (uint64_t)l * half, ev->tmpl->seg.tmpl + (uint64_t)l * 2 * half + half, half);
        }
        if (!st) st = msa_bank_set_template(b, k, vv);
        free(k);
        free(vv);
    }
    /* every document's content hash recomputed from its text and metadata, one document at a time, before
     * anything of it is written */
    for (uint64_t i = 0; !st && i < ev->n_live; i++) {
        bank_doc_rec r;
        const bank_seg_view *sv;
        bank_version_doc(ev, bank_version_nth(ev, i), &r, &sv);
        char *text;
        size_t text_len;
        msa_bank tmp = {.path = (char *)path, .v = ev, .lock_fd = -1};
        if ((st = msa_bank_doc_text(&tmp, (uint32_t)r.index, &text, &text_len))) break;
        uint8_t h[16];
        msa_bank_content_hash(text, text_len, (const char *)sv->seg.strings + r.meta_off, h);
        free(text);
        if (memcmp(h, r.hash, 16))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: document '%.200s' does not match its content hash", path,
                          (const char *)sv->seg.strings + r.id_off);
    }
    /* the document segment itself is copied whole, straight from the mapping into a new segment file: no
     * document is staged in memory, so an import of any size needs no more memory than a small one
     * (docs/bank-format.md §5) */
    for (size_t i = 0; !st && i < ev->man.n_segs; i++) {
        const bank_segment *sg = &ev->segs[i]->seg;
        if (sg->kind != BANK_SEG_DOCS || !sg->n_docs) continue;
        bank_doc_rec last;
        bank_segment_doc(sg, sg->n_docs - 1, &last);
        st = bank_stage_segment_copy(b, sg->base, sg->size, sg->n_docs, sg->n_chunks, last.index, true);
    }
    if (!st && ev->man.next_index > b->work.next_index) b->work.next_index = ev->man.next_index;
    if (!st) st = msa_bank_commit(b);
    if (!st && n_docs) *n_docs = ev->n_live;
    msa_bank_close(b);
    if (tmp_path[0]) {
        if (!st) st = bank_publish_dir(tmp_path, bank_path); /* removes tmp_path itself when it loses */
        else bank_remove_dir(tmp_path);
    }
    bank_version_free(ev);
    munmap(map, map_len);
    return st;
}
