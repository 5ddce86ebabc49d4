/* bank.c — the memory bank: creating a bank directory, opening it (writer lock, consistent versions built
 * from the MANIFEST and its segments), and every read: document table by index and id, text, content K̄/V̄,
 * routing-key spans, template prefix. Staging, commit and compaction live in writer.c. */
#include "bank/bank.h"

#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

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

/* A create or import killed before its rename leaves its hidden work directory beside the bank
 * (`.<name>.creating-<pid>-…`, `.<name>.importing-<pid>-…`). The next create, import or writable open of
 * that path removes those whose process no longer exists (kill(pid, 0) answers ESRCH) — never one of a
 * live process (a racing create), never anything that is not a real directory (a link is left alone), and
 * only the bank files inside (bank_remove_dir). */
void bank_clean_stale_work_dirs(const char *path) {
    char parent[4096];
    bank_parent_dir(path, parent, sizeof parent);
    const char *base = bank_base_name(path);
    size_t bl = strlen(base);
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, bl) || n[1 + bl] != '.') continue;
        const char *what = n + 2 + bl;
        size_t wl = !strncmp(what, "creating-", 9) ? 9 : !strncmp(what, "importing-", 10) ? 10 : 0;
        if (!wl) continue;
        char *end;
        long pid = strtol(what + wl, &end, 10);
        if (pid <= 0 || *end != '-' || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        char p[4096 + 300];
        snprintf(p, sizeof p, "%s/%s", parent, n);
        bank_remove_dir(p); /* lstat inside: a symbolic link is never followed */
    }
    closedir(d);
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
    bank_clean_stale_work_dirs(path);
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

static _Atomic uint64_t records_indexed; /* work counter: tests check that a commit's work is its change */
uint64_t bank_records_indexed(void) { return atomic_load(&records_indexed); }

static uint64_t id_hash(const char *id) { return XXH3_64bits(id, strlen(id)); }

static const char *live_id(const bank_version *v, uint64_t pos) {
    const bank_live *l = &v->live[pos];
    const bank_segment *s = &v->segs[l->seg]->seg;
    const uint8_t *rec = s->docs + (uint64_t)l->rec * BANK_DOC_RECORD_SIZE;
    return (const char *)s->strings + rd64(rec + 32);
}

/* An id table slot: the entry position + 1 in the low 32 bits (fewer than 2^32 - 1 records: indices are
 * unique and below that), the high 32 bits of the id's hash above. Probing compares the hash bits first and
 * reads an id (a random access into a segment's strings, the cost of open at 10^6 documents) only when they
 * match. 0 = empty. */
static inline uint64_t slot_make(uint64_t hash, uint64_t pos) { return (hash & 0xffffffff00000000ULL) | (pos + 1); }
static inline uint64_t slot_pos(uint64_t slot) { return (slot & 0xffffffffULL) - 1; }
static inline bool slot_tag_eq(uint64_t slot, uint64_t hash) { return (slot ^ hash) >> 32 == 0; }

uint64_t bank_version_find_id(const bank_version *v, const char *id) {
    if (!v->id_cap) return UINT64_MAX;
    uint64_t mask = v->id_cap - 1, hash = id_hash(id);
    for (uint64_t h = hash & mask;; h = (h + 1) & mask) {
        uint64_t e = v->id_slots[h];
        if (!e) return UINT64_MAX;
        if (slot_tag_eq(e, hash) && !strcmp(live_id(v, slot_pos(e)), id)) return slot_pos(e);
    }
}

/* Entry position of index (live or not), or UINT64_MAX. Entries are sorted by index. */
static uint64_t entry_of_index(const bank_version *v, uint64_t index, uint64_t n) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (v->live[mid].index < index) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && v->live[lo].index == index ? lo : UINT64_MAX;
}

uint64_t bank_version_find_index(const bank_version *v, uint64_t index) {
    uint64_t pos = entry_of_index(v, index, v->n_ent);
    return pos != UINT64_MAX && !v->live[pos].dead ? pos : UINT64_MAX;
}

void bank_version_doc(const bank_version *v, uint64_t pos, bank_doc_rec *rec, const bank_seg_view **seg) {
    const bank_live *l = &v->live[pos];
    bank_segment_doc(&v->segs[l->seg]->seg, l->rec, rec);
    if (seg) *seg = v->segs[l->seg];
}

