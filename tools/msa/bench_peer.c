/* bench_peer.c — run llama.cpp's llama-bench as a subprocess and read its `-o json` output.
 * See bench_peer.h for the interface and why it exists. The JSON comes from another program, so it is
 * parsed as untrusted input: every field is type-checked, sample counts are bounded, numbers must be
 * finite and positive. */
#include "bench_peer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/error.h"

extern char **environ;

#define BENCH_PEER_MAX_SAMPLES 100000
#define BENCH_PEER_MAX_OUTPUT  (16u << 20) /* llama-bench's JSON is a few KB per test */

const char *bench_peer_find(void) {
    const char *env = getenv("MSA_LLAMA_BENCH");
    if (env && *env) return env;
    /* then $LLAMA_CPP_DIR's build (default: the user's cache, where scripts/build-llamacpp.sh builds it), then
     * llama-bench on $PATH (no machine-specific default path) */
    static char found[4096];
    const char *dir = getenv("LLAMA_CPP_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = -1;
    if (dir && *dir) n = snprintf(found, sizeof found, "%s/%s", dir, BENCH_PEER_SUBPATH);
    else if (xdg && *xdg == '/') n = snprintf(found, sizeof found, "%s/msa/llama.cpp/%s", xdg, BENCH_PEER_SUBPATH);
    else if (home && *home) n = snprintf(found, sizeof found, "%s/.cache/msa/llama.cpp/%s", home, BENCH_PEER_SUBPATH);
    if (n > 0 && (size_t)n < sizeof found && access(found, X_OK) == 0) return found;
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *e = strchr(path, ':');
        size_t len = e ? (size_t)(e - path) : strlen(path);
        if (len && len < sizeof found - 16) {
            snprintf(found, sizeof found, "%.*s/llama-bench", (int)len, path);
            if (access(found, X_OK) == 0) return found;
        }
        path = e ? e + 1 : NULL;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void copy_string_field(json_t *obj, const char *key, char *dst, size_t dst_size) {
    const char *s = json_string_value(json_object_get(obj, key));
    snprintf(dst, dst_size, "%s", s ? s : "");
}

/* An integer field as int; fails unless present, integral and within [0, INT32_MAX]. */
static msa_status get_int_field(json_t *obj, size_t index, const char *key, int *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu: '%s' missing or not an integer", index, key);
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > INT32_MAX)
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu: '%s' = %lld out of range", index, key,
                        (long long)x);
    *out = (int)x;
    return MSA_OK;
}

static double get_number_or_nan(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Fill *rate from one test object's samples_ts (median/min/max) and avg_ts/stddev_ts. */
static msa_status parse_rate(json_t *test, size_t index, int n_tokens, bench_peer_rate *rate) {
    json_t *samples = json_object_get(test, "samples_ts");
    if (!json_is_array(samples))
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu: 'samples_ts' missing or not an array", index);
    size_t n = json_array_size(samples);
    if (n == 0 || n > BENCH_PEER_MAX_SAMPLES)
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu: 'samples_ts' has %zu entries (want 1..%d)",
                        index, n, BENCH_PEER_MAX_SAMPLES);
    double *v = malloc(n * sizeof *v);
    if (!v) return msa_fail(MSA_ERR_NOMEM, "llama-bench JSON: out of memory for %zu samples", n);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(samples, i);
        double x = json_is_number(s) ? json_number_value(s) : NAN;
        if (!isfinite(x) || x <= 0) {
            free(v);
            return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu: samples_ts[%zu] is not a positive number",
                            index, i);
        }
        v[i] = x;
    }
    qsort(v, n, sizeof *v, cmp_double);
    rate->n_tokens = n_tokens;
    rate->n_samples = (int)n;
    rate->min_ts = v[0];
    rate->max_ts = v[n - 1];
    rate->median_ts = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    free(v);
    rate->mean_ts = get_number_or_nan(test, "avg_ts");
    rate->stddev_ts = get_number_or_nan(test, "stddev_ts");
    return MSA_OK;
}

msa_status bench_peer_parse_json(const char *json, size_t len, bench_peer_result *out) {
    if (!json || !out) return msa_fail(MSA_ERR_INVALID_ARG, "bench_peer_parse_json: NULL argument");
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: line %d column %d: %s", jerr.line, jerr.column,
                        jerr.text);
    msa_status st = MSA_OK;
    if (!json_is_array(root)) {
        st = msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: top level is not an array of tests");
        goto done;
    }
    size_t i;
    json_t *test;
    json_array_foreach(root, i, test) {
        if (!json_is_object(test)) {
            st = msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: test %zu is not an object", i);
            goto done;
        }
        int n_prompt, n_gen, n_threads;
        if ((st = get_int_field(test, i, "n_prompt", &n_prompt)) != MSA_OK) goto done;
        if ((st = get_int_field(test, i, "n_gen", &n_gen)) != MSA_OK) goto done;
        bool is_pp = n_prompt > 0 && n_gen == 0, is_tg = n_gen > 0 && n_prompt == 0;
        if ((is_pp && out->has_pp) || (is_tg && out->has_tg) || (!is_pp && !is_tg)) continue;
        if ((st = get_int_field(test, i, "n_threads", &n_threads)) != MSA_OK) goto done;
        if (is_pp) {
            if ((st = parse_rate(test, i, n_prompt, &out->pp)) != MSA_OK) goto done;
            out->has_pp = true;
        } else {
            if ((st = parse_rate(test, i, n_gen, &out->tg)) != MSA_OK) goto done;
            out->has_tg = true;
        }
        if (out->n_threads == 0) {
            out->n_threads = n_threads;
            json_t *sz = json_object_get(test, "model_size"), *np = json_object_get(test, "model_n_params");
            out->model_size = json_is_integer(sz) && json_integer_value(sz) > 0 ? (uint64_t)json_integer_value(sz) : 0;
            out->model_n_params =
                json_is_integer(np) && json_integer_value(np) > 0 ? (uint64_t)json_integer_value(np) : 0;
            copy_string_field(test, "build_commit", out->build_commit, sizeof out->build_commit);
            copy_string_field(test, "cpu_info", out->cpu_info, sizeof out->cpu_info);
            copy_string_field(test, "model_type", out->model_type, sizeof out->model_type);
        }
    }
    if (!out->has_pp && !out->has_tg)
        st = msa_fail(MSA_ERR_BAD_DATA, "llama-bench JSON: no pp or tg test in the output");
