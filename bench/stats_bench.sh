#!/bin/sh
# bench/stats_bench.sh [N_TOKENS] [DIR]: times olmoe-kde fit and olmoe-replay
# --mode stats (one core) on a synthetic trace of N_TOKENS (default 300000)
# x 16 layers x 64 experts, against docs/DESIGN.md §11 (kde fit < 10 s; stats
# >= 2 M token-layers/s per core for BH with kde p-values). Run after make;
# BUILD and BIN name other build directories. The trace (about 1.2 GiB at
# 300k tokens) is kept in DIR for reruns.
set -eu
cd "$(dirname "$0")/.."
N=${1:-300000}
DIR=${2:-${TMPDIR:-/tmp}/olmoe-stats-bench}
BUILD=${BUILD:-build}
BIN=${BIN:-bin}
mkdir -p "$DIR"
HDF5_LIBDIR=$(pkg-config --variable=libdir hdf5 2>/dev/null || true)
[ -n "$HDF5_LIBDIR" ] || HDF5_LIBDIR=$(pkg-config --libs-only-L hdf5 | sed 's/^-L//; s/ .*//')
cc -std=c17 -D_GNU_SOURCE -O2 -Icommon -Itraces $(pkg-config --cflags hdf5) bench/synth_trace.c \
    $BUILD/libtraces.a $BUILD/libcommon.a -L"$HDF5_LIBDIR" -lhdf5_hl -lhdf5 -lxxhash -lm \
    -o "$DIR/synth_trace"
[ -f "$DIR/run.h5" ] || "$DIR/synth_trace" "$DIR/run.h5" "$N"
ls -l "$DIR/run.h5"
echo "== olmoe-kde fit (one core)"
/usr/bin/time -f "%e s wall, %U s user, %S s system, %M KiB max RSS" taskset -c 0 $BIN/olmoe-kde fit "$DIR/run.h5" \
    --out "$DIR/null.h5" --force >/dev/null
echo "== olmoe-replay --mode stats, BH with kde p-values (one core)"
/usr/bin/time -f "%e s wall, %U s user, %S s system, %M KiB max RSS" taskset -c 0 $BIN/olmoe-replay "$DIR/run.h5" \
    --mode stats --policy 'bh(alpha=0.1,max_k=8)' --kde "$DIR/null.h5"
echo "== olmoe-replay --mode stats --sweep seed (21 policies, one core)"
/usr/bin/time -f "%e s wall, %U s user, %S s system, %M KiB max RSS" taskset -c 0 $BIN/olmoe-replay "$DIR/run.h5" \
    --mode stats --sweep seed --kde "$DIR/null.h5"
