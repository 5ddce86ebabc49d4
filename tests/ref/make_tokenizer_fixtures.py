#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — expected token ids from Hugging Face `tokenizers` for tests/unit/test_tokenizer*.c.

Run from the repository root (never needed at test time):
    python3 tests/ref/make_tokenizer_fixtures.py [--corpora data/corpora] [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes under tests/fixtures/tokenizer/:
  corpora/<set>/<name>.txt.zst   the public-domain corpora, zstd-compressed (LICENSE.md beside them)
  variants/NAME.json, .expect    small tokenizers covering the features Qwen3 does not use, and their ids
  adversarial.hex                one adversarial input per line, hex-encoded bytes (may be invalid UTF-8)
  qwen3.expect, smollm2.expect   expected ids per input for the Qwen3 tokenizer.json and for the default model's
                                 GGUF tokenizer (HF tokenizer built from the GGUF's vocab and merges with the
                                 pre-tokenizer its tokenizer.ggml.pre names)

Expect-file lines (space-separated; H = FNV-1a 64 of the ids as int32 little-endian, 16 hex digits):
  file    PATH N H RT               a whole corpus file; RT 1 when decode(encode(x)) must equal x
  slice   PATH OFF LEN N H [ids]    bytes [OFF, OFF+LEN) of a corpus file (may cut UTF-8: decoded with
                                    errors='replace' as our tokenizer does); ids listed when N <= 64
  adv     I SPECIAL N H DH [ids]    adversarial input I with parse_special SPECIAL; DH = FNV-1a of HF's decode
                                    (UTF-8), compared to our decode when the input is valid UTF-8
  sweep   BLOCK N H                 the code-point sweep text of block BLOCK (see sweep_text; the C test
                                    builds the same text)

Invalid UTF-8: HF only sees Python str, so our defined behaviour is bytes.decode('utf-8', errors='replace')
then encoding; the references here are made exactly that way. parse_special=false references come from a copy
of the tokenizer JSON with the special (special=true) added tokens removed.
"""
import argparse
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer

FIX = 'tests/fixtures/tokenizer'
SEED = 20261122
N_SLICES = 2000
FULL_IDS_MAX = 64


def fnv64(ids):
    h = 0xcbf29ce484222325
    for i in ids:
        for b in (i & 0xffffffff).to_bytes(4, 'little'):
            h ^= b
            h = (h * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % h


def fnv64_bytes(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return '%016x' % h


def sweep_text(block):
    """Every code point of [block*4096, block*4096+4096) except surrogates, each in a small context that
    exercises letters, digits, whitespace, contractions, repetition and newlines around it. Mirrored in C."""
    parts = []
    for cp in range(block * 4096, block * 4096 + 4096):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        parts.append(c + 'x' + c + c + ' ' + c + "'" + c + '7\n')
    return ''.join(parts).encode('utf-8')


def adversarial():
    """Inputs as bytes. Valid and invalid UTF-8, special-token strings, runs, scripts."""
    s = []
    add = lambda x: s.append(x if isinstance(x, bytes) else x.encode('utf-8'))
    add('')
    add('Hello world')
    add(' leading space')
    add('trailing space ')
    add('日本語のテキストと中文文本，还有한국어 텍스트。')
    add('漢字かなカナ混じり文：東京都１２３')
    add('emoji 😀😃😄 and 👩‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽 🇯🇵🇺🇸')
    add('ZWJ\u200d and ZWNJ\u200c and ZWSP\u200b between')
    add('cafe\u0301 vs café, n\u0303, A\u030a, \u1e9b\u0323, Hangul \u1100\u1161\u11a8')
    add('Zalgo: Z\u0351\u036b\u0343\u036a\u0302a\u0357\u0366l\u0308g\u0310o\u0300\u0301')
    add('control \x00\x01\x02\x07\x08\x0b\x0c\x1b[31m\x7f\x1c\x1d\x1e\x1f end')
    add('\x85 NEL \u2028 LS \u2029 PS \u00a0 NBSP \u3000 ideographic \u180e mongolian \u202f')
    add(' ' * 100)
    add(' ' * 1000 + 'x')
    add('\n' * 50)
    add('\t' * 64 + 'tabbed')
    add(' \t \n \r\n \r \n\n  \t\t  x  \n')
    add('a' + ' ' * 17 + 'b' + '\n' * 3 + ' ' * 5 + 'c')
    add('0123456789 12345678901234567890 3.14159 1,000,000 1e-10 ０１２３ ٠١٢٣ ⅷ ½ ²')
    add("it's I'm you're we've they'll she'd don't")
    add("IT'S I'M YOU'RE WE'VE THEY'LL SHE'D DON'T")
    add("It'S i'M You'Re We'vE THEY'll she'D")
    add("'s 't 're 've 'm 'll 'd '' ''s it'ſ K'K")
    add('<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n')
    add('text <|endoftext|> more <|im_start|><|im_end|> <|im_start|system|>')
    add('<|im_start|<|im_start|>>')
    add('<tool_call>{"name": "f"}</tool_call> <|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>')
    add('<|endoftext|><|endoftext|><|endoftext|>')
    add('<repo_name> <file_sep> <filename> <gh_stars> <issue_start>')
    add('  <|im_start|>  spaced  <|im_end|>  ')
    add('<think>\nreasoning\n</think>\n\nanswer')
    add('def f(x):\n    return x**2  # comment\n\nclass A:\n\tpass\n')
    add('https://example.com/path?q=1&r=2#frag user@example.org')
    add('Ελληνικά Русский текст العربية עברית हिन्दी ไทย ქართული Ṁöẗöŕ')
    add('ﬁ ﬂ ﬃ Ⅻ ㎏ ① ™ ℌ ﹏ ｆｕｌｌ　ｗｉｄｔｈ')
    add('𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝓈𝒸𝓇𝒾𝓅𝓉 𐍈 𓀀 🀄')
    add('a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309\u030a' * 3)
    add('\ufeffBOM at start and \ufffe \uffff noncharacters \U0010ffff')
    add('Mixed: 123abc ABC123 abc-123_def.ghi  ...!!!??? --- ***')
    add('x' * 3000)
    add('ab' * 700 + ' ' + 'ba' * 700)
    add('🙂' * 200)
    add(''.join(chr(c) for c in range(0x20, 0x7f)))
    add(''.join(chr(c) for c in range(0xa0, 0x180)))
    # invalid UTF-8
    add(b'\xff')
    add(b'\xc0\xaf overlong slash')
    add(b'abc\x80def')
    add(b'\xe2\x82 truncated euro \xe2\x82\xac ok')
    add(b'\xed\xa0\x80 surrogate \xed\xbf\xbf')
    add(b'\xf4\x90\x80\x80 above max \xf8\x88\x80\x80\x80 five')
    add(b'\xf0\x9f\x98 cut emoji \xf0\x9f\x98\x80')
    add(b'\xc3\x28 \xa0\xa1 \xe2\x28\xa1 \xe2\x82\x28 \xf0\x28\x8c\xbc \xf0\x90\x28\xbc \xf0\x28\x8c\x28')
    add(b'<|im_start|>\xff<|im_end|>\xfe')
    add(b'end with lead byte \xe6')
    add(bytes(range(256)))
    rng = random.Random(SEED)
    for _ in range(8):
        add(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
    return s


class Remapped:
    """A tokenizer loaded without the special added tokens. HF renumbers the remaining added tokens (it
    ignores the ids written in the JSON), so ids are mapped back to the full tokenizer's through their text."""

    def __init__(self, tok, full, kept):
        self.tok, self.full = tok, full
        self.map = {tok.token_to_id(a['content']): full.token_to_id(a['content']) for a in kept}

    def encode(self, text, add_special_tokens=False):
        enc = self.tok.encode(text, add_special_tokens=add_special_tokens)

        class E:
            ids = [self.map.get(i, i) for i in enc.ids]
        return E

    def decode(self, ids, skip_special_tokens=False):
        return self.full.decode(ids, skip_special_tokens=skip_special_tokens)


def hf_variants(tok_json):
    """(tokenizer with every added token, tokenizer without the special ones) from a tokenizer JSON dict."""
    full = Tokenizer.from_str(json.dumps(tok_json))
    plain = dict(tok_json)
    plain['added_tokens'] = [a for a in tok_json.get('added_tokens', []) if not a.get('special')]
    no_special = Remapped(Tokenizer.from_str(json.dumps(plain)), full, plain['added_tokens'])
    return full, no_special


def encode(tok, data):
    return tok.encode(data.decode('utf-8', errors='replace'), add_special_tokens=False).ids


def ids_tail(ids):
    return (' ' + ' '.join(map(str, ids))) if len(ids) <= FULL_IDS_MAX else ''


def write_expect(path, full, no_special, corpora, adv):
    rng = random.Random(SEED)
    lines = []
    for rel, data in corpora:
        ids = encode(no_special, data)
        text = data.decode('utf-8', errors='replace')
        rt = int(no_special.decode(ids, skip_special_tokens=False) == text)
        lines.append('file %s %d %s %d' % (rel, len(ids), fnv64(ids), rt))
    for _ in range(N_SLICES):
        rel, data = corpora[rng.randrange(len(corpora))]
        off = rng.randrange(len(data))
        ln = min(rng.choice([1, 2, 3, 7, 16, 50, 200, 1000, 4000]) + rng.randrange(64), len(data) - off)
        ids = encode(no_special, data[off:off + ln])
        lines.append('slice %s %d %d %d %s%s' % (rel, off, ln, len(ids), fnv64(ids), ids_tail(ids)))
    for i, data in enumerate(adv):
        for special, tok in ((0, no_special), (1, full)):
            ids = encode(tok, data)
            dec = tok.decode(ids, skip_special_tokens=False).encode('utf-8')
            lines.append('adv %d %d %d %s %s%s' % (i, special, len(ids), fnv64(ids), fnv64_bytes(dec), ids_tail(ids)))
    for block in range(0x110000 // 4096):
        ids = encode(no_special, sweep_text(block))
        lines.append('sweep %d %d %s' % (block, len(ids), fnv64(ids)))
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('wrote', path, len(lines), 'lines')


def copy_corpora(src):
    out = []
    dst_root = os.path.join(FIX, 'corpora')
    for sub in sorted(os.listdir(src)):
        d = os.path.join(src, sub)
        if not os.path.isdir(d):
            continue
        os.makedirs(os.path.join(dst_root, sub), exist_ok=True)
        for name in sorted(os.listdir(d)):
            if not name.endswith('.txt'):
                continue
            data = open(os.path.join(d, name), 'rb').read()
            rel = sub + '/' + name
            dst = os.path.join(dst_root, rel + '.zst')
            if not os.path.exists(dst):
                subprocess.run(['zstd', '-q', '-19', '-f', os.path.join(d, name), '-o', dst], check=True)
            out.append((rel, data))
    return out


def gguf_hf_tokenizer(gguf_path):
    """A HF tokenizer JSON built from the GGUF's vocab and merges, pre-tokenizer by tokenizer.ggml.pre."""
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)

    def field(name):
        return r.fields[name]

    def strs(name):
        f = field(name)
        return [bytes(f.parts[i]).decode('utf-8') for i in f.data]

    tokens = strs('tokenizer.ggml.tokens')
    merges = strs('tokenizer.ggml.merges')
    f = field('tokenizer.ggml.token_type')
    types = [int(f.parts[i][0]) for i in f.data]
    pre = bytes(field('tokenizer.ggml.pre').parts[-1]).decode()
    assert pre == 'smollm', 'this script knows the smollm pre-tokenizer; got ' + pre
    added = [{'id': i, 'content': t, 'single_word': False, 'lstrip': False, 'rstrip': False, 'normalized': False,
              'special': ty == 3} for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)]
    return {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added, 'normalizer': None,
        'pre_tokenizer': {'type': 'Sequence', 'pretokenizers': [
            {'type': 'Digits', 'individual_digits': True},
            {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}]},
        'post_processor': None,
        'decoder': {'type': 'ByteLevel', 'add_prefix_space': True, 'trim_offsets': True, 'use_regex': True},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                  'vocab': {t: i for i, t in enumerate(tokens)}, 'merges': [m.split(' ', 1) for m in merges]},
    }


