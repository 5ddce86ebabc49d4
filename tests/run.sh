#!/usr/bin/env bash
# run.sh — builds and runs every test suite and prints "N passed, N failed" last.
#   suites (MSA_TEST_SUITES, default "plain asan fuzz"):
#     plain  tests/unit/test_* and tests/cli/*.sh against build/
#     cuda   the CUDA build (make CUDA=1: nvcc, cuBLASLt) compiles and links with its GPU tests, and what of it
#            needs no GPU runs: test_device (auto falls back to the CPU, cuda is a clear error) and the CUDA
#            build's msa on the CPU. The GPU tests themselves run on a GPU machine: tests/gpu/run.sh
#     asan   the same against build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer), with MSA_TEST_SMALL=1:
#            the scripts whose model runs would take many minutes under ASan shrink them (as tests/gpu/run.sh does
#            under compute-sanitizer)
#     fuzz   every libFuzzer target in tests/fuzz/ for FUZZ_SECONDS (default 60) from its seed corpus
# A test program prints "PASS name" / "FAIL name" / "SKIP name" per case; a CLI script does the same.
# What the runner adds so that nothing passes without proof (issue 13; tests/harness checks each rule):
#   - a program that crashes, is killed or exits non-zero without a FAIL line is one failure; a death by
#     signal (or by the timeout) is a failure of its own even after FAIL lines;
#   - a sanitizer report anywhere in a program's or script's output is a failure, whatever the exit status;
#   - a unit program must end with test.h's "# cases: declared N ran M" line and M must reach N;
#   - each program and script runs under `timeout` (MSA_TEST_TIMEOUT seconds; plain 1200, asan 3000), each
#     unit case under test.h's alarm (MSA_TEST_CASE_TIMEOUT; plain 600, asan 1500);
#   - CLI scripts get $MSA = tests/cli/lib/msa-checked.sh: any msa run that dies by a signal or prints a
#     sanitizer report is a failure of the script even when the script never looks; a script that ends with
#     common.sh's `finish` (or echoes "# cli: done") must print that line (exiting half-way is a failure).
#   harness  tests/harness/run.sh: planted faults (a case with no assertion, exit 0 half-way, SKIP after a
#            failed CHECK, crash after FAIL, a hung case, an ASan report in a CLI subprocess) must each be
#            reported as failures by this runner
#   mutate   scripts/mutate.sh --fast: the one-line mutations whose tests take seconds must all be caught
set -u
cd "$(dirname "$0")/.."
suites=${MSA_TEST_SUITES:-plain harness mutate cuda asan fuzz}
jobs=$(nproc 2>/dev/null || echo 2)
passed=0; failed=0; skipped=0; last_count=$SECONDS
log=$(mktemp); checklog=$(mktemp); trap 'rm -f "$log" "$checklog"' EXIT

SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer|SUMMARY: [A-Za-z]+Sanitizer'

count() { # name, exit status[, kind: unit|cli|other]; reads the log
    local p f s kind=${3:-other}
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $1 (exit status $2)"; f=1
    elif [ "$2" -ge 124 ]; then # timeout (124), or killed by a signal: whatever it printed before, it did not finish
        echo "FAIL $1 (exit status $2: killed, crashed or timed out after its FAIL lines)"; f=$((f + 1))
    fi
    if grep -qE "$SANITIZER_RE" "$log"; then
        echo "FAIL $1 (sanitizer report)"; grep -m3 -E "$SANITIZER_RE" "$log" | sed 's/^/    /'; f=$((f + 1))
    fi
    # (the TSan suite lets a program that has no concurrency test skip itself whole: "SKIP test_x")
    if [ "$kind" = unit ] && ! grep -q '^# cases: declared ' "$log" &&
       ! { [ -n "${MSA_TEST_ONLY_CONCURRENCY:-}" ] && grep -q '^SKIP test_' "$log"; }; then
        echo "FAIL $1 (no '# cases:' line: the program did not reach test_summary)"; f=$((f + 1))
    fi
    if [ "$kind" = cli ] && [ -s "$checklog" ]; then
        sed "s|^|FAIL $1 (|; s|\$|)|" "$checklog"; f=$((f + $(wc -l <"$checklog")))
    fi
    if [ "$kind" = cli ] && grep -qE '^finish$|^echo "# cli: done"' "$4" && ! grep -qx '# cli: done' "$log"; then
        echo "FAIL $1 (ended before its last line: no '# cli: done')"; f=$((f + 1))
    fi
    if [ $((p + f + s)) -eq 0 ]; then echo "FAIL $1 (no PASS/FAIL/SKIP line at all)"; f=1; fi
    grep -E '^(FAIL|SKIP) ' "$log" | sed "s|^|  [$1] |"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    # the job's own seconds (or, run inline, those since the previous line): where CI's time goes
    printf '%-48s %3d passed %3d failed %3d skipped %5ds\n' "$1" "$p" "$f" "$s" "${5:-$((SECONDS - last_count))}"
    last_count=$SECONDS
}

