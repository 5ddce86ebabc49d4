#!/usr/bin/env bash
# lent-run.sh — the GPU test run as one call on the lent H200 machine (tests/gpu/README.md): install the
# carried wheels (gguf), reassemble the default model from the parts earlier calls carried (checked against its
# sha256), generate the test checkpoints, then tests/gpu/run.sh over the prebuilt build-cuda/ (gpu-pack.sh).
# Logs go to $OUT (the tool's output folder) or /tmp/gpu-out.   Usage: bash tests/gpu/lent-run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
. scripts/gpu-env.sh
join_default_model || echo "lent-run: no complete $M (parts missing?); the default-model cases will fail" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# the host's CPUs as the default thread count sees them (src/util/cpu_count.c): online, affinity, cgroup quota
echo "host CPUs: $(getconf _NPROCESSORS_ONLN) online, $(nproc) in the affinity mask, cgroup quota: $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || echo none)"
bash scripts/make-test-checkpoints.sh >"$out/checkpoints.log" 2>&1 || { echo "FAIL make-test-checkpoints"; tail "$out/checkpoints.log"; }
MSA_GPU_PREBUILT=1 bash tests/gpu/run.sh 2>&1 | tee "$out/gpu-tests.log"
