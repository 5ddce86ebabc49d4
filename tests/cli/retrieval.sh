#!/usr/bin/env bash
# retrieval.sh — msa train-router, msa eval qa|niah and read mode's lexical fusion, end to end on the small
# synthetic checkpoint (tests/ref/make_msa_checkpoint.py + make_router_fixture.py: seconds): training writes a
# router that `bank create/add --router` and `eval --router` load; eval prints recall per kind and --json;
# bank add keeps a read bank's LEXICAL_BM25 current and eval fuses with it (--no-lexical: routing alone); eval qa
# takes passages + questions in one file (or --passages) and builds the bank; --lexical
# --save-lexical leaves a LEXICAL_BM25 that `ask` then uses; NIAH on a tiny haystack; malformed
# inputs fail with one line and a sysexits code. Needs python3 + numpy for the checkpoint.
set -u
. tests/cli/lib/common.sh
if ! python3 tests/ref/make_msa_checkpoint.py "$tmp/ck" >/dev/null 2>&1 ||
   ! python3 tests/ref/make_router_fixture.py "$tmp/ck" "$tmp/r" >/dev/null 2>&1; then
    echo "SKIP retrieval (python3 with numpy needed for the synthetic checkpoint)"; exit 0
fi
m=$tmp/r/plain
python3 - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
subj = ["whale", "harbor", "lantern", "violin", "glacier", "compass", "orchid", "anvil", "sparrow", "willow"]
with open(t + "/pairs.jsonl", "w") as f:
    for i, s in enumerate(subj * 2):
        f.write(json.dumps({"query": "what about the %s %d" % (s, i), "positive": "A passage on the %s, number %d, and more." % (s, i)}) + "\n")
with open(t + "/docs.jsonl", "w") as f:
    for i, s in enumerate(subj):
        f.write(json.dumps({"id": "d%d" % i, "text": "The %s is described here in passage %d." % (s, i)}) + "\n")
with open(t + "/q.jsonl", "w") as f:
    for i, s in enumerate(subj[:4]):
        f.write(json.dumps({"id": "q%d" % i, "kind": "lexical", "question": "Where is the %s?" % s, "gold": ["d%d" % i], "answer": s}) + "\n")
with open(t + "/hay.txt", "w") as f:
    f.write(" ".join("Sentence number %d is about the sea and the ship. " % i for i in range(400)))
PY
if $MSA train-router -m "$m" --data "$tmp/pairs.jsonl" -o "$tmp/rt.safetensors" --layers 2,3 --steps 4 --batch 4 \
       --holdout 4 --eval-every 2 --curve "$tmp/curve.tsv" >"$tmp/o" 2>"$tmp/e" &&
   [ -s "$tmp/rt.safetensors" ] && [ "$(wc -l <"$tmp/curve.tsv")" -eq 4 ]; then
    ok train_router_writes_router_and_curve; else no train_router_writes_router_and_curve; cat "$tmp/o" "$tmp/e"; fi
if $MSA bank create "$tmp/b" -m "$m" --mode read --router "$tmp/rt.safetensors" >/dev/null 2>&1 &&
   $MSA bank add "$tmp/b" -m "$m" --router "$tmp/rt.safetensors" --jsonl "$tmp/docs.jsonl" >/dev/null 2>&1 &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" "$tmp/q.jsonl" --json >"$tmp/j" 2>"$tmp/e" &&
   python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=d["kinds"]["lexical"]; assert k["n"]==4 and 0<=k["recall@1"]<=k["recall@5"]<=1 and len(k["per_layer"])==2' "$tmp/j"; then
    ok eval_qa_with_trained_router; else no eval_qa_with_trained_router; cat "$tmp/e"; fi
# bank add keeps a read bank's BM25 index current (weight 0.35), and eval, like ask, fuses with it unless told
# --no-lexical; an add with --no-lexical leaves it stale, and a stale index is not used (routing alone)
lw() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("lexical_weight", "none"), d["kinds"].get("lexical", {}).get("recall@1", "-"))' "$1"; }
if [ -f "$tmp/b/LEXICAL_BM25" ] &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" "$tmp/q.jsonl" --json >"$tmp/j1" 2>"$tmp/e" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" "$tmp/q.jsonl" --json --no-lexical >"$tmp/j2" 2>>"$tmp/e" &&
   [ "$(lw "$tmp/j1")" = "0.35 1.0" ] && [ "$(lw "$tmp/j2" | cut -d' ' -f1)" = none ]; then
    ok bank_add_lexical_index_fused_by_eval; else no bank_add_lexical_index_fused_by_eval; cat "$tmp/j1" "$tmp/e"; fi
