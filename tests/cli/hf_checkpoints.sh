#!/usr/bin/env bash
# hf_checkpoints.sh — the backbone tests' checkpoints regenerate bit-identically: runs
# scripts/make-test-checkpoints.sh when they are missing, then checks each Hugging Face directory and GGUF
# file against the sha256 committed in tests/fixtures/hf/. One PASS/FAIL line per checkpoint.
set -u
cd "$(dirname "$0")/../.."
man=tests/fixtures/hf
gen=tests/fixtures/generated
if ! python3 -c 'import numpy, safetensors, gguf' 2>/dev/null; then
    echo "SKIP hf_checkpoints (python3 lacks numpy/safetensors/gguf: run scripts/setup-deps.sh)"
    exit 0
fi
log=$(mktemp); trap 'rm -f "$log"' EXIT
if [ ! -d "$gen/hf" ] || [ ! -d "$gen/gguf" ]; then # `make test` made them already; test-fast may not have
    if bash scripts/make-test-checkpoints.sh >"$log" 2>&1; then
        echo "PASS make_test_checkpoints"
    else
        sed 's/^/  /' "$log"; echo "FAIL make_test_checkpoints"
    fi
fi
check() { # label, dir, manifest, name prefix
    if (cd "$2" && grep -F "  $4" "$OLDPWD/$3" | sha256sum --quiet -c -) >"$log" 2>&1; then
        echo "PASS sha256 $1"
    else
        sed 's/^/  /' "$log"; echo "FAIL sha256 $1"
    fi
}
for name in $(cut -d' ' -f3 "$man/checkpoints.sha256" | cut -d/ -f1 | sort -u); do
    check "hf/$name" "$gen/hf" "$man/checkpoints.sha256" "$name/"
done
made_with=$(python3 -c "import json; print(json.load(open('$man/gguf.json'))['gguf_package_version'])")
have=$(python3 -c "import importlib.metadata as m; print(m.version('gguf'))")
for f in $(cut -d' ' -f3 "$man/gguf.sha256"); do
    if [ "$made_with" = "$have" ]; then
        check "gguf/$f" "$gen/gguf" "$man/gguf.sha256" "$f"
    else
        echo "SKIP sha256 gguf/$f (gguf package $have here, manifest made with $made_with)"
    fi
done
