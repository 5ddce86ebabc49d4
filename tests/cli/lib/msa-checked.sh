#!/usr/bin/env bash
# msa-checked.sh — what tests/run.sh gives the CLI scripts as $MSA: runs the real binary (MSA_REAL) with the
# same arguments, stdin, stdout and exit status, and watches what a script may not: a death by signal (exit
# status >= 128) and a sanitizer report on stderr (ASan/LSan exit 1, the same as many "expected" failures,
# so a script that only checks the exit code or ignores it would pass). Each such run is appended to
# MSA_CHECK_LOG, which the runner turns into a FAIL line for the script. stderr still streams through.
set -u
real=${MSA_REAL:?MSA_REAL: the msa binary to run}
errf=$(mktemp "${TMPDIR:-/tmp}/msa-checked-XXXXXX")
# stderr goes through tee (a copy for the checks below), stdout straight to fd 3 = our stdout; the pipeline
# waits for both, so the copy is complete when the checks read it
{ "$real" "$@" 2>&1 1>&3 3>&- | tee "$errf" >&2; rc=${PIPESTATUS[0]}; } 3>&1
bad=
if [ $rc -ge 128 ]; then bad="killed by signal $((rc - 128))"; fi
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer|SUMMARY: [A-Za-z]+Sanitizer' "$errf"; then
    bad="${bad:+$bad, }sanitizer report: $(grep -m1 -E 'ERROR: |runtime error:|WARNING: ThreadSanitizer' "$errf" | cut -c1-160)"
fi
if [ -n "$bad" ] && [ -n "${MSA_CHECK_LOG:-}" ]; then
    printf 'msa %s: %s\n' "$(printf '%s ' "$@" | cut -c1-120)" "$bad" >>"$MSA_CHECK_LOG"
fi
rm -f "$errf"
exit $rc
