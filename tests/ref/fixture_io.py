"""fixture_io.py — reads and writes one fixture directory: meta.json + raw little-endian .bin arrays.

meta.json's "files" maps each array's name to {"file", "dtype" ("float32"|"int32"), "shape"}; the .bin file
is the array in C order with no header (tests/fixtures/hf/README.md lists every array).
"""
import json
import os

import numpy as np

SUFFIX = {"float32": "f32", "int32": "i32"}


def write_fixture(d, arrays, meta):
    os.makedirs(d, exist_ok=True)
    files = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        dt = "int32" if np.issubdtype(arr.dtype, np.integer) else "float32"
        fn = f"{name}.{SUFFIX[dt]}.bin"
        np.ascontiguousarray(arr.astype("<i4" if dt == "int32" else "<f4")).tofile(os.path.join(d, fn))
        files[name] = {"file": fn, "dtype": dt, "shape": list(arr.shape)}
    meta = dict(meta)
    meta["files"] = files
    with open(os.path.join(d, "meta.json"), "w") as f:
        f.write(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def read_fixture(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    out = {"meta": meta}
    for name, info in meta["files"].items():
        dt = "<i4" if info["dtype"] == "int32" else "<f4"
        out[name] = np.fromfile(os.path.join(d, info["file"]), dtype=dt).reshape(info["shape"])
    return out
