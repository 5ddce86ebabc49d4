/* bank.c — the memory bank: creating a bank directory, opening it (writer lock, consistent versions built
 * from the MANIFEST and its segments), and every read: document table by index and id, text, content K̄/V̄,
 * routing-key spans, template prefix. Staging, commit and compaction live in writer.c. */
#include "bank/bank.h"

#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "bank/bank_io.h"
#include "util/error.h"

#define MAX_MANIFEST_BYTES ((uint64_t)1 << 30)
#define OPEN_RETRIES 20

msa_status msa_bank_shape_named(const char *name, msa_bank_shape *out) {
    memset(out, 0, sizeof *out);
    if (name && !strcmp(name, "msa-4b")) {
        *out = (msa_bank_shape){.mode = MSA_BANK_NATIVE, .dtype = MSA_BANK_BF16, .n_layers = 36, .n_router = 18,
                                .n_kv_heads = 8, .head_dim = 128, .pooling = 64, .n_template = 3};
        for (int i = 0; i < 18; i++) {
            out->router_layers[i] = 18 + i;
            out->route_dim[i] = 8 * 128;
        }
        return MSA_OK;
    }
    if (name && !strcmp(name, "synthetic-small")) {
        *out = (msa_bank_shape){.mode = MSA_BANK_NATIVE, .dtype = MSA_BANK_F32, .n_layers = 4, .n_router = 2,
                                .n_kv_heads = 2, .head_dim = 8, .pooling = 4, .n_template = 3};
        for (int i = 0; i < 2; i++) {
            out->router_layers[i] = 2 + i;
            out->route_dim[i] = 2 * 8;
        }
        return MSA_OK;
    }
    return msa_fail(MSA_ERR_INVALID_ARG, "unknown bank shape '%s' (msa-4b, synthetic-small)", name ? name : "");
}

void msa_bank_content_hash(const char *text, size_t text_len, const char *meta_json, uint8_t out[16]) {
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    uint8_t n[8];
    wr64(n, text_len);
    XXH3_128bits_update(&st, n, 8);
    XXH3_128bits_update(&st, text, text_len);
    size_t meta_len = meta_json ? strlen(meta_json) : 0;
    wr64(n, meta_len);
    XXH3_128bits_update(&st, n, 8);
    XXH3_128bits_update(&st, meta_json ? meta_json : "", meta_len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
    memcpy(out, c.digest, 16);
}

msa_status msa_bank_check_id(const char *id) {
    if (!id) return msa_fail(MSA_ERR_INVALID_ARG, "document without an id");
    size_t n = strlen(id);
    if (n < 1 || n > BANK_MAX_ID_LEN)
        return msa_fail(MSA_ERR_INVALID_ARG, "document id must be 1..%u bytes (got %zu)", BANK_MAX_ID_LEN, n);
    const uint8_t *p = (const uint8_t *)id;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c < 0x20 || c == 0x7f)
            return msa_fail(MSA_ERR_INVALID_ARG, "document id contains a control character (byte %zu)", i);
        if (c < 0x80) {
            i++;
            continue;
        }
        /* UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF */
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 3) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);
        if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90);
        if (!ok) return msa_fail(MSA_ERR_INVALID_ARG, "document id is not valid UTF-8 (byte %zu)", i);
        i += len;
    }
    return MSA_OK;
}

msa_bank_open_params msa_bank_default_open_params(void) {
    msa_bank_open_params p = {.writable = false, .verify_content = false, .routing_in_ram = false,
                              .max_pending_bytes = 0};
    return p;
}

/* ------------------------------------------------------------------------------------------------ create */

