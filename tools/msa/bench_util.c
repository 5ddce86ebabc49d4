/* bench_util.c — timing, statistics and table/JSON output shared by the `msa bench` benchmarks. */
#include "bench_util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/kernels.h"
#include "commands.h"

bench_opts bench_default_opts(void) { return (bench_opts){.n_threads = 0, .reps = 10, .warmup = 2, .json = false}; }

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

int bench_parse_opt(bench_opts *o, const char *cmd, int argc, char **argv, int *i, int *rc) {
    const char *a = argv[*i];
    *rc = 0;
    if (!strcmp(a, "--json")) {
        o->json = true;
        return 1;
    }
    if (!strcmp(a, "--device")) {
        if (*i + 1 >= argc) {
            *rc = cli_usage_error(cmd, "--device needs a value (cpu, cuda, cuda:N or auto)");
            return 1;
        }
        o->device = argv[++*i];
        return 1;
    }
    int *dst = NULL, lo = 0, hi = 0;
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) dst = &o->n_threads, lo = 0, hi = 512;
    else if (!strcmp(a, "--reps")) dst = &o->reps, lo = 1, hi = 1000000;
    else if (!strcmp(a, "--warmup")) dst = &o->warmup, lo = 0, hi = 1000000;
    if (!dst) return 0;
    if (*i + 1 >= argc) {
        *rc = cli_usage_error(cmd, "%s needs a value", a);
        return 1;
    }
    if (!parse_int(argv[*i + 1], lo, hi, dst)) {
        *rc = cli_usage_error(cmd, "%s: '%s' is not an integer in [%d, %d]", a, argv[*i + 1], lo, hi);
        return 1;
    }
    (*i)++;
    return 1;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (the usual "type 7" quantile). */
static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int lo = (int)pos;
    if (lo >= n - 1) return v[n - 1];
    return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

void bench_stats_from(double *samples, int n, bench_stats *s) {
    memset(s, 0, sizeof *s);
    if (n <= 0) return;
    qsort(samples, (size_t)n, sizeof *samples, cmp_double);
    s->n = n;
    s->min = samples[0];
    s->max = samples[n - 1];
    s->median = quantile(samples, n, 0.5);
    s->q1 = quantile(samples, n, 0.25);
    s->q3 = quantile(samples, n, 0.75);
}

void bench_time(bench_fn fn, void *ctx, int warmup, int reps, bench_stats *s) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!t) {
        fprintf(stderr, "msa bench: out of memory\n");
        exit(71);
    }
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        fn(ctx);
        t[i] = bench_now() - t0;
    }
    bench_stats_from(t, reps, s);
    free(t);
}

struct bench_report {
    bool json;
    char header[256]; /* the metric names of the last header printed: a row with others prints a new one */
    json_t *doc;  /* {"schema": "msa.bench/1", "bench": suite, "meta": {...}, "results": [...]} */
    json_t *meta;
    json_t *results;
};

bench_report *bench_report_new(const char *suite, const bench_opts *o) {
    bench_report *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "msa bench: out of memory\n");
        exit(71);
    }
    r->json = o->json;
    snprintf(r->header, sizeof r->header, "%s", "(none yet)"); /* the first row prints the header */
    r->doc = json_object();
    r->meta = json_object();
    r->results = json_array();
    json_object_set_new(r->doc, "schema", json_string("msa.bench/1"));
    json_object_set_new(r->doc, "bench", json_string(suite));
    json_object_set(r->doc, "meta", r->meta);
    json_object_set(r->doc, "results", r->results);
    json_object_set_new(r->meta, "reps", json_integer(o->reps));
    json_object_set_new(r->meta, "warmup", json_integer(o->warmup));
    /* where a number was measured: the CPU and the SIMD features the kernels look at */
    bench_report_meta(r, "cpu", "%s", msa_cpu_model_name());
    bench_report_meta(r, "cpu_flags", "%s", msa_cpu_flags());
    return r;
}

void bench_report_meta(bench_report *r, const char *key, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_object_set_new(r->meta, key, json_string(buf));
    if (!r->json) printf("# %s: %s\n", key, buf);
}

/* A duration with a readable unit. */
static void fmt_time(char *buf, size_t n, double s) {
    if (s < 1e-3) snprintf(buf, n, "%.1f us", s * 1e6);
    else if (s < 1) snprintf(buf, n, "%.3f ms", s * 1e3);
    else snprintf(buf, n, "%.3f s", s);
}

/* A rate in at most 7 characters: 3 significant digits, k/M/G for large values. */
static void fmt_rate(char *buf, size_t n, double v) {
    if (v >= 1e10) snprintf(buf, n, "%.1fG", v / 1e9);
    else if (v >= 1e9) snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e7) snprintf(buf, n, "%.1fM", v / 1e6);
    else if (v >= 1e6) snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, n, "%.1fk", v / 1e3);
    else if (v >= 100) snprintf(buf, n, "%.0f", v);
    else if (v >= 1) snprintf(buf, n, "%.2f", v);
    else snprintf(buf, n, "%.3g", v);
}

/* A rate column: as wide as its name, at least 8 (12 with a share of the ceiling). */
static int metric_width(const bench_metric *m) {
    int w = (int)strlen(m->name), min = m->ceiling > 0 ? 12 : 8;
    return w > min ? w : min;
}

