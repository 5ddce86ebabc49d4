/* kernels.c — the matmul entry points: picks the kernel per dtype once (by measurement, see autotune below),
 * converts the activations into the kernel's partner format once per call, and splits the weight rows among
 * the pool's threads in chunks taken from a shared counter (so a thread slowed by another process does not
 * hold the others back). */
#include "backend/cpu/kernels.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/kernels_impl.h"

static msa_kernel g_tables[MSA_SIMD_COUNT][MSA_DTYPE_COUNT];
static int g_have[MSA_SIMD_COUNT];
static msa_simd g_max, g_level;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const simd_names[MSA_SIMD_COUNT] = {"scalar", "avx2", "avx512", "avx512bf16", "amx"};

/* A level forced by MSA_SIMD or msa_cpu_set_simd: every dtype then uses g_level's kernel. */
static int g_forced;
/* The measured level per dtype and shape class (0 decode, 1 prefill); -1 until measured or read. */
static _Atomic int g_pick[MSA_DTYPE_COUNT][2];

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
    /* avx512bf16 and AMX differ from AVX-512 only in their bf16 entry */
    memcpy(g_tables[MSA_SIMD_AVX512BF16], g_tables[MSA_SIMD_AVX512], sizeof g_tables[0]);
    g_have[MSA_SIMD_AVX512BF16] =
        g_have[MSA_SIMD_AVX512] && msa_kernels_avx512bf16_bf16(&g_tables[MSA_SIMD_AVX512BF16][MSA_DTYPE_BF16]);
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
        /* A level this CPU lacks falls back to the best one below it that it has. */
        for (int l = 0; l < MSA_SIMD_COUNT; l++)
            if (!strcmp(env, simd_names[l])) {
                int have = l;
                while (have > 0 && !g_have[have]) have--;
                g_forced = 1;
                if (have < (int)g_level) g_level = (msa_simd)have;
                break;
            }
    }
    for (int d = 0; d < MSA_DTYPE_COUNT; d++)
        for (int c = 0; c < 2; c++) atomic_init(&g_pick[d][c], -1);
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
    g_forced = 1;
    return 1;
}

