/* kernels_amx.c — bf16 weights x bf16 activations on Intel AMX (TDPBF16PS), for CPUs that have AMX-BF16
 * (Sapphire Rapids and later); chosen at run time by kernels.c as the "amx" level.
 *
 * Why: one TDPBF16PS multiplies a 16x32 bf16 tile by a 32x16 one, 8192 multiply-adds, where an AVX-512 FMA
 * does 16; on the 2-core machine of docs/perf.md it measured 840 G multiply-adds/s per core against 67 for
 * f32 FMA. A bf16 prefill, compute-bound on AVX-512, becomes bound by reading the weights once.
 *
 * Layout: the weights are the A tiles, read in place (16 rows x 64 bytes, stride = the row's bytes), so the
 * mmap'd model is never repacked. The activations are the B tiles: each group of 16 tokens is prepared once
 * per call in the "VNNI" layout TDPBF16PS wants, per 32-input block 16 rows (input pairs) x 16 tokens x 2
 * bf16 (1 KB; tokens missing from a group are zero). C[row][token] accumulates in f32 tiles.
 *
 * Numerics and batch invariance: activations are rounded to bf16 (round-half-even), as on every path for
 * bf16 weights. Each output (row, token) is C = 0, then for each 32-input block in increasing order
 * C += TDPBF16PS(row's block, token's block), the hardware's fixed f32 arithmetic for that element (denormal
 * inputs and outputs flushed to zero, round-to-nearest-even). An element depends only on its own row, its
 * own token and that sequence, never on the tile it shares, the number of tokens, the thread count or
 * whether the row went through the padded copy below; so a token's result is the same alone as in any batch.
 * The AVX-512/AVX2/scalar paths sum in other orders (a different, also batch-invariant, level). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels_impl.h"

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend/cpu/bf16_avx512.h"

#define TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

enum { ROWS = 16, PAIRS = 16, TOKS = 16, BLOCK_BYTES = 1024 };

/* The 64-byte tile configuration (palette 1). */
typedef struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tiles: 0, 1 = A (weight rows r..r+15, r+16..r+31); 2, 3 = B (token groups g, g+1); 4..7 = C[a][b]. */
static const tile_config g_config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static size_t panel_bytes_amx(int64_t n_in) { return (size_t)((n_in + 31) / 32) * BLOCK_BYTES; }

/* Tokens x[0..nt) (nt <= 16) into one group: block b, pair p, token n at ((b * 16 + p) * 16 + n) * 2 bf16.
 * Per token and block, the 32 inputs become 16 dwords (pair p = inputs 2p, 2p+1) scattered 64 bytes apart. */
TARGET static void prep_group_amx(const float *x, int64_t n_in, int nt, void *out) {
    uint32_t *o = out;
    int64_t nb = (n_in + 31) / 32;
    if (nt < TOKS || n_in % 32) memset(out, 0, panel_bytes_amx(n_in));
    const __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(TOKS));
    for (int n = 0; n < nt; n++) {
        const float *xr = x + (size_t)n * (size_t)n_in;
        for (int64_t b = 0; b < nb; b++) {
            int64_t i = b * 32, left = n_in - i;
            __mmask16 m0 = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? (__mmask16)0xffff : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
            __m256i lo = _mm512_cvtepi32_epi16(msa_bf16_bits_avx512(_mm512_maskz_loadu_ps(m0, xr + i)));
            __m256i hi = _mm512_cvtepi32_epi16(msa_bf16_bits_avx512(_mm512_maskz_loadu_ps(m1, xr + i + 16)));
            __m512i pairs = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            __mmask16 mp = (__mmask16)(left >= 32 ? 0xffff : (1u << ((left + 1) / 2)) - 1);
            _mm512_mask_i32scatter_epi32(o + (size_t)b * PAIRS * TOKS + n, mp, stride, pairs, 4);
        }
    }
}