done:
    json_decref(root);
    return st;
}

void bench_peer_command(char *buf, size_t buf_size, const char *llama_bench_path, const char *gguf,
                        int n_prompt, int n_gen, int n_threads, int reps) {
    if (!buf || buf_size == 0) return;
    snprintf(buf, buf_size, "%s -m %s -p %d -n %d -t %d -r %d -o json", llama_bench_path ? llama_bench_path : "?",
             gguf ? gguf : "?", n_prompt, n_gen, n_threads, reps);
}

/* Read fd to EOF into a malloc'd buffer (*out, *len). Output past BENCH_PEER_MAX_OUTPUT is drained and
 * makes the call fail, so the child never blocks on a full pipe. */
static msa_status read_all(int fd, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    bool too_big = false;
    if (!buf) return msa_fail(MSA_ERR_NOMEM, "llama-bench: out of memory for its output");
    for (;;) {
        if (n == cap) {
            if (cap >= BENCH_PEER_MAX_OUTPUT) {
                too_big = true;
                n = 0; /* keep draining into the same buffer */
            } else {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    free(buf);
                    return msa_fail(MSA_ERR_NOMEM, "llama-bench: out of memory for its output");
                }
                buf = nb;
                cap *= 2;
            }
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return msa_fail(MSA_ERR_IO, "llama-bench: reading its output: %s", strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (too_big) {
        free(buf);
        return msa_fail(MSA_ERR_BAD_DATA, "llama-bench: output larger than %u bytes", BENCH_PEER_MAX_OUTPUT);
    }
    *out = buf;
    *len = n;
    return MSA_OK;
}

msa_status bench_peer_run(const char *llama_bench_path, const char *gguf, int n_prompt, int n_gen,
                          int n_threads, int reps, bench_peer_result *out) {
    if (!llama_bench_path || !gguf || !out)
        return msa_fail(MSA_ERR_INVALID_ARG, "bench_peer_run: NULL argument");
    if (n_prompt < 0 || n_gen < 0 || (n_prompt == 0 && n_gen == 0) || n_threads < 1 || reps < 1)
        return msa_fail(MSA_ERR_INVALID_ARG,
                        "bench_peer_run: need n_prompt, n_gen >= 0 (not both 0), n_threads >= 1, reps >= 1");
    if (access(llama_bench_path, X_OK) != 0)
        return msa_fail(MSA_ERR_NOT_FOUND, "%s: llama-bench not found or not executable (see docs/perf.md)",
                        llama_bench_path);
    struct stat sb;
    if (stat(gguf, &sb) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: %s", gguf, strerror(errno));

    char a_p[16], a_n[16], a_t[16], a_r[16];
    snprintf(a_p, sizeof a_p, "%d", n_prompt);
    snprintf(a_n, sizeof a_n, "%d", n_gen);
    snprintf(a_t, sizeof a_t, "%d", n_threads);
    snprintf(a_r, sizeof a_r, "%d", reps);
    char *argv[] = {(char *)llama_bench_path, "-m", (char *)gguf, "-p", a_p, "-n", a_n, "-t", a_t,
                    "-r", a_r, "-o", "json", NULL};

    int pipefd[2];
    if (pipe(pipefd) != 0) return msa_fail(MSA_ERR_IO, "llama-bench: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, llama_bench_path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return msa_fail(MSA_ERR_IO, "%s: cannot start: %s", llama_bench_path, strerror(rc));
    }

    char *text = NULL;
    size_t len = 0;
    msa_status st = read_all(pipefd[0], &text, &len);
    close(pipefd[0]);
    int wstatus;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            free(text);
            return msa_fail(MSA_ERR_IO, "llama-bench: waitpid: %s", strerror(errno));
        }
    }
    if (st != MSA_OK) return st;
    if (WIFSIGNALED(wstatus)) {
        free(text);
        return msa_fail(MSA_ERR_IO, "%s: killed by signal %d", llama_bench_path, WTERMSIG(wstatus));
    }
    if (WEXITSTATUS(wstatus) != 0) {
        free(text);
        return msa_fail(MSA_ERR_IO, "%s: exited with status %d on %s", llama_bench_path, WEXITSTATUS(wstatus),
                        gguf);
    }
    st = bench_peer_parse_json(text, len, out);
    free(text);
    if (st != MSA_OK) return msa_fail_prefix(st, "%s", llama_bench_path);
    if ((n_prompt > 0 && !out->has_pp) || (n_gen > 0 && !out->has_tg))
        return msa_fail(MSA_ERR_BAD_DATA, "%s: output lacks the %s test", llama_bench_path,
                        n_prompt > 0 && !out->has_pp ? "pp" : "tg");
    return MSA_OK;
}
