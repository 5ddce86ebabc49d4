/* kernels.c — the matmul entry points: picks the ISA once, converts the activations into the kernel's
 * partner format once per call, and splits the weight rows among the pool's threads in chunks taken from a
 * shared counter (so a thread slowed by another process does not hold the others back). */
#include "backend/cpu/kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

static msa_kernel g_tables[MSA_SIMD_COUNT][MSA_DTYPE_COUNT];
static int g_have[MSA_SIMD_COUNT];
static msa_simd g_max, g_level;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const simd_names[MSA_SIMD_COUNT] = {"scalar", "avx2", "avx512", "amx"};

/* The panel (prefill) kernels sum each output in a different order than the one-token kernels, so a token's
 * result would depend on how many tokens share its batch (f32 rounding, amplified through a deep model).
 * They are off unless MSA_PANEL=1 (or msa_cpu_set_panel) until callers accept batch-dependent rounding. */
static int g_panel;

/* bf16 weights take bf16 activations on every path (see kernels_bf16_avx512.c): the paths without a bf16
 * dot product get the activations rounded to bf16 but kept as f32, so their gemm loops stay as they are. */
static size_t bf16_as_f32_bytes(int64_t n_in) { return (size_t)n_in * sizeof(float); }

static void prep_bf16_as_f32(const float *x, int64_t n_in, void *out) {
    float *o = out;
    for (int64_t i = 0; i < n_in; i++) o[i] = msa_bf16_to_f32(msa_f32_to_bf16(x[i]));
}

static void bf16_activations(msa_kernel *k) {
    if (!k->prep) {
        k->prep_bytes = bf16_as_f32_bytes;
        k->prep = prep_bf16_as_f32;
    }
    k->panel_bytes = NULL; /* the float panel kernels would take unrounded activations */
    k->prep_group = NULL;
    k->gemm_panel = NULL;
}

static void init_tables(void) {
    /* Each level starts as a copy of the one below and overrides what it improves. */
    g_have[MSA_SIMD_SCALAR] = msa_kernels_scalar(g_tables[MSA_SIMD_SCALAR]);
    memcpy(g_tables[MSA_SIMD_AVX2], g_tables[MSA_SIMD_SCALAR], sizeof g_tables[0]);
    g_have[MSA_SIMD_AVX2] = msa_kernels_avx2(g_tables[MSA_SIMD_AVX2]);
    memcpy(g_tables[MSA_SIMD_AVX512], g_tables[MSA_SIMD_AVX2], sizeof g_tables[0]);
    g_have[MSA_SIMD_AVX512] = g_have[MSA_SIMD_AVX2] && msa_kernels_avx512(g_tables[MSA_SIMD_AVX512]);
    for (int l = 0; l < MSA_SIMD_COUNT; l++) bf16_activations(&g_tables[l][MSA_DTYPE_BF16]);
    if (g_have[MSA_SIMD_AVX512]) msa_kernels_avx512_bf16(&g_tables[MSA_SIMD_AVX512][MSA_DTYPE_BF16]);
    /* AMX differs from AVX-512 only in its bf16 entry */
    memcpy(g_tables[MSA_SIMD_AMX], g_tables[MSA_SIMD_AVX512], sizeof g_tables[0]);
    g_have[MSA_SIMD_AMX] = g_have[MSA_SIMD_AVX512] && msa_kernels_amx_bf16(&g_tables[MSA_SIMD_AMX][MSA_DTYPE_BF16]);
    g_max = MSA_SIMD_SCALAR;
    for (int l = 1; l < MSA_SIMD_COUNT; l++)
        if (g_have[l]) g_max = (msa_simd)l;
    g_level = g_max;
    const char *pe = getenv("MSA_PANEL");
    g_panel = pe && !strcmp(pe, "1");
    const char *env = getenv("MSA_SIMD");
    if (env && *env) {
        for (int l = 0; l < MSA_SIMD_COUNT; l++)
            if (!strcmp(env, simd_names[l]) && l < (int)g_level) g_level = (msa_simd)l;
    }
}

