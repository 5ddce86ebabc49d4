/* fuzz_bank_segment.c — libFuzzer target for the bank segment parser (src/bank/format.c): header, section
 * table and document table of hostile bytes, against the synthetic-small shape (native, or read mode when
 * the input length is odd). The bank uuid is taken from the input so the fuzzer can reach past that check.
 * Whatever parses is walked the way readers walk it: every record, id, metadata and content range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bank/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msa_bank_shape shape;
    msa_bank_shape_named("synthetic-small", &shape);
    if (size & 1) shape.mode = MSA_BANK_READ;
    uint8_t uuid[16] = {0};
    if (size >= 72) memcpy(uuid, data + 56, 16);
    bank_segment seg;
    if (bank_segment_parse(data, size, &shape, uuid, "fuzz", &seg) != MSA_OK) return 0;
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < seg.n_docs; i++) {
        bank_doc_rec r;
        bank_segment_doc(&seg, i, &r);
        sink += strlen((const char *)seg.strings + r.id_off) + strlen((const char *)seg.strings + r.meta_off);
        if (r.text_zlen) sink += seg.text[r.text_off + r.text_zlen - 1];
        uint64_t c = bank_doc_content_bytes(&shape, r.n_chunks);
        if (c) sink += seg.content[r.content_off + c - 1];
        for (int l = 0; l < shape.n_router; l++) {
            uint64_t row = bank_route_row_bytes(&shape, l);
            sink += seg.route[l][(r.chunk_first + r.n_chunks) * row - 1];
        }
    }
    (void)sink;
    return 0;
}
