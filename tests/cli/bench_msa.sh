#!/usr/bin/env bash
# bench_msa.sh — `msa bench route`, `read` and `encode` through the CLI ($MSA), at toy sizes so that the
# benchmark code (bank written through the writer, routed through its mapping, JSON rows that
# scripts/plot_msa_bench.py reads) runs in CI: rows per size, the bank directories removed afterwards (kept
# and reused with --keep), usage errors (64), and encode on the synthetic MSA checkpoint when python3+numpy
# can make it (SKIP without numpy; a generator failure is a FAIL).
set -u
. tests/cli/lib/common.sh # need_python_numpy, finish (and $tmp, removed with $T below)
T=$(mktemp -d "${TMPDIR:-/tmp}/msa-cli-benchmsa-XXXXXX")
trap 'rm -rf "$T" "$tmp"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() { # name got want
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', wanted '$3'"; fi
}
rows() { # file -> "tokens=... tokens=..." (names of the JSON rows)
    python3 -c 'import json,sys; print(" ".join(r["name"] for r in json.load(open(sys.argv[1]))["results"]))' "$1" 2>/dev/null
}

# routing: two sizes, 2 router layers, a 3-token query; banks of 2 and 4 documents of 1024 tokens
"$MSA" bench route --sizes 2e3,4e3 --layers 2 --query-tokens 3 --reps 2 --warmup 1 --dir "$T/r" --json \
    >"$T/route.json" 2>"$T/err"
check route_exit "$?" 0
check route_rows "$(rows "$T/route.json")" "tokens=2048 tokens=4096"
check route_banks_removed "$(ls "$T/r" 2>/dev/null | wc -l)" 0
"$MSA" bench route --sizes 2e3 --layers 2 --query-tokens 3 --reps 1 --dir "$T/k" --keep >/dev/null 2>&1
"$MSA" bench route --sizes 2e3 --layers 2 --query-tokens 3 --reps 1 --dir "$T/k" --keep >"$T/out" 2>&1
check route_keep_reuses "$(grep -c 'bank reused' "$T/out")" 1
"$MSA" bench route --sizes 2e3 --layers 2 --query-tokens 3 --reps 1 --in-memory --json >"$T/mem.json" 2>/dev/null
check route_in_memory "$(rows "$T/mem.json")" "tokens=2048"
"$MSA" bench route --sizes nope >/dev/null 2>&1
check route_bad_sizes "$?" 64
"$MSA" bench route --layers 0 >/dev/null 2>&1
check route_bad_layers "$?" 64
"$MSA" bench encode >/dev/null 2>&1
check encode_needs_model "$?" 64

# read mode's scan: two sizes of 30-token documents; the host row per size (a GPU row needs --device cuda)
"$MSA" bench read --sizes 600,1200 --layers 2 --kv-dim 64 --query-tokens 5 --doc-tokens 30 --reps 2 --json \
    >"$T/read.json" 2>"$T/err"
check read_exit "$?" 0
check read_rows "$(rows "$T/read.json")" "host tokens=600 host tokens=1200"
check read_rate "$(python3 -c 'import json,sys; print(all(r["GB/s"]["median"] > 0 for r in json.load(open(sys.argv[1]))["results"]))' "$T/read.json" 2>/dev/null)" True
"$MSA" bench read --kv-dim 0 >/dev/null 2>&1
check read_bad_dim "$?" 64
"$MSA" bench read --sizes 600 --device nonsense >/dev/null 2>&1
check read_bad_device "$?" 64

# encoding on the small synthetic MSA checkpoint
if need_python_numpy encode && synthetic_checkpoint "$T/ckpt" encode --variant base; then
    "$MSA" bench encode -m "$T/ckpt" --sizes 500,1000 --dir "$T/e" --json >"$T/enc.json" 2>"$T/err"
    check encode_exit "$?" 0
    n=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(len(r), all(x["tokens/s"]["median"] > 0 for x in r))' "$T/enc.json" 2>/dev/null)
    check encode_rows "$n" "2 True"
    check encode_banks_removed "$(ls "$T/e" 2>/dev/null | wc -l)" 0
fi # without numpy need_python_numpy printed the SKIP; a generator failure printed a FAIL
finish
