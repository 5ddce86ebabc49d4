#!/usr/bin/env bash
# gpu-pack.sh — build the CUDA build here for a GPU machine that cannot build it (no Debian -dev packages
# there, no network): build-cuda/ with msa, the GPU tests and test_backbone, plus build-cuda/lib/ holding the
# non-CUDA shared libraries they need (jansson, pcre2, xxhash, zstd, utf8proc); the CUDA runtime and cuBLASLt
# come from the GPU machine's toolkit. tests/gpu/run.sh then runs with MSA_GPU_PREBUILT=1 (it sets
# LD_LIBRARY_PATH itself). Carry build-cuda (and the generated checkpoints or the gguf wheel) to the machine:
# tests/gpu/README.md has the whole procedure.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s -j"$(nproc)" CUDA=1 all tests-gpu build-cuda/tests/test_backbone build-cuda/tests/test_device
mkdir -p build-cuda/lib
for lib in $(ldd build-cuda/msa | awk '/=> \// {print $3}' | grep -E 'jansson|pcre2|xxhash|zstd|utf8proc'); do
    cp -L "$lib" build-cuda/lib/
done
# the debug sections are two thirds of each binary and the 64 MiB per call is tight (CUDA line info stays)
strip --strip-debug build-cuda/msa build-cuda/tests-gpu/* build-cuda/tests/test_backbone build-cuda/tests/test_device
du -sh build-cuda/msa build-cuda/tests-gpu build-cuda/lib | sed 's/^/gpu-pack: /' >&2