void msa_cpu_set_simd_auto(void) {
    pthread_once(&g_once, init_tables);
    g_level = g_max;
    g_forced = 0;
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
        /* A kernel without panels whose row tile does not divide ROW_ALIGN (3 rows, kernels_bf16dp_avx512.c)
         * gets chunks of whole tiles, so no chunk ends in slow one-row tiles. (A kernel with panels states
         * its panel's tile, which does not concern its rows gemm.) */
        if (!j->panel && !j->k->gemm_panel && j->k->tile_rows > 1 && ROW_ALIGN % j->k->tile_rows) {
            int64_t a = ROW_ALIGN, b = j->k->tile_rows; /* lcm(ROW_ALIGN, tile_rows) */
            while (b) {
                int64_t r = a % b;
                a = b;
                b = r;
            }
            align = ROW_ALIGN / a * j->k->tile_rows;
        }
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

static const msa_kernel *kernel_for(msa_dtype dt, int n_tok);

/* One product with kernel k: W's rows [row0, row0 + n_rows) (W has n_in inputs, row_bytes per row). */
static void matmul_k(msa_threadpool *tp, const msa_kernel *k, const uint8_t *wdata, size_t row_bytes, int64_t n_in,
                     int64_t row0, int64_t n_rows, const float *x, float *y, int n_tok) {
    job j;
    memset(&j, 0, sizeof j);
    j.k = k;
    j.x = x;
    j.n_in = n_in;
    j.row_bytes = row_bytes;
    j.w = wdata + (size_t)row0 * j.row_bytes;
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

void msa_matmul_rows(msa_threadpool *tp, const msa_tensor *w, int64_t row0, int64_t n_rows, const float *x,
                     float *y, int n_tok) {
    pthread_once(&g_once, init_tables);
    if (n_rows <= 0 || n_tok <= 0) return;
    int64_t n_in = w->shape[w->n_dims - 1];
    matmul_k(tp, kernel_for(w->dtype, n_tok), w->data, msa_dtype_row_bytes(w->dtype, n_in), n_in, row0, n_rows, x,
             y, n_tok);
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
    const msa_kernel *k0 = kernel_for(w[0]->dtype, n_tok);
    int64_t n_in = w[0]->shape[w[0]->n_dims - 1];
    /* Fusing needs one activation format for all. With opt-in (batch-dependent) panel kernels a prefill goes
     * product by product, as the dispatch cost is amortised anyway. */
    int panel = use_panel(k0, n_tok);
    int fuse = n_w <= MSA_MATMUL_MULTI_MAX && (!panel || k0->panel_always);
    for (int i = 1; i < n_w && fuse; i++) {
        const msa_kernel *ki = kernel_for(w[i]->dtype, n_tok);
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
        j->k = kernel_for(w[i]->dtype, n_tok);
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

/* ---- the CPU, as benchmarks and the kernel cache name it ---- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define MSA_X86 1
#endif

static char g_cpu_name[128], g_cpu_flags[256], g_cpu_key[512];
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

/* Printable ASCII only, no tab (the cache's separator), runs of spaces folded: the brand string is the CPU's. */
static void clean_text(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        char c = (*p >= 0x21 && *p <= 0x7e) ? *p : ' ';
        if (c == ' ' && (o == s || o[-1] == ' ')) continue;
        *o++ = c;
    }
    while (o > s && o[-1] == ' ') o--;
    *o = 0;
}

static void cpu_init(void) {
    snprintf(g_cpu_name, sizeof g_cpu_name, "unknown");
    unsigned fam = 0, model = 0, step = 0;
#ifdef MSA_X86
    unsigned r[12] = {0}, a, b, c, d;
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &r[i * 4], &r[i * 4 + 1], &r[i * 4 + 2], &r[i * 4 + 3]);
        char brand[49];
        memcpy(brand, r, 48);
        brand[48] = 0;
        clean_text(brand);
        if (*brand) snprintf(g_cpu_name, sizeof g_cpu_name, "%s", brand);
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        fam = (a >> 8) & 15;
        model = (a >> 4) & 15;
        step = a & 15;
        if (fam == 15) fam += (a >> 20) & 255;
        if (fam == 6 || fam >= 15) model |= ((a >> 16) & 15) << 4;
    }
    __builtin_cpu_init();
    static const char *const names[] = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni",
                                        "avx512bf16"};
    size_t n = 0;
    g_cpu_flags[0] = 0;
#define FLAG(cond, name)                                                                                   \
    if (cond && n < sizeof g_cpu_flags) n += (size_t)snprintf(g_cpu_flags + n, sizeof g_cpu_flags - n, "%s%s", n ? " " : "", name)
    FLAG(__builtin_cpu_supports("avx2"), names[0]);
    FLAG(__builtin_cpu_supports("fma"), names[1]);
    FLAG(__builtin_cpu_supports("avx512f"), names[2]);
    FLAG(__builtin_cpu_supports("avx512bw"), names[3]);
    FLAG(__builtin_cpu_supports("avx512vl"), names[4]);
    FLAG(__builtin_cpu_supports("avx512dq"), names[5]);
    FLAG(__builtin_cpu_supports("avx512vnni"), names[6]);
    FLAG(__builtin_cpu_supports("avx512bf16"), names[7]);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        FLAG((d >> 22) & 1, "amx-bf16");
        FLAG((d >> 24) & 1, "amx-tile");
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) FLAG((a >> 4) & 1, "avx-vnni");
#undef FLAG
#endif
    snprintf(g_cpu_key, sizeof g_cpu_key, "%s|%u.%u.%u|%s", g_cpu_name, fam, model, step, g_cpu_flags);
    clean_text(g_cpu_key);
    snprintf(g_cpu_name + strlen(g_cpu_name), sizeof g_cpu_name - strlen(g_cpu_name), " (family %u model %u)", fam,
             model);
}

const char *msa_cpu_model_name(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_name;
}

const char *msa_cpu_flags(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return g_cpu_flags;
}

/* ---- kernel choice by measurement ----
 * Which level serves a dtype is decided by timing its candidates (every level from AVX2 up that the CPU has
 * and whose kernel differs) on this CPU, once per process on the dtype's first product, single-threaded, on
 * a decode shape (1 token x 8 MB of weights: streaming) and a prefill shape (32 tokens x 128 rows x 2048:
 * compute). That takes a few milliseconds; the answer is kept per CPU (brand, family/model/stepping, flags)
 * in a small cache file (kernel_cache_path) so later processes skip it.
 *
 * Batch invariance: float dtypes (f32, f16, bf16) sum in a per-level order, so one level serves both shape
 * classes, the one with the best sum of the two times relative to the fastest (a token's result must not
 * depend on n_tok). Quantized dtypes are bit-identical on every level, so decode and prefill are chosen
 * separately. MSA_SIMD (or msa_cpu_set_simd) bypasses all of this. */

