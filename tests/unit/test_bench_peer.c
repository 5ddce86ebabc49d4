/* test_bench_peer.c — tools/msa/bench_peer.c: parsing llama-bench's JSON and running it as a subprocess.
 * bench_peer.c belongs to the CLI, not to libmsa, so it is compiled into this test directly. The
 * subprocess path runs against small shell-script stand-ins for llama-bench (always), and against the real
 * llama-bench on the default model when one is installed (docs/perf.md; SKIP otherwise). */
#include "../../tools/msa/bench_peer.c"

#include "test.h"

#define SAMPLE "tests/fixtures/llamacpp/llama-bench-sample.json"
/* Read off SAMPLE by hand (its samples_ts arrays and avg_ts). */
#define SAMPLE_PP_MEDIAN 8.7171  /* samples_ts [8.7171, 7.95353, 17.1687] */
#define SAMPLE_PP_MIN    7.95353
#define SAMPLE_PP_MAX    17.1687
#define SAMPLE_TG_MEDIAN 1.57116 /* samples_ts [1.92803, 1.57116, 1.42346] */
#define SAMPLE_TG_AVG    1.640885
#define SAMPLE_COMMIT    "0c1e57098"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static msa_status parse_str(const char *s, bench_peer_result *r) { return bench_peer_parse_json(s, strlen(s), r); }

/* The committed real output of `llama-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -p 64 -n 16 -t 2 -r 3 -o json`
 * (tests/fixtures/llamacpp/README.md): the numbers below are read off that file by hand. */
TEST(parse_real_sample) {
    size_t len;
    char *json = read_file(SAMPLE, &len);
    CHECK(json != NULL);
    if (!json) return;
    bench_peer_result r;
    CHECK_EQ_INT(bench_peer_parse_json(json, len, &r), MSA_OK);
    free(json);
    CHECK(r.has_pp);
    CHECK(r.has_tg);
    CHECK_EQ_INT(r.n_threads, 2);
    CHECK_EQ_INT(r.pp.n_tokens, 64);
    CHECK_EQ_INT(r.tg.n_tokens, 16);
    CHECK_EQ_INT(r.pp.n_samples, 3);
    CHECK_EQ_INT(r.tg.n_samples, 3);
    CHECK_NEAR(r.pp.median_ts, SAMPLE_PP_MEDIAN, 1e-3);
    CHECK_NEAR(r.pp.min_ts, SAMPLE_PP_MIN, 1e-3);
    CHECK_NEAR(r.pp.max_ts, SAMPLE_PP_MAX, 1e-3);
    CHECK_NEAR(r.tg.median_ts, SAMPLE_TG_MEDIAN, 1e-3);
    CHECK_NEAR(r.tg.mean_ts, SAMPLE_TG_AVG, 1e-3);
    CHECK(r.model_size > 50000000 && r.model_size < 120000000);
    CHECK(r.model_n_params > 130000000 && r.model_n_params < 140000000);
    CHECK(strcmp(r.build_commit, SAMPLE_COMMIT) == 0);
    CHECK(strstr(r.model_type, "Q4_1") != NULL);
}

TEST(median_odd_and_even) {
    bench_peer_result r;
    CHECK_EQ_INT(parse_str("[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5,1,3]}]", &r), MSA_OK);
    CHECK(!r.has_pp && r.has_tg);
    CHECK_NEAR(r.tg.median_ts, 3.0, 0);
    CHECK_NEAR(r.tg.min_ts, 1.0, 0);
    CHECK_NEAR(r.tg.max_ts, 5.0, 0);
    CHECK(isnan(r.tg.mean_ts)); /* avg_ts absent */
    CHECK_EQ_INT(parse_str("[{\"n_prompt\":16,\"n_gen\":0,\"n_threads\":1,\"samples_ts\":[4,1,2,10.5]}]", &r), MSA_OK);
    CHECK(r.has_pp && !r.has_tg);
    CHECK_NEAR(r.pp.median_ts, 3.0, 0);
    CHECK_NEAR(r.pp.max_ts, 10.5, 0);
}

