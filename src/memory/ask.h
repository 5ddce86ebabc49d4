/* ask.h — internal pieces shared by the native answer path (ask.c) and read mode (readmode.c). */
#ifndef MSA_MEMORY_ASK_H
#define MSA_MEMORY_ASK_H

#include "memory/context.h"
#include "msa.h"

/* Copy the last prefill's routing of c into round->routing (client ids looked up in bank). */
msa_status msa_ask_record_routing(const msa_memctx *c, msa_bank *bank, msa_ask_round *round);

/* Set round->injected_* from stable indices (client ids looked up in bank). */
msa_status msa_ask_record_injected(msa_bank *bank, const uint32_t *index, size_t n, msa_ask_round *round);

/* Read mode: route with the identity router, inject the best documents' text, answer (readmode.c). */
msa_status msa_read_answer(msa_model *model, msa_bank *bank, const char *question, size_t len,
                           const msa_ask_params *p, msa_ask_result *out);

/* Read-mode routing of one question without answering: every router layer's scores over the whole bank and
 * their fusion (what read mode ranks by). Release with msa_read_scores_free. */
typedef struct msa_read_scores {
    int n_layers;
    int *layer;              /* [n_layers] model layers */
    uint64_t n_index;
    float *per_layer;        /* [n_layers][n_index]; -inf: no chunks */
    float *fused;            /* [n_index] */
    double seconds;          /* the routing prefill */
    bool lexical;            /* fused includes the BM25 score (msa_read_fuse_lexical) */
} msa_read_scores;
struct msa_bm25;
/* Fuse the lexical score in: fused = w z(routing) + (1 - w) z(bm25), z over the documents with a routing score
 * (w = the index's weight; z(x) = (x - mean) / std, so 0 stays "an average document"). */
msa_status msa_read_fuse_lexical(msa_read_scores *s, const struct msa_bm25 *ix, const char *question, size_t len);
/* Routing in rounds (multi-hop): round 1 as msa_read_route (+ lexical fusion when lex); each further round r
 * keeps the r best documents so far in their order and ranks the rest by routing the sentence of the r-th best
 * document that shares the most words with the question (pseudo-relevance feedback: the fact that
 * names the next hop leads to the second passage).
 * out->per_layer stays round 1's; out->fused is the final ranking. */
msa_status msa_read_route_rounds(msa_model *model, msa_bank *bank, const struct msa_bm25 *lex, const char *question,
                                 size_t len, int rounds, msa_read_scores *out);
msa_status msa_read_route(msa_model *model, msa_bank *bank, const char *question, size_t len, msa_read_scores *out);
void msa_read_scores_free(msa_read_scores *s);

/* Read mode's answer from given documents (stable indices, best first): the prompt, greedy/sampled answer into
 * out->answer, out->transcript, token counts (out->rounds is left as it is). */
msa_status msa_read_answer_docs(msa_model *model, msa_bank *bank, const uint32_t *docs, size_t n_docs,
                                const char *question, size_t len, const msa_ask_params *p, msa_ask_result *out);

/* The token count of the prompt msa_read_answer_docs builds for these documents and question (no history), and
 * optionally its text (*text malloc'd; NULL: not wanted). For a caller that must know before answering whether
 * the documents fit the model's context (msa eval --full-context). */
msa_status msa_read_prompt_tokens(msa_model *model, msa_bank *bank, const uint32_t *docs, size_t n_docs,
                                  const char *question, size_t len, size_t *n_tokens, char **text);

/* Read-mode document scores of one router layer (readmode.c; docs/msa-deviations.md "Read mode"): for every
 * routing token (rows of q: head-mean-folded query vectors), the best cosine similarity to any chunk key of
 * each document, ignoring a document's first chunk (its <|im_start|>, the attention sink every document shares)
 * unless it is the only one; each token's bests are centred over the documents (a token that matches every
 * document alike, a stop word, adds nothing); doc_scores[d] = the mean over tokens. -inf for documents
 * without chunks. Parallel over tp. */
msa_status msa_read_doc_scores(const msa_route_query *q, const msa_route_span *spans, size_t n_spans,
                               msa_route_dtype dtype, uint64_t n_index, float *doc_scores, msa_threadpool *tp);
/* The same with every chunk's 1/|key| given (inv: msa_read_inv_norms of these spans; NULL: computed), which is
 * what a question's scan spends most of its time on and does not depend on the question. */
msa_status msa_read_doc_scores_inv(const msa_route_query *q, const msa_route_span *spans, size_t n_spans,
                                   msa_route_dtype dtype, uint64_t n_index, const float *inv, float *doc_scores,
                                   msa_threadpool *tp);
/* inv [every span's chunks, in span order] = 1/|key| as the scan computes it (0 for a zero key); MSA_ERR_IO on a
 * SIGBUS under the bank's mapping. */
msa_status msa_read_inv_norms(const msa_route_span *spans, size_t n_spans, msa_route_dtype dtype, int dim, float *inv,
                              msa_threadpool *tp);

/* The last step of msa_read_doc_scores, shared with the scan on a GPU (route_resident.c): each routing token's
 * best cosine per document (token t, document d at best[t * ts + d * ds]; -inf: no chunk) centred per token and
 * averaged into doc_scores [n_index]. The host scan's bests are document-major (ts 1, ds nq), the GPU's
 * token-major (ts n_index, ds 1). tp (may be NULL) splits the work; the bits do not depend on it. */
msa_status msa_read_center(const float *best, int nq, uint64_t n_index, size_t ts, size_t ds, float *doc_scores,
                           msa_threadpool *tp);

/* The token count of question as plain text; MSA_ERR_LIMIT beyond p->max_question_tokens. */
msa_status msa_ask_check_question(const msa_model *model, const char *question, size_t len, const msa_ask_params *p);

#endif