#define KCACHE_MAGIC "msa-kernels 1" /* bump when kernels change enough that old measurements mislead */
enum { TUNE_N_IN = 2048, TUNE_PREFILL_ROWS = 128, TUNE_PREFILL_TOK = 32, TUNE_REPS = 5 };
#define TUNE_DECODE_BYTES ((size_t)8 << 20)

static pthread_mutex_t g_tune_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_n_tuned;

static int is_float_dtype(msa_dtype dt) {
    return dt == MSA_DTYPE_F32 || dt == MSA_DTYPE_F16 || dt == MSA_DTYPE_BF16;
}

/* The cache file: MSA_KERNEL_CACHE (a path; "off" or "" for none), else $XDG_CACHE_HOME/msa/kernels.tsv,
 * else $HOME/.cache/msa/kernels.tsv. 0 when there is none; dir gets the directory to create. */
static int kernel_cache_path(char *path, size_t n, char *dir, size_t dn) {
    const char *e = getenv("MSA_KERNEL_CACHE");
    if (e) {
        if (!*e || !strcmp(e, "off") || !strcmp(e, "0")) return 0;
        dir[0] = 0;
        return snprintf(path, n, "%s", e) < (int)n;
    }
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    int k;
    if (x && x[0] == '/') k = snprintf(dir, dn, "%s/msa", x);
    else if (h && h[0] == '/') k = snprintf(dir, dn, "%s/.cache/msa", h);
    else return 0;
    if (k < 0 || (size_t)k >= dn) return 0;
    return snprintf(path, n, "%s/kernels.tsv", dir) < (int)n;
}

static int level_by_name(const char *s) {
    for (int l = 0; l < MSA_SIMD_COUNT; l++)
        if (!strcmp(s, simd_names[l])) return l;
    return -1;
}

/* A level the cache may name for dt: one this CPU and build have, within the current maximum. */
static int level_ok(int l, msa_dtype dt) {
    return l >= 0 && l <= (int)g_max && g_have[l] && (g_tables[l][dt].gemm || g_tables[l][dt].gemm_panel);
}

/* Split a cache line into its 5 tab-separated fields in place; 0 unless it has exactly that shape. */
static int split_line(char *line, char *f[5]) {
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p; p++)
        if (*p == '\t') {
            if (n == 5) return 0;
            *p = 0;
            f[n++] = p + 1;
        }
    return n == 5;
}

enum { KCACHE_MAX_BYTES = 64 * 1024, KCACHE_MAX_LINES = 256 };

/* The whole cache file as a NUL-terminated string (at most KCACHE_MAX_BYTES; a larger one is ignored), or NULL. */
static char *read_cache(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(KCACHE_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, KCACHE_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || n > KCACHE_MAX_BYTES) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Our line for dt from the cache, validated: every field checked, anything odd ignored. */
static int cache_lookup(msa_dtype dt, int out[2]) {
    char path[1024], dir[1024];
    if (!kernel_cache_path(path, sizeof path, dir, sizeof dir)) return 0;
    char *buf = read_cache(path);
    if (!buf) return 0;
    int found = 0;
    for (char *line = buf, *next; line && *line && !found; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *f[5];
        if (!split_line(line, f)) continue;
        if (strcmp(f[0], KCACHE_MAGIC) || strcmp(f[1], g_cpu_key) || strcmp(f[2], msa_dtype_name(dt))) continue;
        int d = level_by_name(f[3]), p = level_by_name(f[4]);
        int lo = g_max >= MSA_SIMD_AVX2 ? MSA_SIMD_AVX2 : MSA_SIMD_SCALAR; /* only what tune() would pick */
        if (!level_ok(d, dt) || !level_ok(p, dt) || d < lo || p < lo || (is_float_dtype(dt) && d != p)) continue;
        out[0] = d;
        out[1] = p;
        found = 1;
    }
    free(buf);
    return found;
}

/* Add or replace our line for dt; other lines that look like cache lines are kept (up to a bound). Written to
 * a temporary file and renamed, so a reader never sees half a file. Failures are ignored: it is a cache. */
static void cache_store(msa_dtype dt, const int lv[2]) {
    char path[1024], dir[1024], tmp[1100];
    if (!kernel_cache_path(path, sizeof path, dir, sizeof dir)) return;
    if (dir[0]) {
        char parent[1024];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = 0;
            if (mkdir(parent, 0700) != 0 && errno != EEXIST) return;
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) return;
    }
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) return;
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    char *old = read_cache(path);
    int kept = 0;
    for (char *line = old, *next; line && *line && kept < KCACHE_MAX_LINES - 1; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *fl[5];
        if (!split_line(line, fl) || strcmp(fl[0], KCACHE_MAGIC)) continue;
        if (!strcmp(fl[1], g_cpu_key) && !strcmp(fl[2], msa_dtype_name(dt))) continue;
        fprintf(f, "%s\t%s\t%s\t%s\t%s\n", fl[0], fl[1], fl[2], fl[3], fl[4]);
        kept++;
    }
    free(old);
    fprintf(f, "%s\t%s\t%s\t%s\t%s\n", KCACHE_MAGIC, g_cpu_key, msa_dtype_name(dt), simd_names[lv[0]],
            simd_names[lv[1]]);
    if (fclose(f) != 0 || rename(tmp, path) != 0) remove(tmp);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Weights of dtype dt with sane values (finite scales, no subnormals) for timing. */
