# olmoe-routing: `make` builds every command into bin/ (the CUDA engine too when a
# GPU is present, or with CUDA=1), `make test` runs the CPU suite, `make asan-test`
# the same under AddressSanitizer/UBSan, `make test-gpu` the GPU checks, `make demo`
# the main job on the bundled model, `make install PREFIX=...` binaries, man
# pages, the bundled model and the Brown test split (PREFIX/share/olmoe-routing/).
# `make demo` and `make test` first check the Debian packages (.ci/install-deps).
#
# Layout: each directory is one layer and builds a static library from its .c
# files, plus one command per main_<name>.c (bin/olmoe-<name>). Layers, bottom
# up: common traces kde policy engine capture analyze plot (docs/DESIGN.md).

CC ?= cc
OPT ?= -O2
CFLAGS ?= -g $(OPT)
CSTD := -std=c17 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror
BUILD ?= build
BIN ?= bin
PREFIX ?= /usr/local
CUDA_ARCH ?= -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=sm_90
SANITIZE ?=

# ---- dependencies (Debian packages: see .ci/install-deps) ----
# demo and test check them before anything is compiled: as root the missing ones
# are installed; otherwise the apt-get line to run is printed and make stops here.
ifneq ($(filter demo test,$(MAKECMDGOALS)),)
ifneq ($(shell sh .ci/install-deps --quiet >&2 && echo ok),ok)
$(error missing Debian packages (above); nothing was compiled)
endif
endif
HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS_L := $(shell pkg-config --libs-only-L hdf5 2>/dev/null)
DEP_CFLAGS := $(HDF5_CFLAGS) $(shell pkg-config --cflags gsl jansson libpcre2-8 libutf8proc 2>/dev/null)
OPENBLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
# STATIC_DEPS=1 links GSL and utf8proc statically, so a binary built here runs
# on the GPU machine, which has HDF5, OpenBLAS, jansson, PCRE2 and xxhash but no
# GSL or utf8proc (a static OpenBLAS would make the binaries too big to carry).
ifeq ($(STATIC_DEPS),1)
DEP_LIBS := $(HDF5_LIBS_L) -lhdf5_hl -lhdf5 -Wl,-Bstatic -lgsl -lutf8proc -Wl,-Bdynamic \
            $(OPENBLAS_LIBS) -ljansson -lpcre2-8 -lxxhash -lm -lpthread
else
DEP_LIBS := $(HDF5_LIBS_L) -lhdf5_hl -lhdf5 -lgsl $(OPENBLAS_LIBS) -ljansson -lpcre2-8 \
            -lutf8proc -lxxhash -lm -lpthread
endif

ALL_CFLAGS = $(CSTD) $(WARN) $(CFLAGS) $(SANITIZE) $(DEP_CFLAGS) -MMD -MP

# The dependency rule, enforced: a directory compiles with the include paths of
# its own layer and the layers below it only, so an upward include fails to
# compile (tests/test_layers.sh checks the same on the sources, and that no
# file includes another directory's internal header). capture and analyze are
# siblings above the engine; plot sits above analyze. Tests see every layer.
INC_common := -Icommon
INC_traces := $(INC_common) -Itraces
INC_kde := $(INC_traces) -Ikde
INC_policy := $(INC_kde) -Ipolicy
INC_engine := $(INC_policy) -Iengine
INC_capture := $(INC_engine) -Icapture
INC_analyze := $(INC_engine) -Ianalyze
INC_plot := $(INC_analyze) -Iplot
INC_ALL := $(INC_engine) -Icapture -Ianalyze -Iplot
layer_inc = $(INC_$(firstword $(subst /, ,$(1))))

