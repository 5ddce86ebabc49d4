#!/usr/bin/env python3
"""make_io_fixtures.py — tiny model files written by the reference writers (the `safetensors` and `gguf`
Python packages) so that the C loaders are checked against real writers, not only against the test's own.
Output: tests/fixtures/io/tiny.safetensors, tests/fixtures/io/tiny.gguf (a few KB). Not needed at test time.
    python3 tests/ref/make_io_fixtures.py
"""
import os

import numpy as np
from safetensors.numpy import save_file
import gguf

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "io")


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns (round to nearest even), as uint16 viewed raw."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + 0x7FFF
    return ((u + r) >> 16).astype(np.uint16)


def main():
    os.makedirs(OUT, exist_ok=True)
    # safetensors.numpy has no bfloat16: save the BF16 bit patterns as U16, then relabel the dtype in the
    # header (offsets are relative to the data section, so re-padding the header changes nothing else).
    tensors = {
        "model.layers.0.self_attn.q_proj.weight": np.arange(32, dtype=np.float32).reshape(8, 4),
        "model.norm.weight": bf16_bits([1.0, -2.0, 1.5, 0.0]),
        "lm_head.weight": np.linspace(1.0, -0.25, 24).astype(np.float16).reshape(6, 4),
    }
    path = os.path.join(OUT, "tiny.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = blob[8 : 8 + n].decode().rstrip()
    assert header.count('"U16"') == 1
    header = header.replace('"U16"', '"BF16"')
    header += " " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header.encode() + blob[8 + n :])

    w = gguf.GGUFWriter(os.path.join(OUT, "tiny.gguf"), "qwen3")
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_key_length(8)
    w.add_value_length(8)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1000000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "c", "ab", "<|endoftext|>", "<|im_end|>"])
    w.add_token_types([1, 1, 1, 1, 3, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(4)
    w.add_eos_token_id(5)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((6, 32)).astype(np.float32)
    w.add_tensor("token_embd.weight", gguf.quants.quantize(emb, gguf.GGMLQuantizationType.Q8_0),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", rng.standard_normal((32, 32)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