echo '{"id": "d10", "text": "A late passage about the kettle."}' >"$tmp/late.jsonl"
cp -r "$tmp/b" "$tmp/bs" # a copy: the full-context case below counts the first bank's 10 documents
if $MSA bank add "$tmp/bs" -m "$m" --router "$tmp/rt.safetensors" --jsonl "$tmp/late.jsonl" --no-lexical >"$tmp/o" 2>"$tmp/e" &&
   ! grep -q "lexical index" "$tmp/o" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/bs" "$tmp/q.jsonl" --json >"$tmp/j1" 2>>"$tmp/e" &&
   [ "$(lw "$tmp/j1" | cut -d' ' -f1)" = none ] &&
   $MSA bank add "$tmp/bs" -m "$m" --router "$tmp/rt.safetensors" --jsonl "$tmp/late.jsonl" --lexical 0.5 >"$tmp/o" 2>>"$tmp/e" &&
   grep -q "unchanged 1; .*lexical index updated" "$tmp/o" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/bs" "$tmp/q.jsonl" --json >"$tmp/j1" 2>>"$tmp/e" &&
   [ "$(lw "$tmp/j1" | cut -d' ' -f1)" = 0.5 ]; then
    ok bank_add_lexical_stale_then_refreshed; else no bank_add_lexical_stale_then_refreshed; cat "$tmp/o" "$tmp/j1" "$tmp/e"; fi
# bank rm and compact keep a current index current, with its weight
if $MSA bank rm "$tmp/bs" d10 >"$tmp/o" 2>"$tmp/e" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/bs" "$tmp/q.jsonl" --json >"$tmp/j1" 2>>"$tmp/e" &&
   [ "$(lw "$tmp/j1" | cut -d' ' -f1)" = 0.5 ] && python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["n_docs"] == 10' "$tmp/j1" &&
   $MSA bank compact "$tmp/bs" >"$tmp/o" 2>>"$tmp/e" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/bs" "$tmp/q.jsonl" --json >"$tmp/j1" 2>>"$tmp/e" &&
   [ "$(lw "$tmp/j1")" = "0.5 1.0" ]; then
    ok bank_rm_compact_keep_lexical_index; else no bank_rm_compact_keep_lexical_index; cat "$tmp/o" "$tmp/j1" "$tmp/e"; fi
if $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" "$tmp/q.jsonl" --lexical 0 --save-lexical >"$tmp/o" 2>"$tmp/e" &&
   [ -f "$tmp/b/LEXICAL_BM25" ] && grep -q "lexical .* 1.000 " "$tmp/o"; then
    ok eval_lexical_only_finds_every_word; else no eval_lexical_only_finds_every_word; cat "$tmp/o" "$tmp/e"; fi
$MSA ask -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" -q "Where is the violin?" -n 2 --json >"$tmp/a" 2>"$tmp/e" &&
   python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["rounds"][0]["injected"][0]["id"]=="d3"' "$tmp/a" &&
   ok ask_uses_the_stored_lexical_index || { no ask_uses_the_stored_lexical_index; cat "$tmp/a" "$tmp/e"; }
if $MSA eval niah -m "$m" --bank "$tmp/n" --haystack "$tmp/hay.txt" --tokens 2048 --doc-tokens 64 --per-task 1 \
       --json >"$tmp/j" 2>"$tmp/e" &&
   python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["kinds"])==8 and d["n_docs"]>10' "$tmp/j"; then
    ok eval_niah_eight_tasks; else no eval_niah_eight_tasks; cat "$tmp/e"; fi
# the haystack bank is left as `bank add` leaves a read bank: with its BM25 index, fused by default
if [ -f "$tmp/n/LEXICAL_BM25" ] && [ "$(lw "$tmp/j" | cut -d' ' -f1)" = 0.35 ] &&
   $MSA eval niah -m "$m" --bank "$tmp/n" --haystack "$tmp/hay.txt" --tokens 2048 --doc-tokens 64 --per-task 1 \
       --json --no-lexical >"$tmp/j2" 2>"$tmp/e" && [ "$(lw "$tmp/j2" | cut -d' ' -f1)" = none ]; then
    ok eval_niah_fuses_by_default; else no eval_niah_fuses_by_default; cat "$tmp/j" "$tmp/e"; fi
