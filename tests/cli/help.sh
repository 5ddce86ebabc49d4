#!/usr/bin/env bash
# help.sh — the generated help (issue 14, finding 4): walks the command table (`msa help --list`) and checks
# that `msa CMD --help` and `msa help CMD` exit 0 with a usage text on stdout for every command, that group
# help works (`msa bank --help`, `msa bench --help` lists route and encode), that --help after positionals is
# still help (`msa bank rm BANK --help`), and that docs/cli.md is what `msa help --markdown` prints (CI keeps
# the reference current).
set -u
. tests/cli/lib/common.sh
n=0
while IFS= read -r cmd; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    out=$("$MSA" $cmd --help 2>"$tmp/err"); rc=$?
    if [ $rc -eq 0 ] && echo "$out" | head -1 | grep -q "^usage: msa $cmd" && [ ! -s "$tmp/err" ]; then ok "help_$(echo "$cmd" | tr ' ' _)"
    else no "help_$(echo "$cmd" | tr ' ' _) (rc $rc: $(head -c 200 "$tmp/err"))"; fi
    # shellcheck disable=SC2086
    out2=$("$MSA" help $cmd 2>/dev/null); rc=$?
    [ $rc -eq 0 ] && [ "$out" = "$out2" ] && ok "help_cmd_$(echo "$cmd" | tr ' ' _)" || no "help_cmd_$(echo "$cmd" | tr ' ' _) (rc $rc)"
done < <("$MSA" help --list)
[ "$n" -ge 20 ] && ok help_table_walked || no "help_table_walked (only $n commands)"
"$MSA" bank rm "$tmp/bank" some-id --help >"$tmp/out" 2>&1 && grep -q "^usage: msa bank rm" "$tmp/out" && ok help_after_positionals || no help_after_positionals
"$MSA" bank compact --help >"$tmp/out" 2>&1 && grep -q "^usage: msa bank compact" "$tmp/out" && ok help_compact_not_a_bank || no help_compact_not_a_bank
"$MSA" bank --help >"$tmp/out" 2>&1 && grep -q "create" "$tmp/out" && ok help_group_bank || no help_group_bank
"$MSA" bench --help >"$tmp/out" 2>&1 && grep -q "route" "$tmp/out" && grep -q "encode" "$tmp/out" && ok help_group_bench_lists_all || no help_group_bench_lists_all
"$MSA" help run >"$tmp/out" 2>&1 && grep -q "^usage: msa run" "$tmp/out" && ok help_run_is_run || no help_run_is_run
"$MSA" run --frobnicate >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 64 ] && grep -q "^msa run: unknown option '--frobnicate'" "$tmp/err" && ok unknown_flag_64 || no "unknown_flag_64 (rc $rc)"
if "$MSA" help --markdown | cmp -s - docs/cli.md; then ok docs_cli_md_current
else no "docs_cli_md_current (regenerate: build/msa help --markdown > docs/cli.md)"; fi
exit 0
