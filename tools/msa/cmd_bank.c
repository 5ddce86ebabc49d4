/* cmd_bank.c — `msa bank`: create, add, rm, ls, info, verify, compact, export and import memory banks
 * (docs/bank-format.md). `add` collects documents (files, directories, stdin, JSONL) and hands them to the
 * encoder (msa_bank_ingest); it exits 0 only after they are durable. Exit codes come from the status:
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

/* -------------------------------------------------------------------------------------------------- add */

typedef struct doc_list {
    msa_doc_input *docs;
    char **owned;          /* strings to free */
    size_t n, cap, n_owned, cap_owned;
} doc_list;

static char *keep(doc_list *l, char *s) {
    if (!s) return NULL;
    if (l->n_owned == l->cap_owned) {
        l->cap_owned = l->cap_owned ? 2 * l->cap_owned : 64;
        char **o = realloc(l->owned, l->cap_owned * sizeof *o);
        if (!o) {
            free(s);
            return NULL;
        }
        l->owned = o;
    }
    l->owned[l->n_owned++] = s;
    return s;
}

static msa_status push(doc_list *l, const char *id, char *text, size_t len, const char *meta) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        msa_doc_input *d = realloc(l->docs, l->cap * sizeof *d);
        if (!d) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        l->docs = d;
    }
    l->docs[l->n++] = (msa_doc_input){.id = id, .text = text, .text_len = len, .meta_json = meta};
    return MSA_OK;
}

static msa_status read_stream(FILE *f, const char *name, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= MAX_DOC_BYTES) {
                free(buf);
                return msa_fail(MSA_ERR_LIMIT, "%s: larger than 1 GiB", name);
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return msa_fail(MSA_ERR_NOMEM, "out of memory");
            }
            buf = b;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return msa_fail(MSA_ERR_IO, "%s: read failed", name);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return MSA_OK;
}

static void free_docs(doc_list *l);

/* A document id from a path: repeated slashes collapsed, "./" components and a trailing slash dropped
 * (`sub//x.md` and `./sub/x.md` are both `sub/x.md`), so the same file always gets the same id. */
static char *normalise_path(const char *p) {
    size_t n = strlen(p);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] == '/') {
            if (k == 0 || o[k - 1] != '/') o[k++] = '/';
            i++;
            continue;
        }
        /* a "." component */
        if (p[i] == '.' && (i + 1 == n || p[i + 1] == '/') && (k == 0 || o[k - 1] == '/')) {
            i += 1;
            while (i < n && p[i] == '/') i++;
            continue;
        }
        o[k++] = p[i++];
    }
    while (k > 1 && o[k - 1] == '/') k--;
    if (k == 0) o[k++] = '.';
    o[k] = 0;
    return o;
}

/* Binary: a NUL byte in the first 64 KiB (what git and grep call binary). Such a file (a GGUF, an image)
 * would be read as millions of junk tokens. */
static bool looks_binary(const char *text, size_t len) {
    return memchr(text, 0, len < 65536 ? len : 65536) != NULL;
}

typedef struct add_ctx {
    doc_list *l;
    int n_skipped; /* inputs skipped with a warning: the exit code says so (3) */
} add_ctx;

static void skip(add_ctx *c, const char *path, const char *why) {
    fprintf(stderr, "msa bank add: skipped %s: %s\n", path, why);
    c->n_skipped++;
}

static msa_status add_file(add_ctx *c, const char *path, bool in_dir) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (in_dir) { /* one unreadable file does not stop a directory */
            skip(c, path, strerror(errno));
            return MSA_OK;
        }
        return msa_fail(errno == ENOENT ? MSA_ERR_NOT_FOUND : MSA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *text;
    size_t len;
    msa_status st = read_stream(f, path, &text, &len);
    fclose(f);
    if (st) {
        if (!in_dir) return st;
        skip(c, path, msa_last_error());
        return MSA_OK;
    }
    if (looks_binary(text, len)) {
        free(text);
        skip(c, path, "binary file (a NUL byte in its first 64 KiB)");
        return MSA_OK;
    }
    char *id = keep(c->l, normalise_path(path));
    if (!keep(c->l, text) || !id) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    return push(c->l, id, text, len, NULL);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Directories already walked (device, inode): a symbolic link back to an ancestor (or two links to one
 * directory) is walked once, never followed into a cycle. Links to files are followed; nothing is ever
 * written or deleted through them. */
typedef struct dir_seen {
    dev_t *dev;
    ino_t *ino;
    size_t n, cap;
} dir_seen;

static int seen_add(dir_seen *s, const struct stat *sb) { /* 1 new, 0 already seen, -1 out of memory */
    for (size_t i = 0; i < s->n; i++)
        if (s->dev[i] == sb->st_dev && s->ino[i] == sb->st_ino) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        dev_t *d = realloc(s->dev, cap * sizeof *d);
        if (d) s->dev = d;
        ino_t *n = realloc(s->ino, cap * sizeof *n);
        if (n) s->ino = n;
        if (!d || !n) return -1;
        s->cap = cap;
    }
    s->dev[s->n] = sb->st_dev;
    s->ino[s->n++] = sb->st_ino;
    return 1;
}