# --write-set: the set niah evaluates, as a qa file (no bank needed): every gold id is one of its documents and
# holds its answers, and `eval qa` over it on the niah bank gives niah's own numbers to the last digit
if $MSA eval niah -m "$m" --haystack "$tmp/hay.txt" --tokens 2048 --doc-tokens 64 --per-task 1 \
       --write-set "$tmp/set.jsonl" >"$tmp/o" 2>"$tmp/e" &&
   python3 - "$tmp/set.jsonl" <<'PY' &&
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
docs = {l["id"]: l["text"] for l in lines if "question" not in l}
qs = [l for l in lines if "question" in l]
assert len(qs) == 8 and len(docs) > 10 and len(docs) + len(qs) == len(lines), (len(docs), len(qs))
for q in qs:
    gold = " ".join(docs[g] for g in q["gold"])
    assert q["answer"] and all(re.search(r"\b%s\b" % re.escape(a), gold) for a in q["answer"]), q
PY
   $MSA eval qa -m "$m" --bank "$tmp/n" "$tmp/set.jsonl" --json >"$tmp/jq" 2>>"$tmp/e" &&
   python3 -c 'import json,sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
key = lambda d: {k: (v["n"], v["recall@1"], v["recall@5"], v["recall@10"]) for k, v in d["kinds"].items()}
assert key(a) == key(b) and a["n_docs"] == b["n_docs"], (key(a), key(b))' "$tmp/j" "$tmp/jq" &&
   ! $MSA eval qa -m "$m" --bank "$tmp/n" "$tmp/set.jsonl" --write-set "$tmp/x" >/dev/null 2>&1; then
    ok eval_niah_write_set_is_the_set_evaluated; else no eval_niah_write_set_is_the_set_evaluated; cat "$tmp/o" "$tmp/e"; fi
# a passages + questions file: the passages go into the bank (created, with its BM25 index) before the questions
cat "$tmp/docs.jsonl" "$tmp/q.jsonl" >"$tmp/pq.jsonl"
if $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/pqb" "$tmp/pq.jsonl" --json >"$tmp/j1" 2>"$tmp/e" &&
   [ "$(lw "$tmp/j1")" = "0.35 1.0" ] && [ -f "$tmp/pqb/LEXICAL_BM25" ] &&
   python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["n_docs"]==10 and d["kinds"]["lexical"]["n"]==4, d' "$tmp/j1" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/pqb" "$tmp/pq.jsonl" >"$tmp/o" 2>>"$tmp/e" &&
   grep -q "passages: 10 in the bank (0 added, 0 replaced, 10 unchanged" "$tmp/o" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/pqb2" "$tmp/q.jsonl" --passages "$tmp/docs.jsonl" \
       --json >"$tmp/j2" 2>>"$tmp/e" &&
   python3 -c '
import json, sys
a, b = (json.load(open(f))["kinds"]["lexical"] for f in sys.argv[1:])
assert all(a[k] == b[k] for k in ("n", "recall@1", "recall@5", "recall@10", "per_layer")), (a, b)' "$tmp/j1" "$tmp/j2"; then
    ok eval_qa_passages_and_questions_file; else no eval_qa_passages_and_questions_file; cat "$tmp/o" "$tmp/e"; fi
echo '{"id": "p", "body": "no text"}' >"$tmp/badp.jsonl"
$MSA eval qa -m "$m" --bank "$tmp/pqb3" "$tmp/q.jsonl" --passages "$tmp/badp.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && [ ! -e "$tmp/pqb3" ] && grep -q 'a passage needs "id" and "text"' "$tmp/e" && ok eval_qa_bad_passages_65 ||
    { no "eval_qa_bad_passages_65 (rc $rc)"; cat "$tmp/e"; }
echo '{"id": "x", "question": "q"}' >"$tmp/bad.jsonl"
$MSA eval qa -m "$m" --bank "$tmp/b" --router "$tmp/rt.safetensors" "$tmp/bad.jsonl" >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && ok eval_bad_questions_65 || { no eval_bad_questions_65; cat "$tmp/e"; }
# --data repeated reads the files in order: the same router, byte for byte, as one concatenated file
head -n 12 "$tmp/pairs.jsonl" >"$tmp/pa.jsonl"; tail -n +13 "$tmp/pairs.jsonl" >"$tmp/pb.jsonl"
if $MSA train-router -m "$m" --data "$tmp/pa.jsonl" --data "$tmp/pb.jsonl" -o "$tmp/rt2.safetensors" --layers 2,3 \
       --steps 4 --batch 4 --holdout 4 --eval-every 2 >/dev/null 2>"$tmp/e" &&
   cmp -s "$tmp/rt.safetensors" "$tmp/rt2.safetensors"; then
    ok train_router_data_files_in_order; else no train_router_data_files_in_order; cat "$tmp/e"; fi
