/* bank_inputs.h — the inputs of `msa bank add` as a list of documents that are read again when needed, never
 * held all at once (docs/bank-format.md, "Streaming add"). Collecting walks files, directories, JSONL and stdin
 * once, checks every id and size, and keeps per document only its id and where its text is (a path, or a byte
 * range of a JSONL file or of the stdin spool); bank_input_load reads one document's text back. stdin is
 * spooled to an unlinked temporary file (it cannot be read twice); a regular file given as stdin is read in
 * place. */
#ifndef MSA_TOOLS_BANK_INPUTS_H
#define MSA_TOOLS_BANK_INPUTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msa.h"

#define BANK_INPUT_MAX_DOC ((size_t)1 << 30)        /* one file or stdin document: 1 GiB */
#define BANK_INPUT_MAX_LINE ((size_t)256 << 20)     /* one JSONL line: 256 MiB */

typedef struct bank_input {
    const char *id;   /* valid (msa_bank_check_id), owned by the list */
    const char *path; /* a file: its path (owned by the list); NULL otherwise */
    int stream;       /* a JSONL line or stdin: the stream (file or spool) it is in; -1 for a file */
    bool jsonl;       /* the bytes are one JSON line {"id", "text", "meta"} rather than the text itself */
    uint64_t off, len;
} bank_input;

typedef struct bank_inputs bank_inputs;

/* An empty list; NULL when out of memory. Free with bank_inputs_free (closes streams, removes the spool). */
bank_inputs *bank_inputs_new(void);
void bank_inputs_free(bank_inputs *l);

/* Collect: a file or directory path (recursively, sorted; links to directories walked once), "-" (stdin as
 * one document with id stdin_id), or a JSONL file ("-" = stdin). Every id is checked here: an invalid id
 * anywhere fails with MSA_ERR_BAD_DATA before the bank is opened. Unreadable or binary files inside a
 * directory, and binary files given directly, are skipped with a warning on stderr (counted). */
msa_status bank_inputs_add_path(bank_inputs *l, const char *path, const char *stdin_id);
msa_status bank_inputs_add_jsonl(bank_inputs *l, const char *path);

size_t bank_inputs_count(const bank_inputs *l);
const bank_input *bank_inputs_get(const bank_inputs *l, size_t i);
int bank_inputs_skipped(const bank_inputs *l);
/* Bytes of text kept in memory by the list itself: ids and paths (the texts are never kept). */
size_t bank_inputs_bytes(const bank_inputs *l);

/* Read document i again: *text (malloc'd, NUL-terminated, *len bytes) and *meta (malloc'd canonical JSON, or
 * NULL); both owned by the caller. An input that changed since it was collected (a shorter file, a JSONL line
 * that no longer parses or has another id) is MSA_ERR_CONFLICT. */
msa_status bank_input_load(const bank_inputs *l, size_t i, char **text, size_t *len, char **meta);

#endif
