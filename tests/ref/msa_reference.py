#!/usr/bin/env python3
"""msa_reference.py — an independent, straightforward NumPy implementation of msa-reference.md (the MSA
reference behaviour), written from that specification, used to make the fixtures in tests/fixtures/msa/.

For f32 checkpoints it computes in float64 (our engine computes in f32; f32 tolerance is what the tests
check); for bf16 checkpoints (MSA-4B is bf16) it rounds where the reference's PyTorch code rounds (class
Model; §1.1, §2.1 pooling, §2.3 bf16 scores). Covered: stage-1 encoding (§2.1: document rendering,
document-wise RoPE, chunk means with a partial tail chunk, K̄ post-k_norm post-RoPE, V̄, K̄_R =
router_k_proj(h_in) unnormalised unless aux_loss_method == "INFONCE"; without router projectors
(decouple_router false) K̄_R = K̄, normalised iff "INFONCE"), the template prefix K/V of every layer,
stage 2 (§2.2-2.3, §4.1: the question prompt and token roles, routing with every reduce variant, router
queries router_q_proj(h_in) or, without projectors, the attention's own post-q_norm post-RoPE q; scale
1/sqrt(head_dim) unless "INFONCE" with projectors; top-k per router layer, context [template ; selected
chunks ; query], positions from 3 + top_k), decoding (§2.4) with a multi-token injected block attending to
itself bidirectionally.

MSA_REF_EAGER=1 (diagnostics only, never for the committed fixtures) makes bf16 attention round like
transformers' eager attention (bf16 scores and probabilities) instead of flash-attn: how much of the bf16
difference to the engine comes from that choice.

Tie rule for top-k (ours; the reference's is implementation-defined): higher score first, equal scores by
lower bank index. Selected chunks are concatenated in ascending bank index, then chunk order.

    python3 tests/ref/msa_reference.py OUT_DIR     (writes OUT_DIR/ref_<fixture>.json for every FIXTURES entry,
                                                    making each checkpoint with make_msa_checkpoint.py)
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tokenizers import Tokenizer

IM_START, IM_END, NL = 151644, 151645, 198
INSTR = "\nPlease answer the question based on the above historical document information\n\n"
TAIL = "\n" + "Please return all documents related to the question\n"


def load_safetensors(path):
    """{name: float64 array} and whether the weights are bf16 (then the model runs with bf16 activations)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out, dtypes = {}, set()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dtypes.add(info["dtype"])
        if info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(info["dtype"])
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out, dtypes == {"BF16"}


