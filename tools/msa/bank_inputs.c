/* bank_inputs.c — collecting the inputs of `msa bank add` without keeping their texts (bank_inputs.h). Why:
 * an add of a large corpus must not need memory in proportion to it; the texts are read again, a batch at a
 * time, when they are encoded. What is kept per document is its id and a locator (about 40 bytes beside the
 * id), so every id can still be checked before anything is encoded. */
#include "bank_inputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

typedef struct stream {
    int fd;
    bool owned; /* close at free (the spool, a JSONL file; not fd 0) */
    char *name; /* for messages */
} stream;

/* Strings live in 1 MiB blocks: per-document ids and paths without a malloc each. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

struct bank_inputs {
    bank_input *docs;
    size_t n, cap;
    stream *streams;
    int n_streams, cap_streams;
    int stdin_stream;       /* -1 until stdin is first used */
    uint64_t stdin_off, stdin_end; /* the part of the stdin stream not yet given to an input */
    arena_block *arena;
    size_t arena_bytes;
    int n_skipped;
};

bank_inputs *bank_inputs_new(void) {
    bank_inputs *l = calloc(1, sizeof *l);
    if (l) l->stdin_stream = -1;
    return l;
}

void bank_inputs_free(bank_inputs *l) {
    if (!l) return;
    for (int i = 0; i < l->n_streams; i++) {
        if (l->streams[i].owned) close(l->streams[i].fd);
        free(l->streams[i].name);
    }
    free(l->streams);
    for (arena_block *b = l->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(l->docs);
    free(l);
}

size_t bank_inputs_count(const bank_inputs *l) { return l->n; }
const bank_input *bank_inputs_get(const bank_inputs *l, size_t i) { return &l->docs[i]; }
int bank_inputs_skipped(const bank_inputs *l) { return l->n_skipped; }
size_t bank_inputs_bytes(const bank_inputs *l) { return l->arena_bytes + l->cap * sizeof *l->docs; }

static const char *arena_dup(bank_inputs *l, const char *s, size_t n) {
    arena_block *b = l->arena;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > ((size_t)1 << 20) ? n + 1 : (size_t)1 << 20;
        arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->used = 0, nb->cap = cap;
        if (b && n + 1 > ((size_t)1 << 20)) { /* a big string gets its own block; the current one stays open */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            l->arena = nb;
        }
        l->arena_bytes += sizeof *nb + cap;
        b = nb;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    p[n] = '\0';
    b->used += n + 1;
    return p;
}

static msa_status push(bank_inputs *l, bank_input in) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        bank_input *d = realloc(l->docs, cap * sizeof *d);
        if (!d) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        l->docs = d;
        l->cap = cap;
    }
    /* every id valid before the bank is opened or anything is encoded */
    if (msa_bank_check_id(in.id)) {
        char why[256]; /* a copy: the message buffer cannot be formatted into itself */
        snprintf(why, sizeof why, "%s", msa_last_error());
        return msa_fail(MSA_ERR_BAD_DATA, "input %zu: %s", l->n + 1, why);
    }
    l->docs[l->n++] = in;
    return MSA_OK;
}

static int add_stream(bank_inputs *l, int fd, bool owned, const char *name) {
    if (l->n_streams == l->cap_streams) {
        int cap = l->cap_streams ? 2 * l->cap_streams : 8;
        stream *s = realloc(l->streams, (size_t)cap * sizeof *s);
        if (!s) return -1;
        l->streams = s;
        l->cap_streams = cap;
    }
    char *nm = strdup(name);
    if (!nm) return -1;
    l->streams[l->n_streams] = (stream){fd, owned, nm};
    return l->n_streams++;
}

static void skip(bank_inputs *l, const char *path, const char *why) {
    fprintf(stderr, "msa bank add: skipped %s: %s\n", path, why);
    l->n_skipped++;
}

