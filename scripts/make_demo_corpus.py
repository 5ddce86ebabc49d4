#!/usr/bin/env python3
"""make_demo_corpus.py — writes data/demo/passages.jsonl, the corpus of `msa demo`: 35 short public-domain
passages (Moby-Dick paragraphs and sentences of U.S. State of the Union addresses, from
data/corpora, copied from the workplace's shared data) plus the planted facts of data/demo/facts.jsonl. Run once; the output is committed.

    python3 scripts/make_demo_corpus.py data/corpora data/demo
"""
import json
import os
import re
import sys

src, out = sys.argv[1], sys.argv[2]
passages = []

# Moby-Dick: paragraphs of 40..110 words, every 6th one, up to 100.
text = open(os.path.join(src, "moby-dick/moby-dick.txt"), encoding="utf-8").read()
start = text.find("CHAPTER 1. Loomings.")
paras = [re.sub(r"\s+", " ", p).strip() for p in text[start:].split("\n\n")]
paras = [p for p in paras if 40 <= len(p.split()) <= 110 and not p.startswith("CHAPTER")]
for i, p in enumerate(paras[::6][:100]):
    passages.append({"id": f"moby-dick-{i:03d}", "text": p})

# State of the Union: from 50 addresses, the first 3..4 sentences after the salutation (<= 110 words).
sotu = sorted(os.listdir(os.path.join(src, "sotu")))
for f in sotu[:: max(1, len(sotu) // 50)][:50]:
    t = re.sub(r"\s+", " ", open(os.path.join(src, "sotu", f), encoding="utf-8").read()).strip()
    sents = re.split(r"(?<=[.!?]) ", t)
    chunk = " ".join(sents[1:4])
    words = chunk.split()
    if len(words) > 110:
        chunk = " ".join(words[:110])
    year, name = f[:4], f[5:-4].rsplit("_", 1)[0].replace("_", " ").title()
    passages.append({"id": f"sotu-{f[:-4]}", "text": f"{name}, State of the Union, {year}: {chunk}"})

# Keep 35 of them (the demo encodes in about a minute on 2 cores): the passages that the held-out routing
# questions of tests/ref/data/read_eval_questions.jsonl ask about, plus 13 more of both sources.
KEEP = {f"moby-dick-{i:03d}" for i in (0, 4, 6, 9, 12, 18, 21, 27, 33, 41, 45, 52, 62, 69, 72, 75, 81, 86, 89, 95)}
KEEP |= {p["id"] for p in passages if p["id"].startswith("sotu-") and p["id"][5:9] in
         ("1802", "1818", "1826", "1850", "1862", "1870", "1886", "1910", "1914", "1935", "1947", "1958", "1965",
          "1969", "1981")}
passages = [p for p in passages if p["id"] in KEEP]

facts = [json.loads(l) for l in open(os.path.join(out, "facts.jsonl"), encoding="utf-8") if l.strip()]
# planted facts go in the middle of the corpus, not at the ends
mid = len(passages) // 2
for k, f in enumerate(facts):
    passages.insert(mid - len(facts) * 3 + k * 6, {"id": f["id"], "text": f["text"]})

with open(os.path.join(out, "passages.jsonl"), "w", encoding="utf-8") as fo:
    for p in passages:
        fo.write(json.dumps(p, ensure_ascii=False) + "\n")
print(len(passages), "passages,", sum(len(p["text"].split()) for p in passages), "words")