def bf16(x):
    """Round to the nearest bfloat16 (ties to even) through float32; returned as float64."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


F32 = np.float32


class Model:
    """The MSA model of a checkpoint directory. With bf16 weights it computes like the reference does in
    bfloat16 (msa-reference.md §1.1: every matmul accumulates in fp32 and rounds its output; RMSNorm in fp32,
    rounded, times the weight, rounded; RoPE with fp32 angles and bf16 cos/sin, each product rounded; residual
    adds, SiLU and gate*up rounded; attention as flash-attn does it: fp32 scores and softmax, the probabilities
    rounded to bf16 for the P·V product, the output rounded; logits rounded), pools as §2.1 (fp32 prefix sums,
    difference, divide by the count in fp32, round) and scores as §2.3 (bf16 q' and scores, bf16 head mean).
    Otherwise float64 throughout (f32 checkpoints: f32 tolerance)."""

    def __init__(self, ckpt, msa_override=None):
        with open(os.path.join(ckpt, "config.json")) as f:
            self.cfg = json.load(f)
        c = self.cfg
        # A variant replaces the whole msa_config (as make_msa_checkpoint.py --variant writes it).
        self.msa = dict(msa_override) if msa_override is not None else dict(c["msa_config"])
        self.w, self.bf = load_safetensors(os.path.join(ckpt, "model.safetensors"))
        self.r = bf16 if self.bf else (lambda x: x)
        self.tok = Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
        self.L, self.H = c["num_hidden_layers"], c["hidden_size"]
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.eps, self.theta = c["rms_norm_eps"], c["rope_theta"]
        spec = self.msa.get("router_layer_idx", "all")
        self.routers = list(range(self.L)) if spec == "all" else [int(x) for x in spec.split(",")]
        self.P = int(self.msa.get("pooling_kernel_size", 64))
        # §8-3: the engine reads doc_top_k, the model top_k_docs; doc_top_k wins, default 16.
        self.top_k = int(self.msa.get("doc_top_k", self.msa.get("top_k_docs", 16)))
        self.method = self.msa.get("aux_loss_method", "INFONCE")
        self.decouple = bool(self.msa.get("decouple_router", False))
        self.cosine = self.method == "INFONCE"  # exact string (§2.3, §8-1)
        # §2.3 / MSAService.scaling: q' = q * 1/sqrt(hd) unless "INFONCE" *and* router projectors (then 1).
        self.route_scale = 1.0 if (self.cosine and self.decouple) else 1.0 / np.sqrt(self.hd)
        self.head_reduce = self.msa.get("head_reduce_method", "max")
        self.query_reduce = self.msa.get("query_reduce_method", "max")
        self.chunk_reduce = self.msa.get("chunk_reduce_method", "max")

    # ---- Qwen3 pieces (§1.1)
    def mm(self, x, wname):
        if self.bf:
            return bf16(x.astype(F32) @ self.w[wname].T.astype(F32))
        return x @ self.w[wname].T

    def rms(self, x, w):
        if self.bf:
            x32 = x.astype(F32)
            var = np.mean(x32 * x32, axis=-1, keepdims=True, dtype=F32)
            return bf16(w * bf16(x32 / np.sqrt(var + F32(self.eps))))
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # x [n, heads, hd]; rotate-half
        half = self.hd // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
        if self.bf:
            inv = (1.0 / (F32(self.theta) ** (np.arange(0, self.hd, 2).astype(F32) / F32(self.hd)))).astype(F32)
            ang = np.asarray(pos, dtype=F32)[:, None] * inv[None, :]
            emb = np.concatenate([ang, ang], -1)
            cos, sin = bf16(np.cos(emb))[:, None, :], bf16(np.sin(emb))[:, None, :]
            return bf16(bf16(x * cos) + bf16(rot * sin))
        inv = 1.0 / (self.theta ** (np.arange(half, dtype=np.float64) * 2.0 / self.hd))
        ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
        cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :]
        return x * cos + rot * sin

    def qkv(self, l, x, pos):
        p = f"model.layers.{l}.self_attn."
        n = x.shape[0]
        q = self.mm(x, p + "q_proj.weight").reshape(n, self.nh, self.hd)
        k = self.mm(x, p + "k_proj.weight").reshape(n, self.nkv, self.hd)
        v = self.mm(x, p + "v_proj.weight").reshape(n, self.nkv, self.hd)
        q = self.rms(q, self.w[p + "q_norm.weight"])
        k = self.rms(k, self.w[p + "k_norm.weight"])
        return self.rope(q, pos), self.rope(k, pos), v

    def attend(self, q, k_prior, v_prior, k_new, v_new, bidirectional):
        """q [n, nh, hd] new tokens; they see every prior entry, and the new block causally (or fully)."""
        n, m = q.shape[0], k_prior.shape[0]
        K = np.concatenate([k_prior, k_new], 0)
        V = np.concatenate([v_prior, v_new], 0)
        g = self.nh // self.nkv
        out = np.zeros((n, self.nh, self.hd))
        for h in range(self.nh):
            s = q[:, h, :] @ K[:, h // g, :].T / np.sqrt(self.hd)  # [n, m+n]
            if not bidirectional:
                mask = np.triu(np.ones((n, n), bool), 1)
                s[:, m:][mask] = -np.inf
            if self.bf and os.environ.get("MSA_REF_EAGER"):  # transformers' eager attention (diagnostics)
                s = bf16(bf16(q[:, h, :].astype(F32) @ K[:, h // g, :].T.astype(F32)) / np.sqrt(self.hd)).astype(F32)
                if not bidirectional:
                    s[:, m:][np.triu(np.ones((n, n), bool), 1)] = -np.inf
                e = np.exp(s - s.max(-1, keepdims=True))
                out[:, h, :] = bf16(bf16(e / e.sum(-1, keepdims=True, dtype=F32)).astype(F32) @ V[:, h // g, :].astype(F32))
                continue
            if self.bf:  # flash-attn: fp32 scores/softmax, bf16 P for P·V, one rounding of the output
                s = s.astype(F32)
                e = np.exp(s - s.max(-1, keepdims=True))
                out[:, h, :] = bf16((bf16(e).astype(F32) @ V[:, h // g, :].astype(F32)) / e.sum(-1, keepdims=True))
                continue
            s = s - s.max(-1, keepdims=True)
            e = np.exp(s)
            out[:, h, :] = (e / e.sum(-1, keepdims=True)) @ V[:, h // g, :]
        return out.reshape(n, self.nh * self.hd)

    def mlp(self, l, h):
        p = f"model.layers.{l}."
        x = self.rms(h, self.w[p + "post_attention_layernorm.weight"])
        gt = self.mm(x, p + "mlp.gate_proj.weight")
        up = self.mm(x, p + "mlp.up_proj.weight")
        r = self.r
        return r(h + self.mm(r(r(gt / (1 + np.exp(-gt))) * up), p + "mlp.down_proj.weight"))

    def logits(self, h):
        x = self.rms(h, self.w["model.norm.weight"])
        return self.mm(x, "lm_head.weight" if "lm_head.weight" in self.w else "model.embed_tokens.weight")

    def embed(self, ids):
        return self.w["model.embed_tokens.weight"][np.asarray(ids)]

    def forward(self, ids, pos, prior, bidirectional=False, hook=None):
        """prior[l] = (k [m, nkv, hd], v) per layer (may be callable(l, x_in, q) -> (k, v)). Returns (h, new_kv)."""
        h = self.embed(ids)
        new_kv = []
        for l in range(self.L):
            x = self.rms(h, self.w[f"model.layers.{l}.input_layernorm.weight"])
            q, k, v = self.qkv(l, x, pos)
            kp, vp = prior(l, x, q) if callable(prior) else prior[l]
            if hook:
                hook(l, x, k, v)
            a = self.attend(q, kp, vp, k, v, bidirectional)
            h = self.r(h + self.mm(a, f"model.layers.{l}.self_attn.o_proj.weight"))
            h = self.mlp(l, h)
            new_kv.append((np.concatenate([kp, k], 0), np.concatenate([vp, v], 0)))
        return h, new_kv

    def empty_prior(self):
        z = np.zeros((0, self.nkv, self.hd))
        return [(z, z)] * self.L

    # ---- stage 1 (§2.1, §3.1)
    def doc_ids(self, idx, text):
        mid = self.tok.encode(f"[{idx}]. {text}[{idx}]", add_special_tokens=False).ids
        return [IM_START] + mid + [IM_END]

    def template(self):
        ids = [IM_START, 872, NL]
        _, kv = self.forward(ids, [0, 1, 2], self.empty_prior())
        return kv  # per layer (k [3,nkv,hd], v)

    def pool(self, x):
        n = x.shape[0]
        if self.bf:  # §2.1: fp32 prefix sums, difference at chunk boundaries, / count in fp32, -> bf16
            cs = np.concatenate([np.zeros((1,) + x.shape[1:], F32), np.cumsum(x.astype(F32), 0, dtype=F32)], 0)
            return np.stack([bf16((cs[min(c + self.P, n)] - cs[c]) / F32(min(self.P, n - c)))
                             for c in range(0, n, self.P)], 0)
        return np.stack([x[c:c + self.P].mean(0) for c in range(0, n, self.P)], 0)

    def unit(self, x):
        """F.normalize along the last dim (norm clamped at 1e-12), rounded in bf16 mode."""
        return self.r(x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12))

    def encode_doc(self, idx, text):
        ids = self.doc_ids(idx, text)
        rec = {}

        def hook(l, x, k, v):
            if l not in self.routers:
                return
            n = x.shape[0]
            kb, vb = self.pool(k), self.pool(v)
            if self.decouple:
                kr = self.mm(x, f"model.layers.{l}.self_attn.router_k_proj.0.weight").reshape(n, self.nkv, self.hd)
                krb = self.pool(kr)
            else:  # no router projector: route with the pooled keys themselves (§2.1, §3.3)
                krb = kb.copy()
            if self.cosine:
                krb = self.unit(krb)
            rec[l] = (kb, vb, krb)

        self.forward(ids, list(range(len(ids))), self.empty_prior(), hook=hook)
        return ids, rec

    # ---- stage 2 (§4.1, §2.2, §2.3)
    def question(self, prompt):
        qs = INSTR + prompt + TAIL
        qids = self.tok.encode(qs, add_special_tokens=False).ids
        ids = qids + [IM_END, NL, IM_START]
        roles = [0] * len(qids) + [-2, -2, -1]
        return ids, roles

    def route(self, l, x, q_attn, roles, bank):
        """Scores of every document at router layer l. Router queries: router_q_proj(h_in) (no norm, no RoPE)
        with projectors, else the attention's own q (post q_norm, post RoPE at the query positions; §2.2)."""
        n = x.shape[0]
        if self.decouple:
            qr = self.mm(x, f"model.layers.{l}.self_attn.router_q_proj.0.weight").reshape(n, self.nh, self.hd)
        else:
            qr = q_attn
        if self.cosine:
            qr = self.unit(qr)
        qr = self.r(qr * self.route_scale)
        mask = np.asarray(roles) == 0
        g = self.nh // self.nkv
        doc_scores = []
        for d in bank:
            KR = d["rec"][l][2]  # [C, nkv, hd]
            if self.bf:
                x_ = np.stack([bf16(qr[:, h, :].astype(F32) @ KR[:, h // g, :].T.astype(F32))
                               for h in range(self.nh)], 1)  # [n, nh, C] bf16 scores
                y = bf16(x_.astype(F32).mean(1, dtype=F32)) if self.head_reduce == "mean" else x_.max(1)
            else:
                x_ = np.stack([qr[:, h, :] @ KR[:, h // g, :].T for h in range(self.nh)], 1)  # [n, nh, C]
                y = x_.mean(1) if self.head_reduce == "mean" else x_.max(1)  # [n, C]
            y = y[mask]
            if self.query_reduce == "max":
                S = y.max(0)
            elif self.query_reduce == "mean":
                S = self.r(self.r(y.astype(F32).sum(0, dtype=F32)) / y.shape[0]) if self.bf else y.mean(0)
            else:  # last routing token
                S = y[-1]
            if self.chunk_reduce == "max":
                doc_scores.append(S.max())
            else:
                doc_scores.append(self.r(self.r(S.astype(F32).sum(dtype=F32)) / len(S)) if self.bf else S.mean())
        return np.array(doc_scores)

    def topk(self, scores, k):
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return order[:min(k, len(scores))]

    def ask(self, prompt, bank, tmpl, top_k=None, extra=None):
        top_k = self.top_k if top_k is None else top_k
        ids, roles = self.question(prompt)
        pos = [3 + top_k + i for i in range(len(ids))]
        routing = {}

        def prior(l, x, q):
            kt, vt = tmpl[l]
            if l not in self.routers or not bank:
                return kt, vt
            sc = self.route(l, x, q, roles, bank)
            sel = self.topk(sc, top_k)
            routing[l] = (sel, [float(sc[i]) for i in sel], [float(x) for x in sc])
            chosen = sorted(sel)
            ks = [kt] + [bank[i]["rec"][l][0] for i in chosen]
            vs = [vt] + [bank[i]["rec"][l][1] for i in chosen]
            return np.concatenate(ks, 0), np.concatenate(vs, 0)

        h, kv = self.forward(ids, pos, prior)
        return ids, roles, pos, routing, self.logits(h[-1:])[0], kv

    def decode(self, kv, ids, pos, bidirectional):
        h, kv = self.forward(ids, pos, kv, bidirectional=bidirectional)
        return self.logits(h[-1:])[0], kv


DOCS = [
    "The lighthouse keeper on Skerry Island was named Oswin Tamsworth.",
    "Quartz crystals vibrate at a precise frequency when voltage is applied.",
    "",  # empty document text: the rendering still has tokens
    "x",
    "Marmalade was first sold in Dundee by the Keiller family in 1797, using bitter Seville oranges that a "
    "Spanish ship had brought into the harbour during a storm.",
    "Brass instruments produce sound through the buzzing of the player's lips.",
    "The annual rainfall in the Atacama Desert is among the lowest on Earth, under one millimetre in places.",
]
QUESTIONS = ["Who kept the lighthouse on Skerry Island?", "When was marmalade first sold in Dundee?"]
INJECT = "<|im_start|>The user's question is: Who kept the lighthouse?\n<|object_ref_end|>"


def arr_list(a):
    return [float("%.8g" % x) for x in np.asarray(a, dtype=np.float64).ravel()]


def logit_summary(lg):
    order = sorted(range(len(lg)), key=lambda i: (-lg[i], i))
    top = order[:16]
    stride = list(range(0, len(lg), 997))
    return {"argmax": top[0], "top_ids": top, "top_vals": arr_list(lg[top]),
            "stride": 997, "stride_vals": arr_list(lg[stride])}


def run_variant(m, name):
    tmpl = m.template()
    bank = []
    for i, t in enumerate(DOCS):
        ids, rec = m.encode_doc(i, t)
        bank.append({"ids": ids, "rec": rec})
    out = {"variant": name, "P": m.P, "top_k": m.top_k, "router_layers": m.routers,
           "n_kv_heads": m.nkv, "head_dim": m.hd, "docs": DOCS,
           "doc_tokens": [d["ids"] for d in bank],
           "template_k": {str(l): arr_list(tmpl[l][0]) for l in range(m.L)},
           "template_v": {str(l): arr_list(tmpl[l][1]) for l in range(m.L)},
           "pooled": [{str(l): {"k": arr_list(d["rec"][l][0]), "v": arr_list(d["rec"][l][1]),
                                "kr": arr_list(d["rec"][l][2])} for l in m.routers} for d in bank],
           "questions": []}
    for qi, qtext in enumerate(QUESTIONS):
        ids, roles, pos, routing, lg0, kv = m.ask(qtext, bank, tmpl)
        steps = [logit_summary(lg0)]
        t1 = steps[0]["argmax"]
        last = pos[-1]
        lg1, kv = m.decode(kv, [t1], [last + 1], False)
        steps.append(logit_summary(lg1))
        inj = m.tok.encode(INJECT, add_special_tokens=False).ids
        inj_pos = [last + 2 + i for i in range(len(inj))]
        lg2, kv = m.decode(kv, inj, inj_pos, True)
        steps.append(logit_summary(lg2))
        t3 = steps[2]["argmax"]
        lg3, kv = m.decode(kv, [t3], [inj_pos[-1] + 1], False)
        steps.append(logit_summary(lg3))
        out["questions"].append({
            "question": qtext, "ids": ids, "roles": roles, "positions": pos,
            "routing": [{"layer": l, "docs": routing[l][0], "scores": routing[l][1], "all_scores": routing[l][2]}
                        for l in sorted(routing)],
            "inject": INJECT, "inject_ids": inj, "steps": steps, "fed": [t1, "inject", t3]})
    return out


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_msa_checkpoint import VARIANTS  # noqa: E402  (the msa_config of each variant)

# fixture name -> (make_msa_checkpoint.py variant, weight dtype). Every variant's checkpoint is written
# afresh (a decouple_router=false variant has no router_q_proj/router_k_proj tensors); the bf16 fixture
# computes with the reference's bf16 rounding points (class Model).
FIXTURES = {"base": ("base", "f32"), "cosine": ("cosine", "f32"), "last": ("last", "f32"),
            "meanmean": ("meanmean", "f32"), "owndot": ("owndot", "f32"), "owncos": ("owncos", "f32"),
            "bf16": ("base", "bf16"), "bf16_owncos": ("owncos", "bf16")}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    only = os.environ.get("MSA_REF_VARIANTS")
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (variant, dtype) in FIXTURES.items():
            if only and name not in only.split(","):
                continue
            ckpt = os.path.join(tmp, name)
            subprocess.run([sys.executable, os.path.join(here, "make_msa_checkpoint.py"), ckpt, "--variant", variant,
                            "--dtype", dtype], check=True)
            m = Model(ckpt)
            assert m.bf == (dtype == "bf16")
            res = run_variant(m, name)
            res["checkpoint"] = {"variant": variant, "dtype": dtype}
            with open(os.path.join(out_dir, f"ref_{name}.json"), "w") as f:
                json.dump(res, f, separators=(",", ":"))
            for q in res["questions"]:
                print(name, repr(q["question"][:30]), "routing",
                      [(r["layer"], r["docs"], ["%.4g" % x for x in r["scores"]]) for r in q["routing"]],
                      "argmax", [s["argmax"] for s in q["steps"]])


if __name__ == "__main__":
    main()
