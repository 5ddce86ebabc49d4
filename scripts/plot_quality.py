#!/usr/bin/env python3
"""plot_quality.py — docs/quality.png from the JSON results of `msa eval --json` (scripts/quality.sh).

    python3 scripts/plot_quality.py RESULTS_DIR docs/quality.png

Left: recall@5 per question kind against memory size (tokens in the bank) for every system with results
(files SYSTEM-1k.json, SYSTEM-10k.json). Right: NIAH recall@1 and exact-match accuracy against haystack size
(niah-SYSTEM-TOKENS.json; full context, which ranks nothing, as EM alone). Third panel: the shipped router's training curve (data/routers/smollm2-135m.curve.tsv:
held-out loss and recall@1/@5 per evaluated step), when that file exists."""
import glob
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(p):
    with open(p) as f:
        return json.load(f)


def main(d, out):
    curve = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "routers", "smollm2-135m.curve.tsv")
    has_curve = os.path.exists(curve)
    fig, ax = plt.subplots(1, 3 if has_curve else 2, figsize=(18 if has_curve else 12, 4.5))
    qa = {}
    for p in sorted(glob.glob(os.path.join(d, "*-1k.json")) + glob.glob(os.path.join(d, "*-10k.json"))):
        r = load(p)
        for kind, m in r["kinds"].items():
            qa.setdefault((r["system"], kind), []).append((r["n_tokens"], m["recall@5"]))
    for (sys_, kind), pts in sorted(qa.items()):
        pts.sort()
        ax[0].plot([x for x, _ in pts], [y for _, y in pts], marker="o", label="%s / %s" % (sys_, kind))
    ax[0].set_xscale("log")
    ax[0].set_xlabel("memory size (tokens in the bank)")
    ax[0].set_ylabel("recall@5")
    ax[0].set_title("QA retrieval (1K passages; 10K set where measured)")
    ax[0].legend(fontsize=6)
    ni = {}
    for p in glob.glob(os.path.join(d, "niah-*.json")):
        m = re.match(r"niah-(.+)-(\d+)\.json", os.path.basename(p))
        if not m:
            continue
        r = load(p)
        n = sum(k["n"] for k in r["kinds"].values())
        # full context ranks nothing: no recall, EM only
        r1 = sum(k["recall@1"] * k["n"] for k in r["kinds"].values()) / n if all(
            "recall@1" in k for k in r["kinds"].values()) else None
        em = [k.get("em") for k in r["kinds"].values()]
        emv = sum(e * k["n"] for e, k in zip(em, r["kinds"].values()) if e is not None) / n if all(
            e is not None for e in em) else None
        ni.setdefault(m.group(1), []).append((int(m.group(2)), r1, emv))
    for s, pts in sorted(ni.items()):
        pts.sort()
        if all(y is not None for _, y, _ in pts):
            ax[1].plot([x for x, _, _ in pts], [y for _, y, _ in pts], marker="o", label="%s recall@1" % s)
        if all(e is not None for _, _, e in pts):
            ax[1].plot([x for x, _, _ in pts], [e for _, _, e in pts], marker="s", ls="--", label="%s EM" % s)
    ax[1].set_xscale("log")
    ax[1].set_xlabel("haystack (tokens)")
    ax[1].set_ylim(0, 1.05)
    ax[1].set_title("NIAH (8 RULER-style tasks), default model, CPU")
    ax[1].legend(fontsize=7)
    if has_curve:
        rows = [l.rstrip("\n").split("\t") for l in open(curve)][1:]
        st = [int(r[0]) for r in rows]
        ax[2].plot(st, [float(r[3]) for r in rows], marker="o", label="held-out recall@1")
        ax[2].plot(st, [float(r[4]) for r in rows], marker="o", label="held-out recall@5")
        ax2 = ax[2].twinx()
        ax2.plot(st, [float(r[2]) for r in rows], color="gray", ls="--", label="held-out loss")
        tl = [(s_, float(r[1])) for s_, r in zip(st, rows) if r[1] != "nan"]
        ax2.plot([a for a, _ in tl], [b for _, b in tl], color="black", ls=":", label="train loss (last steps)")
        ax2.set_ylabel("InfoNCE loss")
        ax2.legend(fontsize=7, loc="lower right")
        ax[2].set_xlabel("step")
        ax[2].set_ylabel("recall among held-out pairs")
        ax[2].set_title("router training (query-side, 15 layers)")
        ax[2].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
