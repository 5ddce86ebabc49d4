#!/usr/bin/env python3
"""make_retrieval_data.py — the retrieval benchmark's passages and questions, and the router's training pairs,
made deterministically (seeded) from the public-domain corpora in data/corpora/ (see data/corpora/README.md).

    python3 scripts/make_retrieval_data.py bench OUTDIR      # passages-1k.jsonl, passages-10k.jsonl, questions.jsonl
    python3 scripts/make_retrieval_data.py train OUT.jsonl   # router training pairs (train-router --data)
    python3 scripts/make_retrieval_data.py passages OUT.jsonl  # training passages no pair uses (msa make-questions)
    python3 scripts/make_retrieval_data.py keywords OUT.jsonl  # keyword-query pairs (rare words of a sentence)
    python3 scripts/make_retrieval_data.py fit OUTDIR        # passages-fit.jsonl, questions-fit.jsonl (full context)
    python3 scripts/make_retrieval_data.py big OUT.jsonl     # passages-100k: the 10K set + 90,000 recombined passages

Benchmark texts: Moby-Dick and the State of the Union addresses from 1900 on. Training texts: the addresses
before 1900 only, so no benchmark passage is ever a training passage. Passages: paragraphs packed to 50-90 words.

Questions (written into questions.jsonl before any system was run on them; the file is committed on its own):
  lexical     a sentence of a passage reduced to its four rarest content words: "Find the passage about A, B, C and D."
  paraphrase  planted facts about invented people, three facts per person in three different passages, asked with
              other words than the fact uses ("was born in the town of" -> "What is the hometown of"); the
              person's name matches all three passages, only the relation tells the right one
  multihop    "X has a sister named Y" in one passage, "Y earns a living as a Z" in another; asked "What is the
              occupation of X's sibling?" (gold: both passages; the question never names Y)
Training pairs use other relation templates, other question wordings and another pool of name syllables; and
inverse-cloze pairs (a sentence of a pre-1900 passage as the query, the rest of the passage as the positive).
"""
import glob
import json
import os
import random
import re
import sys
from collections import Counter

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORP = os.path.join(ROOT, "data", "corpora")

WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
STOP = set("""a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up upon very was we were what when
where which while who whom why will with would you your yours yourself yourselves shall may must also which thou
thee thy ye one two us let every great said like made make upon yet""".split())


def paragraphs(text):
    text = text.replace("\r\n", "\n")
    for p in re.split(r"\n\s*\n", text):
        p = " ".join(p.split())
        if len(p.split()) >= 8 and not p.isupper():
            yield p


def pack(paras, lo=50, hi=90):
    """paragraphs -> passages of lo..hi words (long paragraphs split at sentence ends)"""
    out, cur = [], []
    for p in paras:
        for s in re.split(r"(?<=[.!?])\s+", p):
            w = s.split()
            if not w:
                continue
            if len(cur) + len(w) > hi and len(cur) >= lo:
                out.append(" ".join(cur))
                cur = []
            cur.extend(w[:hi])
        if len(cur) >= lo:
            out.append(" ".join(cur))
            cur = []
    return out


def sotu_files(before_1900):
    fs = sorted(glob.glob(os.path.join(CORP, "sotu", "*.txt")))
    return [f for f in fs if (int(os.path.basename(f)[:4]) < 1900) == before_1900]


def bench_passages():
    ps = []
    with open(os.path.join(CORP, "moby-dick", "moby-dick.txt"), encoding="utf-8") as f:
        for i, t in enumerate(pack(paragraphs(f.read()))):
            ps.append({"id": "moby-%05d" % i, "text": t})
    for fn in sotu_files(False):
        base = os.path.basename(fn)[:-4]
        with open(fn, encoding="utf-8") as f:
            for i, t in enumerate(pack(paragraphs(f.read()))):
                ps.append({"id": "sotu-%s-%03d" % (base, i), "text": t})
    return ps


# ---- invented people (benchmark pool)
B_SYL1 = ["Or", "Mir", "Tal", "Bren", "Cas", "Dor", "Ev", "Fen", "Gar", "Hol", "Is", "Jor", "Kel", "Lun", "Mab", "Nor"]
B_SYL2 = ["rin", "ela", "wick", "oth", "ander", "ina", "ric", "wyn", "ald", "isse", "ton", "ora"]
B_SUR1 = ["Vale", "Quint", "Harrow", "Tamsin", "Brack", "Ostley", "Pell", "Rudd", "Saxe", "Thorne", "Wimble", "Yarrow"]
B_SUR2 = ["", "by", "more", "field", "well", "ford", "stone"]

