/* interleave.c — the Memory Interleave state machine and its round driver (see interleave.h). */
#include "memory/interleave.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

msa_il_params msa_il_default_params(void) {
    msa_il_params p = {.max_rounds = 8, .max_new_tokens = 2048, .max_retrieval_chars = 1000};
    return p;
}

/* ---- growable buffers */

typedef struct ibuf { int32_t *id; int8_t *role; size_t n, cap; } ibuf;
typedef struct sbuf { char *s; size_t n, cap; } sbuf;

static msa_status ibuf_push(ibuf *b, const int32_t *ids, size_t n, int8_t role) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        int32_t *id = realloc(b->id, cap * sizeof *id);
        if (id) b->id = id;
        int8_t *r = realloc(b->role, cap * sizeof *r);
        if (r) b->role = r;
        if (!id || !r) return msa_fail(MSA_ERR_NOMEM, "interleave: out of memory for %zu tokens", cap);
        b->cap = cap;
    }
    if (n) memcpy(b->id + b->n, ids, n * sizeof *ids);
    memset(b->role + b->n, role, n);
    b->n += n;
    return MSA_OK;
}

static msa_status sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return msa_fail(MSA_ERR_NOMEM, "interleave: out of memory for %zu bytes of text", cap);
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return MSA_OK;
}

static msa_status sbuf_str(sbuf *b, const char *s) { return sbuf_add(b, s, strlen(s)); }

static msa_status add_piece(const msa_il_ops *ops, sbuf *b, int32_t id) {
    char buf[256];
    int n = ops->piece(ops->ctx, id, buf, sizeof buf);
    if (n < 0) return msa_fail(MSA_ERR_INTERNAL, "interleave: the model produced invalid token id %d", id);
    if ((size_t)n <= sizeof buf) return sbuf_add(b, buf, (size_t)n);
    char *big = malloc((size_t)n);
    if (!big) return msa_fail(MSA_ERR_NOMEM, "interleave: out of memory");
    ops->piece(ops->ctx, id, big, (size_t)n);
    msa_status st = sbuf_add(b, big, (size_t)n);
    free(big);
    return st;
}

static msa_status tok_push(const msa_il_ops *ops, ibuf *b, const char *text, size_t len, bool special,
                           int8_t role) {
    int32_t *ids = NULL;
    size_t n = 0;
    MSA_TRY(ops->tokenize(ops->ctx, text, len, special, &ids, &n));
    msa_status st = ibuf_push(b, ids, n, role);
    free(ids);
    return st;
}

msa_status msa_il_build_question(const msa_il_ops *ops, const char *question, size_t qlen, int32_t **ids_out,
                                 int8_t **roles_out, size_t *n_out, size_t *n_route_prefix) {
    sbuf q = {0};
    ibuf b = {0};
    msa_status st = sbuf_str(&q, MSA_IL_INSTRUCTION);
    if (!st) st = sbuf_add(&q, question, qlen);
    if (!st) st = sbuf_str(&q, MSA_IL_RETURN_DOCS);
    /* region 2 of later rounds: the prefix up to and including "...related to the question" */
    size_t n_prefix = 0;
    if (!st) {
        int32_t *ids = NULL;
        st = ops->tokenize(ops->ctx, q.s, q.n, false, &ids, &n_prefix);
        free(ids);
    }
    if (!st) st = sbuf_str(&q, "\n");
    if (!st) st = tok_push(ops, &b, q.s, q.n, false, MSA_ROLE_ROUTE);
    if (!st) st = tok_push(ops, &b, "<|im_end|>\n", 11, true, MSA_ROLE_TEMPLATE);
    if (!st) st = tok_push(ops, &b, "<|im_start|>", 12, true, MSA_ROLE_ATTEND);
    free(q.s);
    if (st) {
        free(b.id), free(b.role);
        return st;
    }
    *ids_out = b.id;
    *roles_out = b.role;
    *n_out = b.n;
    if (n_route_prefix) *n_route_prefix = n_prefix;
    return MSA_OK;
}

