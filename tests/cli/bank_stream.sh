#!/usr/bin/env bash
# bank_stream.sh — `msa bank add` and `msa bank import` with memory bounded by a batch, not by the input
# (issue 12; docs/bank-format.md "Streaming add"). A 100 MiB JSONL (1,600 documents of 64 KiB) is added with
# --batch-mib 4 and the peak RSS of the msa process (getrusage of the child, through python3) must stay under
# 40 MiB — an add that held the input (the code before streaming: 109 MB) fails. The same from a pipe (stdin
# spooled) and from a directory of files; an import of a 77 MB export must keep its heap (RssAnon, sampled)
# under 32 MiB, in a new path and in an existing empty bank (staging every document: 60 MB); with the default
# model, a split document spread over many batches gives the bank one batch gives. And the guarantees streaming
# must keep: an invalid id, an id given twice with different content, or a conflict with the bank on the LAST
# line is refused before anything is encoded (nothing committed, although batches commit on their own); a
# rerun finds everything unchanged.
source "$(dirname "$0")/lib/common.sh"
# under AddressSanitizer (the asan suite) freed memory is held in a quarantine (256 MiB by default), which
# would measure the sanitizer, not msa: off for this script (no effect on other builds)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"

if ! command -v python3 >/dev/null; then no "bank_stream_python3 (python3 is a dependency: scripts/setup-deps.sh)"; finish; exit 0; fi

# peak_rss OUTVAR ARGS...: run msa ARGS (stdin from $PEAK_STDIN when set: piped through cat), output in
# $tmp/out and $tmp/err, exit status in $rc, the peak resident set of the msa process (KiB) in OUTVAR and its
# peak anonymous memory (heap; no file pages: KiB) in $anon (lib/peak_mem.py)
peak_rss() {
    local var=$1; shift
    local line
    line=$(python3 "$(dirname "$0")/lib/peak_mem.py" "$tmp" ${PEAK_STDIN:+--stdin "$PEAK_STDIN"} -- "$MSA" "$@")
    read -r rc "$var" anon <<<"$line"
    msa_check_crash "$*"
}
LIMIT_KB=$((40 * 1024))

python3 - "$tmp" <<'EOF'
import json, os, sys
d = sys.argv[1]
filler = ('lorem ipsum dolor sit amet ' * 2500)[:65536]
with open(d + '/big.jsonl', 'w') as f:
    for i in range(1600):
        f.write(json.dumps({"id": "doc%05d" % i, "text": "document %d. " % i + filler}) + "\n")
with open(d + '/big.jsonl') as f:
    lines = f.readlines()
# the same input with one bad line at the very end
def variant(name, last):
    with open(d + '/' + name, 'w') as f:
        f.writelines(lines)
        f.write(json.dumps(last) + "\n")
variant('bad_id.jsonl', {"id": "x" * 5000, "text": "too long an id"})
variant('dup.jsonl', {"id": "doc00003", "text": "other content for an id given before"})
os.makedirs(d + '/dir/sub')
for i in range(96):
    with open(d + '/dir/%s/f%03d.txt' % ('sub' if i % 2 else '.', i), 'w') as f:
        f.write("file %d. " % i + filler * 8)  # 512 KiB each, 48 MiB in all
EOF
[ "$(stat -c %s "$tmp/big.jsonl")" -gt 100000000 ] && ok stream_input_made || no stream_input_made

count_docs() { "$MSA" bank info "$1" --json | sed -n 's/.*"documents":\([0-9]*\),.*/\1/p'; }

B=$tmp/b
run_msa bank create "$B" --shape-of synthetic-small --pooling 4096
[ "$rc" -eq 0 ] && ok stream_create || no "stream_create (exit $rc: $(head -c 300 "$tmp/err"))"

# refused up front: the bad line is the last of 1,601; batches commit on their own, so "nothing committed"
# means the check ran before the first batch
peak_rss kb bank add "$B" --jsonl "$tmp/bad_id.jsonl" --synthetic --batch-mib 4
[ "$rc" -eq 65 ] && [ "$(count_docs "$B")" = 0 ] && ok stream_invalid_id_last_line_nothing_added ||
    no "stream_invalid_id_last_line_nothing_added (exit $rc, $(count_docs "$B") documents: $(head -c 300 "$tmp/err"))"