# A suite's programs, scripts or fuzz targets can run several at a time (MSA_TEST_JOBS): each job has its own
# log, check log and exit status under $pool; results are counted in the order the jobs were started, each as
# soon as it and every job before it have finished, with its own seconds. Default: fuzz targets (one thread
# each) run as many at once as there are CPUs (CI's fuzz suite 500 s -> 322 s); the plain and asan programs one
# at a time: most of them already use every CPU (with thread pools that spin-wait), several time a stream, and
# two at once gave no clear gain on the 2-core machine (docs/testing.md has the numbers). A script whose
# first lines say "# test: alone" (its assertions time a terminal or a stream) never runs beside another job.
jobs_at_once=1
pool=$(mktemp -d); trap 'rm -f "$log" "$checklog"; rm -rf "$pool"' EXIT
n_started=0; n_counted=0; n_running=0
declare -a job_name job_kind job_script
start_job() { # name, kind (unit|cli|other), script or "", alone (1 or ""), then the command
    local name=$1 kind=$2 script=$3 alone=$4 i=$n_started
    shift 4
    if [ -n "$alone" ]; then wait_jobs 1; else wait_jobs "$jobs_at_once"; fi
    job_name[i]=$name; job_kind[i]=$kind; job_script[i]=$script
    : >"$pool/$i.check"
    (
        s=$SECONDS
        MSA_CHECK_LOG=$pool/$i.check "$@" >"$pool/$i.log" 2>&1
        echo $? >"$pool/$i.rc.tmp"; echo $((SECONDS - s)) >"$pool/$i.sec"; mv "$pool/$i.rc.tmp" "$pool/$i.rc"
    ) &
    n_started=$((n_started + 1))
    [ -n "$alone" ] && wait_jobs 1
}
wait_jobs() { # until fewer than $1 jobs run (0: all done), counting what has finished, in order
    while :; do
        count_finished
        [ "$n_running" -lt "${1:-1}" ] && [ "$1" -gt 0 ] && return
        [ "$n_running" -eq 0 ] && return
        wait -n 2>/dev/null || sleep 0.2
    done
}
count_finished() { # (count reads $log and $checklog: here the job's own files)
    local i rc log checklog
    n_running=0
    for ((i = n_counted; i < n_started; i++)); do [ -f "$pool/$i.rc" ] || n_running=$((n_running + 1)); done
    while [ "$n_counted" -lt "$n_started" ] && [ -f "$pool/$n_counted.rc" ]; do
        i=$n_counted; rc=$(cat "$pool/$i.rc") log=$pool/$i.log checklog=$pool/$i.check
        [ -n "${MSA_TEST_VERBOSE:-}" ] && cat "$log"
        if [ "$rc" -ne 0 ]; then tail -n 40 "$log" | sed 's/^/    /'; fi
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s|^|  [${job_name[i]}] |" # libFuzzer's last stats
        count "${job_name[i]}" "$rc" "${job_kind[i]}" "${job_script[i]}" "$(cat "$pool/$i.sec")"
        rm -f "$pool/$i".*
        n_counted=$((n_counted + 1))
    done
}

