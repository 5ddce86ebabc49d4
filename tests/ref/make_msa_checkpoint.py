#!/usr/bin/env python3
"""make_msa_checkpoint.py — write a small synthetic MSA checkpoint (Hugging Face directory layout).

Random weights from a deterministic integer PRNG (splitmix64 over the element index, seeded by a hash of the
tensor name), so the same bytes come out on every machine and numpy version; the real Qwen3 tokenizer;
MSA-4B's tensor names (msa-reference.md §1.3) and an msa_config (§1.2). Used by tests (regenerated in CI,
checked against the sha256 in tests/fixtures/msa/checkpoint.sha256) and, with --full, to write one of
MSA-4B's full shapes for benchmarks (written outside the repository; several GB).

    python3 tests/ref/make_msa_checkpoint.py OUT_DIR [--variant NAME] [--dtype f32|bf16] [--full] [--shard-gb G]

For benchmarks (never in CI; 8.5 GB in two shards + index, streamed to disk slice by slice): measured
on the shared 2-core machine with --jobs 2: 345 s of CPU (20 min wall under load), 388 MB peak RSS; msa loads
it (`msa bank create`, `bank add`, `ask` work on it):
    python3 tests/ref/make_msa_checkpoint.py /path/msa4b-random --full --dtype bf16

Every weight value is rounded to bf16 first, so the f32 and bf16 files hold the same model.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The small model: 4 layers, router layers 2-3, chunk P = 4 so that chunking and partial tails are exercised.
SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, rope_theta=10000.0, max_position_embeddings=256,
             rms_norm_eps=1e-6, vocab_size=151936)
# MSA-4B (msa-reference.md §0).
FULL = dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
            num_key_value_heads=8, head_dim=128, rope_theta=5000000.0, max_position_embeddings=262144,
            rms_norm_eps=1e-6, vocab_size=151936)

# msa_config variants: every reduce method and both scoring rules (aux_loss_method "INFONCE" exactly ->
# cosine; anything else -> scaled dot). The variant only changes config.json, never the weights.
VARIANTS = {
    "base": dict(router_layer_idx="2,3", pooling_kernel_size=4, top_k_docs=2, decouple_router=True,
                 aux_loss_method="INFONCE_DECOUPLE", head_reduce_method="mean", query_reduce_method="max",
                 chunk_reduce_method="max"),
    "cosine": dict(router_layer_idx="2,3", pooling_kernel_size=4, doc_top_k=3, decouple_router=True,
                   aux_loss_method="INFONCE", head_reduce_method="max", query_reduce_method="mean",
                   chunk_reduce_method="mean"),
    "last": dict(router_layer_idx="2,3", pooling_kernel_size=8, top_k_docs=2, decouple_router=True,
                 aux_loss_method="INFONCE_DECOUPLE", head_reduce_method="max", query_reduce_method="last",
                 chunk_reduce_method="max"),
    "meanmean": dict(router_layer_idx="2,3", pooling_kernel_size=4, top_k_docs=1, doc_top_k=2,
                     decouple_router=True, aux_loss_method="BCE", head_reduce_method="mean",
                     query_reduce_method="mean", chunk_reduce_method="mean"),
    # No router projectors (decouple_router false): routing with the attention's own q and the pooled K̄
    # (msa-reference.md §2.1-§2.3); "INFONCE" then normalises both and still scales by 1/sqrt(head_dim).
    "owndot": dict(router_layer_idx="2,3", pooling_kernel_size=4, top_k_docs=2, decouple_router=False,
                   aux_loss_method="INFONCE_DECOUPLE", head_reduce_method="max", query_reduce_method="mean",
                   chunk_reduce_method="max"),
    "owncos": dict(router_layer_idx="2,3", pooling_kernel_size=4, doc_top_k=3, decouple_router=False,
                   aux_loss_method="INFONCE", head_reduce_method="mean", query_reduce_method="max",
                   chunk_reduce_method="mean"),
    "msa4b": dict(router_layer_idx=",".join(str(i) for i in range(18, 36)), pooling_kernel_size=64,
                  top_k_docs=16, decouple_router=True, aux_loss_method="INFONCE_DECOUPLE",
                  head_reduce_method="mean", query_reduce_method="max", chunk_reduce_method="max"),
}
COMMON_MSA = dict(decouple_pooling_mode="mean", rewrite_position=True, infonce_loss_temp=0.1,
                  auxloss_weight=0.1, lmloss_weigth=1.0, ansloss_weight=1.0, recloss_weight=0.0,
                  aux_loss=False)

M64 = (1 << 64) - 1


def name_seed(name):
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def uniform(name, n, start=0):
    """Elements [start, start+n) of the tensor's value stream in [-1, 1): element e is
    splitmix64(seed + (e+1)*golden) -> top 24 bits. Exact integer arithmetic, so any slice of a tensor can be
    made on its own (the full-size checkpoint is written slice by slice)."""
    seed = np.uint64(name_seed(name))
    out = np.empty(n, dtype=np.float32)
    step = 1 << 22
    with np.errstate(over="ignore"):
        for s in range(0, n, step):
            i = np.arange(start + s + 1, start + min(n, s + step) + 1, dtype=np.uint64)
            z = seed + i * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            out[s:s + len(i)] = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - 1.0
    return out


def to_bf16_bits(a):
    """Round f32 -> bf16 (nearest even); returns uint16 bits."""
    u = a.astype(np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + r) >> 16).astype(np.uint16)


def bf16_round(a):
    return (to_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)


def weight(name, shape, scale, offset=0.0, start=0, n=None):
    """The flat elements [start, start+n) of a weight (all of it by default), rounded to bf16 values."""
    n = int(np.prod(shape)) - start if n is None else n
    return bf16_round(uniform(name, n, start) * np.float32(scale) + np.float32(offset))


def tensors(hp, router_layers, decouple):
    H, F, L = hp["hidden_size"], hp["intermediate_size"], hp["num_hidden_layers"]
    nh, nkv, hd, V = hp["num_attention_heads"], hp["num_key_value_heads"], hp["head_dim"], hp["vocab_size"]
    s = lambda fan_in: 1.7 / np.sqrt(fan_in)  # uniform(-a, a) with a = 1.7/sqrt(fan_in): std ~ 1/sqrt(fan_in)
    yield "model.embed_tokens.weight", (V, H), 1.0, 0.0
    for i in range(L):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (H,), 0.2, 1.0
        yield p + "post_attention_layernorm.weight", (H,), 0.2, 1.0
        yield p + "self_attn.q_proj.weight", (nh * hd, H), s(H), 0.0
        yield p + "self_attn.k_proj.weight", (nkv * hd, H), s(H), 0.0
        yield p + "self_attn.v_proj.weight", (nkv * hd, H), s(H), 0.0
        yield p + "self_attn.o_proj.weight", (H, nh * hd), s(nh * hd), 0.0
        yield p + "self_attn.q_norm.weight", (hd,), 0.2, 1.0
        yield p + "self_attn.k_norm.weight", (hd,), 0.2, 1.0
        yield p + "mlp.gate_proj.weight", (F, H), s(H), 0.0
        yield p + "mlp.up_proj.weight", (F, H), s(H), 0.0
        yield p + "mlp.down_proj.weight", (H, F), s(F), 0.0
        if decouple and i in router_layers:
            yield p + "self_attn.router_q_proj.0.weight", (nh * hd, H), s(H), 0.0
            yield p + "self_attn.router_k_proj.0.weight", (nkv * hd, H), s(H), 0.0
    yield "model.norm.weight", (H,), 0.2, 1.0


def parse_layers(spec, n_layer):
    if spec == "all":
        return list(range(n_layer))
    return [int(x) for x in spec.split(",") if x.strip()]


def config_json(hp, msa, dtype):
    cfg = {
        "architectures": ["MSAForCausalLM"], "model_type": "msa", "transformers_version": "4.51.3",
        "torch_dtype": "float32" if dtype == "f32" else "bfloat16",
        "attention_bias": False, "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
        "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151645,
        "rope_scaling": None, "sliding_window": None, "use_sliding_window": False,
        "max_window_layers": hp["num_hidden_layers"], "use_cache": False,
    }
    cfg.update(hp)
    m = dict(msa)
    m.update(COMMON_MSA)
    cfg["msa_config"] = m
    return cfg


def find_tokenizer():
    # the repository's fixture (unpacked by `make tests-bin`), else $MSA_QWEN3_TOKENIZER_DIR
    for p in (os.path.join(REPO, "tests/fixtures/tokenizer/qwen3"), os.environ.get("MSA_QWEN3_TOKENIZER_DIR", "")):
        if os.path.exists(os.path.join(p, "tokenizer.json")):
            return p
    sys.exit("make_msa_checkpoint.py: no Qwen3 tokenizer.json (tests/fixtures/tokenizer/qwen3/)")


SLICE = 1 << 24  # elements generated and written at a time: memory stays ~0.5 GB for any model size


def _slice_bytes(job):
    name, shape, scale, off, s, n, dtype = job
    w = weight(name, shape, scale, off, s, n)
    return w.tobytes() if dtype == "f32" else to_bf16_bits(w).tobytes()


def write_safetensors(path, items, dtype, jobs=1):
    """Stream a safetensors file (header, then each tensor in slices): never holds a whole tensor in memory.
    jobs > 1 makes the slices in that many processes (written in order; the bytes do not depend on jobs)."""
    header, offset = {}, 0
    esize = 4 if dtype == "f32" else 2
    for name, shape, _, _ in items:
        n = int(np.prod(shape)) * esize
        header[name] = {"dtype": "F32" if dtype == "f32" else "BF16", "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        work = [(name, shape, scale, off, s, min(SLICE, int(np.prod(shape)) - s), dtype)
                for name, shape, scale, off in items for s in range(0, int(np.prod(shape)), SLICE)]
        if jobs > 1:
            with multiprocessing.Pool(jobs) as pool:
                for b in pool.imap(_slice_bytes, work):
                    f.write(b)
        else:
            for job in work:
                f.write(_slice_bytes(job))
    return offset


def write_sharded(out, items, dtype, shard_bytes, progress, jobs=1):
    """transformers' save_pretrained layout: shards of at most shard_bytes (a larger tensor gets a shard of its
    own), model-0000i-of-0000N.safetensors + model.safetensors.index.json."""
    esize = 4 if dtype == "f32" else 2
    shards, cur, size = [], [], 0
    for it in items:
        n = int(np.prod(it[1])) * esize
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += n
    if cur:
        shards.append(cur)
    weight_map, total = {}, 0
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(os.path.join(out, fn), sh, dtype, jobs)
        for name, _, _, _ in sh:
            weight_map[name] = fn
        if progress:
            print(f"make_msa_checkpoint: wrote {fn} ({len(sh)} tensors)", file=sys.stderr, flush=True)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--variant", default="base", choices=sorted(VARIANTS))
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--full", action="store_true",
                    help="MSA-4B's full shapes and msa_config (for benchmarks; ~8.5 GB in bf16, ~17 GB in f32)")
    ap.add_argument("--shard-gb", type=float, default=None,
                    help="write shards of at most this many GB + model.safetensors.index.json "
                         "(default: 5 with --full, as transformers' save_pretrained; else one file)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="processes making weights (default: all CPUs with --full, else 1)")
    a = ap.parse_args()
    jobs = a.jobs if a.jobs else (os.cpu_count() or 1) if a.full else 1
    hp = dict(FULL if a.full else SMALL)
    msa = VARIANTS["msa4b" if a.full and a.variant == "base" else a.variant]
    routers = parse_layers(msa["router_layer_idx"], hp["num_hidden_layers"])
    os.makedirs(a.out, exist_ok=True)
    items = list(tensors(hp, routers, msa["decouple_router"]))
    shard_gb = a.shard_gb if a.shard_gb is not None else (5.0 if a.full else 0)
    if shard_gb > 0:
        write_sharded(a.out, items, a.dtype, int(shard_gb * 1e9), a.full, jobs)
    else:
        write_safetensors(os.path.join(a.out, "model.safetensors"), items, a.dtype, jobs)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config_json(hp, msa, a.dtype), f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": [151645, 151643], "do_sample": False}, f, indent=2)
        f.write("\n")
    tok = find_tokenizer()
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(tok, fn)):
            shutil.copyfile(os.path.join(tok, fn), os.path.join(a.out, fn))


if __name__ == "__main__":
    main()
