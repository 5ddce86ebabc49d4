#!/usr/bin/env python3
"""make_hf_checkpoints.py — writes the small random Hugging Face checkpoints that the backbone tests run.

Six checkpoints (see SPECS): Qwen3ForCausalLM, MSAForCausalLM (Qwen3 backbone + router projectors +
msa_config) and LlamaForCausalLM, each in float32 and bfloat16, in the exact on-disk layout that
transformers' save_pretrained produces (config.json, generation_config.json, model.safetensors or shards +
model.safetensors.index.json, tokenizer.json, tokenizer_config.json; config files in the transformers 4.51
style of the real Qwen3/MSA-4B checkpoints).

The bytes are the same on every machine: weights come from an explicit integer PRNG (splitmix64 of the
element index, seeded from sha256 of the tensor's name), turned into floats with exact operations only
(no log/cos/sqrt whose last bit depends on the libm), so CI regenerates them bit-identically. The sha256 of
every file written is compared with tests/fixtures/hf/checkpoints.sha256 (--check; --update rewrites it).

    python3 tests/ref/make_hf_checkpoints.py [--out DIR] [--only NAME,...] [--check | --update]

Default DIR: tests/fixtures/generated/hf (ignored by git). Needs numpy and safetensors.
"""
import argparse
import hashlib
import json
import lzma
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "hf")
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "generated", "hf")
SHA_FILE = os.path.join(FIXTURES, "checkpoints.sha256")

# The Qwen3 tokenizer (Apache-2.0) is committed xz-compressed (1.4 MB instead of 11 MB); its sha256 after
# decompression is the one ../shared/data/README.md gives.
TOKENIZER_XZ = os.path.join(FIXTURES, "qwen3-tokenizer", "tokenizer.json.xz")
TOKENIZER_CONFIG = os.path.join(FIXTURES, "qwen3-tokenizer", "tokenizer_config.json")
TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

TRANSFORMERS_STYLE = "4.51.3"  # the version the real MSA-4B / Qwen3 configs were written by
VOCAB = 151936
BOS, EOS, PAD = 151643, 151645, 151643
N_TOKENIZER_IDS = 151669  # 151643 BPE tokens + 26 added tokens

MSA_CONFIG = {  # MSA-4B's msa_config keys (msa-reference.md §0), router layers = upper half of 4 layers
    "router_layer_idx": "2,3", "pooling_kernel_size": 64, "top_k_docs": 16, "decouple_router": True,
    "aux_loss_method": "INFONCE_DECOUPLE", "head_reduce_method": "mean", "query_reduce_method": "max",
    "chunk_reduce_method": "max", "decouple_pooling_mode": "mean", "rewrite_position": True,
    "infonce_loss_temp": 0.1, "auxloss_weight": 0.1, "lmloss_weigth": 1.0, "ansloss_weight": 1.0,
    "recloss_weight": 0.0, "aux_loss": False,
}

# name, architecture, dtype, tied embeddings, layers, shards. Shapes: hidden 64, 4 q-heads / 2 kv-heads (GQA);
# Qwen3 uses head_dim 32 so that q_proj's output (128) differs from hidden (64), as in Qwen3-4B. The f32
# Qwen3 and Llama have their own lm_head: random tied models fall into repeating one token after a few
# greedy steps, which makes a weak continuation test.
SPECS = [
    dict(name="qwen3-f32", arch="qwen3", dtype="float32", tie=False, layers=3, shards=1),
    dict(name="qwen3-bf16", arch="qwen3", dtype="bfloat16", tie=True, layers=3, shards=2),
    dict(name="msa-f32", arch="msa", dtype="float32", tie=True, layers=4, shards=1),
    dict(name="msa-bf16", arch="msa", dtype="bfloat16", tie=True, layers=4, shards=1),
    dict(name="llama-f32", arch="llama", dtype="float32", tie=False, layers=2, shards=1),
    dict(name="llama-bf16", arch="llama", dtype="bfloat16", tie=True, layers=2, shards=1),
]
SPEC_BY_NAME = {s["name"]: s for s in SPECS}

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hparams(spec):
    """The model shape of a spec (the keys every architecture shares)."""
    if spec["arch"] == "llama":
        return dict(hidden_size=64, intermediate_size=160, num_attention_heads=4, num_key_value_heads=2,
                    head_dim=16, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=2048)
    return dict(hidden_size=64, intermediate_size=192, num_attention_heads=4, num_key_value_heads=2,
                head_dim=32, rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960)


