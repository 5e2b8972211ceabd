#!/bin/sh
# bench/bench_exact.sh: one call of the GPU machine for routing on the GPU
# (bench/NOTES.md, "Every policy on the GPU"), binaries built here and
# carried: the disk's direct write bandwidth (dd), the GPU tests (tests/run
# gpu, test_policy_gpu among them: device vs host decisions), the bundled
# model's exact sweep CPU vs CUDA (exact_bundled.sh), then bench_replay.py
# at OLMoE-1B-7B's shapes: capture with and without --save-residuals, the
# KDE fit, the replay and the exact seed sweeps, HF transformers' top-8
# forward in the same run. Logs go to $OUT.
#   GPU_BIN=.wt/gpu/carry/bin GPU_TESTBIN=.wt/gpu/carry/tests sh .wt/gpu/carry/bench/bench_exact.sh [bench_replay.py args]
# BENCH_STEPS=disk,tests,fulltests,bundled,bench (default all) picks the parts.
set -u
B=$PWD/${GPU_BIN:-bin}
TB=$PWD/${GPU_TESTBIN:-build/tests/gpu}
S=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-bench-out}
STEPS=${BENCH_STEPS:-disk,tests,bundled,bench,fulltests}
W=${BENCH_WORK:-/tmp/olmoe-bench}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 OUT GPU_BIN BENCH_WORK=$W
has() { case ",$STEPS," in *",$1,"*) return 0 ;; esac; return 1; }
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cores $(nproc)"; df -h "$W" | tail -1
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"
if has disk; then
    echo "dd 4 GiB, oflag=direct: $(dd if=/dev/zero of="$W/dd.bin" bs=1M count=4096 oflag=direct 2>&1 | tail -n 1)"
    rm -f "$W/dd.bin"
fi
mk=
if has bench; then
    python3 bench/bench_capture.py make-model --work "$W" --windows 150 >"$OUT/make-model.log" 2>&1 &
    mk=$!
fi
bd=
if has bundled; then # beside make-model: CPU and a little GPU
    timeout ${BUNDLED_TIMEOUT:-150} sh "$S/exact_bundled.sh" ${BUNDLED_TOKENS:-20000} >"$OUT/bundled.log" 2>&1 &
    bd=$!
fi
if has tests; then
    # device vs host decisions first: the check this work stands on
    OLMOE_BIN=$B timeout ${POLICY_TIMEOUT:-90} "$TB/test_policy_gpu" >"$OUT/test-policy-gpu.log" 2>&1
    echo "test_policy_gpu rc=$?"
    grep -E '^(PASS|FAIL)|check failed' "$OUT/test-policy-gpu.log" | head -n 20
    echo "$(grep -c '^#' "$OUT/test-policy-gpu.log") '#' lines; those with a difference:"
    grep '^#' "$OUT/test-policy-gpu.log" | grep -E 'differ [1-9]' | head -n 30
fi
if has fulltests; then
    OLMOE_BIN=$B OLMOE_TESTBIN=$TB timeout ${TEST_TIMEOUT:-240} sh tests/run gpu >"$OUT/test-gpu.log" 2>&1
    echo "test-gpu: $(tail -n 1 "$OUT/test-gpu.log")"
    grep -E '^(FAIL|#)|check failed' "$OUT/test-gpu.log" | grep -v '^# batch' | head -n 90
fi
if [ -n "$bd" ]; then
    wait $bd
    echo "bundled rc=$?"
    tail -n 30 "$OUT/bundled.log"
fi
if has bench; then
    wait $mk
    echo "make-model rc=$?: $(tail -n 1 "$OUT/make-model.log")"
    python3 "$S/bench_replay.py" --work "$W" --bin "$B" --json "$OUT/bench.json" "$@" >"$OUT/bench.log" 2>&1
    echo "bench rc=$?"
    grep -E '^\||^ratio|^##|self-check|HF failed|rc=[1-9]|Traceback|rror|per policy|^  ' "$OUT/bench.log" | tail -n 80
fi
