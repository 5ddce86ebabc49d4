/* cmd_bank.c — `msa bank`: create, rm, ls, info, verify, compact, export and import memory banks
 * (docs/bank-format.md); `add` is bank_add.c. Exit codes come from the status:
 * 65 malformed bank or other model, 66 missing, 73 conflict, 74 I/O, 75 locked. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "commands.h"
#include "memory/bm25.h"
#include "model_glue.h"
#include "util/error.h"

#define MAX_DOC_BYTES ((size_t)1 << 30)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void hex(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static msa_status open_bank(const char *path, bool writable, msa_bank **b) {
    msa_bank_open_params op = msa_bank_default_open_params();
    op.writable = writable;
    return msa_bank_open(path, &op, b);
}

/* ----------------------------------------------------------------------------------------------- create */

int bank_create(const cli_args *a) {
    const char *path = a->pos[0], *model = cli_get(a, "--model"), *shape_of = cli_get(a, "--shape-of"),
               *mode = cli_get(a, "--mode"), *router = cli_get(a, "--router");
    int pooling = (int)cli_int(a, "--pooling", 0);
    if (!model == !shape_of) return cli_usage_error("bank create", "give exactly one of -m MODEL or --shape-of NAME");
    msa_bank_create_params cp = {0};
    msa_status st;
    if (shape_of) {
        if (msa_bank_shape_named(shape_of, &cp.shape)) return cli_usage_error("bank create", "%s", msa_last_error());
        if (pooling > 0) cp.shape.pooling = pooling; /* fewer, larger chunks: small vectors for big test texts */
        /* a fixed fingerprint per named shape: banks of the same synthetic shape can exchange exports */
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(shape_of, strlen(shape_of)));
        memcpy(cp.fingerprint, c.digest, 16);
        memcpy(cp.fingerprint + 16, "synthetic-shape\0", 16);
    } else {
        st = model_glue_bank_params(model, router, mode ? (!strcmp(mode, "read") ? MSA_BANK_READ : MSA_BANK_NATIVE) : -1,
                                    pooling, &cp);
        if (st) {
            int rc = cli_fail(st);
            if (st == MSA_ERR_UNSUPPORTED && mode && !strcmp(mode, "native"))
                fprintf(stderr, "msa bank create: this model has no MSA router: use --mode read (the default for it)\n");
            return rc;
        }
    }
    st = msa_bank_create(path, &cp);
    if (st) return cli_fail(st);
    printf("created %s (%s, %s, %d router layers, P=%d)\n", path, cp.shape.mode == MSA_BANK_NATIVE ? "native" : "read",
           cp.shape.dtype == MSA_BANK_BF16 ? "bf16" : "f32", cp.shape.n_router, cp.shape.pooling);
    return 0;
}

/* add: bank_add.c (streamed: memory bounded by a batch, not by the input) */

/* ----------------------------------------------------------------------------------------- rm, ls, info */

int bank_rm(const cli_args *a) {
    msa_bank *b;
    msa_status st = open_bank(a->pos[0], true, &b);
    if (st) return cli_fail(st);
    float w;
    const bool lexical = msa_bm25_current_weight(b, &w); /* kept current below when it is now */
    for (int i = 1; i < a->n_pos && !st; i++) st = msa_bank_remove(b, a->pos[i]);
    if (!st) st = msa_bank_commit(b); /* all or nothing: a missing id commits none */
    if (!st && lexical) st = msa_bm25_refresh(b, w, NULL);
    msa_bank_close(b);
    if (st) return cli_fail(st);
    printf("removed %d\n", a->n_pos - 1);
    return 0;
}

/* An id as every output shows it. Ids added now are valid UTF-8 without control characters
 * (msa_bank_check_id), so they print as they are; a bank written before that rule may hold others: those are
 * shown with "\xNN" for each control or invalid byte and "\\" for a backslash (docs/bank-format.md). The
 * result is malloc'd. */
static char *shown_id(const char *id, bool *escaped) {
    *escaped = msa_bank_check_id(id) != MSA_OK;
    if (!*escaped) return strdup(id);
    size_t n = strlen(id);
    char *out = malloc(4 * n + 1), *o = out;
    if (!out) return NULL;
    const uint8_t *p = (const uint8_t *)id;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 1 && c >= 0x20 && c != 0x7f && c != '\\') *o++ = (char)c;
        else if (ok && len == 1 && c == '\\') o += sprintf(o, "\\\\");
        else if (ok && len > 1) {
            memcpy(o, p + i, len);
            o += len;
            i += len;
            continue;
        } else o += sprintf(o, "\\x%02x", c);
        i++;
    }
    *o = '\0';
    return out;
}

