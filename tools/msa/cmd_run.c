/* cmd_run.c — `msa run`: load a model, run a prompt (as is, or rendered with the chat template under
 * --chat), optionally dump the prompt's logits, and stream generated text to stdout; timing on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"

#define PREFILL_CHUNK 512 /* prompt tokens per forward call: bounds the all-logits buffer of --dump-logits */

static const char run_usage[] =
    "usage: msa run -m MODEL [-p TEXT | -f FILE] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
    "               [--chat] [-t N] [-c N] [--dump-logits FILE]\n"
    "  -m MODEL            a GGUF file or a Hugging Face model directory\n"
    "  -p TEXT | -f FILE   the prompt, tokenized as is (special-token text stays text) unless --chat\n"
    "  -n N                tokens to generate (default 128; 0 = none)\n"
    "  --temp T            sampling temperature (default 0 = greedy)\n"
    "  --top-k K, --top-p P, --seed S   sampling filters and seed\n"
    "  --chat              render the prompt as one user message with the model's chat template\n"
    "  -t N                compute threads (default: all CPUs)\n"
    "  -c N                context capacity (default: prompt + N, at most the model's training context)\n"
    "  --dump-logits FILE  write the float32 little-endian logits of every prompt position, [n_prompt x vocab]\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_text_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "msa: %s: %s\n", path, strerror(errno));
        return errno == ENOENT ? 66 : 74;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            fprintf(stderr, "msa: %s: out of memory\n", path);
            return 71;
        }
        n += fread(b + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        cap *= 2;
        char *p = realloc(b, cap);
        if (!p) free(b);
        b = p;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b);
        fprintf(stderr, "msa: %s: read error\n", path);
        return 74;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

static bool parse_int(const char *s, long lo, long hi, long *v) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) return false;
    *v = x;
    return true;
}

static bool parse_float(const char *s, float *v) {
    char *end;
    errno = 0;
    float x = strtof(s, &end);
    if (errno || end == s || *end || x != x) return false;
    *v = x;
    return true;
}

static bool is_eos(const msa_model_info *info, int32_t id) {
    for (int i = 0; i < info->n_eos; i++)
        if (info->eos_ids[i] == id) return true;
    return false;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *dump_path = NULL;
    long n_gen = 128, n_threads = 0, n_ctx = 0;
    bool chat = false;
    msa_sampler_params sp = msa_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
#define NEED_VALUE() \
    do { \
        if (!v) return cli_usage_error("run", "%s needs a value", a); \
        i++; \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE();
            model_path = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VALUE();
            prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VALUE();
            prompt_file = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_VALUE();
            if (!parse_int(v, 0, 1 << 24, &n_gen)) return cli_usage_error("run", "-n: bad count '%s'", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE();
            if (!parse_int(v, 1, 1024, &n_threads)) return cli_usage_error("run", "-t: bad thread count '%s'", v);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NEED_VALUE();
            if (!parse_int(v, 1, 1 << 24, &n_ctx)) return cli_usage_error("run", "-c: bad context size '%s'", v);
        } else if (!strcmp(a, "--temp")) {
            NEED_VALUE();
            if (!parse_float(v, &sp.temperature) || sp.temperature < 0)
                return cli_usage_error("run", "--temp: bad temperature '%s'", v);
        } else if (!strcmp(a, "--top-k")) {
            NEED_VALUE();
            if (!parse_int(v, 0, 1 << 24, &x)) return cli_usage_error("run", "--top-k: bad value '%s'", v);
            sp.top_k = (int)x;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE();
            if (!parse_float(v, &sp.top_p) || sp.top_p <= 0 || sp.top_p > 1)
                return cli_usage_error("run", "--top-p: bad value '%s' (0 < P <= 1)", v);
        } else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            NEED_VALUE();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end) return cli_usage_error("run", "--seed: bad value '%s'", v);
            sp.seed = s;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--dump-logits")) {
            NEED_VALUE();
            dump_path = v;
        } else {
            return cli_usage_error("run", "unknown option '%s' (see msa run --help)", a);
        }