/* pread of exactly n bytes; a short read (the file shrank) is reported as a change */
static msa_status read_at(int fd, void *buf, size_t n, uint64_t off, const char *name) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return msa_fail(MSA_ERR_IO, "%s: read failed: %s", name, strerror(errno));
        if (r == 0) return msa_fail(MSA_ERR_CONFLICT, "%s: changed while it was being added (shorter); run the add again", name);
        done += (size_t)r;
    }
    return MSA_OK;
}

/* ------------------------------------------------------------------------------------------------ stdin */

/* Copy what can be read only once (a pipe, a terminal, a FIFO) into an unlinked temporary file in $TMPDIR
 * (default /tmp): that is what lets a streamed add read it twice. At most max bytes. */
static msa_status spool(bank_inputs *l, int src, const char *name, uint64_t max, int *s_out, uint64_t *len_out) {
    const char *dir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/.msa-spool-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0) return msa_fail(MSA_ERR_IO, "%s: cannot spool it to %s: %s", name, tmpl, strerror(errno));
    unlink(tmpl); /* nothing is left behind, whatever happens next */
    int s = add_stream(l, fd, true, name);
    if (s < 0) {
        close(fd);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    char *buf = malloc(1 << 16);
    if (!buf) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    uint64_t n = 0;
    msa_status st = MSA_OK;
    for (;;) {
        ssize_t r = read(src, buf, 1 << 16);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = msa_fail(MSA_ERR_IO, "%s: read failed: %s", name, strerror(errno));
            break;
        }
        if (r == 0) break;
        if (n + (uint64_t)r > max) {
            st = msa_fail(MSA_ERR_LIMIT, "%s: larger than %llu MiB", name, (unsigned long long)(max >> 20));
            break;
        }
        for (ssize_t w = 0; w < r && !st;) {
            ssize_t k = pwrite(fd, buf + w, (size_t)(r - w), (off_t)(n + (uint64_t)w));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) st = msa_fail(MSA_ERR_IO, "%s: cannot spool it to %s: %s", name, dir && *dir ? dir : "/tmp",
                                      k < 0 ? strerror(errno) : "short write");
            else w += k;
        }
        if (st) break;
        n += (uint64_t)r;
    }
    free(buf);
    *s_out = s, *len_out = n;
    return st;
}

/* stdin as a stream: a regular file is read in place from its current offset, anything else spooled. A
 * second use of stdin finds it at its end, as a second read of a pipe would. */
static msa_status stdin_stream(bank_inputs *l, uint64_t max) {
    if (l->stdin_stream >= 0) return MSA_OK;
    struct stat sb;
    off_t cur = lseek(0, 0, SEEK_CUR);
    if (fstat(0, &sb) == 0 && S_ISREG(sb.st_mode) && cur >= 0) {
        int s = add_stream(l, 0, false, "stdin");
        if (s < 0) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        l->stdin_stream = s;
        l->stdin_off = (uint64_t)cur;
        l->stdin_end = (uint64_t)sb.st_size > (uint64_t)cur ? (uint64_t)sb.st_size : (uint64_t)cur;
        return MSA_OK;
    }
    int s;
    uint64_t n;
    msa_status st = spool(l, 0, "stdin", max, &s, &n);
    l->stdin_stream = s;
    l->stdin_off = 0;
    l->stdin_end = n;
    return st;
}

/* ------------------------------------------------------------------------------------------------ files */

/* A document id from a path: repeated slashes collapsed, "./" components and a trailing slash dropped
 * (`sub//x.md` and `./sub/x.md` are both `sub/x.md`), so the same file always gets the same id. */
