#!/usr/bin/env bash
# run.sh — builds and runs every test suite and prints "N passed, N failed" last.
#   suites (MSA_TEST_SUITES, default "plain asan fuzz"):
#     plain  tests/unit/test_* and tests/cli/*.sh against build/
#     cuda   the CUDA build (make CUDA=1: nvcc, cuBLASLt) compiles and links with its GPU tests, and what of it
#            needs no GPU runs: test_device (auto falls back to the CPU, cuda is a clear error) and the CUDA
#            build's msa on the CPU. The GPU tests themselves run on a GPU machine: tests/gpu/run.sh
#     asan   the same against build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer)
#     fuzz   every libFuzzer target in tests/fuzz/ for FUZZ_SECONDS (default 60) from its seed corpus
# A test program prints "PASS name" / "FAIL name" / "SKIP name" per case; a CLI script does the same.
# A program that crashes or exits non-zero without printing a FAIL line counts as one failure.
set -u
cd "$(dirname "$0")/.."
suites=${MSA_TEST_SUITES:-plain cuda asan fuzz}
jobs=$(nproc 2>/dev/null || echo 2)
passed=0; failed=0; skipped=0
log=$(mktemp); trap 'rm -f "$log"' EXIT

count() { # name, exit status; reads the log
    local p f s
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $1 (exit status $2)"; f=1
    fi
    grep -E '^(FAIL|SKIP) ' "$log" | sed "s|^|  [$1] |"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    printf '%-48s %3d passed %3d failed %3d skipped\n' "$1" "$p" "$f" "$s"
}

run_suite() { # build dir, label
    local build=$1 label=$2 t rc
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        MSA_BUILD=$build MSA_SUITE=$label "$t" >"$log" 2>&1; rc=$?
        [ -n "${MSA_TEST_VERBOSE:-}" ] && cat "$log"
        if [ $rc -ne 0 ]; then tail -n 40 "$log" | sed 's/^/    /'; fi
        count "$label/$(basename "$t")" $rc
    done
    for t in tests/cli/*.sh; do
        [ -f "$t" ] || continue
        MSA="$build/msa" MSA_BUILD=$build MSA_SUITE=$label bash "$t" >"$log" 2>&1; rc=$?
        [ -n "${MSA_TEST_VERBOSE:-}" ] && cat "$log"
        if [ $rc -ne 0 ]; then tail -n 40 "$log" | sed 's/^/    /'; fi
        count "$label/$(basename "$t")" $rc
    done
}

for suite in $suites; do
    case $suite in
    plain)
        make -s -j"$jobs" tests-bin >"$log" 2>&1 || { cat "$log"; echo "FAIL build (plain)"; failed=$((failed + 1)); continue; }
        run_suite build plain ;;
    cuda)
        nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
        if [ ! -x "$nvcc" ]; then echo "FAIL cuda build (nvcc not found)"; failed=$((failed + 1)); continue; fi
        { make -s -j"$jobs" all && make -s -j"$jobs" CUDA=1 NVCC="$nvcc" all tests-gpu build-cuda/tests/test_device; } >"$log" 2>&1 \
            || { cat "$log"; echo "FAIL build (cuda)"; failed=$((failed + 1)); continue; }
        build-cuda/tests/test_device >"$log" 2>&1; rc=$?
        [ $rc -ne 0 ] && tail -n 40 "$log" | sed 's/^/    /'
        count "cuda/test_device" $rc
        # the CUDA build's CLI on a machine without a GPU: runs on the CPU, same greedy text as the plain build
        if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
            a=$(build/msa run -m models/SmolLM2-135M-Instruct.Q4_1.gguf -p "The Earth orbits" -n 8 2>/dev/null)
            b=$(build-cuda/msa run -m models/SmolLM2-135M-Instruct.Q4_1.gguf -p "The Earth orbits" -n 8 2>/dev/null)
            if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "PASS cuda_build_cli_on_cpu" >"$log"; rc=0
            else echo "FAIL cuda_build_cli_on_cpu ('$a' vs '$b')" >"$log"; rc=1; fi
            count "cuda/cli" $rc
        fi ;;
    asan)
        make -s -j"$jobs" asan >"$log" 2>&1 || { cat "$log"; echo "FAIL build (asan)"; failed=$((failed + 1)); continue; }
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_suite build-asan asan ;;
    tsan)
        make -s -j"$jobs" tsan >"$log" 2>&1 || { cat "$log"; echo "FAIL build (tsan)"; failed=$((failed + 1)); continue; }
        TSAN_OPTIONS=halt_on_error=1 MSA_TEST_ONLY_CONCURRENCY=1 run_suite build-tsan tsan ;;
    fuzz)
        if ! command -v clang >/dev/null; then echo "FAIL fuzz (clang not installed)"; failed=$((failed + 1)); continue; fi
        make -s -j"$jobs" fuzz >"$log" 2>&1 || { cat "$log"; echo "FAIL build (fuzz)"; failed=$((failed + 1)); continue; }
        for t in build-fuzz/fuzz/fuzz_*; do
            [ -x "$t" ] || continue
            name=$(basename "$t"); corpus=$(mktemp -d)
            [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$corpus/"
            "$t" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -timeout=20 "$corpus" >"$log" 2>&1; rc=$?
            if [ $rc -eq 0 ]; then echo "PASS $name" >>"$log"; else tail -n 60 "$log"; echo "FAIL $name" >>"$log"; fi
            grep -E '^#[0-9]+ +DONE' "$log" | tail -n 1 | sed "s/^/  [$name] /"
            rm -rf "$corpus"
            count "fuzz/$name" 0
        done ;;
    *) echo "unknown suite $suite"; failed=$((failed + 1)) ;;
    esac
done
echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
