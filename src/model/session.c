/* session.c — the public generation-session entry point msa_session_eval: a plain causal batch at the next
 * positions of one sequence, as the special case of msa_fwd_eval (forward.h); the session itself (KV cache,
 * scratch) is created and owned in forward.c. */
#include <stdlib.h>

#include "model/forward.h"
#include "util/error.h"

msa_status msa_session_eval(msa_session *s, const int32_t *ids, size_t n_ids, bool all_logits, float *logits) {
    if (!s || (!ids && n_ids)) return msa_fail(MSA_ERR_INVALID_ARG, "msa_session_eval: NULL session or ids");
    if (n_ids == 0) return MSA_OK;
    if (n_ids > (size_t)msa_fwd_capacity(s))
        return msa_fail(MSA_ERR_LIMIT, "%zu tokens exceed the context capacity %d", n_ids, msa_fwd_capacity(s));
    const int n = (int)n_ids;
    int32_t last = n - 1;
    int32_t *rows = NULL;
    msa_fwd_batch b = {.n_tokens = n, .ids = ids};
    if (logits) {
        if (all_logits) {
            rows = malloc((size_t)n * sizeof *rows);
            if (!rows) return msa_fail(MSA_ERR_NOMEM, "out of memory");
            for (int i = 0; i < n; i++) rows[i] = i;
            b.logit_rows = rows;
            b.n_logit_rows = n;
        } else {
            b.logit_rows = &last;
            b.n_logit_rows = 1;
        }
        b.logits = logits;
    }
    msa_status st = msa_fwd_eval(s, &b);
    free(rows);
    return st;
}
