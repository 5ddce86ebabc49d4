#!/usr/bin/env bash
# read_rules.sh — read mode's two selection rules through `msa ask --mode read --json`, on the small synthetic
# checkpoint (a plain Qwen3 model plus a router file, tests/ref/make_router_fixture.py; no default model needed):
# - which routed documents are injected: fused score = sum over the router layers; best first; kept while a
#   document scores at least half the best (docs/msa-deviations.md, "Read mode"). The expected set is computed
#   here from the committed numpy reference scores (tests/fixtures/msa/router_expect.json), not from msa's own
#   output; those documents have one scoring above 0 but below half the best, so "keep every positive one",
#   "keep all" and "start from the second best" all give other sets.
# - ties: with an all-zero router every document scores exactly 0 in every layer, and the top-k keeps the
#   earlier documents (lower bank index) in bank order, per layer and in what is injected.
# Both banks are built with --no-lexical: these are the routing rules, without the BM25 fusion `bank add` sets up.
# Needs python3 + numpy (SKIP without numpy; a generator failure with it is a FAIL).
set -u
. tests/cli/lib/common.sh
router_fixture read_rules || { finish; exit 0; }

# ---- the half-best rule, expected from the reference scores
run_msa bank create "$tmp/bank" -m "$m" --mode read --pooling "$P" --router "$rf"
c1=$rc
run_msa bank add "$tmp/bank" -m "$m" --router "$rf" --jsonl "$tmp/docs.jsonl" --no-lexical
if [ $c1 -eq 0 ] && [ $rc -eq 0 ]; then ok read_rules_bank_build; else no "read_rules_bank_build (rc $c1 $rc)"; cat "$tmp/err"; fi
run_msa ask -m "$m" --bank "$tmp/bank" --router "$rf" -q "$q" --json -n 1 --docs 4
if [ $rc -eq 0 ] && python3 - "$tmp/out" "$exp" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["rounds"][0]
ref = json.load(open(sys.argv[2]))
fused = {}
for layer in ref["routing"]:
    for doc, s in zip(layer["docs"], layer["scores"]):
        fused[doc] = fused.get(doc, 0.0) + s
ids = [d["id"] for d in ref["docs"]]                       # bank order = index
order = sorted(ids, key=lambda d: (-fused[d], ids.index(d)))
best = fused[order[0]]
# the premise: a document above 0 but below half the best, clear of the boundary (bf16 keys move scores ~1e-3)
weak = [d for d in order[1:] if 0 < fused[d] < 0.5 * best]
assert best > 0 and weak, fused
assert all(abs(fused[d] - 0.5 * best) > 0.1 * best and abs(fused[d]) > 0.02 for d in order), fused
keep = len(order)
while keep > 1 and fused[order[keep - 1]] < 0.5 * best:
    keep -= 1
want = order[:keep]
injected = [x["id"] for x in got["injected"]]
assert injected == want, (injected, want, fused)
assert [x["layer"] for x in got["routing"]] == [l["layer"] for l in ref["routing"]], got["routing"]
PY
then ok read_injects_at_least_half_the_best; else no "read_injects_at_least_half_the_best (rc $rc)"; cat "$tmp/out" "$tmp/err"; fi

# ---- ties: an all-zero router (the fixture's header, every weight 0)
python3 - "$rf" "$tmp/zero.safetensors" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
open(sys.argv[2], "wb").write(b[:8 + n] + bytes(len(b) - 8 - n))
PY
run_msa bank create "$tmp/zbank" -m "$m" --mode read --pooling "$P" --router "$tmp/zero.safetensors"
c1=$rc
run_msa bank add "$tmp/zbank" -m "$m" --router "$tmp/zero.safetensors" --jsonl "$tmp/docs.jsonl" --no-lexical
if [ $c1 -eq 0 ] && [ $rc -eq 0 ]; then ok zero_router_bank_build; else no "zero_router_bank_build (rc $c1 $rc)"; cat "$tmp/err"; fi
for k in 1 2 3; do
    run_msa ask -m "$m" --bank "$tmp/zbank" --router "$tmp/zero.safetensors" -q "$q" --json -n 1 --docs $k
    if [ $rc -eq 0 ] && python3 - "$tmp/out" "$exp" "$k" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["rounds"][0]
ids = [d["id"] for d in json.load(open(sys.argv[2]))["docs"]]
k = int(sys.argv[3])
assert [x["layer"] for x in got["routing"]] == [2, 3], got["routing"]
for layer in got["routing"]:
    assert [x["score"] for x in layer["docs"]] == [0.0] * k, layer       # the premise: a k-way tie at 0
    assert [x["id"] for x in layer["docs"]] == ids[:k], layer            # ties: the earlier documents, in order
# the best score is 0 (not > 0): the half-best rule keeps all k, in rank order
assert [x["id"] for x in got["injected"]] == ids[:k], got["injected"]
PY
    then ok "read_ties_keep_earlier_documents_top$k"; else no "read_ties_keep_earlier_documents_top$k (rc $rc)"; cat "$tmp/out" "$tmp/err"; fi
done
finish