#undef NEED_VALUE
    }
    if (!model_path) return cli_usage_error("run", "-m MODEL is required");
    if (!!prompt + !!prompt_file != 1) return cli_usage_error("run", "give exactly one of -p TEXT or -f FILE");

    char *text = NULL;
    size_t text_len = 0;
    if (prompt_file) {
        int rc = read_text_file(prompt_file, &text, &text_len);
        if (rc) return rc;
    } else {
        text = strdup(prompt);
        if (!text) return cli_fail(MSA_ERR_NOMEM);
        text_len = strlen(text);
    }

    msa_model_params mp = msa_model_default_params();
    mp.n_threads = (int)n_threads;
    msa_model *model = NULL;
    double t0 = now_s();
    msa_status st = msa_model_load(model_path, &mp, &model);
    if (st != MSA_OK) {
        free(text);
        return cli_fail(st);
    }
    double t_load = now_s() - t0;
    msa_model_info info;
    msa_model_get_info(model, &info);
    const msa_tokenizer *tok = msa_model_tokenizer(model);

    int rc = 0;
    int32_t *ids = NULL, *prompt_ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    FILE *dump = NULL;
    msa_session *sess = NULL;
    if (chat) {
        const char *roles[1] = {"user"}, *contents[1] = {text};
        char *rendered = NULL;
        st = msa_chat_render(model, roles, contents, 1, true, &rendered);
        if (st == MSA_OK) st = msa_tokenize(tok, rendered, strlen(rendered), true, &ids, &n_ids);
        free(rendered);
    } else {
        st = msa_tokenize(tok, text, text_len, false, &ids, &n_ids);
    }
    if (st != MSA_OK) goto fail;
    bool bos = msa_model_add_bos(model) && info.bos_id >= 0;
    size_t n_prompt = n_ids + (bos ? 1 : 0);
    prompt_ids = malloc((n_prompt ? n_prompt : 1) * sizeof *prompt_ids);
    if (!prompt_ids) {
        st = MSA_ERR_NOMEM;
        goto fail;
    }
    if (bos) prompt_ids[0] = info.bos_id;
    if (n_ids) memcpy(prompt_ids + (bos ? 1 : 0), ids, n_ids * sizeof *ids);
    if (n_prompt == 0) {
        rc = cli_usage_error("run", "the prompt is empty");
        goto done;
    }

    msa_session_params spar = msa_session_default_params();
    long want = n_ctx ? n_ctx : (long)n_prompt + n_gen;
    if (!n_ctx && want > info.n_ctx_train) want = info.n_ctx_train > (long)n_prompt ? info.n_ctx_train : (long)n_prompt;
    spar.n_ctx = (int)(want > (1 << 24) ? (1 << 24) : want);
    st = msa_session_new(model, &spar, &sess);
    if (st != MSA_OK) goto fail;

    size_t V = (size_t)info.n_vocab;
    size_t chunk = dump_path ? PREFILL_CHUNK : n_prompt;
    logits = malloc((dump_path ? chunk : 1) * V * sizeof(float));
    if (!logits) {
        st = MSA_ERR_NOMEM;
        goto fail;
    }
    if (dump_path) {
        dump = fopen(dump_path, "wb");
        if (!dump) {
            fprintf(stderr, "msa: %s: %s\n", dump_path, strerror(errno));
            rc = 74;
            goto done;
        }
    }
    double t1 = now_s();
    for (size_t off = 0; off < n_prompt; off += chunk) {
        size_t n = n_prompt - off < chunk ? n_prompt - off : chunk;
        st = msa_session_eval(sess, prompt_ids + off, n, dump != NULL, logits);
        if (st != MSA_OK) goto fail;
        if (dump && fwrite(logits, sizeof(float), n * V, dump) != n * V) {
            fprintf(stderr, "msa: %s: write failed\n", dump_path);
            rc = 74;
            goto done;
        }
    }
    if (dump) {
        /* the next token comes from the last prompt row */
        size_t last = (n_prompt - 1) % chunk;
        memmove(logits, logits + last * V, V * sizeof(float));
        int e = fclose(dump);
        dump = NULL;
        if (e) {
            fprintf(stderr, "msa: %s: write failed\n", dump_path);
            rc = 74;
            goto done;
        }
    }
    double t_prompt = now_s() - t1;

    uint64_t rng = msa_sampler_seed(sp.seed);
    double t2 = now_s();
    long n_done = 0, n_decode = 0;
    char piece[256];
    for (; n_done < n_gen; n_done++) {
        int32_t next = msa_sample(logits, info.n_vocab, &sp, &rng);
        if (is_eos(&info, next)) break;
        int pl = msa_token_to_piece(tok, next, piece, sizeof piece);
        if (pl > (int)sizeof piece) {
            char *big = malloc((size_t)pl);
            if (big && msa_token_to_piece(tok, next, big, (size_t)pl) == pl) fwrite(big, 1, (size_t)pl, stdout);
            free(big);
        } else if (pl > 0) {
            fwrite(piece, 1, (size_t)pl, stdout);
        }
        fflush(stdout);
        if (n_done + 1 == n_gen) {
            n_done++;
            break;
        }
        st = msa_session_eval(sess, &next, 1, false, logits);
        n_decode++;
        if (st != MSA_OK) {
            fputc('\n', stdout);
            goto fail;
        }
    }
    if (n_done > 0) fputc('\n', stdout);
    double t_gen = now_s() - t2;
    fprintf(stderr, "msa run: load %.2f s | prompt %zu tokens %.1f ms (%.1f tok/s) | generated %ld tokens %.1f ms (%.1f decode tok/s)\n",
            t_load, n_prompt, 1e3 * t_prompt, t_prompt > 0 ? (double)n_prompt / t_prompt : 0.0, n_done, 1e3 * t_gen,
            t_gen > 0 ? (double)n_decode / t_gen : 0.0);
    goto done;
fail:
    rc = cli_fail(st);
done:
    if (dump) fclose(dump);
    free(logits);
    msa_session_free(sess);
    free(prompt_ids);
    free(ids);
    free(text);
    msa_model_free(model);
    return rc;
}