/* Sorted unique stable indices of "[digits]" in text that name live documents. */
static msa_status parse_ids(const msa_il_ops *ops, const char *text, uint32_t **out, size_t *n_out) {
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (const char *p = text; (p = strchr(p, '[')) != NULL; p++) {
        const char *d = p + 1;
        uint64_t v = 0;
        int nd = 0;
        while (*d >= '0' && *d <= '9' && nd < 11) v = v * 10 + (uint64_t)(*d++ - '0'), nd++;
        if (nd == 0 || nd > 10 || *d != ']' || v >= UINT32_MAX) continue;
        size_t len;
        if (!ops->doc_text(ops->ctx, v, &len)) continue;
        size_t i = 0;
        while (i < n && ids[i] < v) i++;
        if (i < n && ids[i] == v) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint32_t *q = realloc(ids, cap * sizeof *q);
            if (!q) {
                free(ids);
                return msa_fail(MSA_ERR_NOMEM, "interleave: out of memory");
            }
            ids = q;
        }
        memmove(ids + i + 1, ids + i, (n - i) * sizeof *ids);
        ids[i] = (uint32_t)v;
        n++;
    }
    *out = ids;
    *n_out = n;
    return MSA_OK;
}

void msa_il_result_free(msa_il_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_rounds; i++) {
        free(r->rounds[i].generated);
        free(r->rounds[i].injected);
    }
    free(r->rounds);
    free(r->transcript);
    free(r->answer);
    memset(r, 0, sizeof *r);
}

