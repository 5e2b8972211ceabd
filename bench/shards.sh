#!/bin/sh
# bench/shards.sh: sharded capture and replay on the GPU machine, one call,
# binaries built here and carried (bench/NOTES.md):
#   GPU_BIN=.gpu/bin sh bench/shards.sh
# On the random OLMoE-1B-7B-shaped checkpoint of bench_capture.py (150
# windows of 2048 random ids = 307,200 tokens, batch 8):
#   1. capture on GPU 0 alone (the reference);
#   2. the same as --shard 0/2 and 1/2 one after another on GPU 0;
#   3. the two shards at once, one process per GPU (CUDA_VISIBLE_DEVICES),
#      when the machine has 2 or more GPUs;
#   then olmoe-traces merge, verify, and h5diff of every dataset against 1;
#   4. a capture with residuals (20 GB), its kde null, the replay sweep
#      (seed preset) on GPU 0, then as 2 shards (in parallel on 2 GPUs when
#      there are), merged with olmoe-replay --mode merge and compared
#      dataset by dataset.
# Disk: about 4 x 1.3 GB of traces without residuals, 21 GB with.
# Wall times of each step go to $OUT/times.txt ("step seconds"); the
# scaling efficiency is t(1 GPU) / (2 x t(2 GPUs)).
# A smoke test on a CPU machine: SHARD_DEVICE=cpu SHARD_CTX=8 with a model
# and tokens.txt already in $BENCH_WORK/model and $BENCH_WORK (no
# make-model), e.g. test_forward_ref --write-model's.
set -u
B=$PWD/${GPU_BIN:-bin}
OUT=${OUT:-bench-out}
W=${BENCH_WORK:-/tmp/olmoe-bench}
WINDOWS=${SHARD_WINDOWS:-150}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1
. bench/cuda_libs.sh
DEV=${SHARD_DEVICE:-cuda}
NG=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/env.log"
echo "gpus: $NG" | tee -a "$OUT/env.log"
: >"$OUT/times.txt"

[ "$DEV" = cpu ] || python3 bench/bench_capture.py make-model --work "$W" --windows "$WINDOWS" >"$OUT/make-model.log" 2>&1 ||
    { echo "make-model failed: $(tail -n 3 "$OUT/make-model.log")"; exit 1; }
M=$W/model
TOK=$W/tokens.txt
T=$W/shards
rm -rf "$T"
mkdir -p "$T"
CAP="$B/olmoe-capture --model $M --tokens $TOK --ctx ${SHARD_CTX:-2048} --batch 8 --device $DEV --quiet"

now() { date +%s.%N; }
timed() { # timed NAME CMD...: runs it, appends "NAME seconds" to times.txt
    name=$1
    shift
    t0=$(now)
    "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
    echo "$name $t" | tee -a "$OUT/times.txt"
    [ $rc -eq 0 ] || { echo "$name: rc=$rc: $(tail -n 3 "$OUT/$name.log")"; return 1; }
}
on_two_gpus() { # on_two_gpus NAME PREFIX CMD...: CMD --shard i/2 --out $T/PREFIXi.h5 on GPU i, both at once
    name=$1 pre=$2
    shift 2
    t0=$(now)
    CUDA_VISIBLE_DEVICES=0 "$@" --shard 0/2 --out "$T/${pre}0.h5" >"$OUT/${pre}0.log" 2>&1 &
    p0=$!
    CUDA_VISIBLE_DEVICES=1 "$@" --shard 1/2 --out "$T/${pre}1.h5" >"$OUT/${pre}1.log" 2>&1 &
    p1=$!
    wait $p0; r0=$?
    wait $p1; r1=$?
    echo "$name $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')" | tee -a "$OUT/times.txt"
    [ $r0 -eq 0 ] && [ $r1 -eq 0 ] || echo "$name: rc $r0 $r1: $(tail -n 2 "$OUT/${pre}0.log" "$OUT/${pre}1.log")"
}
same() { # same A B DATASET...: every dataset equal (NaN = NaN), one line each
    python3 bench/h5same.py "$@"
}
DS="/tokens /router_logits /baseline/nll /baseline/argmax /windows /documents"

