#!/usr/bin/env bash
# tokenize.sh — `msa tokenize` through the CLI ($MSA): ids as text and JSON, --special, --decode (spaces,
# commas, JSON arrays), a directory holding tokenizer.json, the default model's GGUF (when installed), and the
# exit codes: 64 usage (also --decode input that is not a list of known ids), 66 missing input, 65 malformed
# tokenizer.json.
set -u
MSA=${MSA:-build/msa}
Q=tests/fixtures/tokenizer/qwen3/tokenizer.json
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
T=$(mktemp -d "${TMPDIR:-/tmp}/msa-cli-tok-XXXXXX")
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() { # name got want
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', wanted '$3'"; fi
}
code() { # name expected-exit command... (stdin from /dev/null unless redirected by the caller)
    local name=$1 want=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name"; else fail "$name" "exit $rc, wanted $want: $(head -c 300 "$T/err")"; fi
}

TEXT="Hello world, it's 2024! <|im_start|>user"
# References from Hugging Face tokenizers (Qwen3 tokenizer.json, add_special_tokens=False).
check plain "$(printf '%s' "$TEXT" | "$MSA" tokenize --tokenizer "$Q")" \
    "9707 1879 11 432 594 220 17 15 17 19 0 82639 318 4906 91 29 872"
check special_json "$(printf '%s' "$TEXT" | "$MSA" tokenize --tokenizer "$Q" --special --json)" \
    '{"schema":"msa.tokenize/1","ids":[9707,1879,11,432,594,220,17,15,17,19,0,220,151644,872]}'
check empty "$(printf '' | "$MSA" tokenize --tokenizer "$Q" --json)" '{"schema":"msa.tokenize/1","ids":[]}'
check decode_json_out "$(echo '[151644, 872, 198]' | "$MSA" tokenize --tokenizer "$Q" --decode --json)" '{"schema":"msa.tokenize/1","text":"<|im_start|>user\n"}'
check error_json "$("$MSA" tokenize --tokenizer "$T/nope.json" --json </dev/null 2>/dev/null)" '{"schema":"msa.error/1","error":{"status":"not found","exit_code":66,"message":"'"$T"'/nope.json: no such file or directory"}}'
check decode_spaces "$(echo '9707 1879 11 432 594' | "$MSA" tokenize --tokenizer "$Q" --decode)" "Hello world, it's"
check decode_json "$(echo '[151644, 872, 198]' | "$MSA" tokenize --tokenizer "$Q" --decode)" "<|im_start|>user"
check decode_commas "$(printf '9707,1879\n' | "$MSA" tokenize -m "$Q" --decode)" "Hello world"
# Round trip of arbitrary UTF-8 text, through a directory holding tokenizer.json.
mkdir -p "$T/model" && cp "$Q" "$T/model/tokenizer.json"
printf 'caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n\ttabs  and  spaces\n' >"$T/in.txt"
"$MSA" tokenize -m "$T/model" <"$T/in.txt" | "$MSA" tokenize -m "$T/model" --decode >"$T/rt.txt"
cmp -s "$T/in.txt" "$T/rt.txt" && pass roundtrip_dir || fail roundtrip_dir
# Document text never becomes a special id without --special.
ids=$(printf '<|im_start|>' | "$MSA" tokenize --tokenizer "$Q")
case " $ids " in *" 151644 "*) fail no_forge "$ids" ;; *) pass no_forge ;; esac

code usage_no_model 64 "$MSA" tokenize
code usage_bad_flag 64 "$MSA" tokenize --tokenizer "$Q" --bogus
code help 0 "$MSA" tokenize --help
code missing_file 66 "$MSA" tokenize --tokenizer "$T/nope.json"
grep -q "nope.json" "$T/err" && pass missing_message || fail missing_message "$(cat "$T/err")"
printf '{"model": {"vocab": {"a": 0}, "merges": ["a' >"$T/trunc.json"
code truncated_json 65 "$MSA" tokenize --tokenizer "$T/trunc.json"
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "line 1" "$T/err" && pass truncated_message || fail truncated_message "$(cat "$T/err")"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a q"]}}' >"$T/merge.json"
code unknown_merge 65 "$MSA" tokenize --tokenizer "$T/merge.json"
grep -q "'q'" "$T/err" && pass unknown_merge_message || fail unknown_merge_message "$(cat "$T/err")"
echo "12 abc" >"$T/ids.txt"
code decode_garbage 64 "$MSA" tokenize --tokenizer "$Q" --decode <"$T/ids.txt"
echo "12 99999999" >"$T/ids.txt"
code decode_out_of_range 64 "$MSA" tokenize --tokenizer "$Q" --decode <"$T/ids.txt"

if [ -f "$GGUF" ]; then
    # References from tokenizers built from the GGUF's vocab and merges (smollm pre-tokenizer).
    check gguf_plain "$(printf '%s' "$TEXT" | "$MSA" tokenize -m "$GGUF")" \
        "19556 905 28 357 506 216 34 32 34 36 17 2067 108 306 79 3738 108 46 4093"
    check gguf_special "$(printf '%s' "$TEXT" | "$MSA" tokenize -m "$GGUF" --special)" \
        "19556 905 28 357 506 216 34 32 34 36 17 216 1 4093"
    check gguf_decode "$(echo '1 4093 198 19556' | "$MSA" tokenize -m "$GGUF" --decode)" "<|im_start|>user
Hello"
else
    echo "SKIP gguf ($GGUF not installed: make model)"
fi