static msa_status add_dir(add_ctx *c, const char *dir, int depth, dir_seen *seen) {
    if (depth > 64) return msa_fail(MSA_ERR_LIMIT, "%s: directories nested too deeply", dir);
    struct stat self;
    if (stat(dir, &self) != 0) return msa_fail(MSA_ERR_IO, "%s: %s", dir, strerror(errno));
    int fresh = seen_add(seen, &self);
    if (fresh < 0) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (fresh == 0) return MSA_OK; /* reached again through a link: already walked */
    DIR *d = opendir(dir);
    if (!d) {
        if (depth == 0) return msa_fail(MSA_ERR_IO, "%s: %s", dir, strerror(errno));
        skip(c, dir, strerror(errno));
        return MSA_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    msa_status st = MSA_OK;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--; /* "sub/" + "x" is "sub/x", not "sub//x" */
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        size_t len = dl + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) {
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(names[n++], len, "%.*s/%s", (int)dl, dir, e->d_name);
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_str); /* a stable order: indices follow it */
    for (size_t i = 0; i < n && !st; i++) {
        struct stat sb;
        if (stat(names[i], &sb) != 0) {
            skip(c, names[i], strerror(errno));
            continue;
        }
        if (S_ISDIR(sb.st_mode)) st = add_dir(c, names[i], depth + 1, seen);
        else if (S_ISREG(sb.st_mode)) st = add_file(c, names[i], true); /* FIFOs, sockets, devices: skipped */
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

/* Splitting (docs/bank-format.md "Long documents"): a document over `budget` tokens becomes ID#0, ID#1, ...
 * each of at most `budget` tokens, cut at token boundaries: at the last blank line in the second half of a
 * part's window, else the last line break there, else the last sentence end (". "), else at the budget. */
static msa_status split_docs(doc_list *l, const msa_tokenizer *tok, size_t budget, int *n_split) {
    doc_list out = {0};
    msa_status st = MSA_OK;
    *n_split = 0;
    for (size_t i = 0; i < l->n && !st; i++) {
        msa_doc_input *d = &l->docs[i];
        int32_t *ids = NULL;
        size_t n_ids = 0;
        st = msa_tokenize(tok, d->text, d->text_len, false, &ids, &n_ids);
        if (st) break;
        if (n_ids <= budget) {
            free(ids);
            st = push(&out, d->id, (char *)d->text, d->text_len, d->meta_json);
            continue;
        }
        /* byte offset of every token boundary from the pieces (byte-level BPE: pieces concatenate to the text) */
        size_t *off = malloc((n_ids + 1) * sizeof *off);
        if (!off) {
            free(ids);
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        off[0] = 0;
        char buf[256];
        for (size_t k = 0; k < n_ids; k++) {
            int pl = msa_token_to_piece(tok, ids[k], buf, sizeof buf);
            off[k + 1] = off[k] + (size_t)(pl > 0 ? pl : 0);
        }
        if (off[n_ids] != d->text_len) { /* invalid UTF-8 was replaced: scale offsets to the text */
            for (size_t k = 0; k <= n_ids; k++) off[k] = (size_t)((double)off[k] * (double)d->text_len / (double)off[n_ids]);
            off[n_ids] = d->text_len;
        }
        size_t t0 = 0;
        int part = 0;
        while (t0 < n_ids && !st) {
            size_t t1 = t0 + budget < n_ids ? t0 + budget : n_ids;
            if (t1 < n_ids) {
                const char *pats[3] = {"\n\n", "\n", ". "};
                size_t best = 0;
                for (int pi = 0; pi < 3 && !best; pi++)
                    for (size_t k = t1; k > t0 + (t1 - t0) / 2 && !best; k--) {
                        size_t pl = strlen(pats[pi]), b = off[k];
                        if (b >= pl && !memcmp(d->text + b - pl, pats[pi], pl)) best = k;
                    }
                if (best) t1 = best;
            }
            char idb[64];
            snprintf(idb, sizeof idb, "#%d", part++);
            size_t il = strlen(d->id) + strlen(idb) + 1;
            char *nid = keep(&out, malloc(il));
            if (!nid) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            else {
                snprintf(nid, il, "%s%s", d->id, idb);
                st = push(&out, nid, (char *)d->text + off[t0], off[t1] - off[t0], d->meta_json);
            }
            t0 = t1;
        }
        fprintf(stderr, "msa bank add: %s is %zu tokens: split into %s#0..#%d (--split-tokens %zu)\n", d->id, n_ids,
                d->id, part - 1, budget);
        (*n_split)++;
        free(off);
        free(ids);
    }
    if (st) {
        free_docs(&out);
        return st;
    }
    /* the new list points into the old one's strings: hand them over */
    for (size_t i = 0; i < out.n_owned; i++) keep(l, out.owned[i]);
    free(out.owned);
    free(l->docs);
    l->docs = out.docs;
    l->n = out.n;
    l->cap = out.cap;
    return MSA_OK;
}

/* One line of at most max bytes (the newline included); -1 at end of input, -2 when the line is longer. The
 * line is read byte for byte (a NUL inside stays inside, for the JSON parser to refuse). */
#define MAX_JSONL_LINE ((size_t)256 << 20)
static ssize_t read_line_capped(FILE *f, char **line, size_t *cap, size_t max) {
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF) {
        if (n + 2 > *cap) {
            if (n >= max) return -2;
            size_t nc = *cap ? 2 * *cap : 4096;
            if (nc > max + 2) nc = max + 2;
            char *b = realloc(*line, nc);
            if (!b) return -3;
            *line = b;
            *cap = nc;
        }
        (*line)[n++] = (char)c;
        if (c == '\n') break;
    }
    if (n == 0) return -1;
    (*line)[n] = '\0';
    return (ssize_t)n;
}

static msa_status add_jsonl(doc_list *l, const char *path) {
    FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "rb");
    if (!f) return msa_fail(errno == ENOENT ? MSA_ERR_NOT_FOUND : MSA_ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    msa_status st = MSA_OK;
    for (size_t lineno = 1; !st; lineno++) {
        len = read_line_capped(f, &line, &cap, MAX_JSONL_LINE);
        if (len == -1) break;
        if (len == -2) {
            st = msa_fail(MSA_ERR_LIMIT, "%s:%zu: line longer than %zu MiB", path, lineno, MAX_JSONL_LINE >> 20);
            break;
        }
        if (len < 0) {
            st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            break;
        }
        size_t i = 0;
        while (i < (size_t)len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) i++;
        if (i == (size_t)len) continue; /* blank line */
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)len, 0, &err);
        json_t *id = o ? json_object_get(o, "id") : NULL, *text = o ? json_object_get(o, "text") : NULL;
        json_t *meta = o ? json_object_get(o, "meta") : NULL;
        if (!o || !json_is_object(o)) st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: not a JSON object (%s)", path, lineno, o ? "" : err.text);
        else if (!json_is_string(id) || json_string_length(id) == 0)
            st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"id\" must be a non-empty string", path, lineno);
        else if (!json_is_string(text)) st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"text\" must be a string", path, lineno);
        else if (meta && !json_is_object(meta) && !json_is_null(meta))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"meta\" must be an object", path, lineno);
        else if (strlen(json_string_value(id)) != json_string_length(id))
            st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"id\" contains a NUL character", path, lineno);
        if (!st) {
            char *sid = keep(l, strdup(json_string_value(id)));
            size_t tl = json_string_length(text);
            char *t = keep(l, malloc(tl + 1));
            char *m = meta && json_is_object(meta) ? keep(l, json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS)) : NULL;
            if (!sid || !t || (meta && json_is_object(meta) && !m)) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            else {
                memcpy(t, json_string_value(text), tl);
                t[tl] = '\0';
                st = push(l, sid, t, tl, m);
            }
        }
        json_decref(o);
    }
    free(line);
    if (f != stdin) fclose(f);
    return st;
}

