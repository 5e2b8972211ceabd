#!/bin/sh
# bench/bench_replay.sh: one call of the GPU machine for the CUDA replay
# backend, with binaries built here and carried (bench/NOTES.md,
# "Replay"): the GPU tests (tests/run gpu), compute-sanitizer memcheck on
# test_replay_cuda, then bench/bench_replay.py at OLMoE-1B-7B's shapes (the
# random checkpoint is written while the tests run). Logs go to $OUT.
#   GPU_BIN=.gpu/bin GPU_TESTBIN=.gpu/build/tests/gpu sh bench/bench_replay.sh [bench_replay.py args]
# BENCH_STEPS=tests,memcheck,bench (default all) picks the parts.
set -u
B=$PWD/${GPU_BIN:-bin}
TB=$PWD/${GPU_TESTBIN:-build/tests/gpu}
OUT=${OUT:-bench-out}
STEPS=${BENCH_STEPS:-tests,memcheck,bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W=${BENCH_WORK:-/tmp/olmoe-bench}
mkdir -p "$W"
. bench/cuda_libs.sh
has() { case ",$STEPS," in *",$1,"*) return 0 ;; esac; return 1; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
    echo "cores $(nproc)"; free -g | head -2; df -h "$W" | tail -1
    ldd "$B/olmoe-replay" | grep -E 'not found|cublas|cudart|hdf5'
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

mk=
if has bench; then
    python3 bench/bench_capture.py make-model --work "$W" --windows 150 >"$OUT/make-model.log" 2>&1 &
    mk=$!
fi
if has tests; then
    OLMOE_BIN=$B OLMOE_TESTBIN=$TB timeout ${TEST_TIMEOUT:-150} sh tests/run gpu >"$OUT/test-gpu.log" 2>&1
    echo "test-gpu: $(tail -n 1 "$OUT/test-gpu.log")"
    grep -E '^(FAIL|#)|check failed' "$OUT/test-gpu.log" | head -n 80
fi
if has memcheck; then
    # test_cli's GPU work runs in child processes; the rest is in this one
    OLMOE_BIN=$B TMPDIR=/tmp timeout ${MEMCHECK_TIMEOUT:-120} compute-sanitizer --tool memcheck --leak-check no --error-exitcode 99 \
        "$TB/test_replay_cuda" test_vs_cpu test_paths test_driver >"$OUT/memcheck.log" 2>&1
    echo "memcheck test_replay_cuda: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -n 1)"
    grep -E '^(FAIL)|Invalid|ERROR' "$OUT/memcheck.log" | head -n 20
fi
if has bench; then
    wait $mk
    echo "make-model rc=$?: $(tail -n 1 "$OUT/make-model.log")"
    python3 bench/bench_replay.py --work "$W" --bin "$B" --json "$OUT/bench.json" "$@" >"$OUT/bench.log" 2>&1
    echo "bench rc=$?"
    grep -E '^\||^ratio|^##|self-check|HF failed|rc=[1-9]|Traceback|rror' "$OUT/bench.log" | tail -n 60
fi
