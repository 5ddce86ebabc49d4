#!/usr/bin/env python3
"""gpu_peer_bench.py — the PyTorch / transformers peer of `msa bench gpu`, on the same GPU in the same run.

The reference stack's speed on the same checkpoint (targets.md measured it at 52K tokens/s prefill and
8.9 tokens/s batch-1 generate on an H200): a Hugging Face directory loaded as Qwen3ForCausalLM in bf16 with
sdpa attention (an MSA checkpoint's router projectors are not used by the backbone and are ignored), then
  prefill   B documents x L tokens in one forward (no cache), tokens/s;
  generate  batch 1 (and --gen-batches) from a --ctx-token prompt, --new tokens, greedy, tokens/s.
Medians with min/max over --reps, CUDA-synchronised wall time. One JSON document on stdout.

    python3 scripts/gpu_peer_bench.py MODEL_DIR [--ctx 1536] [--new 64] [--prefill 16x512] [--reps 3]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM


def timed(fn, reps):
    fn()  # warm-up
    out = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def rate(amount, secs):
    return {"median": amount / statistics.median(secs), "min": amount / max(secs), "max": amount / min(secs),
            "seconds": secs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ctx", type=int, default=1536)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--prefill", default="16x512")
    ap.add_argument("--gen-batches", default="1,16")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    cfg = Qwen3Config.from_pretrained(a.model)
    model = Qwen3ForCausalLM.from_pretrained(a.model, config=cfg, torch_dtype=torch.bfloat16,
                                             attn_implementation="sdpa").cuda().eval()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    V = cfg.vocab_size
    res = {"peer": "transformers", "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
           "model": a.model, "load_seconds": load_s}
    B, L = (int(x) for x in a.prefill.split("x"))
    ids = torch.randint(0, V, (B, L), device="cuda")
    with torch.inference_mode():
        secs = timed(lambda: model(input_ids=ids, use_cache=False), a.reps)
    res["prefill"] = {"shape": a.prefill, "tok/s": rate(B * L, secs)}
    res["generate"] = []
    for gb in (int(x) for x in a.gen_batches.split(",")):
        prompt = torch.randint(0, V, (gb, a.ctx), device="cuda")
        with torch.inference_mode():
            secs = timed(lambda: model.generate(prompt, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False,
                                                attention_mask=torch.ones_like(prompt)), a.reps)
        # generate includes the prompt's prefill: report it as measured (the reference path does the same)
        res["generate"].append({"batch": gb, "ctx": a.ctx, "new": a.new, "tok/s": rate(gb * a.new, secs)})
    res["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
