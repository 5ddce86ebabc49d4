/* bytelevel.c — GPT-2's byte-level alphabet: each byte 0..255 is written as one printable code point
 * (bytes_to_unicode in GPT-2's encoder.py; HF ByteLevel). Printable Latin-1 bytes map to themselves; the
 * other 68 bytes (00-20, 7F-A0, AD) map to U+0100.. in byte order. Vocabulary strings are in this alphabet. */
#include "tokenizer/tok_internal.h"

static int printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (printable(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    return 256u + 67;  /* 0xAD */
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    unsigned n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(0x7F + (n - 33));
    return 0xAD;
}