B_PLACES = ["Tarrow", "Kelmscott", "Dunholm", "Brackwater", "Ashcombe", "Fennick", "Lowmoor", "Saltby", "Grisedale",
            "Marrowick", "Pendle Cross", "Oxhaven", "Wrenfield", "Cobham Leigh", "Harlow Mead", "Stoneybrook"]
B_SHIPS = ["Gray Heron", "Morning Lark", "Silver Petrel", "Constance", "Northern Star", "Hesper", "Wanderer",
           "Blue Anchor", "Resolute", "Merry Gull", "Cormorant", "Lady Alba"]
B_TRADES = ["glassblower", "cooper", "wheelwright", "chandler", "bookbinder", "saddler", "tanner", "clockmaker",
            "ropemaker", "locksmith", "apothecary", "cartographer"]
B_BIRDS = ["Pepper", "Admiral", "Juniper", "Biscuit", "Captain Flint", "Marigold", "Sprocket", "Tobias", "Ruby",
           "Quill", "Sable", "Pippin"]
B_FOODS = ["pickled herring", "oyster stew", "plum duff", "roast chestnuts", "lentil soup", "smoked eel",
           "barley bread", "gooseberry tart", "clam chowder", "fried plantains", "mutton pie", "salt cod"]
B_CREDITORS = ["the widow Ambrose", "a baker called Fitch", "the harbourmaster", "his cousin Delphine",
               "a tailor named Orme", "the Reverend Coyle", "old Mr. Pruett", "a fishmonger called Sark"]

# relation: (fact template, paraphrased question, answer pool)
B_REL = {
    "born": ("{E} was born in the town of {V}.", "What is the hometown of {E}?", B_PLACES),
    "ship": ("{E} was captain of a schooner called the {V}.", "Which vessel did {E} command?", B_SHIPS),
    "trade": ("{E} earns a living as a {V}.", "What is {E}'s occupation?", B_TRADES),
    "pet": ("{E} keeps a parrot named {V}.", "What is the name of the bird owned by {E}?", B_BIRDS),
    "year": ("{E} first went to sea in {V}.", "When did {E} begin sailing?", [str(y) for y in range(1801, 1899)]),
    "food": ("{E} is fond of eating {V}.", "What dish does {E} like best?", B_FOODS),
    "debt": ("{E} owes forty dollars to {V}.", "To whom is {E} in debt?", B_CREDITORS),
}
B_SISTER = "{E} has a sister named {V}."
B_MULTI_Q = "What is the occupation of {E}'s sibling?"


def name(rng, s1, s2, u1, u2, used):
    while True:
        n = rng.choice(s1) + rng.choice(s2) + " " + rng.choice(u1) + rng.choice(u2)
        if n not in used:
            used.add(n)
            return n


def plant(text, fact, rng):
    s = re.split(r"(?<=[.!?])\s+", text)
    i = rng.randint(0, len(s))
    return " ".join(s[:i] + [fact] + s[i:])


def long_sentences(text):
    """the sentences of text with at least 8 words (text itself when none has)"""
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if len(WORD.findall(s)) >= 8] or [text]


def rarest_words(sentence, df):
    """the sentence's content words (not STOP, over 2 letters), once each, rarest first (df: document frequency)"""
    cw = [w for w in dict.fromkeys(WORD.findall(sentence)) if w.lower() not in STOP and len(w) > 2]
    cw.sort(key=lambda w: (df[w.lower()], w))
    return cw


