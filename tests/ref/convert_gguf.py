#!/usr/bin/env python3
"""convert_gguf.py — converts the test checkpoints of make_hf_checkpoints.py to GGUF (F16, Q8_0, Q4_1), the
way llama.cpp's convert_hf_to_gguf.py (+ `llama-quantize --pure` for Q4_1) would, with the `gguf` package:

  - arch `qwen3` (from qwen3-f32 and from qwen3-bf16, the tied one: no output.weight) and `llama` (from
    llama-f32);
  - hparams keys as convert_hf_to_gguf.py writes them: {arch}.block_count, context_length, embedding_length,
    feed_forward_length, attention.head_count, attention.head_count_kv, rope.freq_base,
    attention.layer_norm_rms_epsilon, attention.key_length, attention.value_length (config has head_dim),
    and for llama also {arch}.vocab_size and rope.dimension_count; general.file_type,
    general.quantization_version;
  - tokenizer: tokenizer.ggml.model "gpt2", pre "qwen2", tokens (vocab_size entries, "[PAD<i>]" for ids the
    tokenizer lacks), token_type (1 normal, 3 control: special or <|...|>, 4 user-defined, 5 unused), merges,
    bos/eos/padding ids, add_bos_token, chat_template (gguf.SpecialVocab, exactly as the converter does);
  - tensors: 1-D (norms) F32; every 2-D weight (token_embd and output included) in the file's type;
  - llama only: attn_q / attn_k rows permuted (LlamaModel.permute: HF's rotate-half pairs -> the interleaved
    pairs of ggml's "normal" RoPE). Qwen3 uses NeoX RoPE in llama.cpp and is not permuted.

    python3 tests/ref/convert_gguf.py [--hf DIR] [--out DIR] [--check | --update] [--measure]

--check compares every file's sha256 with tests/fixtures/hf/gguf.sha256 (a mismatch fails only when the
installed gguf package is the version the manifest was made with, since other versions may write other bytes);
--measure runs tests/ref/np_forward.py on the dequantized weights against the transformers fixtures and
writes the errors into tests/fixtures/hf/gguf.json (the tolerances' evidence).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_hf_checkpoints as mk  # noqa: E402
from np_forward import read_hf_weights  # noqa: E402

SHA_FILE = os.path.join(mk.FIXTURES, "gguf.sha256")
GGUF_JSON = os.path.join(mk.FIXTURES, "gguf.json")
# (checkpoint, GGUF arch, the transformers fixture a GGUF of it is compared with). qwen3-bf16 is the tied one
# (no output.weight); its reference is transformers' float32 computation of the same bf16 weights.
SOURCES = [("qwen3-f32", "qwen3", "qwen3-f32"), ("qwen3-bf16", "qwen3", "qwen3-bf16/f32compute"),
           ("llama-f32", "llama", "llama-f32")]
TYPES = ["F16", "Q8_0", "Q4_1"]
PER_LAYER = [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
             ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
             ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
             ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
             ("mlp.down_proj", "ffn_down")]


def llama_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (n_head = the kv-head count for attn_k)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def vocab(d, vocab_size):
    """tokens and token types as convert_hf_to_gguf.py's get_vocab_base() makes them."""
    import gguf
    tj = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    rev = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj["added_tokens"]}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            t = added[i]["content"]
            special = added[i]["special"] or (t.startswith("<|") and t.endswith("|>"))
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        elif i in rev:
            tokens.append(rev[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return tokens, types


def convert(src_dir, arch, qtype, path):
    import gguf
    T = gguf.GGMLQuantizationType
    ftype = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1}[qtype]
    cfg = json.load(open(os.path.join(src_dir, "config.json")))
    w = {k: v.astype(np.float32) for k, v in read_hf_weights(src_dir).items()}
    L, nq, nkv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    wr = gguf.GGUFWriter(path, arch)
    wr.add_type(gguf.GGUFType.MODEL)
    wr.add_name(os.path.basename(src_dir))
    wr.add_block_count(L)
    wr.add_context_length(cfg["max_position_embeddings"])
    wr.add_embedding_length(cfg["hidden_size"])
    wr.add_feed_forward_length(cfg["intermediate_size"])
    wr.add_head_count(nq)
    wr.add_head_count_kv(nkv)
    wr.add_rope_freq_base(cfg["rope_theta"])
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_key_length(cfg["head_dim"])
    wr.add_value_length(cfg["head_dim"])
    if arch == "llama":
        wr.add_vocab_size(cfg["vocab_size"])
        wr.add_rope_dimension_count(cfg["head_dim"])
    wr.add_file_type(ftype)
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types = vocab(src_dir, cfg["vocab_size"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("qwen2")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    gguf.SpecialVocab(src_dir, load_merges=True).add_to_gguf(wr, quiet=True)

    order = [("model.embed_tokens", "token_embd")]
    for i in range(L):
        order += [(f"model.layers.{i}.{h}", f"blk.{i}.{g}") for h, g in PER_LAYER]
    order += [("model.norm", "output_norm"), ("lm_head", "output")]
    for hf, gg in order:
        x = w.get(hf + ".weight")
        if x is None:
            continue
        if arch == "llama" and gg.endswith(".attn_q"):
            x = llama_permute(x, nq)
        elif arch == "llama" and gg.endswith(".attn_k"):
            x = llama_permute(x, nkv)
        if x.ndim == 1:
            wr.add_tensor(gg + ".weight", np.ascontiguousarray(x, dtype=np.float32))
        elif qtype == "F16":
            wr.add_tensor(gg + ".weight", x.astype(np.float16))
        else:
            qt = getattr(T, qtype)
            wr.add_tensor(gg + ".weight", gguf.quants.quantize(x, qt), raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def gguf_version():
    import importlib.metadata
    return importlib.metadata.version("gguf")


def rel_err(a, ref):
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def measure(out):
    """For every GGUF: an exact float64 forward on its dequantized weights (np_forward.py), written as the
    fixture tests/fixtures/hf/gguf/<file stem>/ (the reference for an engine that dequantizes exactly), and
    its error against the transformers fixture of the source (the quantization error itself); plus the error
    llama.cpp-style activation quantization adds on top of the exact forward."""
    import np_forward as nf
    from fixture_io import read_fixture, write_fixture
    res = {}
    for src, arch, fxname in SOURCES:
        tfx = read_fixture(os.path.join(mk.FIXTURES, fxname))
        ids, cols = [int(t) for t in tfx["tokens"]], tfx["logit_cols"]
        for q in TYPES:
            name = f"{src}.{q}.gguf"
            hp, w = nf.load_gguf(os.path.join(out, name))
            hid, outs, lg = nf.forward(hp, w, ids)
            margins = []
            greedy = nf.greedy(hp, w, ids, 64, margins)
            order = np.argsort(-lg, axis=-1, kind="stable")[:, :16]
            mx = lg.max(-1)
            lse = mx + np.log(np.exp(lg - mx[:, None]).sum(-1))
            arrays = {"tokens": np.array(ids, dtype=np.int32), "hidden": hid, "layer_out": outs,
                      "logit_cols": cols, "logits_at_cols": lg[:, cols], "topk_ids": order.astype(np.int32),
                      "topk_logits": np.take_along_axis(lg, order, -1), "argmax": lg.argmax(-1).astype(np.int32),
                      "max_logit": mx, "logsumexp": lse, "greedy": np.array(greedy, dtype=np.int32),
                      "greedy_margin": np.array(margins, dtype=np.float32)}
            meta = {k: tfx["meta"][k] for k in ("prompt", "n_tokens", "n_layers", "hidden_size", "vocab_size")}
            meta.update({"gguf": name, "source_checkpoint": src, "type": q, "greedy_min_margin": min(margins),
                         "note": "exact float64 forward (tests/ref/np_forward.py) on the GGUF's dequantized "
                                 "weights, stored as float32; no logits_last"})
            write_fixture(os.path.join(mk.FIXTURES, "gguf", name[:-len(".gguf")]), arrays, meta)
            same = next((i for i, (a, b) in enumerate(zip(greedy, tfx["greedy"])) if a != b), 64)
            r = {"vs_transformers": {
                     "hidden_rel": [rel_err(hid[i], tfx["hidden"][i]) for i in range(len(hid))],
                     "logits_rel_cols": rel_err(lg[:, cols], tfx["logits_at_cols"]),
                     "argmax_agree": float(np.mean(lg.argmax(-1) == tfx["argmax"])),
                     "greedy_prefix_equal": same},
                 "greedy_min_margin": min(margins)}
            h2, _, lg2 = nf.forward(hp, w, ids, act=nf.llamacpp_activations)
            r["llamacpp_activations_vs_exact"] = {
                "hidden_rel": [rel_err(h2[i], hid[i]) for i in range(len(hid))],
                "logits_rel_cols": rel_err(lg2[:, cols], lg[:, cols]),
                "argmax_agree": float(np.mean(lg2.argmax(-1) == lg.argmax(-1)))}
            res[name] = r
            print(name, json.dumps(r), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", default=mk.DEFAULT_OUT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(mk.DEFAULT_OUT), "gguf"))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true")
    g.add_argument("--update", action="store_true")
    ap.add_argument("--measure", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lines = []
    for src, arch, _ in SOURCES:
        for q in TYPES:
            name = f"{src}.{q}.gguf"
            convert(os.path.join(a.hf, src), arch, q, os.path.join(a.out, name))
            lines.append(f"{mk.sha256_file(os.path.join(a.out, name))}  {name}")
            print(f"wrote {os.path.join(a.out, name)}")
    ver = gguf_version()
    if a.update:
        with open(SHA_FILE, "w") as f:
            f.write("\n".join(lines) + "\n")
        info = json.load(open(GGUF_JSON)) if os.path.exists(GGUF_JSON) else {}
        info["gguf_package_version"] = ver
        with open(GGUF_JSON, "w") as f:
            f.write(json.dumps(info, indent=1, sort_keys=True) + "\n")
    if a.check:
        want = dict(reversed(ln.split()) for ln in open(SHA_FILE))
        made_with = json.load(open(GGUF_JSON)).get("gguf_package_version")
        bad = [ln for ln in lines if want.get(ln.split()[1]) != ln.split()[0]]
        for ln in bad:
            print(f"sha256 mismatch: {ln.split()[1]} is {ln.split()[0]}, manifest says {want.get(ln.split()[1])}",
                  file=sys.stderr)
        if bad and made_with == ver:
            sys.exit(1)
        if bad:
            print(f"(gguf {ver} here, manifest made with gguf {made_with}: not an error)", file=sys.stderr)
        else:
            print(f"checked {len(lines)} files against {SHA_FILE}")
    if a.measure:
        info = json.load(open(GGUF_JSON)) if os.path.exists(GGUF_JSON) else {}
        info["measured"] = measure(a.out)
        with open(GGUF_JSON, "w") as f:
            f.write(json.dumps(info, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
