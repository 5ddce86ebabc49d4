#!/usr/bin/env python3
"""make_router_fixture.py — read mode with `--router FILE` on the small synthetic checkpoint.

From the synthetic MSA checkpoint of make_msa_checkpoint.py (written to CKPT first) this makes:
  OUT/plain/          the same model as a plain Qwen3 checkpoint (no msa_config; the router tensors dropped),
  OUT/router.safetensors   its router projectors under read mode's names
                       (model.layers.{l}.self_attn.router_{q,k}_proj.weight, F32, layers 2 and 3),
and, with --expect FILE, the read-mode routing that `msa ask --mode read --router` must give for the documents
and question below, computed independently in numpy from the specification (docs/msa-deviations.md, "Read
mode"): documents rendered <|im_start|>[i]. {text}[i]<|im_end|> and run causally from position 0; routing keys
router_k_proj(x) (x = the input-layernormed hidden state) pooled in chunks of P tokens; the question
<|im_start|> + question, routing tokens all but the first; query rows = router_q_proj(x) folded over each kv
group's heads; per token the best cosine to any chunk of each document, a document's first chunk ignored when it
has more; centred over the documents; mean over the tokens.

    python3 tests/ref/make_router_fixture.py CKPT OUT [--expect tests/fixtures/msa/router_expect.json]

The first two outputs need only numpy (run by tests/cli/router.sh); --expect needs `tokenizers`.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DOCS = [
    "The lighthouse keeper on Skerry Island was named Oswin Tamsworth.",
    "Quartz crystals vibrate at a precise frequency when voltage is applied.",
    "Marmalade was first sold in Dundee by the Keiller family in 1797.",
    "A",
]
QUESTION = "Who kept the lighthouse on Skerry Island?"
P = 2


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32", "the f32 checkpoint is expected"
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"])
    return out


def write_st(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k, a in tensors:
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def make(ckpt, out):
    w = read_st(os.path.join(ckpt, "model.safetensors"))
    plain = os.path.join(out, "plain")
    os.makedirs(plain, exist_ok=True)
    write_st(os.path.join(plain, "model.safetensors"), [(k, v) for k, v in w.items() if "router_" not in k])
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    cfg.pop("msa_config", None)
    cfg["model_type"] = "qwen3"
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    json.dump(cfg, open(os.path.join(plain, "config.json"), "w"), indent=2)
    for fn in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(ckpt, fn)):
            shutil.copyfile(os.path.join(ckpt, fn), os.path.join(plain, fn))
    router = []
    for k in sorted(w):
        if ".router_q_proj.0.weight" in k or ".router_k_proj.0.weight" in k:
            router.append((k.replace(".0.weight", ".weight"), w[k]))
    write_st(os.path.join(out, "router.safetensors"), router)
    return plain, dict(router)


def expect(plain, router):
    from msa_reference import Model
    m = Model(plain, msa_override={"router_layer_idx": "2,3", "pooling_kernel_size": P})
    layers = sorted({int(k.split(".")[2]) for k in router})
    keys = {l: [] for l in layers}
    for i, text in enumerate(DOCS):
        ids = m.doc_ids(i, text)
        rec = {}

        def hook(l, x, k, v):
            if l in layers:
                kr = x @ router[f"model.layers.{l}.self_attn.router_k_proj.weight"].T  # [n, nkv*hd]
                rec[l] = np.stack([kr[c:c + P].mean(0) for c in range(0, len(ids), P)])
        m.forward(ids, list(range(len(ids))), m.empty_prior(), hook=hook)
        for l in layers:
            keys[l].append(rec[l])
    im_start = m.tok.token_to_id("<|im_start|>")
    qids = [im_start] + m.tok.encode(QUESTION, add_special_tokens=False).ids
    qrows = {}

    def qhook(l, x, k, v):
        if l in layers:
            q = (x @ router[f"model.layers.{l}.self_attn.router_q_proj.weight"].T).reshape(len(qids), m.nh, m.hd)
            g = m.nh // m.nkv
            qrows[l] = q.reshape(len(qids), m.nkv, g, m.hd).sum(2).reshape(len(qids), -1)[1:]
    m.forward(qids, list(range(len(qids))), m.empty_prior(), hook=qhook)
    out = []
    for l in layers:
        q = qrows[l] / np.linalg.norm(qrows[l], axis=1, keepdims=True)
        best = np.zeros((q.shape[0], len(DOCS)))
        for d, K in enumerate(keys[l]):
            K = K[1:] if K.shape[0] > 1 else K
            K = K / np.linalg.norm(K, axis=1, keepdims=True)
            best[:, d] = (q @ K.T).max(1)
        s = (best - best.mean(1, keepdims=True)).mean(0)
        order = sorted(range(len(DOCS)), key=lambda d: (-s[d], d))
        out.append({"layer": l, "docs": [f"d{d}" for d in order], "scores": [float(s[d]) for d in order]})
    return {"question": QUESTION, "pooling": P, "docs": [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS)],
            "routing": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--expect")
    a = ap.parse_args()
    plain, router = make(a.ckpt, a.out)
    if a.expect:
        with open(a.expect, "w") as f:
            json.dump(expect(plain, router), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
