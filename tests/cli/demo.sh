#!/usr/bin/env bash
# demo.sh — `msa demo` end to end with the default model (read mode, identity router) on a small slice of
# data/demo (the five planted facts + 10 passages, to stay quick on a 2-core CI machine): every question is
# answered with its routed documents, rerunning encodes nothing, and the planted-fact routing score is printed.
# SKIPs when the default model is not installed (`make model`).
set -u
MSA=${MSA:-build/msa}
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$model" ]; then echo "SKIP demo (default model not installed: make model)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/corpus"
(grep -v '"fact-' data/demo/passages.jsonl | awk 'NR%15==1'; grep '"fact-' data/demo/passages.jsonl) >"$tmp/corpus/passages.jsonl"
cp data/demo/facts.jsonl "$tmp/corpus/"
$MSA demo --corpus "$tmp/corpus" --bank "$tmp/bank" -n 8 >"$tmp/out1" 2>"$tmp/err1"; rc=$?
if [ $rc -eq 0 ]; then echo "PASS demo_runs"; else echo "FAIL demo_runs (rc $rc)"; cat "$tmp/err1"; fi
n_q=$(grep -c '^Q: ' "$tmp/out1"); n_r=$(grep -c 'routed to: fact-\|routed to: ' "$tmp/out1")
if [ "$n_q" -eq 5 ] && [ "$n_r" -eq 5 ]; then echo "PASS demo_answers_with_routed_documents"; else echo "FAIL demo_answers_with_routed_documents ($n_q/$n_r)"; fi
grep -q 'encoded 15 new documents' "$tmp/err1" && echo "PASS demo_encodes_corpus" || echo "FAIL demo_encodes_corpus"
$MSA demo --corpus "$tmp/corpus" --bank "$tmp/bank" -n 1 >"$tmp/out2" 2>"$tmp/err2"
grep -q 'encoded 0 new documents (0 tokens).*15 already' "$tmp/err2" && echo "PASS demo_restart_encodes_nothing" || echo "FAIL demo_restart_encodes_nothing"
# routing of the planted facts is reported, not asserted: the identity router of an untrained 135M model
# is weak (docs/msa-deviations.md); the count is visible in the test log
grep 'planted facts routed' "$tmp/out1" | sed 's/^/  /'
