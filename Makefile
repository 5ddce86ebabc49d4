# msa build.
#   make            build/msa (the CLI) and build/libmsa.a (the library)
#   make test       every test (unit, CLI, ASan+UBSan, bounded fuzzing); ends with "N passed, N failed"
#   make demo       install the default model and run `msa demo`
#   make asan       the same tests built with -fsanitize=address,undefined into build-asan/
#   make fuzz       libFuzzer targets (clang) into build-fuzz/; run with `make fuzz-run FUZZ_SECONDS=60`
#   make tsan       the concurrency tests under ThreadSanitizer into build-tsan/
#   make install PREFIX=DIR   build/msa to DIR/bin/msa, libmsa.a to DIR/lib, msa.h to DIR/include, docs/cli.md
#                   to DIR/share/doc/msa (PREFIX defaults to /usr/local)
#   CC=clang make   any target with clang instead of gcc
#   make CUDA=1     the same with the CUDA backend (src/backend/cuda/*.cu, nvcc, sm_90a; cuBLASLt and the CUDA
#                   runtime linked dynamically) into build-cuda/; `make CUDA=1 test-gpu` runs tests/gpu/run.sh
# Every source file under src/ is part of the library; tools/msa/*.c make the CLI; tests/unit/test_*.c are
# one test program each; tests/fuzz/fuzz_*.c one fuzz target each.

ifeq ($(CUDA),1)
BUILD    ?= build-cuda
endif
BUILD    ?= build
SAN      ?=
OPT      ?= -O2
CC       ?= cc
FUZZ_SECONDS ?= 10

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS   := -std=c11 $(OPT) -g -pthread -fno-strict-aliasing $(WARN) $(EXTRA_CFLAGS)
LDLIBS   := -ljansson -lpcre2-8 -lxxhash -lzstd -lutf8proc -ledit -lpthread -lm

ifeq ($(SAN),asan)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),tsan)
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
ifeq ($(SAN),fuzz)
CC       = clang
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -DMSA_FUZZING
LDFLAGS += -fsanitize=fuzzer,address,undefined
endif