msa_simd msa_cpu_simd_max(void) {
    pthread_once(&g_once, init_tables);
    return g_max;
}

msa_simd msa_cpu_simd(void) {
    pthread_once(&g_once, init_tables);
    return g_level;
}

int msa_cpu_set_simd(msa_simd level) {
    pthread_once(&g_once, init_tables);
    if ((unsigned)level >= MSA_SIMD_COUNT || !g_have[level]) return 0;
    g_level = level;
    return 1;
}

const char *msa_cpu_simd_name(void) { return simd_names[msa_cpu_simd()]; }

int msa_cpu_set_panel(int on) {
    pthread_once(&g_once, init_tables);
    int old = g_panel;
    g_panel = on != 0;
    return old;
}

/* ---- per-thread scratch: grows as needed, freed when the thread exits ---- */

typedef struct scratch_set {
    uint8_t *buf[MSA_SCRATCH_SLOTS];
    size_t size[MSA_SCRATCH_SLOTS];
} scratch_set;

static _Thread_local scratch_set *t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < MSA_SCRATCH_SLOTS; i++) free(s->buf[i]);
    free(s);
}

static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_free); }

void *msa_thread_scratch(int slot, size_t bytes) {
    if (!t_scratch) {
        pthread_once(&g_scratch_once, scratch_key_init);
        t_scratch = calloc(1, sizeof *t_scratch);
        if (!t_scratch) return NULL;
        pthread_setspecific(g_scratch_key, t_scratch);
    }
    if (bytes > t_scratch->size[slot]) {
        free(t_scratch->buf[slot]);
        size_t n = (bytes + bytes / 4 + 63) & ~(size_t)63;
        t_scratch->buf[slot] = aligned_alloc(64, n);
        t_scratch->size[slot] = t_scratch->buf[slot] ? n : 0;
    }
    return t_scratch->buf[slot];
}

static uint8_t *scratch(size_t bytes) { return msa_thread_scratch(0, bytes); }

/* ---- the parallel job ---- */

enum { ROW_ALIGN = 16 };

typedef struct job {
    const msa_kernel *k;
    msa_gemm_fn gemm;      /* k->gemm, or k->gemm_panel for a prefill in panel layout */
    int panel;
    const float *x;
    int64_t n_in;
    uint8_t *act;          /* prepared activations, act_stride bytes per token (or x itself) */
    size_t act_stride;
    const uint8_t *w;      /* first row of the range */
    size_t row_bytes;
    int64_t n_rows;
    int n_tok;
    float *y;
    int64_t ldy;
    int64_t chunk_rows;    /* rows per chunk (multiple of ROW_ALIGN unless it is all rows) */
    int64_t n_chunks;
    int tok_block;         /* tokens per inner block (keeps a block of activations in L2) */
    _Atomic int64_t next;  /* next chunk to take */
} job;

static void prep_job(void *arg, int ith, int nth) {
    job *j = arg;
    if (j->panel) {
        int n_groups = (j->n_tok + MSA_PANEL_TOKENS - 1) / MSA_PANEL_TOKENS;
        for (int g = ith; g < n_groups; g += nth) {
            int t0 = g * MSA_PANEL_TOKENS, nt = j->n_tok - t0 < MSA_PANEL_TOKENS ? j->n_tok - t0 : MSA_PANEL_TOKENS;
            j->k->prep_group(j->x + (size_t)t0 * j->n_in, j->n_in, nt, j->act + (size_t)t0 * j->act_stride);
        }
        return;
    }
    for (int t = ith; t < j->n_tok; t += nth) j->k->prep(j->x + (size_t)t * j->n_in, j->n_in, j->act + (size_t)t * j->act_stride);
}