TEST(first_of_each_test_wins_and_combined_is_ignored) {
    bench_peer_result r;
    const char *s = "[{\"n_prompt\":16,\"n_gen\":16,\"n_threads\":1,\"samples_ts\":[99]},"
                    " {\"n_prompt\":16,\"n_gen\":0,\"n_threads\":2,\"samples_ts\":[7]},"
                    " {\"n_prompt\":32,\"n_gen\":0,\"n_threads\":1,\"samples_ts\":[8]},"
                    " {\"n_prompt\":0,\"n_gen\":4,\"n_threads\":1,\"samples_ts\":[2]}]";
    CHECK_EQ_INT(parse_str(s, &r), MSA_OK);
    CHECK_NEAR(r.pp.median_ts, 7.0, 0);
    CHECK_EQ_INT(r.pp.n_tokens, 16);
    CHECK_EQ_INT(r.n_threads, 2);
    CHECK_NEAR(r.tg.median_ts, 2.0, 0);
}

TEST(rejects_malformed_output) {
    static const char *bad[] = {
        "",
        "not json",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5,1,3]}", /* truncated */
        "{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5]}",      /* not an array */
        "[]",                                                                     /* no test */
        "[1]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[]}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[-1]}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[0]}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[\"5\"]}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":5}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1}]",
        "[{\"n_prompt\":0,\"n_threads\":1,\"samples_ts\":[5]}]",
        "[{\"n_prompt\":-4,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5]}]",
        "[{\"n_prompt\":0,\"n_gen\":1e3,\"n_threads\":1,\"samples_ts\":[5]}]",
        "[{\"n_prompt\":0,\"n_gen\":99999999999,\"n_threads\":1,\"samples_ts\":[5]}]",
        "[{\"n_prompt\":0,\"n_gen\":8,\"samples_ts\":[5]}]",
        "[{\"n_prompt\":4,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5]}]", /* only a combined test */
        "[{\"n_prompt\":0,\"n_gen\":8,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[5]}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bench_peer_result r;
        msa_status st = parse_str(bad[i], &r);
        if (st != MSA_ERR_BAD_DATA) fprintf(stderr, "  case %zu: status %d for %s\n", i, (int)st, bad[i]);
        CHECK_EQ_INT(st, MSA_ERR_BAD_DATA);
        CHECK(strncmp(msa_last_error(), "llama-bench JSON: ", 18) == 0);
    }
}

TEST(rejects_too_many_samples) {
    size_t n = BENCH_PEER_MAX_SAMPLES + 1, cap = 64 + 2 * n;
    char *s = malloc(cap);
    CHECK(s != NULL);
    if (!s) return;
    size_t k = (size_t)snprintf(s, cap, "[{\"n_prompt\":0,\"n_gen\":8,\"n_threads\":1,\"samples_ts\":[");
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(s + k, cap - k, i ? ",1" : "1");
    snprintf(s + k, cap - k, "]}]");
    bench_peer_result r;
    CHECK_EQ_INT(parse_str(s, &r), MSA_ERR_BAD_DATA);
    free(s);
}

/* A stand-in llama-bench: a shell script in a fresh temp dir. */
static char tmpdir[64];

static const char *make_stub(const char *name, const char *body) {
    static char path[128];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/msa-test-bench-peer-XXXXXX");
        if (!mkdtemp(tmpdir)) return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    chmod(path, 0755);
    return path;
}

TEST(run_stub_passes_arguments_and_parses) {
    char cwd[512], body[1024];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    /* The stub records its arguments and prints the committed sample, as llama-bench would. */
    snprintf(body, sizeof body, "echo \"$@\" > \"$(dirname \"$0\")/args\"\ncat '%s/%s'", cwd, SAMPLE);
    const char *stub = make_stub("llama-bench-ok", body);
    CHECK(stub != NULL);
    if (!stub) return;
    bench_peer_result r;
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 2, 3, &r), MSA_OK);
    CHECK(r.has_pp && r.has_tg);
    CHECK_NEAR(r.pp.median_ts, SAMPLE_PP_MEDIAN, 1e-3);

    char args_path[160];
    snprintf(args_path, sizeof args_path, "%s/args", tmpdir);
    size_t len;
    char *args = read_file(args_path, &len);
    CHECK(args != NULL);
    if (args) {
        char cmd[512];
        bench_peer_command(cmd, sizeof cmd, stub, SAMPLE, 64, 16, 2, 3);
        /* bench_peer_command prints "STUB ARGS..."; the stub saw ARGS followed by a newline */
        const char *want = cmd + strlen(stub) + 1;
        CHECK(len == strlen(want) + 1 && strncmp(args, want, strlen(want)) == 0);
        if (strncmp(args, want, strlen(want)) != 0) fprintf(stderr, "  stub saw: %s  want: %s\n", args, want);
        free(args);
    }
}

