#!/usr/bin/env bash
# bad_models.sh — `msa run` on broken model files: truncated, bit-flipped, oversized-header, wrong-dtype,
# missing-tensor and inconsistent-shape files (a sharded Hugging Face directory and a GGUF), broken
# config.json / generation_config.json / tokenizer.json, and missing files. Each must exit 65 (bad data) or
# 66 (missing input) — 69 for a well-formed but unsupported dtype or version — with exactly one line on
# stderr, and never crash. Each base model first runs cleanly, so every failure is caused by the one
# corruption. Inputs: a 1-layer Qwen3 checkpoint (zero bf16 weights, two shards + index, the committed Qwen3
# tokenizer) written here with printf, and the default model GGUF (`make model`); override with
# MSA_BAD_MODELS_HF (any sharded Qwen3 HF directory) / MSA_BAD_MODELS_GGUF.
set -u
cd "$(dirname "$0")/../.."
MSA=${MSA:-build/msa}
gguf=${MSA_BAD_MODELS_GGUF:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
tokenizer=tests/fixtures/tokenizer/qwen3/tokenizer.json
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect NAME CODE MODEL: run, check the exit code and that stderr is exactly one line
expect() {
    local name=$1 want=$2 model=$3 rc lines
    "$MSA" run -m "$model" -p hi -n 1 >/dev/null 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq "$want" ] && [ "$lines" -eq 1 ]; then
        echo "PASS $name"
        sed 's/^/  /' "$tmp/err"
    else
        echo "FAIL $name (exit $rc, want $want; $lines stderr lines)"
        head -n 5 "$tmp/err" | sed 's/^/  /'
    fi
}

offset_of() { # FILE STRING: byte offset of the first occurrence
    LC_ALL=C grep -obUaF -m1 -- "$2" "$1" | head -n1 | cut -d: -f1
}

