#!/usr/bin/env bash
# gpu-slim.sh — shrink what the lent GPU machine receives to the few files a GPU job reads, so the default model
# travels in two calls instead of four (tests/gpu/README.md). The device tool copies the tracked and the
# untracked-but-not-ignored files beside the carried paths, 64 MiB in all, and the whole tree is ~38 MiB; `on`
# makes only the listed files tracked (in the index; the files on disk and HEAD are untouched) and ignores the
# rest, `off` puts the index and .git/info/exclude back exactly as they were. Commit nothing between the two.
#   bash scripts/gpu-slim.sh on [FILE...]   (default: what scripts/gpu-niah.sh and scripts/gpu-qa.sh read)
#   bash scripts/gpu-slim.sh off
set -euo pipefail
cd "$(dirname "$0")/.."
git_dir=$(git rev-parse --git-dir)
bak=$git_dir/msa-slim
case "${1:-}" in
on)
    shift
    [ -e "$bak" ] && { echo "gpu-slim: already on (run 'off' first)" >&2; exit 1; }
    git diff --cached --quiet || { echo "gpu-slim: staged changes would be lost; commit or unstage them" >&2; exit 1; }
    files=("$@")
    [ ${#files[@]} -gt 0 ] || files=(scripts/gpu-env.sh scripts/gpu-niah.sh scripts/gpu-qa.sh scripts/eval_baselines.py
        data/corpora/moby-dick/moby-dick.txt data/routers/smollm2-135m.safetensors data/retrieval/questions.jsonl
        data/retrieval/passages-1k.jsonl data/retrieval/passages-10k.jsonl)
    mkdir "$bak"
    cp "$git_dir/index" "$bak/index"
    touch "$git_dir/info/exclude"
    cp "$git_dir/info/exclude" "$bak/exclude"
    git rm -r -q --cached .
    git add -f -- "${files[@]}"
    echo '/*' >> "$git_dir/info/exclude"
    echo "gpu-slim: on, $(git ls-files | wc -l) files, $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes" >&2
    ;;
off)
    [ -d "$bak" ] || { echo "gpu-slim: not on" >&2; exit 1; }
    cp "$bak/index" "$git_dir/index"
    cp "$bak/exclude" "$git_dir/info/exclude"
    rm -r "$bak"
    echo "gpu-slim: off" >&2
    ;;
*)
    sed -n '2,8p' "$0" >&2
    exit 64
    ;;
esac
