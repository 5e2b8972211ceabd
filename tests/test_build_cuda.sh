#!/bin/sh
# test_build_cuda.sh: when the build compiles the CUDA engine. nvcc and
# nvidia-smi are stand-ins on PATH and make only prints its plan (-n), so this
# runs anywhere: nvcc alone (no GPU) builds CPU only; a GPU listed by
# nvidia-smi, CUDA=1 or make test-gpu brings in the .cu files; NO_CUDA=1 wins;
# CUDA=1 without nvcc stops at once.
. tests/lib.sh
fake=$T/fake
mkdir -p "$fake/bin" "$fake/gpu"
printf '#!/bin/sh\nexit 0\n' >"$fake/bin/nvcc"
printf '#!/bin/sh\necho "GPU 0: Fake H100 (UUID: GPU-0)"\n' >"$fake/gpu/nvidia-smi"
printf '#!/bin/sh\nexit 9\n' >"$fake/bin/nvidia-smi"
chmod +x "$fake/bin/nvcc" "$fake/gpu/nvidia-smi" "$fake/bin/nvidia-smi"

# plan PATHPREFIX ARGS...: the commands make would run, in $T/plan
plan() {
    pre=$1; shift
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u CUDA -u NO_CUDA PATH="$pre:$PATH" \
        make --no-print-directory -n BUILD="$T/build" BIN="$T/bin" "$@" >"$T/plan" 2>"$T/err"
}
cuda_in_plan() { grep -q 'nvcc .*engine/[a-z_]*\.cu ' "$T/plan"; }
no_cuda_in_plan() { ! grep -q '\.cu' "$T/plan" && ! grep -q OLMOE_HAVE_CUDA "$T/plan"; }

if [ -e /dev/nvidia0 ]; then
    pass "no-gpu-cpu-only (skipped: this machine has a GPU)"
else
    plan "$fake/bin" all
    check no-gpu-cpu-only no_cuda_in_plan
fi
plan "$fake/gpu:$fake/bin" all
check gpu-builds-cuda cuda_in_plan
plan "$fake/bin" CUDA=1 all
check cuda1-builds-cuda cuda_in_plan
plan "$fake/bin" NO_CUDA=1 CUDA=1 all
check no-cuda-wins no_cuda_in_plan
plan "$fake/gpu:$fake/bin" NO_CUDA=1 all
check no-cuda-wins-over-gpu no_cuda_in_plan
plan "$fake/bin" test-gpu
check test-gpu-builds-cuda cuda_in_plan

# CUDA=1 where no nvcc is found: one line, before anything is built
mkdir -p "$T/nonvcc"
for tool in make sh cc gcc pkg-config cmp mkdir echo find grep; do
    p=$(command -v $tool) && ln -s "$p" "$T/nonvcc/$tool"
done
env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u CUDA -u NO_CUDA PATH="$T/nonvcc" \
    make --no-print-directory BUILD="$T/build" BIN="$T/bin" CUDA=1 all >"$T/plan" 2>"$T/err"
rc=$?
check cuda1-without-nvcc-fails [ "$rc" -ne 0 ]
check cuda1-without-nvcc-says grep -q "CUDA=1 but nvcc is not on the PATH" "$T/err"
check cuda1-without-nvcc-builds-nothing [ ! -e "$T/build" ]