static msa_status create_files(const char *path, const msa_bank_create_params *params) {
    bank_manifest m = {0};
    m.shape = params->shape;
    memcpy(m.fingerprint, params->fingerprint, 32);
    if (getrandom(m.uuid, sizeof m.uuid, 0) != (ssize_t)sizeof m.uuid) {
        uint64_t t = (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&m;
        memcpy(m.uuid, &t, 8);
    }
    m.next_seg_id = 1;
    m.model_path = (char *)(params->model_path ? params->model_path : "");
    char lock[4096 + 16];
    snprintf(lock, sizeof lock, "%s/LOCK", path);
    int fd = bank_io()->open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot create: %s", lock, strerror(errno));
    msa_status st = bank_fsync(fd, lock);
    bank_io()->close(fd);
    if (st) return st;
    return bank_write_manifest(path, &m, NULL); /* fsyncs the directory: LOCK and MANIFEST names durable */
}

msa_status bank_remove_dir(const char *dir) {
    struct stat sb;
    /* never through a symbolic link: only a real directory this process made is emptied */
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return MSA_OK;
    DIR *d = opendir(dir);
    if (!d) return msa_fail(MSA_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    char p[4096 + 300];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        bank_io()->unlink(p); /* unlink removes a link itself, never its target */
    }
    closedir(d);
    bank_io()->rmdir(dir);
    return MSA_OK;
}

msa_status bank_create_dir(const char *path, const msa_bank_create_params *params) {
    if (bank_io()->mkdir(path, 0755) != 0)
        return msa_fail(errno == EEXIST ? MSA_ERR_CONFLICT : MSA_ERR_IO, "%s: cannot create directory: %s", path,
                        strerror(errno));
    msa_status st = create_files(path, params);
    if (st) bank_remove_dir(path);
    return st;
}

msa_status bank_publish_dir(const char *tmp, const char *path) {
    /* rename(2) of a directory replaces only an empty directory: of two creators (or importers) of one
     * path exactly one wins, and the loser's bank is never mixed into the winner's */
    if (bank_io()->rename(tmp, path) != 0) {
        int e = errno;
        bank_remove_dir(tmp);
        if (e == ENOTEMPTY || e == EEXIST || e == ENOTDIR || e == EISDIR)
            return msa_fail(MSA_ERR_CONFLICT, "%s: exists and is not an empty directory", path);
        return msa_fail(MSA_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    char parent[4096];
    bank_parent_dir(path, parent, sizeof parent);
    return bank_fsync_dir(parent); /* the bank's name in its parent */
}

msa_status msa_bank_create(const char *path_in, const msa_bank_create_params *params) {
    if (!path_in || !params) return msa_fail(MSA_ERR_INVALID_ARG, "msa_bank_create: NULL argument");
    char path[4096];
    MSA_TRY(bank_path_norm(path_in, path, sizeof path, "bank create"));
    msa_status st = bank_shape_validate(&params->shape, "bank shape");
    if (st) {
        char why[512]; /* a copy: the message buffer cannot be formatted into itself */
        snprintf(why, sizeof why, "%s", msa_last_error());
        return msa_fail(MSA_ERR_INVALID_ARG, "%s", why);
    }
    if (params->model_path && strlen(params->model_path) > BANK_MAX_MODEL_PATH)
        return msa_fail(MSA_ERR_INVALID_ARG, "model path too long");
    struct stat sb;
    if (lstat(path, &sb) == 0) { /* a clear message for the common case; the rename below is the real check */
        if (!S_ISDIR(sb.st_mode)) return msa_fail(MSA_ERR_CONFLICT, "%s: exists and is not a directory", path);
        DIR *d = opendir(path);
        if (!d) return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
        struct dirent *e;
        bool empty = true;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
        closedir(d);
        if (!empty) return msa_fail(MSA_ERR_CONFLICT, "%s: exists and is not empty", path);
    }
    /* built whole in a hidden sibling, then renamed into place: a crash leaves either no bank at PATH or a
     * complete empty one, never a directory every command rejects */
    char parent[4096], tmp[4096 + 128];
    bank_parent_dir(path, parent, sizeof parent);
    bank_tmp_name(tmp, sizeof tmp, parent, bank_base_name(path), "creating");
    MSA_TRY(bank_create_dir(tmp, params));
    return bank_publish_dir(tmp, path);
}

/* ------------------------------------------------------------------------------------------------ versions */

msa_status bank_read_manifest(const char *path, bank_manifest *out) {
    char name[4096 + 16];
    snprintf(name, sizeof name, "%s/MANIFEST", path);
    int fd;
    uint64_t size;
    msa_status ost = bank_open_regular(name, &fd, &size); /* a FIFO or symlink here is malformed, not a hang */
    if (ost == MSA_ERR_NOT_FOUND) {
        struct stat st;
        if (stat(path, &st) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no such bank", path);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank (no MANIFEST)", path);
    }
    if (ost) return ost;
    struct stat st;
    st.st_size = (off_t)size;
    if ((uint64_t)st.st_size > MAX_MANIFEST_BYTES) {
        close(fd);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: manifest too large (%lld bytes)", name, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    msa_status s = got == len ? bank_manifest_parse(buf, len, name, out)
                              : msa_fail(MSA_ERR_IO, "%s: short read", name);
    free(buf);
    return s;
}

static uint64_t id_hash(const char *id) { return XXH3_64bits(id, strlen(id)); }

static const char *live_id(const bank_version *v, uint64_t pos) {
    const bank_live *l = &v->live[pos];
    const bank_segment *s = &v->segs[l->seg]->seg;
    const uint8_t *rec = s->docs + l->rec * BANK_DOC_RECORD_SIZE;
    return (const char *)s->strings + rd64(rec + 32);
}

uint64_t bank_version_find_id(const bank_version *v, const char *id) {
    if (!v->id_cap) return UINT64_MAX;
    uint64_t mask = v->id_cap - 1;
    for (uint64_t h = id_hash(id) & mask;; h = (h + 1) & mask) {
        uint64_t e = v->id_slots[h];
        if (!e) return UINT64_MAX;
        if (!strcmp(live_id(v, e - 1), id)) return e - 1;
    }
}

uint64_t bank_version_find_index(const bank_version *v, uint64_t index) {
    uint64_t lo = 0, hi = v->n_live;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (v->live[mid].index < index) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n_live && v->live[lo].index == index ? lo : UINT64_MAX;
}

void bank_version_doc(const bank_version *v, uint64_t pos, bank_doc_rec *rec, const bank_seg_view **seg) {
    const bank_live *l = &v->live[pos];
    bank_segment_doc(&v->segs[l->seg]->seg, l->rec, rec);
    if (seg) *seg = v->segs[l->seg];
}

void bank_version_free(bank_version *v) {
    if (!v) return;
    if (v->segs)
        for (size_t i = 0; i < v->man.n_segs; i++) bank_seg_unref(v->segs[i]);
    free(v->segs);
    if (v->chunk_doc)
        for (size_t i = 0; i < v->man.n_segs; i++) free(v->chunk_doc[i]);
    free(v->chunk_doc);
    free(v->live);
    free((void *)v->verified);
    free(v->id_slots);
    for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) free(v->spans[l]);
    bank_manifest_free(&v->man);
    free(v);
}

static bool is_tombstoned(const bank_manifest *m, uint64_t index) {
    if (m->n_tombstones == 0) return false; /* the common case, without a search */
    size_t lo = 0, hi = m->n_tombstones;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->tombstones[mid] < index) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n_tombstones && m->tombstones[lo] == index;
}

static int cmp_live(const void *a, const void *b) {
    const bank_live *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Everything derived from the segments: live table, id index, chunk maps, spans. */
static msa_status version_index(bank_version *v, const char *name) {
    const bank_manifest *m = &v->man;
    uint64_t total_docs = 0;
    for (size_t i = 0; i < m->n_segs; i++) {
        bank_seg_view *sv = v->segs[i];
        if (sv->seg.kind == BANK_SEG_TEMPLATE) {
            if (m->template_seg != sv->seg.seg_id)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: unexpected template segment %s", name, sv->name);
            v->tmpl = sv;
        } else if (m->template_seg == sv->seg.seg_id) {
            return msa_fail(MSA_ERR_BAD_DATA, "%s: template segment %s holds documents", name, sv->name);
        }
        total_docs += sv->seg.n_docs;
        v->bytes += sv->seg.size;
    }
    v->live = malloc((total_docs + 1) * sizeof *v->live);
    v->chunk_doc = calloc(m->n_segs + 1, sizeof *v->chunk_doc);
    if (!v->live || !v->chunk_doc) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    uint64_t n_tomb_seen = 0;
    for (size_t i = 0; i < m->n_segs; i++) {
        bank_seg_view *sv = v->segs[i];
        const bank_segment *s = &sv->seg;
        if (s->kind != BANK_SEG_DOCS) continue;
        uint32_t *map = v->chunk_doc[i] = malloc((s->n_chunks + 1) * sizeof *map);
        if (!map) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
        for (uint64_t r = 0; r < s->n_docs; r++) {
            bank_doc_rec rec;
            bank_segment_doc(s, r, &rec);
            if (rec.index >= m->next_index)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: document index %llu in %s is beyond the manifest's next index",
                                name, (unsigned long long)rec.index, sv->name);
            bool dead = is_tombstoned(m, rec.index);
            if (dead) n_tomb_seen++;
            else {
                v->live[v->n_live++] = (bank_live){(uint32_t)rec.index, (uint32_t)i, r};
                v->n_tokens += rec.n_tokens;
                v->n_chunks += rec.n_chunks;
                v->text_bytes += rec.text_zlen;
            }
            for (uint32_t c = 0; c < rec.n_chunks; c++)
                map[rec.chunk_first + c] = dead ? MSA_BANK_NO_DOC : (uint32_t)rec.index;
        }
    }
    v->n_deleted = n_tomb_seen;
    bool sorted = true; /* segments in id order hold increasing indices: usually nothing to sort */
    for (uint64_t i = 1; i < v->n_live && sorted; i++) sorted = v->live[i - 1].index < v->live[i].index;
    if (!sorted) qsort(v->live, v->n_live, sizeof *v->live, cmp_live);
    v->verified = calloc(v->n_live + 1, sizeof *v->verified);
    if (!v->verified) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    for (uint64_t i = 1; i < v->n_live; i++)
        if (v->live[i].index == v->live[i - 1].index)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document index %u appears twice", name, v->live[i].index);
    /* id table */
    uint64_t cap = 16;
    while (cap < 2 * v->n_live) cap *= 2;
    v->id_slots = calloc(cap, sizeof *v->id_slots);
    if (!v->id_slots) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    v->id_cap = cap;
    for (uint64_t i = 0; i < v->n_live; i++) {
        const char *id = live_id(v, i);
        uint64_t h = id_hash(id) & (cap - 1);
        while (v->id_slots[h]) {
            if (!strcmp(live_id(v, v->id_slots[h] - 1), id))
                return msa_fail(MSA_ERR_BAD_DATA, "%s: document id '%.200s' appears twice", name, id);
            h = (h + 1) & (cap - 1);
        }
        v->id_slots[h] = i + 1;
    }
    /* spans: maximal runs of live chunks per segment (deleted documents are never routed) */
    size_t n_spans = 0, cap_spans = 16;
    msa_bank_span *tmp = malloc(cap_spans * sizeof *tmp);
    if (!tmp) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    uint32_t *spans_seg = malloc(cap_spans * sizeof *spans_seg);
    if (!spans_seg) {
        free(tmp);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    uint64_t *spans_first = malloc(cap_spans * sizeof *spans_first);
    if (!spans_first) {
        free(tmp);
        free(spans_seg);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    msa_status st = MSA_OK;
    for (size_t i = 0; i < m->n_segs && !st; i++) {
        const bank_seg_view *sv = v->segs[i];
        if (sv->seg.kind != BANK_SEG_DOCS) continue;
        for (uint64_t r = 0; r < sv->seg.n_docs && !st; r++) {
            bank_doc_rec rec;
            bank_segment_doc(&sv->seg, r, &rec);
            bool dead = v->chunk_doc[i][rec.chunk_first] == MSA_BANK_NO_DOC; /* decided above, once */
            if (!dead) {
                bool extend = n_spans > 0 && spans_seg[n_spans - 1] == i &&
                              spans_first[n_spans - 1] + tmp[n_spans - 1].n_chunks == rec.chunk_first;
                if (extend) {
                    tmp[n_spans - 1].n_chunks += rec.n_chunks;
                } else {
                    if (n_spans == cap_spans) {
                        cap_spans *= 2;
                        msa_bank_span *a = realloc(tmp, cap_spans * sizeof *tmp);
                        if (a) tmp = a;
                        uint32_t *b = realloc(spans_seg, cap_spans * sizeof *spans_seg);
                        if (b) spans_seg = b;
                        uint64_t *f = realloc(spans_first, cap_spans * sizeof *spans_first);
                        if (f) spans_first = f;
                        if (!a || !b || !f) {
                            st = msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
                            break;
                        }
                    }
                    tmp[n_spans] = (msa_bank_span){NULL, NULL, rec.n_chunks};
                    spans_seg[n_spans] = (uint32_t)i;
                    spans_first[n_spans] = rec.chunk_first;
                    n_spans++;
                }
            }
        }
    }
    for (int l = 0; l < m->shape.n_router && !st; l++) {
        v->spans[l] = malloc((n_spans + 1) * sizeof *v->spans[l]);
        if (!v->spans[l]) {
            st = msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
            break;
        }
        for (size_t k = 0; k < n_spans; k++) {
            const bank_seg_view *sv = v->segs[spans_seg[k]];
            v->spans[l][k] = (msa_bank_span){
                bank_seg_route(sv, l) + spans_first[k] * bank_route_row_bytes(&m->shape, l),
                v->chunk_doc[spans_seg[k]] + spans_first[k], tmp[k].n_chunks};
        }
    }
    v->n_spans = n_spans;
    free(tmp);
    free(spans_seg);
    free(spans_first);
    return st;
}

/* A version taking over manifest m (m is emptied, and freed on failure) with room for its segment views. */
static msa_status version_alloc(bank_manifest *m, const char *name, bank_version **out) {
    bank_version *v = calloc(1, sizeof *v);
    if (!v) {
        bank_manifest_free(m);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    v->man = *m;
    memset(m, 0, sizeof *m);
    v->segs = calloc(v->man.n_segs + 1, sizeof *v->segs);
    if (!v->segs) {
        bank_version_free(v);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    *out = v;
    return MSA_OK;
}

msa_status bank_version_build(const char *path, bank_manifest *m, const bank_version *prev, bool routing_in_ram,
                              bank_version **out) {
    bank_version *v;
    MSA_TRY(version_alloc(m, path, &v));
    msa_status st = MSA_OK;
    size_t n_ok = 0;
    for (size_t i = 0; i < v->man.n_segs && !st; i++) {
        const bank_seg_ref *ref = &v->man.segs[i];
        bank_seg_view *shared = NULL;
        if (prev)
            for (size_t j = 0; j < prev->man.n_segs; j++)
                if (prev->segs[j]->seg.seg_id == ref->seg_id && prev->segs[j]->seg.header_hash == ref->header_hash)
                    shared = prev->segs[j];
        if (shared) {
            shared->refs++;
            v->segs[i] = shared;
        } else {
            st = bank_seg_map(path, ref, &v->man.shape, v->man.uuid, routing_in_ram, &v->segs[i]);
        }
        if (!st) n_ok++;
    }
    if (st) {
        for (size_t i = 0; i < n_ok; i++) bank_seg_unref(v->segs[i]);
        free(v->segs);
        v->segs = NULL;
        bank_version_free(v);
        return st;
    }
    if (!st) st = version_index(v, path);
    if (st) {
        bank_version_free(v);
        return st;
    }
    *out = v;
    return MSA_OK;
}

/* ---------------------------------------------------------------------------------------------- open/close */

static msa_status load_newest(msa_bank *b, bool routing_in_ram) {
    for (int attempt = 0;; attempt++) {
        bank_manifest m;
        msa_status st = bank_read_manifest(b->path, &m);
        if (st) return st;
        bank_version *v;
        st = bank_version_build(b->path, &m, b->v, routing_in_ram, &v);
        if (st == MSA_ERR_NOT_FOUND && attempt < OPEN_RETRIES) {
            /* a compaction replaced the manifest between our read and the segment open: read it again */
            usleep(1000u * (unsigned)(attempt + 1));
            continue;
        }
        if (st == MSA_ERR_NOT_FOUND) st = MSA_ERR_BAD_DATA; /* a segment is really missing: malformed bank */
        if (st) return st;
        bank_version_free(b->v);
        b->v = v;
        return MSA_OK;
    }
}

/* A writer never acknowledges a state it has not made durable. What it finds may be visible without being
 * durable (an earlier writer died, or its directory fsync failed, between the MANIFEST rename and the
 * directory fsync; a create or import died before fsyncing the parent): a retried add would find its
 * documents "unchanged" and report success for data a power cut would take. So every writable open fsyncs
 * the MANIFEST, the bank directory and its parent before anything else; after that, everything it reports
 * is on disk. */
static msa_status make_durable(const msa_bank *b) {
    char name[4096 + 16], parent[4096];
    snprintf(name, sizeof name, "%s/MANIFEST", b->path);
    MSA_TRY(bank_fsync_file(name));
    MSA_TRY(bank_fsync_dir(b->path));
    bank_parent_dir(b->path, parent, sizeof parent);
    /* a parent this user may traverse but not read (mode --x) cannot be opened to fsync; the bank's name in
     * it was made durable by whoever created the bank there, so that is not a reason to refuse the bank */
    struct stat sb;
    int fd = bank_io()->open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return errno == EACCES || errno == EPERM ? MSA_OK : msa_fail(MSA_ERR_IO, "%s: cannot open directory: %s",
                                                                           parent, strerror(errno));
    msa_status st = fstat(fd, &sb) == 0 ? bank_fsync(fd, parent) : msa_fail(MSA_ERR_IO, "%s: %s", parent, strerror(errno));
    bank_io()->close(fd);
    return st;
}

msa_status msa_bank_open(const char *path_in, const msa_bank_open_params *params, msa_bank **out) {
    if (!path_in || !out) return msa_fail(MSA_ERR_INVALID_ARG, "msa_bank_open: NULL argument");
    char path[4096];
    MSA_TRY(bank_path_norm(path_in, path, sizeof path, "bank open"));
    msa_bank *b = calloc(1, sizeof *b);
    if (!b || !(b->path = strdup(path))) {
        free(b);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    b->params = params ? *params : msa_bank_default_open_params();
    if (!b->params.max_pending_bytes) b->params.max_pending_bytes = (size_t)64 << 20;
    b->lock_fd = -1;
    msa_status st = MSA_OK;
    if (b->params.writable) {
        char lock[4096 + 16];
        snprintf(lock, sizeof lock, "%s/LOCK", path);
        b->lock_fd = open(lock, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat sb;
        if (b->lock_fd < 0) {
            int e = errno;
            if (stat(path, &sb) != 0) st = msa_fail(MSA_ERR_NOT_FOUND, "%s: no such bank", path);
            else if (e == ENOENT) st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a bank (no LOCK file)", path);
            else if (e == ELOOP) st = msa_fail(MSA_ERR_BAD_DATA, "%s: is a symbolic link (bank files must be regular files)", lock);
            else st = msa_fail(MSA_ERR_IO, "%s: cannot open: %s", lock, strerror(e)); /* unreadable is an I/O error */
        } else if (fstat(b->lock_fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file (bank files must be regular files)", lock);
        } else if (flock(b->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            st = errno == EWOULDBLOCK ? msa_fail(MSA_ERR_LOCKED, "%s: locked by another writer", path)
                                      : msa_fail(MSA_ERR_IO, "%s: cannot lock: %s", lock, strerror(errno));
        }
        b->writable = true;
    }
    if (!st) st = load_newest(b, b->params.routing_in_ram);
    if (!st && b->writable) st = make_durable(b);
    if (!st && b->writable) {
        st = bank_manifest_copy(&b->v->man, &b->work);
        if (!st) bank_clean_orphans(b);
    }
    if (st) {
        msa_bank_close(b);
        return st;
    }
    *out = b;
    return MSA_OK;
}

void msa_bank_close(msa_bank *b) {
    if (!b) return;
    bank_pending_free(b->pend);
    bank_version_free(b->v);
    bank_manifest_free(&b->work);
    if (b->lock_fd >= 0) close(b->lock_fd); /* releases the flock */
    free(b->path);
    free(b);
}

msa_status msa_bank_refresh(msa_bank *b) {
    if (b->writable) return MSA_OK;
    return load_newest(b, b->params.routing_in_ram);
}

msa_status msa_bank_check_fingerprint(const msa_bank *b, const uint8_t fp[32]) {
    if (!memcmp(b->v->man.fingerprint, fp, 32)) return MSA_OK;
    char a[17], c[17];
    for (int i = 0; i < 8; i++) {
        snprintf(a + 2 * i, 3, "%02x", b->v->man.fingerprint[i]);
        snprintf(c + 2 * i, 3, "%02x", fp[i]);
    }
    return msa_fail(MSA_ERR_MISMATCH, "%s: bank was built for another model (fingerprint %s..., model %s...)",
                    b->path, a, c);
}

void msa_bank_get_info(const msa_bank *b, msa_bank_info *info) {
    const bank_version *v = b->v;
    memset(info, 0, sizeof *info);
    info->shape = v->man.shape;
    memcpy(info->fingerprint, v->man.fingerprint, 32);
    memcpy(info->bank_uuid, v->man.uuid, 16);
    info->model_path = v->man.model_path ? v->man.model_path : "";
    info->version = v->man.generation;
    info->n_docs = v->n_live;
    info->n_deleted = v->n_deleted;
    info->next_index = v->man.next_index;
    info->n_tokens = v->n_tokens;
    info->n_chunks = v->n_chunks;
    info->n_segments = v->man.n_segs;
    info->bytes = v->bytes;
    info->text_bytes = v->text_bytes;
    info->has_template = v->tmpl != NULL;
}

/* -------------------------------------------------------------------------------------------------- reads */

static void fill_info(const bank_version *v, uint64_t pos, msa_bank_doc_info *out) {
    bank_doc_rec r;
    const bank_seg_view *sv;
    bank_version_doc(v, pos, &r, &sv);
    out->id = (const char *)sv->seg.strings + r.id_off;
    out->index = (uint32_t)r.index;
    out->n_tokens = r.n_tokens;
    out->n_chunks = r.n_chunks;
    memcpy(out->hash, r.hash, 16);
    out->meta_json = (const char *)sv->seg.strings + r.meta_off;
    out->text_len = r.text_len;
}

uint64_t msa_bank_n_docs(const msa_bank *b) { return b->v->n_live; }

msa_status msa_bank_doc_at(const msa_bank *b, uint64_t i, msa_bank_doc_info *out) {
    if (i >= b->v->n_live) return msa_fail(MSA_ERR_NOT_FOUND, "%s: document position %llu out of range", b->path,
                                           (unsigned long long)i);
    fill_info(b->v, i, out);
    return MSA_OK;
}

msa_status msa_bank_doc_by_index(const msa_bank *b, uint32_t index, msa_bank_doc_info *out) {
    uint64_t pos = bank_version_find_index(b->v, index);
    if (pos == UINT64_MAX) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document [%u]", b->path, index);
    fill_info(b->v, pos, out);
    return MSA_OK;
}

msa_status msa_bank_doc_by_id(const msa_bank *b, const char *id, msa_bank_doc_info *out) {
    uint64_t pos = bank_version_find_id(b->v, id);
    if (pos == UINT64_MAX) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document '%.200s'", b->path, id);
    fill_info(b->v, pos, out);
    return MSA_OK;
}

msa_status msa_bank_doc_text(const msa_bank *b, uint32_t index, char **text, size_t *len) {
    uint64_t pos = bank_version_find_index(b->v, index);
    if (pos == UINT64_MAX) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document [%u]", b->path, index);
    bank_doc_rec r;
    const bank_seg_view *sv;
    bank_version_doc(b->v, pos, &r, &sv);
    char *buf = malloc(r.text_len + 1);
    if (!buf) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory for document [%u]", b->path, index);
    size_t n = ZSTD_decompress(buf, r.text_len, sv->seg.text + r.text_off, r.text_zlen);
    if (ZSTD_isError(n) || n != r.text_len) {
        free(buf);
        return msa_fail(MSA_ERR_BAD_DATA, "%s: text of document [%u] is corrupt (%s)", sv->name, index,
                        ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length");
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return MSA_OK;
}

msa_status msa_bank_doc_content(const msa_bank *b, uint32_t index, int slot, const void **k, const void **vv) {
    const bank_version *v = b->v;
    const msa_bank_shape *sh = &v->man.shape;
    if (sh->mode != MSA_BANK_NATIVE) return msa_fail(MSA_ERR_UNSUPPORTED, "%s: read-mode bank stores no K/V", b->path);
    if (slot < 0 || slot >= sh->n_router) return msa_fail(MSA_ERR_INVALID_ARG, "router slot %d out of range", slot);
    uint64_t pos = bank_version_find_index(v, index);
    if (pos == UINT64_MAX) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no document [%u]", b->path, index);
    bank_doc_rec r;
    const bank_seg_view *sv;
    bank_version_doc(v, pos, &r, &sv);
    const uint8_t *c = sv->seg.content + r.content_off;
    /* the whole document's checksum, once per version (a fetch of all layers then costs one pass) */
    if (b->params.verify_content && !atomic_load_explicit(&v->verified[pos], memory_order_acquire)) {
        if (XXH3_64bits(c, bank_doc_content_bytes(sh, r.n_chunks)) != r.content_hash)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: content of document [%u] fails its checksum", sv->name, index);
        atomic_store_explicit(&v->verified[pos], 1, memory_order_release);
    }
    uint64_t half = (uint64_t)r.n_chunks * bank_kv_row_bytes(sh);
    *k = c + (uint64_t)slot * 2 * half;
    *vv = c + (uint64_t)slot * 2 * half + half;
    return MSA_OK;
}

msa_status msa_bank_route_spans(const msa_bank *b, int slot, const msa_bank_span **spans, size_t *n_spans) {
    if (slot < 0 || slot >= b->v->man.shape.n_router)
        return msa_fail(MSA_ERR_INVALID_ARG, "router slot %d out of range", slot);
    *spans = b->v->spans[slot];
    *n_spans = b->v->n_spans;
    return MSA_OK;
}

msa_status msa_bank_template(const msa_bank *b, int layer, const void **k, const void **vv) {
    const bank_version *v = b->v;
    const msa_bank_shape *sh = &v->man.shape;
    if (layer < 0 || layer >= sh->n_layers) return msa_fail(MSA_ERR_INVALID_ARG, "layer %d out of range", layer);
    if (!v->tmpl) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no template prefix stored", b->path);
    uint64_t half = (uint64_t)sh->n_kv_heads * (uint64_t)sh->n_template * (uint64_t)sh->head_dim *
                    msa_bank_dtype_size(sh->dtype);
    *k = v->tmpl->seg.tmpl + (uint64_t)layer * 2 * half;
    *vv = v->tmpl->seg.tmpl + (uint64_t)layer * 2 * half + half;
    return MSA_OK;
}

msa_status bank_version_from_image(const uint8_t *base, uint64_t size, bank_manifest *m, const uint64_t *seg_off,
                                   const uint64_t *seg_size, const char *name, bank_version **out) {
    bank_version *v;
    MSA_TRY(version_alloc(m, name, &v));
    msa_status st = MSA_OK;
    size_t n_ok = 0;
    for (size_t i = 0; i < v->man.n_segs && !st; i++) {
        const bank_seg_ref *ref = &v->man.segs[i];
        if (seg_off[i] > size || seg_size[i] > size - seg_off[i] || seg_off[i] % BANK_ALIGN || seg_size[i] != ref->file_size) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: embedded segment %zu lies outside the file", name, i);
            break;
        }
        bank_seg_view *sv = calloc(1, sizeof *sv);
        if (!sv || !(sv->name = strdup(name))) {
            free(sv);
            st = msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
            break;
        }
        sv->fd = -1;
        sv->refs = 1;
        st = bank_segment_parse(base + seg_off[i], seg_size[i], &v->man.shape, v->man.uuid, name, &sv->seg);
        if (!st && (sv->seg.seg_id != ref->seg_id || sv->seg.header_hash != ref->header_hash ||
                    sv->seg.n_docs != ref->n_docs || sv->seg.n_chunks != ref->n_chunks))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: embedded segment does not match the embedded manifest", name);
        if (st) {
            bank_seg_unref(sv);
            break;
        }
        v->segs[i] = sv;
        n_ok++;
    }
    if (st) {
        for (size_t i = 0; i < n_ok; i++) bank_seg_unref(v->segs[i]);
        free(v->segs);
        v->segs = NULL;
        bank_version_free(v);
        return st;
    }
    st = version_index(v, name);
    if (st) {
        bank_version_free(v);
        return st;
    }
    *out = v;
    return MSA_OK;
}