fuzz_one() { # a libFuzzer target for FUZZ_SECONDS from a copy of its seed corpus; then PASS/FAIL and its status
    local t=$1 name corpus rc
    name=$(basename "$t"); corpus=$(mktemp -d)
    [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$corpus/"
    "$t" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=4096 -timeout=20 "$corpus" 2>&1; rc=$?
    rm -rf "$corpus"
    if [ $rc -eq 0 ]; then echo "PASS $name"; else echo "FAIL $name"; fi
    return $rc
}

run_suite() { # build dir, label[, program timeout s, case timeout s]
    jobs_at_once=${MSA_TEST_JOBS:-1}
    local build=$1 label=$2 t ptime=${MSA_TEST_TIMEOUT:-${3:-1200}} ctime=${MSA_TEST_CASE_TIMEOUT:-${4:-600}}
    local real alone
    local u units=()
    for u in ${MSA_TEST_UNIT-test_*}; do units+=("$build"/tests/$u); done # MSA_TEST_UNIT: names or globs
    for t in "${units[@]}"; do
        [ -x "$t" ] || continue
        start_job "$label/$(basename "$t")" unit "" "" \
            env MSA_BUILD="$build" MSA_SUITE="$label" MSA_TEST_CASE_TIMEOUT="$ctime" timeout -k 10 "$ptime" "$t"
    done
    real=$(cd "$build" && pwd)/msa
    for t in ${MSA_TEST_CLI-tests/cli/*.sh}; do
        [ -f "$t" ] || continue
        alone=; head -n 20 "$t" | grep -q '^# test: alone' && alone=1
        start_job "$label/$(basename "$t")" cli "$t" "$alone" \
            env MSA="$PWD/tests/cli/lib/msa-checked.sh" MSA_REAL="$real" MSA_BUILD="$build" MSA_SUITE="$label" \
            timeout -k 10 "$ptime" bash "$t"
    done
    wait_jobs 0
}

for suite in $suites; do
    suite_start=$SECONDS
    case $suite in
    plain)
        make -s -j"$jobs" tests-bin >"$log" 2>&1 || { cat "$log"; echo "FAIL build (plain)"; failed=$((failed + 1)); continue; }
        run_suite build plain 1200 600 ;;
    prebuilt) # what tests/harness/run.sh uses: the unit/CLI rules on an already built directory (MSA_PREBUILT)
        run_suite "${MSA_PREBUILT:?MSA_PREBUILT: a directory with tests/test_* and msa}" prebuilt ;;
    harness) # the runner's own rules, on planted faults (tests/harness/run.sh prints PASS per caught fault)
        bash tests/harness/run.sh >"$log" 2>&1; rc=$?
        [ $rc -ne 0 ] && tail -n 40 "$log" | sed 's/^/    /'
        count "harness/run.sh" $rc ;;
    mutate) # the fast mutation subset: every mutation must be caught (scripts/mutate.sh)
        bash scripts/mutate.sh --fast >"$log" 2>&1; rc=$?
        sed -n '/^mutation /,$p' "$log" | grep -v '^PASS \|^FAIL ' | sed 's/^/    /'
        [ $rc -ne 0 ] && tail -n 40 "$log" | sed 's/^/    /'
        count "mutate/fast" $rc ;;
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
        MSA_TEST_SMALL=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_suite build-asan asan 3000 1500 ;;
    tsan)
        make -s -j"$jobs" tsan >"$log" 2>&1 || { cat "$log"; echo "FAIL build (tsan)"; failed=$((failed + 1)); continue; }
        TSAN_OPTIONS=halt_on_error=1 MSA_TEST_ONLY_CONCURRENCY=1 run_suite build-tsan tsan ;;
    fuzz)
        if ! command -v clang >/dev/null; then echo "FAIL fuzz (clang not installed)"; failed=$((failed + 1)); continue; fi
        make -s -j"$jobs" fuzz >"$log" 2>&1 || { cat "$log"; echo "FAIL build (fuzz)"; failed=$((failed + 1)); continue; }
        jobs_at_once=${MSA_TEST_JOBS:-$jobs}
        for t in build-fuzz/fuzz/fuzz_*; do
            [ -x "$t" ] && start_job "fuzz/$(basename "$t")" other "" "" fuzz_one "$t"
        done
        wait_jobs 0 ;;
    *) echo "unknown suite $suite"; failed=$((failed + 1)) ;;
    esac
    echo "# suite $suite: $((SECONDS - suite_start)) s, builds included"
done
echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