patch() { # FILE OFFSET PRINTF-BYTES: overwrite in place
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# replace STRING by REPL (same length) at its first occurrence in FILE
patch_str() {
    local off
    off=$(offset_of "$1" "$2")
    [ -n "$off" ] || { echo "  (test bug: '$2' not in $1)"; return 1; }
    [ ${#2} -eq ${#3} ] || { echo "  (test bug: lengths differ)"; return 1; }
    printf '%s' "$3" | dd of="$1" bs=1 seek="$off" conv=notrunc status=none
}

# ---------------------------------------------------------------------------------------- Hugging Face
le64() { # N: 8 little-endian bytes as printf escapes
    local n=$1 i out=
    for i in 0 1 2 3 4 5 6 7; do out+=$(printf '\\x%02x' $(((n >> (8 * i)) & 255))); done
    printf '%s' "$out"
}

write_shard() { # FILE NAME:SHAPE... (bf16, zero data; SHAPE like 128,64)
    local file=$1 header='{"__metadata__":{"format":"pt"}' off=0 spec name shape n d
    shift
    for spec in "$@"; do
        name=${spec%%:*}; shape=${spec#*:}; n=2
        for d in ${shape//,/ }; do n=$((n * d)); done
        header+=",\"$name\":{\"dtype\":\"BF16\",\"shape\":[$shape],\"data_offsets\":[$off,$((off + n))]}"
        off=$((off + n))
    done
    header+='}'
    while [ $(( ${#header} % 8 )) -ne 0 ]; do header+=' '; done
    printf "$(le64 ${#header})" >"$file"
    printf '%s' "$header" >>"$file"
    truncate -s $((8 + ${#header} + off)) "$file" # zero weights, sparse on disk
}

make_hf() { # DIR: Qwen3, hidden 64, 1 layer, 4 heads / 2 kv heads of 16, ff 128, tied embeddings
    mkdir -p "$1"
    cat >"$1/config.json" <<'JSON'
{
  "architectures": ["Qwen3ForCausalLM"],
  "model_type": "qwen3",
  "hidden_size": 64,
  "intermediate_size": 128,
  "num_hidden_layers": 1,
  "num_attention_heads": 4,
  "num_key_value_heads": 2,
  "head_dim": 16,
  "vocab_size": 151936,
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000,
  "rope_scaling": null,
  "tie_word_embeddings": true,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "torch_dtype": "bfloat16"
}
JSON
    printf '{"bos_token_id": 151643, "eos_token_id": [151645, 151643]}\n' >"$1/generation_config.json"
    cp "$tokenizer" "$1/tokenizer.json"
    local L=model.layers.0
    write_shard "$1/model-00001-of-00002.safetensors" model.embed_tokens.weight:151936,64 \
        $L.input_layernorm.weight:64 $L.self_attn.q_proj.weight:64,64 $L.self_attn.k_proj.weight:32,64 \
        $L.self_attn.v_proj.weight:32,64 $L.self_attn.o_proj.weight:64,64 $L.self_attn.q_norm.weight:16 \
        $L.self_attn.k_norm.weight:16 $L.post_attention_layernorm.weight:64 $L.mlp.gate_proj.weight:128,64 \
        $L.mlp.up_proj.weight:128,64 $L.mlp.down_proj.weight:64,128
    write_shard "$1/model-00002-of-00002.safetensors" model.norm.weight:64
    local s1=model-00001-of-00002.safetensors t map=
    for t in model.embed_tokens.weight $L.input_layernorm.weight $L.self_attn.q_proj.weight \
        $L.self_attn.k_proj.weight $L.self_attn.v_proj.weight $L.self_attn.o_proj.weight $L.self_attn.q_norm.weight \
        $L.self_attn.k_norm.weight $L.post_attention_layernorm.weight $L.mlp.gate_proj.weight \
        $L.mlp.up_proj.weight $L.mlp.down_proj.weight; do
        map+="\"$t\": \"$s1\", "
    done
    printf '{"metadata": {}, "weight_map": {%s"model.norm.weight": "model-00002-of-00002.safetensors"}}\n' \
        "$map" >"$1/model.safetensors.index.json"
}

hf=${MSA_BAD_MODELS_HF:-}
if [ -z "$hf" ] && [ -f "$tokenizer" ]; then
    hf=$tmp/base
    make_hf "$hf"
fi
hf_case() { # NAME: a fresh copy of the checkpoint in $tmp/NAME (weights symlinked unless copied later)
    rm -rf "$tmp/$1"; mkdir "$tmp/$1"
    for f in "$hf"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/$1/"; done
    echo "$tmp/$1"
}
own() { # DIR FILE: replace a symlink by a private copy before editing it
    cp --remove-destination "$(readlink -f "$1/$2")" "$1/$2"
}

if [ -z "$hf" ] || [ ! -f "$hf/model.safetensors.index.json" ]; then
    # the tokenizer is a committed fixture (make tests-bin unpacks it): its absence is a broken checkout, not a skip
    echo "FAIL bad_models_hf (no $tokenizer and no MSA_BAD_MODELS_HF: run make tests-bin)"
else
    d=$(hf_case good); expect hf_base_model_runs 0 "$d"
    s1=model-00001-of-00002.safetensors

    d=$(hf_case truncated); rm "$d/$s1"; head -c 1000000 "$hf/$s1" >"$d/$s1"
    expect hf_truncated_shard 65 "$d"
    d=$(hf_case header_only); rm "$d/$s1"; head -c 200 "$hf/$s1" >"$d/$s1"
    expect hf_truncated_in_header 65 "$d"
    d=$(hf_case bitflip); own "$d" $s1; patch "$d/$s1" 8 'z'        # '{' (0x7b) with its low bit flipped
    expect hf_bit_flipped_header 65 "$d"
    d=$(hf_case oversized); own "$d" $s1; patch "$d/$s1" 0 '\xff\xff\xff\xff\xff\xff\xff\x7f'
    expect hf_oversized_header_length 65 "$d"
    d=$(hf_case wrong_dtype); own "$d" $s1; patch_str "$d/$s1" '"BF16"' '"F32" ' # bytes no longer match
    expect hf_wrong_dtype 65 "$d"
    d=$(hf_case unsupported_dtype); own "$d" $s1; patch_str "$d/$s1" '"BF16"' '"I16" '
    expect hf_unsupported_dtype_exits_69 69 "$d"
    d=$(hf_case missing_tensor); own "$d" $s1; own "$d" model.safetensors.index.json
    patch_str "$d/$s1" 'layers.0.mlp.gate_proj.weight' 'layers.0.mlp.gate_proj.weighX'
    patch_str "$d/model.safetensors.index.json" 'layers.0.mlp.gate_proj.weight' 'layers.0.mlp.gate_proj.weighX'
    expect hf_missing_tensor 65 "$d"
    d=$(hf_case shape); own "$d" $s1
    off=$(offset_of "$d/$s1" '"model.layers.0.mlp.gate_proj.weight"')
    hdr=$(head -c $((off + 200)) "$d/$s1" | tail -c 200 | LC_ALL=C grep -aoE '"shape":\[[0-9]+,[0-9]+\]' | head -n1)
    rows=$(echo "$hdr" | sed -E 's/.*\[([0-9]+),([0-9]+)\]/\1/'); cols=$(echo "$hdr" | sed -E 's/.*\[([0-9]+),([0-9]+)\]/\2/')
    sh_off=$(LC_ALL=C grep -obUaF -- "$hdr" "$d/$s1" | awk -F: -v o="$off" '$1 > o {print $1; exit}')
    printf '"shape":[%s,%s]' "$cols" "$rows" | dd of="$d/$s1" bs=1 seek="$sh_off" conv=notrunc status=none
    expect hf_inconsistent_shape 65 "$d"                             # [rows,cols] -> [cols,rows]
    d=$(hf_case index_extra); rm "$d/model.safetensors.index.json"
    sed 's/"weight_map": *{/&"model.extra.weight": "'$s1'",/' "$hf/model.safetensors.index.json" >"$d/model.safetensors.index.json"
    expect hf_index_names_absent_tensor 65 "$d"
    d=$(hf_case shard_gone); rm "$d/model-00002-of-00002.safetensors"
    expect hf_missing_shard 66 "$d"
    d=$(hf_case no_weights); rm "$d"/*.safetensors "$d/model.safetensors.index.json"
    expect hf_no_weights 66 "$d"

    d=$(hf_case config_truncated); rm "$d/config.json"; head -c 100 "$hf/config.json" >"$d/config.json"
    expect config_truncated 65 "$d"
    d=$(hf_case config_missing_key); rm "$d/config.json"; grep -v '"hidden_size"' "$hf/config.json" >"$d/config.json"
    expect config_missing_hidden_size 65 "$d"
    d=$(hf_case config_wrong_type); rm "$d/config.json"
    sed -E 's/"num_hidden_layers": *([0-9]+)/"num_hidden_layers": "\1"/' "$hf/config.json" >"$d/config.json"
    expect config_wrong_type 65 "$d"
    d=$(hf_case config_nonsense); rm "$d/config.json"
    sed -E 's/"num_key_value_heads": *[0-9]+/"num_key_value_heads": 3/' "$hf/config.json" >"$d/config.json"
    expect config_heads_do_not_divide 65 "$d"
    d=$(hf_case config_negative); rm "$d/config.json"
    sed -E 's/"intermediate_size": *[0-9]+/"intermediate_size": -5/' "$hf/config.json" >"$d/config.json"
    expect config_negative_size 65 "$d"
    d=$(hf_case config_binary); rm "$d/config.json"; head -c 300 /dev/urandom >"$d/config.json"
    expect config_garbage 65 "$d"
    d=$(hf_case config_gone); rm "$d/config.json"
    expect config_missing 66 "$d"
    d=$(hf_case genconfig); rm "$d/generation_config.json"; printf '{"eos_token_id": "x"}' >"$d/generation_config.json"
    expect generation_config_wrong_type 65 "$d"

    d=$(hf_case tokenizer_truncated); rm "$d/tokenizer.json"; head -c 5000 "$hf/tokenizer.json" >"$d/tokenizer.json"
    expect tokenizer_truncated 65 "$d"
    d=$(hf_case tokenizer_not_json); rm "$d/tokenizer.json"; printf '[1, 2' >"$d/tokenizer.json"
    expect tokenizer_not_json 65 "$d"
    d=$(hf_case tokenizer_empty); rm "$d/tokenizer.json"; : >"$d/tokenizer.json"
    expect tokenizer_empty 65 "$d"
    d=$(hf_case tokenizer_gone); rm "$d/tokenizer.json"
    expect tokenizer_missing 66 "$d"
fi

# ------------------------------------------------------------------------------------------------ GGUF
if [ ! -f "$gguf" ]; then
    echo "SKIP bad_models_gguf ($gguf missing: run make model)"
else
    expect gguf_base_model_runs 0 "$gguf"
    g=$tmp/m.gguf
    fresh() { rm -f "$g"; cp "$gguf" "$g"; }
    size=$(stat -c %s "$gguf")

    head -c $((size / 2)) "$gguf" >"$g"; expect gguf_truncated_in_data 65 "$g"
    head -c 100000 "$gguf" >"$g"; expect gguf_truncated_in_metadata 65 "$g"
    head -c 2 "$gguf" >"$g"; expect gguf_truncated_in_magic 65 "$g"
    : >"$g"; expect gguf_empty_file 65 "$g"
    fresh; patch "$g" 0 'F'; expect gguf_bit_flipped_magic 65 "$g"          # 'G' (0x47) ^ 0x01
    fresh; patch "$g" 4 '\x83'; expect gguf_bit_flipped_version 69 "$g"     # version 3 -> 131: unsupported
    fresh; patch "$g" 8 '\xff\xff\xff\xff\xff\xff\xff\x7f'; expect gguf_huge_tensor_count 65 "$g"
    fresh; patch "$g" 16 '\x00\x00\x00\x00\x01\x00\x00\x00'; expect gguf_huge_metadata_count 65 "$g"
    # tensor info after the name: u32 n_dims, u64 ne[n_dims], u32 type, u64 offset
    t=blk.0.attn_k.weight; fresh; o=$(( $(offset_of "$g" "$t") + ${#t} ))
    patch "$g" $((o + 20)) '\x08'; expect gguf_wrong_dtype 65 "$g"             # Q4_1 -> Q8_0: overlaps
    fresh; patch "$g" $((o + 20)) '\x0e'; expect gguf_unsupported_dtype_exits_69 69 "$g" # -> Q6_K
    fresh; patch "$g" $((o + 24)) '\x01'; expect gguf_misaligned_offset 65 "$g"
    # [192, 576] stored as ne = {576, 192}: swap to {192, 576} (same bytes, wrong for the architecture)
    fresh; patch "$g" $((o + 4)) '\xc0\x00\x00\x00\x00\x00\x00\x00\x40\x02\x00\x00\x00\x00\x00\x00'
    expect gguf_inconsistent_shape 65 "$g"
    fresh; patch_str "$g" 'output_norm.weight' 'output_norm.weighX'; expect gguf_missing_tensor 65 "$g"
    fresh; patch_str "$g" 'llama.block_count' 'llama.block_counX'; expect gguf_missing_metadata 65 "$g"
    fresh; o=$(offset_of "$g" 'tokenizer.ggml.tokens'); patch "$g" $((o + 21 + 4 + 7)) '\x7f'
    expect gguf_huge_token_array 65 "$g"
    expect gguf_missing_file 66 "$tmp/nonexistent.gguf"
fi
echo "# cli: done" # the last line: tests/run.sh fails a script that has this marker and ended before it
