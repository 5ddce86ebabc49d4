#!/usr/bin/env python3
"""np_forward.py — an independent numpy forward pass for Qwen3 and Llama (float64), to check the fixtures.

Written from the model math (msa-reference.md §1.1), not from our C code nor transformers' source:
  h0 = embed[ids]
  per layer: x = rms(h) * w_in;  q = x Wq^T, k = x Wk^T, v = x Wv^T  (split into heads)
             Qwen3 only: q = rms(q_head) * q_norm, k = rms(k_head) * k_norm   (before RoPE)
             RoPE rotate-half: inv_freq[i] = theta^(-2i/d), angle = pos * inv_freq, x*cos + rotate_half(x)*sin
             causal softmax(q k^T / sqrt(d)) v with GQA (q-head h uses kv-head h // (nq/nkv)); o = attn Wo^T
             h = h + o;  x = rms(h) * w_post;  h = h + (silu(x Wg^T) * (x Wu^T)) Wd^T
  out = rms(h_L) * w_norm;  logits = out lm_head^T  (lm_head = embed when tied)

Weights come from a Hugging Face directory (safetensors, bf16 widened exactly) or from a GGUF file
(dequantized with gguf.quants; the llama q/k row permutation of convert_hf_to_gguf.py undone).

    python3 tests/ref/np_forward.py CHECKPOINT_DIR_OR_GGUF [--fixture tests/fixtures/hf/NAME]

With --fixture it prints the error of every hidden state and of the logits against the fixture.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def read_safetensors(path):
    """{name: float64 array} from one .safetensors file (F32/BF16/F16 only), parsed by hand."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt, shape = info["dtype"], info["shape"]
        if dt == "F32":
            x = np.frombuffer(buf, dtype="<f4")
        elif dt == "F16":
            x = np.frombuffer(buf, dtype="<f2")
        elif dt == "BF16":
            x = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {dt} not handled")
        out[name] = x.astype(np.float64).reshape(shape)
    return out


