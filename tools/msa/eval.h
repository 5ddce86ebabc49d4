/* eval.h — `msa eval` (cmd_eval.c: questions, metrics, report; eval_niah.c: the needle-in-a-haystack set). */
#ifndef MSA_TOOLS_EVAL_H
#define MSA_TOOLS_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "msa.h"

#define EVAL_MAX_GOLD 16

typedef struct eval_question {
    char *id, *kind, *question;
    char *gold[EVAL_MAX_GOLD];
    int n_gold;
    char *answer[EVAL_MAX_GOLD]; /* every one must appear in the answer */
    int n_answer;
} eval_question;

typedef struct eval_opts {
    const char *model, *bank, *router, *ranking, *scores_out, *system, *haystack, *device;
    bool answer, json, verbose, progress, save_lexical, no_lexical;
    bool full_context;       /* answer from every document at once (no routing; refused when over the context) */
    const char *const *context_ids; /* full context: the documents in reading order (NULL: the bank's, index order) */
    size_t n_context;
    double lexical;          /* < 0: routing alone */
    long long top_k, max_new, limit, rounds, threads, tokens, seed, per_task, doc_tokens;
} eval_opts;

/* Evaluate qs over bank (read-mode routing unless o->ranking); prints the report; returns an exit code. */
int eval_run(msa_model *model, msa_bank *bank, const eval_question *qs, size_t n_q, const eval_opts *o);
void eval_questions_free(eval_question *q, size_t n);
/* normalised answer contains every normalised gold string as whole words */
bool eval_answer_matches(const char *answer, char *const *gold, int n_gold);
/* `msa eval niah` (eval_niah.c) */
int eval_niah(const eval_opts *o);

#endif