# ---- CUDA: built when a GPU can use it (nvidia-smi lists one, or /dev/nvidia0
# exists), or when asked (CUDA=1; make test-gpu asks); NO_CUDA=1 forces it off.
# nvcc on the PATH of a machine without a GPU is not enough: the CPU build there
# never waits for the CUDA code. ----
ifneq ($(filter test-gpu,$(MAKECMDGOALS)),)
CUDA := 1
endif
ifeq ($(origin CUDA),undefined)
CUDA := $(shell { nvidia-smi -L 2>/dev/null | grep -q '^GPU' || [ -e /dev/nvidia0 ]; } && echo 1)
endif
ifneq ($(NO_CUDA),)
NVCC :=
else
NVCC := $(if $(filter 1,$(CUDA)),$(shell command -v nvcc 2>/dev/null))
ifeq ($(CUDA)$(NVCC),1)
ifneq ($(origin CUDA),file)
$(error CUDA=1 but nvcc is not on the PATH)
endif
endif
endif
CU_SRC := $(if $(NVCC),$(wildcard engine/*.cu),)
ifneq ($(CU_SRC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCC_FLAGS ?= -O2 -g $(CUDA_ARCH) -std=c++17 -Xcompiler -Wall,-Wextra,-Werror \
              $(INC_engine) $(HDF5_CFLAGS)
ALL_CFLAGS += -DOLMOE_HAVE_CUDA -I$(CUDA_HOME)/include
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++ -ldl -lrt
endif

# ---- libraries and commands ----
# dir/main_NAME.c is the command olmoe-NAME (NAME without '_'); dir/main_NAME_*.c
# are more of its command code (its modes), linked into it only. Command code
# may exit; the libraries never do.
MAINS := $(wildcard */main_*.c)
cmd_of = $(word 1,$(subst _, ,$(patsubst main_%,%,$(basename $(notdir $(1))))))
CMD_MAINS := $(foreach f,$(MAINS),$(if $(findstring _,$(patsubst main_%,%,$(basename $(notdir $(f))))),,$(f)))
lib_src = $(filter-out $(MAINS),$(1))
COMMON_SRC := $(call lib_src,$(wildcard common/*.c))
TRACES_SRC := $(call lib_src,$(wildcard traces/*.c))
KDE_SRC := $(call lib_src,$(wildcard kde/*.c))
POLICY_SRC := $(call lib_src,$(wildcard policy/*.c))
ENGINE_SRC := $(call lib_src,$(wildcard engine/*.c))
CAPTURE_SRC := $(call lib_src,$(wildcard capture/*.c))
ANALYZE_SRC := $(call lib_src,$(wildcard analyze/*.c))
PLOT_SRC := $(call lib_src,$(wildcard plot/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
# link order: dependents first
LIBNAMES := plot analyze capture engine policy kde traces common
LIB_plot := $(PLOT_SRC)
LIB_analyze := $(ANALYZE_SRC)
LIB_capture := $(CAPTURE_SRC)
LIB_engine := $(ENGINE_SRC)
LIB_policy := $(POLICY_SRC)
LIB_kde := $(KDE_SRC)
LIB_traces := $(TRACES_SRC)
LIB_common := $(COMMON_SRC)
LIBS := $(foreach l,$(LIBNAMES),$(if $(LIB_$(l)),$(BUILD)/lib$(l).a))
CU_OBJ := $(patsubst %.cu,$(BUILD)/%.cu.o,$(CU_SRC))
CUDA_LIB := $(if $(CU_OBJ),$(BUILD)/libcuda_engine.a)
# the CUDA engine calls back into the C engine (top-k, host routing), so libengine
# is named again after it
LINK_LIBS = $(filter-out $(BUILD)/libpolicy.a $(BUILD)/libkde.a $(BUILD)/libtraces.a $(BUILD)/libcommon.a,$(LIBS)) \
            $(CUDA_LIB) $(if $(CUDA_LIB),$(BUILD)/libengine.a) $(filter $(BUILD)/libpolicy.a $(BUILD)/libkde.a $(BUILD)/libtraces.a $(BUILD)/libcommon.a,$(LIBS))

CMDS := $(patsubst main_%,$(BIN)/olmoe-%,$(basename $(notdir $(CMD_MAINS))))

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
GPU_TEST_SRC := $(if $(NVCC),$(wildcard tests/gpu/test_*.c),)
GPU_TEST_BINS := $(patsubst tests/gpu/%.c,$(BUILD)/tests/gpu/%,$(GPU_TEST_SRC))

.PHONY: all test asan-test test-gpu install demo deps data clean fuzz fuzz-build FORCE
all: $(CMDS) $(TEST_BINS)
	@echo "built: $(notdir $(CMDS))$(if $(NVCC), (with CUDA: $(NVCC)), (CPU only: $(if $(NO_CUDA),NO_CUDA set,$(if $(filter 1,$(CUDA)),no nvcc found,no GPU here; CUDA=1 builds the CUDA engine))))"

# $(BUILD)/.mode says whether the objects were compiled for the CUDA engine or
# CPU only; it changes (and every object is recompiled) when that does
BUILD_MODE := $(if $(NVCC),cuda,cpu)
$(BUILD)/.mode: FORCE
	@mkdir -p $(dir $@); echo $(BUILD_MODE) | cmp -s - $@ || echo $(BUILD_MODE) >$@
FORCE:

$(BUILD)/%.o: %.c $(BUILD)/.mode
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(call layer_inc,$<) -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -DOLMOE_HAVE_CUDA -MMD -MP -MF $(@:.o=.d) -c $< -o $@

define LIB_RULE
$(BUILD)/lib$(1).a: $(call obj,$(LIB_$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LIBNAMES),$(eval $(call LIB_RULE,$(l))))

$(BUILD)/libcuda_engine.a: $(CU_OBJ)
	rm -f $@ && ar rcs $@ $^

# dir/main_NAME.c and dir/main_NAME_*.c -> bin/olmoe-NAME, one link rule per
# command; the objects are kept (not intermediates), so make deletes nothing
define CMD_RULE
$$(BIN)/olmoe-$(2): $$(call obj,$(1) $(wildcard $(dir $(1))main_$(2)_*.c)) $$(LIBS) $$(CUDA_LIB)
	@mkdir -p $$(BIN)
	$$(CC) $$(CFLAGS) $$(SANITIZE) $$(filter %.o,$$^) $$(LINK_LIBS) $$(DEP_LIBS) $$(CUDA_LIBS) -o $$@
endef
$(foreach f,$(CMD_MAINS),$(eval $(call CMD_RULE,$(f),$(call cmd_of,$(f)))))
.SECONDARY: $(patsubst %.c,$(BUILD)/%.o,$(MAINS))

$(BUILD)/tests/%: tests/%.c tests/check.h $(LIBS) $(CUDA_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -Itests $< $(LINK_LIBS) $(DEP_LIBS) $(CUDA_LIBS) -o $@

# ---- tests ----
# tests/run prints one line per check and ends with "N passed, N failed".
test: $(CMDS) $(TEST_BINS)
	@OLMOE_BIN=$(abspath $(BIN)) OLMOE_TESTBIN=$(abspath $(BUILD)/tests) sh tests/run

asan-test:
	$(MAKE) BUILD=build-asan BIN=bin-asan OPT=-O1 NO_CUDA=1 \
	  SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

# ---- fuzzing (docs/DESIGN.md §12): clang + libFuzzer on every tests/fuzz/fuzz_*.c ----
# make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="config policy"]: builds the libraries
# with clang, ASan/UBSan and coverage into build-fuzz/, then runs each target for
# FUZZ_SECONDS on tests/fuzz/corpus/NAME (tests/fuzz/README.md); clang's extra
# warnings do not stop it (gcc's -Werror build does that). The saved corpus
# and crash inputs are replayed without libFuzzer by tests/test_fuzz_regress.c.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 NO_CUDA=1 WARN="-Wall -Wextra" SANITIZE="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" fuzz-build
	@sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -fsanitize=fuzzer -Itests/fuzz $< $(LINK_LIBS) $(DEP_LIBS) -o $@

test-gpu: $(CMDS) $(GPU_TEST_BINS)
	@if [ -z "$(NVCC)" ]; then echo "test-gpu: no CUDA build (nvcc not found, or NO_CUDA set)"; exit 1; fi
	@OLMOE_BIN=$(abspath $(BIN)) OLMOE_TESTBIN=$(abspath $(BUILD)/tests/gpu) sh tests/run gpu

$(BUILD)/tests/gpu/%: tests/gpu/%.c tests/check.h $(LIBS) $(CUDA_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -Itests $< $(LINK_LIBS) $(DEP_LIBS) $(CUDA_LIBS) -o $@

# ---- the main job on the bundled model ----
DEMO_MODEL ?= models/olmoe-brown
DEMO_OUT ?= demo-out
demo: $(CMDS)
	@sh plot/demo.sh "$(DEMO_MODEL)" "$(DEMO_OUT)" "$(abspath $(BIN))"

deps:
	@sh .ci/install-deps

data:
	@sh data/make-data.sh

install: $(CMDS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(CMDS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(wildcard man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(wildcard man/*.5) $(DESTDIR)$(PREFIX)/share/man/man5
	# the bundled model (commands find it as --model olmoe-brown, and use it
	# when --model is not given) and the Brown test split the demo captures
	install -d $(DESTDIR)$(PREFIX)/share/olmoe-routing/models/olmoe-brown $(DESTDIR)$(PREFIX)/share/olmoe-routing/data
	install -m 644 models/olmoe-brown/config.json models/olmoe-brown/model.safetensors \
	    models/olmoe-brown/tokenizer.json models/olmoe-brown/generation_config.json \
	    models/olmoe-brown/MODEL.md $(DESTDIR)$(PREFIX)/share/olmoe-routing/models/olmoe-brown
	install -m 644 data/brown-test.jsonl $(DESTDIR)$(PREFIX)/share/olmoe-routing/data

clean:
	rm -rf build build-asan build-fuzz bin bin-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
