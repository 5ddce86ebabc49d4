/* verify.c — the full checksum scan of a bank version, spread over all CPUs: every section of every segment
 * (XXH3-64), every document's content checksum (the content section is exactly the concatenation of its
 * documents' content, so those checksums cover it), every text frame (zstd's own checksum plus the recorded
 * length), and zero padding between sections. Open already checked the manifest, segment headers, document
 * tables and strings. Work is cut into items (a section, a document's content, a segment's texts) that
 * threads take in order; the calling thread works too and reports progress. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bank/bank.h"
#include "util/cpu_count.h"
#include "util/error.h"
#include "util/fault_guard.h"

#define MAX_THREADS 32

enum { ITEM_SECTION, ITEM_DOC_CONTENT, ITEM_TEXTS, ITEM_GAPS };

typedef struct item {
    int kind;
    const bank_seg_view *sv;
    uint32_t section;       /* ITEM_SECTION: index in the section table */
    uint64_t doc;           /* ITEM_DOC_CONTENT: record number */
    uint64_t bytes;         /* for progress */
} item;

typedef struct vstate {
    const bank_version *v;
    item *items;
    size_t n_items;
    atomic_size_t next;
    atomic_uint_least64_t done;
    atomic_int failed;
    pthread_mutex_t lock;
    msa_status st;
    char msg[1024];
} vstate;

static msa_status check_section(const bank_seg_view *sv, const bank_section *sec) {
    if (XXH3_64bits(sv->seg.base + sec->offset, sec->size) != sec->hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: checksum mismatch in section type %u layer %u (corrupt)", sv->name,
                        sec->type, sec->layer);
    return MSA_OK;
}

static msa_status check_doc_content(const bank_seg_view *sv, uint64_t i, const msa_bank_shape *sh) {
    bank_doc_rec r;
    bank_segment_doc(&sv->seg, i, &r);
    if (XXH3_64bits(sv->seg.content + r.content_off, bank_doc_content_bytes(sh, r.n_chunks)) != r.content_hash)
        return msa_fail(MSA_ERR_BAD_DATA, "%s: content of document [%llu] fails its checksum (corrupt)", sv->name,
                        (unsigned long long)r.index);
    return MSA_OK;
}

static msa_status check_texts(const bank_seg_view *sv) {
    size_t cap = 0;
    char *buf = NULL;
    msa_status st = MSA_OK;
    for (uint64_t i = 0; i < sv->seg.n_docs && !st; i++) {
        bank_doc_rec r;
        bank_segment_doc(&sv->seg, i, &r);
        if (r.text_len + 1 > cap) {
            free(buf);
            cap = r.text_len + 1;
            if (!(buf = malloc(cap))) return msa_fail(MSA_ERR_NOMEM, "verify: out of memory");
        }
        st = bank_seg_text(sv, &r, buf);
    }
    free(buf);
    return st;
}