/* Scatter a C tile (16 rows x 16 tokens, f32) into y for the nr valid rows and nt valid tokens. */
static void store_c(const float *c, int nr, int nt, float *y, int64_t ldy) {
    for (int n = 0; n < nt; n++)
        for (int m = 0; m < nr; m++) y[(size_t)n * (size_t)ldy + (size_t)m] = c[m * TOKS + n];
}

/* The rows of one block pair copied into [block][row][64 bytes] order, zero-padded to 32 rows and whole
 * 32-input blocks: for rows that cannot be tile-loaded in place (fewer than 16 left, or n_in not a multiple
 * of 32 so the last block would run past the row; the padded inputs meet zero activations), and for long
 * prefills, where each A tile is loaded once per pair of token groups and 16 rows 5 KB apart cost 16 TLB
 * entries per load while the copy's tiles are 1 KB contiguous. *stride: bytes between a tile's rows. */
static const uint8_t *pad_rows(const uint8_t *w, size_t rb, int64_t n_in, int nr, size_t *stride) {
    int64_t nb = (n_in + 31) / 32;
    size_t bytes = (size_t)nb * 2 * ROWS * 64;
    uint8_t *pad = msa_thread_scratch(1, bytes);
    if (!pad) return NULL;
    if (nr < 2 * ROWS || n_in % 32) memset(pad, 0, bytes);
    for (int m = 0; m < nr; m++) {
        const uint8_t *src = w + (size_t)m * rb;
        for (int64_t b = 0; b < nb; b++) {
            size_t len = n_in - b * 32 >= 32 ? 64 : (size_t)(n_in - b * 32) * 2;
            memcpy(pad + ((size_t)b * 2 * ROWS + (size_t)m) * 64, src + (size_t)b * 64, len);
        }
    }
    *stride = 64;
    return pad;
}

/* Weight rows stream from memory as 16 or 32 interleaved short runs, which the hardware prefetchers follow
 * poorly: each step asks for the line PF_BLOCKS blocks ahead in every row (prefetches past a row's end land in
 * the next row or nowhere; they never fault). */
enum { PF_BLOCKS = 8 };

TARGET static inline void prefetch_rows(const uint8_t *p, size_t stride, int n) {
    for (int m = 0; m < n; m++) _mm_prefetch((const char *)(p + (size_t)m * stride), _MM_HINT_T0);
}

/* C tiles of one row block pair (na = 1 or 2 blocks of 16 rows) and one token group pair (nbg = 1 or 2
 * groups): zeroed, accumulated over all input blocks, stored. Tile numbers are immediates, hence the
 * four spelled-out shapes. */
TARGET static void tiles_run(const uint8_t *a, size_t as, size_t ak, int na, const uint8_t *b, size_t gb, int nbg,
                             int64_t nb, int pf, float c[4][ROWS * TOKS]) {
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    if (na == 2 && nbg == 2) {
        for (int64_t k = 0; k < nb; k++) {
            if (pf) prefetch_rows(a + (k + PF_BLOCKS) * ak, as, na * ROWS);
            _tile_loadd(0, a + k * ak, (long)as);
            _tile_loadd(1, a + 16 * as + k * ak, (long)as);
            _tile_loadd(2, b + k * BLOCK_BYTES, 64);
            _tile_loadd(3, b + gb + k * BLOCK_BYTES, 64);
            _tile_dpbf16ps(4, 0, 2);
            _tile_dpbf16ps(5, 0, 3);
            _tile_dpbf16ps(6, 1, 2);
            _tile_dpbf16ps(7, 1, 3);
        }
    } else if (na == 2) {
        for (int64_t k = 0; k < nb; k++) {
            if (pf) prefetch_rows(a + (k + PF_BLOCKS) * ak, as, na * ROWS);
            _tile_loadd(0, a + k * ak, (long)as);
            _tile_loadd(1, a + 16 * as + k * ak, (long)as);
            _tile_loadd(2, b + k * BLOCK_BYTES, 64);
            _tile_dpbf16ps(4, 0, 2);
            _tile_dpbf16ps(6, 1, 2);
        }
    } else if (nbg == 2) {
        for (int64_t k = 0; k < nb; k++) {
            if (pf) prefetch_rows(a + (k + PF_BLOCKS) * ak, as, na * ROWS);
            _tile_loadd(0, a + k * ak, (long)as);
            _tile_loadd(2, b + k * BLOCK_BYTES, 64);
            _tile_loadd(3, b + gb + k * BLOCK_BYTES, 64);
            _tile_dpbf16ps(4, 0, 2);
            _tile_dpbf16ps(5, 0, 3);
        }
    } else {
        for (int64_t k = 0; k < nb; k++) {
            if (pf) prefetch_rows(a + (k + PF_BLOCKS) * ak, as, na * ROWS);
            _tile_loadd(0, a + k * ak, (long)as);
            _tile_loadd(2, b + k * BLOCK_BYTES, 64);
            _tile_dpbf16ps(4, 0, 2);
        }
    }
    _tile_stored(4, c[0], 64);
    _tile_stored(5, c[1], 64);
    _tile_stored(6, c[2], 64);
    _tile_stored(7, c[3], 64);
}

