#!/usr/bin/env python3
"""dump_transformers.py — runs the checkpoints of make_hf_checkpoints.py through Hugging Face transformers
and writes the expected outputs (tests/fixtures/hf/<name>/). Runs where torch + transformers are installed
(the GPU machine; everything here runs on its CPU, which is deterministic and has no TF32).

For every checkpoint:
  1. regenerates it (and checks the sha256 manifest: the same bytes on this machine as on ours);
  2. loads it with transformers (MSA: as Qwen3ForCausalLM, the router weights are reported unexpected and
     ignored: that is the backbone comparison), checks nothing is missing, then save_pretrained()s it to a
     temporary directory and compares tensor names/shapes/dtypes and config keys with the files we wrote;
  3. tokenizes the prompt with AutoTokenizer (and checks it against `tokenizers`);
  4. runs the prompt once (eager attention, the checkpoint's dtype) with output_hidden_states and hooks on
     every decoder layer and the final norm;
  5. decodes 64 greedy tokens with the KV cache (argmax of each step's logits; no EOS stop), records the
     top-1/top-2 margin of each step, and checks the result equals model.generate(do_sample=False).

    python3 tests/ref/dump_transformers.py --out DIR [--only NAME,...] [--ckpt DIR]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_hf_checkpoints as mk  # noqa: E402
from fixture_io import write_fixture  # noqa: E402

PROMPTS = {  # real text, 23-30 Qwen3 tokens
    "qwen3": "Call me Ishmael. Some years ago, never mind how long precisely, having little money in my purse, "
             "I thought I would sail about.",
    "llama": "The Memory Sparse Attention engine reads a million documents, then answers: what did the whale "
             "say to Captain Ahab?",
}
PROMPTS["msa"] = PROMPTS["qwen3"]
N_GREEDY = 64
TOPK = 16


def logit_columns(tokens):
    """The vocabulary ids whose logits are stored at every position: a regular grid, every added/special
    token, the padding tail's first and last rows, and the prompt's own tokens."""
    cols = set(range(0, mk.VOCAB, 331)) | set(range(151643, 151669)) | {151669, mk.VOCAB - 1} | set(tokens)
    return np.array(sorted(cols), dtype=np.int32)


def st_layout(d):
    """{name: (shape, dtype)} of every tensor in a saved HF directory."""
    from safetensors import safe_open
    out = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(d, fn), "pt") as f:
                for k in f.keys():
                    sl = f.get_slice(k)
                    out[k] = (list(sl.get_shape()), sl.get_dtype())
    return out


def check_layout(spec, d, model, log):
    """save_pretrained the loaded model and compare with what make_hf_checkpoints wrote."""
    import torch  # noqa: F401
    res = {}
    mine = st_layout(d)
    if spec["arch"] == "msa":
        mine = {k: v for k, v in mine.items() if "router_" not in k and k != "temperature"}
    tmp = tempfile.mkdtemp()
    try:
        kw = {"max_shard_size": "20MB"} if spec["shards"] > 1 else {}
        model.save_pretrained(tmp, **kw)
        theirs = st_layout(tmp)
        res["saved_files"] = sorted(os.listdir(tmp))
        res["tensor_layout_equal"] = mine == theirs
        if mine != theirs:
            res["only_ours"] = {k: mine[k] for k in mine if theirs.get(k) != mine[k]}
            res["only_theirs"] = {k: theirs[k] for k in theirs if mine.get(k) != theirs[k]}
        ours_cfg = json.load(open(os.path.join(d, "config.json")))
        saved_cfg = json.load(open(os.path.join(tmp, "config.json")))
        res["config_keys_only_ours"] = sorted(set(ours_cfg) - set(saved_cfg))
        res["config_keys_only_saved"] = sorted(set(saved_cfg) - set(ours_cfg))
        res["config_values_differing"] = {k: [ours_cfg[k], saved_cfg[k]] for k in set(ours_cfg) & set(saved_cfg)
                                          if ours_cfg[k] != saved_cfg[k]}
        res["saved_config_json"] = saved_cfg
        gpath = os.path.join(tmp, "generation_config.json")
        res["saved_generation_config_json"] = json.load(open(gpath)) if os.path.exists(gpath) else None
        ipath = os.path.join(tmp, "model.safetensors.index.json")
        if os.path.exists(ipath):
            idx = json.load(open(ipath))
            res["saved_index_keys"] = {k: sorted(v) if isinstance(v, dict) and k == "metadata" else len(v)
                                       for k, v in idx.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  layout: tensors equal={res['tensor_layout_equal']} files={res['saved_files']} "
        f"cfg only ours={res['config_keys_only_ours']} only saved={res['config_keys_only_saved']} "
        f"differing={res['config_values_differing']}")
    return res


def load_model(spec, d, compute_dtype=None):
    import torch
    import transformers
    dtype = torch.float32 if (compute_dtype or spec["dtype"]) == "float32" else torch.bfloat16
    cfg_d = json.load(open(os.path.join(d, "config.json")))
    if spec["arch"] == "llama":
        cls, cfg_cls = transformers.LlamaForCausalLM, transformers.LlamaConfig
    else:
        cls, cfg_cls = transformers.Qwen3ForCausalLM, transformers.Qwen3Config
    if spec["arch"] == "msa":  # the backbone: a Qwen3 config from the same keys, msa_config dropped
        cfg_d = {k: v for k, v in cfg_d.items() if k not in ("msa_config", "architectures", "model_type")}
        cfg_d["architectures"] = ["Qwen3ForCausalLM"]
        config = cfg_cls.from_dict(cfg_d)
    else:
        config = cfg_cls.from_pretrained(d)
    kw = dict(config=config, attn_implementation="eager", output_loading_info=True)
    try:
        model, info = cls.from_pretrained(d, dtype=dtype, **kw)
    except TypeError:
        model, info = cls.from_pretrained(d, torch_dtype=dtype, **kw)
    model.eval()
    info = {k: sorted(map(str, v)) for k, v in info.items() if k in ("missing_keys", "unexpected_keys",
                                                                     "mismatched_keys")}
    return model, info


def dump(model, tok, prompt, ids, spec, meta, out_dir, log, full_last=True):
    """Runs the prompt and the greedy loop through `model` and writes one fixture directory."""
    import torch
    import transformers
    T = len(ids)
    x = torch.tensor([ids], dtype=torch.long)
    layers = model.model.layers
    cap = {"layer_out": [None] * len(layers)}

    def out_hook(i):
        def f(mod, inp, out):
            cap["layer_out"][i] = (out[0] if isinstance(out, tuple) else out).detach().float().clone()
        return f
    hs = [layer.register_forward_hook(out_hook(i)) for i, layer in enumerate(layers)]
    hs.append(model.model.norm.register_forward_hook(
        lambda m, i, o: cap.__setitem__("norm", o.detach().float().clone())))
    with torch.no_grad():
        out = model(x, output_hidden_states=True, use_cache=False)
    for h in hs:
        h.remove()
    hidden = torch.stack([h[0].float() for h in out.hidden_states]).numpy()       # [L+1, T, H]
    layer_out = torch.stack([t[0] for t in cap["layer_out"]]).numpy()              # [L, T, H]
    norm = cap["norm"][0].numpy()
    L = len(layers)
    conv = {"hidden[0]==embeddings": bool(np.array_equal(
                hidden[0], model.model.embed_tokens(x)[0].detach().float().numpy())),
            "hidden[i]==layer_out[i-1] for 1<=i<L": all(np.array_equal(hidden[i], layer_out[i - 1])
                                                          for i in range(1, L)),
            "hidden[L]==final_norm(layer_out[L-1])": bool(np.array_equal(hidden[L], norm)),
            "hidden[L]==layer_out[L-1]": bool(np.array_equal(hidden[L], layer_out[L - 1]))}
    log(f"  hidden_states convention: {conv}")
    logits = out.logits[0].float().numpy()                                           # [T, V]
    cols = logit_columns(ids)
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :TOPK]
    mx = logits.max(-1)
    lse = mx + np.log(np.exp((logits - mx[:, None]).astype(np.float64)).sum(-1))

    # greedy, with the KV cache, the way a decode loop runs
    greedy, margins = [], []
    with torch.no_grad():
        o = model(x, use_cache=True)
        past, last = o.past_key_values, o.logits[0, -1].float()
        for _ in range(N_GREEDY):
            top2 = torch.topk(last, 2)
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            margins.append(float(top2.values[0] - top2.values[1]))
            o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, last = o.past_key_values, o.logits[0, -1].float()
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=N_GREEDY, min_new_tokens=N_GREEDY,
                                           eos_token_id=None, pad_token_id=mk.PAD, bos_token_id=mk.BOS)
        try:
            g = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)
            gen = [int(t) for t in g[0, T:]]
            meta["generate_equals_greedy_loop"] = gen == greedy
            if gen != greedy:
                meta["generate_tokens"] = gen
        except Exception as e:  # recorded, not fatal: the loop above is the fixture
            meta["generate_equals_greedy_loop"] = f"generate failed: {e}"
    log(f"  greedy: min margin {min(margins):.4g}, generate equal: {meta['generate_equals_greedy_loop']}, "
        f"eos in continuation: {mk.EOS in greedy}")

    meta.update({
        "prompt": prompt, "n_tokens": T, "n_layers": L, "hidden_size": int(hidden.shape[-1]), "vocab_size": mk.VOCAB,
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "run": {"device": "cpu", "torch_dtype": str(next(model.parameters()).dtype), "attn_implementation": "eager",
                "use_cache": False, "greedy": "argmax loop with KV cache, no EOS stop"},
        "hidden_states_convention": conv,
        "greedy_min_margin": min(margins), "greedy_has_eos": mk.EOS in greedy,
        "greedy_text": tok.decode(greedy),
    })
    arrays = {
        "tokens": np.array(ids, dtype=np.int32), "hidden": hidden, "layer_out": layer_out,
        "logits_last": logits[-1], "logit_cols": cols, "logits_at_cols": logits[:, cols],
        "topk_ids": order.astype(np.int32), "topk_logits": np.take_along_axis(logits, order, -1),
        "argmax": logits.argmax(-1).astype(np.int32), "max_logit": mx, "logsumexp": lse.astype(np.float32),
        "greedy": np.array(greedy, dtype=np.int32), "greedy_margin": np.array(margins, dtype=np.float32),
    }
    if not full_last:
        del arrays["logits_last"]
    write_fixture(out_dir, arrays, meta)


def run_one(spec, ckpt_root, out_root, log):
    import torch
    import transformers
    import tokenizers
    torch.manual_seed(0)
    d = os.path.join(ckpt_root, spec["name"])
    model, info = load_model(spec, d)
    log(f"  loading info: {info}")
    if info.get("missing_keys"):
        raise RuntimeError(f"missing keys {info['missing_keys']}")
    meta = {"checkpoint": spec["name"], "architecture": spec["arch"], "dtype": spec["dtype"],
            "tie_word_embeddings": spec["tie"], "loading_info": info}
    meta["layout_check"] = check_layout(spec, d, model, log)

    prompt = PROMPTS[spec["arch"]]
    tok = transformers.AutoTokenizer.from_pretrained(d)
    ids = tok(prompt)["input_ids"]
    ids2 = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json")).encode(prompt).ids
    if list(ids) != list(ids2):
        raise RuntimeError(f"AutoTokenizer {ids} != tokenizers {ids2}")

    dump(model, tok, prompt, ids, spec, meta, os.path.join(out_root, spec["name"]), log)
    if spec["dtype"] == "bfloat16":  # the same bf16 weights computed in float32 by transformers
        log("  f32compute:")
        model32, _ = load_model(spec, d, compute_dtype="float32")
        meta32 = {k: v for k, v in meta.items() if k != "layout_check"}
        meta32["note"] = ("the bf16 checkpoint loaded with dtype=float32: weights widened exactly, "
                          "every operation in float32 (logits_last omitted to save space)")
        dump(model32, tok, prompt, ids, spec, meta32, os.path.join(out_root, spec["name"], "f32compute"),
             log, full_last=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="where the fixture directories go")
    ap.add_argument("--ckpt", default=os.path.join(tempfile.gettempdir(), "msa-hf-ckpt"))
    ap.add_argument("--only", default="")
    ap.add_argument("--no-generate", action="store_true", help="use checkpoints already in --ckpt")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(8)
    logf = open(os.path.join(a.out, "dump.log"), "a")

    def log(s):
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()
    specs = [mk.SPEC_BY_NAME[n] for n in a.only.split(",")] if a.only else mk.SPECS
    if not a.no_generate:
        import subprocess
        r = subprocess.run([sys.executable, os.path.join(HERE, "make_hf_checkpoints.py"), "--out", a.ckpt,
                            "--check"] + (["--only", a.only] if a.only else []), capture_output=True, text=True)
        log(f"make_hf_checkpoints --check: rc={r.returncode}\n{r.stdout}{r.stderr}")
    failed = 0
    for spec in specs:
        log(f"== {spec['name']}")
        try:
            run_one(spec, a.ckpt, a.out, log)
        except Exception:
            failed += 1
            log(traceback.format_exc())
    log(f"done, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
