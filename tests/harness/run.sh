#!/usr/bin/env bash
# harness/run.sh — the test runner's self-test (issue 13): planted faults that a lax harness reports as
# success. Each fault is a tiny program built against tests/unit/test.h (or a CLI script with a fake msa),
# run through tests/run.sh's own rules (its "prebuilt" suite); the runner must report each as a failure
# (non-zero exit, at least one FAIL line naming the fault). A clean program and a clean script must pass, so
# the runner is not simply failing everything. Prints PASS/FAIL per fault; tests/run.sh's "harness" suite.
set -u
cd "$(dirname "$0")/../.."
root=$PWD
T=$(mktemp -d "${TMPDIR:-/tmp}/msa-harness-XXXXXX"); trap 'rm -rf "$T"' EXIT
CC=${CC:-cc}
CFLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -Wall -Wextra -Werror -Itests/unit"

# unit NAME: compile $T/NAME.c (from stdin) into its own prebuilt directory $T/NAME/tests/test_NAME
unit() {
    cat >"$T/$1.c"
    mkdir -p "$T/$1/tests"
    $CC $CFLAGS -o "$T/$1/tests/test_$1" "$T/$1.c" -lm || { echo "FAIL $1 (the planted program did not compile)"; return 1; }
}

# runner NAME [ENV=VALUE...]: tests/run.sh on $T/NAME; its output in $T/NAME.out, exit status returned (a
# selection of programs in the caller's environment, MSA_TEST_UNIT, must not hide the planted ones)
runner() {
    local name=$1; shift
    env -u MSA_TEST_UNIT "$@" MSA_TEST_SUITES=prebuilt MSA_PREBUILT="$T/$name" MSA_TEST_CLI="${cli:-/nonexistent}" \
        bash tests/run.sh >"$T/$name.out" 2>&1
}

# expect_caught NAME WHAT PATTERN [ENV...]: the runner fails and its output matches PATTERN
expect_caught() {
    local name=$1 what=$2 pat=$3; shift 3
    runner "$name" "$@"; local rc=$?
    if [ $rc -ne 0 ] && grep -q '^0 passed, [1-9]\|^[0-9]* passed, [1-9][0-9]* failed' "$T/$name.out" && grep -qE "$pat" "$T/$name.out"; then
        echo "PASS caught_$name ($what)"
    else
        echo "FAIL caught_$name ($what: runner exit $rc)"; sed 's/^/    /' "$T/$name.out" | tail -n 15
    fi
}

# ---- clean controls: the runner must pass these
unit clean <<'C'
#include "test.h"
TEST(a) { CHECK(1 + 1 == 2); }
TEST(b) { CHECK_EQ_INT(3, 3); }
TEST(c) { SKIP("no GPU on this machine"); }
int main(void) { RUN(a); RUN(b); RUN(c); return test_summary(); }
C
runner clean; rc=$?
if [ $rc -eq 0 ] && grep -q '^2 passed, 0 failed' "$T/clean.out"; then echo "PASS clean_program_passes"
else echo "FAIL clean_program_passes (runner exit $rc)"; sed 's/^/    /' "$T/clean.out" | tail -n 15; fi

# ---- planted faults in unit programs
unit no_assert <<'C'
#include "test.h"
TEST(checks) { CHECK(1); }
TEST(asserts_nothing) { int x = 1; (void)x; }
int main(void) { RUN(checks); RUN(asserts_nothing); return test_summary(); }
C
expect_caught no_assert "a case that asserts nothing" 'FAIL asserts_nothing \(no assertion'

unit exit0_halfway <<'C'
#include "test.h"
TEST(first) { CHECK(1); }
TEST(second) { CHECK(1); exit(0); }
TEST(third) { CHECK(1); }
int main(void) { RUN(first); RUN(second); RUN(third); return test_summary(); }
C
expect_caught exit0_halfway "exit(0) half-way" 'exited after 1 of 3 declared cases'

unit _exit0_halfway <<'C'
#include "test.h"
TEST(first) { CHECK(1); }
TEST(second) { CHECK(1); fflush(stdout); _exit(0); }
int main(void) { RUN(first); RUN(second); return test_summary(); }
C
expect_caught _exit0_halfway "_exit(0) half-way, past atexit" "did not reach test_summary"

unit return_early <<'C'
#include "test.h"
TEST(first) { CHECK(1); }
TEST(second) { CHECK(1); }
int main(int argc, char **argv) { (void)argv; RUN(first); if (argc > 0) return test_summary(); RUN(second); return test_summary(); }
C
expect_caught return_early "main returns before its last RUN" '1 declared|2 declared, 1 ran'

unit skip_after_fail <<'C'
#include "test.h"
TEST(fails_then_skips) { CHECK(1 == 2); SKIP("input missing"); }
int main(void) { RUN(fails_then_skips); return test_summary(); }
C
expect_caught skip_after_fail "SKIP after a failed CHECK" 'FAIL fails_then_skips'