static char *normalise_path(const char *p) {
    size_t n = strlen(p);
    char *o = malloc(n + 2);
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

/* A file is checked now (size, binary) and read again when it is encoded. Binary: a NUL byte in the first
 * 64 KiB (what git and grep call binary); such a file (a GGUF, an image) would be read as millions of junk
 * tokens. */
static msa_status add_file(bank_inputs *l, const char *path, bool in_dir) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (in_dir) { /* one unreadable file does not stop a directory */
            skip(l, path, strerror(errno));
            return MSA_OK;
        }
        return msa_fail(errno == ENOENT ? MSA_ERR_NOT_FOUND : MSA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    char *head = malloc(65536);
    ssize_t got = 0;
    msa_status st = MSA_OK;
    if (!head) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
    else if (fstat(fd, &sb) != 0) st = msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
    else if ((uint64_t)sb.st_size > BANK_INPUT_MAX_DOC) st = msa_fail(MSA_ERR_LIMIT, "%s: larger than 1 GiB", path);
    else {
        while (got < 65536) {
            ssize_t r = read(fd, head + got, (size_t)(65536 - got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                st = msa_fail(MSA_ERR_IO, "%s: read failed: %s", path, strerror(errno));
                break;
            }
            if (r == 0) break;
            got += r;
        }
    }
    close(fd);
    bool binary = !st && memchr(head, 0, (size_t)got) != NULL;
    free(head);
    if (st) {
        if (!in_dir || st == MSA_ERR_NOMEM) return st;
        skip(l, path, msa_last_error());
        return MSA_OK;
    }
    if (binary) {
        skip(l, path, "binary file (a NUL byte in its first 64 KiB)");
        return MSA_OK;
    }
    char *id = normalise_path(path);
    const char *kid = id ? arena_dup(l, id, strlen(id)) : NULL;
    const char *kpath = kid ? arena_dup(l, path, strlen(path)) : NULL;
    free(id);
    if (!kpath) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    return push(l, (bank_input){.id = kid, .path = kpath, .stream = -1});
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

static msa_status add_dir(bank_inputs *l, const char *dir, int depth, dir_seen *seen) {
    if (depth > 64) return msa_fail(MSA_ERR_LIMIT, "%s: directories nested too deeply", dir);
    struct stat self;
    if (stat(dir, &self) != 0) return msa_fail(MSA_ERR_IO, "%s: %s", dir, strerror(errno));
    int fresh = seen_add(seen, &self);
    if (fresh < 0) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    if (fresh == 0) return MSA_OK; /* reached again through a link: already walked */
    DIR *d = opendir(dir);
    if (!d) {
        if (depth == 0) return msa_fail(MSA_ERR_IO, "%s: %s", dir, strerror(errno));
        skip(l, dir, strerror(errno));
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
            skip(l, names[i], strerror(errno));
            continue;
        }
        if (S_ISDIR(sb.st_mode)) st = add_dir(l, names[i], depth + 1, seen);
        else if (S_ISREG(sb.st_mode)) st = add_file(l, names[i], true); /* FIFOs, sockets, devices: skipped */
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

msa_status bank_inputs_add_path(bank_inputs *l, const char *in, const char *stdin_id) {
    if (!strcmp(in, "-")) {
        MSA_TRY(stdin_stream(l, BANK_INPUT_MAX_DOC + 1));
        uint64_t off = l->stdin_off, len = l->stdin_end - l->stdin_off;
        if (len > BANK_INPUT_MAX_DOC) return msa_fail(MSA_ERR_LIMIT, "stdin: larger than 1 GiB");
        l->stdin_off = l->stdin_end; /* consumed */
        const char *id = arena_dup(l, stdin_id, strlen(stdin_id));
        if (!id) return msa_fail(MSA_ERR_NOMEM, "out of memory");
        return push(l, (bank_input){.id = id, .stream = l->stdin_stream, .off = off, .len = len});
    }
    struct stat sb;
    if (stat(in, &sb) != 0) return msa_fail(MSA_ERR_NOT_FOUND, "%s: %s", in, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        dir_seen seen = {0};
        msa_status st = add_dir(l, in, 0, &seen);
        free(seen.dev);
        free(seen.ino);
        return st;
    }
    if (S_ISREG(sb.st_mode)) return add_file(l, in, false);
    return msa_fail(MSA_ERR_BAD_DATA, "%s: not a regular file or directory", in);
}

/* ------------------------------------------------------------------------------------------------ JSONL */

/* One JSON line's fields, checked as every pass needs them. *o is the parsed object (decref it). */
static msa_status parse_line(const char *line, size_t len, const char *path, size_t lineno, json_t **o_out,
                             json_t **id_out, json_t **text_out, json_t **meta_out) {
    json_error_t err;
    json_t *o = json_loadb(line, len, 0, &err);
    json_t *id = o ? json_object_get(o, "id") : NULL, *text = o ? json_object_get(o, "text") : NULL;
    json_t *meta = o ? json_object_get(o, "meta") : NULL;
    msa_status st = MSA_OK;
    if (!o || !json_is_object(o)) st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: not a JSON object (%s)", path, lineno, o ? "" : err.text);
    else if (!json_is_string(id) || json_string_length(id) == 0)
        st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"id\" must be a non-empty string", path, lineno);
    else if (!json_is_string(text)) st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"text\" must be a string", path, lineno);
    else if (meta && !json_is_object(meta) && !json_is_null(meta))
        st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"meta\" must be an object", path, lineno);
    else if (strlen(json_string_value(id)) != json_string_length(id))
        st = msa_fail(MSA_ERR_BAD_DATA, "%s:%zu: \"id\" contains a NUL character", path, lineno);
    if (st) {
        json_decref(o);
        return st;
    }
    *o_out = o, *id_out = id, *text_out = text, *meta_out = meta;
    return MSA_OK;
}

/* Lines of [off, end) of fd, read in blocks; each non-blank line becomes one input (its byte range). A line
 * is read byte for byte (a NUL inside stays inside, for the JSON parser to refuse). */
static msa_status scan_jsonl(bank_inputs *l, int s, uint64_t off, uint64_t end, const char *path) {
    int fd = l->streams[s].fd;
    size_t bcap = 1 << 20, bn = 0, bpos = 0; /* block buffer: bytes [bpos, bn) unread */
    char *blk = malloc(bcap), *line = NULL;
    size_t lcap = 0;
    msa_status st = blk ? MSA_OK : msa_fail(MSA_ERR_NOMEM, "out of memory");
    uint64_t pos = off; /* file offset of blk[bn] */
    for (size_t lineno = 1; !st; lineno++) {
        size_t n = 0;
        uint64_t start = pos - (bn - bpos);
        bool eol = false, eof = false;
        while (!eol && !st) {
            if (bpos == bn) {
                size_t want = end - pos < bcap ? (size_t)(end - pos) : bcap;
                if (want == 0) {
                    eof = true;
                    break;
                }
                st = read_at(fd, blk, want, pos, path);
                bn = want, bpos = 0, pos += want;
                continue;
            }
            char *nl = memchr(blk + bpos, '\n', bn - bpos);
            size_t take = nl ? (size_t)(nl - (blk + bpos)) + 1 : bn - bpos;
            if (n + take > BANK_INPUT_MAX_LINE) {
                st = msa_fail(MSA_ERR_LIMIT, "%s:%zu: line longer than %zu MiB", path, lineno, BANK_INPUT_MAX_LINE >> 20);
                break;
            }
            if (n + take + 1 > lcap) {
                size_t nc = lcap ? lcap : 4096;
                while (nc < n + take + 1) nc *= 2;
                char *b = realloc(line, nc);
                if (!b) {
                    st = msa_fail(MSA_ERR_NOMEM, "out of memory");
                    break;
                }
                line = b, lcap = nc;
            }
            memcpy(line + n, blk + bpos, take);
            n += take, bpos += take;
            eol = nl != NULL;
        }
        if (st || (eof && n == 0)) break;
        size_t i = 0;
        while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) i++;
        if (i == n) continue; /* blank line */
        json_t *o, *id, *text, *meta;
        st = parse_line(line, n, path, lineno, &o, &id, &text, &meta);
        if (st) break;
        const char *kid = arena_dup(l, json_string_value(id), json_string_length(id));
        json_decref(o);
        if (!kid) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        else st = push(l, (bank_input){.id = kid, .stream = s, .jsonl = true, .off = start, .len = n});
    }
    free(blk);
    free(line);
    return st;
}

