/* pretok.c — normalizers and pre-tokenizer steps, as Hugging Face `tokenizers` runs them.
 * HF matches its regexes with Oniguruma; we use PCRE2 (UTF + UCP, JIT). Their Unicode tables differ:
 * Oniguruma in `tokenizers` 0.23 knows Unicode 16 letters and numbers that PCRE2 10.42 (Unicode 14) does
 * not, and PCRE2's \s has U+180E which Oniguruma's lacks. translate_regex() rewrites \s, \S, \p{L}, \p{N}
 * (and \P{..} outside classes) into explicit classes so both engines see the same character sets; the
 * extra ranges were measured against `tokenizers` over every code point (tests/ref/make_tokenizer_fixtures.py
 * re-checks them through the code-point sweep fixtures). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

/* Oniguruma's \s (tokenizers 0.23). */
static const char WS_SET[] =
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

/* Letters and numbers Oniguruma (Unicode 16) has beyond PCRE2 10.42's tables. */
static const uint32_t L_EXTRA[][2] = {
    {0x1c89, 0x1c8a}, {0xa7cb, 0xa7cd}, {0xa7da, 0xa7dc}, {0x105c0, 0x105f3}, {0x10d4a, 0x10d65},
    {0x10d6f, 0x10d85}, {0x10ec2, 0x10ec4}, {0x1123f, 0x11240}, {0x11380, 0x11389}, {0x1138b, 0x1138b},
    {0x1138e, 0x1138e}, {0x11390, 0x113b5}, {0x113b7, 0x113b7}, {0x113d1, 0x113d1}, {0x113d3, 0x113d3},
    {0x11bc0, 0x11be0}, {0x11f02, 0x11f02}, {0x11f04, 0x11f10}, {0x11f12, 0x11f33}, {0x1342f, 0x1342f},
    {0x13441, 0x13446}, {0x13460, 0x143fa}, {0x16100, 0x1611d}, {0x16d40, 0x16d6c}, {0x18cff, 0x18cff},
    {0x1b132, 0x1b132}, {0x1b155, 0x1b155}, {0x1df25, 0x1df2a}, {0x1e030, 0x1e06d}, {0x1e4d0, 0x1e4eb},
    {0x1e5d0, 0x1e5ed}, {0x1e5f0, 0x1e5f0}, {0x2b739, 0x2b739}, {0x2ebf0, 0x2ee5d}, {0x31350, 0x323af},
};
static const uint32_t N_EXTRA[][2] = {
    {0x10d40, 0x10d49}, {0x116d0, 0x116e3}, {0x11bf0, 0x11bf9}, {0x11f50, 0x11f59}, {0x16130, 0x16139},
    {0x16d70, 0x16d79}, {0x1ccf0, 0x1ccf9}, {0x1d2c0, 0x1d2d3}, {0x1e4f0, 0x1e4f9}, {0x1e5f1, 0x1e5fa},
};
/* Rust's char::is_numeric (HF Digits) beyond PCRE2's \p{N}: N_EXTRA plus these. */
static const uint32_t RUST_N_EXTRA[][2] = {{0x11de0, 0x11de9}, {0x16ff4, 0x16ff6}};

