#!/bin/sh
# bench/exact_bundled.sh: the exact sweep's numbers on the bundled trained
# model, CPU (fp32, the reference) against CUDA (bf16, every policy routed on
# the GPU): a trace of the Brown test split (ctx 256), its KDE null, then
# olmoe-replay --exact --sweep seed on both devices; bench/ppl_compare.py
# prints every policy's two perplexities. Tolerance: 0.5 % relative (the
# CUDA capture's own agreement with the CPU on this model, bench/NOTES.md).
#   GPU_BIN=... sh bench/exact_bundled.sh [max tokens]   (logs to $OUT)
set -u
B=$PWD/${GPU_BIN:-bin}
S=$(dirname "$0")
OUT=${OUT:-bench-out}
W=${BENCH_WORK:-/tmp/olmoe-bench}/bundled
N=${1:-20000}
M=models/olmoe-brown
mkdir -p "$OUT" "$W"
"$B/olmoe-capture" --model $M --input data/brown-test.jsonl --format jsonl --field text --ctx 256 \
    --max-tokens "$N" --device cpu --out "$W/b.h5" --quiet --force || exit 1
"$B/olmoe-kde" fit "$W/b.h5" --out "$W/null.h5" --force >/dev/null || exit 1
for d in cpu cuda; do
    s=$(date +%s.%N)
    "$B/olmoe-replay" "$W/b.h5" --model $M --sweep seed --kde "$W/null.h5" --exact --device $d \
        --out "$W/x_$d.h5" --json "$W/x_$d.json" --force --quiet >"$OUT/bundled_$d.txt" 2>&1 || {
        echo "exact on $d failed"; tail -n 5 "$OUT/bundled_$d.txt"; exit 1; }
    echo "bundled exact sweep on $d: $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
done
python3 "$S/ppl_compare.py" "$W/x_cpu.json" "$W/x_cuda.json" 0.005