/* act: group 0 of this token block (act_stride = group bytes / 16, so group g is at act + g * 16 * act_stride). */
TARGET static void gemm_amx(const uint8_t *w, size_t rb, int64_t n_in, int64_t n_rows, const uint8_t *act,
                            size_t act_stride, int n_tok, float *y, int64_t ldy) {
    _Alignas(64) float c[4][ROWS * TOKS];
    size_t gb = act_stride * TOKS;
    int64_t nb = (n_in + 31) / 32;
    int n_groups = (n_tok + TOKS - 1) / TOKS;
    int in_place_k = n_in % 32 == 0;
    _tile_loadconfig(&g_config);
    for (int64_t r0 = 0; r0 < n_rows; r0 += 2 * ROWS) {
        int64_t left = n_rows - r0;
        int nr = left >= 2 * ROWS ? 2 * ROWS : (int)left;
        int na = nr > ROWS ? 2 : 1;
        const uint8_t *a = w + (size_t)r0 * rb;
        size_t as = rb;
        int packed = !in_place_k || nr % ROWS || n_groups > 4;
        if (packed) {
            a = pad_rows(a, rb, n_in, nr, &as);
            if (!a) abort(); /* a few hundred KB per thread: out of memory here is not recoverable */
        }
        for (int g = 0; g < n_groups; g += 2) {
            int nbg = n_groups - g >= 2 ? 2 : 1;
            tiles_run(a, as, packed ? 2 * ROWS * 64 : 64, na, act + (size_t)g * gb, gb, nbg, nb, g == 0 && !packed, c);
            for (int ai = 0; ai < na; ai++) {
                int mr = nr - ai * ROWS < ROWS ? nr - ai * ROWS : ROWS;
                for (int bi = 0; bi < nbg; bi++) {
                    int t0 = (g + bi) * TOKS;
                    int nt = n_tok - t0 < TOKS ? n_tok - t0 : TOKS;
                    store_c(c[ai * 2 + bi], mr, nt, y + (size_t)t0 * (size_t)ldy + (size_t)(r0 + ai * ROWS), ldy);
                }
            }
        }
    }
    _tile_release();
}

/* AMX-BF16 in CPUID and the kernel's permission to use the tile data state (Linux asks each process). */
static int amx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0; /* AMX-BF16, AMX-TILE */
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int msa_kernels_amx_bf16(msa_kernel *entry) {
    if (!amx_usable()) return 0;
    *entry = (msa_kernel){.panel_bytes = panel_bytes_amx,
                          .prep_group = prep_group_amx,
                          .gemm_panel = gemm_amx,
                          .panel_always = 1,
                          .tile_rows = 2 * ROWS};
    return 1;
}

#else
int msa_kernels_amx_bf16(msa_kernel *entry) {
    (void)entry;
    return 0;
}
#endif
