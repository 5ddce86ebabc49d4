#!/usr/bin/env bash
# make_questions.sh — `msa make-questions` on the default model: every pair it writes is a question (ends in
# '?') about its own passage with the passage's id, the same input gives the same pairs (greedy), a question
# repeated for the same text is kept once, generic questions are dropped, and hostile inputs fail with one line
# and a sysexits code (65 bad JSONL, 66 missing file or oversized examples, 64 usage).
set -u
. tests/cli/lib/common.sh
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
expect_rc make_questions_usage_no_passages 64 make-questions -m "$M" -o "$tmp/o.jsonl"
expect_rc make_questions_missing_passages 66 make-questions -m "$M" --passages "$tmp/nope.jsonl" -o "$tmp/o.jsonl"
if [ ! -f "$M" ]; then
    for c in make_questions_pairs make_questions_deterministic make_questions_repeat_kept_once \
             make_questions_generic_dropped make_questions_bad_jsonl_65 make_questions_big_examples_66; do
        echo "SKIP $c (no default model: make model)"
    done
    finish; exit 0
fi
np=4; [ -n "${MSA_TEST_SMALL:-}" ] && np=2 # every passage is a generation, ~20 s each under ASan on 2 cores
head -n $np data/retrieval/passages-1k.jsonl >"$tmp/p.jsonl"
run_msa make-questions -m "$M" -t 2 --passages "$tmp/p.jsonl" -o "$tmp/a.jsonl"
if [ "$rc" -eq 0 ] && python3 - "$tmp/p.jsonl" "$tmp/a.jsonl" <<'PY'
import json, sys
src = {d["id"]: d["text"] for d in map(json.loads, open(sys.argv[1]))}
rows = [json.loads(l) for l in open(sys.argv[2])]
assert rows, "no pair written"
for r in rows:
    assert r["kind"] == "generated" and r["query"].endswith("?") and 3 <= len(r["query"].split()) <= 40, r
    assert src[r["source"]] == r["positive"], r
PY
then ok make_questions_pairs; else no make_questions_pairs; cat "$tmp/err"; fi
run_msa make-questions -m "$M" -t 1 --passages "$tmp/p.jsonl" -o "$tmp/b.jsonl"
[ "$rc" -eq 0 ] && cmp -s "$tmp/a.jsonl" "$tmp/b.jsonl" && ok make_questions_deterministic ||
    { no make_questions_deterministic; diff "$tmp/a.jsonl" "$tmp/b.jsonl" | head; }
# a passage that gave a question, under three ids: the same greedy question three times, the pair written once
python3 -c 'import json,sys
d = json.loads(open(sys.argv[1]).readline())
for i in range(3): print(json.dumps({"id": "copy%d" % i, "text": d["positive"]}))' "$tmp/a.jsonl" >"$tmp/same.jsonl"
run_msa make-questions -m "$M" --passages "$tmp/same.jsonl" -o "$tmp/s.jsonl"
[ "$rc" -eq 0 ] && [ "$(wc -l <"$tmp/s.jsonl")" -eq 1 ] && grep -q '2 repeats dropped' "$tmp/err" &&
    ok make_questions_repeat_kept_once || { no make_questions_repeat_kept_once; cat "$tmp/err"; }
# examples whose every question is about "the passage": the model copies the form, and such questions go
printf 'Passage: The mill stood by the river.\nQuestion: What is the main idea of the passage?\n\nPassage: Snow fell on the hills all week.\nQuestion: What is the main idea of the passage?\n\n' >"$tmp/ex.txt"
run_msa make-questions -m "$M" --passages "$tmp/p.jsonl" --examples "$tmp/ex.txt" -o "$tmp/g.jsonl"
[ "$rc" -eq 0 ] && [ ! -s "$tmp/g.jsonl" ] && grep -q "0 questions kept, $np dropped" "$tmp/err" &&
    ok make_questions_generic_dropped || { no make_questions_generic_dropped; cat "$tmp/err" "$tmp/g.jsonl"; }
{ head -n 1 "$tmp/p.jsonl"; echo '{"text": 7}'; } >"$tmp/bad.jsonl"
run_msa make-questions -m "$M" --passages "$tmp/bad.jsonl" -o "$tmp/x.jsonl"
[ "$rc" -eq 65 ] && grep -q 'bad.jsonl:2:' "$tmp/err" && ok make_questions_bad_jsonl_65 ||
    { no make_questions_bad_jsonl_65; cat "$tmp/err"; }
head -c 1100000 /dev/zero | tr '\0' 'a' >"$tmp/big.txt"
expect_rc make_questions_big_examples_66 66 make-questions -m "$M" --passages "$tmp/p.jsonl" --examples "$tmp/big.txt" -o "$tmp/x.jsonl"
finish
