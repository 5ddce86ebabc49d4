/* bm25.c — the lexical index of read mode's fused ranking (bm25.h): built from the bank's stored text, scored
 * per question, saved atomically as the bank directory's optional LEXICAL_BM25 file and loaded back with every
 * field checked.
 *
 * File (little-endian): "MSABM25\0" | u32 format 3 | f32 weight | u64 manifest version | u64 live documents |
 * u64 next index | u8 bank uuid[16] (format 2 and 3) | u32 n_terms | u64 total postings | doc lengths u32[next
 * index] | per term: u16 length, bytes, u32 df, df x (u32 doc index, u32 tf) | u64 XXH64 of everything before it.
 * The format also names the word rule (msa_bm25_next_word): format 3 splits words at Unicode punctuation;
 * formats 1 and 2 were made by the byte rule before it. Those are still read and scored by their own rule while current, never
 * extended, and rebuilt as format 3 by msa_bm25_refresh (what `msa bank add` runs). A stale format-3 index is
 * extended when the bank only gained documents since (msa_bm25_extend), instead of rebuilt from every document's
 * text. */
#include "memory/bm25.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "bank/bank.h"
#include "util/error.h"

#define BM25_K1 1.2
#define BM25_B 0.75
#define BM25_FORMAT 3      /* what this code writes */
#define BM25_FORMAT_BYTES 2 /* the last format made by the byte word rule */

typedef struct term { char *w; uint16_t len; uint32_t n, cap; uint32_t *doc, *tf; } term;

struct msa_bm25 {
    term *t;
    uint32_t n_terms, cap;
    uint32_t *slot;          /* open addressing: term index + 1, 0 empty; size slot_cap (power of two) */
    uint32_t slot_cap;
    uint32_t *dlen;          /* [n_index] words per document, 0 for none */
    uint64_t n_index, n_docs, version;
    uint8_t uuid[16];        /* the bank's (format 2 and 3); all zero from a format-1 file */
    uint32_t format;
    double avg;
    float weight;
};

/* The byte word rule of formats 1 and 2: ASCII letters and digits and every byte >= 0x80, so that curly quotes
 * and dashes stuck to the words beside them ("“the" was not "the"). */
static bool byte_wchar(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80; }

