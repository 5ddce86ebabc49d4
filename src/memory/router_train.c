/* router_train.c — read mode's routing score, its InfoNCE loss and analytic gradients (router_train.h). Row
 * projections, the per-pair max-cosine and the weight gradients run in parallel over the threadpool (each worker
 * owns whole output rows: no reductions across threads, results independent of the thread count). */
#include "memory/router_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

typedef struct proj_job { /* Y[r] = W X[r], norms */
    const float *W, *X;
    float *Y, *norm;
    int rows, din, dout;
} proj_job;

/* a . b over n floats in eight lanes, summed pairwise (vectorises; one order for every caller) */
static float dot8(const float *a, const float *b, int n) {
    float p8[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) p8[u] += a[i + u] * b[i + u];
    float y = ((p8[0] + p8[1]) + (p8[2] + p8[3])) + ((p8[4] + p8[5]) + (p8[6] + p8[7]));
    for (; i < n; i++) y += a[i] * b[i];
    return y;
}

static void proj_range(void *ctx, int ith, int nth) {
    const proj_job *j = ctx;
    for (int r = ith; r < j->rows; r += nth) {
        const float *x = j->X + (size_t)r * j->din;
        float *y = j->Y + (size_t)r * j->dout;
        double ss = 0;
        for (int o = 0; o < j->dout; o++) {
            const float a = dot8(j->W + (size_t)o * j->din, x, j->din);
            y[o] = a;
            ss += (double)a * a;
        }
        j->norm[r] = (float)sqrt(ss);
    }
}

typedef struct norm_job { /* norm[r] = |Y[r]| */
    const float *Y;
    float *norm;
    int rows, dim;
} norm_job;

static void norm_range(void *ctx, int ith, int nth) {
    const norm_job *j = ctx;
    for (int r = ith; r < j->rows; r += nth) {
        const float *y = j->Y + (size_t)r * j->dim;
        double ss = 0;
        for (int o = 0; o < j->dim; o++) ss += (double)y[o] * y[o];
        j->norm[r] = (float)sqrt(ss);
    }
}

typedef struct sim_job { /* per query token and document: best chunk and its cosine */
    const float *A, *An, *B, *Bn;
    const int *q0, *qn, *d0, *dn; /* row offsets/counts of each query and document */
    int n_q, n_d, dout;
    float *best;                  /* [total q rows][n_d] */
    int *arg;                     /* [total q rows][n_d] row index in B */
} sim_job;

static void sim_range(void *ctx, int ith, int nth) {
    const sim_job *j = ctx;
    int total = j->q0[j->n_q - 1] + j->qn[j->n_q - 1];
    for (int t = ith; t < total; t += nth) {
        const float *a = j->A + (size_t)t * j->dout;
        const float ia = j->An[t] > 0 ? 1.0f / j->An[t] : 0.0f;
        for (int d = 0; d < j->n_d; d++) {
            float bst = -INFINITY;
            int ar = -1;
            for (int c = j->d0[d]; c < j->d0[d] + j->dn[d]; c++) {
                float y = dot8(a, j->B + (size_t)c * j->dout, j->dout);
                y *= ia * (j->Bn[c] > 0 ? 1.0f / j->Bn[c] : 0.0f);
                if (y > bst) bst = y, ar = c;
            }
            j->best[(size_t)t * j->n_d + d] = ar >= 0 ? bst : 0.0f;
            j->arg[(size_t)t * j->n_d + d] = ar;
        }
    }
}

typedef struct gw_job { /* gW[o][:] = sum_r G[r][o] X[r][:] over rows with a nonzero gradient */
    const float *G, *X;
    const unsigned char *live;
    float *gW;
    int rows, din, dout;
} gw_job;

static void gw_range(void *ctx, int ith, int nth) {
    const gw_job *j = ctx;
    for (int o = ith; o < j->dout; o += nth) {
        float *g = j->gW + (size_t)o * j->din;
        memset(g, 0, (size_t)j->din * sizeof *g);
        for (int r = 0; r < j->rows; r++) {
            if (!j->live[r]) continue;
            const float c = j->G[(size_t)r * j->dout + o];
            if (c == 0) continue;
            const float *x = j->X + (size_t)r * j->din;
            for (int i = 0; i < j->din; i++) g[i] += c * x[i];
        }
    }
}

static void run(msa_threadpool *tp, msa_parallel_fn fn, void *ctx) {
    if (tp) msa_threadpool_run(tp, fn, ctx);
    else fn(ctx, 0, 1);
}

