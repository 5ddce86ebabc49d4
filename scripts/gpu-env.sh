# gpu-env.sh — sourced (from the repository root) by the scripts that run on a GPU machine without the -dev
# packages (scripts/gpu-niah.sh, scripts/gpu-qa.sh, tests/gpu/lent-run.sh, tests/gpu/lent-model-run.sh): the
# prebuilt build-cuda/ and its libraries (scripts/gpu-pack.sh), the default model and its shipped router, and
# join_default_model for a model that travelled in parts (tests/gpu/README.md).
export LD_LIBRARY_PATH=$PWD/build-cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
MSA=${MSA:-build-cuda/msa}
M=${M:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
R=${R:-data/routers/smollm2-135m.safetensors}

# $M from $PARTS/part-a? (default models/; /dev/shm/parts when each call copied its part there) when it is
# missing, checked against its sha256 (shared/data/README.md); returns 1 and leaves no $M when the result is not
# the model (parts missing or corrupt).
join_default_model() {
    local parts=${PARTS:-models}
    if [ ! -f "$M" ] && ls "$parts"/part-a? >/dev/null 2>&1; then cat "$parts"/part-a? > "$M"; fi
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $M" | sha256sum --quiet -c 2>/dev/null &&
        return 0
    rm -f "$M"
    return 1
}
