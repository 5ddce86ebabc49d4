/* interleave.h — Memory Interleave (msa-reference.md §4): the question prompt and token roles (§4.1) and the
 * generative-retrieval state machine (§4.2) with its multi-round driver (§4.3), as a pure token/text machine.
 * The model and the tokenizer are reached only through msa_il_ops callbacks, so the machine can be driven by
 * a scripted model in tests and by the real MSA forward in `msa ask`.
 *
 * One round = one "generate call" of the reference: a fresh prefill of the whole history (routing happens
 * there), then decoding:
 *   - the model writes ids "[4]<|object_ref_end|>" (round end): the engine appends "[4]. {text of doc 4}\n"
 *     for every valid id (sorted, unique, existing) and "<|object_ref_end|>", and the next round starts;
 *   - the model writes "<End-of-Retrieve>" (retrieval end): the engine feeds that last token once (its output is
 *     discarded), injects "<|im_start|>The user's question is: {Q}\n<|object_ref_end|>" as one block that attends
 *     to itself bidirectionally, and the model writes the answer until end-of-generation;
 *   - the model ends the sequence (EOS) or reaches max_new_tokens: the round is final.
 * Round r >= 2 prompts are the whole history; roles: 0 (route) for the instruction + question up to
 * "...related to the question" and for the document text injected last, -1 elsewhere.
 *
 * Deviations from the reference (docs/msa-deviations.md): the history is kept as token ids instead of being
 * decoded and re-tokenized (document text can never become special tokens); a round cap (the last allowed
 * round answers instead of injecting); the 1000-character cap injects the question (the reference injects
 * nothing); batch size is one, so no result depends on other questions (§8-14). */
#ifndef MSA_MEMORY_INTERLEAVE_H
#define MSA_MEMORY_INTERLEAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"

/* Token roles of an MSA query (msa-reference.md §2.0). */
#define MSA_ROLE_ROUTE 0      /* attends and is used for routing */
#define MSA_ROLE_ATTEND (-1)  /* attends, not routed on */
#define MSA_ROLE_TEMPLATE (-2)

#define MSA_IL_INSTRUCTION "\nPlease answer the question based on the above historical document information\n\n"
#define MSA_IL_RETURN_DOCS "\nPlease return all documents related to the question"
#define MSA_IL_ROUND_END "<|object_ref_end|>"
#define MSA_IL_END_OF_RETRIEVE "<End-of-Retrieve>"
#define MSA_IL_ANSWER_MARK "The answer to the question is:"

typedef struct msa_il_ops {
    void *ctx;
    /* Tokenize text; special = recognise special-token strings. *ids malloc'd (caller frees). */
    msa_status (*tokenize)(void *ctx, const char *text, size_t len, bool special, int32_t **ids, size_t *n);
    /* The text of one token (special tokens as their text) into buf; returns its length (may exceed cap:
     * then only cap bytes were written), or -1. */
    int (*piece)(void *ctx, int32_t id, char *buf, size_t cap);
    bool (*is_eos)(void *ctx, int32_t id);
    /* Original text of the live document with stable index idx, or NULL when there is none. The pointer
     * stays valid until the next call of doc_text. */
    const char *(*doc_text)(void *ctx, uint64_t idx, size_t *len);
    /* Start round `round` (0-based): prefill ids with roles (positions are the model's business) and sample
     * the first new token into *next. */
    msa_status (*prefill)(void *ctx, int round, const int32_t *ids, const int8_t *roles, size_t n, int32_t *next);
    /* Feed n tokens after everything so far (n > 1: one block that attends to itself bidirectionally) and
     * sample the next token into *next. */
    msa_status (*feed)(void *ctx, const int32_t *ids, size_t n, int32_t *next);
} msa_il_ops;

typedef struct msa_il_params {
    int max_rounds;          /* generate calls, >= 1 (default 8; the reference has no cap) */
    int max_new_tokens;      /* tokens sampled per call (the reference's max_generate_tokens, 2048) */
    int max_retrieval_chars; /* a call's generated text longer than this ends retrieval (1000) */
    /* Streaming and cancelling (both optional). on_answer receives the answer's text as it is decoded after
     * the question injection: text before a leading answer mark is held back and dropped, end-of-generation
     * markers are never passed on. An answer that comes from a round without question injection (the model
     * ended a retrieval round itself) is passed in one call when the run ends. When *cancel becomes non-zero
     * the run stops after the current token: msa_il_run returns MSA_OK with cancelled set and the answer
     * written so far (empty while the model is still retrieving). */
    void (*on_answer)(const char *text, size_t len, void *user);
    void *user;
    const volatile int *cancel;
} msa_il_params;

msa_il_params msa_il_default_params(void);

typedef struct msa_il_round {
    char *generated;         /* text the model generated in this call (special tokens as text), NUL-terminated */
    uint32_t *injected;      /* stable indices of documents injected at the end of this round */
    size_t n_injected;
    bool question_injected;  /* the question prompt was injected (retrieval ended) */
} msa_il_round;

typedef struct msa_il_result {
    char *transcript;        /* the history from the instruction on: prompt, generated and injected text */
    size_t transcript_len;
    char *answer;            /* after the last "The answer to the question is:" up to end-of-generation,
                              * trimmed; else the text generated after the question injection (or in the
                              * last round) without special tokens' end marker */
    msa_il_round *rounds;
    int n_rounds;
    bool capped;             /* the round cap forced the answer */
    bool cancelled;          /* *params->cancel stopped the run */
    bool truncated;          /* max_new_tokens ended the answer before end-of-generation */
} msa_il_result;

/* The round-1 question prompt (§4.1): tokenize(INSTRUCTION + question + RETURN_DOCS + "\n") with roles 0, then
 * "<|im_end|>\n" (roles -2) and "<|im_start|>" (role -1). The question is plain text (never special tokens).
 * *ids and *roles malloc'd (caller frees); *n_route_prefix receives the number of leading tokens of
 * INSTRUCTION + question + RETURN_DOCS (region 2 of later rounds). */
msa_status msa_il_build_question(const msa_il_ops *ops, const char *question, size_t qlen, int32_t **ids,
                                 int8_t **roles, size_t *n, size_t *n_route_prefix);

/* Run the rounds for one question. On success *out is filled (release with msa_il_result_free). */
msa_status msa_il_run(const msa_il_ops *ops, const msa_il_params *params, const char *question, size_t qlen,
                      msa_il_result *out);
void msa_il_result_free(msa_il_result *r);

#endif