static size_t next_word_bytes(const char *s, size_t n, size_t *i, char *w, size_t *start) {
    while (*i < n && !byte_wchar((unsigned char)s[*i])) (*i)++;
    *start = *i;
    size_t k = 0;
    while (*i < n && byte_wchar((unsigned char)s[*i])) {
        unsigned char c = (unsigned char)s[(*i)++];
        if (k < MSA_BM25_MAX_WORD) w[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return k;
}

/* Format 3's rule: a word is a run of Unicode letters, marks and digits (categories L, M, N), lower-cased by
 * utf8proc's simple case mapping; everything else separates words, punctuation in any script and invalid UTF-8
 * included. A word longer than MSA_BM25_MAX_WORD bytes keeps its first whole characters that fit. */
static bool word_cp(utf8proc_int32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    const utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO; /* Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No */
}

/* one character of s[*i..n): its code point, or -1 for a byte that does not start valid UTF-8; *i moves past it */
static utf8proc_int32_t next_cp(const char *s, size_t n, size_t *i) {
    const unsigned char b = (unsigned char)s[*i];
    if (b < 0x80) return (*i)++, b;
    utf8proc_int32_t c;
    const utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(n - *i), &c);
    if (l < 1) return (*i)++, -1;
    *i += (size_t)l;
    return c;
}

size_t msa_bm25_next_word(const msa_bm25 *ix, const char *s, size_t n, size_t *i, char *w, size_t *start) {
    size_t unused;
    if (!start) start = &unused;
    if (ix && ix->format <= BM25_FORMAT_BYTES) return next_word_bytes(s, n, i, w, start);
    size_t k = 0;
    bool full = false;
    *start = n;
    while (*i < n) {
        const size_t at = *i;
        utf8proc_int32_t c = next_cp(s, n, i);
        if (c < 0 || !word_cp(c)) {
            if (k) {
                *i = at; /* the separator is the next call's to skip */
                break;
            }
            continue;
        }
        if (!k) *start = at;
        if (full) continue;
        c = utf8proc_tolower(c);
        utf8proc_uint8_t enc[4];
        const utf8proc_ssize_t el = c < 0x80 ? (enc[0] = (utf8proc_uint8_t)c, 1) : utf8proc_encode_char(c, enc);
        if (k + (size_t)el > MSA_BM25_MAX_WORD) full = true;
        else memcpy(w + k, enc, (size_t)el), k += (size_t)el;
    }
    return k;
}

static uint32_t hash(const char *w, size_t n) { return (uint32_t)XXH64(w, n, 0x626d3235); }

static int64_t find(const msa_bm25 *ix, const char *w, size_t n) {
    if (!ix->slot_cap) return -1;
    for (uint32_t h = hash(w, n) & (ix->slot_cap - 1);; h = (h + 1) & (ix->slot_cap - 1)) {
        uint32_t s = ix->slot[h];
        if (!s) return -1;
        const term *t = &ix->t[s - 1];
        if (t->len == n && !memcmp(t->w, w, n)) return s - 1;
    }
}

static msa_status grow_slots(msa_bm25 *ix) {
    uint32_t cap = ix->slot_cap ? ix->slot_cap * 2 : 1024;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    for (uint32_t i = 0; i < ix->n_terms; i++) {
        uint32_t h = hash(ix->t[i].w, ix->t[i].len) & (cap - 1);
        while (s[h]) h = (h + 1) & (cap - 1);
        s[h] = i + 1;
    }
    free(ix->slot);
    ix->slot = s;
    ix->slot_cap = cap;
    return MSA_OK;
}

static msa_status add_term(msa_bm25 *ix, const char *w, size_t n, uint32_t *id) {
    int64_t f = find(ix, w, n);
    if (f >= 0) {
        *id = (uint32_t)f;
        return MSA_OK;
    }
    if ((uint64_t)(ix->n_terms + 1) * 2 > ix->slot_cap) MSA_TRY(grow_slots(ix));
    if (ix->n_terms == ix->cap) {
        uint32_t cap = ix->cap ? ix->cap * 2 : 1024;
        term *t = realloc(ix->t, cap * sizeof *t);
        if (!t) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
        ix->t = t;
        ix->cap = cap;
    }
    term *t = &ix->t[ix->n_terms];
    memset(t, 0, sizeof *t);
    t->w = malloc(n ? n : 1);
    if (!t->w) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    memcpy(t->w, w, n);
    t->len = (uint16_t)n;
    uint32_t h = hash(w, n) & (ix->slot_cap - 1);
    while (ix->slot[h]) h = (h + 1) & (ix->slot_cap - 1);
    ix->slot[h] = ix->n_terms + 1;
    *id = ix->n_terms++;
    return MSA_OK;
}

static msa_status post(term *t, uint32_t doc) {
    if (t->n && t->doc[t->n - 1] == doc) {
        t->tf[t->n - 1]++;
        return MSA_OK;
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 4;
        uint32_t *d = realloc(t->doc, cap * sizeof *d);
        if (d) t->doc = d;
        uint32_t *f = realloc(t->tf, cap * sizeof *f);
        if (f) t->tf = f;
        if (!d || !f) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
        t->cap = cap;
    }
    t->doc[t->n] = doc;
    t->tf[t->n++] = 1;
    return MSA_OK;
}

void msa_bm25_free(msa_bm25 *ix) {
    if (!ix) return;
    for (uint32_t i = 0; i < ix->n_terms; i++) free(ix->t[i].w), free(ix->t[i].doc), free(ix->t[i].tf);
    free(ix->t), free(ix->slot), free(ix->dlen), free(ix);
}

static void finish(msa_bm25 *ix) {
    double tot = 0;
    uint64_t n = 0;
    for (uint64_t d = 0; d < ix->n_index; d++)
        if (ix->dlen[d]) tot += ix->dlen[d], n++;
    ix->avg = n ? tot / (double)n : 1;
}

/* Add live document number pos (msa_bank_doc_at order) to the index: its words' postings and its length. Its
 * index must be above every index already posted (postings stay ascending). */
static msa_status index_doc(const msa_bank *bank, msa_bm25 *ix, uint64_t pos, uint64_t min_index) {
    msa_bank_doc_info di;
    MSA_TRY(msa_bank_doc_at(bank, pos, &di));
    if (di.index >= ix->n_index) return MSA_OK;
    if (di.index < min_index) return msa_fail(MSA_ERR_MISMATCH, "lexical index: document %llu is not new",
                                               (unsigned long long)di.index);
    char *text = NULL, w[MSA_BM25_MAX_WORD];
    size_t len = 0, p = 0, k;
    msa_status st = msa_bank_doc_text(bank, di.index, &text, &len);
    uint32_t words = 0;
    while (!st && (k = msa_bm25_next_word(ix, text, len, &p, w, NULL)) > 0) {
        uint32_t id;
        st = add_term(ix, w, k, &id);
        if (!st) st = post(&ix->t[id], di.index);
        words++;
    }
    if (!st) ix->dlen[di.index] = words ? words : 1;
    free(text);
    return st;
}

msa_status msa_bm25_build(const msa_bank *bank, msa_bm25 **out) {
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    msa_bm25 *ix = calloc(1, sizeof *ix);
    if (!ix) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    ix->n_index = info.next_index, ix->n_docs = info.n_docs, ix->version = info.version, ix->weight = 0.5f;
    memcpy(ix->uuid, info.bank_uuid, sizeof ix->uuid);
    ix->format = BM25_FORMAT;
    ix->dlen = calloc(ix->n_index ? ix->n_index : 1, sizeof *ix->dlen);
    msa_status st = ix->dlen ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    const uint64_t n = msa_bank_n_docs(bank);
    for (uint64_t i = 0; i < n && !st; i++) st = index_doc(bank, ix, i, 0);
    if (st) {
        msa_bm25_free(ix);
        return st;
    }
    finish(ix);
    *out = ix;
    return MSA_OK;
}

msa_status msa_bm25_extend(const msa_bank *bank, msa_bm25 *ix) {
    msa_bank_info info;
    msa_bank_get_info(bank, &info);
    /* only additions since: every document the index knows is still live and every newer index is live */
    if (ix->format != BM25_FORMAT || memcmp(ix->uuid, info.bank_uuid, sizeof ix->uuid) || ix->version > info.version ||
        ix->n_index > info.next_index || ix->n_docs > info.n_docs ||
        info.n_docs - ix->n_docs != info.next_index - ix->n_index)
        return msa_fail(MSA_ERR_MISMATCH, "lexical index: the bank did not only gain documents since it was made");
    if (info.next_index > UINT32_MAX) return msa_fail(MSA_ERR_LIMIT, "lexical index: too many documents");
    uint32_t *dl = realloc(ix->dlen, (info.next_index ? info.next_index : 1) * sizeof *dl);
    if (!dl) return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    for (uint64_t d = ix->n_index; d < info.next_index; d++) dl[d] = 0;
    ix->dlen = dl;
    const uint64_t old_index = ix->n_index;
    ix->n_index = info.next_index;
    msa_status st = MSA_OK;
    for (uint64_t i = ix->n_docs; i < info.n_docs && !st; i++) st = index_doc(bank, ix, i, old_index);
    if (st) return st; /* ix is then half-extended: the caller frees it */
    ix->n_docs = info.n_docs, ix->version = info.version;
    finish(ix);
    return MSA_OK;
}

msa_status msa_bm25_score(const msa_bm25 *ix, const char *q, size_t len, float *scores, uint64_t n_index) {
    for (uint64_t d = 0; d < n_index; d++) scores[d] = 0;
    size_t p = 0, k;
    char w[MSA_BM25_MAX_WORD];
    const double N = (double)ix->n_docs;
    while ((k = msa_bm25_next_word(ix, q, len, &p, w, NULL)) > 0) {
        int64_t f = find(ix, w, k);
        if (f < 0) continue;
        const term *t = &ix->t[f];
        const double idf = log(1.0 + (N - t->n + 0.5) / (t->n + 0.5));
        for (uint32_t i = 0; i < t->n; i++) {
            const uint32_t d = t->doc[i];
            if (d >= n_index || d >= ix->n_index) continue;
            const double tf = t->tf[i];
            scores[d] += (float)(idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * ix->dlen[d] / ix->avg)));
        }
    }
    return MSA_OK;
}

