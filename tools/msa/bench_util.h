/* bench_util.h — shared helpers for every `msa bench` benchmark: a monotonic timer, repeated timed runs
 * after warm-up, medians with spread (min/max and interquartile range), the common options, and output
 * as an aligned table (default) or one JSON document (--json). Progress goes to stderr only on a terminal.
 *
 *   bench_opts o = bench_default_opts();              // -t, --reps, --warmup, --json
 *   ... for each arg: if (bench_parse_opt(&o, "decode", argc, argv, &i, &rc)) { if (rc) return rc; continue; }
 *   bench_report *r = bench_report_new("decode", &o);
 *   bench_stats s; bench_time(fn, ctx, o.warmup, o.reps, &s);      // seconds per call
 *   bench_metric m[] = {{"tok/s", n_tok, 1}, {"GB/s", bytes / 1e9, 1}};
 *   bench_report_row(r, "smollm2 q4_1", &s, m, 2, NULL);
 *   return bench_report_finish(r);                     // prints the JSON document; frees r */
#ifndef MSA_TOOLS_BENCH_UTIL_H
#define MSA_TOOLS_BENCH_UTIL_H

#include <stdbool.h>

typedef struct bench_opts {
    int n_threads; /* -t N; 0 = all online CPUs */
    int reps;      /* --reps R timed repetitions (default 10) */
    int warmup;    /* --warmup W untimed repetitions first (default 2) */
    bool json;     /* --json: one JSON document on stdout instead of the table */
    const char *device; /* --device DEV for benchmarks that load a model (NULL = auto) */
} bench_opts;

bench_opts bench_default_opts(void);

/* If argv[*i] is a common option, consume it (and its value), set *rc to 0 and return 1; on a bad value set
 * *rc to the usage exit code (64) after printing why. Returns 0 for an option it does not know. */
int bench_parse_opt(bench_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc);

/* Seconds on a monotonic clock. */
double bench_now(void);

typedef struct bench_stats {
    int n;
    double median, min, max, q1, q3; /* of the samples (seconds, or whatever was measured) */
} bench_stats;

/* Sorts samples[0..n) in place and fills *s. */
void bench_stats_from(double *samples, int n, bench_stats *s);

/* Time fn(ctx): warmup untimed calls, then reps timed calls; *s is seconds per call. */
typedef void (*bench_fn)(void *ctx);
void bench_time(bench_fn fn, void *ctx, int warmup, int reps, bench_stats *s);

/* A rate derived from the time per call: value = amount / seconds (e.g. bytes/1e9 -> "GB/s"). With
 * ceiling > 0 the row also shows the median as a percentage of it. */
typedef struct bench_metric {
    const char *name;
    double amount;
    double ceiling;
} bench_metric;

typedef struct bench_report bench_report;

/* A report for one benchmark ("mem", "matmul", "decode" ...). Never NULL (exits on out of memory). */
bench_report *bench_report_new(const char *suite, const bench_opts *o);
/* Context shown above the table / stored under "meta" in JSON (threads, simd, model ...). */
void bench_report_meta(bench_report *r, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* One result row: time per call with spread and its derived rates. note may be NULL. */
void bench_report_row(bench_report *r, const char *name, const bench_stats *s, const bench_metric *m, int n_m,
                      const char *note);
/* Print (JSON) and free; returns 0. */
int bench_report_finish(bench_report *r);

/* "[3/12] name: elapsed, step time, ETA" on stderr when it is a terminal, redrawn every second by a ticker
 * thread until bench_progress_done() clears the line. */
void bench_progress(int i, int n, const char *name);
void bench_progress_done(void);

#endif
