/* sampling.c — choosing the next token from logits: an optional repetition penalty over recent tokens
 * (llama.cpp's), then greedy (argmax, lowest id on ties) or, with temperature > 0, sampling in transformers'
 * order: temperature, top-k, top-p (nucleus), min-p, then a draw from the renormalised distribution with the
 * caller's xorshift64* state (reproducible per seed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "msa.h"

msa_sampler_params msa_sampler_default_params(void) {
    msa_sampler_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0, .min_p = 0.0f,
                            .repeat_penalty = 1.0f};
    return p;
}

uint64_t msa_sampler_seed(uint64_t seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull; /* splitmix64: spreads small seeds; never returns 0 below */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 0x2545f4914f6cdd1dull;
}

static double next_uniform(uint64_t *st) { /* xorshift64*, 53 bits -> [0, 1) */
    uint64_t x = *st ? *st : 0x2545f4914f6cdd1dull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return (double)((x * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct {
    float logit;
    int32_t id;
} cand;

static int cand_desc(const void *a, const void *b) { /* higher logit first, lower id first on ties */
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int32_t msa_sample(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state) {
    return msa_sample_recent(logits, n_vocab, params, rng_state, NULL, 0);
}

static int32_t sample(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state);

int32_t msa_sample_recent(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state,
                          const int32_t *recent, size_t n_recent) {
    if (n_vocab <= 0) return -1;
    if (!params || params->repeat_penalty == 1.0f || !(params->repeat_penalty > 0.0f) || !recent || !n_recent)
        return sample(logits, n_vocab, params, rng_state);
    /* a penalised copy; each distinct recent id once (a token seen twice is not punished twice) */
    float *l = malloc((size_t)n_vocab * sizeof *l);
    if (!l) return sample(logits, n_vocab, params, rng_state);
    memcpy(l, logits, (size_t)n_vocab * sizeof *l);
    for (size_t i = 0; i < n_recent; i++) {
        int32_t id = recent[i];
        if (id < 0 || id >= n_vocab) continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = recent[j] == id;
        if (seen) continue;
        l[id] = l[id] > 0 ? l[id] / params->repeat_penalty : l[id] * params->repeat_penalty;
    }
    int32_t y = sample(l, n_vocab, params, rng_state);
    free(l);
    return y;
}

static int32_t sample(const float *logits, int n_vocab, const msa_sampler_params *params, uint64_t *rng_state) {
    msa_sampler_params defaults = msa_sampler_default_params();
    if (!params) params = &defaults;
    if (!(params->temperature > 0.0f) || params->top_k == 1) return argmax(logits, n_vocab);
    cand *c = malloc((size_t)n_vocab * sizeof *c);
    if (!c) return argmax(logits, n_vocab);
    const float inv_t = 1.0f / params->temperature;
    int n = 0;
    for (int i = 0; i < n_vocab; i++)
        if (!isnan(logits[i])) c[n++] = (cand){logits[i] * inv_t, i};
    if (n == 0) {
        free(c);
        return argmax(logits, n_vocab);
    }
    int k = params->top_k > 0 && params->top_k < n ? params->top_k : n;
    bool use_p = params->top_p > 0.0f && params->top_p < 1.0f;
    if (k < n || use_p) {
        if (k < n / 8) { /* partial selection: keep the k best in a sorted prefix */
            int m = 0;
            for (int i = 0; i < n; i++) {
                if (m == k && cand_desc(&c[i], &c[m - 1]) >= 0) continue;
                int j = m < k ? m++ : k - 1;
                cand x = c[i];
                while (j > 0 && cand_desc(&x, &c[j - 1]) < 0) {
                    c[j] = c[j - 1];
                    j--;
                }
                c[j] = x;
            }
        } else {
            qsort(c, (size_t)n, sizeof *c, cand_desc);
        }
        n = k;
    }
    float mx = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    double sum = 0.0;
    double *p = malloc((size_t)n * sizeof *p);
    if (!p) {
        int32_t id = c[0].id;
        free(c);
        return id;
    }
    for (int i = 0; i < n; i++) sum += p[i] = exp((double)c[i].logit - mx);
    if (use_p) { /* smallest prefix (sorted) whose mass reaches top_p */
        double acc = 0.0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            acc += p[i] / sum;
            if (acc >= params->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += p[i];
    }
    if (params->min_p > 0.0f && params->min_p <= 1.0f) { /* p[] is sorted when filtered above; scan all */
        double pmax = 0.0;
        for (int i = 0; i < n; i++)
            if (p[i] > pmax) pmax = p[i];
        sum = 0.0;
        for (int i = 0; i < n; i++) {
            if (p[i] < params->min_p * pmax) p[i] = 0.0;
            sum += p[i];
        }
    }
    double u = next_uniform(rng_state) * sum;
    int32_t id = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        u -= p[i];
        if (u < 0.0) {
            id = c[i].id;
            break;
        }
    }
    free(p);
    free(c);
    return id;
}