peak_rss kb bank add "$B" --jsonl "$tmp/dup.jsonl" --synthetic --batch-mib 4
[ "$rc" -eq 73 ] && grep -q "given twice with different content" "$tmp/err" && [ "$(count_docs "$B")" = 0 ] &&
    ok stream_duplicate_last_line_nothing_added ||
    no "stream_duplicate_last_line_nothing_added (exit $rc, $(count_docs "$B") documents: $(head -c 300 "$tmp/err"))"

# the add itself: bounded memory, every document there, several durable batches
peak_rss kb bank add "$B" --jsonl "$tmp/big.jsonl" --synthetic --batch-mib 4
echo "# jsonl add: peak RSS $kb KiB for a $(($(stat -c %s "$tmp/big.jsonl") >> 20)) MiB input"
[ "$rc" -eq 0 ] && grep -q "added 1600, replaced 0, unchanged 0" "$tmp/out" && grep -q "batches, each committed" "$tmp/out" &&
    ok stream_jsonl_added || no "stream_jsonl_added (exit $rc: $(cat "$tmp/out") $(head -c 300 "$tmp/err"))"
[ "$kb" -gt 0 ] && [ "$kb" -lt "$LIMIT_KB" ] && ok stream_jsonl_peak_rss_bounded ||
    no "stream_jsonl_peak_rss_bounded ($kb KiB, limit $LIMIT_KB KiB)"
[ "$(count_docs "$B")" = 1600 ] && "$MSA" bank verify "$B" >/dev/null 2>&1 && ok stream_jsonl_verify ||
    no "stream_jsonl_verify ($(count_docs "$B") documents)"
# a document's text survived the three passes byte for byte
"$MSA" bank ls "$B" --json | grep -q '"id":"doc01599","index":1599,' && ok stream_jsonl_order || no stream_jsonl_order

# a conflict with the bank on the last line: refused before any batch (nothing more committed)
python3 -c "
import json,sys
lines=open(sys.argv[1]).readlines()
new=[json.dumps({'id':'new%05d'%i,'text':'new document %d '%i+'x'*60000})+'\n' for i in range(200)]
open(sys.argv[2],'w').writelines(new+[json.dumps({'id':'doc00007','text':'changed'})+'\n'])
" "$tmp/big.jsonl" "$tmp/conflict.jsonl"
peak_rss kb bank add "$B" --jsonl "$tmp/conflict.jsonl" --synthetic --batch-mib 1
[ "$rc" -eq 73 ] && grep -q "already in the bank with different content" "$tmp/err" && [ "$(count_docs "$B")" = 1600 ] &&
    ok stream_bank_conflict_last_line_nothing_added ||
    no "stream_bank_conflict_last_line_nothing_added (exit $rc, $(count_docs "$B") documents: $(head -c 300 "$tmp/err"))"

# a rerun reads and finds everything unchanged (what a resume after a crash between batches does)
peak_rss kb bank add "$B" --jsonl "$tmp/big.jsonl" --synthetic --batch-mib 4
[ "$rc" -eq 0 ] && grep -q "added 0, replaced 0, unchanged 1600" "$tmp/out" && [ "$kb" -lt "$LIMIT_KB" ] &&
    ok stream_rerun_unchanged || no "stream_rerun_unchanged (exit $rc, $kb KiB: $(cat "$tmp/out"))"

# from a pipe: stdin is spooled to an unlinked temporary file, not to memory
B2=$tmp/b2
"$MSA" bank create "$B2" --shape-of synthetic-small --pooling 4096 >/dev/null
PEAK_STDIN=$tmp/big.jsonl peak_rss kb bank add "$B2" --jsonl - --synthetic --batch-mib 4
echo "# stdin add: peak RSS $kb KiB"
[ "$rc" -eq 0 ] && grep -q "added 1600," "$tmp/out" && [ "$kb" -lt "$LIMIT_KB" ] && ok stream_stdin_pipe_bounded ||
    no "stream_stdin_pipe_bounded (exit $rc, $kb KiB: $(cat "$tmp/out") $(head -c 300 "$tmp/err"))"
ls -A "${TMPDIR:-/tmp}" 2>/dev/null | grep -q '^\.msa-spool-' && no stream_spool_left_behind || ok stream_spool_removed