LIB_SRC  := $(shell find src -name '*.c' | sort)
TOOL_SRC := $(sort $(wildcard tools/msa/*.c))
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# CUDA=1: the .cu files replace the plain build's CUDA stub (src/backend/cuda_none.c).
ifeq ($(CUDA),1)
NVCC      ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
CUDA_ARCH ?= sm_90a
NVCCFLAGS := -O3 -std=c++17 -arch=$(CUDA_ARCH) -lineinfo -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter
CUDA_SRC  := $(sort $(wildcard src/backend/cuda/*.cu))
LIB_SRC   := $(filter-out src/backend/cuda_none.c,$(LIB_SRC))
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart -lstdc++
endif
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/%.o)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
GPU_TEST_SRC := $(sort $(wildcard tests/gpu/test_*.c))
GPU_TEST_BIN := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests-gpu/%)

.PHONY: all lib test test-fast asan tsan fuzz fuzz-run demo clean deps model install
all: $(BUILD)/msa

lib: $(BUILD)/libmsa.a

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(CPPFLAGS) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libmsa.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/msa: $(TOOL_OBJ) $(BUILD)/libmsa.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libmsa.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/test.h $(BUILD)/libmsa.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmsa.a $(LDLIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libmsa.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmsa.a $(LDLIBS)

$(BUILD)/tests-gpu/%: tests/gpu/%.c tests/unit/test.h $(BUILD)/libmsa.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmsa.a $(LDLIBS)

# The GPU tests (tests/gpu/): built by any build, meaningful with CUDA=1 on a machine with a GPU.
tests-gpu: $(BUILD)/msa $(GPU_TEST_BIN)
.PHONY: tests-gpu

# What the GPU machine runs: builds with CUDA=1 and runs tests/gpu/run.sh (ends "N passed, N failed").
test-gpu:
	bash tests/gpu/run.sh
.PHONY: test-gpu

# The Qwen3 tokenizer fixture is committed zstd-compressed (11 MB as JSON); tests read the JSON.
QWEN3_TOKENIZER := tests/fixtures/tokenizer/qwen3/tokenizer.json
$(QWEN3_TOKENIZER): $(QWEN3_TOKENIZER).zst
	zstd -q -d -f $< -o $@

tests-bin: $(BUILD)/msa $(TEST_BIN) $(QWEN3_TOKENIZER)
.PHONY: tests-bin

deps:
	bash scripts/setup-deps.sh

model:
	bash scripts/install-default-model.sh

# The synthetic Qwen3-4B bf16 GGUF (8 GB of random weights in the real shapes) that scripts/bench-vs-llamacpp.sh
# and docs/perf.md measure with; never committed. QWEN3_4B_GGUF overrides where it goes.
QWEN3_4B_GGUF ?= models/qwen3-4b-synth-bf16.gguf
model-qwen3-4b: $(QWEN3_4B_GGUF)
$(QWEN3_4B_GGUF): $(QWEN3_TOKENIZER)
	@mkdir -p $(dir $@)
	python3 tests/ref/make_synthetic_gguf.py --out $@.tmp --tokenizer-dir $(dir $(QWEN3_TOKENIZER))
	mv $@.tmp $@
.PHONY: model-qwen3-4b

# The small random Hugging Face / GGUF checkpoints of the backbone tests (tests/fixtures/hf/README.md).
checkpoints: deps
	bash scripts/make-test-checkpoints.sh
.PHONY: checkpoints

# The README's test command: dependencies, default model, plain tests, sanitizer tests, bounded fuzzing.
test: deps model checkpoints
	bash tests/run.sh

# Only the plain build's tests, for quick iteration.
test-fast:
	$(MAKE) tests-bin
	MSA_TEST_SUITES=plain bash tests/run.sh

# -O2, not -O1: the model's kernels dominate the asan suite (CI's longest), and at -O1 they ran half as fast
# (read-mode encoding of 1,116 tokens: 116 s against 56 s under ASan; 4.7 s without)
asan:
	$(MAKE) BUILD=build-asan SAN=asan OPT=-O2 tests-bin

tsan:
	$(MAKE) BUILD=build-tsan SAN=tsan OPT=-O1 tests-bin

fuzz:
	$(MAKE) BUILD=build-fuzz SAN=fuzz OPT=-O1 fuzz-bin

fuzz-bin: $(FUZZ_BIN) $(QWEN3_TOKENIZER)
.PHONY: fuzz-bin

fuzz-run: fuzz
	MSA_TEST_SUITES=fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/run.sh

demo: deps model all
	$(BUILD)/msa demo

# The bank crash loop and the power-loss test for longer than CI does (tests/unit/test_bank_crash.c,
# test_bank_powerloss.c): MSA_CRASH_ITERS=5000 kills and MSA_POWERLOSS_ROUNDS=600 rounds by default.
bank-crash-long: tests-bin
	MSA_CRASH_ITERS=$${MSA_CRASH_ITERS:-5000} $(BUILD)/tests/test_bank_crash
	MSA_POWERLOSS_ROUNDS=$${MSA_POWERLOSS_ROUNDS:-600} $(BUILD)/tests/test_bank_powerloss
.PHONY: bank-crash-long

PREFIX ?= /usr/local
install: $(BUILD)/msa $(BUILD)/libmsa.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/doc/msa
	install -m 755 $(BUILD)/msa $(DESTDIR)$(PREFIX)/bin/msa
	install -m 644 $(BUILD)/libmsa.a $(DESTDIR)$(PREFIX)/lib/libmsa.a
	install -m 644 include/msa.h $(DESTDIR)$(PREFIX)/include/msa.h
	install -m 644 docs/cli.md $(DESTDIR)$(PREFIX)/share/doc/msa/cli.md

clean:
	rm -rf build build-asan build-tsan build-fuzz build-cuda

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d)