def config_json(spec):
    """config.json as transformers 4.51 writes it (json.dumps(indent=2, sort_keys=True) + newline)."""
    hp = hparams(spec)
    c = dict(attention_bias=False, attention_dropout=0.0, bos_token_id=BOS, eos_token_id=EOS,
             hidden_act="silu", initializer_range=0.02, num_hidden_layers=spec["layers"],
             tie_word_embeddings=spec["tie"], torch_dtype=spec["dtype"],
             transformers_version=TRANSFORMERS_STYLE, use_cache=True, vocab_size=VOCAB,
             rope_scaling=None, **hp)
    if spec["arch"] == "llama":
        c.update(architectures=["LlamaForCausalLM"], model_type="llama", mlp_bias=False, pretraining_tp=1)
    else:
        c.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", max_window_layers=spec["layers"],
                 sliding_window=None, use_sliding_window=False)
    if spec["arch"] == "msa":
        c.update(architectures=["MSAForCausalLM"], model_type="msa", msa_config=dict(MSA_CONFIG))
    return json.dumps(c, indent=2, sort_keys=True) + "\n"


def generation_config_json(spec):
    if spec["arch"] == "llama":
        g = dict(bos_token_id=BOS, eos_token_id=EOS)
    else:  # Qwen3-4B-Instruct-2507's sampling defaults; eos is a list there
        g = dict(bos_token_id=BOS, do_sample=True, eos_token_id=[EOS, BOS], pad_token_id=PAD,
                 temperature=0.7, top_k=20, top_p=0.8)
    g["transformers_version"] = TRANSFORMERS_STYLE
    return json.dumps(g, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------- the PRNG

def splitmix64(x):
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & M64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & M64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & M64
    return x ^ (x >> np.uint64(31))


def tensor_seed(key):
    return np.uint64(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))