void bench_report_row(bench_report *r, const char *name, const bench_stats *s, const bench_metric *m, int n_m,
                      const char *note) {
    json_t *row = json_object();
    json_object_set_new(row, "name", json_string(name));
    json_t *t = json_object();
    json_object_set_new(t, "median", json_real(s->median));
    json_object_set_new(t, "min", json_real(s->min));
    json_object_set_new(t, "max", json_real(s->max));
    json_object_set_new(t, "q1", json_real(s->q1));
    json_object_set_new(t, "q3", json_real(s->q3));
    json_object_set_new(t, "n", json_integer(s->n));
    json_object_set_new(row, "seconds", t);
    for (int i = 0; i < n_m; i++) {
        json_t *v = json_object();
        double med = s->median > 0 ? m[i].amount / s->median : 0;
        json_object_set_new(v, "median", json_real(med));
        json_object_set_new(v, "min", json_real(s->max > 0 ? m[i].amount / s->max : 0));
        json_object_set_new(v, "max", json_real(s->min > 0 ? m[i].amount / s->min : 0));
        if (m[i].ceiling > 0) json_object_set_new(v, "fraction_of_ceiling", json_real(med / m[i].ceiling));
        json_object_set_new(row, m[i].name, v);
    }
    if (note) json_object_set_new(row, "note", json_string(note));
    json_array_append_new(r->results, row);
    if (r->json) return;

    bench_progress_done();
    /* One table style for every benchmark: the time per call (median, min, max, interquartile range as a
     * percentage of the median), then each rate at the median, with its share of the ceiling when it has one.
     * Rows stay within ~120 columns and every column has a name; spreads of the rates are in --json. */
    char names[256] = "";
    for (int i = 0; i < n_m; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s|", m[i].name);
    if (strcmp(names, r->header)) {
        printf("%-34s %10s %10s %10s %6s", "name", "time/call", "min", "max", "IQR%");
        for (int i = 0; i < n_m; i++) printf(" %*s", metric_width(&m[i]), m[i].name);
        printf("\n");
        snprintf(r->header, sizeof r->header, "%s", names);
    }
    char med[32], lo[32], hi[32];
    fmt_time(med, sizeof med, s->median);
    fmt_time(lo, sizeof lo, s->min);
    fmt_time(hi, sizeof hi, s->max);
    printf("%-34s %10s %10s %10s %5.1f%%", name, med, lo, hi, s->median > 0 ? 100 * (s->q3 - s->q1) / s->median : 0);
    for (int i = 0; i < n_m; i++) {
        char num[32], cell[48];
        double v = s->median > 0 ? m[i].amount / s->median : 0;
        fmt_rate(num, sizeof num, v);
        if (m[i].ceiling > 0) snprintf(cell, sizeof cell, "%s %3.0f%%", num, 100 * v / m[i].ceiling);
        else snprintf(cell, sizeof cell, "%s", num);
        printf(" %*s", metric_width(&m[i]), cell);
    }
    printf("\n");
    /* the note on its own labelled line */
    if (note) printf("  note: %s\n", note);
    fflush(stdout);
}

int bench_report_finish(bench_report *r) {
    if (r->json) {
        char *s = json_dumps(r->doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (s) {
            printf("%s\n", s);
            free(s);
        }
    }
    bench_progress_done();
    json_decref(r->meta);
    json_decref(r->results);
    json_decref(r->doc);
    free(r);
    return 0;
}

/* Progress by time: a ticker thread redraws the current step at least every second (a step may run for a
 * minute: building a 10M-token bank, encoding), with the time elapsed, the step's own time and an ETA from
 * the steps done so far. Only on a terminal; MSA_NO_PROGRESS silences it. */
/* MSA_NO_PROGRESS set to anything but "" or "0" silences progress lines. */
static bool msa_no_progress(void) {
    const char *e = getenv("MSA_NO_PROGRESS");
    return e && *e && strcmp(e, "0");
}

static pthread_mutex_t progress_mu = PTHREAD_MUTEX_INITIALIZER;
static int progress_shown, progress_i, progress_n;
static char progress_name[96];
static double progress_t0, progress_step_t0;
static bool ticker_started;

static void progress_draw(void) { /* with progress_mu held */
    double t = bench_now(), el = t - progress_t0, step = t - progress_step_t0;
    char eta[32] = "?";
    if (progress_i > 1) snprintf(eta, sizeof eta, "~%.0f s", (progress_step_t0 - progress_t0) / (progress_i - 1) *
                                                                 (progress_n - progress_i + 1) - step);
    fprintf(stderr, "\r\033[K[%d/%d] %s: %.0f s elapsed, this step %.0f s, %.2f steps/min, ETA %s", progress_i,
            progress_n, progress_name, el, step, el > 0 ? 60.0 * (progress_i - 1) / el : 0.0, eta);
    fflush(stderr);
}

static void *ticker(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        pthread_mutex_lock(&progress_mu);
        if (progress_shown) progress_draw();
        pthread_mutex_unlock(&progress_mu);
    }
    return NULL;
}

void bench_progress(int i, int n, const char *name) {
    if (!isatty(2) || msa_no_progress()) return;
    pthread_mutex_lock(&progress_mu);
    double t = bench_now();
    if (!progress_shown && i <= 1) progress_t0 = t;
    if (progress_t0 == 0) progress_t0 = t;
    progress_step_t0 = t;
    progress_i = i, progress_n = n;
    snprintf(progress_name, sizeof progress_name, "%s", name);
    progress_shown = 1;
    progress_draw();
    if (!ticker_started) {
        pthread_t th;
        if (pthread_create(&th, NULL, ticker, NULL) == 0) pthread_detach(th);
        ticker_started = true;
    }
    pthread_mutex_unlock(&progress_mu);
}

void bench_progress_done(void) {
    pthread_mutex_lock(&progress_mu);
    if (progress_shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
        progress_shown = 0;
    }
    pthread_mutex_unlock(&progress_mu);
}