/* One chunk of rows of one product: every token block passes over the chunk's rows. */
static void run_chunk(const job *j, int64_t c) {
    int64_t r0 = c * j->chunk_rows;
    int64_t nr = j->n_rows - r0 < j->chunk_rows ? j->n_rows - r0 : j->chunk_rows;
    for (int t0 = 0; t0 < j->n_tok; t0 += j->tok_block) {
        int nt = j->n_tok - t0 < j->tok_block ? j->n_tok - t0 : j->tok_block;
        j->gemm(j->w + (size_t)r0 * j->row_bytes, j->row_bytes, j->n_in, nr, j->act + (size_t)t0 * j->act_stride,
                j->act_stride, nt, j->y + (size_t)t0 * j->ldy + r0, j->ldy);
    }
}

static void gemm_job(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    job *j = arg;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->n_chunks) break;
        run_chunk(j, c);
    }
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* Chunking of one product over nth threads (sets chunk_rows, n_chunks, tok_block). */
static void plan_gemm(job *j, int nth) {
    /* Rows per chunk: decode wants enough chunks for balance (the weights stream once either way); prefill
     * wants each chunk's weights to stay in L2 while every token block passes over them. */
    int64_t chunk;
    if (j->n_tok == 1) {
        chunk = round_up(j->n_rows / (nth * 4) + 1, ROW_ALIGN);
        int64_t min_rows = round_up(8192 / (int64_t)(j->row_bytes + 1) + 1, ROW_ALIGN);
        if (chunk < min_rows) chunk = min_rows;
    } else {
        /* Panel chunks are a multiple of the kernel's row tile, which avoids slow remainders inside a chunk. */
        int64_t align = j->panel ? j->k->tile_rows : ROW_ALIGN;
        chunk = (int64_t)(256 * 1024) / (int64_t)(j->row_bytes + 1) + 1;
        if (j->panel && chunk < 96) chunk = 96;
        chunk = round_up(chunk, align);
        int64_t even = round_up(j->n_rows / nth + 1, align);
        if (chunk > even) chunk = even;
    }
    if (chunk > j->n_rows) chunk = j->n_rows;
    j->chunk_rows = chunk;
    j->n_chunks = (j->n_rows + chunk - 1) / chunk;
    size_t tb = (512 * 1024) / (j->act_stride + 1);
    j->tok_block = tb < 4 ? 4 : tb > 256 ? 256 : (int)tb;
    int tt = j->k->tile_tokens;
    if (tt > 1) j->tok_block = j->tok_block < 2 * tt ? 2 * tt : j->tok_block / tt * tt;
    /* Panel kernels decode each weight row once per token block: give them at least 8 groups to use it on. */
    if (j->panel) j->tok_block = j->tok_block < 128 ? 128 : (j->tok_block + MSA_PANEL_TOKENS - 1) / MSA_PANEL_TOKENS * MSA_PANEL_TOKENS;
}

/* Whether a product of n_tok tokens with kernel k runs in the panel layout. */
static int use_panel(const msa_kernel *k, int n_tok) {
    return k->gemm_panel && (k->panel_always || (g_panel && n_tok >= MSA_PANEL_MIN_TOKENS));
}

/* The parallel run of one product over already prepared activations. */
static void run_gemm(msa_threadpool *tp, job *j) {
    int nth = msa_threadpool_size(tp);
    plan_gemm(j, nth);
    atomic_store_explicit(&j->next, 0, memory_order_relaxed);
    if (nth > 1 && j->n_chunks > 1)
        msa_threadpool_run_shared(tp, gemm_job, j);
    else
        gemm_job(j, 0, 1);
}