static void free_docs(doc_list *l) {
    for (size_t i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->owned);
    free(l->docs);
}

/* --synthetic: deterministic vectors from the text (for tests and benchmarks without a model) */
static msa_status add_synthetic(msa_bank *b, const doc_list *l, bool replace, msa_ingest_report *rep) {
    msa_bank_info bi;
    msa_bank_get_info(b, &bi);
    const msa_bank_shape *sh = &bi.shape;
    size_t es = msa_bank_dtype_size(sh->dtype);
    double t0 = now_s(), last = 0;
    bool tty = isatty(2);
    msa_status st = MSA_OK;
    for (size_t i = 0; i < l->n && !st; i++) {
        const msa_doc_input *in = &l->docs[i];
        uint64_t n_tokens = in->text_len / 4 + 1;
        uint32_t n_chunks = (uint32_t)((n_tokens + (uint64_t)sh->pooling - 1) / (uint64_t)sh->pooling);
        uint64_t seed = XXH3_64bits(in->text, in->text_len);
        void *rk[MSA_BANK_MAX_LAYERS] = {0}, *km[MSA_BANK_MAX_LAYERS] = {0}, *vm[MSA_BANK_MAX_LAYERS] = {0};
        uint64_t kv = (uint64_t)n_chunks * (uint64_t)sh->n_kv_heads * (uint64_t)sh->head_dim;
        for (int s = 0; s < sh->n_router && !st; s++) {
            uint64_t nr = (uint64_t)n_chunks * (uint64_t)sh->route_dim[s];
            rk[s] = malloc(nr * es);
            if (sh->mode == MSA_BANK_NATIVE) {
                km[s] = malloc(kv * es);
                vm[s] = malloc(kv * es);
            }
            if (!rk[s] || (sh->mode == MSA_BANK_NATIVE && (!km[s] || !vm[s]))) {
                st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                break;
            }
            void *bufs[3] = {rk[s], km[s], vm[s]};
            uint64_t counts[3] = {nr, kv, kv};
            for (int k = 0; k < 3; k++) {
                if (!bufs[k]) continue;
                uint64_t x = seed ^ ((uint64_t)s << 40) ^ ((uint64_t)k << 56);
                for (uint64_t e = 0; e < counts[k]; e++) {
                    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                    float f = (float)((int64_t)(x >> 40) - (1 << 23)) / (float)(1 << 23);
                    if (sh->dtype == MSA_BANK_F32) memcpy((float *)bufs[k] + e, &f, 4);
                    else {
                        uint32_t u;
                        memcpy(&u, &f, 4);
                        ((uint16_t *)bufs[k])[e] = (uint16_t)(u >> 16);
                    }
                }
            }
        }
        if (!st) {
            msa_bank_doc d = {.id = in->id, .text = in->text, .text_len = in->text_len, .meta_json = in->meta_json,
                              .n_tokens = n_tokens, .n_chunks = n_chunks, .route_keys = (const void *const *)rk,
                              .k_mean = (const void *const *)km, .v_mean = (const void *const *)vm};
            msa_bank_doc_state ds;
            st = msa_bank_add(b, &d, replace, &ds, NULL);
            if (!st) {
                if (ds == MSA_BANK_DOC_UNCHANGED) rep->n_unchanged++;
                else {
                    rep->n_tokens_encoded += n_tokens;
                    if (ds == MSA_BANK_DOC_DIFFERENT) rep->n_replaced++;
                    else rep->n_added++;
                }
            }
        }
        for (int s = 0; s < MSA_BANK_MAX_LAYERS; s++) {
            free(rk[s]);
            free(km[s]);
            free(vm[s]);
        }
        double t = now_s();
        if (tty && (t - last > 0.2 || i + 1 == l->n)) {
            double dt = t - t0, tps = dt > 0 ? (double)rep->n_tokens_encoded / dt : 0;
            double eta = i + 1 < l->n ? dt * (double)(l->n - i - 1) / (double)(i + 1) : 0;
            fprintf(stderr, "\radding: %zu/%zu documents, %.0f tokens/s, ETA %.0f s   ", i + 1, l->n, tps, eta);
            last = t;
        }
    }
    if (tty) fputc('\n', stderr);
    if (!st) st = msa_bank_commit(b);
    rep->seconds = now_s() - t0;
    return st;
}

