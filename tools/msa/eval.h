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
    const char *passages;    /* qa: a {"id", "text"} JSONL added to the bank (created when missing) first */
    const char *write_set;   /* niah: write the set (documents, questions) as a QA-format JSONL, then stop */
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
/* Open o->bank writable (created as a read bank for this model when missing), add docs (unchanged ones are
 * skipped) and leave its BM25 index current unless o->no_lexical; *out is the open bank (the caller closes it).
 * Returns 0 or an exit code (message printed). */
int eval_bank_fill(const eval_opts *o, msa_model *model, const msa_doc_input *docs, size_t n, msa_bank **out,
                   msa_ingest_report *rep);
/* `msa eval niah` (eval_niah.c) */
int eval_niah(const eval_opts *o);

#endif