/* gather a batch side into one row matrix */
static float *gather(const msa_rt_seq *s, int n, int din, int *off, int *cnt, int *total) {
    int t = 0;
    for (int i = 0; i < n; i++) off[i] = t, cnt[i] = s[i].n, t += s[i].n;
    float *X = malloc(((size_t)t + 1) * din * sizeof *X);
    if (!X) return NULL;
    for (int i = 0; i < n; i++) memcpy(X + (size_t)off[i] * din, s[i].x, (size_t)s[i].n * din * sizeof *X);
    *total = t;
    return X;
}

msa_status msa_rt_loss(const msa_rt_batch *b, float *const *Wq, float *const *Wk, float *loss, float *const *gq,
                       float *const *gk, float *scores, msa_threadpool *tp) {
    const int nq = b->n_q, nd = b->n_d, din = b->din, dout = b->dout, L = b->n_layers;
    if (nq <= 0 || nd <= 0 || L <= 0 || din <= 0 || dout <= 0 || !(b->tau > 0))
        return msa_fail(MSA_ERR_INVALID_ARG, "router training: empty batch or bad shape");
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < nq; i++)
            if (b->q[(size_t)l * nq + i].n <= 0) return msa_fail(MSA_ERR_INVALID_ARG, "router training: a query has no rows");
        for (int i = 0; i < nd; i++)
            if (b->d[(size_t)l * nd + i].n <= 0) return msa_fail(MSA_ERR_INVALID_ARG, "router training: a document has no rows");
    }
    for (int i = 0; i < nq; i++)
        if (b->pos[i] < 0 || b->pos[i] >= nd) return msa_fail(MSA_ERR_INVALID_ARG, "router training: bad positive");
    double *z = calloc((size_t)nq * nd, sizeof *z);
    int *q0 = malloc((size_t)nq * sizeof *q0), *qn = malloc((size_t)nq * sizeof *qn);
    int *d0 = malloc((size_t)nd * sizeof *d0), *dn = malloc((size_t)nd * sizeof *dn);
    float **best = calloc((size_t)L, sizeof *best);
    int **arg = calloc((size_t)L, sizeof *arg);
    msa_status st = (z && q0 && qn && d0 && dn && best && arg) ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    float *XA = NULL, *XB = NULL, *A = NULL, *B = NULL, *An = NULL, *Bn = NULL;
    int ta = 0, tb = 0;
    const bool grad = gq && (gk || b->d_keys);
    const int ddim = b->d_keys ? dout : din; /* width of the document rows */
    /* forward, layer by layer (projections recomputed in the backward pass to keep memory small) */
    for (int l = 0; l < L && !st; l++) {
        free(XA), free(XB), free(A), free(B), free(An), free(Bn);
        XA = gather(b->q + (size_t)l * nq, nq, din, q0, qn, &ta);
        XB = gather(b->d + (size_t)l * nd, nd, ddim, d0, dn, &tb);
        A = malloc(((size_t)ta + 1) * dout * sizeof *A), B = malloc(((size_t)tb + 1) * dout * sizeof *B);
        An = malloc(((size_t)ta + 1) * sizeof *An), Bn = malloc(((size_t)tb + 1) * sizeof *Bn);
        best[l] = malloc(((size_t)ta * nd + 1) * sizeof **best);
        arg[l] = malloc(((size_t)ta * nd + 1) * sizeof **arg);
        if (!XA || !XB || !A || !B || !An || !Bn || !best[l] || !arg[l]) {
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        proj_job pa = {Wq[l], XA, A, An, ta, din, dout}, pb = {b->d_keys ? NULL : Wk[l], XB, B, Bn, tb, din, dout};
        run(tp, proj_range, &pa);
        if (b->d_keys) {
            memcpy(B, XB, (size_t)tb * dout * sizeof *B);
            norm_job nj = {B, Bn, tb, dout};
            run(tp, norm_range, &nj);
        } else {
            run(tp, proj_range, &pb);
        }
        sim_job sj = {A, An, B, Bn, q0, qn, d0, dn, nq, nd, dout, best[l], arg[l]};
        run(tp, sim_range, &sj);
        for (int i = 0; i < nq; i++)
            for (int d = 0; d < nd; d++) {
                double s = 0;
                for (int t = q0[i]; t < q0[i] + qn[i]; t++) s += best[l][(size_t)t * nd + d];
                z[(size_t)i * nd + d] += s / qn[i];
            }
    }
    double total = 0;
    if (!st) {
        for (int i = 0; i < nq; i++) {
            double m = -INFINITY;
            for (int d = 0; d < nd; d++) m = fmax(m, z[(size_t)i * nd + d] / b->tau);
            double se = 0;
            for (int d = 0; d < nd; d++) se += exp(z[(size_t)i * nd + d] / b->tau - m);
            total += m + log(se) - z[(size_t)i * nd + b->pos[i]] / b->tau;
            if (scores)
                for (int d = 0; d < nd; d++) scores[(size_t)i * nd + d] = (float)z[(size_t)i * nd + d];
            if (grad) /* z now holds dL/ds(i, d) */
                for (int d = 0; d < nd; d++) {
                    double p = exp(z[(size_t)i * nd + d] / b->tau - m) / se;
                    z[(size_t)i * nd + d] = (p - (d == b->pos[i])) / (b->tau * nq);
                }
        }
        *loss = (float)(total / nq);
    }
    /* backward */
    for (int l = 0; l < L && !st && grad; l++) {
        free(XA), free(XB), free(A), free(B), free(An), free(Bn);
        XA = gather(b->q + (size_t)l * nq, nq, din, q0, qn, &ta);
        XB = gather(b->d + (size_t)l * nd, nd, ddim, d0, dn, &tb);
        A = malloc(((size_t)ta + 1) * dout * sizeof *A), B = malloc(((size_t)tb + 1) * dout * sizeof *B);
        An = malloc(((size_t)ta + 1) * sizeof *An), Bn = malloc(((size_t)tb + 1) * sizeof *Bn);
        float *GA = calloc(((size_t)ta + 1) * dout, sizeof *GA), *GB = calloc(((size_t)tb + 1) * dout, sizeof *GB);
        unsigned char *la = calloc((size_t)ta + 1, 1), *lb = calloc((size_t)tb + 1, 1);
        if (!XA || !XB || !A || !B || !An || !Bn || !GA || !GB || !la || !lb) {
            free(GA), free(GB), free(la), free(lb);
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        proj_job pa = {Wq[l], XA, A, An, ta, din, dout}, pb = {b->d_keys ? NULL : Wk[l], XB, B, Bn, tb, din, dout};
        run(tp, proj_range, &pa);
        if (b->d_keys) {
            memcpy(B, XB, (size_t)tb * dout * sizeof *B);
            norm_job nj = {B, Bn, tb, dout};
            run(tp, norm_range, &nj);
        } else {
            run(tp, proj_range, &pb);
        }
        for (int i = 0; i < nq; i++)
            for (int t = q0[i]; t < q0[i] + qn[i]; t++)
                for (int d = 0; d < nd; d++) {
                    const int c = arg[l][(size_t)t * nd + d];
                    const double w = z[(size_t)i * nd + d] / qn[i];
                    if (c < 0 || w == 0 || An[t] == 0 || Bn[c] == 0) continue;
                    const float cs = best[l][(size_t)t * nd + d];
                    const float *a = A + (size_t)t * dout, *bb = B + (size_t)c * dout;
                    float *ga = GA + (size_t)t * dout, *gb = GB + (size_t)c * dout;
                    const float ia = 1.0f / An[t], ib = 1.0f / Bn[c];
                    for (int k = 0; k < dout; k++) { /* d cos/da = (b^ - cos a^)/|a|, symmetric for b */
                        const float ah = a[k] * ia, bh = bb[k] * ib;
                        ga[k] += (float)(w * (bh - cs * ah) * ia);
                        gb[k] += (float)(w * (ah - cs * bh) * ib);
                    }
                    la[t] = 1, lb[c] = 1;
                }
        gw_job ga = {GA, XA, la, gq[l], ta, din, dout}, gbj = {GB, XB, lb, gk ? gk[l] : NULL, tb, din, dout};
        run(tp, gw_range, &ga);
        if (!b->d_keys) run(tp, gw_range, &gbj);
        free(GA), free(GB), free(la), free(lb);
    }
    free(XA), free(XB), free(A), free(B), free(An), free(Bn);
    for (int l = 0; l < L && best; l++) free(best[l]);
    for (int l = 0; l < L && arg; l++) free(arg[l]);
    free(best), free(arg), free(z), free(q0), free(qn), free(d0), free(dn);
    return st;
}