def read_hf_weights(d):
    """{name: float64 array} of a Hugging Face directory, one file or shards + index."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(idx):
        return read_safetensors(os.path.join(d, "model.safetensors"))
    w = {}
    for fn in sorted(set(json.load(open(idx))["weight_map"].values())):
        w.update(read_safetensors(os.path.join(d, fn)))
    return w


def load_hf(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = read_hf_weights(d)
    arch = "llama" if cfg["model_type"] == "llama" else "qwen3"
    hp = dict(arch=arch, layers=cfg["num_hidden_layers"], nq=cfg["num_attention_heads"],
              nkv=cfg["num_key_value_heads"], hd=cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]),
              theta=cfg["rope_theta"], eps=cfg["rms_norm_eps"])
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
    return hp, w


def unpermute_llama(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute (HF rotate-half rows -> GGML interleaved)."""
    r = w.shape[0]
    return w.reshape(n_head, r // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf(path):
    import gguf
    rd = gguf.GGUFReader(path)
    arch = bytes(rd.fields["general.architecture"].parts[-1]).decode()

    def kv(key):
        f = rd.fields[f"{arch}.{key}"]
        return f.parts[f.data[0]][0].item()

    nq, nkv = kv("attention.head_count"), kv("attention.head_count_kv")
    emb = kv("embedding_length")
    hd = kv("attention.key_length") if f"{arch}.attention.key_length" in rd.fields else emb // nq
    hp = dict(arch=arch, layers=kv("block_count"), nq=nq, nkv=nkv, hd=hd, theta=kv("rope.freq_base"),
              eps=kv("attention.layer_norm_rms_epsilon"))
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    per = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
           "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
           "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj",
           "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    w, types = {}, {}
    for t in rd.tensors:
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        shape = [int(s) for s in reversed(t.shape)]  # GGUF lists dims fastest first
        x = x.reshape(shape)
        base = t.name[:-len(".weight")]
        if base.startswith("blk."):
            _, i, rest = base.split(".", 2)
            hf = f"model.layers.{i}.{per[rest]}.weight"
            if arch == "llama" and rest == "attn_q":
                x = unpermute_llama(x, nq)
            elif arch == "llama" and rest == "attn_k":
                x = unpermute_llama(x, nkv)
        else:
            hf = names[base] + ".weight"
        w[hf] = x
        types[hf] = t.tensor_type.name
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["model.embed_tokens.weight"]
        types["lm_head.weight"] = types["model.embed_tokens.weight"]
    hp["types"] = types
    return hp, w


def llamacpp_activations(x, wtype):
    """What llama.cpp's CPU matmul does to the activations before the dot products: quantized to Q8_0
    (blocks of 32) for Q8_0/Q4_0 weights (Q8_1 for Q4_1, the same values), rounded to f16 for F16 weights."""
    import gguf
    if wtype in ("Q8_0", "Q4_0", "Q4_1"):
        T = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.dequantize(gguf.quants.quantize(x.astype(np.float32), T), T).astype(np.float64)
    if wtype == "F16":
        return x.astype(np.float16).astype(np.float64)
    return x


def rms(x, wt, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wt


def rope(x, pos, theta):
    """x [T, heads, d]; rotate-half convention."""
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :]
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def forward(hp, w, ids, last_only=False, act=None):
    """Returns (hidden [L+1, T, H] in transformers' output_hidden_states convention, layer outputs [L, T, H],
    logits [T, V]). act(x, weight type), when given, transforms the input of every weight matmul (e.g.
    llamacpp_activations); it needs hp["types"] (GGUF models)."""
    T = len(ids)

    def lin(x, name):
        if act is not None:
            x = act(x.reshape(-1, x.shape[-1]), hp["types"][name]).reshape(x.shape)
        return x @ w[name].T
    pos = np.arange(T, dtype=np.float64)
    nq, nkv, hd, eps = hp["nq"], hp["nkv"], hp["hd"], hp["eps"]
    h = w["model.embed_tokens.weight"][np.asarray(ids)]
    hidden, outs = [h], []
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(hp["layers"]):
        p = f"model.layers.{i}."
        x = rms(h, w[p + "input_layernorm.weight"], eps)
        q = lin(x, p + "self_attn.q_proj.weight").reshape(T, nq, hd)
        k = lin(x, p + "self_attn.k_proj.weight").reshape(T, nkv, hd)
        v = lin(x, p + "self_attn.v_proj.weight").reshape(T, nkv, hd)
        if hp["arch"] != "llama":
            q = rms(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, pos, hp["theta"]), rope(k, pos, hp["theta"])
        grp = nq // nkv
        att = np.empty((T, nq, hd))
        for hh in range(nq):
            s = q[:, hh, :] @ k[:, hh // grp, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hh, :] = s @ v[:, hh // grp, :]
        h = h + lin(att.reshape(T, nq * hd), p + "self_attn.o_proj.weight")
        x = rms(h, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(x, p + "mlp.gate_proj.weight")
        u = lin(x, p + "mlp.up_proj.weight")
        h = h + lin(g / (1.0 + np.exp(-g)) * u, p + "mlp.down_proj.weight")
        outs.append(h)
        hidden.append(h)
    out = rms(h, w["model.norm.weight"], eps)
    hidden[-1] = out  # transformers' last hidden state is after the final norm
    if last_only:
        out = out[-1:]
    return np.stack(hidden), np.stack(outs), lin(out, "lm_head.weight")


def bf16(x):
    """Rounds float values to the nearest bfloat16 (ties to even), returned as float64."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def forward_bf16(hp, w, ids):
    """The same model with bfloat16 activations, rounded where PyTorch rounds when transformers runs a bf16
    model (matmuls accumulate in float32 and round their output; RMSNorm computes in float32, rounds, then
    multiplies by the weight; RoPE's cos/sin are rounded; softmax runs in float32 and is rounded; every
    elementwise op rounds). Weights must already be bf16 values. Returns the same as forward()."""
    T = len(ids)
    nq, nkv, hd, eps = hp["nq"], hp["nkv"], hp["hd"], hp["eps"]
    f32 = np.float32

    def mm(x, wt):  # bf16 x bf16 -> float32 accumulate -> bf16
        return bf16((x.astype(f32) @ wt.T.astype(f32)))

    def norm(x, wt):
        x32 = x.astype(f32)
        var = np.mean(x32 * x32, axis=-1, keepdims=True, dtype=f32)
        return bf16(wt * bf16(x32 / np.sqrt(var + f32(eps))))

    inv = (1.0 / (f32(hp["theta"]) ** (np.arange(0, hd, 2, dtype=np.int64).astype(f32) / f32(hd)))).astype(f32)
    ang = np.arange(T, dtype=f32)[:, None] * inv[None, :]
    emb = np.concatenate([ang, ang], -1)
    cos, sin = bf16(np.cos(emb))[:, None, :], bf16(np.sin(emb))[:, None, :]

    def rope_b(x):
        rot = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return bf16(bf16(x * cos) + bf16(rot * sin))

    h = w["model.embed_tokens.weight"][np.asarray(ids)]
    hidden, outs = [h], []
    mask = np.triu(np.full((T, T), -np.inf, dtype=f32), 1)
    scale = hd ** -0.5
    for i in range(hp["layers"]):
        p = f"model.layers.{i}."
        x = norm(h, w[p + "input_layernorm.weight"])
        q = mm(x, w[p + "self_attn.q_proj.weight"]).reshape(T, nq, hd)
        k = mm(x, w[p + "self_attn.k_proj.weight"]).reshape(T, nkv, hd)
        v = mm(x, w[p + "self_attn.v_proj.weight"]).reshape(T, nkv, hd)
        if hp["arch"] != "llama":
            q = norm(q, w[p + "self_attn.q_norm.weight"])
            k = norm(k, w[p + "self_attn.k_norm.weight"])
        q, k = rope_b(q), rope_b(k)
        grp = nq // nkv
        att = np.empty((T, nq, hd))
        for hh in range(nq):
            sc = bf16(bf16(q[:, hh, :].astype(f32) @ k[:, hh // grp, :].T.astype(f32)) * scale)
            sc = sc.astype(f32) + mask
            e = np.exp(sc - sc.max(-1, keepdims=True))
            pr = bf16(e / e.sum(-1, keepdims=True, dtype=f32))
            att[:, hh, :] = bf16(pr.astype(f32) @ v[:, hh // grp, :].astype(f32))
        h = bf16(h + mm(att.reshape(T, nq * hd), w[p + "self_attn.o_proj.weight"]))
        x = norm(h, w[p + "post_attention_layernorm.weight"])
        g = mm(x, w[p + "mlp.gate_proj.weight"])
        u = mm(x, w[p + "mlp.up_proj.weight"])
        a = bf16(g.astype(f32) / (f32(1) + np.exp(-g.astype(f32))))
        h = bf16(h + mm(bf16(a * u), w[p + "mlp.down_proj.weight"]))
        outs.append(h)
        hidden.append(h)
    out = norm(h, w["model.norm.weight"])
    hidden[-1] = out
    return np.stack(hidden), np.stack(outs), mm(out, w["lm_head.weight"])


def greedy(hp, w, ids, n, margins=None):
    """n greedy tokens (recomputes the whole sequence each step: slow but obviously right); appends each
    step's top-1 minus top-2 logit to `margins` when given."""
    seq = list(ids)
    for _ in range(n):
        _, _, lg = forward(hp, w, seq, last_only=True)
        seq.append(int(np.argmax(lg[-1])))
        if margins is not None:
            top2 = np.partition(lg[-1], -2)[-2:]
            margins.append(float(top2[1] - top2[0]))
    return seq[len(ids):]


def load(path):
    return load_gguf(path) if path.endswith(".gguf") else load_hf(path)


def rel_err(a, ref):
    """max |a - ref| / max |ref| over the tensor: the metric the README's tolerances use."""
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def compare(path, fixture, n_greedy=0, emulate_bf16=False):
    from fixture_io import read_fixture
    fx = read_fixture(fixture)
    hp, w = load(path)
    hid, outs, lg = (forward_bf16 if emulate_bf16 else forward)(hp, w, fx["tokens"])
    res = {"hidden": [rel_err(hid[i], fx["hidden"][i]) for i in range(len(hid))],
           "layer_out": [rel_err(outs[i], fx["layer_out"][i]) for i in range(len(outs))],
           "logits_last": rel_err(lg[-1], fx["logits_last"]) if "logits_last" in fx else None,
           "logits_cols": rel_err(lg[:, fx["logit_cols"]], fx["logits_at_cols"]),
           "argmax_agree": float(np.mean(np.argmax(lg, -1) == fx["argmax"]))}
    if n_greedy:
        g = greedy(hp, w, fx["tokens"], n_greedy)
        ref = list(fx["greedy"][:n_greedy])
        same = next((i for i, (a, b) in enumerate(zip(g, ref)) if a != b), n_greedy)
        res["greedy_prefix_equal"] = same
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--greedy", type=int, default=0, help="also compare N greedy tokens (slow)")
    ap.add_argument("--bf16", action="store_true", help="bf16 activations rounded the way PyTorch rounds them")
    a = ap.parse_args()
    print(json.dumps(compare(a.model, a.fixture, 0 if a.bf16 else a.greedy, a.bf16), indent=1))


if __name__ == "__main__":
    main()
