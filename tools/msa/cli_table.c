/* cli_table.c — the tables of the msa CLI: the shared flags (one meaning each, llama.cpp's where it has one),
 * every command with the flags it takes, and the prose of docs/cli.md around them. `msa help --markdown`
 * prints docs/cli.md from these tables; tests/cli/help.sh checks the checked-in file is current. */
#include "cli.h"
#include "commands.h"

#define BIG 16777216.0

const cli_opt cli_shared[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--device", NULL, "DEV", CLI_DEVICE, 0, 0, "auto",
     "where the model runs: cpu, cuda (GPU 0), cuda:N or auto (a GPU when this build has CUDA and one is present); "
     "a build without CUDA refuses cuda with exit 69", NULL, false, NULL},
    {"--threads", "-t", "N", CLI_INT, 0, 4096, "0", "compute threads; 0 = the CPUs this process may use (affinity, cgroup quota)", NULL, false, NULL},
    {"--prompt", "-p", "TEXT", CLI_STR, 0, 0, NULL, "the prompt text", NULL, false, NULL},
    {"--file", "-f", "FILE", CLI_STR, 0, 0, NULL, "read the prompt from FILE ('-' = stdin)", NULL, false, NULL},
    {"--n-predict", "-n", "N", CLI_INT, 0, BIG, "128 in run, 512 per round in ask and chat, 48 in demo, 40 in make-questions",
     "tokens to generate at most", NULL, false, NULL},
    {"--ctx-size", "-c", "N", CLI_INT, 0, BIG, "0",
     "context size in tokens; 0 = prompt + N, at most the model's training context. Generation stops cleanly "
     "(with timings) when it is full; a prompt that does not fit is refused before any work (exit 65)", NULL, false, NULL},
    {"--temp", NULL, "T", CLI_FLOAT, 0, 100, "0", "sampling temperature; 0 = greedy", NULL, false, NULL},
    {"--top-k", NULL, "K", CLI_INT, 0, BIG, "0", "sampling: keep the K most likely tokens; 0 = off", NULL, false, NULL},
    {"--top-p", NULL, "P", CLI_FLOAT, 0, 1, "1", "sampling: keep the smallest set of tokens whose probability reaches P; 1 = off",
     NULL, false, NULL},
    {"--min-p", NULL, "P", CLI_FLOAT, 0, 1, "0", "sampling: drop tokens less likely than P times the most likely; 0 = off",
     NULL, false, NULL},
    {"--repeat-penalty", NULL, "X", CLI_FLOAT, 0.01, 10, "1", "penalise the last --repeat-last-n tokens: their positive "
     "logits divided by X, negative ones multiplied; 1 = off. Applies to greedy decoding too", NULL, false, NULL},
    {"--repeat-last-n", NULL, "N", CLI_INT, 0, 1 << 20, "64", "how many recent tokens --repeat-penalty looks at", NULL, false, NULL},
    {"--seed", "-s", "S", CLI_INT, -1, 9.2e18, "-1", "sampling seed; -1 = a random one, printed (run: the timing line; "
     "ask: --json) so the run can be repeated", NULL, false, NULL},
    {"--bank", "-b", "BANK", CLI_STR, 0, 0, NULL, "a memory bank directory (msa bank create)", NULL, false, NULL},
    {"--docs", NULL, "K", CLI_INT, 1, 1024, "msa_config's; 3 in read mode", "documents retrieved per router layer", NULL, false, NULL},
    {"--mode", NULL, "MODE", CLI_STR, 0, 0, NULL, "native (MSA sparse attention over memory; MSA checkpoints) or read "
     "(route, then put the best documents' text in the prompt; any model)", "native|read", false, NULL},
    {"--router", NULL, "FILE", CLI_STR, 0, 0, NULL, "read mode with router weights from a safetensors file: per layer "
     "self_attn.router_q_proj and router_k_proj (a bank built with it is used with the same FILE only), or router_q_proj "
     "alone (a query-side router: identity banks serve it); none: the identity router. Default for ask/chat/eval/demo: "
     "the shipped query-side router trained for this model (data/routers/), if any", NULL, false, NULL},
    {"--json", NULL, NULL, CLI_FLAG, 0, 0, NULL, "print one JSON object (schema in docs/cli.md); errors too", NULL, false, NULL},
    {"--verbose", "-v", NULL, CLI_FLAG, 0, 0, NULL, "also print the routed documents per layer", NULL, false, NULL},
    {"--question", "-q", "TEXT", CLI_STR, 0, 0, NULL, "the question", NULL, false, NULL},
    {"--rounds", NULL, "R", CLI_INT, 1, 1000, "8", "Memory Interleave rounds at most (native mode)", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

#define SAMPLING "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n", "--seed"

/* ---- run */
static const char *const run_shared[] = {"--model", "--prompt", "--file", "--n-predict", SAMPLING, "--threads",
                                         "--ctx-size", "--device", NULL};
static const cli_opt run_own[] = {
    {"--chat", NULL, NULL, CLI_FLAG, 0, 0, NULL, "render the prompt as one user message with the model's chat template",
     NULL, false, NULL},
    {"--dump-logits", NULL, "FILE", CLI_STR, 0, 0, NULL,
     "write the float32 little-endian logits of every prompt position, [n_prompt x vocab]", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- tokenize */
static const char *const tok_shared[] = {"--model", "--json", NULL};
static const cli_opt tok_own[] = {
    {"--tokenizer", NULL, "FILE", CLI_STR, 0, 0, NULL, "a tokenizer.json, a directory holding one, or a GGUF file", NULL, false, NULL},
    {"--special", NULL, NULL, CLI_FLAG, 0, 0, NULL, "recognise special-token strings such as <|im_start|> in the text", NULL, false, NULL},
    {"--decode", NULL, NULL, CLI_FLAG, 0, 0, NULL, "read ids (space/comma separated or a JSON array) and print their text, "
     "ending with a newline on a terminal", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- ask / chat */
static const char *const ask_shared[] = {"--model", "--bank", "--question", "--prompt", "--docs", "--mode", "--rounds",
                                         "--n-predict", "--temp", "--top-p", "--min-p", "--repeat-penalty",
                                         "--repeat-last-n", "--seed", "--threads", "--device", "--router", "--json",
                                         "--verbose", NULL};
static const char *const chat_shared[] = {"--model", "--bank", "--question", "--docs", "--mode", "--rounds",
                                          "--n-predict", "--temp", "--top-p", "--min-p", "--repeat-penalty",
                                          "--repeat-last-n", "--seed", "--threads", "--device", "--router", "--json",
                                          "--verbose", NULL};
static const cli_opt ask_own[] = {
    {"--top-k", "-k", "K", CLI_INT, 1, 1024, NULL, NULL, NULL, false, "--docs"},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt chat_own[] = {
    {"--history", NULL, "TURNS", CLI_INT, 0, 64, "4", "previous question/answer pairs carried into each new question "
     "(0 = none); the oldest are dropped first, also when they would not fit the context", NULL, false, NULL},
    {"--top-k", "-k", "K", CLI_INT, 1, 1024, NULL, NULL, NULL, false, "--docs"},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- demo */
static const char *const demo_shared[] = {"--model", "--bank", "--docs", "--n-predict", "--threads", "--device", NULL};
static const cli_opt demo_own[] = {
    {"--corpus", NULL, "DIR", CLI_STR, 0, 0, "data/demo", "passages.jsonl and facts.jsonl", NULL, false, NULL},
    {"--pooling", NULL, "P", CLI_INT, 0, 4096, "1", "tokens per chunk of the demo bank", NULL, false, NULL},
    {"--check", NULL, NULL, CLI_FLAG, 0, 0, NULL, "exit 1 unless every planted fact is routed and answered", NULL, false, NULL},
    {"--top-k", "-k", "K", CLI_INT, 1, 64, NULL, NULL, NULL, false, "--docs"},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- bank */
static const char *const bcreate_shared[] = {"--model", "--mode", "--router", NULL};
static const cli_opt bcreate_own[] = {
    {"--pooling", NULL, "P", CLI_INT, 0, 4096, "the checkpoint's; 1 in read mode", "tokens per chunk (with --shape-of: "
     "instead of the shape's)", NULL, false, NULL},
    {"--shape-of", NULL, "NAME", CLI_STR, 0, 0, NULL, "no model: a named shape for tests and benchmarks",
     "msa-4b|synthetic-small", false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const char *const badd_shared[] = {"--model", "--router", "--threads", "--device", NULL};
static const cli_opt badd_own[] = {
    {"--jsonl", NULL, "FILE", CLI_STR, 0, 0, NULL, "documents as JSON lines {\"id\", \"text\", \"meta\"} ('-' = stdin)", NULL, true, NULL},
    {"--id", NULL, "ID", CLI_STR, 0, 0, "stdin", "the id of the document read from '-'", NULL, false, NULL},
    {"--replace", NULL, NULL, CLI_FLAG, 0, 0, NULL, "a document id with new content replaces the old one", NULL, false, NULL},
    {"--split-tokens", NULL, "N", CLI_INT, 16, BIG, "the model's context",
     "split documents longer than N tokens into FILE#0, FILE#1, ... (docs/bank-format.md)", NULL, false, NULL},
    {"--synthetic", NULL, NULL, CLI_FLAG, 0, 0, NULL, "store deterministic vectors derived from the text (tests; no model)", NULL, false, NULL},
    {"--batch-mib", NULL, "MiB", CLI_FLOAT, 0.001, 1 << 20, "32", "text encoded and committed per batch: memory is bounded by "
     "it, not by the input", NULL, false, NULL},
    {"--lexical", NULL, "W", CLI_FLOAT, 0, 1, "0.35", "read mode: keep the bank's BM25 index (LEXICAL_BM25) current, fused "
     "with routing as W z(routing) + (1-W) z(bm25)", NULL, false, NULL},
    {"--no-lexical", NULL, NULL, CLI_FLAG, 0, 0, NULL, "leave the BM25 index alone (read mode then routes alone once it "
     "is stale)", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const char *const json_only[] = {"--json", NULL};

/* ---- bench (parsed by the benchmarks themselves; the table gives their help and docs) */
static const cli_opt bench_mem_own[] = {
    {"--size", NULL, "MiB", CLI_INT, 1, 1 << 20, "1024", "buffer size", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_matmul_own[] = {
    {"--dtype", NULL, "D", CLI_STR, 0, 0, "per model", "weight dtype", NULL, false, NULL},
    {"--model", NULL, "NAME", CLI_STR, 0, 0, "all", "shapes of smollm2-135m, qwen3-4b or all", NULL, false, NULL},
    {"--tokens", NULL, "N", CLI_INT, 2, 8192, "512", "prefill tokens", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_model_own[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--prompt-tokens", "-p", "N", CLI_INT, 1, 65536, "512", "prompt tokens of the prefill test", NULL, false, NULL},
    {"--n-predict", "-n", "N", CLI_INT, 1, 65536, "128", "generated tokens of the decode test", NULL, false, NULL},
    {"--peer", NULL, "LLAMA_BENCH", CLI_STR, 0, 0, NULL, "also run llama.cpp's llama-bench at this path ('auto' = "
     "$MSA_LLAMA_BENCH) on the same GGUF; a path that is not an executable fails (exit 66)", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_bank_own[] = {
    {"--tokens", NULL, "N", CLI_INT, 1, 1e12, NULL, "bank size to build", NULL, false, NULL},
    {"--doc-tokens", NULL, "D", CLI_INT, 1, 1e9, NULL, "tokens per document", NULL, false, NULL},
    {"--shape", NULL, "NAME", CLI_STR, 0, 0, "msa-4b", "bank shape", NULL, false, NULL},
    {"--cold", NULL, NULL, CLI_FLAG, 0, 0, NULL, "drop the page cache first", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_route_own[] = {
    {"--sizes", NULL, "LIST", CLI_STR, 0, 0, "1e4,3e4,...,1e7", "bank sizes in tokens", NULL, false, NULL},
    {"--max-tokens", NULL, "N", CLI_STR, 0, 0, NULL, "cap on the sizes", NULL, false, NULL},
    {"--layers", NULL, "L", CLI_INT, 1, 256, "18", "router layers", NULL, false, NULL},
    {"--query-tokens", NULL, "S", CLI_INT, 1, 1 << 16, NULL, "routing query tokens", NULL, false, NULL},
    {"--doc-tokens", NULL, "D", CLI_INT, 1, 1 << 20, "1024", "tokens per document", NULL, false, NULL},
    {"--dir", NULL, "DIR", CLI_STR, 0, 0, NULL, "where the banks are written", NULL, false, NULL},
    {"--in-memory", NULL, NULL, CLI_FLAG, 0, 0, NULL, "scan malloc'd arrays instead of a bank", NULL, false, NULL},
    {"--keep", NULL, NULL, CLI_FLAG, 0, 0, NULL, "keep the banks and reuse them", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_read_own[] = {
    {"--sizes", NULL, "LIST", CLI_STR, 0, 0, "1e5,3e5,1e6", "key counts (tokens) to scan", NULL, false, NULL},
    {"--max-tokens", NULL, "N", CLI_STR, 0, 0, "1e6", "cap on the default sizes (1e5,3e5,1e6,3e6,1e7)", NULL, false,
     NULL},
    {"--layers", NULL, "L", CLI_INT, 1, 256, "15", "router layers", NULL, false, NULL},
    {"--kv-dim", NULL, "K", CLI_INT, 1, 8192, "192", "key length (kv heads x head dim)", NULL, false, NULL},
    {"--query-tokens", NULL, "S", CLI_INT, 1, 4096, "25", "routing tokens of the question", NULL, false, NULL},
    {"--doc-tokens", NULL, "D", CLI_INT, 2, 1 << 20, "110", "tokens per document", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt bench_encode_own[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--sizes", NULL, "LIST", CLI_STR, 0, 0, "1e4,3e4,1e5", "bank sizes in tokens", NULL, false, NULL},
    {"--max-tokens", NULL, "N", CLI_STR, 0, 0, NULL, "cap on the sizes", NULL, false, NULL},
    {"--doc-tokens", NULL, "D", CLI_INT, 8, 65536, "512", "tokens per document", NULL, false, NULL},
    {"--mode", NULL, "MODE", CLI_STR, 0, 0, "the model's", "native or read", "native|read", false, NULL},
    {"--dir", NULL, "DIR", CLI_STR, 0, 0, NULL, "where the banks are written", NULL, false, NULL},
    {"--keep", NULL, NULL, CLI_FLAG, 0, 0, NULL, "keep the banks", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

static const cli_opt bench_gpu_own[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--n-prompt", "-p", "N", CLI_INT, 1, 1 << 20, "2048", "prefill tokens", NULL, false, NULL},
    {"--ctx", NULL, "C", CLI_INT, 1, 1 << 20, "1536", "tokens in each decoding sequence's cache before timing", NULL,
     false, NULL},
    {"--n-predict", "-n", "N", CLI_INT, 1, 1 << 16, "32", "decode steps timed per repetition", NULL, false, NULL},
    {"--batches", NULL, "LIST", CLI_STR, 0, 0, "1,4,16,64", "concurrent sequences of the decode rows", NULL, false,
     NULL},
    {"--encode-dir", NULL, "DIR", CLI_STR, 0, 0, NULL, "text files (*.txt) for the stage-1 encode row", NULL, false,
     NULL},
    {"--encode-tokens", NULL, "N", CLI_INT, 1000, 1e9, "1000000", "tokens to encode from them", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- eval and train-router (parsed by cmd_eval.c / cmd_train_router.c; the table gives their help and docs) */
static const cli_opt eval_own[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--bank", "-b", "BANK", CLI_STR, 0, 0, NULL, "the bank (niah: a directory for the haystack's banks)", NULL, false,
     NULL},
    {"--router", NULL, "FILE", CLI_STR, 0, 0, NULL, "read mode with trained router weights; none: the identity router; "
     "default: the shipped query-side router trained for this model (data/routers/), if any", NULL, false, NULL},
    {"--answer", NULL, NULL, CLI_FLAG, 0, 0, NULL, "also answer (read mode) and score exact match", NULL, false, NULL},
    {"--docs", NULL, "K", CLI_INT, 1, 64, "3", "documents read per answer", NULL, false, NULL},
    {"--n-predict", "-n", "N", CLI_INT, 1, 4096, "48", "answer tokens at most", NULL, false, NULL},
    {"--limit", NULL, "N", CLI_INT, 1, 1e9, NULL, "the first N questions only", NULL, false, NULL},
    {"--rounds", NULL, "R", CLI_INT, 1, 8, "1", "routing rounds (round r re-routes with the r-th best text)", NULL,
     false, NULL},
    {"--ranking", NULL, "FILE", CLI_STR, 0, 0, NULL, "rank by an external ranking (jsonl) instead of routing", NULL,
     false, NULL},
    {"--full-context", NULL, NULL, CLI_FLAG, 0, 0, NULL, "answer from every document at once, no routing (niah: "
     "haystack order); refused when prompt + -n exceed the model's context", NULL, false, NULL},
    {"--scores-out", NULL, "FILE", CLI_STR, 0, 0, NULL, "write every question's fused scores (jsonl)", NULL, false,
     NULL},
    {"--system", NULL, "NAME", CLI_STR, 0, 0, NULL, "the system's name in the report", NULL, false, NULL},
    {"--lexical", NULL, "W", CLI_FLOAT, 0, 1, NULL, "fuse routing with BM25: W z(routing) + (1-W) z(bm25)", NULL,
     false, NULL},
    {"--save-lexical", NULL, NULL, CLI_FLAG, 0, 0, NULL, "store that index in the bank (read mode then fuses)", NULL,
     false, NULL},
    {"--no-lexical", NULL, NULL, CLI_FLAG, 0, 0, NULL, "routing alone, even where the bank holds a current BM25 index "
     "(without --lexical, eval fuses as read mode does: with the bank's index)", NULL, false, NULL},
    {"--tokens", NULL, "N", CLI_INT, 1000, 1e9, NULL, "niah: haystack size in tokens", NULL, false, NULL},
    {"--seed", NULL, "S", CLI_INT, 0, 1e9, "1", "niah: the haystack's and needles' seed", NULL, false, NULL},
    {"--per-task", NULL, "N", CLI_INT, 1, 1000, "5", "niah: questions per task", NULL, false, NULL},
    {"--doc-tokens", NULL, "T", CLI_INT, 8, 65536, "128", "niah: tokens per haystack document", NULL, false, NULL},
    {"--passages", NULL, "FILE", CLI_STR, 0, 0, NULL, "qa: passages ({\"id\", \"text\"} JSONL) added to the bank first "
     "(created when missing); such lines in QUESTIONS.jsonl are passages too", NULL, false, NULL},
    {"--haystack", NULL, "FILE", CLI_STR, 0, 0, NULL, "niah: the haystack's text (default: the bundled corpus)", NULL,
     false, NULL},
    {"--write-set", NULL, "FILE", CLI_STR, 0, 0, NULL, "niah: write the documents and questions as one qa-format "
     "JSONL (for eval qa and scripts/eval_baselines.py), then stop: no bank, no --bank needed", NULL, false, NULL},
    {"--device", NULL, "DEV", CLI_DEVICE, 0, 0, "auto", "where the model runs (encoding the haystack, routing queries, "
     "answering): cpu, cuda, cuda:N or auto", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};
static const cli_opt train_router_own[] = {
    {"--model", "-m", "MODEL", CLI_STR, 0, 0, NULL, "a GGUF file or a Hugging Face model directory", NULL, false, NULL},
    {"--data", NULL, "PAIRS.jsonl", CLI_STR, 0, 0, NULL, "training pairs (query, positive, negatives); repeated: the "
     "files are read in order, as if concatenated", NULL, true, NULL},
    {"--output", "-o", "FILE", CLI_STR, 0, 0, NULL, "the router weights written (safetensors, bf16)", NULL, false,
     NULL},
    {"--layers", NULL, "L,L,...", CLI_STR, 0, 0, "15,20,25", "router layers to train", NULL, false, NULL},
    {"--steps", NULL, "N", CLI_INT, 0, 1e6, "200", "optimizer steps", NULL, false, NULL},
    {"--batch", NULL, "B", CLI_INT, 2, 4096, "32", "pairs per step", NULL, false, NULL},
    {"--lr", NULL, "LR", CLI_FLOAT, 0, 1, "5e-4", "Adam learning rate", NULL, false, NULL},
    {"--tau", NULL, "T", CLI_FLOAT, 0, 100, "0.1", "InfoNCE temperature", NULL, false, NULL},
    {"--decay", NULL, "D", CLI_FLOAT, 0, 100, "0", "weight decay toward the initial (identity) projection", NULL,
     false, NULL},
    {"--holdout", NULL, "N", CLI_INT, 0, 1e5, "100", "pairs held out for the recall curve", NULL, false, NULL},
    {"--eval-every", NULL, "K", CLI_INT, 1, 1e6, "20", "steps between held-out evaluations", NULL, false, NULL},
    {"--max-pairs", NULL, "N", CLI_INT, 1, 1e9, NULL, "use at most N pairs", NULL, false, NULL},
    {"--seed", NULL, "S", CLI_INT, 0, 1e18, "1", "shuffling seed", NULL, false, NULL},
    {"--curve", NULL, "FILE", CLI_STR, 0, 0, NULL, "write the training curve (tsv)", NULL, false, NULL},
    {"--query-only", NULL, NULL, CLI_FLAG, 0, 0, NULL, "train router_q_proj only, from k_proj (step 0 = the identity "
     "router), against the identity keys: a query-side router that identity banks serve", NULL, false, NULL},
    {"--device", NULL, "DEV", CLI_DEVICE, 0, 0, "auto", "where the frozen model computes the cached hidden states (the "
     "optimizer steps run on the CPU): cpu, cuda, cuda:N or auto", NULL, false, NULL},
    {"--threads", "-t", "N", CLI_INT, 1, 1024, NULL, "threads", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* ---- make-questions */
static const char *const mkq_shared[] = {"--model", "--n-predict", "--threads", "--device", NULL};
static const cli_opt mkq_own[] = {
    {"--passages", NULL, "FILE", CLI_STR, 0, 0, NULL, "passages, one JSON object per line with \"text\" (and \"id\")", NULL,
     false, NULL},
    {"--output", "-o", "OUT.jsonl", CLI_STR, 0, 0, NULL, "the pairs written (train-router --data); - = stdout", NULL, false,
     NULL},
    {"--examples", NULL, "FILE", CLI_STR, 0, 0, NULL, "few-shot examples (\"Passage: ...\\nQuestion: ...\\n\\n\" blocks) "
     "instead of the built-in ones", NULL, false, NULL},
    {"--limit", NULL, "N", CLI_INT, 1, 1e9, NULL, "the first N passages only (after --skip)", NULL, false, NULL},
    {"--skip", NULL, "N", CLI_INT, 0, 1e9, "0", "skip the first N lines", NULL, false, NULL},
    {NULL, NULL, NULL, 0, 0, 0, NULL, NULL, NULL, false, NULL},
};

/* Bench rows list their own flags and the common ones; raw parsing stays in the benchmark. */
#define BENCH_NOTE "common options: -t N (0 = the usable CPUs), --reps R, --warmup W, --json, --device DEV"

static const char chat_notes[] =
    "In the chat: /help lists the commands, /bye (or Ctrl-D) ends, /docs shows the routing of the last answer,\n"
    "/context the prompt of the last answer as the model read it (read mode: documents, previous turns and the\n"
    "question; native mode: the Memory Interleave history), /clear forgets the conversation. A line ending in \\\n"
    "continues on the next line; \"\"\" starts and ends a block of several lines; on a terminal, lines pasted at\n"
    "once are one question. Blank lines are ignored. Answers stream as they are generated; Ctrl-C stops the\n"
    "current answer, a second Ctrl-C (or one at the prompt) quits. Line editing and history (libedit) on a\n"
    "terminal; the history is kept in $XDG_STATE_HOME/msa/chat_history (else ~/.local/state/msa/chat_history).";

const cli_cmd cli_commands[] = {
    {"run", "", "generate text from a prompt", run_shared, run_own,
     "Ctrl-C stops generation and prints the timing line (exit 130).", 0, 0, cmd_run, NULL},
    {"tokenize", "", "text on stdin to token ids (or ids back to text with --decode)", tok_shared, tok_own, NULL, 0, 0,
     cmd_tokenize, NULL},
    {"ask", "", "answer one question from a memory bank", ask_shared, ask_own,
     "-p TEXT is the same as -q TEXT. -m defaults to the model the bank was created with. A warning on stderr\n"
     "says when -n cut the answer short (\"truncated\": true in --json).", 0, 0, cmd_ask, NULL},
    {"chat", "", "interactive questions over a memory bank, with streamed answers and conversation", chat_shared,
     chat_own, chat_notes, 0, 0, cmd_chat, NULL},
    {"demo", "", "build a bank from the bundled corpus with the default model and ask it questions", demo_shared,
     demo_own, NULL, 0, 0, cmd_demo, NULL},
    {"bank create", "BANK", "create an empty bank for a model (mode: native for MSA checkpoints, read otherwise)",
     bcreate_shared, bcreate_own, NULL, 1, 1, bank_create, NULL},
    {"bank add", "BANK [FILE|DIR|-]...", "encode documents into a bank (durable on exit 0)", badd_shared, badd_own,
     "Files: id = the path as given, normalised (sub//x.md -> sub/x.md, ./x -> x); directories recursively (hidden\n"
     "entries skipped); '-' = stdin as one document. Binary files (a NUL byte in the first 64 KiB) are skipped\n"
     "with a warning. -m defaults to the model the bank was created with.\n"
     "Streamed: ids are checked and every document planned (split, hashed, checked against the bank) before\n"
     "anything is encoded; then the texts are read again and encoded in batches of --batch-mib MiB, each batch\n"
     "its own durable commit (a crash keeps the batches before it; the same add again encodes only the rest).\n"
     "A pipe (stdin, --jsonl <(cmd)) is copied to an unlinked temporary file in $TMPDIR to be read twice.\n"
     "Exit 0: everything added; exit 3: some inputs were skipped (each named on stderr), the rest added.",
     1, -1, bank_add, NULL},
    {"bank rm", "BANK ID...", "tombstone documents (all or nothing)", NULL, NULL, NULL, 2, -1, bank_rm, NULL},
    {"bank ls", "BANK", "one line per document: id, index, tokens, chunks, hash (a header line first)", json_only, NULL,
     NULL, 1, 1, bank_ls, NULL},
    {"bank info", "BANK", "shapes, fingerprint, counts, sizes", json_only, NULL, NULL, 1, 1, bank_info, NULL},
    {"bank verify", "BANK", "full checksum scan (counts live documents)", json_only, NULL, NULL, 1, 1, bank_verify, NULL},
    {"bank compact", "BANK", "purge deleted documents, merge segments", NULL, NULL, NULL, 1, 1, bank_compact, NULL},
    {"bank export", "BANK FILE", "one portable checksummed file ('-' is refused: the export is written to a temporary "
     "name and renamed)", NULL, NULL, NULL, 2, 2, bank_export, NULL},
    {"bank import", "FILE BANK", "a new bank from an export (fingerprint and indices kept)", NULL, NULL, NULL, 2, 2,
     bank_import, NULL},
    {"eval qa", "QUESTIONS.jsonl", "retrieval and answer quality over a passages+questions file (docs/quality.md)",
     NULL, eval_own, "-t N threads; --json one JSON object; -v per-layer table and missing golds", 0, -1, NULL, cmd_eval},
    {"eval niah", "", "RULER-style needle-in-a-haystack: recall per layer and fused, exact match, time", NULL,
     eval_own, "-t N threads; --json one JSON object; -v per-layer table", 0, -1, NULL, cmd_eval},
    {"make-questions", "", "router training pairs: a model writes a question for each passage (greedy, few-shot)",
     mkq_shared, mkq_own, "Questions without a '?' or outside 3-40 words are dropped; the pair's kind is \"generated\".",
     0, 0, cmd_make_questions, NULL},
    {"train-router", "", "train read-mode router projections with InfoNCE on the frozen model's hidden states", NULL,
     train_router_own, NULL, 0, -1, NULL, cmd_train_router},
    {"bench mem", "", "memory bandwidth ceiling: streaming read and copy", NULL, bench_mem_own, BENCH_NOTE, 0, -1, NULL, cmd_bench},
    {"bench matmul", "", "matmul kernels on real model shapes vs the read ceiling", NULL, bench_matmul_own, BENCH_NOTE, 0,
     -1, NULL, cmd_bench},
    {"bench pool", "", "thread-pool dispatch cost", NULL, NULL, BENCH_NOTE, 0, -1, NULL, cmd_bench},
    {"bench bank", "build|open|scan|verify|fetch|ceilings|scale DIR", "memory-bank build/open/scan/verify/fetch/scale", NULL,
     bench_bank_own, "--json for one JSON object", 0, -1, NULL, cmd_bench},
    {"bench prefill", "", "model prefill tokens/s", NULL, bench_model_own, BENCH_NOTE, 0, -1, NULL, cmd_bench},
    {"bench decode", "", "model decode tokens/s", NULL, bench_model_own, BENCH_NOTE, 0, -1, NULL, cmd_bench},
    {"bench route", "", "per-query routing cost over synthetic banks of growing size", NULL, bench_route_own, BENCH_NOTE,
     0, -1, NULL, cmd_bench},
    {"bench read", "", "read mode's routing scan per question, host and --device cuda in the same run", NULL,
     bench_read_own, BENCH_NOTE, 0, -1, NULL, cmd_bench},
    {"bench encode", "", "stage-1 encoding cost into banks of growing size", NULL, bench_encode_own, BENCH_NOTE, 0, -1,
     NULL, cmd_bench},
    {"bench gpu", "", "load, prefill, batched decode, encode on a device, beside its measured ceilings", NULL, bench_gpu_own, BENCH_NOTE, 0, -1, NULL, cmd_bench},
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

const char cli_doc_intro[] =
    "<!-- Generated by `msa help --markdown` from tools/msa/cli_table.c; tests/cli/help.sh checks it is current. -->\n"
    "# msa command line\n"
    "\n"
    "The binary is `build/msa` after `make` (`make install PREFIX=DIR` copies it to `DIR/bin/msa`).\n"
    "Every command takes `--help` (exit 0). Flags have one meaning everywhere, llama.cpp's where it has one:\n"
    "`--top-k` is sampling, documents are `--docs`; `-t 0` is every CPU the process may use (its affinity and cgroup CPU quota); `-` is stdin wherever a file is read.\n"
    "Options may come before or after positional arguments; `--name=value` works too; `--` ends the options.\n"
    "\n"
    "## Exit codes\n"
    "\n"
    "| code | meaning |\n|---|---|\n"
    "| 0 | success |\n"
    "| 1 | `msa demo --check` found a miss |\n"
    "| 3 | `msa bank add`: some inputs were skipped (each named on stderr), the rest added |\n"
    "| 64 | usage: unknown flag, bad value, missing argument |\n"
    "| 65 | bad data: malformed input, a bank of another model, an input over the context (refused before any work) |\n"
    "| 66 | missing input file, model or bank |\n"
    "| 69 | unsupported here (e.g. `--device cuda` in a build without CUDA, native mode on a model without router) |\n"
    "| 70 | internal error |\n"
    "| 71 | out of memory |\n"
    "| 73 | conflict (same id, other content, without `--replace`) |\n"
    "| 74 | I/O error |\n"
    "| 75 | the bank is locked by another writer (try again) |\n"
    "| 130 | interrupted (Ctrl-C); what was generated so far and the timing line are printed |\n"
    "\n"
    "Errors go to stderr as one line `msa COMMAND: message`.\n";

const char cli_doc_outro[] =
    "## JSON output\n"
    "\n"
    "Every `--json` object carries `\"schema\": \"msa.<command>/1\"`; the number grows when a field changes meaning or\n"
    "goes away (new fields may appear without it). With `--json`, every command's errors (usage errors, a missing\n"
    "bank or model, bad data ...) are one JSON object on stdout too, beside the usual line on stderr, with the exit\n"
    "code of the table above:\n"
    "\n"
    "```json\n"
    "{\"schema\": \"msa.error/1\", \"error\": {\"status\": \"not found\", \"exit_code\": 66, \"message\": \"BANK: no such bank\"}}\n"
    "```\n"
    "\n"
    "| schema | printed by | fields |\n"
    "|---|---|---|\n"
    "| `msa.error/1` | any command given `--json`, on failure | error: status (`usage`, `not found`, `bad data`, ...), exit_code, message |\n"
    "| `msa.ask/1` | `msa ask --json` | question, answer, mode, model, bank, seed, truncated, cancelled, tokens {prompt, generated}, timings {route_s, total_s}, rounds [{generated, injected [{id, index}], routing [{layer, docs [{id, index, score}]}]}] |\n"
    "| `msa.chat/1` | `msa chat --json`, one object per question | as `msa.ask/1` |\n"
    "| `msa.bank.ls/1` | `msa bank ls --json`, one object per line (one line per live document) | id, index, tokens, chunks, hash, meta (when set), id_escaped (when the id had to be escaped) |\n"
    "| `msa.bank.info/1` | `msa bank info --json` | mode, dtype, fingerprint, model_path, n_layers, router_layers, n_kv_heads, head_dim, pooling, n_template, version, documents, deleted, next_index, tokens, chunks, segments, bytes, has_template, vector_bytes_per_token, bytes_per_token |\n"
    "| `msa.bank.verify/1` | `msa bank verify --json` | ok, documents (live), bytes, seconds, gb_per_s, open_seconds |\n"
    "| `msa.tokenize/1` | `msa tokenize --json` | ids (an array); with --decode: text |\n"
    "| `msa.bench/1` | `msa bench ... --json` | bench (the suite), meta {cpu, threads, ...}, results [{name, seconds {median, min, max, q1, q3, n}, RATE {median, min, max, fraction_of_ceiling}, note}] |\n"
    "\n"
    "`msa ask --json`:\n"
    "\n"
    "```json\n"
    "{\"schema\": \"msa.ask/1\", \"question\": \"...\", \"answer\": \"...\", \"mode\": \"read\",\n"
    " \"model\": \"/abs/model.gguf\", \"bank\": \"BANK\", \"seed\": 42, \"truncated\": false, \"cancelled\": false,\n"
    " \"tokens\": {\"prompt\": 812, \"generated\": 37},\n"
    " \"timings\": {\"route_s\": 0.05, \"total_s\": 1.9},\n"
    " \"rounds\": [{\"generated\": \"...\", \"injected\": [{\"id\": \"notes.md\", \"index\": 3}],\n"
    "             \"routing\": [{\"layer\": 15, \"docs\": [{\"id\": \"notes.md\", \"index\": 3, \"score\": 0.41}]}]}]}\n"
    "```\n"
    "\n"
    "`truncated` is true when `-n` ended the answer before the model did; `cancelled` when Ctrl-C stopped it.\n"
    "\n"
    "## Conversation in `msa chat`\n"
    "\n"
    "Each question is routed on its own text (documents are chosen for the new question), and the answer prompt\n"
    "carries the previous turns: at most `--history` question/answer pairs (default 4), oldest dropped first, and\n"
    "fewer when they would not leave room for the documents and the answer in the model's context. `/clear`\n"
    "forgets them; `/context` prints the prompt of the last answer (the previous turns are in it). Native mode\n"
    "(MSA checkpoints) answers each question on its own: its prompt is the Memory Interleave format, which has no\n"
    "place for earlier turns.\n"
    "\n"
    "## Progress\n"
    "\n"
    "Long commands (bank add, demo, verify, bench encode and route) draw progress on stderr at least every second\n"
    "with a rate and an ETA when stderr is a terminal, and nothing in a pipe (`MSA_NO_PROGRESS=1` silences it).\n";