/* Fenwick tree over the entries' liveness: the i-th live document's entry in O(log N), so positions
 * (msa_bank_doc_at) stay dense while deleted entries stay in place until their segment is rewritten. */
static void fen_add(uint32_t *fen, uint64_t cap, uint64_t pos, int delta) {
    for (uint64_t i = pos + 1; i <= cap; i += i & (~i + 1)) fen[i] = (uint32_t)((int64_t)fen[i] + delta);
}

static void fen_build(bank_version *v) {
    memset(v->fen, 0, (v->fen_cap + 1) * sizeof *v->fen);
    for (uint64_t i = 1; i <= v->fen_cap; i++) {
        if (i - 1 < v->n_ent && !v->live[i - 1].dead) v->fen[i]++;
        uint64_t j = i + (i & (~i + 1));
        if (j <= v->fen_cap) v->fen[j] += v->fen[i];
    }
}

uint64_t bank_version_nth(const bank_version *v, uint64_t i) {
    if (v->n_live == v->n_ent) return i; /* no deleted entries: positions are ranks */
    uint64_t pos = 0, rem = i + 1;
    for (uint64_t step = v->fen_cap; step; step >>= 1)
        if (pos + step <= v->fen_cap && v->fen[pos + step] < rem) {
            pos += step;
            rem -= v->fen[pos];
        }
    return pos;
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* id table: open addressing, linear probing, positions + 1; deletion by backward shift (no tombstones) */
static void idt_insert(uint64_t *slots, uint64_t cap, const bank_version *v, uint64_t pos) {
    uint64_t hash = id_hash(live_id(v, pos)), h = hash & (cap - 1);
    while (slots[h]) h = (h + 1) & (cap - 1);
    slots[h] = slot_make(hash, pos);
}

static void idt_delete(bank_version *v, uint64_t pos) {
    uint64_t mask = v->id_cap - 1, i = id_hash(live_id(v, pos)) & mask;
    while (slot_pos(v->id_slots[i]) != pos) i = (i + 1) & mask; /* present: the entry is live */
    for (uint64_t j = (i + 1) & mask; v->id_slots[j]; j = (j + 1) & mask) {
        uint64_t k = id_hash(live_id(v, slot_pos(v->id_slots[j]))) & mask;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j); /* home cyclically in (i, j] */
        if (stays) continue;
        v->id_slots[i] = v->id_slots[j];
        i = j;
    }
    v->id_slots[i] = 0;
}