echo 'not json' >"$tmp/bad2.jsonl"
$MSA train-router -m "$m" --data "$tmp/bad2.jsonl" -o "$tmp/x.safetensors" >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && ok train_router_bad_pairs_65 || { no train_router_bad_pairs_65; cat "$tmp/e"; }
$MSA train-router -m "$m" --data "$tmp/pairs.jsonl" -o "$tmp/x.safetensors" --layers 2,2 >/dev/null 2>&1; rc=$?
[ $rc -eq 64 ] && ok train_router_bad_layers_64 || no train_router_bad_layers_64
# --query-only is for models without k_norm (the identity keys it trains against are k_proj(h)); the synthetic
# checkpoint is a Qwen3 (k_norm): refused with exit 64
$MSA train-router -m "$m" --data "$tmp/pairs.jsonl" -o "$tmp/x.safetensors" --layers 2,3 --holdout 4 --query-only >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 64 ] && grep -q k_norm "$tmp/e" && ok train_router_query_only_refuses_k_norm || { no train_router_query_only_refuses_k_norm; cat "$tmp/e"; }
$MSA eval qa -m "$m" --bank "$tmp/b" "$tmp/q.jsonl" --lexical 2 >/dev/null 2>&1; rc=$?
[ $rc -eq 64 ] && ok eval_bad_lexical_64 || no eval_bad_lexical_64
# --full-context: every document in the prompt, in reading order (the bank's order for qa; docs_in_prompt counts
# the documents whose "[index]. " header the prompt holds, in that order), no routing (no recall); --docs 3 reads 3
if $MSA eval qa -m "$m" --bank "$tmp/b" "$tmp/q.jsonl" --full-context -n 4 --json >"$tmp/j" 2>"$tmp/e" &&
   python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["full_context"] and d["context_docs"] == 10 and d["system"] == "full-context", d
assert "recall@1" not in d["kinds"]["lexical"] and d["kinds"]["lexical"]["n"] == 4
for q in d["questions"]:
    assert q["docs_in_prompt"] == 10 and "correct" in q and "gold_rank" not in q, q
    assert q["prompt_tokens"] <= d["context_tokens"] < 256 - 4, q' "$tmp/j" &&
   $MSA eval qa -m "$m" --router "$tmp/rt.safetensors" --bank "$tmp/b" "$tmp/q.jsonl" --answer -n 4 --json >"$tmp/j2" 2>>"$tmp/e" &&
   python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert all(q["docs_in_prompt"] == 3 for q in d["questions"]), d["questions"]' "$tmp/j2"; then
    ok eval_full_context_reads_every_document; else no eval_full_context_reads_every_document; cat "$tmp/e"; fi
# ... refused (64, one line naming the context) when prompt + answer budget exceed the model's context (256 here)
$MSA eval qa -m "$m" --bank "$tmp/b" "$tmp/q.jsonl" --full-context -n 200 >"$tmp/o" 2>"$tmp/e"; rc=$?
[ $rc -eq 64 ] && [ "$(wc -l <"$tmp/e")" -eq 1 ] && grep -q "over the model's context of 256" "$tmp/e" && [ ! -s "$tmp/o" ] &&
    ok eval_full_context_over_context_64 || { no eval_full_context_over_context_64; cat "$tmp/e"; }
# niah: a haystack over the context is refused before anything is encoded (no bank made)
$MSA eval niah -m "$m" --bank "$tmp/nfc" --haystack "$tmp/hay.txt" --tokens 2048 --doc-tokens 64 --per-task 1 \
    --full-context >"$tmp/o" 2>"$tmp/e"; rc=$?
[ $rc -eq 64 ] && grep -q "haystack is .* over the model's context" "$tmp/e" && [ ! -e "$tmp/nfc" ] &&
    ok eval_niah_full_context_refused_before_encoding || { no eval_niah_full_context_refused_before_encoding; cat "$tmp/e"; }
$MSA eval qa -m "$m" --bank "$tmp/b" "$tmp/q.jsonl" --full-context --lexical 0.5 >/dev/null 2>&1; rc=$?
[ $rc -eq 64 ] && ok eval_full_context_no_routing_options_64 || no eval_full_context_no_routing_options_64
