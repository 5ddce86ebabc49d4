#!/usr/bin/env bash
# setup-deps.sh — installs the build and test dependencies when missing: Debian -dev packages (apt-get),
# and the Python packages the test fixtures' checks use (pip). Safe to run again; does nothing when all is there.
set -euo pipefail
pkgs=(build-essential clang libclang-rt-14-dev libjansson-dev libpcre2-dev libxxhash-dev libzstd-dev
      libutf8proc-dev libedit-dev python3 gnuplot-nox zstd tmux)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "setup-deps: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# Python packages for the test fixtures' generators (scripts/make-test-checkpoints.sh): numpy, safetensors,
# gguf, tokenizers. Installed with pip only when one of them cannot be imported.
if ! python3 -c 'import numpy, safetensors, gguf, tokenizers' >/dev/null 2>&1; then
    echo "setup-deps: installing python packages numpy safetensors gguf tokenizers"
    python3 -m pip install --quiet numpy safetensors gguf tokenizers \
        || python3 -m pip install --quiet --break-system-packages numpy safetensors gguf tokenizers
fi
