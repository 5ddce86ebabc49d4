#!/usr/bin/env python3
"""write_manifest.py — writes tests/fixtures/hf/manifest.json: every checkpoint and GGUF file the backbone
tests use, where its generated files and its expected outputs are, the tolerance to test it with, and the
errors tests/ref/np_forward.py measured against the transformers fixtures (the tolerances' evidence).

    python3 tests/ref/write_manifest.py [--gguf-only]   (after make_hf_checkpoints.py, convert_gguf.py --measure)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_gguf as cg  # noqa: E402
import make_hf_checkpoints as mk  # noqa: E402
import np_forward as nf  # noqa: E402

REL = lambda p: os.path.relpath(p, mk.REPO)  # noqa: E731

METRIC = ("rel = max|engine - fixture| / max|fixture| over one array (one hidden-state entry [T, H], the "
          "logits at logit_cols [T, C], or logits_last [V]); argmax_agree = fraction of prompt positions whose "
          "argmax equals the fixture's argmax; greedy_equal = leading tokens of the 64-token greedy "
          "continuation that must be equal")

# Tolerances. f32 and bf16 are the bars; the measured columns show how far an exact float64 forward
# is from them. GGUF: about 3x the error an exact forward on the dequantized weights makes (gguf.json).
TOL_F32 = {"hidden_rel": 1e-4, "logits_rel": 1e-4, "argmax_agree_min": 1.0, "greedy_equal": 64}
TOL_BF16 = {"hidden_rel": 2e-2, "logits_rel": 2e-2, "argmax_agree_min": 0.99, "greedy_equal": 0}
# An engine that quantizes activations like llama.cpp's CPU kernels (Q8_0 blocks for quantized weights, f16
# for F16 weights) against the dequantized-exact fixture: about 3x what np_forward measures for that.
TOL_LLAMACPP_ACT = {
    "F16": {"hidden_rel": 3e-3, "logits_rel": 3e-3, "argmax_agree_min": 1.0, "greedy_equal": 0},
    "Q8_0": {"hidden_rel": 6e-2, "logits_rel": 6e-2, "argmax_agree_min": 0.8, "greedy_equal": 0},
    "Q4_1": {"hidden_rel": 6e-2, "logits_rel": 6e-2, "argmax_agree_min": 0.8, "greedy_equal": 0},
}
# Against transformers: F16 and Q8_0 ~3x the exact-dequant error; Q4_1 on these tiny random models moves the
# logits by 25-35% and the argmax at half the positions, so its bound only says "not garbage" (the precise
# Q4_1 test is against the dequantized-exact fixture). "Not garbage" must exclude an all-zero output, whose
# relative error is exactly 1.0: 0.5 is ~1.4x the worst measured (0.35), the argmax floor ~0.75x the lowest (0.2).
TOL_GGUF = {
    "F16": {"hidden_rel": 4e-3, "logits_rel": 4e-3, "argmax_agree_min": 1.0, "greedy_equal": 16},
    "Q8_0": {"hidden_rel": 8e-2, "logits_rel": 8e-2, "argmax_agree_min": 0.8, "greedy_equal": 0},
    "Q4_1": {"hidden_rel": 0.5, "logits_rel": 0.5, "argmax_agree_min": 0.15, "greedy_equal": 0},
}


def summary(r):
    return {"hidden_rel_max": max(r["hidden"]), "logits_rel_cols": r["logits_cols"],
            "logits_rel_last": r["logits_last"], "argmax_agree": r["argmax_agree"],
            **({"greedy_equal": r["greedy_prefix_equal"]} if "greedy_prefix_equal" in r else {})}


def main():
    gen = mk.DEFAULT_OUT
    path = os.path.join(mk.FIXTURES, "manifest.json")
    # --gguf-only: keep the checkpoints' entries (their measurement takes minutes), redo the GGUF ones
    old = json.load(open(path)) if "--gguf-only" in sys.argv and os.path.exists(path) else None
    cks = old["checkpoints"] if old else []
    for spec in ([] if old else mk.SPECS):
        name = spec["name"]
        hp = mk.hparams(spec)
        d = os.path.join(gen, name)
        fx = os.path.join(mk.FIXTURES, name)
        e = {"name": name, "architecture": {"qwen3": "Qwen3ForCausalLM", "msa": "MSAForCausalLM",
                                            "llama": "LlamaForCausalLM"}[spec["arch"]],
             "dtype": spec["dtype"], "tie_word_embeddings": spec["tie"], "num_hidden_layers": spec["layers"],
             "sharded": spec["shards"] > 1, **hp, "vocab_size": mk.VOCAB,
             "model_dir": REL(d), "fixture": REL(fx)}
        if spec["arch"] == "msa":
            e["router_layers"] = mk.MSA_CONFIG["router_layer_idx"]
        if spec["dtype"] == "float32":
            e["tolerance"] = TOL_F32
            e["measured_exact_forward"] = summary(nf.compare(d, fx, n_greedy=64))
        else:
            e["tolerance"] = TOL_BF16
            e["f32compute_fixture"] = REL(os.path.join(fx, "f32compute"))
            e["f32compute_tolerance"] = TOL_F32
            e["measured_exact_forward"] = summary(nf.compare(d, fx))
            e["measured_bf16_emulating_forward"] = summary(nf.compare(d, fx, emulate_bf16=True))
            e["measured_exact_forward_vs_f32compute"] = summary(nf.compare(d, os.path.join(fx, "f32compute"),
                                                                           n_greedy=64))
        print(name, json.dumps(e["measured_exact_forward"]), flush=True)
        cks.append(e)
    measured = json.load(open(cg.GGUF_JSON)).get("measured", {})
    ggufs = []
    for src, arch, fxname in cg.SOURCES:
        for q in cg.TYPES:
            fn = f"{src}.{q}.gguf"
            g = {"file": REL(os.path.join(os.path.dirname(gen), "gguf", fn)), "source": src, "arch": arch,
                 "type": q, "fixture": REL(os.path.join(mk.FIXTURES, fxname)), "tolerance": TOL_GGUF[q],
                 "llama_qk_permuted": arch == "llama", "output_weight": not mk.SPEC_BY_NAME[src]["tie"]}
            g["dequant_fixture"] = REL(os.path.join(mk.FIXTURES, "gguf", fn[:-len(".gguf")]))
            g["dequant_tolerance_exact"] = TOL_F32
            g["dequant_tolerance_llamacpp_activations"] = TOL_LLAMACPP_ACT[q]
            if "vs_transformers" in measured.get(fn, {}):
                r = measured[fn]
                vt = r["vs_transformers"]
                g["measured_dequant_vs_transformers"] = {
                    "hidden_rel_max": max(vt["hidden_rel"]), "logits_rel_cols": vt["logits_rel_cols"],
                    "argmax_agree": vt["argmax_agree"], "greedy_equal": vt["greedy_prefix_equal"]}
                la = r["llamacpp_activations_vs_exact"]
                g["measured_llamacpp_activations_vs_dequant"] = {
                    "hidden_rel_max": max(la["hidden_rel"]), "logits_rel_cols": la["logits_rel_cols"],
                    "argmax_agree": la["argmax_agree"]}
                g["dequant_greedy_min_margin"] = r["greedy_min_margin"]
            ggufs.append(g)
    m = {"format_version": 1, "readme": "tests/fixtures/hf/README.md",
         "generate": "bash scripts/make-test-checkpoints.sh", "metric": METRIC,
         "checkpoints": cks, "gguf": ggufs}
    with open(path, "w") as f:
        f.write(json.dumps(m, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