def make_bench(outdir):
    rng = random.Random(11)
    ps = bench_passages()
    df = Counter()
    for p in ps:
        df.update(set(w.lower() for w in WORD.findall(p["text"])))
    order = list(range(len(ps)))
    rng.shuffle(order)
    ten_k = sorted(order[:10000]) if len(ps) >= 10000 else sorted(order)
    # the 1K set is a subset of the 10K set; every gold passage lies in the 1K set
    one_k = set(rng.sample(ten_k, 1000))
    one_k_list = sorted(one_k)
    hosts = iter(rng.sample(one_k_list, len(one_k_list)))
    text = {i: ps[i]["text"] for i in ten_k}
    qs = []
    # lexical: 120 questions on 120 distinct passages that host no fact
    lex_passages = [next(hosts) for _ in range(120)]
    for i in lex_passages:
        s = rng.choice(long_sentences(text[i]))
        pick = rarest_words(s, df)[:4]
        pick = [w for w in dict.fromkeys(WORD.findall(s)) if w in pick][:4]  # sentence order, once each
        if len(pick) == 1:
            topic = pick[0]
        else:
            topic = ", ".join(pick[:-1]) + " and " + pick[-1]
        qs.append({"id": "lex-%03d" % len(qs), "kind": "lexical", "question": "Find the passage about %s." % topic,
                   "gold": [ps[i]["id"]], "answer": None})
    # paraphrase: 40 people x 3 relations = 120 questions
    used = set()
    rels = list(B_REL)
    for k in range(40):
        e = name(rng, B_SYL1, B_SYL2, B_SUR1, B_SUR2, used)
        for r in rng.sample(rels, 3):
            ft, qt, pool = B_REL[r]
            v = rng.choice(pool)
            h = next(hosts)
            text[h] = plant(text[h], ft.format(E=e, V=v), rng)
            qs.append({"id": "para-%03d" % k + "-" + r, "kind": "paraphrase", "question": qt.format(E=e),
                       "gold": [ps[h]["id"]], "answer": v})
    # multi-hop: 70 chains
    for k in range(70):
        e = name(rng, B_SYL1, B_SYL2, B_SUR1, B_SUR2, used)
        sis = name(rng, B_SYL1, B_SYL2, B_SUR1, B_SUR2, used)
        trade = rng.choice(B_TRADES)
        h1, h2 = next(hosts), next(hosts)
        text[h1] = plant(text[h1], B_SISTER.format(E=e, V=sis), rng)
        text[h2] = plant(text[h2], B_REL["trade"][0].format(E=sis, V=trade), rng)
        qs.append({"id": "hop-%03d" % k, "kind": "multihop", "question": B_MULTI_Q.format(E=e),
                   "gold": [ps[h1]["id"], ps[h2]["id"]], "answer": trade})
    os.makedirs(outdir, exist_ok=True)
    for nm, sel in (("passages-1k.jsonl", one_k_list), ("passages-10k.jsonl", ten_k)):
        with open(os.path.join(outdir, nm), "w", encoding="utf-8") as f:
            for i in sel:
                f.write(json.dumps({"id": ps[i]["id"], "text": text[i]}, ensure_ascii=False) + "\n")
    with open(os.path.join(outdir, "questions.jsonl"), "w", encoding="utf-8") as f:
        for q in qs:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    print("passages: %d (1k) %d (10k); questions: %d" % (len(one_k_list), len(ten_k), len(qs)), file=sys.stderr)


# ---- training pairs: other texts, other templates, other names
T_SYL1 = ["Ab", "Ced", "Dul", "Ef", "Gwen", "Hug", "Ivo", "Lor", "Nes", "Pru", "Ros", "Sil", "Ulf", "Vic", "Wil", "Zel"]
T_SYL2 = ["da", "ric", "lian", "mar", "etta", "bert", "in", "a", "eth", "on"]
T_SUR1 = ["Ashdown", "Birch", "Crane", "Dunmore", "Elkin", "Fairweather", "Gosling", "Hatch", "Ingram", "Jessop"]
T_SUR2 = ["", "ley", "worth", "ton", "ham"]
T_REL = [
    ("{E}'s favourite colour is {V}.", ["Which colour does {E} prefer?", "What colour is {E} fondest of?"],
     ["crimson", "teal", "ochre", "violet", "amber", "olive", "indigo", "scarlet"]),
    ("{E} lives on {V} Street.", ["Where is {E}'s home?", "On which road does {E} reside?"],
     ["Mulberry", "Canal", "Weaver", "Orchard", "Chapel", "Bridge", "Market", "Tanner"]),
    ("{E} studied {V} at the university.", ["What was {E}'s subject in college?", "Which discipline did {E} learn?"],
     ["botany", "law", "astronomy", "medicine", "geology", "music", "chemistry", "history"]),
    ("The secret word of {E} is {V}.", ["What password does {E} use?", "Tell me {E}'s code word."],
     ["lantern", "thistle", "copperleaf", "harbor", "juniper", "saffron", "falcon", "ember"]),
    ("{E} drives a wagon pulled by a horse called {V}.", ["What is the name of {E}'s horse?",
                                                          "Which animal pulls {E}'s cart?"],
     ["Bramble", "Duchess", "Thunder", "Clover", "Nutmeg", "Shadow", "Barley", "Comet"]),
    ("{E} was married in the year {V}.", ["When did {E} wed?", "In what year did {E} take a spouse?"],
     [str(y) for y in range(1700, 1800)]),
    ("{E} collects old {V}.", ["What is {E}'s hobby?", "Which things does {E} gather?"],
     ["coins", "maps", "clocks", "stamps", "buttons", "teapots", "lanterns", "keys"]),
]


