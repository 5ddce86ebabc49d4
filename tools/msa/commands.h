/* commands.h — the subcommands of the msa CLI; one file each under tools/msa/, one row each in the command
 * table (cli_table.c), which parses and validates their flags (cli.h) before they run.
 * Each returns a process exit code (sysexits style, see msa_status_exit_code in msa.h). */
#ifndef MSA_TOOLS_COMMANDS_H
#define MSA_TOOLS_COMMANDS_H

#include <jansson.h>
#include <stdio.h>

#include "cli.h"
#include "msa.h"

int cmd_run(const cli_args *a);       /* cmd_run.c: generate text from a prompt */
int cmd_tokenize(const cli_args *a);  /* cmd_tokenize.c: text <-> ids */
int cmd_ask(const cli_args *a);       /* cmd_ask.c: answer a question from a bank */
int cmd_chat(const cli_args *a);      /* cmd_ask.c: interactive questions over a bank */
int cmd_demo(const cli_args *a);      /* cmd_demo.c: the end-to-end demo on the default model */
int cmd_make_questions(const cli_args *a); /* cmd_make_questions.c: model-written training questions */
int bank_create(const cli_args *a);   /* cmd_bank.c: `msa bank ...` */
int bank_add(const cli_args *a);
int bank_rm(const cli_args *a);
int bank_ls(const cli_args *a);
int bank_info(const cli_args *a);
int bank_verify(const cli_args *a);
int bank_compact(const cli_args *a);
int bank_export(const cli_args *a);
int bank_import(const cli_args *a);
/* cmd_bench.c: `msa bench WHAT ...` (argv[0] = "bench"); the benchmarks parse their own options */
int cmd_bench(int argc, char **argv);
/* raw commands of the retrieval harness (they parse their own options; the table gives their help) */
int cmd_eval(int argc, char **argv);         /* cmd_eval.c: retrieval/answer quality (argv[0] = "eval") */
int cmd_train_router(int argc, char **argv); /* cmd_train_router.c: InfoNCE router training */
int bench_bank(int argc, char **argv);     /* bench_bank.c: `msa bench bank ...` (argv[0] = "bank") */

/* bench_model.c: `msa bench prefill|decode`; what is "prefill" or "decode", argv[0] is what, options follow. */
int bench_model(const char *what, int argc, char **argv);
/* bench_gpu.c: `msa bench gpu` (argv[0] = "gpu"): the model on a device beside its measured ceilings. */
int bench_gpu(int argc, char **argv);

/* Print "msa <command>: <message>" for a failed status (msa_last_error, else msa_strerror) to stderr and
 * return the exit code for it. */
int cli_fail(msa_status st);
/* Set when the command line has --json: cli_fail and cli_usage_error then also print the error as one JSON
 * object on stdout ({"schema": "msa.error/1", "error": {"status", "exit_code", "message"}}, docs/cli.md). */
extern bool cli_json_errors;
void cli_json_error(const char *status, int code, const char *msg);
/* Write o as one compact, ASCII-only JSON line to f and release o (NULL is taken: a failed json_pack). Returns 0,
 * 70 when o is NULL or cannot be serialised, 74 when the write fails. */
int cli_put_json_line(FILE *f, json_t *o);
/* Print "msa <cmd>: <message>" to stderr and return 64 (usage). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether id is one of the model's end-of-generation tokens (run and make-questions stop on it). */
static inline bool cli_is_eos(const msa_model_info *info, int32_t id) {
    for (int i = 0; i < info->n_eos; i++)
        if (info->eos_ids[i] == id) return true;
    return false;
}

/* The model parameters every model-running command shares: threads (-t, 0 = all CPUs) and --device. */
msa_model_params cli_model_params(const cli_args *a);

#endif
