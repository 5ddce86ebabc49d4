/* cmd_tokenize.c — `msa tokenize`: text on stdin to token ids, or ids back to text with --decode.
 *   msa tokenize (-m MODEL | --tokenizer FILE) [--json] [--special] [--decode]
 * Ids print space-separated on one line (with --json one object: {"schema": "msa.tokenize/1", "ids": [...]},
 * or {"schema": "msa.tokenize/1", "text": "..."} for --decode). --special lets special-token strings
 * in the text become special ids (otherwise they are plain text). --decode reads ids separated by spaces,
 * commas or newlines, or a JSON array, and writes the decoded bytes as they are. MODEL may be a Hugging
 * Face directory, a tokenizer.json or a GGUF file; only its tokenizer is loaded. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

static int read_all(FILE *f, char **buf, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return -1;
    for (;;) {
        if (n == cap) {
            if (cap > ((size_t)1 << 32)) { free(b); return -1; }
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); return -1; }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { free(b); return -1; }
    *buf = b;
    *len = n;
    return 0;
}

/* Ids from text: integers separated by whitespace, commas and JSON brackets. Returns the position of the
 * first bad character, or -1 when all parsed. */
static long parse_ids(const char *s, size_t len, int32_t **ids, size_t *n) {
    size_t cap = 256, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return 0;
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']') { i++; continue; }
        bool neg = c == '-';
        size_t j = i + (neg ? 1 : 0);
        if (j >= len || s[j] < '0' || s[j] > '9') { free(v); return (long)i; }
        long long x = 0;
        while (j < len && s[j] >= '0' && s[j] <= '9') {
            x = x * 10 + (s[j] - '0');
            if (x > INT32_MAX) { free(v); return (long)i; }
            j++;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, cap * 2 * sizeof *nv);
            if (!nv) { free(v); return (long)i; }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)(neg ? -x : x);
        i = j;
    }
    *ids = v;
    *n = k;
    return -1;
}

int cmd_tokenize(const cli_args *a) {
    const char *path = cli_get(a, "--tokenizer");
    if (!path) path = cli_get(a, "--model");
    bool json = cli_has(a, "--json"), special = cli_has(a, "--special"), decode = cli_has(a, "--decode");
    if (!path) return cli_usage_error("tokenize", "give -m MODEL or --tokenizer FILE (msa tokenize --help)");
    msa_tokenizer *tok;
    msa_status st = msa_tokenizer_load(path, &tok);
    if (st != MSA_OK) return cli_fail(st);
    char *in;
    size_t len;
    if (read_all(stdin, &in, &len) != 0) {
        msa_tokenizer_free(tok);
        fprintf(stderr, "msa tokenize: cannot read stdin\n");
        return 74;
    }
    int rc = 0;
    if (decode) {
        int32_t *ids = NULL;
        size_t n = 0;
        long bad = parse_ids(in, len, &ids, &n);
        if (bad >= 0) {
            rc = cli_usage_error("tokenize", "--decode: stdin byte %ld is not part of an id list", bad);
        } else {
            char *text;
            size_t tlen;
            st = msa_detokenize(tok, ids, n, &text, &tlen);
            if (st != MSA_OK) {
                rc = cli_fail(st);
            } else if (json) { /* text that is not UTF-8 (a partial character): its non-ASCII bytes become '?' */
                json_t *t = json_stringn(text, tlen);
                if (!t) {
                    for (size_t i = 0; i < tlen; i++)
                        if ((unsigned char)text[i] >= 0x80) text[i] = '?';
                    t = json_stringn(text, tlen);
                }
                cli_put_json_line(stdout, json_pack("{s:s, s:o}", "schema", "msa.tokenize/1", "text",
                                                    t ? t : json_string("")));
                free(text);
            } else {
                fwrite(text, 1, tlen, stdout);
                /* a terminal gets the prompt back on its own line; a pipe gets the bytes exactly */
                if (isatty(1) && (tlen == 0 || text[tlen - 1] != '\n')) fputc('\n', stdout);
                free(text);
            }
            free(ids);
        }
    } else {
        int32_t *ids;
        size_t n;
        st = msa_tokenize(tok, in, len, special, &ids, &n);
        if (st != MSA_OK) {
            rc = cli_fail(st);
        } else {
            if (json) fputs("{\"schema\":\"msa.tokenize/1\",\"ids\":[", stdout);
            for (size_t i = 0; i < n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", (int)ids[i]);
            fputs(json ? "]}\n" : "\n", stdout);
            free(ids);
        }
    }
    free(in);
    msa_tokenizer_free(tok);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "msa tokenize: write to stdout failed\n");
        return 74;
    }
    return rc;
}