# inputs that can be read only once, or in place: a FIFO given as --jsonl (process substitution: spooled), and a
# regular file redirected to stdin (read in place, from its current offset); ids and texts as given
B4=$tmp/b4
"$MSA" bank create "$B4" --shape-of synthetic-small >/dev/null
printf '{"id":"f1","text":"fifo one"}\n{"id":"f2","text":"fifo two"}\n' >"$tmp/small.jsonl"
run_msa bank add "$B4" --jsonl <(cat "$tmp/small.jsonl") --synthetic
[ "$rc" -eq 0 ] && grep -q "added 2," "$tmp/out" && ok stream_fifo_jsonl || no "stream_fifo_jsonl (exit $rc: $(head -c 300 "$tmp/err"))"
printf 'skipped header line\nthe document text' >"$tmp/redir.txt"
{ read -r _; "$MSA" bank add "$B4" - --id redirected --synthetic >"$tmp/out" 2>"$tmp/err"; } <"$tmp/redir.txt"; rc=$?
[ "$rc" -eq 0 ] && "$MSA" bank ls "$B4" --json | grep -q '"id":"redirected"' && ok stream_stdin_regular_file ||
    no "stream_stdin_regular_file (exit $rc: $(head -c 300 "$tmp/err"))"
# the offset was honoured: the stored text is what followed the line read before msa started (17 bytes)
"$MSA" bank ls "$B4" --json | grep '"id":"redirected"' | grep -q '"tokens":5,' && ok stream_stdin_offset ||
    no "stream_stdin_offset ($("$MSA" bank ls "$B4" --json | grep redirected))"

# a directory of files: 48 MiB in 96 files, --batch-mib 2
B3=$tmp/b3
"$MSA" bank create "$B3" --shape-of synthetic-small --pooling 4096 >/dev/null
peak_rss kb bank add "$B3" "$tmp/dir" --synthetic --batch-mib 2
echo "# directory add: peak RSS $kb KiB"
[ "$rc" -eq 0 ] && grep -q "added 96," "$tmp/out" && [ "$kb" -lt "$LIMIT_KB" ] && ok stream_dir_bounded ||
    no "stream_dir_bounded (exit $rc, $kb KiB: $(cat "$tmp/out") $(head -c 300 "$tmp/err"))"

# import: a bank with 75 MiB of incompressible text (the export holds it compressed no smaller) imported into
# a new path and into an existing empty bank with bounded heap: the document segment is copied from the
# export's mapping, never staged in memory (before: every document's text and routing keys were staged until
# one commit at the end: 160 MB of heap here)
python3 -c "
import base64, json, os, sys
with open(sys.argv[1], 'w') as f:
    for i in range(1200):
        f.write(json.dumps({'id': 'r%05d' % i, 'text': base64.b64encode(os.urandom(49152)).decode()}) + '\\n')
" "$tmp/rand.jsonl"
R=$tmp/r
"$MSA" bank create "$R" --shape-of synthetic-small --pooling 4096 >/dev/null
peak_rss kb bank add "$R" --jsonl "$tmp/rand.jsonl" --synthetic --batch-mib 8
[ "$rc" -eq 0 ] && grep -q "added 1200," "$tmp/out" && ok stream_random_added || no "stream_random_added (exit $rc: $(head -c 300 "$tmp/err"))"
run_msa bank export "$R" "$tmp/r.msax"
[ "$rc" -eq 0 ] && [ "$(stat -c %s "$tmp/r.msax")" -gt 60000000 ] && ok stream_export || no "stream_export (exit $rc: $(head -c 300 "$tmp/err"))"
"$MSA" bank ls "$R" >"$tmp/r.ls"
peak_rss kb bank import "$tmp/r.msax" "$tmp/ri"
echo "# import into a new bank: peak heap $anon KiB, peak RSS $kb KiB (file pages of the export's mapping included)"
[ "$rc" -eq 0 ] && grep -q "imported 1200 documents" "$tmp/out" && ok stream_import_new || no "stream_import_new (exit $rc: $(head -c 300 "$tmp/err"))"
[ "$anon" -gt 0 ] && [ "$anon" -lt $((32 * 1024)) ] && ok stream_import_new_heap_bounded ||
    no "stream_import_new_heap_bounded ($anon KiB, limit $((32 * 1024)) KiB)"