static void fill_weights(msa_dtype dt, uint8_t *w, size_t bytes, size_t row_bytes, int64_t n_in) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < bytes; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        w[i] = (uint8_t)(s >> 24);
    }
    size_t n_rows = bytes / row_bytes;
    uint16_t small = msa_f32_to_f16(0.01f);
    for (size_t r = 0; r < n_rows; r++) {
        uint8_t *row = w + r * row_bytes;
        for (int64_t i = 0; i < n_in; i++) {
            float v = (float)((int)((i * 7 + (int64_t)r * 13) % 31) - 15) / 16.0f;
            if (dt == MSA_DTYPE_F32) memcpy(row + i * 4, &v, 4);
            else if (dt == MSA_DTYPE_F16) {
                uint16_t h = msa_f32_to_f16(v);
                memcpy(row + i * 2, &h, 2);
            } else if (dt == MSA_DTYPE_BF16) {
                uint16_t h = msa_f32_to_bf16(v);
                memcpy(row + i * 2, &h, 2);
            }
        }
        if (!is_float_dtype(dt)) {
            size_t bb = row_bytes / (size_t)(n_in / MSA_QK);
            for (size_t b = 0; b < row_bytes / bb; b++) {
                memcpy(row + b * bb, &small, 2);
                if (dt == MSA_DTYPE_Q4_1) memcpy(row + b * bb + 2, &small, 2);
            }
        }
    }
}

/* Measure dt's candidates and set g_pick[dt] (called under g_tune_lock). */
static void tune(msa_dtype dt) {
    int cand[MSA_SIMD_COUNT], nc = 0;
    for (int l = g_max >= MSA_SIMD_AVX2 ? MSA_SIMD_AVX2 : MSA_SIMD_SCALAR; l <= (int)g_max; l++) {
        if (!level_ok(l, dt)) continue;
        int dup = 0;
        for (int c = 0; c < nc; c++)
            dup |= g_tables[cand[c]][dt].gemm == g_tables[l][dt].gemm &&
                   g_tables[cand[c]][dt].gemm_panel == g_tables[l][dt].gemm_panel;
        if (!dup) cand[nc++] = l;
    }
    int lv[2] = {g_max, g_max};
    if (nc == 1) lv[0] = lv[1] = cand[0];
    if (nc <= 1 || cache_lookup(dt, lv)) {
        if (nc == 0) lv[0] = lv[1] = g_max;
        atomic_store_explicit(&g_pick[dt][0], lv[0], memory_order_release);
        atomic_store_explicit(&g_pick[dt][1], lv[1], memory_order_release);
        return;
    }
    size_t rb = msa_dtype_row_bytes(dt, TUNE_N_IN);
    int64_t dec_rows = (int64_t)(TUNE_DECODE_BYTES / rb);
    size_t wbytes = (size_t)dec_rows * rb;
    uint8_t *w = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
    float *x = malloc((size_t)TUNE_PREFILL_TOK * TUNE_N_IN * sizeof(float));
    float *y = malloc((size_t)(dec_rows > TUNE_PREFILL_ROWS * TUNE_PREFILL_TOK ? dec_rows : TUNE_PREFILL_ROWS * TUNE_PREFILL_TOK) * sizeof(float));
    if (w && x && y) {
        fill_weights(dt, w, wbytes, rb, TUNE_N_IN);
        for (int i = 0; i < TUNE_PREFILL_TOK * TUNE_N_IN; i++) x[i] = (float)((i * 11) % 23 - 11) / 8.0f;
        double best[MSA_SIMD_COUNT][2];
        for (int c = 0; c < nc; c++) best[c][0] = best[c][1] = 1e30;
        for (int rep = 0; rep < TUNE_REPS + 1; rep++) /* rep 0 warms caches and page tables */
            for (int c = 0; c < nc; c++) {
                const msa_kernel *k = &g_tables[cand[c]][dt];
                double t0 = now_s();
                matmul_k(NULL, k, w, rb, TUNE_N_IN, 0, dec_rows, x, y, 1);
                double t1 = now_s();
                matmul_k(NULL, k, w, rb, TUNE_N_IN, 0, TUNE_PREFILL_ROWS, x, y, TUNE_PREFILL_TOK);
                double t2 = now_s();
                if (rep && t1 - t0 < best[c][0]) best[c][0] = t1 - t0;
                if (rep && t2 - t1 < best[c][1]) best[c][1] = t2 - t1;
            }
        double mn[2] = {1e30, 1e30};
        for (int c = 0; c < nc; c++)
            for (int s = 0; s < 2; s++)
                if (best[c][s] < mn[s]) mn[s] = best[c][s];
        if (is_float_dtype(dt)) {
            double bs = 1e30;
            for (int c = 0; c < nc; c++) {
                double score = best[c][0] / mn[0] + best[c][1] / mn[1];
                if (score < bs) bs = score, lv[0] = lv[1] = cand[c];
            }
        } else {
            for (int s = 0; s < 2; s++)
                for (int c = 0; c < nc; c++)
                    if (best[c][s] == mn[s]) {
                        lv[s] = cand[c];
                        break;
                    }
        }
        g_n_tuned++;
        if (getenv("MSA_KERNEL_DEBUG"))
            for (int c = 0; c < nc; c++)
                fprintf(stderr, "msa: kernel timing %s %s: decode %.3f ms, prefill %.3f ms\n", msa_dtype_name(dt),
                        simd_names[cand[c]], best[c][0] * 1e3, best[c][1] * 1e3);
        cache_store(dt, lv);
    }
    free(w);
    free(x);
    free(y);
    atomic_store_explicit(&g_pick[dt][0], lv[0], memory_order_release);
    atomic_store_explicit(&g_pick[dt][1], lv[1], memory_order_release);
}