QWEN_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def added(content, special=False, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {'id': 0, 'content': content, 'single_word': single_word, 'lstrip': lstrip, 'rstrip': rstrip,
            'normalized': (not special) if normalized is None else normalized, 'special': special}


def bytelevel(prefix=False, regex=False):
    return {'type': 'ByteLevel', 'add_prefix_space': prefix, 'trim_offsets': False, 'use_regex': regex}


def split(pattern, behavior='Isolated', invert=False, kind='Regex'):
    return {'type': 'Split', 'pattern': {kind: pattern}, 'behavior': behavior, 'invert': invert}


def variants(corpora):
    """Small tokenizers (a 600-token byte-level BPE trained on Moby-Dick) exercising what Qwen3 does not:
    other pre-tokenizers and split behaviours, NFKC, add_prefix_space, ignore_merges, unk/byte_fallback and
    every added-token flag."""
    from tokenizers import models, pre_tokenizers, trainers
    moby = dict(corpora)['moby-dick/moby-dick.txt'].decode('utf-8')
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator([moby[:300000]], trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    base = json.loads(tk.to_str())
    base['decoder'] = bytelevel()
    base['post_processor'] = None
    toks = [added('<|special|>', special=True), added('<s>', special=True), added('[tool]'),
            added('ﬁx', normalized=True), added(' lsx', lstrip=True, special=True), added('rsx ', rstrip=True),
            added('word', single_word=True), added('  both  ', lstrip=True, rstrip=True),
            added('Ahab', normalized=False), added('whale', normalized=True, single_word=True)]
    out = {}

    def make(name, pre, normalizer=None, model=None, added_tokens=toks):
        j = json.loads(json.dumps(base))
        j['pre_tokenizer'] = pre
        j['normalizer'] = normalizer
        j['added_tokens'] = added_tokens
        if model:
            j['model'].update(model)
        out[name] = j

    make('qwen_like', {'type': 'Sequence', 'pretokenizers': [split(QWEN_REGEX), bytelevel()]}, {'type': 'NFC'})
    make('gpt2_prefix', bytelevel(prefix=True, regex=True))
    make('digits', {'type': 'Sequence', 'pretokenizers': [{'type': 'Digits', 'individual_digits': False},
                                                           bytelevel(regex=True)]},
         {'type': 'Sequence', 'normalizers': [{'type': 'NFKC'}]})
    make('llama3_ignore_merges', {'type': 'Sequence', 'pretokenizers': [split(LLAMA3_REGEX), bytelevel()]},
         model={'ignore_merges': True})
    make('behaviours', {'type': 'Sequence', 'pretokenizers': [
        split(' ', 'MergedWithPrevious', kind='String'), split('[aeiou]', 'MergedWithNext'),
        split('\\d', 'Contiguous'), split(',', 'Removed'), split('[A-Z]+', 'Isolated', invert=True),
        bytelevel()]}, {'type': 'NFD'})
    # a vocabulary without 'z', 'q' and 'Q': unknown bytes become a fused <unk>, or <0x..> with byte_fallback
    for name, model in (('unk_fused', {'unk_token': '<unk>', 'fuse_unk': True}),
                        ('byte_fallback', {'byte_fallback': True})):
        j = json.loads(json.dumps(base))
        kept = sorted((i, t) for t, i in j['model']['vocab'].items() if not any(c in t for c in 'zqQ'))
        vocab = {t: k for k, (_, t) in enumerate(kept)}  # renumbered: no holes for added ids to collide with
        merges = [m for m in j['model']['merges'] if not any(c in ''.join(m) for c in 'zqQ')]
        n = max(vocab.values()) + 1
        vocab['<unk>'] = n
        for b in b'zq':
            vocab['<0x%02X>' % b] = n + 1 + (b & 1)
        j['model'].update(model, vocab=vocab, merges=merges)
        j['pre_tokenizer'] = bytelevel(regex=True)
        j['normalizer'] = None
        j['added_tokens'] = toks
        out[name] = j
    return out


def write_variants(corpora, adv):
    d = os.path.join(FIX, 'variants')
    os.makedirs(d, exist_ok=True)
    rng = random.Random(SEED + 1)
    slices = []
    for _ in range(150):
        rel, data = corpora[rng.randrange(len(corpora))]
        off = rng.randrange(len(data))
        slices.append((rel, off, min(rng.randrange(1, 3000), len(data) - off)))
    for name, j in variants(corpora).items():
        with open(os.path.join(d, name + '.json'), 'w') as f:
            json.dump(j, f, ensure_ascii=False)
        full, no_special = hf_variants(j)
        lines = []
        for rel, off, ln in slices:
            ids = encode(no_special, dict(corpora)[rel][off:off + ln])
            lines.append('slice %s %d %d %d %s%s' % (rel, off, ln, len(ids), fnv64(ids), ids_tail(ids)))
        for i, data in enumerate(adv):
            for special, tok in ((0, no_special), (1, full)):
                ids = encode(tok, data)
                dec = tok.decode(ids, skip_special_tokens=False).encode('utf-8')
                lines.append('adv %d %d %d %s %s%s' % (i, special, len(ids), fnv64(ids), fnv64_bytes(dec), ids_tail(ids)))
        with open(os.path.join(d, name + '.expect'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        print('wrote variant', name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--corpora', default='data/corpora')
    ap.add_argument('--gguf', default='models/SmolLM2-135M-Instruct.Q4_1.gguf')
    ap.add_argument('--only', choices=['variants'], help='write only these fixtures')
    args = ap.parse_args()
    corpora = copy_corpora(args.corpora)
    adv = adversarial()
    with open(os.path.join(FIX, 'adversarial.hex'), 'w') as f:
        f.write(''.join(d.hex() + '\n' for d in adv))
    write_variants(corpora, adv)
    if args.only == 'variants':
        return
    qwen = json.load(open(os.path.join(FIX, 'qwen3', 'tokenizer.json')))
    write_expect(os.path.join(FIX, 'qwen3.expect'), *hf_variants(qwen), corpora, adv)
    if os.path.exists(args.gguf):
        smol = gguf_hf_tokenizer(args.gguf)
        write_expect(os.path.join(FIX, 'smollm2.expect'), *hf_variants(smol), corpora, adv)
    else:
        print('no GGUF at', args.gguf, '- smollm2.expect not written', file=sys.stderr)


if __name__ == '__main__':
    main()