double msa_bm25_idf(const msa_bm25 *ix, const char *word, size_t len) {
    char w[MSA_BM25_MAX_WORD];
    size_t p = 0, k = msa_bm25_next_word(ix, word, len, &p, w, NULL);
    int64_t f = k ? find(ix, w, k) : -1;
    const double N = (double)ix->n_docs, df = f >= 0 ? ix->t[f].n : 0;
    return log(1.0 + (N - df + 0.5) / (df + 0.5));
}

float msa_bm25_weight(const msa_bm25 *ix) { return ix->weight; }
void msa_bm25_set_weight(msa_bm25 *ix, float w) { ix->weight = w; }
const char *msa_bm25_bank_dir(const msa_bank *bank) { return bank->path; }

/* ---- file */

typedef struct wbuf { uint8_t *b; size_t n, cap; bool oom; } wbuf;
static void put(wbuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 1 << 16;
        while (c < b->n + n) c *= 2;
        uint8_t *t = realloc(b->b, c);
        if (!t) {
            b->oom = true;
            return;
        }
        b->b = t, b->cap = c;
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
#define PUT(b, v) put((b), &(v), sizeof(v)) /* the engine only builds on little-endian hosts (bank-format.md) */

msa_status msa_bm25_save(const msa_bm25 *ix, const char *dir) {
    wbuf b = {0};
    const uint32_t fmt = ix->format >= BM25_FORMAT ? BM25_FORMAT : BM25_FORMAT_BYTES; /* the word rule it was made by */
    uint64_t total = 0;
    for (uint32_t i = 0; i < ix->n_terms; i++) total += ix->t[i].n;
    put(&b, "MSABM25", 8);
    PUT(&b, fmt), PUT(&b, ix->weight), PUT(&b, ix->version), PUT(&b, ix->n_docs), PUT(&b, ix->n_index);
    put(&b, ix->uuid, sizeof ix->uuid);
    PUT(&b, ix->n_terms), PUT(&b, total);
    put(&b, ix->dlen, ix->n_index * sizeof *ix->dlen);
    for (uint32_t i = 0; i < ix->n_terms; i++) {
        const term *t = &ix->t[i];
        PUT(&b, t->len);
        put(&b, t->w, t->len);
        PUT(&b, t->n);
        for (uint32_t j = 0; j < t->n; j++) PUT(&b, t->doc[j]), PUT(&b, t->tf[j]);
    }
    uint64_t h = b.oom ? 0 : XXH64(b.b, b.n, 0);
    PUT(&b, h);
    if (b.oom) {
        free(b.b);
        return msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    }
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, MSA_BM25_FILE);
    snprintf(fin, sizeof fin, "%s/%s", dir, MSA_BM25_FILE);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    msa_status st = fd < 0 ? msa_fail(MSA_ERR_IO, "%s: cannot create", tmp) : MSA_OK;
    for (size_t off = 0; !st && off < b.n;) {
        ssize_t w = write(fd, b.b + off, b.n - off);
        if (w <= 0) st = msa_fail(MSA_ERR_IO, "%s: write failed", tmp);
        else off += (size_t)w;
    }
    if (!st && fsync(fd)) st = msa_fail(MSA_ERR_IO, "%s: fsync failed", tmp);
    if (fd >= 0) close(fd);
    if (!st && rename(tmp, fin)) st = msa_fail(MSA_ERR_IO, "%s: rename failed", fin);
    if (!st) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd)) st = msa_fail(MSA_ERR_IO, "%s: directory fsync failed", dir);
            close(dfd);
        }
    }
    if (st) unlink(tmp);
    free(b.b);
    return st;
}

