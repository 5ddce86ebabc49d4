/* added.c — splitting text around added tokens exactly as HF AddedVocabulary does (find_matches): the
 * matcher is leftmost-longest like HF's Aho-Corasick automaton; a match rejected by single_word still
 * consumes its bytes (the automaton resumes after it); lstrip/rstrip widen the token over neighbouring
 * whitespace (Rust char::is_whitespace). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

static const char *pattern_of(const msa_tokenizer *t, const tok_added *a, int pass, size_t *len) {
    *len = pass ? a->norm_len : a->len;
    return t->blob + (pass ? a->norm_off : a->off);
}

typedef struct cand_sort {
    uint32_t idx;
    size_t len;
    uint8_t first;
} cand_sort;

static int cand_cmp(const void *x, const void *y) {
    const cand_sort *a = x, *b = y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

msa_status tok_added_index(msa_tokenizer *t) {
    for (int pass = 0; pass < 2; pass++) {
        free(t->cand_start[pass]);
        free(t->cand[pass]);
        t->cand_start[pass] = calloc(257, sizeof(uint32_t));
        cand_sort *cs = malloc((t->n_added ? t->n_added : 1) * sizeof *cs);
        t->cand[pass] = malloc((t->n_added ? t->n_added : 1) * sizeof(uint32_t));
        if (!t->cand_start[pass] || !cs || !t->cand[pass]) {
            free(cs);
            return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory indexing added tokens");
        }
        size_t n = 0;
        for (size_t i = 0; i < t->n_added; i++) {
            const tok_added *a = &t->added[i];
            if (a->normalized != (pass == 1)) continue;
            size_t len;
            const char *p = pattern_of(t, a, pass, &len);
            if (len == 0) continue;
            cs[n++] = (cand_sort){(uint32_t)i, len, (uint8_t)p[0]};
        }
        qsort(cs, n, sizeof *cs, cand_cmp);
        for (size_t i = 0; i < n; i++) {
            t->cand[pass][i] = cs[i].idx;
            t->cand_start[pass][cs[i].first + 1]++;
        }
        for (int b = 0; b < 256; b++) t->cand_start[pass][b + 1] += t->cand_start[pass][b];
        free(cs);
    }
    return MSA_OK;
}

static bool is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust's c.is_alphanumeric() || c == '_' (letters and numbers by general category; Other_Alphabetic marks
 * are not included, a small difference that only matters for single_word tokens). */
static bool is_word(uint32_t c) {
    if (c == '_') return true;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* The code point that ends at s[end) (s valid UTF-8, end > 0), and its start. */
static uint32_t cp_before(const char *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp = 0xFFFD;
    tok_utf8_decode((const uint8_t *)s + i, end - i, &cp);
    *start = i;
    return cp;
}

static uint32_t cp_at(const char *s, size_t n, size_t i, size_t *len) {
    uint32_t cp = 0xFFFD;
    *len = tok_utf8_decode((const uint8_t *)s + i, n - i, &cp);
    if (*len == 0) *len = 1;
    return cp;
}

static msa_status seg_push(tok_segs *o, size_t s, size_t e, int32_t id) {
    if (o->n == o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 16;
        tok_seg *nv = realloc(o->v, ncap * sizeof *nv);
        if (!nv) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory");
        o->v = nv;
        o->cap = ncap;
    }
    o->v[o->n++] = (tok_seg){s, e, id};
    return MSA_OK;
}

msa_status tok_added_split(const msa_tokenizer *t, const char *s, size_t n, int pass, bool parse_special,
                           tok_segs *out) {
    out->n = 0;
    const uint32_t *start_of = t->cand_start[pass], *cand = t->cand[pass];
    size_t start_offset = 0, pos = 0;
    bool any = start_of && start_of[256] > 0;
    while (any && pos < n) {
        uint8_t b = (uint8_t)s[pos];
        const tok_added *hit = NULL;
        size_t hit_len = 0;
        for (uint32_t k = start_of[b]; k < start_of[b + 1]; k++) {
            const tok_added *a = &t->added[cand[k]];
            if (a->special && !parse_special) continue;
            size_t len;
            const char *p = pattern_of(t, a, pass, &len);
            if (len <= n - pos && memcmp(s + pos, p, len) == 0) {
                hit = a;
                hit_len = len;
                break;  /* sorted longest first */
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + hit_len;
        pos = stop;  /* the automaton resumes after the match, whether or not it is used */
        if (hit->single_word) {
            size_t cs, cl;
            bool start_space = start == 0 || !is_word(cp_before(s, start, &cs));
            bool stop_space = stop == n || !is_word(cp_at(s, n, stop, &cl));
            if (!start_space || !stop_space) continue;
        }
        if (hit->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t cs;
                uint32_t c = cp_before(s, ns, &cs);
                if (!is_ws(c)) break;
                ns = cs;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (hit->rstrip) {
            while (stop < n) {
                size_t cl;
                uint32_t c = cp_at(s, n, stop, &cl);
                if (!is_ws(c)) break;
                stop += cl;
            }
        }
        if (start_offset < start) MSA_TRY(seg_push(out, start_offset, start, -1));
        MSA_TRY(seg_push(out, start, stop, hit->id));
        start_offset = stop;
    }
    if (start_offset < n || n == 0) MSA_TRY(seg_push(out, start_offset, n, -1));
    return MSA_OK;
}
