#!/usr/bin/env bash
# bank.sh — `msa bank` end to end through the CLI ($MSA): create, add (files, directories, stdin, JSONL,
# idempotent, conflict, --replace), ls/info (text and JSON), rm, verify, compact, export/import, and the exit
# codes: 65 malformed (truncated, bit flip, unknown major version, another model's export), 66 missing,
# 73 conflict, 75 locked, 64 usage. Without a model, documents get --synthetic vectors.
set -u
MSA=${MSA:-build/msa}
T=$(mktemp -d "${TMPDIR:-/tmp}/msa-cli-bank-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
expect() { # name expected-exit command...
    local name=$1 want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name"; else fail "$name" "exit $rc, wanted $want: $(head -c 300 "$T/err")"; fi
}

B=$T/bank
expect create 0 "$MSA" bank create "$B" --shape-of synthetic-small
expect create_again_conflict 73 "$MSA" bank create "$B" --shape-of synthetic-small
expect create_usage 64 "$MSA" bank create "$T/x"
mkdir -p "$T/docs/sub"
printf 'alpha document text' >"$T/docs/a.txt"
printf 'beta document, a little longer than alpha' >"$T/docs/sub/b.txt"
expect add_dir 0 "$MSA" bank add "$B" "$T/docs" --synthetic
grep -q "added 2" "$T/out" && pass add_dir_count || fail add_dir_count "$(cat "$T/out")"
expect add_again_unchanged 0 "$MSA" bank add "$B" "$T/docs" --synthetic
grep -q "added 0, replaced 0, unchanged 2" "$T/out" && pass idempotent || fail idempotent "$(cat "$T/out")"
printf '{"id":"j1","text":"from jsonl","meta":{"src":"test"}}\n\n{"id":"j2","text":"second"}\n' >"$T/d.jsonl"
expect add_jsonl 0 "$MSA" bank add "$B" --jsonl "$T/d.jsonl" --synthetic
# stdin: exit 0, one document added, and it is listed under the given id
echo "piped text" | "$MSA" bank add "$B" - --id piped --synthetic >"$T/out" 2>&1 && grep -q "added 1, replaced 0, unchanged 0" "$T/out" &&
    [ "$("$MSA" bank ls "$B" | awk '$1 == "piped"' | wc -l)" -eq 1 ] && pass add_stdin || fail add_stdin "$(cat "$T/out")"
printf 'alpha changed' >"$T/docs/a.txt"
expect add_conflict 73 "$MSA" bank add "$B" "$T/docs/a.txt" --synthetic
grep -q "different content" "$T/err" && pass conflict_message || fail conflict_message "$(cat "$T/err")"
expect add_replace 0 "$MSA" bank add "$B" "$T/docs/a.txt" --synthetic --replace
expect add_missing_file 66 "$MSA" bank add "$B" "$T/nope.txt" --synthetic
printf '{"id": 5}\n' >"$T/bad.jsonl"
expect add_bad_jsonl 65 "$MSA" bank add "$B" --jsonl "$T/bad.jsonl" --synthetic

expect ls 0 "$MSA" bank ls "$B"
[ "$(wc -l <"$T/out")" -eq 6 ] && head -1 "$T/out" | grep -q "^ID " && pass ls_count || fail ls_count "$(cat "$T/out")"
expect ls_json 0 "$MSA" bank ls "$B" --json
grep -q '"id":"j1","index":2,' "$T/out" && grep -q '"meta":{"src":"test"}' "$T/out" && pass ls_json_fields || fail ls_json_fields "$(cat "$T/out")"
# the replaced document got a new index (5); index 0 is gone for good
grep -q "\"id\":\"$T/docs/a.txt\",\"index\":5" "$T/out" && pass replace_new_index || fail replace_new_index "$(cat "$T/out")"
expect info_json 0 "$MSA" bank info "$B" --json
# (the automatic merge at commit may already have purged the replaced document: deleted is 0 or 1)
grep -Eq '"documents":5,"deleted":[01],' "$T/out" && pass info_counts || fail info_counts "$(cat "$T/out")"
expect rm 0 "$MSA" bank rm "$B" j2 piped
expect rm_missing 66 "$MSA" bank rm "$B" j1 not-there
"$MSA" bank ls "$B" | grep -q "^j1 " && pass rm_all_or_nothing || fail rm_all_or_nothing
expect verify 0 "$MSA" bank verify "$B"
expect compact 0 "$MSA" bank compact "$B"
grep -Eq "[0-9]+ deleted documents purged, 1 segments" "$T/out" && pass compact_purged || fail compact_purged "$(cat "$T/out")"
expect verify_after_compact 0 "$MSA" bank verify "$B" --json
# 5 live documents, j2 and piped removed: verify must have checked the 3 left, and found them sound
grep -q '"ok":true,"documents":3,' "$T/out" && pass verify_after_compact_counts || fail verify_after_compact_counts "$(cat "$T/out")"
expect export 0 "$MSA" bank export "$B" "$T/b.msax"
expect import 0 "$MSA" bank import "$T/b.msax" "$T/imported"
diff <("$MSA" bank ls "$B") <("$MSA" bank ls "$T/imported") >/dev/null && pass import_identical || fail import_identical
expect import_into_populated 73 "$MSA" bank import "$T/b.msax" "$T/imported"

# another model's export into an empty bank of that model: exit 65 (fingerprint)
expect create_other 0 "$MSA" bank create "$T/other" --shape-of msa-4b
expect import_other_model 65 "$MSA" bank import "$T/b.msax" "$T/other"

# locked: a second writer while another holds the lock
if command -v flock >/dev/null; then
    flock "$B/LOCK" sleep 3 &
    sleep 0.5
    expect add_locked 75 "$MSA" bank add "$B" "$T/docs/sub/b.txt" --synthetic
    wait
else
    echo "SKIP add_locked (flock(1) not installed)"
fi

expect missing_bank 66 "$MSA" bank info "$T/no-such-bank"
expect not_a_bank 65 "$MSA" bank info "$T/docs"

# malformed banks: each refused with exit 65 and a message naming the file
cp -a "$B" "$T/m"
seg=$(ls "$T/m"/seg-* | head -n 1)
size=$(stat -c %s "$seg")
for cut in 0 100 4096 4097 $((size / 2)) $((size - 1)); do
    cp -a "$B/." "$T/m/"
    truncate -s "$cut" "$seg"
    expect "truncated_segment_at_$cut" 65 "$MSA" bank verify "$T/m"
done
for off in 20 200 5000 $((size - 10)); do
    cp -a "$B/." "$T/m/"
    printf '\x5a' | dd of="$seg" bs=1 seek="$off" conv=notrunc status=none
    expect "bit_flip_segment_at_$off" 65 "$MSA" bank verify "$T/m"
    grep -q "$(basename "$seg")" "$T/err" && pass "bit_flip_message_$off" || fail "bit_flip_message_$off" "$(cat "$T/err")"
done
cp -a "$B/." "$T/m/"
printf '\x01' | dd of="$T/m/MANIFEST" bs=1 seek=40 conv=notrunc status=none
expect bit_flip_manifest 65 "$MSA" bank ls "$T/m"
cp -a "$B/." "$T/m/"
truncate -s 100 "$T/m/MANIFEST"
expect truncated_manifest 65 "$MSA" bank ls "$T/m"
cp -a "$B/." "$T/m/"
printf '\x07' | dd of="$T/m/MANIFEST" bs=1 seek=8 conv=notrunc status=none
expect unknown_major_version 65 "$MSA" bank info "$T/m"
grep -q "major version 7" "$T/err" && pass unknown_major_message || fail unknown_major_message "$(cat "$T/err")"
cp -a "$B/." "$T/m/"
rm -f "$seg"
expect missing_segment 65 "$MSA" bank verify "$T/m"
head -c 5000 "$T/b.msax" >"$T/trunc.msax"
expect truncated_export 65 "$MSA" bank import "$T/trunc.msax" "$T/imp2"
[ ! -e "$T/imp2" ] && pass failed_import_leaves_nothing || fail failed_import_leaves_nothing

# issue 12: hostile input through the CLI
H=$T/hostile
expect h_create_trailing_slash 0 "$MSA" bank create "$H/" --shape-of synthetic-small
mkdir -p "$T/cyc/sub"
printf 'one' >"$T/cyc/a.txt"
printf 'two' >"$T/cyc/sub/b.txt"
ln -s . "$T/cyc/self"
ln -s .. "$T/cyc/sub/up"
expect h_symlink_cycle_terminates 0 timeout 30 "$MSA" bank add "$H" "$T/cyc" --synthetic
grep -q "added 2" "$T/out" && pass h_symlink_cycle_each_once || fail h_symlink_cycle_each_once "$(cat "$T/out")"
printf '{"id":"ok1","text":"fine"}\n{"id":"bad\\nid","text":"x"}\n' >"$T/nl.jsonl"
expect h_newline_id_refused 65 "$MSA" bank add "$H" --jsonl "$T/nl.jsonl" --synthetic
long=$(head -c 5000 /dev/zero | tr '\0' 'x')
printf '{"id":"ok2","text":"fine"}\n{"id":"%s","text":"x"}\n' "$long" >"$T/long.jsonl"
expect h_long_id_last_line_refused 65 "$MSA" bank add "$H" --jsonl "$T/long.jsonl" --synthetic
"$MSA" bank ls "$H" | grep -Eq " ok[12]$" && fail h_nothing_added_before_bad_id || pass h_nothing_added_before_bad_id
expect h_export_into_bank_refused 64 "$MSA" bank export "$H" "$H/MANIFEST"
expect h_bank_intact_after_export_attempt 0 "$MSA" bank verify "$H"
expect h_export 0 "$MSA" bank export "$H/" "$T/h.msax"
expect h_import_trailing_slash 0 "$MSA" bank import "$T/h.msax" "$T/himp/"
expect h_imported_verify 0 "$MSA" bank verify "$T/himp"
mv "$H/MANIFEST" "$T/h.manifest" && mkfifo "$H/MANIFEST"
expect h_fifo_manifest_65 65 timeout 30 "$MSA" bank ls "$H"
expect h_fifo_manifest_writer_65 65 timeout 30 "$MSA" bank add "$H" "$T/cyc/a.txt" --synthetic
rm -f "$H/MANIFEST" && mv "$T/h.manifest" "$H/MANIFEST"
expect h_bank_back 0 "$MSA" bank verify "$H"

# with a real model (the default GGUF, when installed): shapes and fingerprint come from it
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$M" ]; then
    expect create_from_model_read 0 "$MSA" bank create "$T/mb" -m "$M" --mode read
    "$MSA" bank info "$T/mb" | grep -q "SmolLM2-135M-Instruct.Q4_1.gguf" && pass model_path_recorded || fail model_path_recorded
    expect create_native_needs_msa_checkpoint 69 "$MSA" bank create "$T/mb2" -m "$M" --mode native
    grep -q -- "--mode read" "$T/err" && pass native_refusal_names_mode_read || fail native_refusal_names_mode_read "$(cat "$T/err")"
    [ ! -e "$T/mb2" ] && pass failed_create_leaves_nothing || fail failed_create_leaves_nothing
    expect add_other_model_fingerprint 65 "$MSA" bank add "$B" "$T/docs/a.txt" -m "$M"
    grep -q "another model" "$T/err" && pass fingerprint_message || fail fingerprint_message "$(cat "$T/err")"
else
    echo "SKIP create_from_model_read (default model not installed: make model)"
fi

# with a small MSA checkpoint (tests/ref/make_hf_checkpoints.py; generated, not committed): encode for real,
# then the same documents again encode nothing (restart costs zero tokens), then a conflicting edit
MC=tests/fixtures/generated/hf/msa-f32
if [ -d "$MC" ]; then
    expect create_from_msa_checkpoint 0 "$MSA" bank create "$T/enc" -m "$MC"
    printf 'The capital of France is Paris.' >"$T/e1.txt"
    printf 'Bananas are yellow.' >"$T/e2.txt"
    expect encode_add 0 "$MSA" bank add "$T/enc" "$T/e1.txt" "$T/e2.txt"
    grep -q "added 2, replaced 0, unchanged 0" "$T/out" && pass encode_add_counts || fail encode_add_counts "$(cat "$T/out")"
    expect encode_again_nothing 0 "$MSA" bank add "$T/enc" "$T/e1.txt" "$T/e2.txt"
    grep -q "unchanged 2; 0 tokens encoded" "$T/out" && pass zero_tokens_reencoded || fail zero_tokens_reencoded "$(cat "$T/out")"
    "$MSA" bank info "$T/enc" | grep -q "template     stored" && pass template_stored || fail template_stored
    expect encoded_verify 0 "$MSA" bank verify "$T/enc"
    grep -q "^ok: 2 documents" "$T/out" && pass encoded_verify_counts || fail encoded_verify_counts "$(cat "$T/out")"
    printf 'The capital of France is Lyon.' >"$T/e1.txt"
    expect encode_conflict 73 "$MSA" bank add "$T/enc" "$T/e1.txt"
else
    echo "SKIP create_from_msa_checkpoint ($MC not generated: python3 tests/ref/make_hf_checkpoints.py)"
fi
