#!/usr/bin/env python3
"""make_synthetic_gguf.py — a GGUF with Qwen3-4B's shapes and random bf16 weights, for benchmarks.

Why: decode and prefill speed depend on the shapes and the dtype, not on the values, so random weights in the
real layout give true speed (ours and llama.cpp's, on the same file) without the real checkpoint. The file is
what llama.cpp's convert_hf_to_gguf.py writes for Qwen3-4B at --outtype bf16: architecture `qwen3`, tied
embeddings (no output.weight), 2-D weights in BF16, norms in F32, and the real Qwen3 tokenizer as GGUF metadata
(gpt2 model, qwen2 pre-tokenizer, vocab padded to 151936 with [PADn] entries as the converter pads it).

The ~8 GB file is written tensor by tensor in chunks, so memory stays around 100 MB. It is never committed;
`make model-qwen3-4b` writes it to models/ (ignored by git; default --out models/qwen3-4b-synth-bf16.gguf). Run:

    python3 tests/ref/make_synthetic_gguf.py [--out FILE] [--layers N] [--seed S] \
        [--tokenizer-dir ../shared/data/qwen3-tokenizer]

--layers N (default 36) makes a smaller file of the same per-layer shapes, for quick loader checks.
Needs numpy and the `gguf` package (pip).
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf

# Qwen3-4B's config.json (the shapes msa must run at MSA-4B size).
HIDDEN = 2560
N_LAYERS = 36
N_HEAD = 32
N_HEAD_KV = 8
HEAD_DIM = 128
FF = 9728
VOCAB = 151936
CTX = 40960
ROPE_THETA = 1000000.0
RMS_EPS = 1e-6
INIT_STD = 0.02  # the Qwen3 config's initializer_range; keeps activations in a sane range

CHUNK = 1 << 24  # values generated per step: 64 MB of float32 scratch


def load_tokenizer(tok_dir):
    """Tokens, types and merges as llama.cpp's converter derives them from tokenizer.json (gpt2-style BPE)."""
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    cfg_path = os.path.join(tok_dir, "tokenizer_config.json")
    chat_template = None
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            chat_template = json.load(f).get("chat_template")

    id_to_tok = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj["added_tokens"]}
    tokens, types = [], []
    for i in range(VOCAB):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in id_to_tok:
            tokens.append(id_to_tok[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return tokens, types, merges, chat_template


def tensor_plan(n_layers):
    """(name, numpy shape [rows, cols] or [n], dtype) in the converter's order. GGUF stores dims reversed."""
    plan = [("token_embd.weight", (VOCAB, HIDDEN), "bf16")]
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (HIDDEN,), "f32"),
            (b + "attn_q.weight", (N_HEAD * HEAD_DIM, HIDDEN), "bf16"),
            (b + "attn_k.weight", (N_HEAD_KV * HEAD_DIM, HIDDEN), "bf16"),
            (b + "attn_v.weight", (N_HEAD_KV * HEAD_DIM, HIDDEN), "bf16"),
            (b + "attn_q_norm.weight", (HEAD_DIM,), "f32"),
            (b + "attn_k_norm.weight", (HEAD_DIM,), "f32"),
            (b + "attn_output.weight", (HIDDEN, N_HEAD * HEAD_DIM), "bf16"),
            (b + "ffn_norm.weight", (HIDDEN,), "f32"),
            (b + "ffn_gate.weight", (FF, HIDDEN), "bf16"),
            (b + "ffn_up.weight", (FF, HIDDEN), "bf16"),
            (b + "ffn_down.weight", (HIDDEN, FF), "bf16"),
        ]
    plan.append(("output_norm.weight", (HIDDEN,), "f32"))
    return plan


def write_random_bf16(fout, n, rng):
    """n bf16 values ~ N(0, INIT_STD^2), truncated from float32 (the top 16 bits), written in chunks."""
    left = n
    while left:
        k = min(left, CHUNK)
        x = rng.standard_normal(k, dtype=np.float32)
        x *= INIT_STD
        (x.view(np.uint32) >> 16).astype(np.uint16).tofile(fout)
        left -= k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/qwen3-4b-synth-bf16.gguf")
    ap.add_argument("--layers", type=int, default=N_LAYERS)
    ap.add_argument("--seed", type=int, default=1234)
    here = os.path.dirname(os.path.abspath(__file__))
    # The repository's fixture (tokenizer.json unpacked by `make model-qwen3-4b`) first; else shared/ beside
    # the checkout (../shared); --tokenizer-dir names another.
    cands = [os.path.normpath(os.path.join(here, "../fixtures/tokenizer/qwen3")),
             os.path.normpath(os.path.join(here, "../../../shared/data/qwen3-tokenizer"))]
    ap.add_argument("--tokenizer-dir", default=next((c for c in cands if os.path.isfile(os.path.join(c, "tokenizer.json"))), cands[0]))
    args = ap.parse_args()

    tokens, types, merges, chat_template = load_tokenizer(args.tokenizer_dir)
    plan = tensor_plan(args.layers)

    w = gguf.GGUFWriter(args.out, "qwen3")
    w.add_type("model")
    w.add_name(f"Qwen3-4B synthetic random bf16 ({args.layers} layers, seed {args.seed})")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(CTX)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(151645)      # <|im_end|>, as tokenizer_config.json says
    w.add_pad_token_id(151643)      # <|endoftext|>
    w.add_bos_token_id(151643)      # what the converter records; never added (add_bos_token false)
    w.add_add_bos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)

    for name, shape, dt in plan:
        n = int(np.prod(shape))
        if dt == "bf16":
            w.add_tensor_info(name, shape, np.dtype(np.uint16), n * 2, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), n * 4)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    # Tensor data by hand (GGUFWriter.write_tensor_data wants each tensor whole in memory): each tensor starts
    # at a multiple of the alignment, as write_tensor_data pads it.
    fout = w.fout[0]
    rng = np.random.default_rng(args.seed)
    total = sum(int(np.prod(s)) * (2 if d == "bf16" else 4) for _, s, d in plan)
    done = 0
    for name, shape, dt in plan:
        w.write_padding(fout, fout.tell())
        n = int(np.prod(shape))
        if dt == "bf16":
            write_random_bf16(fout, n, rng)
            done += 2 * n
        else:
            np.ones(n, dtype=np.float32).tofile(fout)  # norm weights: RMSNorm's identity scale
            done += 4 * n
        if sys.stderr.isatty():
            print(f"\r{done / 1e9:.2f} / {total / 1e9:.2f} GB", end="", file=sys.stderr)
    w.write_padding(fout, fout.tell())
    w.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"{args.out}: {len(plan)} tensors, {total / 1e9:.3f} GB of weights")


if __name__ == "__main__":
    main()
