# common.sh — sourced by the CLI test scripts (tests/cli/*.sh; this folder is not run as a test itself):
# the binary under test, a scratch directory removed on exit, and the PASS/FAIL lines tests/run.sh counts.
MSA=${MSA:-build/msa}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { echo "PASS $1"; }
no() { echo "FAIL $1"; }

# synthetic_checkpoint DIR NAME [ARGS...]: write the small synthetic MSA checkpoint (tests/ref) into DIR, or
# print "SKIP NAME" and fail when python3 with numpy is missing.
synthetic_checkpoint() {
    local dir=$1 name=$2; shift 2
    python3 tests/ref/make_msa_checkpoint.py "$dir" "$@" >/dev/null 2>&1 && return 0
    echo "SKIP $name (python3 with numpy needed for the synthetic checkpoint)"
    return 1
}
