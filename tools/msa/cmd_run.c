/* cmd_run.c — `msa run`: load a model, run a prompt (as is, or rendered with the chat template under
 * --chat), optionally dump the prompt's logits, and stream generated text to stdout; timing on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

#define PREFILL_CHUNK 512 /* prompt tokens per forward call: bounds the all-logits buffer of --dump-logits */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_text_file(const char *path, char **out, size_t *len) {
    FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "msa run: %s: %s\n", path, strerror(errno));
        return errno == ENOENT ? 66 : 74;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            if (f != stdin) fclose(f);
            fprintf(stderr, "msa run: %s: out of memory\n", path);
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
    if (f != stdin) fclose(f);
    if (err) {
        free(b);
        fprintf(stderr, "msa run: %s: read error\n", path);
        return 74;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

/* Ctrl-C: the first one stops generation (the timing line is still printed, exit 130); a second one, or
 * one while nothing can be stopped, ends the process at once. */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    if (interrupted) _exit(130);
    interrupted = 1;
}

int cmd_run(const cli_args *a) {
    const char *model_path = cli_get(a, "--model"), *prompt = cli_get(a, "--prompt"),
               *prompt_file = cli_get(a, "--file"), *dump_path = cli_get(a, "--dump-logits");
    long n_gen = cli_int(a, "--n-predict", 128), n_ctx = cli_int(a, "--ctx-size", 0);
    bool chat = cli_has(a, "--chat");
    msa_sampler_params sp = msa_sampler_default_params();
    sp.temperature = (float)cli_float(a, "--temp", 0);
    sp.top_k = (int)cli_int(a, "--top-k", 0);
    sp.top_p = (float)cli_float(a, "--top-p", 1);
    sp.min_p = (float)cli_float(a, "--min-p", 0);
    sp.repeat_penalty = (float)cli_float(a, "--repeat-penalty", 1);
    const long last_n = cli_int(a, "--repeat-last-n", 64);
    const char *seed_arg = cli_get(a, "--seed");
    /* random unless given: the same --temp run twice should not give the same text (llama.cpp's -1) */
    bool random_seed = !seed_arg || !strcmp(seed_arg, "-1");
    sp.seed = random_seed ? cli_random_seed() : strtoull(seed_arg, NULL, 10);
    if (sp.top_p <= 0) return cli_usage_error("run", "--top-p: must be > 0");
    if (!model_path) return cli_usage_error("run", "-m MODEL is required (msa run --help)");
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

    msa_model_params mp = cli_model_params(a);
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

    /* A prompt that cannot fit is refused now, with the numbers, not after minutes of prefill. */
    long limit = n_ctx ? n_ctx : info.n_ctx_train;
    if ((long)n_prompt > limit) {
        fprintf(stderr, "msa run: the prompt is %zu tokens, over the %s of %ld tokens; nothing was run\n", n_prompt,
                n_ctx ? "context given with -c" : "model's context", limit);
        rc = 65;
        goto done;
    }
    msa_session_params spar = msa_session_default_params();
    long want = n_ctx ? n_ctx : (long)n_prompt + n_gen;
    if (!n_ctx && want > info.n_ctx_train) want = info.n_ctx_train;
    spar.n_ctx = (int)(want > (1 << 24) ? (1 << 24) : want);
    st = msa_session_new(model, &spar, &sess);
    if (st != MSA_OK) goto fail;

    size_t V = (size_t)info.n_vocab;
    /* chunks: a Ctrl-C is seen between them; --dump-logits bounds its all-logits buffer with them */
    size_t chunk = PREFILL_CHUNK;
    logits = malloc((dump_path ? chunk : 1) * V * sizeof(float));
    if (!logits) {
        st = MSA_ERR_NOMEM;
        goto fail;
    }
    if (dump_path) {
        dump = fopen(dump_path, "wb");
        if (!dump) {
            fprintf(stderr, "msa run: %s: %s\n", dump_path, strerror(errno));
            rc = 74;
            goto done;
        }
    }
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    double t1 = now_s();
    size_t n_prefilled = 0;
    for (size_t off = 0; off < n_prompt && !interrupted; off += chunk, n_prefilled = off) {
        size_t n = n_prompt - off < chunk ? n_prompt - off : chunk;
        st = msa_session_eval(sess, prompt_ids + off, n, dump != NULL, logits);
        if (st != MSA_OK) goto fail;
        if (dump && fwrite(logits, sizeof(float), n * V, dump) != n * V) {
            fprintf(stderr, "msa run: %s: write failed\n", dump_path);
            rc = 74;
            goto done;
        }
    }
    if (n_prefilled > n_prompt) n_prefilled = n_prompt;
    if (interrupted) n_gen = 0;
    if (dump && !interrupted) {
        /* the next token comes from the last prompt row */
        size_t last = (n_prompt - 1) % chunk;
        memmove(logits, logits + last * V, V * sizeof(float));
        int e = fclose(dump);
        dump = NULL;
        if (e) {
            fprintf(stderr, "msa run: %s: write failed\n", dump_path);
            rc = 74;
            goto done;
        }
    }
    double t_prompt = now_s() - t1;

    uint64_t rng = msa_sampler_seed(sp.seed);
    double t2 = now_s();
    long n_done = 0, n_decode = 0;
    char piece[256];
    const char *stop = NULL;
    /* recent tokens for --repeat-penalty: the prompt's tail, then what is generated */
    size_t win = last_n > 0 ? (size_t)last_n : 0, n_recent = 0;
    int32_t *recent = win ? malloc(win * sizeof *recent) : NULL;
    for (size_t i = n_prompt > win ? n_prompt - win : 0; recent && i < n_prompt; i++) recent[n_recent++] = prompt_ids[i];
    for (; n_done < n_gen; n_done++) {
        if (interrupted) {
            stop = "interrupted";
            break;
        }
        int32_t next = msa_sample_recent(logits, info.n_vocab, &sp, &rng, recent, n_recent);
        if (recent) {
            if (n_recent == win) memmove(recent, recent + 1, (win - 1) * sizeof *recent), n_recent--;
            recent[n_recent++] = next;
        }
        if (cli_is_eos(&info, next)) break;
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
        if (msa_session_n_past(sess) >= spar.n_ctx) { /* full: stop like llama.cpp, keep what was generated */
            n_done++;
            stop = "context full";
            break;
        }
        st = msa_session_eval(sess, &next, 1, false, logits);
        n_decode++;
        if (st != MSA_OK) {
            fputc('\n', stdout);
            free(recent);
            goto fail;
        }
    }
    free(recent);
    if (interrupted && !stop) stop = "interrupted";
    if (n_done > 0) fputc('\n', stdout);
    fflush(stdout);
    double t_gen = now_s() - t2;
    char seed_txt[48] = "";
    if (sp.temperature > 0) snprintf(seed_txt, sizeof seed_txt, " | seed %llu", (unsigned long long)sp.seed);
    if (stop && !strcmp(stop, "context full"))
        fprintf(stderr, "msa run: stopped: the context of %d tokens is full (-c)\n", spar.n_ctx);
    else if (stop)
        fprintf(stderr, "msa run: interrupted\n");
    fprintf(stderr, "msa run: load %.2f s | prompt %zu tokens %.1f ms (%.1f tok/s) | generated %ld tokens %.1f ms (%.1f decode tok/s)%s\n",
            t_load, n_prefilled, 1e3 * t_prompt, t_prompt > 0 ? (double)n_prefilled / t_prompt : 0.0, n_done, 1e3 * t_gen,
            t_gen > 0 ? (double)n_decode / t_gen : 0.0, seed_txt);
    sigaction(SIGINT, &old_sa, NULL);
    if (stop && !strcmp(stop, "interrupted")) rc = 130;
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
