#!/usr/bin/env python3
"""plot_quality.py — docs/quality.png from the measured cells of docs/quality.md (docs/quality-cells.tsv).

    python3 scripts/plot_quality.py docs/quality-cells.tsv docs/quality.png

Top row: the QA benchmark's recall@5 (solid) and recall@1 (dashed) per system against the bank's size in
passages, one panel per question kind, then its exact match (paraphrase solid, multi-hop dotted). Bottom row:
NIAH mean recall@1 (solid) and recall@5 (dashed) against the haystack's tokens; NIAH exact match where
measured; the shipped router's training curve (data/routers/smollm2-135m.curve.tsv: held-out loss and
recall@1/@5 per evaluated step), when that file exists; the QA recall panels' legend.
The cells are the tables' numbers, each row naming the section of docs/quality.md that has its command; the
JSON of `msa eval --json` they came from is not kept."""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ("lexical", "paraphrase", "multihop")


def read_cells(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader((l for l in f if not l.startswith("#")), delimiter="\t")]
    head, body = rows[0], rows[1:]
    cells = [dict(zip(head, r)) for r in body if len(r) == len(head)]
    if len(cells) != len(body):
        sys.exit("plot_quality: %s: a row without %d columns" % (path, len(head)))
    return cells


def series(cells, bench, kind, metric):
    """{system: sorted [(size, value)]} of the cells with a value for metric"""
    out = {}
    for c in cells:
        if c["bench"] == bench and c["kind"] == kind and c[metric] != "-":
            out.setdefault(c["system"], []).append((int(c["size"]), float(c[metric])))
    return {s: sorted(p) for s, p in sorted(out.items())}


def main(cells_path, out):
    cells = read_cells(cells_path)
    fig, ax = plt.subplots(2, 4, figsize=(26, 9))
    colors = {}

    def color(system):
        return colors.setdefault(system, "C%d" % len(colors))

    def lines(a, bench, kind, styles, label="{s} R@{m[1]}"):
        """one line per system and metric, in the system's color: styles = ((metric, linestyle, marker), ...);
        label: a format of the system s and the metric m"""
        for metric, ls, mk in styles:
            for s, pts in series(cells, bench, kind, metric).items():
                a.plot([x for x, _ in pts], [y for _, y in pts], ls=ls, marker=mk, color=color(s),
                       label=label.format(s=s, m=metric))

    def against_size(a, xlabel, ylabel, title):
        a.set_xscale("log")
        a.set_ylim(0, 1.05)
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
        a.set_title(title)

    passages, tokens = "memory size (passages in the bank)", "haystack (tokens)"
    for i, kind in enumerate(KINDS):
        lines(ax[0][i], "qa", kind, (("r5", "-", "o"), ("r1", "--", "s")))
        against_size(ax[0][i], passages, "recall", "QA retrieval, %s questions (R@5 solid, R@1 dashed)" % kind)
    a = ax[0][3]
    for kind, ls in (("paraphrase", "-"), ("multihop", ":")):
        lines(a, "qa", kind, (("em", ls, "o"),), "{s}, %s EM" % kind)
    against_size(a, passages, "exact match", "QA exact match (the 135M reader, top 3 documents)")
    a.legend(fontsize=6, loc="upper right")
    a = ax[1][0]
    lines(a, "niah", "all", (("r1", "-", "o"), ("r5", "--", "s")))
    against_size(a, tokens, "recall", "NIAH, 8 RULER-style tasks (R@1 solid, R@5 dashed)")
    a.legend(fontsize=7, loc="lower left")
    a = ax[1][1]
    lines(a, "niah", "all", (("em", "-", "o"),), "{s} EM")
    against_size(a, tokens, "exact match", "NIAH exact match (the 135M reader, top 3 documents)")
    a.legend(fontsize=7)
    a = ax[1][2]
    curve = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "routers", "smollm2-135m.curve.tsv")
    if os.path.exists(curve):
        rows = [l.rstrip("\n").split("\t") for l in open(curve)][1:]
        st = [int(r[0]) for r in rows]
        a.plot(st, [float(r[3]) for r in rows], marker="o", label="held-out recall@1")
        a.plot(st, [float(r[4]) for r in rows], marker="o", label="held-out recall@5")
        a2 = a.twinx()
        a2.plot(st, [float(r[2]) for r in rows], color="gray", ls="--", label="held-out loss")
        tl = [(s_, float(r[1])) for s_, r in zip(st, rows) if r[1] != "nan"]
        a2.plot([x for x, _ in tl], [y for _, y in tl], color="black", ls=":", label="train loss (last steps)")
        a2.set_ylabel("InfoNCE loss")
        a2.legend(fontsize=7, loc="lower right")
        a.set_xlabel("step")
        a.set_ylabel("recall among held-out pairs")
        a.set_title("router training (query-side, 15 layers)")
        a.legend(fontsize=7, loc="upper left")
    else:
        a.axis("off")
    ax[1][3].axis("off")  # the QA recall panels' one legend
    ax[1][3].legend(*ax[0][2].get_legend_handles_labels(), loc="center", fontsize=8, title="QA recall")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