# 1. the reference
timed capture-1gpu env CUDA_VISIBLE_DEVICES=0 $CAP --out "$T/one.h5" || exit 1
# 2. the shards one after another on one GPU
timed capture-shard0-gpu0 env CUDA_VISIBLE_DEVICES=0 $CAP --shard 0/2 --out "$T/seq0.h5" &&
timed capture-shard1-gpu0 env CUDA_VISIBLE_DEVICES=0 $CAP --shard 1/2 --out "$T/seq1.h5" &&
"$B/olmoe-traces" merge "$T/seq.h5" "$T/seq0.h5" "$T/seq1.h5" && "$B/olmoe-traces" verify "$T/seq.h5" &&
    { echo "shards on one GPU, merged, against one run:"; same "$T/one.h5" "$T/seq.h5" $DS; }
rm -f "$T"/seq*.h5
# 3. one process per GPU
if [ "$NG" -ge 2 ]; then
    on_two_gpus capture-2gpu par $CAP
    timed merge-capture "$B/olmoe-traces" merge "$T/par.h5" "$T/par0.h5" "$T/par1.h5" &&
        "$B/olmoe-traces" verify "$T/par.h5" &&
        { echo "shards on two GPUs, merged, against one run:"; same "$T/one.h5" "$T/par.h5" $DS; }
else
    echo "one GPU only: the two-GPU capture is not run"
fi

rm -f "$T"/par*.h5
# 4. replay sweep: one GPU, then 2 shards
timed capture-residuals env CUDA_VISIBLE_DEVICES=0 $CAP --save-residuals --out "$T/res.h5" || exit 1
timed kde-fit "$B/olmoe-kde" fit "$T/res.h5" --out "$T/null.h5" || exit 1
RP="$B/olmoe-replay $T/res.h5 --model $M --sweep seed --kde $T/null.h5 --device $DEV --quiet ${SHARD_REPLAY_ARGS:-}"
timed replay-1gpu env CUDA_VISIBLE_DEVICES=0 $RP --out "$T/r-one.h5" || exit 1
if [ "$NG" -ge 2 ]; then
    on_two_gpus replay-2gpu r $RP
else
    timed replay-shard0-gpu0 env CUDA_VISIBLE_DEVICES=0 $RP --shard 0/2 --out "$T/r0.h5"
    timed replay-shard1-gpu0 env CUDA_VISIBLE_DEVICES=0 $RP --shard 1/2 --out "$T/r1.h5"
fi
timed merge-replay "$B/olmoe-replay" --mode merge --out "$T/r-merged.h5" "$T/res.h5" "$T/r0.h5" "$T/r1.h5" &&
{
    echo "replay shards, merged, against one run (every result's datasets):"
    python3 bench/h5same.py "$T/r-one.h5" "$T/r-merged.h5" /replay
}
echo "times (s):"
cat "$OUT/times.txt"
awk '{ t[$1] = $2 } END {
    if (t["capture-2gpu"]) printf "capture: 1 GPU %.1f s, 2 GPUs %.1f s: speed-up %.2f, efficiency %.0f%%\n",
        t["capture-1gpu"], t["capture-2gpu"], t["capture-1gpu"] / t["capture-2gpu"], 50 * t["capture-1gpu"] / t["capture-2gpu"];
    if (t["replay-2gpu"]) printf "replay: 1 GPU %.1f s, 2 GPUs %.1f s: speed-up %.2f, efficiency %.0f%%\n",
        t["replay-1gpu"], t["replay-2gpu"], t["replay-1gpu"] / t["replay-2gpu"], 50 * t["replay-1gpu"] / t["replay-2gpu"] }' "$OUT/times.txt"
