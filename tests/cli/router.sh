#!/usr/bin/env bash
# router.sh — read mode with `--router FILE` on the small synthetic checkpoint (made as a plain Qwen3 model
# plus a router file by tests/ref/make_router_fixture.py): the routing scores of `msa ask --mode read
# --router --json` equal the independent numpy reference committed in tests/fixtures/msa/router_expect.json
# (bf16 bank tolerance); a bank built with the router refuses another router or none (exit 65); hostile router
# files (missing, wrong shape, wrong layer, q without k, not safetensors) fail with one clear line (65/66).
# Needs python3 + numpy for the checkpoint (SKIP without numpy; a generator failure with it is a FAIL).
set -u
. tests/cli/lib/common.sh
router_fixture router || { finish; exit 0; }

if $MSA bank create "$tmp/bank" -m "$m" --mode read --pooling "$P" --router "$rf" >/dev/null 2>&1 &&
   $MSA bank add "$tmp/bank" -m "$m" --router "$rf" --jsonl "$tmp/docs.jsonl" >/dev/null 2>&1; then
    ok router_bank_build; else no router_bank_build; fi
$MSA ask -m "$m" --bank "$tmp/bank" --router "$rf" -q "$q" --json -n 1 --docs 4 >"$tmp/a1" 2>"$tmp/e1"
if python3 - "$tmp/a1" "$exp" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["rounds"][0]["routing"]
ref = json.load(open(sys.argv[2]))["routing"]
assert [r["layer"] for r in got] == [r["layer"] for r in ref], (got, ref)
for g, r in zip(got, ref):
    assert [x["id"] for x in g["docs"]] == r["docs"], (g, r)
    for a, b in zip([x["score"] for x in g["docs"]], r["scores"]):
        assert abs(a - b) <= 2e-3 + 1e-2 * abs(b), (g, r)   # routing keys are stored as bf16
PY
then ok router_scores_match_numpy_reference; else no router_scores_match_numpy_reference; cat "$tmp/a1" "$tmp/e1"; fi

# the identity router routes differently on the same model (the router file is really used)
$MSA bank create "$tmp/bank_id" -m "$m" --mode read --pooling "$P" >/dev/null 2>&1
$MSA bank add "$tmp/bank_id" -m "$m" --jsonl "$tmp/docs.jsonl" >/dev/null 2>&1
$MSA ask -m "$m" --bank "$tmp/bank_id" -q "$q" --json -n 1 --docs 4 >"$tmp/a2" 2>/dev/null
if python3 -c 'import json,sys
a = json.load(open(sys.argv[1]))["rounds"][0]["routing"]; b = json.load(open(sys.argv[2]))["rounds"][0]["routing"]
assert [x["layer"] for x in b] == [2, 3] and a != b' "$tmp/a1" "$tmp/a2"; then ok identity_router_differs; else no identity_router_differs; fi

# a bank made with the router refuses to be asked without it, and a bank made without refuses the router
$MSA ask -m "$m" --bank "$tmp/bank" -q "$q" -n 1 >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && grep -q "another model" "$tmp/e" && ok router_bank_refuses_no_router || { no router_bank_refuses_no_router; cat "$tmp/e"; }
$MSA ask -m "$m" --bank "$tmp/bank_id" --router "$rf" -q "$q" -n 1 >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && ok identity_bank_refuses_router || { no identity_bank_refuses_router; cat "$tmp/e"; }
# another router (same shapes, other values) is refused too
python3 - "$rf" "$tmp/other.safetensors" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read()); b[-4:] = b"\x00\x00\x80\x3f"   # last element := 1.0
open(sys.argv[2], "wb").write(bytes(b))
PY
$MSA ask -m "$m" --bank "$tmp/bank" --router "$tmp/other.safetensors" -q "$q" -n 1 >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -eq 65 ] && ok router_bank_refuses_other_router || { no router_bank_refuses_other_router; cat "$tmp/e"; }

# hostile router files
bad() { # name, expected rc, file
    $MSA ask -m "$m" --bank "$tmp/bank" --router "$3" -q "$q" -n 1 >/dev/null 2>"$tmp/e"; local rc=$?
    if [ $rc -eq "$2" ] && [ "$(wc -l <"$tmp/e")" -ge 1 ]; then ok "$1"; else no "$1 (rc $rc)"; cat "$tmp/e"; fi
}
bad router_missing_file 66 "$tmp/nope.safetensors"
printf 'not a safetensors file at all' >"$tmp/junk.safetensors"
bad router_not_safetensors 65 "$tmp/junk.safetensors"
python3 - "$tmp" <<'PY'
import json, struct, sys
import numpy as np
def st(path, items):
    hdr, off, blob = {}, 0, b""
    for k, a in items:
        b = np.asarray(a, "<f4").tobytes(); hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blob += b
    h = json.dumps(hdr).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blob)
d = sys.argv[1]
q, k = np.zeros((64, 64)), np.zeros((32, 64))
st(d + "/shape.safetensors", [("model.layers.2.self_attn.router_q_proj.weight", np.zeros((64, 32))),
                              ("model.layers.2.self_attn.router_k_proj.weight", k)])
st(d + "/layer.safetensors", [("model.layers.9.self_attn.router_q_proj.weight", q),
                              ("model.layers.9.self_attn.router_k_proj.weight", k)])
st(d + "/qonly.safetensors", [("model.layers.2.self_attn.router_q_proj.weight", q)])
st(d + "/name.safetensors", [("model.layers.2.self_attn.q_proj.weight", q)])
PY
bad router_wrong_shape 65 "$tmp/shape.safetensors"
bad router_layer_outside_model 65 "$tmp/layer.safetensors"
bad router_q_without_k 65 "$tmp/qonly.safetensors"
bad router_unknown_tensor 65 "$tmp/name.safetensors"
# an MSA checkpoint has its own router: --router is refused (usage of the wrong model kind)
$MSA ask -m "$tmp/ck" --bank "$tmp/bank" --router "$rf" -q "$q" -n 1 >/dev/null 2>"$tmp/e"; rc=$?
[ $rc -ne 0 ] && grep -q "own trained router" "$tmp/e" && ok router_refused_for_msa_checkpoint || { no router_refused_for_msa_checkpoint; cat "$tmp/e"; }
finish
