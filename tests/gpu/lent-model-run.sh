#!/usr/bin/env bash
# lent-model-run.sh — the default model's GPU cases, as the last of the consecutive calls that carried its parts
# (tests/gpu/README.md): join models/part-a? and check the sha256, then test_cuda_model and test_backbone (which
# cover the default model only when it is present), `msa demo --check` on the GPU, and NIAH on the GPU
# (scripts/gpu-niah.sh, SIZES default "32768 131072") bounded by NIAH_TIMEOUT seconds (default 240). Needs
# build-cuda/ and the generated checkpoints from an earlier lent-run.sh on the same warm machine. Logs and a
# tar of the NIAH results go to $OUT (the tool's output folder, at most 8 files, no '+' in names).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
. scripts/gpu-env.sh
join_default_model || { echo "lent-model-run: the joined parts are not $M (a part missing?)"; exit 1; }
export MSA_TEST_DEVICE=cuda
fail=0
for t in build-cuda/tests-gpu/test_cuda_model build-cuda/tests/test_backbone; do
    timeout 150 "$t" > "$out/$(basename "$t").log" 2>&1 || fail=1
    echo "$(basename "$t"): $(grep -c '^PASS ' "$out/$(basename "$t").log") passed, $(grep -c '^FAIL ' "$out/$(basename "$t").log") failed"
    grep -E '^(FAIL|SKIP) ' "$out/$(basename "$t").log"
done
timeout 60 "$MSA" demo --check > "$out/demo.log" 2>&1 || fail=1
tail -n 1 "$out/demo.log"
SIZES=${SIZES:-32768 131072} timeout "${NIAH_TIMEOUT:-240}" bash scripts/gpu-niah.sh /tmp/gpu-niah
tar czf "$out/niah.tgz" -C /tmp gpu-niah
exit $fail
