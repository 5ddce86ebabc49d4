/* bench_peer.h — llama.cpp as the peer in `msa bench`: run its llama-bench on a GGUF, read its JSON.
 *
 * The goal is "at least 1.0x llama.cpp in prefill and decode, measured in the same run", so
 * `msa bench prefill|decode` calls bench_peer_run right after (or before) measuring msa on the same file
 * with the same thread count, and prints both. llama.cpp is built outside this repository (docs/perf.md
 * says how and where); nothing here links against it: llama-bench runs as a subprocess with `-o json`.
 *
 * Typical use (tools/msa/bench_model.c):
 *
 *     const char *lb = bench_peer_find();              // NULL when no llama-bench is installed
 *     bench_peer_result peer;
 *     if (lb && bench_peer_run(lb, gguf, 512, 128, n_threads, 5, &peer) == MSA_OK)
 *         printf("llama.cpp pp512 %.1f t/s (min %.1f, max %.1f)\n",
 *                peer.pp.median_ts, peer.pp.min_ts, peer.pp.max_ts);
 *     else ... msa_last_error() says why (missing binary, failed run, unreadable output) ...
 *
 * The llama-bench command line is exactly
 *     LLAMA_BENCH -m GGUF -p N_PROMPT -n N_GEN -t N_THREADS -r REPS -o json
 * (all other settings at llama-bench's defaults: batch 2048, ubatch 512, mmap on, one warm-up run), and
 * bench_peer_command() renders it for printing next to the numbers.
 */
#ifndef MSA_TOOLS_BENCH_PEER_H
#define MSA_TOOLS_BENCH_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"

/* Where llama-bench is looked for when $MSA_LLAMA_BENCH is unset (see docs/perf.md): under $LLAMA_CPP_DIR,
 * whose default is $XDG_CACHE_HOME/msa/llama.cpp (or ~/.cache/msa/llama.cpp), where scripts/build-llamacpp.sh
 * builds it. */
#define BENCH_PEER_SUBPATH "build/bin/llama-bench"

/* One llama-bench test (pp = prompt processing, tg = text generation), in tokens per second. */
typedef struct bench_peer_rate {
    int    n_tokens;   /* tokens per repetition: n_prompt for pp, n_gen for tg */
    int    n_samples;  /* repetitions measured (llama-bench's -r; the warm-up run is not among them) */
    double median_ts;  /* median of the per-repetition tokens/s */
    double min_ts;     /* slowest repetition */
    double max_ts;     /* fastest repetition */
    double mean_ts;    /* llama-bench's avg_ts */
    double stddev_ts;  /* llama-bench's stddev_ts */
} bench_peer_rate;

typedef struct bench_peer_result {
    bool            has_pp;             /* a pp test (n_prompt > 0, n_gen == 0) was in the output */
    bool            has_tg;             /* a tg test (n_gen > 0, n_prompt == 0) was in the output */
    bench_peer_rate pp;                 /* valid when has_pp */
    bench_peer_rate tg;                 /* valid when has_tg */
    int             n_threads;          /* threads llama-bench used (of the first test) */
    uint64_t        model_size;         /* bytes of the model's tensors, as llama-bench counts them */
    uint64_t        model_n_params;     /* parameters */
    char            build_commit[48];   /* llama.cpp commit llama-bench was built from (may be "unknown") */
    char            cpu_info[128];      /* CPU name llama-bench saw */
    char            model_type[128];    /* e.g. "llama ?B Q4_1", "qwen3 4B BF16" */
} bench_peer_result;

/* The llama-bench to use: $MSA_LLAMA_BENCH when set and non-empty (returned even when not executable,
 * so bench_peer_run reports it by name), else $LLAMA_CPP_DIR/build/bin/llama-bench (default
 * $XDG_CACHE_HOME/msa/llama.cpp or ~/.cache/msa/llama.cpp) when that is executable, else llama-bench found on
 * $PATH, else NULL.
 * The string is static or the environment's; do not free it. */
const char *bench_peer_find(void);

/* Run llama-bench (path llama_bench_path) on the GGUF `gguf` and parse its JSON into *out.
 * n_prompt, n_gen >= 0 and not both 0 (a 0 skips that test); n_threads >= 1; reps >= 1.
 * Blocks until llama-bench exits (it prints nothing to stdout but its JSON; its stderr is passed through).
 * Fails with MSA_ERR_INVALID_ARG for bad arguments, MSA_ERR_NOT_FOUND when llama-bench or the GGUF is
 * missing, MSA_ERR_IO when llama-bench cannot be started or exits non-zero, MSA_ERR_BAD_DATA when its
 * output is not what bench_peer_parse_json accepts or lacks a requested test. */
msa_status bench_peer_run(const char *llama_bench_path, const char *gguf, int n_prompt, int n_gen,
                          int n_threads, int reps, bench_peer_result *out);

/* Parse llama-bench's `-o json` output (json, len bytes, need not be NUL-terminated): a JSON array of
 * test objects. The first object with n_prompt > 0 and n_gen == 0 becomes pp, the first with n_gen > 0
 * and n_prompt == 0 becomes tg; others (pp+tg combined, later duplicates) are ignored. Each used object
 * must have n_threads and a non-empty samples_ts array (at most 100000) of finite positive numbers;
 * avg_ts/stddev_ts and the descriptive strings are optional. Fails with MSA_ERR_BAD_DATA, naming the
 * problem, on anything else (including output with neither test). */
msa_status bench_peer_parse_json(const char *json, size_t len, bench_peer_result *out);

/* Write the command line bench_peer_run runs into buf (always NUL-terminated, truncated to buf_size). */
void bench_peer_command(char *buf, size_t buf_size, const char *llama_bench_path, const char *gguf,
                        int n_prompt, int n_gen, int n_threads, int reps);

#endif
