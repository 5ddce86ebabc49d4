#!/usr/bin/env bash
# ask_edges_read.sh — ask_edges.sh's edge cases in read mode with the default model (identity router; SKIP
# when it is not installed), the synthetic MSA checkpoint serving as "another model":
# empty bank; empty, one-token and invalid-UTF-8 documents (accepted); a document longer than the model's
# context of 8192 (rejected, exit 65); top-k larger than the bank (every document routed; injected: those scoring >= half the best); a
# question longer than allowed (exit 65); a bank made with another model (exit 65); a read-mode bank asked
# natively (exit 69). (Duplicate ids are checked before encoding, the same in both modes: ask_edges.sh.)
set -u
. tests/cli/lib/common.sh
synthetic_checkpoint "$tmp/ck" ask_edges_read || exit 0
long=$(python3 -c 'print("word " * 3000)')
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$M" ]; then echo "SKIP ask_edges_read (default model not installed: make model)"; exit 0; fi
: >"$tmp/empty.txt"; printf 'x' >"$tmp/one.txt"; printf 'caf\303 \377!' >"$tmp/bad.txt"
$MSA bank create "$tmp/rb" -m "$M" --mode read >/dev/null 2>&1
out=$($MSA ask -m "$M" --bank "$tmp/rb" -q "Who kept the lighthouse?" --json -n 2 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["rounds"][0]["injected"] == [] and all(x["docs"] == [] for x in d["rounds"][0]["routing"]), d'; then ok empty_bank_read; else no "empty_bank_read (rc $rc)"; cat "$tmp/err"; fi
printf 'The lighthouse keeper on Skerry Island was named Oswin Tamsworth.' >"$tmp/norm.txt"
$MSA bank add "$tmp/rb" -m "$M" "$tmp/empty.txt" "$tmp/one.txt" "$tmp/bad.txt" "$tmp/norm.txt" >"$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "added 4" "$tmp/out"; then ok read_edge_docs_added; else no "read_edge_docs_added (rc $rc)"; cat "$tmp/out"; fi
python3 -c 'print("lighthouse keeper " * 4500)' >"$tmp/long2.txt"   # ~9000 tokens > SmolLM2's 8192
# over the context: split into long2.txt#0, #1 (a bank of its own: the parts would crowd the one below)
$MSA bank create "$tmp/rb2" -m "$M" >/dev/null 2>&1
$MSA bank add "$tmp/rb2" "$tmp/long2.txt" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ] && grep -q "split into" "$tmp/err" && [ "$($MSA bank ls "$tmp/rb2" | grep -c 'long2.txt#')" -eq 2 ]; then ok read_too_long_document_split; else no "read_too_long_document_split (rc $rc)"; cat "$tmp/err"; fi
out=$($MSA ask -m "$M" --bank "$tmp/rb" -q "Who kept the lighthouse?" --json -n 2 --docs 50 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
r = d["rounds"][0]
# top-k 50 > 4 documents: all of them routed; injected are those of them scoring >= half the best (readmode.c)
ids = [i["id"] for i in r["injected"]]
assert 1 <= len(ids) <= 4 and len(set(ids)) == len(ids), ids
for x in r["routing"]:
    assert len(x["docs"]) == 4, x'; then ok read_top_k_larger_than_bank; else no "read_top_k_larger_than_bank (rc $rc)"; cat "$tmp/err"; fi
$MSA ask -m "$M" --bank "$tmp/rb" -q "$long" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 65 ] && grep -q "at most" "$tmp/err"; then ok read_question_too_long; else no "read_question_too_long (rc $rc)"; fi
$MSA ask -m "$tmp/ck" --bank "$tmp/rb" -q "x" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 65 ] && grep -qi "another model" "$tmp/err"; then ok read_bank_of_another_model; else no "read_bank_of_another_model (rc $rc)"; cat "$tmp/err"; fi
$MSA ask -m "$M" --bank "$tmp/rb" -q "x" --mode native >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 69 ] && grep -q "built for read mode" "$tmp/err"; then ok read_bank_asked_natively; else no "read_bank_asked_natively (rc $rc)"; cat "$tmp/err"; fi