int bank_ls(const cli_args *a) {
    const char *path = a->pos[0];
    bool json = cli_has(a, "--json");
    msa_bank *b;
    msa_status st = open_bank(path, false, &b);
    if (st) return cli_fail(st);
    if (!json) printf("%-32s %6s %10s %8s %s\n", "ID", "INDEX", "TOKENS", "CHUNKS", "HASH");
    for (uint64_t i = 0; i < msa_bank_n_docs(b); i++) {
        msa_bank_doc_info d;
        msa_bank_doc_at(b, i, &d);
        char h[33];
        hex(d.hash, 16, h);
        bool escaped;
        char *id = shown_id(d.id, &escaped);
        if (!id) {
            msa_bank_close(b);
            return cli_fail(msa_fail(MSA_ERR_NOMEM, "out of memory"));
        }
        if (json) { /* never a silently dropped document: an id jansson would refuse is shown escaped */
            json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "schema", "msa.bank.ls/1", "id", id, "index",
                                  (json_int_t)d.index, "tokens",
                                  (json_int_t)d.n_tokens, "chunks", (json_int_t)d.n_chunks, "hash", h);
            if (o && escaped) json_object_set_new(o, "id_escaped", json_true());
            if (o && d.meta_json[0]) {
                json_t *m = json_loads(d.meta_json, 0, NULL);
                if (m) json_object_set_new(o, "meta", m);
            }
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (s) puts(s);
            free(s);
            json_decref(o);
        } else {
            printf("%-32s %6u %10" PRIu64 " %8u %s\n", id, d.index, d.n_tokens, d.n_chunks, h);
        }
        free(id);
    }
    msa_bank_close(b);
    return 0;
}

int bank_info(const cli_args *a) {
    const char *path = a->pos[0];
    bool json = cli_has(a, "--json");
    msa_bank *b;
    msa_status st = open_bank(path, false, &b);
    if (st) return cli_fail(st);
    msa_bank_info in;
    msa_bank_get_info(b, &in);
    const msa_bank_shape *s = &in.shape;
    char fp[65];
    hex(in.fingerprint, 32, fp);
    uint64_t vec_per_chunk = 0;
    for (int l = 0; l < s->n_router; l++) vec_per_chunk += (uint64_t)s->route_dim[l];
    if (s->mode == MSA_BANK_NATIVE) vec_per_chunk += (uint64_t)s->n_router * 2 * (uint64_t)s->n_kv_heads * (uint64_t)s->head_dim;
    double vec_per_token = (double)(vec_per_chunk * msa_bank_dtype_size(s->dtype)) / s->pooling;
    double per_token = in.n_tokens ? (double)in.bytes / (double)in.n_tokens : 0;
    if (json) {
        json_t *layers = json_array();
        for (int l = 0; l < s->n_router; l++) json_array_append_new(layers, json_integer(s->router_layers[l]));
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                              "s:I, s:b, s:f, s:f}",
                              "schema", "msa.bank.info/1", "mode", s->mode == MSA_BANK_NATIVE ? "native" : "read", "dtype",
                              s->dtype == MSA_BANK_BF16 ? "bf16" : "f32", "fingerprint", fp, "model_path", in.model_path,
                              "n_layers", s->n_layers, "router_layers", layers, "n_kv_heads", s->n_kv_heads, "head_dim",
                              s->head_dim, "pooling", s->pooling, "n_template", s->n_template, "version",
                              (json_int_t)in.version, "documents", (json_int_t)in.n_docs, "deleted",
                              (json_int_t)in.n_deleted, "next_index", (json_int_t)in.next_index, "tokens",
                              (json_int_t)in.n_tokens, "chunks", (json_int_t)in.n_chunks, "segments",
                              (json_int_t)in.n_segments, "bytes", (json_int_t)in.bytes, "has_template",
                              in.has_template, "vector_bytes_per_token", vec_per_token, "bytes_per_token", per_token);
        char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (str) puts(str);
        free(str);
        json_decref(o);
    } else {
        printf("bank         %s (format %d.%d, version %" PRIu64 ")\n", path, 1, 0, in.version);
        printf("mode         %s, %s\n", s->mode == MSA_BANK_NATIVE ? "native" : "read",
               s->dtype == MSA_BANK_BF16 ? "bf16" : "f32");
        printf("model        %s\nfingerprint  %s\n", in.model_path[0] ? in.model_path : "(none)", fp);
        printf("shape        %d layers, router layers %d..%d (%d), %d kv heads x %d, P=%d, template %d tokens\n",
               s->n_layers, s->router_layers[0], s->router_layers[s->n_router - 1], s->n_router, s->n_kv_heads,
               s->head_dim, s->pooling, s->n_template);
        printf("documents    %" PRIu64 " live, %" PRIu64 " deleted (compact purges), next index %" PRIu64 "\n", in.n_docs,
               in.n_deleted, in.next_index);
        printf("tokens       %" PRIu64 " (%" PRIu64 " chunks)\n", in.n_tokens, in.n_chunks);
        printf("size         %" PRIu64 " bytes in %" PRIu64 " segments; %.0f vector bytes/token, %.1f bytes/token "
               "overall; text %" PRIu64 " bytes compressed\n",
               in.bytes, in.n_segments, vec_per_token, per_token, in.text_bytes);
        printf("template     %s\n", in.has_template ? "stored" : "not set");
    }
    msa_bank_close(b);
    return 0;
}

