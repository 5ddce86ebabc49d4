/* commands.h — the subcommands of the msa CLI; one file each under tools/msa/.
 * Each takes argc/argv after the subcommand name and returns a process exit code (sysexits style,
 * see msa_status_exit_code in msa.h). */
#ifndef MSA_TOOLS_COMMANDS_H
#define MSA_TOOLS_COMMANDS_H

#include "msa.h"

int cmd_run(int argc, char **argv);       /* cmd_run.c: generate text from a prompt */
int cmd_tokenize(int argc, char **argv);  /* cmd_tokenize.c: text <-> ids */
int cmd_bench(int argc, char **argv);     /* cmd_bench.c: benchmarks */
int cmd_bank(int argc, char **argv);      /* cmd_bank.c: memory bank management */
int cmd_ask(int argc, char **argv);       /* cmd_ask.c: answer a question from a bank */
int cmd_chat(int argc, char **argv);      /* cmd_ask.c: interactive questions over a bank */
int cmd_demo(int argc, char **argv);      /* cmd_demo.c: the end-to-end demo on the default model */
int cmd_eval(int argc, char **argv);      /* cmd_eval.c: retrieval/answer quality (qa, niah) */
int cmd_train_router(int argc, char **argv); /* cmd_train_router.c: InfoNCE router training */
int bench_bank(int argc, char **argv);     /* bench_bank.c: `msa bench bank ...` (argv[0] = "bank") */

/* bench_model.c: `msa bench prefill|decode`; what is "prefill" or "decode", argv[0] is what, options follow. */
int bench_model(const char *what, int argc, char **argv);

/* Print "msa: <message>" for a failed status (msa_last_error, else msa_strerror) to stderr and return
 * the exit code for it. */
int cli_fail(msa_status st);
/* Print "msa <cmd>: <message>" to stderr and return 64 (usage). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
