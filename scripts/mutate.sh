#!/usr/bin/env bash
# mutate.sh — mutation testing (issue 13): a standing set of one-line mutations of the engine, each applied to
# a scratch copy of this working tree (/tmp), built, and run against the tests named for it through
# tests/run.sh's own rules (its "prebuilt" suite: crashes, sanitizer reports, missing cases all count). A
# mutation is CAUGHT when those tests fail, SURVIVED when they pass (a test gap: fix the tests, not this
# list), STALE when its line is no longer in the file (update the mutation). Prints a table; exits 1 when any
# mutation survived or is stale.
#   bash scripts/mutate.sh            the whole set (before a release; result in docs/testing.md)
#   bash scripts/mutate.sh --fast     the subset whose tests take seconds (CI: tests/run.sh "mutate" suite)
#   bash scripts/mutate.sh --only ID  one mutation (several: --only ID --only ID)
#   bash scripts/mutate.sh --list     the set (with --fast: the subset), without running
# Each mutation: ID | fast or full | file | the exact text replaced (its Nth occurrence with "#N" after the ID)
# | the replacement | the tests (unit programs test_*, CLI scripts cli/*.sh) | what it breaks.
set -u
cd "$(dirname "$0")/.."
root=$PWD

# ID | speed | file | old | new | tests | what      (fields separated by " | "; "\|" is never needed below)
MUTATIONS=$(cat <<'M'
rope_sign | full | src/backend/cpu/backend_cpu.c | v[i0] = x0 * c[i] - x1 * s[i]; | v[i0] = x0 * c[i] + x1 * s[i]; | test_backbone test_msa_numerics test_backend_ops | RoPE rotation sign (f32 path)
rope_sign_ggml | fast | src/backend/cpu/backend_cpu.c | v[i0] = fmaf(x0, c[i], -(x1 * s[i])); | v[i0] = fmaf(x0, c[i], (x1 * s[i])); | test_llamacpp_greedy test_backend_ops | RoPE sign on the GGUF (ggml) path
rope_sign_bf16 | full | src/backend/cpu/backend_cpu.c | bf16_round(-x1 * s[i]) | bf16_round(x1 * s[i]) | test_backbone test_msa_numerics test_backend_ops | RoPE sign on the bf16 path
rmsnorm_mean | full | src/backend/cpu/backend_cpu.c | float scale = 1.0f / sqrtf((float)(ss / n) + eps); | float scale = 1.0f / sqrtf((float)(ss / (n + 1)) + eps); | test_backbone test_msa_numerics | RMSNorm divides by n+1
attn_scale | full | src/backend/cpu/backend_cpu.c | d = bf16 ? bf16_round(bf16_round(d) * scale) : d * scale; | d = bf16 ? bf16_round(bf16_round(d) * scale) : d; | test_backbone test_msa_numerics test_backend_ops | attention scale 1/D instead of 1/sqrt(D)
attn_masked_visible | full | src/backend/cpu/backend_cpu.c | [t] \|\| t == qslot); | [t] \|\| 1); | test_backbone test_backend_ops test_forward_mask test_msa_interleave test_msa_numerics | masked (invalid) cache slots become visible
masked_pos | full | src/model/forward.c | pos += s->b_valid[i]; | pos += 1; | test_backbone test_forward_mask test_msa_interleave | masked tokens advance the RoPE position
q41_min | fast | src/backend/cpu/kernels_scalar.c | y[t * ldy + r] = msa_q_hsum8(acc) + msum; | y[t * ldy + r] = msa_q_hsum8(acc) - msum; | test_kernels | Q4_1 minimum term sign (scalar kernel)
bf16_round | fast | src/model/tensor.c | x += 0x7fff + ((x >> 16) & 1); | x += 0x7fff; | test_tensor test_kernels | f32->bf16 rounding loses ties-to-even
bpe_merge_loop | fast | src/tokenizer/bpe.c | while (nh > 0) { | while (nh > 1) { | test_tokenizer cli/tokenize.sh | BPE merge loop stops one merge early
bpe_stale | full | src/tokenizer/bpe.c | if (!m \|\| m->new_id != top.new_id) continue; | if (!m) continue; | test_tokenizer cli/tokenize.sh | BPE applies stale heap entries
added_special | full | src/tokenizer/added.c | if (a->special && !parse_special) continue; | if (0) continue; | test_tokenizer cli/tokenize.sh | special tokens matched in plain text
pooling_divisor | full | src/backend/cpu/backend_cpu.c | F(dst)[(size_t)ch * D + i] = n > 0 ? (float)(acc[i] / n) : 0.0f; | F(dst)[(size_t)ch * D + i] = n > 0 ? (float)(acc[i] / 64) : 0.0f; | test_msa_numerics test_backend_ops | chunk mean (the backend's pool op) divides a partial chunk by P
pooling_divisor_identity | full | src/memory/encode.c | dst[(size_t)c * D + i] = (float)(acc[i] / n); | dst[(size_t)c * D + i] = (float)(acc[i] / P); | test_encode_read test_encode_pool | the identity router's host-side chunk mean divides a partial chunk by P
route_query_mean | full | src/memory/route.c | (float)(acc / (double)n) : best; | (float)(acc) : best; | test_msa_route test_msa_numerics | query reduce: sum instead of mean
route_query_scale | full | src/memory/route.c | const float s = 1.0f / sqrtf((float)hd); | const float s = 1.0f; | test_msa_route test_msa_numerics | routing scores unscaled by 1/sqrt(d)
topk_tie | fast | src/memory/route.c | return sa > sb \|\| (sa == sb && ia < ib); | return sa > sb \|\| (sa == sb && ia > ib); | test_msa_route cli/read_rules.sh | top-k ties go to the later document
topk_order | full | src/memory/route.c | return sa > sb \|\| (sa == sb && ia < ib); | return sa < sb \|\| (sa == sb && ia < ib); | test_msa_route test_msa_numerics | top-k keeps the lowest scores
interleave_rounds | fast | src/memory/interleave.c | msa_il_params p = {.max_rounds = 8, | msa_il_params p = {.max_rounds = 9, | test_msa_interleave | Memory Interleave cap of 8 rounds
interleave_roles | full | src/memory/interleave.c | (i >= last_inj0 && i < last_inj1)) ? MSA_ROLE_ROUTE | (i >= last_inj1 && i < last_inj0)) ? MSA_ROLE_ROUTE | test_msa_interleave | injected text of the last round is not routed
ask_pos0 | full | src/memory/ask.c | nv.pos0 = 3 + mp.top_k; | nv.pos0 = 2 + mp.top_k; | test_msa_numerics test_msa_interleave | question positions start at 3+top_k
sampling_temp | fast | src/model/sampling.c | const float inv_t = 1.0f / params->temperature; | const float inv_t = 1.0f; | test_sampling | temperature ignored
sampling_top_p | fast | src/model/sampling.c | if (acc >= params->top_p) { | if (acc > 2.0) { | test_sampling | top-p ignored
read_keep | full | src/memory/readmode.c | #define READ_KEEP_FRACTION 0.5f | #define READ_KEEP_FRACTION 0.0f | cli/read_rules.sh cli/ask_edges_read.sh cli/demo.sh | read mode injects every routed document
read_second_best | full | src/memory/readmode.c | if (!st) n_best = msa_route_topk(fused, n_index, (size_t)top_k, best, bs); | if (!st) n_best = msa_route_topk(fused, n_index, (size_t)top_k, best, bs), best[0] = n_best > 1 ? best[1] : best[0]; | cli/read_rules.sh cli/ask_edges_read.sh cli/demo.sh | read mode injects from the second-best document on
bank_fsync_manifest | full | src/bank/writer.c | if (!st) st = bank_fsync(fd, tmp); | if (0) st = bank_fsync(fd, tmp); | test_bank_powerloss test_bank_order test_bank_faults test_bank_crash | no fsync of MANIFEST.tmp before the rename
bank_fsync_dir | full | src/bank/writer.c | return bank_fsync_dir(dir); /* the rename | return MSA_OK; /* the rename | test_bank_powerloss test_bank_order test_bank_faults test_bank_crash | no directory fsync after the manifest rename
bank_doc_checksum | fast | src/bank/format.c | if (XXH3_64bits(base + sec->offset, sec->size) != sec->hash) | if (XXH3_64bits(base + sec->offset, sec->size) != sec->hash && 0) | test_bank_checksums test_bank_malformed | document table checksum not checked
bank_content_hash | fast | src/bank/bank.c | != r.content_hash) | != r.content_hash && 0) | test_bank_malformed | document content hash not checked on fetch
bank_lock | fast | src/bank/bank.c | } else if (flock(b->lock_fd, LOCK_EX \| LOCK_NB) != 0) { | } else if (0) { | test_bank test_bank_concurrency | a second writer is not locked out
stream_batch | full | tools/msa/bank_add.c | if (bt.bytes >= batch_bytes) { | if (0) { | cli/bank_stream.sh | bank add holds its whole input in one batch (memory grows with the input)
stream_conflict_up_front | full | tools/msa/bank_add.c | if (ds == MSA_BANK_DOC_DIFFERENT && !replace) | if (0) | cli/bank_stream.sh | a conflict with the bank is found only after earlier batches were committed
bank_pending_text | fast | src/bank/writer.c | pp2->route_bytes + pp2->text.len + | pp2->route_bytes + | test_bank | the automatic commit ignores staged text (the staging grows with text-heavy input)
import_copy_uuid | fast | src/bank/writer.c | memcpy(h + 56, b->v->man.uuid, 16); | (void)0; | test_bank | an imported segment keeps the export's uuid (the bank does not open)
bank_verify_section | full | src/bank/verify.c | if (XXH3_64bits(sv->seg.base + sec->offset, sec->size) != sec->hash) | if (0) | test_bank_malformed | verify skips section checksums
M
)

mode=all; only=(); listing=0
while [ $# -gt 0 ]; do
    case $1 in
    --fast) mode=fast ;;
    --only) only+=("$2"); shift ;;
    --list) listing=1 ;;
    *) echo "usage: mutate.sh [--fast | --only ID ... | --list]" >&2; exit 64 ;;
    esac
    shift
done

field() { # LINE N: the Nth " | "-separated field, "\|" unescaped, trimmed
    printf '%s' "$1" | awk -v n="$2" 'BEGIN{FS=" [|] "} {gsub(/\\\|/, "\001"); v=$n; gsub("\001", "|", v); sub(/^ +/, "", v); sub(/ +$/, "", v); print v}'
}

selected=()
while IFS= read -r line; do
    [ -n "$line" ] || continue
    id=$(field "$line" 1); speed=$(field "$line" 2)
    if [ ${#only[@]} -gt 0 ]; then
        printf '%s\n' "${only[@]}" | grep -qx "$id" || continue
    elif [ "$mode" = fast ] && [ "$speed" != fast ]; then continue; fi
    selected+=("$line")
done <<<"$MUTATIONS"

if [ $listing -eq 1 ]; then
    for line in "${selected[@]}"; do printf '%-22s %-5s %-36s %s\n' "$(field "$line" 1)" "$(field "$line" 2)" "$(field "$line" 3)" "$(field "$line" 7)"; done
    exit 0
fi

# ---- the scratch copy: tracked and untracked-not-ignored files of this tree, plus the build and the inputs
S=$(mktemp -d "${TMPDIR:-/tmp}/msa-mutate-XXXXXX"); trap 'rm -rf "$S"' EXIT
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$S"
[ -d build ] && cp -a build "$S/build"
for p in models tests/fixtures/generated; do [ -e "$p" ] && ln -s "$root/$p" "$S/$p"; done
[ -f tests/fixtures/tokenizer/qwen3/tokenizer.json ] && cp -a tests/fixtures/tokenizer/qwen3/tokenizer.json "$S/tests/fixtures/tokenizer/qwen3/"
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$S" && make -s -j"$jobs" tests-bin >"$S/build.log" 2>&1) || { cat "$S/build.log"; echo "FAIL mutate (the unmutated copy does not build)"; exit 1; }

start=$(date +%s)
survived=0; bad=0
table=$(mktemp); : >"$table"
for line in "${selected[@]}"; do
    id=$(field "$line" 1); file=$(field "$line" 3); old=$(field "$line" 4); new=$(field "$line" 5)
    tests=$(field "$line" 6); what=$(field "$line" 7)
    t0=$(date +%s)
    cp -p "$S/$file" "$S/.orig"
    if ! python3 - "$S/$file" "$old" "$new" <<'PY'
import sys
path, old, new = sys.argv[1:4]
s = open(path).read()
if s.count(old) < 1:
    sys.exit(1)
open(path, "w").write(s.replace(old, new, 1))
PY
    then
        result=STALE; caught_by="(line not found)"; bad=$((bad + 1))
    else
        units=""; clis=""; bins="build/msa"
        for t in $tests; do
            case $t in
            test_*) units="$units $t"; bins="$bins build/tests/$t" ;;
            cli/*) clis="$clis tests/$t" ;;
            esac
        done
        if ! (cd "$S" && make -s -j"$jobs" $bins >"$S/m.log" 2>&1); then
            result=NOBUILD; caught_by="(the mutant does not compile: not a test)"; bad=$((bad + 1))
        else
            (cd "$S" && MSA_TEST_SUITES=prebuilt MSA_PREBUILT=build MSA_TEST_UNIT="${units# }" MSA_TEST_CLI="${clis# }" \
                bash tests/run.sh >"$S/r.log" 2>&1); rc=$?
            # which of the named tests failed: the runner's per-program lines with failures
            # which tests failed: program:case for each FAIL line the runner collected (program alone for a crash)
            caught_by=$( { sed -n 's|^  \[prebuilt/\([^]]*\)\] FAIL \([^ ]*\).*|\1:\2|p' "$S/r.log"
                           sed -n 's|^FAIL prebuilt/\([^ ]*\) (\([a-z]*\).*|\1:(\2)|p' "$S/r.log"; } |
                         sed 's/\.sh:/:/; s/:$//' | sort -u | tr '\n' ' ')
            if [ $rc -ne 0 ]; then result=caught; else result=SURVIVED; survived=$((survived + 1)); caught_by="-"; fi
            if [ -n "${MUTATE_VERBOSE:-}" ]; then grep -E '^\s*\[prebuilt' "$S/r.log" | head -n 8; fi
        fi
    fi
    # restore with a fresh mtime so that make rebuilds the object from the original next time
    cp "$S/.orig" "$S/$file"; touch "$S/$file"
    printf '%-20s %-8s %-34s %-44s %s (%ss)\n' "$id" "$result" "$file" "$what" "$caught_by" "$(( $(date +%s) - t0 ))" | tee -a "$table" >&2
    if [ "$result" = caught ]; then echo "PASS mutation_$id"; else echo "FAIL mutation_$id ($result)"; fi
done
(cd "$S" && make -s -j"$jobs" tests-bin >/dev/null 2>&1) # leave nothing mutated behind in the copy's build
echo "mutation             result   file                               breaks                                       caught by (time)"
cat "$table"; rm -f "$table"
echo "mutate: ${#selected[@]} mutations, $survived survived, $bad stale/not building, $(( $(date +%s) - start ))s"
[ $survived -eq 0 ] && [ $bad -eq 0 ]
