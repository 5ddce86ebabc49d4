#!/usr/bin/env python3
"""read_routing_eval.py — offline evaluation of read-mode routing scorers (identity router) on a corpus.

Never needed at test time. Runs the default model in numpy (float32, weights dequantized from the GGUF with
np_forward.py's loader), keeps every document's and question's pre-RoPE keys/queries of every layer (per
token; documents rendered as stage 1 renders them: <|im_start|>[i]. {text}[i]<|im_end|>, questions as read mode
routes them: <|im_start|> + question), then scores documents with several scorers and prints recall@1/@3/@5
and the mean rank of each question's gold document.

    python3 tests/ref/read_routing_eval.py [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--corpus data/demo/passages.jsonl] [--questions data/demo/facts.jsonl tests/ref/data/read_eval_questions.jsonl]

The per-token vectors are cached in /tmp (keyed by the inputs' sizes) so scorers can be iterated on quickly.
"""
import argparse
import hashlib
import json
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def tokenizer(gguf_path):
    from tokenizers import Tokenizer
    from make_tokenizer_fixtures import gguf_hf_tokenizer
    return Tokenizer.from_str(json.dumps(gguf_hf_tokenizer(gguf_path)))


def load_model(gguf_path):
    from np_forward import load_gguf
    hp, w = load_gguf(gguf_path)
    return hp, {k: v.astype(np.float32) for k, v in w.items()}


