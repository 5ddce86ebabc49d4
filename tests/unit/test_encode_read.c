/* test_encode_read.c — read mode's stage-1 routing keys (the identity router: chunk means of the model's own
 * pre-RoPE keys k_norm(k_proj(h)), encode.c) against an independent computation from the layer's normed
 * input: k_proj rows dequantised and dotted in double here, the per-head RMSNorm and the chunk means written
 * out again, including a partial last chunk. The engine multiplies q8-quantised activations by the Q4_1
 * weights (kernels.h), so the two agree to about 1% of a key's size, far inside what a wrong divisor, a
 * missing norm or a shifted chunk would change. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/cpu/kernels.h"
#include "memory/encode.h"
#include "model/forward.h"
#include "model/model.h"
#include "test.h"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct {
    const msa_bank_shape *sh;
    float **xn; /* [n_router] -> [n][n_embd] captured normed inputs */
    int E;
} capture;

static msa_status grab(void *user, int layer, const float *xn, int n) {
    capture *c = user;
    for (int s = 0; s < c->sh->n_router; s++)
        if (c->sh->router_layers[s] == layer) memcpy(c->xn[s], xn, (size_t)n * c->E * sizeof(float));
    return MSA_OK;
}

TEST(identity_router_keys_match_independent_pooling) {
    struct stat st;
    if (stat(DEFAULT_MODEL, &st) != 0) SKIP("default model not installed (make model)");
    msa_model_params mp = msa_model_default_params();
    mp.n_threads = 2;
    mp.device = test_device();
    msa_model *m = NULL;
    CHECK_EQ_INT(msa_model_load(DEFAULT_MODEL, &mp, &m), MSA_OK);
    if (!m) return;
    const msa_hparams *hp = msa_model_hparams(m);
    msa_bank_shape sh;
    CHECK_EQ_INT(msa_memory_bank_shape(m, MSA_BANK_READ, 16, &sh), MSA_OK); /* chunks of 16 (read mode defaults to 1) */
    const char *text = "The lighthouse keeper on Skerry Island kept a logbook of every ship that passed in the "
                       "night, the weather at dawn, the state of the lamp and the oil that was left in the tanks "
                       "below the gallery, and he wrote it all in a small neat hand that nobody else could read.";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ_INT(msa_render_doc(m, 0, text, strlen(text), &ids, &n), MSA_OK);
    const int P = sh.pooling, E = hp->n_embd, hd = hp->head_dim, KV = hp->n_head_kv, D = KV * hd;
    CHECK(n % (size_t)P != 0 && n > (size_t)P); /* a full chunk and a partial one */
    msa_encoder *e = NULL;
    msa_encoded_doc out;
    CHECK_EQ_INT(msa_encoder_new(m, &sh, 0, &e), MSA_OK);
    CHECK_EQ_INT(msa_encoder_run(e, (const int32_t *const *)&ids, &n, 1, &out), MSA_OK);
    CHECK_EQ_INT(out.n_chunks, (n + (size_t)P - 1) / (size_t)P);

    /* the normed inputs of the router layers, from a plain forward of the same tokens */
    capture c = {.sh = &sh, .E = E, .xn = calloc((size_t)sh.n_router, sizeof(float *))};
    for (int s = 0; s < sh.n_router; s++) c.xn[s] = malloc(n * (size_t)E * sizeof(float));
    msa_session *ss = NULL;
    msa_session_params sp = msa_session_default_params();
    sp.n_ctx = (int)n;
    CHECK_EQ_INT(msa_session_new(m, &sp, &ss), MSA_OK);
    int32_t *pos = malloc(n * sizeof *pos);
    for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
    msa_fwd_hooks hooks = {.user = &c, .attn_input = grab};
    msa_fwd_batch b = {.n_tokens = (int)n, .ids = ids, .pos = pos, .hooks = &hooks};
    CHECK_EQ_INT(msa_fwd_eval(ss, &b), MSA_OK);

    double worst = 0, scale = 0;
    float *wrow = malloc((size_t)E * sizeof *wrow);
    double *key = malloc(n * (size_t)D * sizeof *key);
    for (int s = 0; s < sh.n_router; s++) {
        const msa_layer *L = &m->layers[sh.router_layers[s]];
        for (int o = 0; o < D; o++) { /* k = W_k xn, in double from the dequantised row */
            msa_get_row_f32(L->wk, o, wrow);
            for (size_t t = 0; t < n; t++) {
                double acc = 0;
                for (int i = 0; i < E; i++) acc += (double)wrow[i] * c.xn[s][t * (size_t)E + i];
                key[t * (size_t)D + o] = acc;
            }
        }
        for (size_t t = 0; t < n && L->k_norm; t++) /* per-head RMSNorm with the layer's k_norm weights */
            for (int h = 0; h < KV; h++) {
                double *x = key + t * (size_t)D + (size_t)h * hd, ss2 = 0;
                for (int i = 0; i < hd; i++) ss2 += x[i] * x[i];
                const double r = 1.0 / sqrt(ss2 / hd + hp->rms_eps);
                for (int i = 0; i < hd; i++) x[i] = x[i] * r * L->k_norm[i];
            }
        for (uint32_t ch = 0; ch < out.n_chunks; ch++) {
            const size_t t0 = (size_t)ch * P, t1 = t0 + (size_t)P < n ? t0 + (size_t)P : n;
            for (int o = 0; o < D; o++) {
                double mean = 0;
                for (size_t t = t0; t < t1; t++) mean += key[t * (size_t)D + o];
                mean /= (double)(t1 - t0);
                const double got = out.route[s][(size_t)ch * D + o];
                worst = fmax(worst, fabs(got - mean));
                scale = fmax(scale, fabs(mean));
            }
        }
    }
    fprintf(stderr, "  %zu tokens, %u chunks (P %d), %d router layers: worst |difference| %.3g of max %.3g\n", n,
            out.n_chunks, P, sh.n_router, worst, scale);
    CHECK(scale > 0);
    CHECK(worst <= 0.03 * scale);
    free(wrow), free(key), free(pos);
    for (int s = 0; s < sh.n_router; s++) free(c.xn[s]);
    free(c.xn);
    msa_session_free(ss);
    msa_encoded_doc_free(&out);
    msa_encoder_free(e);
    free(ids);
    msa_model_free(m);
}

int main(void) {
    RUN(identity_router_keys_match_independent_pooling);
    return test_summary();
}
