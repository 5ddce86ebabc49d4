#!/usr/bin/env bash
# build-llamacpp.sh — the llama.cpp peer of `msa bench --peer auto` and scripts/bench-vs-llamacpp.sh: builds
# llama-bench, outside this repository, into $LLAMA_CPP_DIR/build/bin/llama-bench, which is where msa looks for
# it (tools/msa/bench_peer.h). Nothing in msa links against llama.cpp.
#
#   scripts/build-llamacpp.sh        env: LLAMA_CPP_DIR (default ${XDG_CACHE_HOME:-~/.cache}/msa/llama.cpp),
#                                         LLAMA_CPP_PYPI_VERSION (default 0.3.36, which vendors llama.cpp 0c1e57098),
#                                         LLAMA_CPP_CMAKE_FLAGS (appended), JOBS (default nproc)
#
# Source: an existing llama.cpp checkout in $LLAMA_CPP_DIR (CMakeLists.txt present) is built as it is; otherwise
# the llama.cpp that the llama-cpp-python source package vendors (a PyPI download, the one registry this
# project's machines reach) is unpacked there. Built for this CPU (GGML_NATIVE=ON), as a user would. On a CPU
# with AMX, llama.cpp 0c1e57098's native build dies with SIGILL in its AMX Q4_1 path (docs/perf.md); there pass
# LLAMA_CPP_CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON ..."
# as docs/perf.md lists.
set -euo pipefail
dir=${LLAMA_CPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msa/llama.cpp}
ver=${LLAMA_CPP_PYPI_VERSION:-0.3.36}
jobs=${JOBS:-$(nproc)}
if [ ! -f "$dir/CMakeLists.txt" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$ver"
    tar -xzf "$tmp"/llama_cpp_python-"$ver".tar.gz -C "$tmp"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$tmp/llama_cpp_python-$ver/vendor/llama.cpp" "$dir"
fi
cd "$dir"
cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMA_CPP_CMAKE_FLAGS:-}
cmake --build build -j"$jobs" --target llama-bench
echo "llama-bench: $dir/build/bin/llama-bench"