/* The GPT-2 regex of HF's ByteLevel pre-tokenizer (use_regex true). */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 256;
        while (ncap < b->n + n + 1) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_ranges(sbuf *b, const uint32_t (*r)[2], size_t n) {
    char tmp[48];
    for (size_t i = 0; i < n; i++) {
        int len = r[i][0] == r[i][1] ? snprintf(tmp, sizeof tmp, "\\x{%x}", (unsigned)r[i][0])
                                     : snprintf(tmp, sizeof tmp, "\\x{%x}-\\x{%x}", (unsigned)r[i][0], (unsigned)r[i][1]);
        sb_add(b, tmp, (size_t)len);
    }
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Class body (without brackets) for a Unicode property we re-define; NULL for others. */
static bool property_body(sbuf *b, const char *name, size_t len) {
    if (len == 1 && name[0] == 'L') {
        sb_str(b, "\\p{L}");
        sb_ranges(b, L_EXTRA, NELEM(L_EXTRA));
        return true;
    }
    if (len == 1 && name[0] == 'N') {
        sb_str(b, "\\p{N}");
        sb_ranges(b, N_EXTRA, NELEM(N_EXTRA));
        return true;
    }
    return false;
}

/* Rewrite an Oniguruma-dialect regex for PCRE2 with Oniguruma's character sets (see the file comment). */
static msa_status translate_regex(const char *pat, size_t len, sbuf *out) {
    bool in_class = false;
    size_t i = 0;
    while (i < len) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char e = pat[i + 1];
            if (e == 's') {
                if (!in_class) sb_str(out, "[");
                sb_str(out, WS_SET);
                if (!in_class) sb_str(out, "]");
                i += 2;
                continue;
            }
            if (e == 'S' && !in_class) {
                sb_str(out, "[^");
                sb_str(out, WS_SET);
                sb_str(out, "]");
                i += 2;
                continue;
            }
            if ((e == 'p' || e == 'P') && i + 2 < len && pat[i + 2] == '{') {
                const char *name = pat + i + 3;
                const char *end = memchr(name, '}', len - (i + 3));
                if (end) {
                    size_t nlen = (size_t)(end - name);
                    sbuf body = {0};
                    bool ours = property_body(&body, name, nlen);
                    if (body.oom) { free(body.p); return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory"); }
                    if (ours && (e == 'p' || !in_class)) {
                        sb_str(out, in_class ? "" : (e == 'p' ? "[" : "[^"));
                        sb_add(out, body.p, body.n);
                        sb_str(out, in_class ? "" : "]");
                        free(body.p);
                        i = (size_t)(end - pat) + 1;
                        continue;
                    }
                    free(body.p);
                }
            }
            /* Any other escape (including \x{..}, \Q..\E's start) is copied as written. */
            sb_add(out, pat + i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            sb_add(out, pat + i, 1);
            i++;
            if (i < len && pat[i] == '^') { sb_add(out, pat + i, 1); i++; }
            if (i < len && pat[i] == ']') { sb_add(out, pat + i, 1); i++; }  /* a leading ] is literal */
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && pat[i + 1] == ':') {  /* POSIX class [:alpha:] */
            const char *end = NULL;
            for (size_t j = i + 2; j + 1 < len; j++)
                if (pat[j] == ':' && pat[j + 1] == ']') { end = pat + j; break; }
            if (end) {
                sb_add(out, pat + i, (size_t)(end - (pat + i)) + 2);
                i = (size_t)(end - pat) + 2;
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        sb_add(out, pat + i, 1);
        i++;
    }
    if (out->oom) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory");
    if (!out->p) sb_add(out, "", 0);
    return MSA_OK;
}

static msa_status compile(const char *pattern, size_t len, uint32_t extra_opts, const char *what, void **re_out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = (extra_opts & PCRE2_LITERAL) ? PCRE2_UTF | extra_opts : PCRE2_UTF | PCRE2_UCP | extra_opts;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: %s regex does not compile at offset %zu: %s", what,
                        (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  /* falls back to the interpreter when JIT is unavailable */
    *re_out = re;
    return MSA_OK;
}

static msa_status add_step(msa_tokenizer *t, tok_pre_step step) {
    if (t->n_pre >= TOK_MAX_PRE_STEPS) {
        if (step.re) pcre2_code_free(step.re);
        return msa_fail(MSA_ERR_LIMIT, "pre_tokenizer: more than %d steps", TOK_MAX_PRE_STEPS);
    }
    t->pre[t->n_pre++] = step;
    return MSA_OK;
}

msa_status tok_pre_add_split(msa_tokenizer *t, const char *pattern, size_t len, bool literal,
                             tok_split_behavior behavior, bool invert) {
    tok_pre_step step = {.kind = TOK_PRE_SPLIT, .behavior = behavior, .invert = invert};
    if (literal) {
        if (len == 0) return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: Split with an empty string pattern");
        MSA_TRY(compile(pattern, len, PCRE2_LITERAL, "Split", &step.re));
    } else {
        if (len > 65536) return msa_fail(MSA_ERR_LIMIT, "pre_tokenizer: Split regex of %zu bytes", len);
        if (memchr(pattern, '\0', len)) return msa_fail(MSA_ERR_UNSUPPORTED, "pre_tokenizer: Split regex contains NUL");
        sbuf b = {0};
        msa_status st = translate_regex(pattern, len, &b);
        if (st == MSA_OK) st = compile(b.p, b.n, 0, "Split", &step.re);
        free(b.p);
        MSA_TRY(st);
    }
    return add_step(t, step);
}

msa_status tok_pre_add_digits(msa_tokenizer *t, bool individual) {
    sbuf b = {0};
    sb_str(&b, "[\\p{N}");
    sb_ranges(&b, N_EXTRA, NELEM(N_EXTRA));
    sb_ranges(&b, RUST_N_EXTRA, NELEM(RUST_N_EXTRA));
    sb_str(&b, "]");
    if (b.oom) { free(b.p); return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory"); }
    tok_pre_step step = {.kind = TOK_PRE_SPLIT,
                         .behavior = individual ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS};
    msa_status st = compile(b.p, b.n, 0, "Digits", &step.re);
    free(b.p);
    MSA_TRY(st);
    return add_step(t, step);
}

msa_status tok_pre_add_bytelevel(msa_tokenizer *t, bool add_prefix_space, bool use_regex) {
    if (add_prefix_space) MSA_TRY(add_step(t, (tok_pre_step){.kind = TOK_PRE_PREFIX_SPACE}));
    if (use_regex)
        MSA_TRY(tok_pre_add_split(t, GPT2_REGEX, sizeof GPT2_REGEX - 1, false, TOK_SPLIT_ISOLATED, false));
    return MSA_OK;
}

void tok_pre_free(msa_tokenizer *t) {
    for (size_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    t->n_pre = 0;
}

/* ------------------------------------------------------------------------------------------ running */

msa_status tok_run_init(tok_run *r) {
    memset(r, 0, sizeof *r);
    r->md = pcre2_match_data_create(4, NULL);
    r->mctx = pcre2_match_context_create(NULL);
    r->jit_stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (!r->md || !r->mctx || !r->jit_stack) {
        tok_run_free(r);
        return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for regex state");
    }
    pcre2_jit_stack_assign(r->mctx, NULL, r->jit_stack);
    return MSA_OK;
}

void tok_run_free(tok_run *r) {
    if (r->md) pcre2_match_data_free(r->md);
    if (r->mctx) pcre2_match_context_free(r->mctx);
    if (r->jit_stack) pcre2_jit_stack_free(r->jit_stack);
    free(r->a.v);
    free(r->b.v);
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    memset(r, 0, sizeof *r);
}

static msa_status push(tok_pieces *l, const char *p, size_t n) {
    if (n == 0) return MSA_OK;  /* HF drops empty splits */
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        tok_piece *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for %zu pieces", ncap);
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = (tok_piece){p, n};
    return MSA_OK;
}

typedef struct span {
    size_t s, e;
    bool match;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static msa_status span_push(spans *l, size_t s, size_t e, bool match) {
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        span *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for regex matches");
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = (span){s, e, match};
    return MSA_OK;
}

static size_t char_len_at(const char *p, size_t n, size_t i) {
    if (i >= n) return 1;
    uint8_t b = (uint8_t)p[i];
    size_t l = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    return i + l <= n ? l : n - i;
}

/* Matches and gaps covering p[0..n), as HF's Pattern::find_matches over the onig crate's find_iter (an empty
 * match right where the previous match ended is skipped by advancing one character). */
static msa_status find_matches(const tok_pre_step *st, tok_run *r, const char *p, size_t n, spans *out) {
    out->n = 0;
    size_t prev = 0, last_end = 0, last_match_end = 0;
    bool have_last = false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
    while (last_end <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)p, n, last_end, PCRE2_NO_UTF_CHECK, r->md, r->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return msa_fail(rc == PCRE2_ERROR_NOMEMORY ? MSA_ERR_NOMEM : MSA_ERR_LIMIT,
                            "tokenizer: pre-tokenizer regex failed on a %zu-byte piece: %s", n, (const char *)msg);
        }
        size_t s = ov[0], e = ov[1];
        if (e == s && have_last && last_match_end == e) {
            last_end += char_len_at(p, n, last_end);
            continue;
        }
        last_end = e;
        last_match_end = e;
        have_last = true;
        if (prev != s) MSA_TRY(span_push(out, prev, s, false));
        MSA_TRY(span_push(out, s, e, true));
        prev = e;
    }
    if (prev != n) MSA_TRY(span_push(out, prev, n, false));
    return MSA_OK;
}

/* One split step on one piece, appending the resulting pieces (HF NormalizedString::split). */
static msa_status split_piece(const tok_pre_step *st, tok_run *r, spans *sp, const char *p, size_t n,
                              tok_pieces *out) {
    MSA_TRY(find_matches(st, r, p, n, sp));
    if (st->invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].match = !sp->v[i].match;
    switch (st->behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < sp->n; i++) MSA_TRY(push(out, p + sp->v[i].s, sp->v[i].e - sp->v[i].s));
        return MSA_OK;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < sp->n; i++)
            if (!sp->v[i].match) MSA_TRY(push(out, p + sp->v[i].s, sp->v[i].e - sp->v[i].s));
        return MSA_OK;
    default: break;
    }
    /* Merging behaviours: fold spans into k output spans, then push them. */
    size_t k = 0;
    bool prev_match = false;
    if (st->behavior == TOK_SPLIT_MERGED_NEXT) {
        /* Walk right to left, extending the later span's start. */
        size_t m = sp->n;
        span *v = sp->v;
        size_t w = m;  /* output written at v[w..m) (reverse compaction) */
        for (size_t i = m; i-- > 0;) {
            span cur = v[i];
            if (cur.match && !prev_match && w < m) v[w].s = cur.s;
            else v[--w] = cur;
            prev_match = cur.match;
        }
        for (size_t i = w; i < m; i++) MSA_TRY(push(out, p + v[i].s, v[i].e - v[i].s));
        return MSA_OK;
    }
    for (size_t i = 0; i < sp->n; i++) {
        span cur = sp->v[i];
        bool extend = st->behavior == TOK_SPLIT_CONTIGUOUS ? (cur.match == prev_match && k > 0)
                                                           : (cur.match && !prev_match && k > 0);
        if (st->behavior == TOK_SPLIT_CONTIGUOUS && cur.match == prev_match && k == 0) extend = false;
        if (extend) sp->v[k - 1].e = cur.e;
        else sp->v[k++] = cur;
        prev_match = cur.match;
    }
    for (size_t i = 0; i < k; i++) MSA_TRY(push(out, p + sp->v[i].s, sp->v[i].e - sp->v[i].s));
    return MSA_OK;
}

static msa_status prefix_piece(tok_run *r, const char *p, size_t n, tok_pieces *out) {
    if (n > 0 && p[0] == ' ') return push(out, p, n);
    if (r->n_owned == r->cap_owned) {
        size_t ncap = r->cap_owned ? r->cap_owned * 2 : 16;
        char **no = realloc(r->owned, ncap * sizeof *no);
        if (!no) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory");
        r->owned = no;
        r->cap_owned = ncap;
    }
    char *s = malloc(n + 2);
    if (!s) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory");
    s[0] = ' ';
    memcpy(s + 1, p, n);
    s[n + 1] = '\0';
    r->owned[r->n_owned++] = s;
    return push(out, s, n + 1);
}

msa_status tok_pretokenize(const msa_tokenizer *t, tok_run *r, const char *s, size_t n, const tok_pieces **out) {
    tok_pieces *cur = &r->a, *next = &r->b;
    cur->n = 0;
    MSA_TRY(push(cur, s, n));
    spans sp = {0};
    msa_status st = MSA_OK;
    for (size_t k = 0; k < t->n_pre && st == MSA_OK; k++) {
        const tok_pre_step *step = &t->pre[k];
        next->n = 0;
        for (size_t i = 0; i < cur->n && st == MSA_OK; i++) {
            if (step->kind == TOK_PRE_PREFIX_SPACE) st = prefix_piece(r, cur->v[i].p, cur->v[i].n, next);
            else st = split_piece(step, r, &sp, cur->v[i].p, cur->v[i].n, next);
        }
        tok_pieces *tmp = cur;
        cur = next;
        next = tmp;
    }
    free(sp.v);
    *out = cur;
    return st;
}

/* Code points that NFC leaves alone in any context: combining class 0, not a mark and not a Hangul vowel or
 * trailing consonant (so nothing composes onto them), and NFC of the character alone is itself. Text made
 * only of these is already NFC, which spares utf8proc on most text (em dashes, curly quotes, CJK, emoji). */
static uint8_t nfc_inert[0x110000 / 8];
static pthread_once_t nfc_inert_once = PTHREAD_ONCE_INIT;

static void nfc_inert_init(void) {
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp < 0xE000) continue;
        const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
        if (p->combining_class != 0) continue;
        if (p->category == UTF8PROC_CATEGORY_MN || p->category == UTF8PROC_CATEGORY_MC ||
            p->category == UTF8PROC_CATEGORY_ME)
            continue;
        if ((cp >= 0x1160 && cp <= 0x11FF) || (cp >= 0xD7B0 && cp <= 0xD7FF)) continue;  /* jamo V/T */
        if (p->decomp_seqindex != UINT16_MAX) {  /* has a decomposition: inert only if NFC gives it back */
            char enc[4];
            size_t l = tok_utf8_encode(cp, enc);
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)enc, (utf8proc_ssize_t)l, &dst,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            bool same = r == (utf8proc_ssize_t)l && memcmp(dst, enc, l) == 0;
            free(dst);
            if (!same) continue;
        }
        nfc_inert[cp >> 3] |= (uint8_t)(1u << (cp & 7));
    }
}