def approx_normal(key, n):
    """n float64 values, mean 0, variance 1 (Irwin-Hall of four 16-bit uniforms: bounded at +-3.46).
    Computed with integers and one exact scaling, so every platform gets the same bits."""
    with np.errstate(over="ignore"):
        idx = np.arange(n, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        z = splitmix64(idx ^ tensor_seed(key))
    m = np.uint64(0xFFFF)
    s = ((z & m).astype(np.int64) + ((z >> np.uint64(16)) & m).astype(np.int64)
         + ((z >> np.uint64(32)) & m).astype(np.int64) + ((z >> np.uint64(48)) & m).astype(np.int64)
         - 2 * 65535)
    # var of one uniform on {0..65535} is (65536^2 - 1)/12; four of them: (65536^2 - 1)/3
    return s.astype(np.float64) * (1.0 / 37837.22723720648)


def to_bf16_bits(x32):
    """float32 array -> bfloat16 bit patterns (uint16), round to nearest even (no NaNs here)."""
    b = x32.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + np.uint64(0x7FFF) + ((b >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return b.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32)


# ------------------------------------------------------------------------------------------- the weights

def weight_list(spec):
    """[(hf name, shape, kind)] in the order transformers' state_dict lists them."""
    hp = hparams(spec)
    H, F = hp["hidden_size"], hp["intermediate_size"]
    nq, nkv, hd = hp["num_attention_heads"], hp["num_key_value_heads"], hp["head_dim"]
    w = [("model.embed_tokens.weight", (VOCAB, H), "embed")]
    router_layers = [int(i) for i in MSA_CONFIG["router_layer_idx"].split(",")] if spec["arch"] == "msa" else []
    for i in range(spec["layers"]):
        p = f"model.layers.{i}."
        w += [(p + "self_attn.q_proj.weight", (nq * hd, H), "proj"),
              (p + "self_attn.k_proj.weight", (nkv * hd, H), "proj"),
              (p + "self_attn.v_proj.weight", (nkv * hd, H), "proj"),
              (p + "self_attn.o_proj.weight", (H, nq * hd), "proj")]
        if spec["arch"] != "llama":
            w += [(p + "self_attn.q_norm.weight", (hd,), "norm"), (p + "self_attn.k_norm.weight", (hd,), "norm")]
        if i in router_layers:
            w += [(p + "self_attn.router_q_proj.0.weight", (nq * hd, H), "proj"),
                  (p + "self_attn.router_k_proj.0.weight", (nkv * hd, H), "proj")]
        w += [(p + "mlp.gate_proj.weight", (F, H), "proj"), (p + "mlp.up_proj.weight", (F, H), "proj"),
              (p + "mlp.down_proj.weight", (H, F), "proj"),
              (p + "input_layernorm.weight", (H,), "norm"), (p + "post_attention_layernorm.weight", (H,), "norm")]
    w.append(("model.norm.weight", (H,), "norm"))
    if not spec["tie"]:
        w.append(("lm_head.weight", (VOCAB, H), "head"))
    if spec["arch"] == "msa":
        w.append(("temperature", (), "temperature"))  # exists when "INFONCE" in aux_loss_method
    return w


def make_weight(spec, name, shape, kind):
    """float32 values of one tensor. The seed depends on the architecture and tensor name only, so the
    f32 and bf16 variants of an architecture are the same model (bf16 = f32 rounded)."""
    n = int(np.prod(shape)) if shape else 1
    key = f"{spec['arch']}/{name}"
    if kind == "temperature":
        return np.full(shape, 0.1, dtype=np.float32)
    g = approx_normal(key, n)
    if kind in ("embed", "head"):  # logit scale ~ |norm(h)| * 0.4 ~ 3: peaked, far from uniform
        x = (g * 0.4).reshape(shape)
        # rows past the tokenizer's last id (151669..151935) are padding, small as in real Qwen3 checkpoints,
        # so that no greedy continuation picks a token that has no text
        x[N_TOKENIZER_IDS:] *= 0.0625
    elif kind == "norm":  # near 1 with jitter
        x = 1.0 + g * 0.125
    else:  # projections: 1/sqrt(fan_in) keeps activations O(1) through the layers
        x = g * (1.0 / np.sqrt(float(shape[1])))
    return x.astype(np.float32).reshape(shape)


# ------------------------------------------------------------------------------------------------ output

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def save_safetensors(path, tensors):
    """tensors: {name: (safetensors dtype 'F32'|'BF16', np array holding the raw values)}."""
    from safetensors import serialize_file
    try:
        from safetensors import TensorSpec  # safetensors >= 0.8
    except ImportError:
        TensorSpec = None
    names = {"F32": "float32", "BF16": "bfloat16"}
    keep = []
    d = {}
    for name, (dt, arr) in tensors.items():
        arr = np.ascontiguousarray(arr)
        keep.append(arr)
        if TensorSpec is not None:
            d[name] = TensorSpec(dtype=names[dt], shape=list(arr.shape), data_ptr=arr.ctypes.data,
                                 data_len=arr.nbytes)
        else:  # older safetensors: a dict with the raw bytes
            d[name] = {"dtype": dt, "shape": list(arr.shape), "data": arr.tobytes()}
    serialize_file(d, path, metadata={"format": "pt"})
    del keep


def write_tokenizer(dst):
    raw = lzma.decompress(open(TOKENIZER_XZ, "rb").read())
    if hashlib.sha256(raw).hexdigest() != TOKENIZER_SHA256:
        sys.exit(f"{TOKENIZER_XZ}: tokenizer.json sha256 mismatch")
    with open(os.path.join(dst, "tokenizer.json"), "wb") as f:
        f.write(raw)
    with open(TOKENIZER_CONFIG, "rb") as f, open(os.path.join(dst, "tokenizer_config.json"), "wb") as g:
        g.write(f.read())


def write_checkpoint(spec, out):
    d = os.path.join(out, spec["name"])
    os.makedirs(d, exist_ok=True)
    for stale in os.listdir(d):
        os.remove(os.path.join(d, stale))
    st_dtype = "F32" if spec["dtype"] == "float32" else "BF16"
    tensors = {}
    for name, shape, kind in weight_list(spec):
        x = make_weight(spec, name, shape, kind)
        tensors[name] = (st_dtype, x if st_dtype == "F32" else to_bf16_bits(x))
    if spec["shards"] == 1:
        save_safetensors(os.path.join(d, "model.safetensors"), tensors)
    else:  # shard 1: embeddings + layer 0; the last shard: the rest (like max_shard_size splitting)
        names = list(tensors)
        cut = max(i for i, n in enumerate(names) if n.startswith("model.layers.0.")) + 1
        assert spec["shards"] == 2
        parts = [names[:cut], names[cut:]]
        weight_map, total = {}, 0
        for k, part in enumerate(parts):
            fname = f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors"
            save_safetensors(os.path.join(d, fname), {n: tensors[n] for n in part})
            for n in part:
                weight_map[n] = fname
                total += tensors[n][1].nbytes
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config_json(spec))
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        f.write(generation_config_json(spec))
    write_tokenizer(d)
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", default="", help="comma-separated checkpoint names")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="fail if a file's sha256 differs from the manifest")
    g.add_argument("--update", action="store_true", help="rewrite tests/fixtures/hf/checkpoints.sha256")
    a = ap.parse_args()
    specs = [SPEC_BY_NAME[n] for n in a.only.split(",")] if a.only else SPECS
    lines = []
    for spec in specs:
        d = write_checkpoint(spec, a.out)
        for fn in sorted(os.listdir(d)):
            lines.append(f"{sha256_file(os.path.join(d, fn))}  {spec['name']}/{fn}")
        print(f"wrote {d}")
    if a.update:
        with open(SHA_FILE, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"updated {SHA_FILE}")
    if a.check:
        want = {}
        for ln in open(SHA_FILE):
            h, fn = ln.split()
            want[fn] = h
        bad = [ln for ln in lines if want.get(ln.split()[1]) != ln.split()[0]]
        for ln in bad:
            print(f"sha256 mismatch (non-deterministic generation?): {ln.split()[1]} is {ln.split()[0]}, "
                  f"manifest says {want.get(ln.split()[1])}", file=sys.stderr)
        if bad:
            sys.exit(1)
        print(f"checked {len(lines)} files against {SHA_FILE}")


if __name__ == "__main__":
    main()
