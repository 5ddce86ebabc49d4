#!/usr/bin/env bash
# ask.sh — `msa ask` / `msa chat` end to end on the small synthetic MSA checkpoint (native mode):
# bank create + add, the --json shape, routing to a top-k larger than the bank, restart (re-add encodes
# nothing, same greedy answer), and errors (question too long is limited by -q size, missing bank, bank of
# another model). Edge cases: ask_edges.sh. Needs python3 + numpy for the checkpoint.
set -u
. tests/cli/lib/common.sh
synthetic_checkpoint "$tmp/ck" ask_native || exit 0
python3 tests/ref/make_msa_checkpoint.py "$tmp/ck2" --variant cosine >/dev/null 2>&1
cat > "$tmp/docs.jsonl" <<'J'
{"id": "lighthouse", "text": "The lighthouse keeper on Skerry Island was named Oswin Tamsworth."}
{"id": "quartz", "text": "Quartz crystals vibrate at a precise frequency when voltage is applied."}
{"id": "marmalade", "text": "Marmalade was first sold in Dundee by the Keiller family in 1797."}
J
if $MSA bank create "$tmp/bank" -m "$tmp/ck" --mode native >/dev/null 2>&1 &&
   $MSA bank add "$tmp/bank" -m "$tmp/ck" --jsonl "$tmp/docs.jsonl" >/dev/null 2>&1; then ok bank_native_add; else no bank_native_add; fi

out=$($MSA ask -m "$tmp/ck" --bank "$tmp/bank" -q "Who kept the lighthouse?" --json -n 6 --rounds 2 --docs 10 2>"$tmp/err")
if echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert isinstance(d["answer"], str)
assert 1 <= len(d["rounds"]) <= 2
r = d["rounds"][0]
assert d["schema"] == "msa.ask/1" and d["mode"] == "native"
assert [x["layer"] for x in r["routing"]] == [2, 3]
for x in r["routing"]:
    assert sorted(y["id"] for y in x["docs"]) == ["lighthouse", "marmalade", "quartz"], x   # top-k 10 > 3 documents: all routed
    sc = [y["score"] for y in x["docs"]]
    assert len(sc) == 3 and sc == sorted(sc, reverse=True)
assert isinstance(r["generated"], str) and isinstance(r["injected"], list)
'; then ok ask_json_shape; else no ask_json_shape; cat "$tmp/err"; fi

a1=$($MSA ask -m "$tmp/ck" --bank "$tmp/bank" -q "Who kept the lighthouse?" -n 6 --rounds 2 2>/dev/null); r1=$?
$MSA bank add "$tmp/bank" -m "$tmp/ck" --jsonl "$tmp/docs.jsonl" >"$tmp/add2" 2>&1; r2=$?
a2=$($MSA ask -m "$tmp/ck" --bank "$tmp/bank" -q "Who kept the lighthouse?" -n 6 --rounds 2 2>/dev/null); r3=$?
# both asks answer (exit 0, non-empty), the re-add encodes nothing, and the answer after it is the same
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ $r3 -eq 0 ] && [ -n "$a1" ] && [ "$a1" = "$a2" ] &&
   grep -q "added 0, replaced 0, unchanged 3; 0 tokens encoded" "$tmp/add2"; then ok restart_same_greedy_answer
else no "restart_same_greedy_answer (rc $r1/$r2/$r3, '$a1' vs '$a2')"; cat "$tmp/add2"; fi

echo "Who kept the lighthouse?" | $MSA chat -m "$tmp/ck" --bank "$tmp/bank" -n 4 --rounds 1 --json >"$tmp/chat" 2>/dev/null
if python3 -c 'import json,sys; json.loads(open(sys.argv[1]).readline())' "$tmp/chat"; then ok chat_json_line; else no chat_json_line; fi

$MSA ask -m "$tmp/ck2" --bank "$tmp/bank" -q "x" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 65 ] && grep -qi "fingerprint\|model" "$tmp/err"; then ok bank_of_another_model; else no "bank_of_another_model (rc $rc)"; fi
$MSA ask -m "$tmp/ck" --bank "$tmp/nope" -q "x" >/dev/null 2>&1; rc=$?
if [ $rc -eq 66 ]; then ok missing_bank; else no "missing_bank (rc $rc)"; fi
$MSA ask -m "$tmp/ck" --bank "$tmp/bank" >/dev/null 2>&1; rc=$?
if [ $rc -eq 64 ]; then ok missing_question_usage; else no "missing_question_usage (rc $rc)"; fi
long=$(python3 -c 'print("word " * 3000)')
$MSA ask -m "$tmp/ck" --bank "$tmp/bank" -q "$long" >/dev/null 2>"$tmp/err"; rc=$?
if [ $rc -eq 65 ] && grep -q "at most" "$tmp/err"; then ok question_too_long; else no "question_too_long (rc $rc)"; fi
$MSA ask -m "$tmp/ck" --bank "$tmp/bank" -q "x" --mode bogus >/dev/null 2>&1; rc=$?
if [ $rc -eq 64 ]; then ok bad_mode_usage; else no "bad_mode_usage (rc $rc)"; fi


# the same checkpoint written as shards + model.safetensors.index.json (as --full writes MSA-4B's shapes):
# same fingerprint (the bank opens), same greedy answer
python3 tests/ref/make_msa_checkpoint.py "$tmp/cksh" --shard-gb 0.01 >/dev/null 2>&1
a3=$($MSA ask -m "$tmp/cksh" --bank "$tmp/bank" -q "Who kept the lighthouse?" -n 6 --rounds 2 2>"$tmp/err")
if [ -f "$tmp/cksh/model-00002-of-00002.safetensors" ] && [ -n "$a1" ] && [ "$a1" = "$a3" ]; then ok sharded_checkpoint_same_answer; else no sharded_checkpoint_same_answer; cat "$tmp/err"; fi