TEST(run_reports_failures) {
    bench_peer_result r;
    const char *stub = make_stub("llama-bench-fails", "echo 'error: bad model' >&2\nexit 3");
    CHECK(stub != NULL);
    if (!stub) return;
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 2, 3, &r), MSA_ERR_IO);
    CHECK(strstr(msa_last_error(), "exited with status 3") != NULL);

    stub = make_stub("llama-bench-garbage", "echo 'this is not JSON'");
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 2, 3, &r), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "llama-bench-garbage: llama-bench JSON:") != NULL);

    /* a pp-only output when tg was asked for */
    stub = make_stub("llama-bench-pp-only",
                     "echo '[{\"n_prompt\":64,\"n_gen\":0,\"n_threads\":2,\"samples_ts\":[100]}]'");
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 2, 3, &r), MSA_ERR_BAD_DATA);
    CHECK(strstr(msa_last_error(), "lacks the tg test") != NULL);

    CHECK_EQ_INT(bench_peer_run("/nonexistent/llama-bench", SAMPLE, 64, 16, 2, 3, &r), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(bench_peer_run(stub, "/nonexistent/model.gguf", 64, 16, 2, 3, &r), MSA_ERR_NOT_FOUND);
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 0, 0, 2, 3, &r), MSA_ERR_INVALID_ARG);
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 0, 3, &r), MSA_ERR_INVALID_ARG);
    CHECK_EQ_INT(bench_peer_run(stub, SAMPLE, 64, 16, 2, 0, &r), MSA_ERR_INVALID_ARG);
}

TEST(find_prefers_environment) {
    setenv("MSA_LLAMA_BENCH", "/some/where/llama-bench", 1);
    CHECK(strcmp(bench_peer_find(), "/some/where/llama-bench") == 0);
    unsetenv("MSA_LLAMA_BENCH");
    const char *p = bench_peer_find();
    CHECK(p == NULL || strstr(p, "/llama-bench") != NULL); /* $LLAMA_CPP_DIR's build or $PATH's */
    /* $LLAMA_CPP_DIR names the build tree; a missing one (and nothing on $PATH) finds nothing */
    const char *old = getenv("LLAMA_CPP_DIR"), *old_path = getenv("PATH");
    char *saved = old ? strdup(old) : NULL, *saved_path = old_path ? strdup(old_path) : NULL;
    setenv("LLAMA_CPP_DIR", "/nonexistent/llama.cpp", 1);
    setenv("PATH", "/nonexistent/bin", 1);
    CHECK(bench_peer_find() == NULL);
    if (saved) setenv("LLAMA_CPP_DIR", saved, 1);
    else unsetenv("LLAMA_CPP_DIR");
    if (saved_path) setenv("PATH", saved_path, 1);
    free(saved);
    free(saved_path);
}

/* The real peer, when it is installed on this machine: a tiny run on the default model. */
TEST(run_real_llama_bench) {
    const char *lb = bench_peer_find();
    const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!lb) SKIP("no llama-bench (set MSA_LLAMA_BENCH or build it as docs/perf.md says)");
    if (access(model, R_OK) != 0) SKIP("default model not installed (make model)");
    bench_peer_result r;
    msa_status st = bench_peer_run(lb, model, 8, 4, 1, 1, &r);
    if (st != MSA_OK) fprintf(stderr, "  %s\n", msa_last_error());
    CHECK_EQ_INT(st, MSA_OK);
    CHECK(r.has_pp && r.has_tg);
    CHECK_EQ_INT(r.n_threads, 1);
    CHECK_EQ_INT(r.pp.n_samples, 1);
    CHECK(r.pp.median_ts > 1 && r.tg.median_ts > 1);
}

static void cleanup(void) {
    if (!tmpdir[0]) return;
    static const char *names[] = {"args", "llama-bench-ok", "llama-bench-fails", "llama-bench-garbage",
                                  "llama-bench-pp-only"};
    char p[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

int main(void) {
    RUN(parse_real_sample);
    RUN(median_odd_and_even);
    RUN(first_of_each_test_wins_and_combined_is_ignored);
    RUN(rejects_malformed_output);
    RUN(rejects_too_many_samples);
    RUN(run_stub_passes_arguments_and_parses);
    RUN(run_reports_failures);
    RUN(find_prefers_environment);
    RUN(run_real_llama_bench);
    cleanup();
    return test_summary();
}