msa_status bank_inputs_add_jsonl(bank_inputs *l, const char *path) {
    if (!strcmp(path, "-")) {
        MSA_TRY(stdin_stream(l, UINT64_MAX));
        uint64_t off = l->stdin_off;
        l->stdin_off = l->stdin_end;
        return scan_jsonl(l, l->stdin_stream, off, l->stdin_end, "stdin");
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return msa_fail(errno == ENOENT ? MSA_ERR_NOT_FOUND : MSA_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return msa_fail(MSA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) { /* a FIFO (`--jsonl <(cmd)`) cannot be read twice: spooled, as stdin is */
        int s;
        uint64_t n;
        msa_status st = spool(l, fd, path, UINT64_MAX, &s, &n);
        close(fd);
        return st ? st : scan_jsonl(l, s, 0, n, path);
    }
    int s = add_stream(l, fd, true, path);
    if (s < 0) {
        close(fd);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    return scan_jsonl(l, s, 0, (uint64_t)sb.st_size, path);
}

/* ------------------------------------------------------------------------------------------------- load */

msa_status bank_input_load(const bank_inputs *l, size_t i, char **text_out, size_t *len_out, char **meta_out) {
    const bank_input *in = &l->docs[i];
    *text_out = NULL, *meta_out = NULL, *len_out = 0;
    if (in->path) {
        int fd = open(in->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return msa_fail(errno == ENOENT ? MSA_ERR_CONFLICT : MSA_ERR_IO, "%s: %s", in->path, strerror(errno));
        struct stat sb;
        msa_status st = MSA_OK;
        char *t = NULL;
        if (fstat(fd, &sb) != 0) st = msa_fail(MSA_ERR_IO, "%s: %s", in->path, strerror(errno));
        else if ((uint64_t)sb.st_size > BANK_INPUT_MAX_DOC) st = msa_fail(MSA_ERR_LIMIT, "%s: larger than 1 GiB", in->path);
        else if (!(t = malloc((size_t)sb.st_size + 1))) st = msa_fail(MSA_ERR_NOMEM, "out of memory");
        else st = read_at(fd, t, (size_t)sb.st_size, 0, in->path);
        close(fd);
        if (st) {
            free(t);
            return st;
        }
        t[sb.st_size] = '\0';
        *text_out = t, *len_out = (size_t)sb.st_size;
        return MSA_OK;
    }
    const stream *s = &l->streams[in->stream];
    char *buf = malloc(in->len + 1);
    if (!buf) return msa_fail(MSA_ERR_NOMEM, "out of memory");
    msa_status st = read_at(s->fd, buf, in->len, in->off, s->name);
    if (st) {
        free(buf);
        return st;
    }
    buf[in->len] = '\0';
    if (!in->jsonl) {
        *text_out = buf, *len_out = in->len;
        return MSA_OK;
    }
    json_t *o, *id, *text, *meta;
    st = parse_line(buf, in->len, s->name, 0, &o, &id, &text, &meta);
    free(buf);
    if (st) return msa_fail(MSA_ERR_CONFLICT, "%s: changed while it was being added; run the add again", s->name);
    if (strcmp(json_string_value(id), in->id)) {
        json_decref(o);
        return msa_fail(MSA_ERR_CONFLICT, "%s: changed while it was being added; run the add again", s->name);
    }
    size_t tl = json_string_length(text);
    char *t = malloc(tl + 1), *m = NULL;
    if (t && meta && json_is_object(meta)) m = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    if (!t || (meta && json_is_object(meta) && !m)) {
        json_decref(o);
        free(t);
        free(m);
        return msa_fail(MSA_ERR_NOMEM, "out of memory");
    }
    memcpy(t, json_string_value(text), tl);
    t[tl] = '\0';
    json_decref(o);
    *text_out = t, *len_out = tl, *meta_out = m;
    return MSA_OK;
}
