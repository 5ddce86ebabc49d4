#!/usr/bin/env bash
# gpu-100k.sh — the retrieval benchmark at 100K passages, on a GPU machine (issue 11; docs/quality.md "100K
# passages on the GPU"): the CUDA backend encodes the bank, and routing scans its keys resident in GPU memory
# (src/memory/route_resident.c). build-cuda/ from scripts/gpu-pack.sh; the passages from
# `python3 scripts/make_retrieval_data.py big` (zstd-compressed to travel).
#   bash scripts/gpu-100k.sh check OUTDIR          1K bank: the GPU scan against the CPU scan on the same bank
#                                                   (every fused score identical) and the time of each
#   bash scripts/gpu-100k.sh encode PASSAGES.jsonl  create or resume the 100K bank (ENCODE_TIMEOUT s, default 500;
#                                                   a cut-off add resumes where it stopped)
#   bash scripts/gpu-100k.sh eval OUTDIR [RANKDIR]  every system at 100K; RANKDIR holds bm25.jsonl/minilm.jsonl
#                                                   rankings (scripts/eval_baselines.py rank) run through the
#                                                   same harness. ANSWER=1: also answer and score exact match;
#                                                   SYSTEMS (default "default trained identity bm25 minilm"):
#                                                   which rows, so a call can take a few at a time
# BANKS (default /dev/shm): where the banks go (the 100K bank is 43.4 GB; the host's RAM disk holds it).
# BANK (default bank100k): the bank's name under BANKS and the suffix of the eval's files, so the 10K set (the
# first 10,000 passages of the same file) runs as BANK=bank10k with `head -n 10000` of the passages.
# SCORES=1: the trained and identity rows also write their per-document scores (--scores-out) beside the JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
banks=${BANKS:-/dev/shm}
Q=data/retrieval/questions.jsonl
run() { # name, then the command: its JSON on stdout into $out/name.json, its log beside, the time printed
    local name=$1
    shift
    SECONDS=0
    "$@" > "$out/$name.json" 2> "$out/$name.log"
    echo "$name: exit $? in ${SECONDS} s"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("  " + "; ".join("%s %.3f/%.3f route %.3f s" % (k, v["recall@1"], v["recall@5"], v["seconds_route"])
                       for k, v in d["kinds"].items()))' "$out/$name.json" 2>/dev/null
}
case "${1:-}" in
check)
    out=${2:?OUTDIR}
    mkdir -p "$out"
    b=$banks/bank1k
    if [ ! -d "$b" ]; then
        SECONDS=0
        "$MSA" bank create "$b" -m "$M" --mode read >/dev/null &&
            "$MSA" bank add "$b" -m "$M" --jsonl data/retrieval/passages-1k.jsonl --device cuda > "$out/add-1k.log" 2>&1
        echo "bank 1k: exit $? in ${SECONDS} s"
    fi
    run gpu-1k "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json --scores-out "$out/scores-gpu.jsonl"
    MSA_ROUTE_ON_HOST=1 run host-1k "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json \
        --scores-out "$out/scores-host.jsonl"
    if cmp -s "$out/scores-gpu.jsonl" "$out/scores-host.jsonl"; then echo "scores: identical"; else echo "scores: DIFFER"; fi
    ;;
encode)
    P=${2:?PASSAGES.jsonl}
    b=$banks/${BANK:-bank100k}
    [ -d "$b" ] || "$MSA" bank create "$b" -m "$M" --mode read >/dev/null || exit 1
    SECONDS=0
    timeout "${ENCODE_TIMEOUT:-500}" "$MSA" bank add "$b" -m "$M" --jsonl "$P" --device cuda 2>&1 | tail -3
    echo "bank add: exit ${PIPESTATUS[0]} in ${SECONDS} s"
    "$MSA" bank info "$b"
    ;;
eval)
    out=${2:?OUTDIR}
    ranks=${3:-}
    mkdir -p "$out"
    b=$banks/${BANK:-bank100k}
    sfx=${BANK:-bank100k}; sfx=${sfx#bank}
    ans=()
    [ -n "${ANSWER:-}" ] && ans=(--answer)
    sc() { [ -n "${SCORES:-}" ] && echo --scores-out "$out/scores-$1-$sfx.jsonl"; }
    for sys in ${SYSTEMS:-default trained identity bm25 minilm}; do
        case $sys in
        default) run "default-$sfx" "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json "${ans[@]}" ;;
        trained) run "trained-$sfx" "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json "${ans[@]}" \
            --no-lexical --system trained $(sc trained) ;;
        identity) run "identity-$sfx" "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json "${ans[@]}" \
            --no-lexical --router none --system identity $(sc identity) ;;
        bm25 | minilm)
            [ -n "$ranks" ] && [ -f "$ranks/$sys.jsonl" ] &&
                run "$sys-$sfx" "$MSA" eval qa -m "$M" --bank "$b" "$Q" --device cuda --json "${ans[@]}" \
                    --ranking "$ranks/$sys.jsonl" --system "$sys" ;;
        *) echo "gpu-100k: unknown system '$sys'" >&2 ;;
        esac
    done
    ;;
*)
    sed -n '2,15p' "$0" >&2
    exit 64
    ;;
esac