void msa_matmul_rows(msa_threadpool *tp, const msa_tensor *w, int64_t row0, int64_t n_rows, const float *x,
                     float *y, int n_tok) {
    pthread_once(&g_once, init_tables);
    if (n_rows <= 0 || n_tok <= 0) return;
    int64_t n_in = w->shape[w->n_dims - 1];
    job j;
    memset(&j, 0, sizeof j);
    j.k = &g_tables[g_level][w->dtype];
    j.x = x;
    j.n_in = n_in;
    j.row_bytes = msa_dtype_row_bytes(w->dtype, n_in);
    j.w = (const uint8_t *)w->data + (size_t)row0 * j.row_bytes;
    j.n_rows = n_rows;
    j.n_tok = n_tok;
    j.y = y;
    j.ldy = n_rows;
    j.gemm = j.k->gemm;

    if (use_panel(j.k, n_tok)) {
        size_t gb = j.k->panel_bytes(n_in);
        int n_groups = (n_tok + MSA_PANEL_TOKENS - 1) / MSA_PANEL_TOKENS;
        uint8_t *buf = scratch(gb * (size_t)n_groups);
        j.panel = 1;
        j.gemm = j.k->gemm_panel;
        j.act_stride = gb / MSA_PANEL_TOKENS;
        if (buf) {
            j.act = buf;
            if (msa_threadpool_size(tp) > 1 && n_groups > 1) msa_threadpool_run(tp, prep_job, &j);
            else prep_job(&j, 0, 1);
            run_gemm(tp, &j);
            return;
        }
        if (!j.k->panel_always) {
            j.panel = 0;
            j.gemm = j.k->gemm;
        } else {
            /* Out of memory for a large prefill: one group of tokens at a time. */
            j.act = scratch(gb);
            if (!j.act) abort();
            for (int t0 = 0; t0 < n_tok; t0 += MSA_PANEL_TOKENS) {
                j.x = x + (size_t)t0 * (size_t)n_in;
                j.y = y + (size_t)t0 * (size_t)n_rows;
                j.n_tok = n_tok - t0 < MSA_PANEL_TOKENS ? n_tok - t0 : MSA_PANEL_TOKENS;
                prep_job(&j, 0, 1);
                run_gemm(tp, &j);
            }
            return;
        }
    }
    if (!j.k->prep) {
        j.act = (uint8_t *)(uintptr_t)x;
        j.act_stride = (size_t)n_in * sizeof(float);
        run_gemm(tp, &j);
        return;
    }
    j.act_stride = j.k->prep_bytes(n_in);
    j.act = scratch(j.act_stride * (size_t)n_tok);
    if (j.act) {
        if (msa_threadpool_size(tp) > 1 && (int64_t)n_tok * n_in >= 32768)
            msa_threadpool_run(tp, prep_job, &j);
        else
            prep_job(&j, 0, 1);
        run_gemm(tp, &j);
        return;
    }
    /* Out of memory for a large prefill: one token at a time through a small fixed buffer. */
    static _Thread_local _Alignas(64) uint8_t one[1 << 17];
    if (j.act_stride > sizeof one) abort();
    j.act = one;
    j.n_tok = 1;
    for (int t = 0; t < n_tok; t++) {
        j.x = x + (size_t)t * n_in;
        j.y = y + (size_t)t * n_rows;
        prep_job(&j, 0, 1);
        run_gemm(tp, &j);
    }
}

/* Several products over one activation: the chunks of all of them are taken from one counter. */
typedef struct multi_job {
    job *parts;              /* [n_parts], each planned */
    int n_parts;
    int64_t first[MSA_MATMUL_MULTI_MAX + 1]; /* first global chunk index of each part; first[n_parts] = total */
    _Atomic int64_t next;
} multi_job;

static void multi_gemm_job(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    multi_job *mj = arg;
    int p = 0;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&mj->next, 1, memory_order_relaxed);
        if (c >= mj->first[mj->n_parts]) break;
        while (c >= mj->first[p + 1]) p++; /* chunks are handed out in increasing order */
        run_chunk(&mj->parts[p], c - mj->first[p]);
    }
}

