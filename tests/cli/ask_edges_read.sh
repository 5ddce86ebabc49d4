#!/usr/bin/env bash
# ask_edges_read.sh — ask_edges.sh's edge cases in read mode with the default model (identity router: the
# upper half of SmolLM2's 30 layers, 15..29; SKIP when the model is not installed), the synthetic MSA
# checkpoint serving as "another model": empty bank; empty, one-token and invalid-UTF-8 documents (accepted);
# a document longer than the model's context of 8192 (split into id#0, id#1 by the CLI); top-k larger than the bank (every
# document routed in every layer; injected: exactly the documents that the documented rule picks from the
# routed scores — per-document sum over layers, best first, kept while >= half the best); a question longer
# than allowed (exit 65); a bank made with another model (exit 65); a read-mode bank asked natively (exit 69).
# (Duplicate ids are checked before encoding, the same in both modes: ask_edges.sh.) Every msa run goes
# through run_msa (common.sh): a crash or sanitizer report fails the script whatever the case checks.
set -u
. tests/cli/lib/common.sh
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$M" ]; then echo "SKIP ask_edges_read (default model not installed: make model)"; finish; exit 0; fi
synthetic_checkpoint "$tmp/ck" ask_edges_read || { finish; exit 0; }
long=$(python3 -c 'print("word " * 3000)')
: >"$tmp/empty.txt"; printf 'x' >"$tmp/one.txt"; printf 'caf\303 \377!' >"$tmp/bad.txt"
run_msa bank create "$tmp/rb" -m "$M" --mode read
[ "$rc" -eq 0 ] || { no "read_bank_create (rc $rc)"; cat "$tmp/err"; }
run_msa ask -m "$M" --bank "$tmp/rb" -q "Who kept the lighthouse?" --json -n 2
if [ $rc -eq 0 ] && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rounds"][0]
assert [x["layer"] for x in r["routing"]] == list(range(15, 30)), r["routing"]   # no vacuous loop below
assert r["injected"] == [] and all(x["docs"] == [] for x in r["routing"]), d' "$tmp/out"
then ok empty_bank_read; else no "empty_bank_read (rc $rc)"; cat "$tmp/err"; fi
printf 'The lighthouse keeper on Skerry Island was named Oswin Tamsworth.' >"$tmp/norm.txt"
run_msa bank add "$tmp/rb" -m "$M" "$tmp/empty.txt" "$tmp/one.txt" "$tmp/bad.txt" "$tmp/norm.txt"
if [ $rc -eq 0 ] && grep -q "added 4, replaced 0, unchanged 0" "$tmp/out"; then ok read_edge_docs_added; else no "read_edge_docs_added (rc $rc)"; cat "$tmp/out" "$tmp/err"; fi
# over the context: split into long2.txt#0, #1 (a bank of its own: the parts would crowd the one below)
if [ -n "${MSA_TEST_SMALL:-}" ]; then
    # under ASan 9,000 tokens through SmolLM2 took over the 50-minute program limit on a 2-core Xeon: the same
    # split (the CLI's, whatever the model) through the synthetic checkpoint, whose context is 256 tokens
    python3 -c 'print("lighthouse keeper " * 100)' >"$tmp/long2.txt" # ~300 tokens: 2 parts of <= 192
    run_msa bank create "$tmp/rb2" -m "$tmp/ck" --mode read
else
    python3 -c 'print("lighthouse keeper " * 4500)' >"$tmp/long2.txt" # ~9000 tokens > SmolLM2's 8192
    run_msa bank create "$tmp/rb2" -m "$M"
fi
run_msa bank add "$tmp/rb2" "$tmp/long2.txt"
if [ $rc -eq 0 ] && grep -q "split into" "$tmp/err" && [ "$($MSA bank ls "$tmp/rb2" | grep -c 'long2.txt#')" -eq 2 ]; then ok read_too_long_document_split; else no "read_too_long_document_split (rc $rc)"; cat "$tmp/err"; fi
run_msa ask -m "$M" --bank "$tmp/rb" -q "Who kept the lighthouse?" --json -n 2 --docs 50
if [ $rc -eq 0 ] && python3 - "$tmp/out" "$tmp" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["rounds"][0]
added = [sys.argv[2] + "/" + f for f in ("empty.txt", "one.txt", "bad.txt", "norm.txt")]  # bank order = index
assert [x["layer"] for x in r["routing"]] == list(range(15, 30)), r["routing"]
fused = {}
for x in r["routing"]:
    # top-k 50 > 4 documents: every document routed in every layer, scores best first
    ids, scores = [y["id"] for y in x["docs"]], [y["score"] for y in x["docs"]]
    assert sorted(ids) == sorted(added), x
    assert scores == sorted(scores, reverse=True), x
    for doc, s in zip(ids, scores):
        fused[doc] = fused.get(doc, 0.0) + s
# the documented rule (readmode.c, docs/msa-deviations.md): fused = sum over layers; best first (ties: the
# earlier document); keep while a document scores >= half the best (when the best is > 0)
order = sorted(added, key=lambda doc: (-fused[doc], added.index(doc)))
keep = len(order)
while keep > 1 and fused[order[0]] > 0 and fused[order[keep - 1]] < 0.5 * fused[order[0]]:
    keep -= 1
want = order[:keep]
# a margin so that float32 vs float64 sums cannot flip the rule at its boundary
assert all(abs(fused[doc] - 0.5 * fused[order[0]]) > 1e-3 * abs(fused[order[0]]) for doc in order[1:]), fused
injected = [i["id"] for i in r["injected"]]
assert injected == want, (injected, want, fused)
assert injected[0] == sys.argv[2] + "/norm.txt", injected   # the one document about lighthouses
PY
then ok read_top_k_larger_than_bank; else no "read_top_k_larger_than_bank (rc $rc)"; cat "$tmp/err"; fi
run_msa ask -m "$M" --bank "$tmp/rb" -q "$long"
if [ $rc -eq 65 ] && grep -q "at most" "$tmp/err"; then ok read_question_too_long; else no "read_question_too_long (rc $rc)"; fi
run_msa ask -m "$tmp/ck" --bank "$tmp/rb" -q "x"
if [ $rc -eq 65 ] && grep -qi "another model" "$tmp/err"; then ok read_bank_of_another_model; else no "read_bank_of_another_model (rc $rc)"; cat "$tmp/err"; fi
run_msa ask -m "$M" --bank "$tmp/rb" -q "x" --mode native
if [ $rc -eq 69 ] && grep -q "built for read mode" "$tmp/err"; then ok read_bank_asked_natively; else no "read_bank_asked_natively (rc $rc)"; cat "$tmp/err"; fi
finish