static int picked_level(msa_dtype dt, int prefill) {
    int l = atomic_load_explicit(&g_pick[dt][prefill], memory_order_acquire);
    if (l >= 0) return l;
    pthread_once(&g_cpu_once, cpu_init);
    pthread_mutex_lock(&g_tune_lock);
    if (atomic_load_explicit(&g_pick[dt][prefill], memory_order_acquire) < 0) tune(dt);
    pthread_mutex_unlock(&g_tune_lock);
    return atomic_load_explicit(&g_pick[dt][prefill], memory_order_acquire);
}

static const msa_kernel *kernel_for(msa_dtype dt, int n_tok) {
    if (g_forced || (unsigned)dt >= MSA_DTYPE_COUNT) return &g_tables[g_level][dt];
    return &g_tables[picked_level(dt, n_tok > 1)][dt];
}

const char *msa_cpu_kernel_choice(msa_dtype dt, int prefill) {
    pthread_once(&g_once, init_tables);
    if ((unsigned)dt >= MSA_DTYPE_COUNT) return "none";
    if (g_forced) return simd_names[g_level];
    return simd_names[picked_level(dt, prefill != 0)];
}

int msa_cpu_autotune_reset(void) {
    pthread_once(&g_once, init_tables);
    pthread_mutex_lock(&g_tune_lock);
    int n = g_n_tuned;
    for (int d = 0; d < MSA_DTYPE_COUNT; d++)
        for (int c = 0; c < 2; c++) atomic_store(&g_pick[d][c], -1);
    pthread_mutex_unlock(&g_tune_lock);
    return n;
}

void msa_cpu_kernel_summary(char *buf, size_t n) {
    pthread_once(&g_once, init_tables);
    size_t k = 0;
    buf[0] = 0;
    if (g_forced) {
        snprintf(buf, n, "all %s (forced by MSA_SIMD)", simd_names[g_level]);
        return;
    }
    for (int d = 0; d < MSA_DTYPE_COUNT && k < n; d++) {
        int a = atomic_load(&g_pick[d][0]), b = atomic_load(&g_pick[d][1]);
        if (a < 0 || b < 0) continue;
        if (a == b) k += (size_t)snprintf(buf + k, n - k, "%s%s %s", k ? ", " : "", msa_dtype_name((msa_dtype)d), simd_names[a]);
        else
            k += (size_t)snprintf(buf + k, n - k, "%s%s %s (decode) / %s (prefill)", k ? ", " : "",
                                  msa_dtype_name((msa_dtype)d), simd_names[a], simd_names[b]);
    }
    if (!k) snprintf(buf, n, "none used yet (best level %s)", simd_names[g_max]);
}