void msa_matmul_multi(msa_threadpool *tp, int n_w, const msa_tensor *const *w, const float *x, float *const *y,
                      int n_tok) {
    pthread_once(&g_once, init_tables);
    if (n_tok <= 0 || n_w <= 0) return;
    const msa_kernel *k0 = &g_tables[g_level][w[0]->dtype];
    int64_t n_in = w[0]->shape[w[0]->n_dims - 1];
    /* Fusing needs one activation format for all. With opt-in (batch-dependent) panel kernels a prefill goes
     * product by product, as the dispatch cost is amortised anyway. */
    int panel = use_panel(k0, n_tok);
    int fuse = n_w <= MSA_MATMUL_MULTI_MAX && (!panel || k0->panel_always);
    for (int i = 1; i < n_w && fuse; i++) {
        const msa_kernel *ki = &g_tables[g_level][w[i]->dtype];
        fuse = w[i]->shape[w[i]->n_dims - 1] == n_in && use_panel(ki, n_tok) == panel &&
               (panel ? ki->prep_group == k0->prep_group && ki->panel_bytes == k0->panel_bytes
                      : ki->prep == k0->prep && ki->prep_bytes == k0->prep_bytes);
    }
    uint8_t *act = (uint8_t *)(uintptr_t)x;
    size_t act_stride = (size_t)n_in * sizeof(float);
    if (fuse && panel) {
        size_t gb = k0->panel_bytes(n_in);
        act_stride = gb / MSA_PANEL_TOKENS;
        act = scratch(gb * (size_t)((n_tok + MSA_PANEL_TOKENS - 1) / MSA_PANEL_TOKENS));
        if (!act) fuse = 0;
    } else if (fuse && k0->prep) {
        act_stride = k0->prep_bytes(n_in);
        act = scratch(act_stride * (size_t)n_tok);
        if (!act) fuse = 0;
    }
    if (!fuse) {
        for (int i = 0; i < n_w; i++) msa_matmul(tp, w[i], x, y[i], n_tok);
        return;
    }
    job parts[MSA_MATMUL_MULTI_MAX];
    multi_job mj = {.parts = parts, .n_parts = n_w};
    int nth = msa_threadpool_size(tp);
    for (int i = 0; i < n_w; i++) {
        job *j = &parts[i];
        memset(j, 0, sizeof *j);
        j->k = &g_tables[g_level][w[i]->dtype];
        j->panel = panel;
        j->gemm = panel ? j->k->gemm_panel : j->k->gemm;
        j->x = x;
        j->n_in = n_in;
        j->act = act;
        j->act_stride = act_stride;
        j->row_bytes = msa_dtype_row_bytes(w[i]->dtype, n_in);
        j->w = w[i]->data;
        j->n_rows = w[i]->shape[0];
        j->n_tok = n_tok;
        j->y = y[i];
        j->ldy = j->n_rows;
        plan_gemm(j, nth);
        mj.first[i + 1] = mj.first[i] + j->n_chunks;
    }
    if (panel || k0->prep) {
        if (nth > 1 && (int64_t)n_tok * n_in >= 32768) msa_threadpool_run(tp, prep_job, &parts[0]);
        else prep_job(&parts[0], 0, 1);
    }
    atomic_store_explicit(&mj.next, 0, memory_order_relaxed);
    if (nth > 1) msa_threadpool_run_shared(tp, multi_gemm_job, &mj);
    else multi_gemm_job(&mj, 0, 1);
}

void msa_matmul(msa_threadpool *tp, const msa_tensor *w, const float *x, float *y, int n_tok) {
    msa_matmul_rows(tp, w, 0, w->shape[0], x, y, n_tok);
}

void msa_get_row_f32(const msa_tensor *w, int64_t r, float *out) {
    int64_t n_in = w->shape[w->n_dims - 1];
    size_t rb = msa_dtype_row_bytes(w->dtype, n_in);
    msa_row_to_f32(w->dtype, (const uint8_t *)w->data + (size_t)r * rb, out, n_in);
}
