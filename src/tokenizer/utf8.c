/* utf8.c — strict UTF-8 decoding and the replacement of invalid input. Invalid bytes are replaced exactly as
 * Python's bytes.decode('utf-8', errors='replace') does (one U+FFFD per maximal subpart of an ill-formed
 * sequence, Unicode §3.9 / Table 3-7), so our ids for invalid input equal HF's ids for the decoded str. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

/* The valid range of the second byte after a lead byte (Table 3-7); later bytes are always 80..BF. */
static int utf8_need(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 0;
    if (b >= 0xC2 && b <= 0xDF) return 1;
    if (b == 0xE0) { *lo = 0xA0; return 2; }
    if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return 2;
    if (b == 0xED) { *hi = 0x9F; return 2; }
    if (b == 0xF0) { *lo = 0x90; return 3; }
    if (b >= 0xF1 && b <= 0xF3) return 3;
    if (b == 0xF4) { *hi = 0x8F; return 3; }
    return -1;
}

/* Length of the valid sequence at s (0 if invalid) and, when invalid, the length of its maximal subpart. */
static size_t utf8_scan(const uint8_t *s, size_t n, size_t *bad_len) {
    uint8_t lo, hi;
    int need = utf8_need(s[0], &lo, &hi);
    *bad_len = 1;
    if (need < 0) return 0;
    size_t i = 1;
    for (int k = 0; k < need; k++, i++) {
        uint8_t l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
        if (i >= n || s[i] < l || s[i] > h) {
            *bad_len = i;
            return 0;
        }
    }
    return i;
}

size_t tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    size_t bad;
    size_t len = utf8_scan(s, n, &bad);
    switch (len) {
    case 1: *cp = s[0]; break;
    case 2: *cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F); break;
    case 3: *cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F); break;
    case 4:
        *cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
              (s[3] & 0x3F);
        break;
    default: return 0;
    }
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

msa_status tok_utf8_sanitize(const char *text, size_t len, char **out, size_t *out_len) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, bad;
    *out = NULL;
    *out_len = len;
    while (i < len) {  /* fast path: find the first invalid byte */
        if (s[i] < 0x80) { i++; continue; }
        size_t l = utf8_scan(s + i, len - i, &bad);
        if (!l) break;
        i += l;
    }
    if (i == len) return MSA_OK;
    /* Each invalid subpart of >= 1 byte becomes 3 bytes: at most 3x. */
    if (len > (SIZE_MAX - 1) / 3) return msa_fail(MSA_ERR_LIMIT, "tokenizer: text of %zu bytes is too long", len);
    char *o = malloc(len * 3 + 1);
    if (!o) return msa_fail(MSA_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    memcpy(o, text, i);
    size_t n = i;
    while (i < len) {
        if (s[i] < 0x80) { o[n++] = (char)s[i++]; continue; }
        size_t l = utf8_scan(s + i, len - i, &bad);
        if (l) {
            memcpy(o + n, s + i, l);
            n += l;
            i += l;
        } else {
            memcpy(o + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i += bad;
        }
    }
    o[n] = '\0';
    *out = o;
    *out_len = n;
    return MSA_OK;
}