"$MSA" bank ls "$tmp/ri" | cmp -s - "$tmp/r.ls" && "$MSA" bank verify "$tmp/ri" >/dev/null 2>&1 && ok stream_import_new_same ||
    no stream_import_new_same
"$MSA" bank create "$tmp/re" --shape-of synthetic-small --pooling 4096 >/dev/null
peak_rss kb bank import "$tmp/r.msax" "$tmp/re"
echo "# import into an existing empty bank: peak heap $anon KiB, peak RSS $kb KiB"
[ "$rc" -eq 0 ] && [ "$anon" -gt 0 ] && [ "$anon" -lt $((32 * 1024)) ] && ok stream_import_existing_heap_bounded ||
    no "stream_import_existing_heap_bounded (exit $rc, $anon KiB: $(head -c 300 "$tmp/err"))"
"$MSA" bank ls "$tmp/re" | cmp -s - "$tmp/r.ls" && "$MSA" bank verify "$tmp/re" >/dev/null 2>&1 &&
    [ "$("$MSA" bank info "$tmp/re" --json | sed -n 's/.*"segments":\([0-9]*\),.*/\1/p')" = 1 ] && ok stream_import_existing_same ||
    no stream_import_existing_same

# with the default model: parts of one split document spread over several batches (--batch-mib 0.001: about
# one part each) must give the bank an add of one batch gives: same ids, indices, tokens and content hashes
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$M" ]; then
    mkdir -p "$tmp/m"
    # ~1,000 tokens in parts of 200; under the sanitizers (MSA_TEST_SMALL) ~330 in parts of 100 (each add of the
    # 1,000 took 55 s under ASan), at least 3 parts either way
    n_lines=60 split=200; [ -n "${MSA_TEST_SMALL:-}" ] && n_lines=20 split=100
    python3 -c "
import json
with open('$tmp/m/long.txt','w') as f:
    for i in range($n_lines): f.write('Line %d of the long document tells about river number %d and its bridges.\\n' % (i, i * 7))
with open('$tmp/m/d.jsonl','w') as f:
    for i in range(5): f.write(json.dumps({'id': 'j%d' % i, 'text': 'Short note %d: the lighthouse keeper counts %d ships.' % (i, i * 3)}) + '\\n')
"
    for k in one many; do
        "$MSA" bank create "$tmp/m/$k" -m "$M" >/dev/null 2>&1 || no "stream_model_create_$k"
    done
    run_msa bank add "$tmp/m/one" "$tmp/m/long.txt" --jsonl "$tmp/m/d.jsonl" --split-tokens $split
    rc1=$rc
    run_msa bank add "$tmp/m/many" "$tmp/m/long.txt" --jsonl "$tmp/m/d.jsonl" --split-tokens $split --batch-mib 0.001
    if [ "$rc1" -eq 0 ] && [ "$rc" -eq 0 ] && grep -q "split into" "$tmp/err" && grep -q "batches, each committed" "$tmp/out"; then
        ok stream_model_batches_ran
    else no "stream_model_batches_ran (exit $rc1 / $rc: $(cat "$tmp/out") $(head -c 300 "$tmp/err"))"; fi
    "$MSA" bank ls "$tmp/m/one" >"$tmp/m/ls1"; "$MSA" bank ls "$tmp/m/many" >"$tmp/m/ls2"
    [ "$(grep -c 'long.txt#' "$tmp/m/ls1")" -ge 3 ] && cmp -s "$tmp/m/ls1" "$tmp/m/ls2" && ok stream_model_batches_same_bank ||
        no "stream_model_batches_same_bank ($(diff "$tmp/m/ls1" "$tmp/m/ls2" | head -5))"
    run_msa bank add "$tmp/m/many" "$tmp/m/long.txt" --jsonl "$tmp/m/d.jsonl" --split-tokens $split --batch-mib 0.001
    [ "$rc" -eq 0 ] && grep -q "added 0, replaced 0, unchanged $(($(wc -l <"$tmp/m/ls1") - 1));" "$tmp/out" &&
        ok stream_model_rerun_unchanged || no "stream_model_rerun_unchanged (exit $rc: $(cat "$tmp/out"))"
else
    echo "SKIP stream_model_batches (default model not installed: make model)"
fi

finish