typedef struct rbuf { const uint8_t *b; size_t n, at; bool bad; } rbuf;
static void get(rbuf *r, void *p, size_t n) {
    if (r->bad || n > r->n - r->at) {
        r->bad = true;
        memset(p, 0, n);
        return;
    }
    memcpy(p, r->b + r->at, n);
    r->at += n;
}
#define GET(r, v) get((r), &(v), sizeof(v))

/* stale_ok: also an index made for an earlier version of this bank (msa_bm25_extend decides what it is worth) */
static msa_status load_file(const msa_bank *bank, const char *dir, bool stale_ok, msa_bm25 **out) {
    char fin[4096];
    snprintf(fin, sizeof fin, "%s/%s", dir, MSA_BM25_FILE);
    FILE *f = fopen(fin, "rb");
    if (!f) return msa_fail(MSA_ERR_NOT_FOUND, "%s: no lexical index", fin);
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, r;
    uint8_t chunk[65536];
    msa_status st = MSA_OK;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n + r > ((size_t)1 << 34)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: too large", fin);
            break;
        }
        if (n + r > cap) {
            cap = cap ? cap * 2 : sizeof chunk * 4;
            while (cap < n + r) cap *= 2;
            uint8_t *t = realloc(buf, cap);
            if (!t) {
                st = msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
                break;
            }
            buf = t;
        }
        memcpy(buf + n, chunk, r);
        n += r;
    }
    fclose(f);
    if (!st && (n < 8 + 52 + 8 || memcmp(buf, "MSABM25", 8))) st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a lexical index", fin);
    if (!st) {
        uint64_t h;
        memcpy(&h, buf + n - 8, 8);
        if (h != XXH64(buf, n - 8, 0)) st = msa_fail(MSA_ERR_BAD_DATA, "%s: checksum mismatch", fin);
    }
    msa_bm25 *ix = st ? NULL : calloc(1, sizeof *ix);
    if (!st && !ix) st = msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
    if (!st) {
        rbuf rb = {buf, n - 8, 8, false};
        uint32_t fmt, nt;
        uint64_t total;
        GET(&rb, fmt), GET(&rb, ix->weight), GET(&rb, ix->version), GET(&rb, ix->n_docs), GET(&rb, ix->n_index);
        if (fmt >= 2) get(&rb, ix->uuid, sizeof ix->uuid);
        ix->format = fmt;
        GET(&rb, nt), GET(&rb, total);
        msa_bank_info info;
        msa_bank_get_info(bank, &info);
        if (rb.bad || fmt < 1 || fmt > BM25_FORMAT || !(ix->weight >= 0 && ix->weight <= 1))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: unsupported format or bad weight", fin);
        else if (fmt >= 2 && memcmp(ix->uuid, info.bank_uuid, sizeof ix->uuid))
            st = msa_fail(MSA_ERR_MISMATCH, "%s: made for another bank", fin);
        else if (!stale_ok && (ix->version != info.version || ix->n_docs != info.n_docs || ix->n_index != info.next_index))
            st = msa_fail(MSA_ERR_MISMATCH, "%s: made for another version of the bank", fin);
        else if (ix->n_index > (n - rb.at) / 4 || total > (n - rb.at) / 8 || nt > (n - rb.at) / 6)
            st = msa_fail(MSA_ERR_BAD_DATA, "%s: counts exceed the file", fin);
        if (!st) {
            ix->dlen = malloc((ix->n_index ? ix->n_index : 1) * sizeof *ix->dlen);
            if (!ix->dlen) st = msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
            else get(&rb, ix->dlen, ix->n_index * sizeof *ix->dlen);
        }
        for (uint32_t i = 0; !st && i < nt; i++) {
            uint16_t len;
            uint32_t df;
            char w[MSA_BM25_MAX_WORD];
            GET(&rb, len);
            if (rb.bad || len == 0 || len > MSA_BM25_MAX_WORD) {
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: bad term", fin);
                break;
            }
            get(&rb, w, len);
            GET(&rb, df);
            if (rb.bad || df == 0 || (uint64_t)df > ix->n_index || (uint64_t)df * 8 > rb.n - rb.at ||
                find(ix, w, len) >= 0) {
                st = msa_fail(MSA_ERR_BAD_DATA, "%s: bad term entry", fin);
                break;
            }
            uint32_t id;
            st = add_term(ix, w, len, &id);
            term *t = st ? NULL : &ix->t[id];
            if (t) {
                t->doc = malloc(df * sizeof *t->doc), t->tf = malloc(df * sizeof *t->tf);
                if (!t->doc || !t->tf) st = msa_fail(MSA_ERR_NOMEM, "out of memory (lexical index)");
                else t->cap = df;
            }
            for (uint32_t j = 0; !st && j < df; j++) {
                GET(&rb, t->doc[j]), GET(&rb, t->tf[j]);
                if (rb.bad || t->doc[j] >= ix->n_index || t->tf[j] == 0 || (j && t->doc[j] <= t->doc[j - 1]))
                    st = msa_fail(MSA_ERR_BAD_DATA, "%s: bad posting", fin);
                t->n = j + 1;
            }
        }
        if (!st && (rb.bad || rb.at != rb.n)) st = msa_fail(MSA_ERR_BAD_DATA, "%s: trailing or missing bytes", fin);
    }
    free(buf);
    if (st) {
        msa_bm25_free(ix);
        return st;
    }
    finish(ix);
    *out = ix;
    return MSA_OK;
}

