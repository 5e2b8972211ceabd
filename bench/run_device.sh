#!/bin/sh
# bench/run_device.sh: one call of the GPU machine does everything, from the
# repository root, with binaries built here and carried along (bench/NOTES.md
# says how): the GPU tests, compute-sanitizer memcheck on them, then the
# benchmark against HF transformers. Logs go to $OUT (or ./bench-out).
#   GPU_BIN=.gpu/bin GPU_TESTBIN=.gpu/build/tests/gpu sh bench/run_device.sh [BENCH ARGS...]
set -u
B=$PWD/${GPU_BIN:-bin}
TB=$PWD/${GPU_TESTBIN:-build/tests/gpu}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W=${BENCH_WORK:-/tmp/olmoe-bench}
. bench/cuda_libs.sh
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
    nproc; df -h /tmp | tail -1
    ldd "$B/olmoe-capture" | grep -E 'not found|cublas|cudart|hdf5'
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

# the checkpoint is written while the tests run (CPU and disk, little GPU)
python3 bench/bench_capture.py make-model --work "$W" >"$OUT/make-model.log" 2>&1 &
mk=$!

OLMOE_BIN=$B OLMOE_TESTBIN=$TB sh tests/run gpu >"$OUT/test-gpu.log" 2>&1
echo "test-gpu: $(tail -n 1 "$OUT/test-gpu.log")"
grep -E '^(FAIL|#)' "$OUT/test-gpu.log"
for t in test_cuda_ops test_cuda_forward; do
    OLMOE_BIN=$B TMPDIR=/tmp timeout 300 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 99 \
        "$TB/$t" >"$OUT/memcheck-$t.log" 2>&1
    echo "memcheck $t: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck-$t.log" | tail -n 1)"
done

wait $mk
echo "make-model rc=$?: $(tail -n 1 "$OUT/make-model.log")"
python3 bench/bench_capture.py run --work "$W" --bin "$B/olmoe-capture" --json "$OUT/bench.json" "$@" \
    >"$OUT/bench.log" 2>&1
echo "bench rc=$?"
grep -E "^\\||^ratio|^agreement|^HF:|^HF |^ours:|FAIL|Traceback|rror" "$OUT/bench.log" | tail -n 40
