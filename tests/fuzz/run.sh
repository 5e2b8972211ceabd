#!/bin/sh
# tests/fuzz/run.sh BUILD SECONDS TARGET...: runs each libFuzzer target built by
# `make fuzz` for SECONDS on its seeds (tests/fuzz/corpus/NAME, read only) plus
# what earlier runs found (BUILD/corpus/NAME, where new inputs go), with the
# dictionary tests/fuzz/NAME.dict when there is one. Crashes land in
# BUILD/crashes/NAME/, inputs whose error message breaks a message rule (one
# line, naming the input: fuzz.h) to BUILD/findings/NAME/. Prints one line per
# target (executions, seconds, corpus, crashes, findings) and exits 1 if any
# target crashed.
#   FUZZ_FLAGS="-max_len=65536"  extra libFuzzer flags (all targets)
set -u
build=$1 secs=$2
shift 2
status=0
for t in "$@"; do
    bin=$build/fuzz/fuzz_$t
    [ -x "$bin" ] || { echo "fuzz: $bin is not built" >&2; exit 2; }
    mkdir -p "$build/corpus/$t" "$build/crashes/$t" "$build/findings/$t" "$build/logs"
    seeds=tests/fuzz/corpus/$t
    [ -d "$seeds" ] || seeds=
    dict=
    [ -f "tests/fuzz/$t.dict" ] && dict=-dict=tests/fuzz/$t.dict
    # tests/fuzz/NAME.flags: extra libFuzzer flags of one target (# comments)
    tflags=
    [ -f "tests/fuzz/$t.flags" ] && tflags=$(sed 's/#.*//' "tests/fuzz/$t.flags")
    log=$build/logs/$t.log
    # shellcheck disable=SC2086
    FUZZ_FINDINGS=$build/findings/$t "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$t/" $dict $tflags ${FUZZ_FLAGS:-} \
        "$build/corpus/$t" $seeds >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then # -fork mode: "#1234: cov: ... time: 60s job: ..."
        runs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -n 1)
        took=$(sed -n 's/^#[0-9]*: cov:.* time: \([0-9]*\)s.*/\1/p' "$log" | tail -n 1)
    fi
    ncorp=$(ls "$build/corpus/$t" | wc -l)
    ncrash=$(ls "$build/crashes/$t" | wc -l)
    nfind=$(ls "$build/findings/$t" | wc -l)
    printf '%-16s %10s execs  %5ss  corpus %5s  crashes %s  message findings %s%s\n' "$t" \
        "${runs:-?}" "${took:-?}" "$ncorp" "$ncrash" "$nfind" \
        "$([ "$rc" -ne 0 ] && echo "  (exit $rc: see $log)")"
    [ "$rc" -ne 0 ] && status=1
done
exit $status