int bank_add(const cli_args *a) {
    const char *path = a->pos[0], *model_path = cli_get(a, "--model"), *router = cli_get(a, "--router");
    const char *stdin_id = cli_get(a, "--id");
    if (!stdin_id) stdin_id = "stdin";
    bool replace = cli_has(a, "--replace"), synthetic = cli_has(a, "--synthetic");
    doc_list l = {0};
    add_ctx c = {&l, 0};
    msa_status st = MSA_OK;
    int n_inputs = a->n_pos - 1, n_jsonl = cli_all(a, "--jsonl", NULL, 0);
    if (n_inputs + n_jsonl == 0) return cli_usage_error("bank add", "nothing to add (files, directories, - or --jsonl)");
    for (int i = 0; !st && i < n_inputs; i++) {
        const char *in = a->pos[1 + i];
        if (!strcmp(in, "-")) {
            char *text;
            size_t len;
            st = read_stream(stdin, "stdin", &text, &len);
            if (!st && !keep(&l, text)) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
            if (!st) st = push(&l, stdin_id, text, len, NULL);
            continue;
        }
        struct stat sb;
        if (stat(in, &sb) != 0) st = msa_fail(MSA_ERR_NOT_FOUND, "%s: %s", in, strerror(errno));
        else if (S_ISDIR(sb.st_mode)) {
            dir_seen seen = {0};
            st = add_dir(&c, in, 0, &seen);
            free(seen.dev);
            free(seen.ino);
        } else if (S_ISREG(sb.st_mode)) st = add_file(&c, in, false);
        else st = msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file or directory", in);
    }
    const char **jl = calloc((size_t)n_jsonl + 1, sizeof *jl);
    if (!jl) st = st ? st : msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (jl) cli_all(a, "--jsonl", jl, n_jsonl);
    for (int i = 0; !st && i < n_jsonl; i++) st = add_jsonl(&l, jl[i]);
    free(jl);
    /* every id valid before the bank is opened or anything is encoded */
    for (size_t i = 0; !st && i < l.n; i++)
        if (msa_bank_check_id(l.docs[i].id)) {
            char why[256]; /* a copy: the message buffer cannot be formatted into itself */
            snprintf(why, sizeof why, "%s", msa_last_error());
            st = msa_fail(MSA_ERR_BAD_DATA, "input %zu: %s", i + 1, why);
        }
    if (st) {
        free_docs(&l);
        return cli_fail(st);
    }
    msa_bank *b = NULL;
    st = open_bank(path, true, &b);
    msa_ingest_report rep = {0};
    int n_split = 0;
    if (!st && synthetic) {
        st = add_synthetic(b, &l, replace, &rep);
    } else if (!st) {
        msa_bank_info bi;
        msa_bank_get_info(b, &bi);
        if (!model_path && bi.model_path[0]) model_path = bi.model_path;
        msa_model *m = NULL;
        msa_model_params mp = cli_model_params(a);
        if (!model_path) st = msa_fail(MSA_ERR_INVALID_ARG, "%s: no model recorded; give -m MODEL", path);
        if (!st) st = msa_model_load(model_path, &mp, &m);
        if (!st && router && strcmp(router, "none")) st = msa_model_load_router(m, router);
        if (!st) {
            uint8_t fp[32];
            msa_model_fingerprint(m, fp);
            st = msa_bank_check_fingerprint(b, fp);
        }
        if (!st) {
            msa_model_info info;
            msa_model_get_info(m, &info);
            /* the encoder adds a few tokens of its own around a document: keep a margin under the context */
            long budget = cli_int(a, "--split-tokens", info.n_ctx_train > 128 ? info.n_ctx_train - 64 : info.n_ctx_train);
            if (budget > info.n_ctx_train - 8) budget = info.n_ctx_train - 8;
            if (budget < 16) budget = 16;
            st = split_docs(&l, msa_model_tokenizer(m), (size_t)budget, &n_split);
        }
        if (!st) {
            msa_ingest_params ip = msa_ingest_default_params();
            ip.replace = replace;
            ip.progress = true;
            st = msa_bank_ingest(b, m, l.docs, l.n, &ip, &rep);
        }
        msa_model_free(m);
    }
    msa_bank_close(b);
    free_docs(&l);
    if (st) return cli_fail(st);
    printf("added %zu, replaced %zu, unchanged %zu; %" PRIu64 " tokens encoded in %.2f s (durable)", rep.n_added,
           rep.n_replaced, rep.n_unchanged, rep.n_tokens_encoded, rep.seconds);
    if (n_split) printf("; %d long documents split", n_split);
    if (c.n_skipped) printf("; %d inputs skipped (see above)", c.n_skipped);
    putchar('\n');
    return c.n_skipped ? 3 : 0;
}

/* ----------------------------------------------------------------------------------------- rm, ls, info */

int bank_rm(const cli_args *a) {
    msa_bank *b;
    msa_status st = open_bank(a->pos[0], true, &b);
    if (st) return cli_fail(st);
    for (int i = 1; i < a->n_pos && !st; i++) st = msa_bank_remove(b, a->pos[i]);
    if (!st) st = msa_bank_commit(b); /* all or nothing: a missing id commits none */
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
    st = msa_bank_compact(b);
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
