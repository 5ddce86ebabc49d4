# common.sh — sourced by the CLI test scripts (tests/cli/*.sh; this folder is not run as a test itself):
# the binary under test, a scratch directory removed on exit, and the PASS/FAIL lines tests/run.sh counts.
# Helpers that make a script's result trustworthy (issue 13):
#   run_msa ARGS...        runs $MSA: stdout in $tmp/out, stderr in $tmp/err, exit status in $rc; a death by
#                          signal or a sanitizer report prints its own FAIL line at once (whatever the script
#                          checks afterwards), so no case can pass over a crash.
#   expect_rc NAME WANT ARGS...  run_msa, then PASS when the exit status is WANT and stderr is not empty
#   need_python_numpy NAME the one SKIP a generated input may give: python3/numpy missing on this machine
#   synthetic_checkpoint DIR NAME [ARGS...]  the small synthetic MSA checkpoint: a generator failure with
#                          numpy present is a FAIL, never a SKIP
#   finish                 the script's last line: prints "# cli: done" (tests/run.sh requires it from a
#                          script that calls finish, so exiting half-way is a failure)
# Under tests/run.sh, $MSA is tests/cli/lib/msa-checked.sh, which watches every msa run of every script.
MSA=${MSA:-build/msa}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { echo "PASS $1"; }
no() { echo "FAIL $1"; }
rc=0

# the signature of a sanitizer report (AddressSanitizer, LeakSanitizer, UBSan, TSan)
SANITIZER_RE='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer|SUMMARY: [A-Za-z]+Sanitizer'

run_msa() {
    "$MSA" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    msa_check_crash "$*"
    return 0
}

# msa_check_crash WHAT: after any msa run whose stderr is in $tmp/err and status in $rc
msa_check_crash() {
    if [ "$rc" -ge 128 ]; then echo "FAIL msa_crash (msa $1: killed by signal $((rc - 128)))"; fi
    if grep -qE "$SANITIZER_RE" "$tmp/err" 2>/dev/null; then
        echo "FAIL msa_sanitizer (msa $1)"; grep -m3 -E "$SANITIZER_RE" "$tmp/err" | sed 's/^/  /'
    fi
}

expect_rc() { # NAME WANT ARGS...
    local name=$1 want=$2; shift 2
    run_msa "$@"
    if [ "$rc" -eq "$want" ] && [ -s "$tmp/err" ]; then ok "$name"
    else echo "FAIL $name (exit $rc, want $want: $(head -c 200 "$tmp/err"))"; fi
}

need_python_numpy() { # NAME: SKIP (and fail the caller's test) only when the capability is missing
    python3 -c 'import numpy' 2>/dev/null && return 0
    echo "SKIP $1 (python3 with numpy not installed on this machine: scripts/setup-deps.sh)"
    return 1
}

# synthetic_checkpoint DIR NAME [ARGS...]: write the small synthetic MSA checkpoint (tests/ref) into DIR.
# Returns 1 after a SKIP line (no numpy here) or a FAIL line (the generator failed: a bug, not a skip).
synthetic_checkpoint() {
    local dir=$1 name=$2; shift 2
    need_python_numpy "$name" || return 1
    python3 tests/ref/make_msa_checkpoint.py "$dir" "$@" >"$tmp/gen.log" 2>&1 && return 0
    echo "FAIL $name (the synthetic checkpoint generator failed)"; sed 's/^/  /' "$tmp/gen.log" | tail -n 20
    return 1
}

# The synthetic checkpoint plus a router file (tests/ref/make_router_fixture.py) and the committed numpy
# reference's inputs: sets m (plain model), rf (router file), exp (tests/fixtures/msa/router_expect.json), q (its
# question), P (its pooling) and writes $tmp/docs.jsonl (its documents). Returns 1 after a SKIP/FAIL line.
router_fixture() { # NAME
    synthetic_checkpoint "$tmp/ck" "$1" || return 1
    if ! python3 tests/ref/make_router_fixture.py "$tmp/ck" "$tmp/r" >"$tmp/gen.log" 2>&1; then # numpy is here: a bug
        echo "FAIL $1 (tests/ref/make_router_fixture.py failed)"; tail -n 20 "$tmp/gen.log"; return 1
    fi
    exp=tests/fixtures/msa/router_expect.json
    m=$tmp/r/plain; rf=$tmp/r/router.safetensors
    python3 -c 'import json,sys
for d in json.load(open(sys.argv[1]))["docs"]: print(json.dumps(d))' "$exp" >"$tmp/docs.jsonl"
    q=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["question"])' "$exp")
    P=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pooling"])' "$exp")
}

finish() { echo "# cli: done"; }
