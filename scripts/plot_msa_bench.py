#!/usr/bin/env python3
"""plot_msa_bench.py — plot `msa bench route --json` / `msa bench encode --json` results: time against memory
tokens on log-log axes, with a dashed line of slope 1 (linear cost) through the largest measured point.

    python3 scripts/plot_msa_bench.py route ROUTE.json [ROUTE2.json ...] [--out docs/msa-route.png]
    python3 scripts/plot_msa_bench.py encode ENC.json [ENC2.json ...] [--out docs/msa-encode.png]

Several files (e.g. a tiny synthetic MSA checkpoint and the default model; 50-token and 1-token routing
queries) become several series; --labels "a;b" names them.
Needs matplotlib (pip install matplotlib); never needed by the tests.
"""
import argparse
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(doc):
    out = []
    for r in doc["results"]:
        m = re.match(r"tokens=(\d+)", r["name"])
        if not m:
            continue
        s = r["seconds"]
        out.append((int(m.group(1)), s["median"], s["min"], s["max"]))
    return sorted(out)


def series(ax, pts, label, marker):
    x = [p[0] for p in pts]
    y = [p[1] for p in pts]
    lo = [p[1] - p[2] for p in pts]
    hi = [p[3] - p[1] for p in pts]
    ax.errorbar(x, y, yerr=[lo, hi], marker=marker, capsize=3, label=label)
    # linear reference through the largest point: t = t_max * n / n_max
    xm, ym = x[-1], y[-1]
    ax.plot([x[0], xm], [ym * x[0] / xm, ym], linestyle="--", color="gray", linewidth=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["route", "encode"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out")
    ap.add_argument("--labels", help="series labels separated by ';' (default: from each file's meta)")
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(8, 5))
    markers = "osd^v"
    for i, f in enumerate(a.files):
        doc = json.load(open(f))
        meta = doc.get("meta", {})
        pts = rows(doc)
        if a.labels:
            label = a.labels.split(";")[i]
        elif a.what == "route":
            label = "%s-token query over %s (threads %s)" % (
                meta.get("query", "?").split(" ")[0],
                meta.get("shape", "?").split(":")[1].split(",")[0].strip(), meta.get("threads", "?"))
        else:
            label = "%s — %s" % (meta.get("model", f).split(" (")[0].rstrip("/").split("/")[-1],
                                 meta.get("mode", "").split(":")[0])
        series(ax, pts, label, markers[i % len(markers)])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("memory tokens")
    ax.set_ylabel("seconds per query" if a.what == "route" else "seconds to encode (msa_bank_ingest)")
    ax.set_title("msa: %s cost vs memory size (dashed: linear through the largest point)" %
                 ("routing" if a.what == "route" else "stage-1 encoding"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = a.out or "docs/msa-%s.png" % a.what
    fig.savefig(out, dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main()
