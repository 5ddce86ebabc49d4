#!/usr/bin/env bash
# tests/gpu/run.sh — the GPU test run, on a machine with an NVIDIA GPU (sm_90a: H100/H200) and the CUDA
# toolkit: builds with CUDA=1 into build-cuda/, then
#   1. test_cuda_ops    every CUDA operation against the CPU backend (random inputs, poisoned outputs)
#   2. test_cuda_model  logits, 64-step greedy and stage-1 pooling, GPU against CPU, on the test checkpoints
#   3. test_backbone    the transformers fixtures and forward properties with the model on the GPU
#   4. msa demo --check on the GPU (the default model: read mode, routing + answers)
#   5. compute-sanitizer memcheck and racecheck over test_cuda_ops
# Prints PASS/FAIL lines and ends with "N passed, N failed"; exits 1 on any failure.
# Needs the default model (make model, or models/ carried to the machine) and the generated checkpoints
# (bash scripts/make-test-checkpoints.sh, or tests/fixtures/generated carried).
set -u
cd "$(dirname "$0")/../.."
export MSA_TEST_DEVICE=cuda
jobs=$(nproc 2>/dev/null || echo 4)
passed=0; failed=0
log=$(mktemp); trap 'rm -f "$log"' EXIT

tally() { # name, exit status (the log holds the program's PASS/FAIL lines)
    local p f
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL $1 (exit status $2)"; f=1; fi
    grep -E '^(FAIL|SKIP) ' "$log" | sed "s|^|  [$1] |"
    passed=$((passed + p)); failed=$((failed + f))
    printf '%-40s %3d passed %3d failed\n' "$1" "$p" "$f"
}

# MSA_GPU_PREBUILT=1: build-cuda/ was built elsewhere by scripts/gpu-pack.sh (this machine lacks the -dev
# packages); its non-CUDA libraries are in build-cuda/lib.
if [ -n "${MSA_GPU_PREBUILT:-}" ]; then
    export LD_LIBRARY_PATH="$PWD/build-cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif ! make -s -j"$jobs" CUDA=1 all tests-gpu build-cuda/tests/test_backbone >"$log" 2>&1; then
    cat "$log"; echo "FAIL build (CUDA=1)"; echo "0 passed, 1 failed"; exit 1
fi
[ -d tests/fixtures/generated/hf ] || bash scripts/make-test-checkpoints.sh >/dev/null 2>&1 || true

for t in build-cuda/tests-gpu/test_cuda_ops build-cuda/tests-gpu/test_cuda_model build-cuda/tests/test_backbone; do
    timeout 900 "$t" >"$log" 2>&1; rc=$?
    grep -vE '^(PASS|FAIL|SKIP) ' "$log" | tail -n 60 | sed 's/^/    /'
    tally "$(basename "$t")" $rc
done

if timeout 900 build-cuda/msa demo --check >"$log" 2>&1; then echo "PASS demo_check_on_gpu" >>"$log"; rc=0
else echo "FAIL demo_check_on_gpu" >>"$log"; rc=1; fi
tail -n 20 "$log" | sed 's/^/    /'
tally "msa demo --check" $rc

if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        MSA_TEST_SMALL=1 timeout "${MSA_GPU_SANITIZER_TIMEOUT:-1200}" compute-sanitizer --tool "$tool" --error-exitcode 99 build-cuda/tests-gpu/test_cuda_ops >"$log" 2>&1
        rc=$?
        grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race' "$log" | head -n 20 | sed 's/^/    /'
        [ $rc -eq 124 ] && echo "    $tool: timed out after ${MSA_GPU_SANITIZER_TIMEOUT:-1200} s (MSA_GPU_SANITIZER_TIMEOUT)"
        sed -i 's/^PASS /pass /; s/^FAIL /fail /' "$log" # the ops' own results are counted above
        if [ $rc -eq 0 ]; then echo "PASS compute_sanitizer_$tool" >>"$log"; else echo "FAIL compute_sanitizer_$tool" >>"$log"; fi
        tally "compute-sanitizer $tool" $rc
    done
else
    echo "FAIL compute-sanitizer not found"; failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
