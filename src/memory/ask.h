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

/* The token count of question as plain text; MSA_ERR_LIMIT beyond p->max_question_tokens. */
msa_status msa_ask_check_question(const msa_model *model, const char *question, size_t len, const msa_ask_params *p);

#endif
