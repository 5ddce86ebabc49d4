#!/usr/bin/env bash
# gpu-bench.sh — issue 9's speed run on a GPU machine, msa and its peers in one run:
#   1. the synthetic MSA-4B checkpoint (random bf16 weights in MSA-4B's exact shapes, tests/ref/
#      make_msa_checkpoint.py --full) unless MSA4B_DIR already holds one;
#   2. msa bench gpu on it (ceilings, load, prefill, decode at batch 1/4/16/64, stage-1 encode of the
#      repository's text) with --json;
#   3. PyTorch/transformers on the same checkpoint (scripts/gpu_peer_bench.py);
#   4. cold-cache load time (page cache dropped where permitted).
# Outputs JSON per step into OUT (default bench-out/gpu). Needs `make CUDA=1` to have built build-cuda/msa.
#   scripts/gpu-bench.sh [OUT]        env: MSA4B_DIR (default /tmp/msa4b-synth), ENCODE_DIR (default data/corpora),
#                                         ENCODE_TOKENS (default 1000000), JOBS (default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out/gpu}
mkdir -p "$out"
dir=${MSA4B_DIR:-/tmp/msa4b-synth}
jobs=${JOBS:-$(nproc)}
# a build made elsewhere by scripts/gpu-pack.sh carries its non-CUDA libraries
[ -d build-cuda/lib ] && export LD_LIBRARY_PATH="$PWD/build-cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ ! -f "$dir/config.json" ]; then
    python3 tests/ref/make_msa_checkpoint.py "$dir" --full --dtype bf16 --jobs "$jobs" >&2
fi
encode_args=()
[ -d "${ENCODE_DIR:-data/corpora}" ] && encode_args=(--encode-dir "${ENCODE_DIR:-data/corpora}" --encode-tokens "${ENCODE_TOKENS:-1000000}")
build-cuda/msa bench gpu -m "$dir" --reps 5 "${encode_args[@]}" --json > "$out/msa-gpu.json"
build-cuda/msa bench gpu -m "$dir" --reps 5 "${encode_args[@]}" | tee "$out/msa-gpu.txt" >&2
python3 scripts/gpu_peer_bench.py "$dir" > "$out/transformers.json"
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    build-cuda/msa bench gpu -m "$dir" --reps 1 --warmup 0 --batches 1 -p 16 -n 2 --json > "$out/msa-gpu-cold.json"
fi
echo "results in $out" >&2
