/* fuzz_bank_manifest.c — libFuzzer target for the bank MANIFEST parser (src/bank/format.c): any input must be
 * parsed or refused without a crash, and whatever parses must encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bank/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bank_manifest m;
    if (bank_manifest_parse(data, size, "fuzz", &m) != MSA_OK) return 0;
    uint8_t *buf;
    size_t len;
    if (bank_manifest_encode(&m, &buf, &len) == MSA_OK) {
        /* a manifest of this minor version round-trips exactly */
        if (m.minor <= BANK_MINOR && (len != size || memcmp(buf, data, len) != 0)) abort();
        free(buf);
    }
    bank_manifest_free(&m);
    return 0;
}
