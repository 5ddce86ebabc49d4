#!/usr/bin/env bash
# gpu-niah.sh — NIAH on a GPU machine (docs/quality.md "NIAH on the GPU"): the default model's haystacks at
# 32K, 128K and 1M tokens (more with SIZES), encoded and answered by the CUDA backend (build-cuda/ from
# scripts/gpu-pack.sh), routed over the bank by the engine's read mode. For every size: the shipped trained
# query-side router fused with BM25 (w 0.35, as on the CPU) with answers; the identity router alone and fused
# (w 0.40), routing only. One JSON per cell in $1 (default /tmp/gpu-niah), named SYSTEM-SIZE.json.
#   Usage: bash scripts/gpu-niah.sh [OUTDIR]     (SIZES="32768 131072 1048576", BANKS=/tmp/niah-banks)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gpu-niah}
banks=${BANKS:-/tmp/niah-banks}
mkdir -p "$out" "$banks"
. scripts/gpu-env.sh
for n in ${SIZES:-1048576 32768 131072}; do
    b=$banks/niah-$n
    SECONDS=0
    # the first run builds the bank (encoding on the GPU: its time is in the JSON's report line on stderr)
    "$MSA" eval niah -m "$M" --router "$R" --bank "$b" --tokens "$n" --seed 1 --lexical 0.35 --answer \
        --system trained+bm25 --json -v > "$out/trained+bm25-$n.json" 2> "$out/trained+bm25-$n.log"
    echo "niah $n trained+bm25: exit $? in ${SECONDS} s; $(du -sh "$b" | cut -f1) bank"
    for sys in identity identity+bm25; do
        lex=(--no-lexical); [ "$sys" = identity+bm25 ] && lex=(--lexical 0.40)
        "$MSA" eval niah -m "$M" --router none --bank "$b" --tokens "$n" --seed 1 "${lex[@]}" --system "$sys" \
            --json -v > "$out/$sys-$n.json" 2> "$out/$sys-$n.log"
        echo "niah $n $sys: exit $?"
    done
done