def train_passages(rng):
    ps = []
    for fn in sotu_files(True):
        with open(fn, encoding="utf-8") as f:
            ps.extend(pack(paragraphs(f.read())))
    rng.shuffle(ps)
    return ps


def make_passages(out):
    """the pre-1900 passages after the 1,800 that make_train uses (same seed, same order): the texts
    `msa make-questions` writes questions for, so model-written pairs share no passage with the others"""
    ps = train_passages(random.Random(7))[1800:]
    with open(out, "w", encoding="utf-8") as f:
        for i, t in enumerate(ps):
            f.write(json.dumps({"id": "sotu-train-%05d" % i, "text": t}, ensure_ascii=False) + "\n")
    print("passages: %d" % len(ps), file=sys.stderr)


def make_train(out):
    rng = random.Random(7)
    ps = train_passages(rng)
    pairs = []
    # inverse cloze: 1200 pairs
    for t in ps[:1200]:
        s = re.split(r"(?<=[.!?])\s+", t)
        s = [x for x in s if len(x.split()) >= 6] or [t]
        q = rng.choice(s)
        rest = t.replace(q, "").strip() if rng.random() < 0.9 else t  # mostly the sentence removed (ICT)
        pairs.append({"query": q, "positive": rest or t, "kind": "ict"})
    # facts: 600 pairs, planted into other pre-1900 passages; several facts per person (hard negatives)
    used = set()
    hosts = ps[1200:]
    hi = 0
    for k in range(200):
        e = name(rng, T_SYL1, T_SYL2, T_SUR1, T_SUR2, used)
        for ft, qts, pool in rng.sample(T_REL, 3):
            v = rng.choice(pool)
            h = plant(hosts[hi], ft.format(E=e, V=v), rng)
            hi += 1
            pairs.append({"query": rng.choice(qts).format(E=e), "positive": h, "kind": "fact", "group": e})
    rng.shuffle(pairs)
    with open(out, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print("pairs: %d" % len(pairs), file=sys.stderr)


K_TEMPLATES = ["{w}", "Which text mentions {c}?", "Search: {w}", "A passage with the words {c}.", "{c}?"]


def make_keywords(out, n=900):
    """keyword-query pairs, the lexical style of question in other words than the benchmark's: 3-5 of the rarest
    content words of one sentence (rarity over the pre-1900 training texts), shuffled, in one of K_TEMPLATES; the
    positive is the whole passage. Passages after those of `train` (1,800) and of the 1,500 that `passages` gave
    `msa make-questions`, so no training passage is shared and none is a benchmark passage."""
    rng = random.Random(13)
    ps = train_passages(random.Random(7))
    df = Counter()
    for t in ps:
        df.update(set(w.lower() for w in WORD.findall(t)))
    pairs = []
    for t in ps[3300:3300 + n]:
        pick = rarest_words(rng.choice(long_sentences(t)), df)[:rng.randint(3, 5)]
        if len(pick) < 2:
            continue
        rng.shuffle(pick)
        q = rng.choice(K_TEMPLATES).format(w=" ".join(pick), c=", ".join(pick[:-1]) + " and " + pick[-1])
        pairs.append({"query": q, "positive": t, "kind": "keywords"})
    with open(out, "w", encoding="utf-8") as f:
        for p_ in pairs:
            f.write(json.dumps(p_, ensure_ascii=False) + "\n")
    print("keyword pairs: %d" % len(pairs), file=sys.stderr)


def make_fit(outdir, n_person=8, n_hop=10, n_lex=10):
    """a subset of the benchmark small enough for the default model's 8,192-token context, for the full-context
    baseline: the first n_person people of the paraphrase questions (all three questions each, so all three of a
    person's passages are there to confuse), the first n_hop multi-hop and the first n_lex lexical questions, and
    exactly their gold passages, in passages-1k.jsonl's order. A rule fixed before any system ran on the subset."""
    d = os.path.join(ROOT, "data", "retrieval")
    passages = [json.loads(l) for l in open(os.path.join(d, "passages-1k.jsonl"), encoding="utf-8")]
    questions = [json.loads(l) for l in open(os.path.join(d, "questions.jsonl"), encoding="utf-8")]
    people = []
    for q in questions:
        p = q["id"].rsplit("-", 1)[0]
        if q["kind"] == "paraphrase" and p not in people:
            people.append(p)
    chosen = [q for q in questions if q["kind"] == "paraphrase" and q["id"].rsplit("-", 1)[0] in people[:n_person]]
    chosen += [q for q in questions if q["kind"] == "multihop"][:n_hop]
    chosen += [q for q in questions if q["kind"] == "lexical"][:n_lex]
    gold = {g for q in chosen for g in q["gold"]}
    kept = [p for p in passages if p["id"] in gold]
    if len(kept) != len(gold):
        sys.exit("fit: a gold passage is not in passages-1k.jsonl")
    os.makedirs(outdir, exist_ok=True)
    for name_, rows in (("passages-fit.jsonl", kept), ("questions-fit.jsonl", chosen)):
        with open(os.path.join(outdir, name_), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("fit: %d passages, %d words; %d questions" % (len(kept), sum(len(p["text"].split()) for p in kept),
                                                       len(chosen)), file=sys.stderr)


def make_big(out, n_total=100000, lo=35, hi=65):
    """the 100K-passage set for the GPU: passages-10k.jsonl as it is (every gold passage, planted facts included)
    plus n_total - 10,000 distractors of lo..hi words, each a run of sentences drawn at random from the benchmark
    texts (Moby-Dick, the addresses from 1900) outside the 1K set's passages, so that no distractor holds a gold
    sentence, a planted fact or an invented name. The corpora have about 28,000 benchmark-text passages, too few
    for 100K; recombined sentences keep the vocabulary and style of the 10K set's distractors. Shorter than the
    50-90 words of the benchmark passages so that 100K fit a GPU-host RAM disk (design note in docs/quality.md).
    A distractor holding all four topic words of a lexical question is drawn again."""
    rng = random.Random(23)
    d = os.path.join(ROOT, "data", "retrieval")
    ten_k = [json.loads(l) for l in open(os.path.join(d, "passages-10k.jsonl"), encoding="utf-8")]
    one_k = {json.loads(l)["id"] for l in open(os.path.join(d, "passages-1k.jsonl"), encoding="utf-8")}
    topics = []
    for l in open(os.path.join(d, "questions.jsonl"), encoding="utf-8"):
        q = json.loads(l)
        if q["kind"] == "lexical":
            m = re.match(r"Find the passage about (.*)\.$", q["question"])
            topics.append({w.lower() for w in re.split(r", | and ", m.group(1))})
    sents = []
    for p in bench_passages():
        if p["id"] not in one_k:
            sents.extend(s for s in re.split(r"(?<=[.!?])\s+", p["text"]) if 3 <= len(s.split()) <= hi)
    rows, redrawn = list(ten_k), 0
    while len(rows) < n_total:
        target, words = rng.randint(lo, hi), []
        while len(words) < target:
            w = rng.choice(sents).split()
            if len(words) + len(w) > hi and len(words) >= lo:
                break
            words.extend(w[:hi - len(words)])
        text = " ".join(words)
        low = {w.lower() for w in WORD.findall(text)}
        if any(t <= low for t in topics):
            redrawn += 1
            continue
        rows.append({"id": "mix-%06d" % (len(rows) - len(ten_k)), "text": text})
    with open(out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("big: %d passages (%d from passages-10k.jsonl), %d words; %d sentences in the pool; %d redrawn"
          % (len(rows), len(ten_k), sum(len(r["text"].split()) for r in rows), len(sents), redrawn), file=sys.stderr)


if __name__ == "__main__":
    modes = {"bench": make_bench, "train": make_train, "passages": make_passages, "keywords": make_keywords,
             "fit": make_fit, "big": make_big}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](sys.argv[2])