static int cmp_offset(const void *a, const void *b) {
    const bank_section *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Bytes no section covers (alignment padding) must be zero: a flipped bit there is corruption too. */
static msa_status check_gaps(const bank_seg_view *sv) {
    bank_section s[BANK_MAX_SECTIONS];
    uint32_t n = sv->seg.n_sections;
    memcpy(s, sv->seg.sections, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_offset);
    uint64_t pos = BANK_SEG_HEADER_SIZE;
    for (uint32_t i = 0; i <= n; i++) {
        uint64_t end = i < n ? s[i].offset : sv->seg.size;
        for (uint64_t o = pos; o < end; o++)
            if (sv->seg.base[o])
                return msa_fail(MSA_ERR_BAD_DATA, "%s: non-zero padding byte at offset %llu (corrupt)", sv->name,
                                (unsigned long long)o);
        if (i < n && s[i].offset + s[i].size > pos) pos = s[i].offset + s[i].size;
    }
    return MSA_OK;
}

typedef struct mapped_check {
    const vstate *vs;
    const item *it;
    msa_status st;
} mapped_check;

/* the checks that read the mapping and allocate nothing, so that a SIGBUS may abandon them (fault_guard.h) */
static void mapped_check_body(void *arg) {
    mapped_check *m = arg;
    const item *it = m->it;
    m->st = it->kind == ITEM_SECTION       ? check_section(it->sv, &it->sv->seg.sections[it->section])
            : it->kind == ITEM_DOC_CONTENT ? check_doc_content(it->sv, it->doc, &m->vs->v->man.shape)
                                           : check_gaps(it->sv);
}

static msa_status run_item(const vstate *vs, const item *it) {
    if (it->kind == ITEM_TEXTS) return check_texts(it->sv); /* bank_seg_text guards its own reads */
    mapped_check m = {vs, it, MSA_OK};
    if (!fault_guard_run(mapped_check_body, &m))
        return msa_fail(MSA_ERR_IO, "%s: I/O error reading the segment (SIGBUS)", it->sv->name);
    return m.st;
}

typedef struct worker_arg {
    vstate *vs;
    void (*progress)(uint64_t, uint64_t, void *);
    void *user;
    uint64_t total;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    vstate *vs = a->vs;
    for (;;) {
        if (atomic_load(&vs->failed)) break;
        size_t i = atomic_fetch_add(&vs->next, 1);
        if (i >= vs->n_items) break;
        msa_status st = run_item(vs, &vs->items[i]);
        if (st) {
            pthread_mutex_lock(&vs->lock);
            if (!atomic_load(&vs->failed)) {
                vs->st = st;
                snprintf(vs->msg, sizeof vs->msg, "%s", msa_last_error());
                atomic_store(&vs->failed, 1);
            }
            pthread_mutex_unlock(&vs->lock);
            break;
        }
        uint64_t done = atomic_fetch_add(&vs->done, vs->items[i].bytes) + vs->items[i].bytes;
        if (a->progress) a->progress(done, a->total, a->user); /* only the calling thread has a callback */
    }
    return NULL;
}

msa_status msa_bank_verify(const msa_bank *b, void (*progress)(uint64_t, uint64_t, void *), void *user,
                           msa_bank_verify_report *report) {
    const bank_version *v = b->v;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n_items = 0, cap = 0;
    uint64_t total = 0, docs = 0;
    item *items = NULL;
    for (int pass = 0; pass < 2; pass++) { /* count, then fill */
        n_items = 0;
        for (size_t i = 0; i < v->man.n_segs; i++) {
            const bank_seg_view *sv = v->segs[i];
            for (uint32_t s = 0; s < sv->seg.n_sections; s++) {
                const bank_section *sec = &sv->seg.sections[s];
                if (sec->type == BANK_SEC_CONTENT && sv->seg.content) {
                    for (uint64_t d = 0; d < sv->seg.n_docs; d++) {
                        if (pass) {
                            bank_doc_rec r;
                            bank_segment_doc(&sv->seg, d, &r);
                            items[n_items] = (item){ITEM_DOC_CONTENT, sv, 0, d,
                                                    bank_doc_content_bytes(&v->man.shape, r.n_chunks)};
                        }
                        n_items++;
                    }
                } else {
                    if (pass) items[n_items] = (item){ITEM_SECTION, sv, s, 0, sec->size};
                    n_items++;
                }
            }
            if (pass) items[n_items] = (item){ITEM_GAPS, sv, 0, 0, 0};
            n_items++;
            if (sv->seg.kind == BANK_SEG_DOCS) {
                if (pass) items[n_items] = (item){ITEM_TEXTS, sv, 0, 0, 0};
                n_items++;
            }
        }
        if (!pass) {
            cap = n_items;
            items = malloc((cap + 1) * sizeof *items);
            if (!items) return msa_fail(MSA_ERR_NOMEM, "verify: out of memory");
        }
    }
    for (size_t i = 0; i < v->man.n_segs; i++) {
        docs += v->segs[i]->seg.n_docs;
        if (v->segs[i]->map) madvise(v->segs[i]->map, v->segs[i]->map_len, MADV_SEQUENTIAL);
    }
    for (size_t i = 0; i < n_items; i++) total += items[i].bytes;
    vstate vs = {.v = v, .items = items, .n_items = n_items};
    atomic_init(&vs.next, 0);
    atomic_init(&vs.done, 0);
    atomic_init(&vs.failed, 0);
    pthread_mutex_init(&vs.lock, NULL);
    const int ncpu = msa_cpu_count();
    int nth = ncpu > MAX_THREADS ? MAX_THREADS : ncpu;
    if ((size_t)nth > n_items) nth = n_items ? (int)n_items : 1;
    pthread_t th[MAX_THREADS];
    worker_arg args[MAX_THREADS];
    int started = 0;
    for (int i = 1; i < nth; i++) {
        args[i] = (worker_arg){&vs, NULL, NULL, total};
        if (pthread_create(&th[i], NULL, worker, &args[i]) == 0) started = i;
        else break;
    }
    args[0] = (worker_arg){&vs, progress, user, total};
    worker(&args[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&vs.lock);
    for (size_t i = 0; i < v->man.n_segs; i++)
        if (v->segs[i]->map) madvise(v->segs[i]->map, v->segs[i]->map_len, MADV_NORMAL);
    free(items);
    if (atomic_load(&vs.failed)) return msa_fail(vs.st, "%s", vs.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (report) {
        report->bytes_checked = total;
        report->n_docs_checked = docs;
        report->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    return MSA_OK;
}
