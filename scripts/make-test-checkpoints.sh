#!/usr/bin/env bash
# make-test-checkpoints.sh — (re)generates the small random checkpoints the backbone tests read, under
# tests/fixtures/generated/ (ignored by git; ~350 MB): the Hugging Face directories of
# tests/ref/make_hf_checkpoints.py and their GGUF conversions (tests/ref/convert_gguf.py). Every file's
# sha256 must equal the committed manifests (tests/fixtures/hf/*.sha256): the generation is deterministic,
# so a mismatch means a generator changed or is not deterministic on this machine, and the script fails.
# Does nothing when the generated files are already there and match. Needs python3 with numpy, safetensors
# and gguf (scripts/setup-deps.sh installs them).  Usage: bash scripts/make-test-checkpoints.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
gen=tests/fixtures/generated
man=tests/fixtures/hf
up_to_date() { # dir, manifest
    [ -d "$1" ] && (cd "$1" && sha256sum --quiet --status -c "$OLDPWD/$2") 2>/dev/null
}
force=${1:-}
if [ "$force" != "--force" ] && up_to_date "$gen/hf" "$man/checkpoints.sha256"; then
    hf_ok=1
else
    hf_ok=0
fi
if [ $hf_ok -eq 0 ]; then
    echo "make-test-checkpoints: generating $gen/hf" >&2
    python3 tests/ref/make_hf_checkpoints.py --out "$gen/hf" --check >/dev/null
fi
if [ -f tests/ref/convert_gguf.py ] && [ -f "$man/gguf.sha256" ]; then
    if [ "$force" = "--force" ] || [ $hf_ok -eq 0 ] || ! up_to_date "$gen/gguf" "$man/gguf.sha256"; then
        echo "make-test-checkpoints: converting to $gen/gguf" >&2
        python3 tests/ref/convert_gguf.py --hf "$gen/hf" --out "$gen/gguf" --check >/dev/null
    fi
fi