unit crash_after_fail <<'C'
#include <signal.h>
#include "test.h"
TEST(fails) { CHECK(0); }
TEST(crashes) { CHECK(1); raise(SIGSEGV); }
TEST(never_runs) { CHECK(1); }
int main(void) { RUN(fails); RUN(crashes); RUN(never_runs); return test_summary(); }
C
expect_caught crash_after_fail "a crash after a FAIL line" 'exit status 139: killed, crashed'

unit hung_case <<'C'
#include "test.h"
TEST(hangs) { CHECK(1); for (;;) pause(); }
int main(void) { RUN(hangs); return test_summary(); }
C
expect_caught hung_case "a hung case (per-case alarm)" 'FAIL hangs \(timed out' MSA_TEST_CASE_TIMEOUT=2

unit hung_program <<'C'
#include <signal.h>
#include "test.h"
TEST(hangs_with_alarm_blocked) { sigset_t s; sigemptyset(&s); sigaddset(&s, SIGALRM); sigprocmask(SIG_BLOCK, &s, NULL); CHECK(1); for (;;) pause(); }
int main(void) { RUN(hangs_with_alarm_blocked); return test_summary(); }
C
expect_caught hung_program "a hung program (the runner's timeout)" 'exit status 124' MSA_TEST_TIMEOUT=3

# ---- planted faults in CLI scripts: a fake msa in the prebuilt directory
mkdir -p "$T/cli_clean" "$T/cli_asan" "$T/cli_crash" "$T/cli_halfway" "$T/cli_hang"
printf '#!/bin/sh\necho "$@"\n' >"$T/cli_clean/msa"; chmod +x "$T/cli_clean/msa"
cat >"$T/cli_clean.sh" <<'S'
set -u
. tests/cli/lib/common.sh
run_msa hello
[ "$rc" -eq 0 ] && grep -q hello "$tmp/out" && ok echoes || no echoes
finish
S
cli=$T/cli_clean.sh runner cli_clean; rc=$?
if [ $rc -eq 0 ] && grep -q '^1 passed, 0 failed' "$T/cli_clean.out"; then echo "PASS clean_script_passes"
else echo "FAIL clean_script_passes (runner exit $rc)"; sed 's/^/    /' "$T/cli_clean.out" | tail -n 15; fi

# an ASan report (a leak, as `msa tokenize --decode` had) in a subprocess whose output is right: the
# script looks only at stdout, as tokenize.sh did
if cat >"$T/leak.c" <<'C' && $CC -fsanitize=address -g -o "$T/cli_asan/msa" "$T/leak.c" 2>"$T/asan_build.err"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) { char *p = malloc(64); strcpy(p, argc > 1 ? argv[1] : ""); puts(p); p = NULL; return 0; }
C
then
    cat >"$T/cli_asan.sh" <<'S'
set -u
MSA=${MSA:-build/msa}
out=$("$MSA" decoded 2>/dev/null)
if [ "$out" = "decoded" ]; then echo "PASS decode_output"; else echo "FAIL decode_output"; fi
S
    cli=$T/cli_asan.sh expect_caught cli_asan "an ASan (leak) report inside a CLI subprocess" 'sanitizer report' ASAN_OPTIONS=detect_leaks=1
else
    echo "FAIL caught_cli_asan (could not build the ASan program: $(head -c 200 "$T/asan_build.err"))"
fi

printf '#!/bin/sh\nkill -SEGV $$\n' >"$T/cli_crash/msa"; chmod +x "$T/cli_crash/msa"
cat >"$T/cli_crash.sh" <<'S'
set -u
MSA=${MSA:-build/msa}
"$MSA" run -p hi >/dev/null 2>&1
echo "PASS exit_status_never_read"
S
cli=$T/cli_crash.sh expect_caught cli_crash "a CLI subprocess killed by a signal, status never read" 'killed by signal 11'

cp "$T/cli_clean/msa" "$T/cli_halfway/msa"
cat >"$T/cli_halfway.sh" <<'S'
set -u
. tests/cli/lib/common.sh
ok first
exit 0
ok second
finish
S
cli=$T/cli_halfway.sh expect_caught cli_halfway "a CLI script that exits 0 half-way" "no '# cli: done'"

cp "$T/cli_clean/msa" "$T/cli_hang/msa"
printf 'set -u\necho "PASS before_hang"\nsleep 300\n' >"$T/cli_hang.sh"
cli=$T/cli_hang.sh expect_caught cli_hang "a hung CLI script" 'exit status 124' MSA_TEST_TIMEOUT=3

# the generated-input rule: a checkpoint generator that fails is a FAIL, not a SKIP
mkdir -p "$T/cli_gen"; cp "$T/cli_clean/msa" "$T/cli_gen/msa"
cat >"$T/cli_gen.sh" <<'S'
set -u
. tests/cli/lib/common.sh
synthetic_checkpoint "$tmp/ck" generated --variant no-such-variant || exit 0
ok never
S
cli=$T/cli_gen.sh expect_caught cli_gen "a failing checkpoint generator" 'FAIL generated \(the synthetic checkpoint generator failed'