void bank_version_free(bank_version *v) {
    if (!v) return;
    if (v->segs)
        for (size_t i = 0; i < v->man.n_segs; i++) bank_seg_unref(v->segs[i]);
    free(v->segs);
    if (v->chunk_doc)
        for (size_t i = 0; i < v->man.n_segs; i++) free(v->chunk_doc[i]);
    free(v->chunk_doc);
    if (v->sst)
        for (size_t i = 0; i < v->man.n_segs; i++) free(v->sst[i].runs);
    free(v->sst);
    free(v->live);
    free((void *)v->verified);
    free(v->fen);
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

/* The first tombstone >= index at or after position from: a few steps forward (consecutive records), else a
 * binary search, so no layout of records and tombstones costs more than O(log) per record. */
static size_t tomb_seek(const bank_manifest *m, size_t from, uint64_t index) {
    size_t n = m->n_tombstones;
    for (int k = 0; k < 8 && from < n; k++, from++)
        if (m->tombstones[from] >= index) return from;
    size_t lo = from, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->tombstones[mid] < index) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int cmp_live(const void *a, const void *b) {
    const bank_live *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Runs of live chunks in one segment (maximal runs of consecutive live records) from its records. */
static void seg_runs_build(const bank_segment *s, const uint32_t *chunk_doc, bank_seg_state *st) {
    st->n_runs = 0;
    for (uint64_t r = 0; r < s->n_docs; r++) {
        bank_doc_rec rec;
        bank_segment_doc(s, r, &rec);
        if (chunk_doc[rec.chunk_first] == MSA_BANK_NO_DOC) continue; /* n_chunks >= 1 for every record */
        bank_run *last = st->n_runs ? &st->runs[st->n_runs - 1] : NULL;
        if (last && last->first + last->n == rec.chunk_first) last->n += rec.n_chunks;
        else st->runs[st->n_runs++] = (bank_run){rec.chunk_first, rec.n_chunks};
    }
}

/* Remove chunks [c0, c0 + n) from the run holding them (room for one more run reserved by the caller). */
static void seg_runs_cut(bank_seg_state *st, uint64_t c0, uint64_t n) {
    uint32_t lo = 0, hi = st->n_runs;
    while (lo < hi) { /* the last run starting at or before c0 */
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->runs[mid].first <= c0) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return;
    bank_run *r = &st->runs[lo - 1];
    if (c0 + n > r->first + r->n) return; /* not inside a live run: nothing to cut */
    bank_run left = {r->first, c0 - r->first}, right = {c0 + n, r->first + r->n - (c0 + n)};
    uint32_t k = lo - 1;
    if (left.n && right.n) {
        memmove(&st->runs[k + 2], &st->runs[k + 1], (st->n_runs - k - 1) * sizeof *st->runs);
        st->runs[k] = left;
        st->runs[k + 1] = right;
        st->n_runs++;
    } else if (left.n || right.n) {
        st->runs[k] = left.n ? left : right;
    } else {
        memmove(&st->runs[k], &st->runs[k + 1], (st->n_runs - k - 1) * sizeof *st->runs);
        st->n_runs--;
    }
}

static size_t version_total_runs(const bank_version *v) {
    size_t n = 0;
    for (size_t i = 0; i < v->man.n_segs; i++) n += v->sst[i].n_runs;
    return n;
}

/* The routing spans of every slot from the segments' runs, into arrays of room >= the total run count. */
static void version_fill_spans(bank_version *v) {
    size_t n = 0;
    for (size_t i = 0; i < v->man.n_segs; i++) {
        const bank_seg_view *sv = v->segs[i];
        for (uint32_t k = 0; k < v->sst[i].n_runs; k++, n++) {
            const bank_run *r = &v->sst[i].runs[k];
            for (int l = 0; l < v->man.shape.n_router; l++)
                v->spans[l][n] = (msa_bank_span){bank_seg_route(sv, l) + r->first * bank_route_row_bytes(&v->man.shape, l),
                                                 v->chunk_doc[i] + r->first, r->n};
        }
    }
    v->n_spans = n;
}

static msa_status version_alloc_spans(const bank_version *v, size_t n, msa_bank_span **out, const char *name) {
    int l = 0;
    for (; l < v->man.shape.n_router; l++)
        if (!(out[l] = malloc((n + 1) * sizeof **out))) break;
    if (l == v->man.shape.n_router) return MSA_OK;
    while (l-- > 0) free(out[l]);
    return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
}

/* Everything derived from the segments: the entry table (every document record, deleted ones marked), the
 * id index of the live ones, chunk maps, runs and spans. O(documents): built at open; a writer's commits
 * derive their version from the previous one instead (version_advance). */
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
    if (total_docs >= MSA_BANK_NO_DOC) /* indices are unique and below 2^32 - 1: more records cannot be valid */
        return msa_fail(MSA_ERR_BAD_DATA, "%s: %llu document records (more than the index space)", name,
                        (unsigned long long)total_docs);
    v->cap_ent = total_docs + 1;
    v->live = malloc(v->cap_ent * sizeof *v->live);
    v->chunk_doc = calloc(m->n_segs + 1, sizeof *v->chunk_doc);
    v->sst = calloc(m->n_segs + 1, sizeof *v->sst);
    if (!v->live || !v->chunk_doc || !v->sst) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < m->n_segs; i++) {
        bank_seg_view *sv = v->segs[i];
        const bank_segment *s = &sv->seg;
        if (s->kind != BANK_SEG_DOCS) continue;
        uint32_t *map = v->chunk_doc[i] = malloc((s->n_chunks + 1) * sizeof *map);
        bank_seg_state *ss = &v->sst[i];
        ss->cap_runs = (uint32_t)s->n_docs + 1;
        ss->runs = malloc(ss->cap_runs * sizeof *ss->runs);
        if (!map || !ss->runs) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
        size_t tc = SIZE_MAX; /* tombstone cursor: a segment's indices increase, so its search moves forward */
        uint64_t tc_last = 0;
        for (uint64_t r = 0; r < s->n_docs; r++) {
            bank_doc_rec rec;
            bank_segment_doc(s, r, &rec);
            if (rec.index >= m->next_index)
                return msa_fail(MSA_ERR_BAD_DATA, "%s: document index %llu in %s is beyond the manifest's next index",
                                name, (unsigned long long)rec.index, sv->name);
            tc = tomb_seek(m, tc == SIZE_MAX || rec.index < tc_last ? 0 : tc, rec.index);
            bool dead = tc < m->n_tombstones && m->tombstones[tc] == rec.index;
            tc_last = rec.index;
            v->live[v->n_ent++] = (bank_live){(uint32_t)rec.index, (uint32_t)i, (uint32_t)r, dead};
            ss->n_ent++;
            if (dead) {
                ss->n_dead++;
                v->n_deleted++;
            } else {
                v->n_live++;
                v->n_tokens += rec.n_tokens;
                v->n_chunks += rec.n_chunks;
                v->text_bytes += rec.text_zlen;
            }
            for (uint32_t c = 0; c < rec.n_chunks; c++)
                map[rec.chunk_first + c] = dead ? MSA_BANK_NO_DOC : (uint32_t)rec.index;
        }
        seg_runs_build(s, map, ss);
    }
    bool sorted = true; /* segments in id order hold increasing indices: usually nothing to sort */
    for (uint64_t i = 1; i < v->n_ent && sorted; i++) sorted = v->live[i - 1].index < v->live[i].index;
    if (!sorted) qsort(v->live, v->n_ent, sizeof *v->live, cmp_live);
    for (uint64_t i = 1; i < v->n_ent; i++)
        if (v->live[i].index == v->live[i - 1].index)
            return msa_fail(MSA_ERR_BAD_DATA, "%s: document index %u appears twice", name, v->live[i].index);
    v->verified = calloc(v->cap_ent, sizeof *v->verified);
    v->fen_cap = pow2_at_least(v->cap_ent);
    v->fen = malloc((v->fen_cap + 1) * sizeof *v->fen);
    if (!v->verified || !v->fen) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    fen_build(v);
    /* id table */
    uint64_t cap = pow2_at_least(2 * v->n_live);
    v->id_slots = calloc(cap, sizeof *v->id_slots);
    if (!v->id_slots) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    v->id_cap = cap;
    /* the table is far larger than the caches: each insert's slot is a memory miss, so the hashes are
     * computed PF entries ahead and their slots prefetched (open at 10^6 documents: docs/perf.md) */
    enum { PF = 16 };
    uint64_t ring[PF];
    for (uint64_t i = 0; i < v->n_ent && i < PF; i++) {
        ring[i] = v->live[i].dead ? 0 : id_hash(live_id(v, i));
        __builtin_prefetch(&v->id_slots[ring[i] & (cap - 1)], 1);
    }
    for (uint64_t i = 0; i < v->n_ent; i++) {
        uint64_t hash = ring[i % PF];
        if (i + PF < v->n_ent) {
            uint64_t nh = v->live[i + PF].dead ? 0 : id_hash(live_id(v, i + PF));
            ring[i % PF] = nh;
            __builtin_prefetch(&v->id_slots[nh & (cap - 1)], 1);
        }
        if (v->live[i].dead) continue;
        const char *id = live_id(v, i);
        uint64_t h = hash & (cap - 1);
        while (v->id_slots[h]) {
            if (slot_tag_eq(v->id_slots[h], hash) && !strcmp(live_id(v, slot_pos(v->id_slots[h])), id))
                return msa_fail(MSA_ERR_BAD_DATA, "%s: document id '%.200s' appears twice", name, id);
            h = (h + 1) & (cap - 1);
        }
        v->id_slots[h] = slot_make(hash, i);
    }
    atomic_fetch_add(&records_indexed, v->n_ent);
    MSA_TRY(version_alloc_spans(v, version_total_runs(v), v->spans, name));
    version_fill_spans(v);
    return MSA_OK;
}