msa_status msa_bm25_load(const msa_bank *bank, const char *dir, msa_bm25 **out) {
    return load_file(bank, dir, false, out);
}

msa_status msa_bm25_load_stale(const msa_bank *bank, const char *dir, msa_bm25 **out) {
    return load_file(bank, dir, true, out);
}

bool msa_bm25_current_weight(const msa_bank *bank, float *w) {
    msa_bm25 *ix = NULL;
    const bool current = msa_bm25_load(bank, msa_bm25_bank_dir(bank), &ix) == MSA_OK;
    if (current) *w = msa_bm25_weight(ix);
    else msa_clear_error(); /* absent, stale or unreadable: not an error here */
    msa_bm25_free(ix);
    return current;
}

msa_status msa_bm25_refresh(msa_bank *bank, float w, bool *updated) {
    if (updated) *updated = false;
    msa_bank_info bi;
    msa_bank_get_info(bank, &bi);
    if (bi.shape.mode != MSA_BANK_READ) return MSA_OK;
    /* one read of the file: kept when current with weight w and made by today's word rule; a stale index of this
     * bank that only lacks the documents added since is extended; anything else rebuilt */
    msa_bm25 *ix = NULL;
    msa_status st = msa_bm25_load_stale(bank, msa_bm25_bank_dir(bank), &ix);
    if (!st && ix->version == bi.version && ix->n_docs == bi.n_docs && ix->n_index == bi.next_index &&
        ix->weight == w && ix->format == BM25_FORMAT) {
        msa_bm25_free(ix);
        return MSA_OK;
    }
    if (!st) st = msa_bm25_extend(bank, ix);
    if (st) {
        msa_bm25_free(ix), ix = NULL;
        msa_clear_error();
        st = msa_bm25_build(bank, &ix);
    }
    if (!st) msa_bm25_set_weight(ix, w), st = msa_bm25_save(ix, msa_bm25_bank_dir(bank));
    msa_bm25_free(ix);
    if (updated) *updated = !st;
    return st;
}