/* ------------------------------------------------------------------------------ verify, compact, export */

typedef struct vprog {
    double t0, last;
} vprog;

static void verify_progress(uint64_t done, uint64_t total, void *user) {
    vprog *p = user;
    double t = now_s();
    if (t - p->last < 0.2 && done < total) return;
    p->last = t;
    double dt = t - p->t0, rate = dt > 0 ? (double)done / dt : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\rverifying: %.2f / %.2f GB, %.2f GB/s, ETA %.0f s   ", (double)done / 1e9, (double)total / 1e9,
            rate / 1e9, eta);
}

int bank_verify(const cli_args *a) {
    const char *path = a->pos[0];
    bool json = cli_has(a, "--json");
    double t0 = now_s();
    msa_bank *b;
    msa_status st = open_bank(path, false, &b);
    if (st) return cli_fail(st);
    double t_open = now_s() - t0;
    vprog p = {now_s(), 0};
    bool tty = isatty(2);
    msa_bank_verify_report rep;
    st = msa_bank_verify(b, tty ? verify_progress : NULL, &p, &rep);
    if (tty) fputc('\n', stderr);
    /* the scan also checks tombstoned documents' bytes; "documents" means the live ones, as in ls and info */
    msa_bank_info vi;
    msa_bank_get_info(b, &vi);
    rep.n_docs_checked = vi.n_docs;
    msa_bank_close(b);
    if (st) return cli_fail(st);
    double gbs = rep.seconds > 0 ? (double)rep.bytes_checked / rep.seconds / 1e9 : 0;
    if (json)
        printf("{\"schema\":\"msa.bank.verify/1\",\"ok\":true,\"documents\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"seconds\":%.4f,\"gb_per_s\":%.3f,"
               "\"open_seconds\":%.4f}\n",
               rep.n_docs_checked, rep.bytes_checked, rep.seconds, gbs, t_open);
    else
        printf("ok: %" PRIu64 " documents, %.3f GB checked in %.3f s (%.2f GB/s); opened in %.3f s\n",
               rep.n_docs_checked, (double)rep.bytes_checked / 1e9, rep.seconds, gbs, t_open);
    return 0;
}

int bank_compact(const cli_args *a) {
    msa_bank *b;
    msa_status st = open_bank(a->pos[0], true, &b);
    if (st) return cli_fail(st);
    msa_bank_info before, after;
    msa_bank_get_info(b, &before);
    float w;
    const bool lexical = msa_bm25_current_weight(b, &w); /* kept current below when it is now */
    st = msa_bank_compact(b);
    if (!st && lexical) st = msa_bm25_refresh(b, w, NULL);
    msa_bank_get_info(b, &after);
    msa_bank_close(b);
    if (st) return cli_fail(st);
    printf("compacted: %" PRIu64 " -> %" PRIu64 " bytes, %" PRIu64 " deleted documents purged, %" PRIu64 " segments\n",
           before.bytes, after.bytes, before.n_deleted, after.n_segments);
    return 0;
}

int bank_export(const cli_args *a) {
    /* the export is written to a temporary name, fsynced and renamed: there is no "-" (stdout) to rename */
    if (!strcmp(a->pos[1], "-"))
        return cli_usage_error("bank export", "FILE must be a file ('-' is refused: the export is written to a "
                                              "temporary name and renamed into place)");
    msa_bank *b;
    msa_status st = open_bank(a->pos[0], false, &b);
    if (st) return cli_fail(st);
    st = msa_bank_export(b, a->pos[1]);
    uint64_t n = msa_bank_n_docs(b);
    msa_bank_close(b);
    if (st) return cli_fail(st);
    printf("exported %" PRIu64 " documents to %s\n", n, a->pos[1]);
    return 0;
}

int bank_import(const cli_args *a) {
    uint64_t n = 0;
    msa_status st = msa_bank_import(a->pos[0], a->pos[1], &n);
    if (st) return cli_fail(st);
    printf("imported %" PRIu64 " documents into %s\n", n, a->pos[1]);
    return 0;
}
