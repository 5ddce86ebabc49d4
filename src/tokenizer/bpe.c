/* bpe.c — byte-pair encoding of one pre-tokenized piece, the way HF `tokenizers` BPE::merge_word and
 * Word::merge_all do it: symbols start as the piece's bytes; a min-heap of (rank, position) merges the
 * lowest-ranked pair first (leftmost on ties), skipping stale entries. A per-call cache keyed by the
 * piece's bytes avoids re-merging repeated words. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe.h"
#include "util/error.h"

#define CACHE_MAX_PIECE 256          /* longer pieces are not cached */
#define CACHE_MAX_ENTRIES (1u << 20)

msa_status tok_ids_push(tok_ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 256;
        int32_t *nv = realloc(o->v, ncap * sizeof *nv);
        if (!nv) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for %zu ids", ncap);
        o->v = nv;
        o->cap = ncap;
    }
    o->v[o->n++] = id;
    return MSA_OK;
}

void tok_bpe_scratch_free(tok_bpe_scratch *s) {
    free(s->sym);
    free(s->heap);
    tok_strmap_free(&s->cache);
    free(s->cache_ids.v);
    memset(s, 0, sizeof *s);
}

typedef struct heap_ent {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
} heap_ent;

static bool heap_less(const heap_ent *a, const heap_ent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0];
    heap_ent last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static msa_status reserve(tok_bpe_scratch *s, size_t n) {
    if (n <= s->cap) return MSA_OK;
    size_t ncap = s->cap ? s->cap : 64;
    while (ncap < n) ncap *= 2;
    tok_symbol *ns = realloc(s->sym, ncap * sizeof *ns);
    if (ns) s->sym = ns;
    /* every merge pushes at most 2 entries: n initial + 2n later */
    heap_ent *nh = realloc(s->heap, ncap * 3 * sizeof *nh);
    if (nh) s->heap = nh;
    if (!ns || !nh) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for a piece of %zu bytes", n);
    s->cap = ncap;
    return MSA_OK;
}

static void add_symbol(tok_bpe_scratch *s, size_t *n, int32_t id, uint32_t len) {
    tok_symbol *sym = s->sym;
    int32_t prev = -1;
    if (*n > 0) {
        sym[*n - 1].next = (int32_t)*n;
        prev = (int32_t)*n - 1;
    }
    sym[*n] = (tok_symbol){.id = id, .prev = prev, .next = -1, .len = len};
    (*n)++;
}

/* Symbols for the bytes of the piece (HF merge_word; each byte-level "char" is one byte). */
static size_t initial_symbols(const msa_tokenizer *t, tok_bpe_scratch *s, const uint8_t *p, size_t n) {
    size_t ns = 0;
    int32_t unk_id = -1;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id >= 0) {
            if (unk_id >= 0) { add_symbol(s, &ns, unk_id, unk_len); unk_id = -1; }
            add_symbol(s, &ns, id, 1);
            continue;
        }
        if (t->byte_fallback && t->byte_fallback_id[p[i]] >= 0) {
            add_symbol(s, &ns, t->byte_fallback_id[p[i]], 1);
            continue;
        }
        if (t->unk_id >= 0) {
            if (unk_id >= 0 && t->fuse_unk) {
                unk_len++;
            } else {
                if (unk_id >= 0) add_symbol(s, &ns, unk_id, unk_len);
                unk_id = t->unk_id;
                unk_len = 1;
            }
        }
        /* else: HF drops characters it cannot represent */
    }
    if (unk_id >= 0) add_symbol(s, &ns, unk_id, unk_len);
    return ns;
}

static void merge_all(const msa_tokenizer *t, tok_bpe_scratch *s, size_t ns) {
    tok_symbol *sym = s->sym;
    heap_ent *h = (heap_ent *)s->heap;
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const tok_pairent *m = tok_pairmap_get(&t->merges, sym[i].id, sym[i + 1].id);
        if (m) heap_push(h, &nh, (heap_ent){m->rank, (uint32_t)i, m->new_id});
    }
    while (nh > 0) {
        heap_ent top = heap_pop(h, &nh);
        tok_symbol *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        size_t next_pos = (size_t)cur->next;
        tok_symbol right = sym[next_pos];
        const tok_pairent *m = tok_pairmap_get(&t->merges, cur->id, right.id);
        if (!m || m->new_id != top.new_id) continue;  /* stale entry */
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        sym[next_pos].len = 0;
        if (right.next >= 0) sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const tok_pairent *pm = tok_pairmap_get(&t->merges, sym[cur->prev].id, cur->id);
            if (pm) heap_push(h, &nh, (heap_ent){pm->rank, (uint32_t)cur->prev, pm->new_id});
        }
        if (cur->next >= 0) {
            const tok_pairent *nm = tok_pairmap_get(&t->merges, cur->id, sym[cur->next].id);
            if (nm) heap_push(h, &nh, (heap_ent){nm->rank, top.pos, nm->new_id});
        }
    }
}

msa_status tok_bpe_piece(const msa_tokenizer *t, tok_bpe_scratch *s, const char *p, size_t n, tok_ids *out) {
    if (n == 0) return MSA_OK;
    int32_t v;
    if (t->ignore_merges && tok_strmap_get(&t->bytes_vocab, p, n, &v)) return tok_ids_push(out, v);
    bool cacheable = n <= CACHE_MAX_PIECE;
    if (cacheable && tok_strmap_get(&s->cache, p, n, &v)) {
        int32_t cnt = s->cache_ids.v[v];
        for (int32_t i = 0; i < cnt; i++) MSA_TRY(tok_ids_push(out, s->cache_ids.v[v + 1 + i]));
        return MSA_OK;
    }
    if (n > UINT32_MAX / 4) return msa_fail(MSA_ERR_LIMIT, "tokenizer: a piece of %zu bytes is too long", n);
    MSA_TRY(reserve(s, n));
    size_t ns = initial_symbols(t, s, (const uint8_t *)p, n);
    merge_all(t, s, ns);
    size_t first = out->n;
    for (size_t i = 0; i < ns; i++)
        if (s->sym[i].len) MSA_TRY(tok_ids_push(out, s->sym[i].id));
    if (cacheable && s->cache.count < CACHE_MAX_ENTRIES) {
        size_t cnt = out->n - first;
        size_t off = s->cache_ids.n;
        MSA_TRY(tok_ids_push(&s->cache_ids, (int32_t)cnt));
        for (size_t i = 0; i < cnt; i++) MSA_TRY(tok_ids_push(&s->cache_ids, out->v[first + i]));
        if (off > INT32_MAX) return MSA_OK;
        MSA_TRY(tok_strmap_put(&s->cache, p, n, (int32_t)off));
    }
    return MSA_OK;
}
