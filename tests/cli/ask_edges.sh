#!/usr/bin/env bash
# ask_edges.sh — the defined behaviour of issue 4's edge cases through `msa bank add` / `msa ask`, in native
# mode on the small synthetic MSA checkpoint (read mode with the default model: ask_edges_read.sh):
# empty bank; empty, one-token and invalid-UTF-8 documents (accepted, invalid bytes stored as U+FFFD:
# test_msa_numerics checks the text); a document longer than the model's context (split into id#0, id#1, ...
# by the CLI, docs/bank-format.md); duplicate ids (same content: unchanged; different content: conflict, exit 73);
# top-k larger than the bank (every document routed). A question longer than allowed and a bank made with
# another model (exit 65): ask.sh. The synthetic checkpoint routes in layers 2 and 3 (its msa_config), so
# every check over the routing list first asserts those two layers: a loop over an empty list proves nothing.
# Every msa run goes through run_msa (common.sh): a crash or sanitizer report fails the script.
set -u
. tests/cli/lib/common.sh
synthetic_checkpoint "$tmp/ck" ask_edges || { finish; exit 0; }
# ---- native mode on the synthetic checkpoint
: >"$tmp/empty.txt"; printf 'x' >"$tmp/one.txt"; printf 'caf\303 \377!' >"$tmp/bad.txt"
python3 -c 'print("lighthouse keeper " * 400)' >"$tmp/long.txt"   # ~800 tokens > the checkpoint's 256
run_msa bank create "$tmp/eb" -m "$tmp/ck"
[ "$rc" -eq 0 ] || { no "bank_create (rc $rc)"; cat "$tmp/err"; }
run_msa ask -m "$tmp/ck" --bank "$tmp/eb" -q "Who kept the lighthouse?" --json -n 2 --rounds 1
if [ $rc -eq 0 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [x["layer"] for x in d["rounds"][0]["routing"]] == [2, 3], d
assert all(x["docs"] == [] for x in d["rounds"][0]["routing"]), d' "$tmp/out"; then ok empty_bank_native; else no "empty_bank_native (rc $rc)"; cat "$tmp/err"; fi
run_msa bank add "$tmp/eb" -m "$tmp/ck" "$tmp/empty.txt" "$tmp/one.txt" "$tmp/bad.txt"
if [ $rc -eq 0 ] && grep -q "added 3" "$tmp/out"; then ok empty_one_token_invalid_utf8_docs_added; else no "empty_one_token_invalid_utf8_docs_added (rc $rc)"; cat "$tmp/out"; fi
run_msa bank add "$tmp/eb" -m "$tmp/ck" "$tmp/long.txt"
# a document over the model's context is split into long.txt#0, #1, ... (docs/bank-format.md), not refused
if [ $rc -eq 0 ] && grep -q "long.txt is .* tokens: split into" "$tmp/err" &&
   $MSA bank ls "$tmp/eb" | grep -q "long.txt#1 "; then ok too_long_document_split; else no "too_long_document_split (rc $rc)"; cat "$tmp/err"; fi
run_msa bank rm "$tmp/eb" $($MSA bank ls "$tmp/eb" --json | python3 -c 'import json,sys
print(" ".join(d["id"] for d in map(json.loads, sys.stdin) if "#" in d["id"]))')
[ "$rc" -eq 0 ] || { no "split_parts_removed (rc $rc)"; cat "$tmp/err"; }
printf '{"id": "d", "text": "same"}\n{"id": "d", "text": "same"}\n' >"$tmp/dup_same.jsonl"
printf '{"id": "e", "text": "one"}\n{"id": "e", "text": "two"}\n' >"$tmp/dup_diff.jsonl"
run_msa bank add "$tmp/eb" -m "$tmp/ck" --jsonl "$tmp/dup_same.jsonl"
if [ $rc -eq 0 ] && grep -q "added 1, replaced 0, unchanged 1" "$tmp/out"; then ok duplicate_id_same_content; else no "duplicate_id_same_content (rc $rc)"; cat "$tmp/out"; fi
run_msa bank add "$tmp/eb" -m "$tmp/ck" --jsonl "$tmp/dup_diff.jsonl"
if [ $rc -eq 73 ] && grep -q "'e' is given twice with different content" "$tmp/err"; then ok duplicate_id_conflict; else no "duplicate_id_conflict (rc $rc)"; cat "$tmp/err"; fi
run_msa ask -m "$tmp/ck" --bank "$tmp/eb" -q "x" --json -n 2 --rounds 1 --docs 1000
if [ $rc -eq 0 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [x["layer"] for x in d["rounds"][0]["routing"]] == [2, 3], d
for x in d["rounds"][0]["routing"]:
    assert sorted(y["id"] for y in x["docs"]) == sorted(["'"$tmp"'/empty.txt", "'"$tmp"'/one.txt", "'"$tmp"'/bad.txt", "d"]), x' "$tmp/out"; then ok edge_docs_routed; else no "edge_docs_routed (rc $rc)"; cat "$tmp/err"; fi
finish