/* A version taking over manifest m (m is emptied, and freed on failure) with room for its segment views. */
static msa_status version_alloc(bank_manifest *m, const char *name, bank_version **out) {
    static _Atomic uint64_t serials;
    bank_version *v = calloc(1, sizeof *v);
    if (!v) {
        bank_manifest_free(m);
        return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", name);
    }
    v->serial = atomic_fetch_add(&serials, 1) + 1;
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

/* ------------------------------------------------------------------------------------- incremental versions */

/* The version after a writer's own commit or merge, derived from the previous one (prev, which the caller
 * frees afterwards) in time proportional to what changed — the new and removed segments, the new
 * tombstones — plus the segment count, instead of O(documents) as a rebuild: a writer that adds one
 * document at a time to a bank of millions does not re-index the millions at each commit.
 *
 * It applies when the new manifest keeps a prefix of prev's segments (same ids and header hashes) and
 * replaces the rest by newer segments (a commit appends; the merge policy rewrites the newest tail) and
 * every index in the new segments is above every kept one. Otherwise (a full compaction, a template set
 * after documents, anything unexpected) it answers MSA_ERR_UNSUPPORTED and the caller rebuilds. It checks
 * and allocates everything first and changes prev's structures only when nothing can fail any more, so a
 * refusal or an allocation failure leaves prev intact. */
static msa_status version_advance(const char *path, bank_version *prev, bank_manifest *m, bool routing_in_ram,
                                  bank_version **out) {
    const bank_manifest *pm = &prev->man;
    size_t n_old = pm->n_segs, n_new = m->n_segs, nk = 0;
    while (nk < n_old && nk < n_new && m->segs[nk].seg_id == pm->segs[nk].seg_id &&
           m->segs[nk].header_hash == pm->segs[nk].header_hash)
        nk++;
    uint64_t old_max = n_old ? pm->segs[n_old - 1].seg_id : 0;
    for (size_t j = nk; j < n_new; j++)
        if (m->segs[j].seg_id <= old_max) return MSA_ERR_UNSUPPORTED;
    if (prev->tmpl && (pm->template_seg != m->template_seg)) return MSA_ERR_UNSUPPORTED;
    if (m->next_index < pm->next_index || memcmp(&m->shape, &pm->shape, sizeof m->shape)) return MSA_ERR_UNSUPPORTED;
    for (size_t j = nk; j < n_old; j++)
        if (pm->segs[j].seg_id == pm->template_seg) return MSA_ERR_UNSUPPORTED;
    /* the removed segments' entries must be the table's tail */
    uint64_t k_rm = 0;
    for (size_t j = nk; j < n_old; j++) k_rm += prev->sst[j].n_ent;
    if (k_rm > prev->n_ent) return MSA_ERR_UNSUPPORTED;
    uint64_t n_keep = prev->n_ent - k_rm;
    for (uint64_t p = n_keep; p < prev->n_ent; p++)
        if (prev->live[p].seg < nk) return MSA_ERR_UNSUPPORTED;
    uint32_t last_kept = n_keep ? prev->live[n_keep - 1].index : 0;
    /* tombstones: those that disappeared must belong to removed entries; new ones to live kept entries or to
     * the new segments */
    uint64_t *newt = malloc((m->n_tombstones + 1) * sizeof *newt);
    if (!newt) return msa_fail(MSA_ERR_NOMEM, "%s: out of memory", path);
    size_t a = 0, b = 0, n_new_tomb = 0;
    while (a < pm->n_tombstones || b < m->n_tombstones) {
        uint64_t x = a < pm->n_tombstones ? pm->tombstones[a] : UINT64_MAX;
        uint64_t y = b < m->n_tombstones ? m->tombstones[b] : UINT64_MAX;
        if (x == y) {
            a++, b++;
        } else if (x < y) { /* gone: only with its removed document */
            uint64_t p = entry_of_index(prev, x, prev->n_ent);
            if (p != UINT64_MAX && p < n_keep) break; /* a kept document would come back */
            a++;
        } else { /* new: of a live kept entry (or of a new segment's record, seen below) */
            if (n_keep && y <= last_kept) {
                uint64_t p = entry_of_index(prev, y, n_keep);
                if (p == UINT64_MAX || prev->live[p].dead) break;
                newt[n_new_tomb++] = p;
            }
            b++;
        }
    }
    if (a < pm->n_tombstones || b < m->n_tombstones) {
        free(newt);
        return MSA_ERR_UNSUPPORTED;
    }
    /* map the new segments */
    bank_version *v;
    bank_manifest keep_m;
    msa_status st = bank_manifest_copy(m, &keep_m); /* m stays the caller's for a rebuild after a refusal */
    if (!st) st = version_alloc(&keep_m, path, &v);
    if (st) {
        free(newt);
        return st;
    }
    size_t n_mapped = 0;
    uint64_t added = 0;
    for (size_t j = nk; j < n_new && !st; j++) {
        st = bank_seg_map(path, &v->man.segs[j], &v->man.shape, v->man.uuid, routing_in_ram, &v->segs[j]);
        if (!st) {
            n_mapped++;
            if (v->segs[j]->seg.kind == BANK_SEG_TEMPLATE && m->template_seg != m->segs[j].seg_id) st = MSA_ERR_UNSUPPORTED;
            if (v->segs[j]->seg.kind == BANK_SEG_DOCS && m->template_seg == m->segs[j].seg_id) st = MSA_ERR_UNSUPPORTED;
            added += v->segs[j]->seg.n_docs;
        }
    }
    /* the new segments' records: indices increasing above the kept ones, below next_index, ids not live in a
     * kept entry unless that entry is tombstoned now */
    uint64_t after = n_keep ? (uint64_t)last_kept + 1 : 0, n_added_live = 0;
    for (size_t j = nk; j < n_new && !st; j++) {
        const bank_segment *s = &v->segs[j]->seg;
        for (uint64_t r = 0; r < s->n_docs && !st; r++) {
            bank_doc_rec rec;
            bank_segment_doc(s, r, &rec);
            if (rec.index < after || rec.index >= m->next_index) {
                st = MSA_ERR_UNSUPPORTED;
                break;
            }
            after = rec.index + 1;
            if (is_tombstoned(m, rec.index)) continue;
            n_added_live++;
            uint64_t p = bank_version_find_id(prev, (const char *)s->strings + rec.id_off);
            if (p != UINT64_MAX && p < n_keep && !is_tombstoned(m, prev->live[p].index)) st = MSA_ERR_UNSUPPORTED;
        }
    }
    /* allocations: nothing of prev changes before all of them succeeded */
    uint64_t n_ent = n_keep + added;
    uint64_t live_after = prev->n_live + n_added_live; /* an upper bound (removed entries not subtracted) */
    uint64_t *new_slots = NULL, new_cap = prev->id_cap;
    uint32_t *new_fen = NULL;
    uint64_t new_fen_cap = prev->fen_cap;
    if (!st) {
        v->chunk_doc = calloc(n_new + 1, sizeof *v->chunk_doc);
        v->sst = calloc(n_new + 1, sizeof *v->sst);
        if (!v->chunk_doc || !v->sst) st = MSA_ERR_NOMEM;
    }
    if (!st && n_ent + 1 > prev->cap_ent) {
        uint64_t cap = prev->cap_ent * 2 > n_ent + 1 ? prev->cap_ent * 2 : n_ent + 1;
        bank_live *l = realloc(prev->live, cap * sizeof *l);
        if (l) prev->live = l; /* same content: prev stays valid */
        _Atomic unsigned char *vf = l ? realloc((void *)prev->verified, cap * sizeof *vf) : NULL;
        if (vf) {
            prev->verified = vf;
            prev->cap_ent = cap;
        } else {
            st = MSA_ERR_NOMEM;
        }
    }
    if (!st && n_ent > prev->fen_cap) {
        new_fen_cap = pow2_at_least(prev->cap_ent);
        if (!(new_fen = malloc((new_fen_cap + 1) * sizeof *new_fen))) st = MSA_ERR_NOMEM;
    }
    if (!st && 2 * live_after > prev->id_cap) {
        new_cap = pow2_at_least(2 * live_after);
        if (!(new_slots = calloc(new_cap, sizeof *new_slots))) st = MSA_ERR_NOMEM;
    }
    for (size_t j = nk; j < n_new && !st; j++) {
        const bank_segment *s = &v->segs[j]->seg;
        if (s->kind != BANK_SEG_DOCS) continue;
        v->chunk_doc[j] = malloc((s->n_chunks + 1) * sizeof **v->chunk_doc);
        v->sst[j].cap_runs = (uint32_t)s->n_docs + 1;
        v->sst[j].runs = malloc(v->sst[j].cap_runs * sizeof *v->sst[j].runs);
        if (!v->chunk_doc[j] || !v->sst[j].runs) st = MSA_ERR_NOMEM;
    }
    /* room for one more run in each kept segment per new tombstone in it */
    uint32_t *per_seg = !st && n_new_tomb ? calloc(nk + 1, sizeof *per_seg) : NULL;
    if (!st && n_new_tomb && !per_seg) st = MSA_ERR_NOMEM;
    for (size_t t = 0; !st && t < n_new_tomb; t++) per_seg[prev->live[newt[t]].seg]++;
    for (size_t j = 0; !st && per_seg && j < nk; j++) {
        bank_seg_state *ss = &prev->sst[j];
        if (!per_seg[j] || ss->n_runs + per_seg[j] <= ss->cap_runs) continue;
        uint32_t cap = ss->n_runs + per_seg[j] + ss->cap_runs / 2 + 1;
        bank_run *r = realloc(ss->runs, cap * sizeof *r);
        if (!r) st = MSA_ERR_NOMEM;
        else { /* same content: prev stays valid */
            ss->runs = r;
            ss->cap_runs = cap;
        }
    }
    free(per_seg);
    size_t runs_bound = 0;
    for (size_t j = 0; j < nk; j++) runs_bound += prev->sst[j].n_runs;
    for (size_t j = nk; j < n_new; j++) runs_bound += v->segs[j] ? v->segs[j]->seg.n_docs : 0;
    runs_bound += n_new_tomb;
    msa_bank_span *spans[MSA_BANK_MAX_LAYERS] = {0};
    if (!st) st = version_alloc_spans(v, runs_bound, spans, path);
    if (st) {
        for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) free(spans[l]);
        free(new_slots);
        free(new_fen);
        free(newt);
        for (size_t j = nk; j < nk + n_mapped; j++) bank_seg_unref(v->segs[j]);
        for (size_t j = nk; j < n_new; j++) {
            if (v->sst) free(v->sst[j].runs);
            if (v->chunk_doc) free(v->chunk_doc[j]);
        }
        free(v->sst);
        free(v->chunk_doc);
        v->sst = NULL;
        v->chunk_doc = NULL;
        v->man.n_segs = 0; /* nothing of prev was taken: free only what is v's own */
        bank_version_free(v);
        return st == MSA_ERR_UNSUPPORTED ? st : msa_fail(MSA_ERR_NOMEM, "%s: out of memory", path);
    }
    /* ---- from here nothing fails: take prev's structures over and apply the changes ---- */
    for (size_t j = 0; j < nk; j++) {
        v->segs[j] = prev->segs[j];
        v->segs[j]->refs++;
        v->chunk_doc[j] = prev->chunk_doc[j];
        prev->chunk_doc[j] = NULL;
        v->sst[j] = prev->sst[j];
        prev->sst[j] = (bank_seg_state){0};
    }
    v->live = prev->live;
    v->verified = prev->verified;
    v->cap_ent = prev->cap_ent;
    v->fen = prev->fen;
    v->fen_cap = prev->fen_cap;
    v->id_slots = prev->id_slots;
    v->id_cap = prev->id_cap;
    prev->live = NULL;
    prev->verified = NULL;
    prev->fen = NULL;
    prev->id_slots = NULL;
    prev->id_cap = 0;
    v->n_ent = prev->n_ent;
    v->n_live = prev->n_live;
    v->n_deleted = prev->n_deleted;
    v->n_tokens = prev->n_tokens;
    v->n_chunks = prev->n_chunks;
    v->text_bytes = prev->text_bytes;
    /* the removed tail: its ids are read through prev's segment views, which stay mapped until prev is freed */
    for (uint64_t p = n_keep; p < v->n_ent; p++) {
        const bank_live *e = &v->live[p];
        if (e->dead) {
            v->n_deleted--;
            continue;
        }
        bank_doc_rec rec;
        bank_segment_doc(&prev->segs[e->seg]->seg, e->rec, &rec);
        bank_version tmp = {.live = v->live, .segs = prev->segs, .id_slots = v->id_slots, .id_cap = v->id_cap};
        idt_delete(&tmp, p);
        if (!new_fen) fen_add(v->fen, v->fen_cap, p, -1);
        v->n_live--;
        v->n_tokens -= rec.n_tokens;
        v->n_chunks -= rec.n_chunks;
        v->text_bytes -= rec.text_zlen;
    }
    v->n_ent = n_keep;
    /* new tombstones of kept entries */
    for (size_t t = 0; t < n_new_tomb; t++) {
        uint64_t p = newt[t];
        bank_live *e = &v->live[p];
        bank_doc_rec rec;
        bank_segment_doc(&v->segs[e->seg]->seg, e->rec, &rec);
        idt_delete(v, p);
        e->dead = 1;
        if (!new_fen) fen_add(v->fen, v->fen_cap, p, -1);
        for (uint32_t c = 0; c < rec.n_chunks; c++) v->chunk_doc[e->seg][rec.chunk_first + c] = MSA_BANK_NO_DOC;
        seg_runs_cut(&v->sst[e->seg], rec.chunk_first, rec.n_chunks);
        v->sst[e->seg].n_dead++;
        v->n_deleted++;
        v->n_live--;
        v->n_tokens -= rec.n_tokens;
        v->n_chunks -= rec.n_chunks;
        v->text_bytes -= rec.text_zlen;
    }
    free(newt);
    if (new_slots) { /* grown id table: rehash the live entries */
        free(v->id_slots);
        v->id_slots = new_slots;
        v->id_cap = new_cap;
        for (uint64_t p = 0; p < v->n_ent; p++)
            if (!v->live[p].dead) idt_insert(v->id_slots, v->id_cap, v, p);
    }
    /* the new segments */
    for (size_t j = nk; j < n_new; j++) {
        const bank_segment *s = &v->segs[j]->seg;
        if (s->kind != BANK_SEG_DOCS) continue;
        bank_seg_state *ss = &v->sst[j];
        for (uint64_t r = 0; r < s->n_docs; r++) {
            bank_doc_rec rec;
            bank_segment_doc(s, r, &rec);
            bool dead = is_tombstoned(m, rec.index);
            uint64_t p = v->n_ent++;
            v->live[p] = (bank_live){(uint32_t)rec.index, (uint32_t)j, (uint32_t)r, dead};
            atomic_store_explicit(&v->verified[p], 0, memory_order_relaxed);
            ss->n_ent++;
            if (dead) {
                ss->n_dead++;
                v->n_deleted++;
            } else {
                idt_insert(v->id_slots, v->id_cap, v, p);
                if (!new_fen) fen_add(v->fen, v->fen_cap, p, +1);
                v->n_live++;
                v->n_tokens += rec.n_tokens;
                v->n_chunks += rec.n_chunks;
                v->text_bytes += rec.text_zlen;
            }
            for (uint32_t c = 0; c < rec.n_chunks; c++)
                v->chunk_doc[j][rec.chunk_first + c] = dead ? MSA_BANK_NO_DOC : (uint32_t)rec.index;
        }
        seg_runs_build(s, v->chunk_doc[j], ss);
    }
    if (new_fen) {
        free(v->fen);
        v->fen = new_fen;
        v->fen_cap = new_fen_cap;
        fen_build(v);
    }
    for (size_t j = 0; j < n_new; j++) {
        if (v->segs[j]->seg.kind == BANK_SEG_TEMPLATE) v->tmpl = v->segs[j];
        v->bytes += v->segs[j]->seg.size;
    }
    atomic_fetch_add(&records_indexed, k_rm + added + n_new_tomb + (new_slots ? v->n_ent : 0));
    for (int l = 0; l < MSA_BANK_MAX_LAYERS; l++) v->spans[l] = spans[l];
    version_fill_spans(v);
    bank_manifest_free(m);
    *out = v;
    return MSA_OK;
}

msa_status bank_version_next(const char *path, bank_manifest *m, bank_version *prev, bool routing_in_ram,
                             bank_version **out) {
    if (prev && prev->sst) {
        msa_status st = version_advance(path, prev, m, routing_in_ram, out);
        if (st != MSA_ERR_UNSUPPORTED) {
            if (st) bank_manifest_free(m);
            return st;
        }
    }
    return bank_version_build(path, m, prev, routing_in_ram, out);
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
    if (!st && b->writable) bank_clean_stale_work_dirs(path);
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
    fill_info(b->v, bank_version_nth(b->v, i), out);
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
    msa_status st = bank_seg_text(sv, &r, buf);
    if (st) {
        free(buf);
        return st;
    }
    buf[r.text_len] = '\0';
    *text = buf;
    *len = r.text_len;
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

uint64_t msa_bank_snapshot_id(const msa_bank *b) { return b->v->serial; }

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