static bool already_nfc(const char *s, size_t n) {
    pthread_once(&nfc_inert_once, nfc_inert_init);
    const uint8_t *b = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (b[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t l = tok_utf8_decode(b + i, n - i, &cp);
        if (!l || !(nfc_inert[cp >> 3] & (1u << (cp & 7)))) return false;
        i += l;
    }
    return true;
}

msa_status tok_normalize(const msa_tokenizer *t, const char *s, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = n;
    if (t->n_norm == 0) return MSA_OK;
    bool ascii = true;  /* every Unicode normal form leaves ASCII as it is */
    for (size_t i = 0; i < n && ascii; i++) ascii = (uint8_t)s[i] < 0x80;
    if (ascii) return MSA_OK;
    bool only_nfc = true;
    for (size_t k = 0; k < t->n_norm; k++) only_nfc = only_nfc && t->norm[k] == TOK_NORM_NFC;
    if (only_nfc && already_nfc(s, n)) return MSA_OK;
    if (n > (size_t)PTRDIFF_MAX / 8) return msa_fail(MSA_ERR_LIMIT, "tokenizer: text of %zu bytes is too long", n);
    char *cur = NULL;
    size_t cur_n = n;
    for (size_t k = 0; k < t->n_norm; k++) {
        utf8proc_option_t opt = UTF8PROC_STABLE;
        switch (t->norm[k]) {
        case TOK_NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
        case TOK_NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
        case TOK_NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case TOK_NORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
        }
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)(cur ? cur : s), (utf8proc_ssize_t)cur_n, &dst, opt);
        free(cur);
        if (r < 0) {
            free(dst);
            if (r == UTF8PROC_ERROR_NOMEM) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory normalizing text");
            return msa_fail(MSA_ERR_INTERNAL, "tokenizer: normalizer failed: %s", utf8proc_errmsg(r));
        }
        cur = (char *)dst;
        cur_n = (size_t)r;
    }
    *out = cur;
    *out_n = cur_n;
    return MSA_OK;
}