static char *trim_dup(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

/* The answer: after the last answer mark (else all of `text`), up to the first "<|im_end|>" / "<|endoftext|>". */
static char *extract_answer(const char *text) {
    const char *a = text, *p = text;
    while ((p = strstr(p, MSA_IL_ANSWER_MARK)) != NULL) a = p + strlen(MSA_IL_ANSWER_MARK), p++;
    size_t n = strlen(a);
    const char *ends[] = {"<|im_end|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++) {
        const char *e = strstr(a, ends[i]);
        if (e && (size_t)(e - a) < n) n = (size_t)(e - a);
    }
    return trim_dup(a, n);
}

typedef enum { END_EOS, END_ROUND, END_RETRIEVAL, END_LIMIT, END_CANCEL } call_end;

static bool cancelled(const msa_il_params *p) { return p->cancel && *p->cancel; }

/* The answer stream: text decoded after the question injection goes to on_answer, except a leading answer
 * mark (held back while the text so far could still become it, then dropped with what precedes it) and
 * anything from an end-of-generation marker on. */
typedef struct astream {
    const msa_il_params *p;
    sbuf held;
    bool decided, stopped, any;
} astream;

static void as_emit(astream *a, const char *s, size_t n) {
    if (!n || a->stopped) return;
    a->p->on_answer(s, n, a->p->user);
    a->any = true;
}

static msa_status as_push(astream *a, const char *piece, size_t n) {
    if (!a->p->on_answer || a->stopped) return MSA_OK;
    const char *ends[] = {"<|im_end|>", "<|endoftext|>"};
    for (int i = 0; i < 2; i++) {
        const char *e = memmem(piece, n, ends[i], strlen(ends[i]));
        if (e) {
            n = (size_t)(e - piece);
            if (!a->decided) { /* what was held is all the answer there is */
                MSA_TRY(sbuf_add(&a->held, piece, n));
                piece = a->held.s, n = a->held.n;
            }
            as_emit(a, piece, n);
            a->stopped = true;
            return MSA_OK;
        }
    }
    if (a->decided) {
        as_emit(a, piece, n);
        return MSA_OK;
    }
    MSA_TRY(sbuf_add(&a->held, piece, n));
    const char *t = a->held.s;
    size_t tn = a->held.n;
    while (tn && (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r')) t++, tn--;
    const size_t ml = strlen(MSA_IL_ANSWER_MARK);
    if (tn >= ml && !memcmp(t, MSA_IL_ANSWER_MARK, ml)) { /* the mark: what follows it is the answer */
        a->decided = true;
        as_emit(a, t + ml, tn - ml);
    } else if (tn && memcmp(t, MSA_IL_ANSWER_MARK, tn < ml ? tn : ml)) { /* not the mark: all of it */
        a->decided = true;
        as_emit(a, a->held.s, a->held.n);
    }
    return MSA_OK;
}

msa_status msa_il_run(const msa_il_ops *ops, const msa_il_params *params, const char *question, size_t qlen,
                      msa_il_result *out) {
    memset(out, 0, sizeof *out);
    msa_il_params p = params ? *params : msa_il_default_params();
    if (p.max_rounds < 1) p.max_rounds = 1;
    if (p.max_new_tokens < 1) p.max_new_tokens = 1;
    ibuf hist = {0};       /* every token fed or injected so far, with its next-round routing role */
    sbuf text = {0};       /* the same as text */
    sbuf answer_src = {0}; /* text the answer is extracted from */
    size_t n_prefix = 0;
    int32_t *qids = NULL;
    int8_t *qroles = NULL;
    size_t nq = 0;
    msa_status st = msa_il_build_question(ops, question, qlen, &qids, &qroles, &nq, &n_prefix);
    if (st) return st;
    st = ibuf_push(&hist, qids, nq, MSA_ROLE_ATTEND);
    for (size_t i = 0; i < nq && !st; i++) st = add_piece(ops, &text, qids[i]);
    free(qids);
    free(qroles);
    out->rounds = calloc((size_t)p.max_rounds, sizeof *out->rounds);
    if (!out->rounds && !st) st = msa_fail(MSA_ERR_NOMEM, "interleave: out of memory");
    size_t last_inj0 = 0, last_inj1 = 0; /* region 1: the document text injected last */
    int8_t *roles = NULL;
    astream stream = {.p = &p};
    for (int round = 0; round < p.max_rounds && !st; round++) {
        msa_il_round *R = &out->rounds[out->n_rounds++];
        const bool last_round = round == p.max_rounds - 1;
        /* the prompt of this call */
        free(roles);
        roles = malloc(hist.n ? hist.n : 1);
        if (!roles) {
            st = msa_fail(MSA_ERR_NOMEM, "interleave: out of memory");
            break;
        }
        if (round == 0) {
            int32_t *ids2;
            int8_t *r2;
            size_t n2;
            st = msa_il_build_question(ops, question, qlen, &ids2, &r2, &n2, NULL);
            if (st) break;
            memcpy(roles, r2, n2);
            free(ids2), free(r2);
        } else {
            for (size_t i = 0; i < hist.n; i++)
                roles[i] = (i < n_prefix || (i >= last_inj0 && i < last_inj1)) ? MSA_ROLE_ROUTE : MSA_ROLE_ATTEND;
        }
        int32_t y;
        st = ops->prefill(ops->ctx, round, hist.id, roles, hist.n, &y);
        if (st) break;
        sbuf gen = {0};
        call_end end = END_LIMIT;
        for (int step = 0;; step++) {
            if ((st = ibuf_push(&hist, &y, 1, MSA_ROLE_ATTEND)) || (st = add_piece(ops, &gen, y))) break;
            if (ops->is_eos(ops->ctx, y)) {
                end = END_EOS;
                break;
            }
            if (cancelled(&p)) {
                end = END_CANCEL;
                break;
            }
            if (strstr(gen.s, MSA_IL_END_OF_RETRIEVE) || (int)gen.n > p.max_retrieval_chars) {
                end = END_RETRIEVAL;
                break;
            }
            if (strstr(gen.s, MSA_IL_ROUND_END)) {
                end = last_round ? END_RETRIEVAL : END_ROUND;
                if (last_round) out->capped = true;
                break;
            }
            if (step + 1 >= p.max_new_tokens) break;
            if ((st = ops->feed(ops->ctx, &y, 1, &y))) break;
        }
        if (!st) st = sbuf_add(&text, gen.s ? gen.s : "", gen.n);
        R->generated = gen.s ? gen.s : calloc(1, 1);
        if (st) break;
        if (end == END_CANCEL) { /* stopped while retrieving: no answer yet */
            out->cancelled = true;
            break;
        }
        if (end == END_EOS || end == END_LIMIT) {
            out->truncated = end == END_LIMIT;
            st = sbuf_add(&answer_src, gen.s ? gen.s : "", gen.n);
            break;
        }
        if (end == END_ROUND) {
            /* Stage 2: inject the original text of the requested documents; the call ends here (the
             * reference's extra forward of the round-ending token is skipped: its result is discarded). */
            st = parse_ids(ops, R->generated, &R->injected, &R->n_injected);
            sbuf docs = {0};
            for (size_t i = 0; i < R->n_injected && !st; i++) {
                size_t len;
                const char *t = ops->doc_text(ops->ctx, R->injected[i], &len);
                char head[32];
                int hn = snprintf(head, sizeof head, "[%u]. ", R->injected[i]);
                st = sbuf_add(&docs, head, (size_t)hn);
                if (!st) st = sbuf_add(&docs, t ? t : "", t ? len : 0);
                if (!st) st = sbuf_add(&docs, "\n", 1);
            }
            last_inj0 = hist.n;
            if (!st && docs.n) st = tok_push(ops, &hist, docs.s, docs.n, false, MSA_ROLE_ATTEND);
            last_inj1 = hist.n;
            if (!st) st = sbuf_add(&text, docs.s ? docs.s : "", docs.n);
            free(docs.s);
            if (!st) st = tok_push(ops, &hist, MSA_IL_ROUND_END, strlen(MSA_IL_ROUND_END), true, MSA_ROLE_ATTEND);
            if (!st) st = sbuf_str(&text, MSA_IL_ROUND_END);
            continue;
        }
        /* Stage 3: feed the last token once (output discarded), inject the question as one bidirectional
         * block, then decode the answer to end-of-generation. */
        R->question_injected = true;
        int32_t discard;
        st = ops->feed(ops->ctx, &y, 1, &discard);
        ibuf inj = {0};
        sbuf qs = {0};
        if (!st) st = tok_push(ops, &inj, "<|im_start|>", 12, true, MSA_ROLE_ATTEND);
        if (!st) st = sbuf_str(&qs, "The user's question is: ");
        if (!st) st = sbuf_add(&qs, question, qlen);
        if (!st) st = sbuf_str(&qs, "\n");
        if (!st) st = tok_push(ops, &inj, qs.s, qs.n, false, MSA_ROLE_ATTEND);
        if (!st) st = tok_push(ops, &inj, MSA_IL_ROUND_END, strlen(MSA_IL_ROUND_END), true, MSA_ROLE_ATTEND);
        if (!st) st = ibuf_push(&hist, inj.id, inj.n, MSA_ROLE_ATTEND);
        if (!st) st = sbuf_str(&text, "<|im_start|>");
        if (!st) st = sbuf_add(&text, qs.s, qs.n);
        if (!st) st = sbuf_str(&text, MSA_IL_ROUND_END);
        if (!st) st = ops->feed(ops->ctx, inj.id, inj.n, &y);
        free(inj.id), free(inj.role), free(qs.s);
        sbuf ans = {0};
        for (int step = 0; !st; step++) {
            size_t n0 = ans.n;
            if ((st = ibuf_push(&hist, &y, 1, MSA_ROLE_ATTEND)) || (st = add_piece(ops, &ans, y))) break;
            if (ops->is_eos(ops->ctx, y)) break;
            if ((st = as_push(&stream, ans.s + n0, ans.n - n0))) break;
            if (cancelled(&p)) {
                out->cancelled = true;
                break;
            }
            if (step + 1 >= p.max_new_tokens) {
                out->truncated = true;
                break;
            }
            st = ops->feed(ops->ctx, &y, 1, &y);
        }
        if (!st) st = sbuf_add(&text, ans.s ? ans.s : "", ans.n);
        if (!st) st = sbuf_add(&answer_src, ans.s ? ans.s : "", ans.n);
        free(ans.s);
        break;
    }
    free(roles);
    free(hist.id), free(hist.role);
    if (!st) {
        out->answer = extract_answer(answer_src.s ? answer_src.s : "");
        if (!out->answer) st = msa_fail(MSA_ERR_NOMEM, "interleave: out of memory");
        /* an answer that was not streamed (a retrieval round's own answer, or a lone answer mark) */
        else if (p.on_answer && !stream.any && !out->cancelled) as_emit(&stream, out->answer, strlen(out->answer));
    }
    free(stream.held.s);
    free(answer_src.s);
    out->transcript = text.s ? text.s : calloc(1, 1);
    out->transcript_len = text.n;
    if (st) msa_il_result_free(out);
    return st;
}