def rms(x, wt, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * wt


def rope(x, theta):
    T, _, d = x.shape
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :].astype(np.float32)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :].astype(np.float32)
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def forward_qk(hp, w, ids, want_q):
    """Pre-RoPE k [L][T, nkv, hd] (and q [L][T, nq, hd]) of every layer, float16 to save memory."""
    T = len(ids)
    nq, nkv, hd, eps = hp["nq"], hp["nkv"], hp["hd"], hp["eps"]
    h = w["model.embed_tokens.weight"][np.asarray(ids)]
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    ks, qs = [], []
    for i in range(hp["layers"]):
        p = f"model.layers.{i}."
        x = rms(h, w[p + "input_layernorm.weight"], eps)
        q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nq, hd)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        if hp["arch"] != "llama":
            q = rms(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, w[p + "self_attn.k_norm.weight"], eps)
        ks.append(k.astype(np.float16))
        if want_q:
            qs.append(q.astype(np.float16))
        if i == hp["layers"] - 1:
            break
        qr, kr = rope(q, hp["theta"]), rope(k, hp["theta"])
        g = nq // nkv
        att = np.empty((T, nq, hd), dtype=np.float32)
        for hh in range(nq):
            s = qr[:, hh, :] @ kr[:, hh // g, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hh, :] = s @ v[:, hh // g, :]
        h = h + att.reshape(T, nq * hd) @ w[p + "self_attn.o_proj.weight"].T
        x = rms(h, w[p + "post_attention_layernorm.weight"], eps)
        gt = x @ w[p + "mlp.gate_proj.weight"].T
        u = x @ w[p + "mlp.up_proj.weight"].T
        h = h + (gt / (1.0 + np.exp(-gt)) * u) @ w[p + "mlp.down_proj.weight"].T
    return np.stack(ks), (np.stack(qs) if want_q else None)


def collect(args):
    docs = [json.loads(l) for l in open(args.corpus) if l.strip()]
    qs = []
    for f in args.questions:
        qs += [json.loads(l) for l in open(f) if l.strip()]
    key = hashlib.sha1(json.dumps([args.gguf, docs, qs], sort_keys=True).encode()).hexdigest()[:12]
    cache = f"/tmp/read_routing_eval2_{key}.pkl"
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            return (docs, qs) + pickle.load(f)
    tok = tokenizer(args.gguf)
    im_start, im_end = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
    hp, w = load_model(args.gguf)
    dk, dt = [], []
    for i, d in enumerate(docs):
        ids = [im_start] + tok.encode(f"[{i}]. {d['text']}[{i}]", add_special_tokens=False).ids + [im_end]
        k, _ = forward_qk(hp, w, ids, False)
        dk.append(k)
        dt.append(np.asarray(ids))
        print(f"\rencoded {i + 1}/{len(docs)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    qq, qt = [], []
    for q in qs:
        ids = [im_start] + tok.encode(q["question"], add_special_tokens=False).ids
        kv, qv = forward_qk(hp, w, ids, True)
        qq.append((qv, kv))
        qt.append(np.asarray(ids))
    with open(cache, "wb") as f:
        pickle.dump((dk, qq, dt, qt), f)
    return docs, qs, dk, qq, dt, qt


# ---- scorers: each returns doc scores [n_docs] for one question ----

def pool(k, P):
    """Chunk means [n_chunks, ...] of k [T, ...] (partial tail over its true length)."""
    T = k.shape[0]
    n = (T + P - 1) // P
    out = np.zeros((n,) + k.shape[1:], dtype=np.float32)
    for c in range(n):
        out[c] = k[c * P:(c + 1) * P].astype(np.float32).mean(0)
    return out


class Bank:
    def __init__(self, dk, layers, P, skip_first=0):
        """Chunk keys per layer: keys[l] [C, nkv*hd], doc_of [C]."""
        self.layers, self.P = layers, P
        self.keys, doc_of = {l: [] for l in layers}, []
        for i, k in enumerate(dk):
            kk = k[:, skip_first:]  # [L, T, nkv, hd]
            for l in layers:
                pk = pool(kk[l], P)
                self.keys[l].append(pk.reshape(pk.shape[0], -1))
            doc_of += [i] * ((kk.shape[1] + P - 1) // P)
        self.keys = {l: np.concatenate(v) for l, v in self.keys.items()}
        self.doc_of = np.asarray(doc_of)
        self.n_docs = len(dk)


def fold_q(q, nkv, scale=True):
    """q [T, nq, hd] -> head-mean-folded [T, nkv*hd] (scaled by 1/sqrt(hd))."""
    T, nq, hd = q.shape
    g = nq // nkv
    q = q.astype(np.float32) / (np.sqrt(hd) if scale else 1.0)
    return q.reshape(T, nkv, g, hd).sum(2).reshape(T, nkv * hd) / nq


def doc_reduce(S, doc_of, n_docs, how):
    out = np.full(n_docs, -np.inf)
    if how == "mean":
        s = np.bincount(doc_of, weights=S, minlength=n_docs)
        c = np.bincount(doc_of, minlength=n_docs)
        return np.where(c > 0, s / np.maximum(c, 1), -np.inf)
    np.maximum.at(out, doc_of, S)
    return out


def layer_scores(bank, l, q, tokmask, opt):
    K = bank.keys[l]
    if opt.get("center"):
        K = K - K.mean(0, keepdims=True)
    qf = fold_q(q[l][tokmask], K.shape[1] // q.shape[-1])
    if opt.get("qcenter"):
        qf = qf - qf.mean(0, keepdims=True)
    if opt.get("cos"):
        K = K / (np.linalg.norm(K, axis=1, keepdims=True) + 1e-9)
        qf = qf / (np.linalg.norm(qf, axis=1, keepdims=True) + 1e-9)
    y = qf @ K.T  # [t, C]
    if opt.get("z", True):
        y = (y - y.mean(1, keepdims=True)) / (y.std(1, keepdims=True) + 1e-9)
    if opt.get("tokdoc") == "maxsim":
        # per token: best chunk of each doc, then mean over tokens
        per = np.stack([doc_reduce(y[t], bank.doc_of, bank.n_docs, "max") for t in range(y.shape[0])])
        return per.mean(0)
    S = y.mean(0) if opt.get("qred", "mean") == "mean" else y.max(0)
    return doc_reduce(S, bank.doc_of, bank.n_docs, opt.get("cred", "mean"))


def layer_scores_maxsim(bank, l, qv, qk, tokmask, opt):
    """Per routing token: the best chunk of each document (max-sim), centred over the documents (so a token
    that matches every document equally, like a stop word, adds nothing); mean over tokens."""
    K = bank.keys[l]
    if opt.get("center"):
        K = K - K.mean(0, keepdims=True)
    if opt.get("qk") == "kk":
        qf = qk[l][tokmask].astype(np.float32).reshape(int(tokmask.sum()), -1)
    else:
        qf = fold_q(qv[l][tokmask], K.shape[1] // qv.shape[-1])
    if opt.get("qcenter_bank"):
        qf = qf - bank.keys[l].mean(0, keepdims=True)
    if opt.get("cos", True):
        K = K / (np.linalg.norm(K, axis=1, keepdims=True) + 1e-9)
        qf = qf / (np.linalg.norm(qf, axis=1, keepdims=True) + 1e-9)
    y = qf @ K.T  # [t, C]
    per = np.stack([doc_reduce(y[t], bank.doc_of, bank.n_docs, "max") for t in range(y.shape[0])])  # [t, D]
    c = per - per.mean(1, keepdims=True)
    if opt.get("tz"):
        c = c / (per.std(1, keepdims=True) + 1e-9)
    if opt.get("pos"):
        c = np.maximum(c, 0)
    return c.mean(0)


def fuse(per_layer, how):
    P = np.stack(per_layer)  # [L, D]
    if how == "sum":
        return P.sum(0)
    if how == "z":
        return ((P - P.mean(1, keepdims=True)) / (P.std(1, keepdims=True) + 1e-9)).sum(0)
    if how == "rrf":
        ranks = np.argsort(np.argsort(-P, axis=1), axis=1)
        return (1.0 / (60 + ranks)).sum(0)
    raise ValueError(how)


def evaluate(name, docs, qs, dk, qq, dt, qt, layers, P, opt, fusion="sum", verbose=False, stop=None):
    bank = Bank(dk, range(max(layers) + 1) if False else layers, P, opt.get("skip_first", 0))
    ids = [d["id"] for d in docs]
    ranks = []
    for qi, q in enumerate(qs):
        tokmask = np.ones(len(qt[qi]), bool)
        tokmask[0] = False
        if stop is not None and opt.get("stop"):
            for j, t in enumerate(qt[qi]):
                if t in stop:
                    tokmask[j] = False
            if not tokmask.any():
                tokmask[1:] = True
        qv, qk = qq[qi]
        if opt.get("maxsim2"):
            per = [layer_scores_maxsim(bank, l, qv, qk, tokmask, opt) for l in layers]
        else:
            per = [layer_scores(bank, l, qv, tokmask, opt) for l in layers]
        s = fuse(per, fusion)
        gold = ids.index(q["id"])
        rank = int((s >= s[gold]).sum())  # ties count against the gold document
        ranks.append(rank)
        if verbose:
            top = np.argsort(-s)[:3]
            print(f"   {rank:4d} {q['id']:32s} top: {[ids[t] for t in top]}")
    r = np.asarray(ranks)
    return r


def report(name, r, nf):
    def rec(x, k):
        return (x <= k).mean()
    f, h = r[:nf], r[nf:]
    print(f"{name:60s} facts r@1 {rec(f,1):.2f} r@3 {rec(f,3):.2f} | held-out r@1 {rec(h,1):.2f} r@3 {rec(h,3):.2f} "
          f"r@5 {rec(h,5):.2f} mrank {h.mean():6.1f} | all r@1 {rec(r,1):.2f} r@3 {rec(r,3):.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--corpus", default="data/demo/passages.jsonl")
    ap.add_argument("--questions", nargs="+",
                    default=["data/demo/facts.jsonl", os.path.join(HERE, "data/read_eval_questions.jsonl")])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--quick", action="store_true", help="only the old and the chosen scorer")
    args = ap.parse_args()
    docs, qs, dk, qq, dt, qt = collect(args)
    nf = sum(1 for q in qs if q["id"].startswith("fact-"))
    L = dk[0].shape[0]
    upper = list(range(L // 2, L))
    E = lambda layers, P, opt, fusion="sum", v=False: evaluate("", docs, qs, dk, qq, dt, qt, layers, P, opt, fusion, v)
    report("old: upper half, P8, z, mean/mean, sum", E(upper, 8, {}, v=args.verbose), nf)
    report("msa now: upper half, P1, k.k max-sim, sink skipped, centred", E(upper, 1, {"maxsim2": True, "qk": "kk", "skip_first": 1}, v=args.verbose), nf)
    report("same with q.k", E(upper, 1, {"maxsim2": True, "qk": "qk", "skip_first": 1}), nf)
    if args.quick:
        return
    for sk in (0, 1):
        for layers, nm in ((list(range(0, 4)), "L0-3"), (list(range(4, 8)), "L4-7"), (list(range(8, 12)), "L8-11"),
                           (list(range(12, 16)), "L12-15"), (list(range(16, 20)), "L16-19"), (upper, "upper"),
                           (list(range(L)), "all")):
            for P in (1,):
                for qk in ("qk", "kk"):
                    report(f"skip{sk} {nm} P{P} maxsim2 cos centred {qk}",
                           E(layers, P, {"maxsim2": True, "qk": qk, "skip_first": sk}), nf)
    for P in (2, 4):
        report(f"skip1 upper P{P} maxsim2 cos centred qk", E(upper, P, {"maxsim2": True, "skip_first": 1}), nf)
    report("skip1 upper P1 maxsim2 no-cos qk", E(upper, 1, {"maxsim2": True, "cos": False, "skip_first": 1}), nf)
    report("skip1 upper P1 maxsim2 tz qk", E(upper, 1, {"maxsim2": True, "tz": True, "skip_first": 1}), nf)
    report("skip1 upper P1 maxsim2 pos qk", E(upper, 1, {"maxsim2": True, "pos": True, "skip_first": 1}), nf)
    report("skip1 upper P1 maxsim2 qk fusion z", E(upper, 1, {"maxsim2": True, "skip_first": 1}, "z"), nf)
    report("skip1 upper P1 maxsim2 qk fusion rrf", E(upper, 1, {"maxsim2": True, "skip_first": 1}, "rrf"), nf)
    for nm, opt in (("skip1", {"maxsim2": True, "skip_first": 1}), ("skip1 kk", {"maxsim2": True, "skip_first": 1, "qk": "kk"})):
        print(f"per layer (P1, maxsim2, {nm}):")
        for l in range(L):
            report(f"  layer {l}", E([l], 1, opt), nf)

if __name__ == "__main__":
    main()
