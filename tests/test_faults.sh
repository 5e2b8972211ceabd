#!/bin/sh
# test_faults.sh: a completed capture is never lost, and every writer is
# safe against a kill at any write. With strace's fault injection, each
# writer is killed (SIGKILL, SIGTERM, SIGINT) at sampled pwrite64 calls, and
# run once under a file-size limit (a full disk); after each:
#   - the input trace is byte-identical to before (cmp);
#   - olmoe-traces verify accepts every trace left behind;
#   - a rerun (results) or --resume (capture) gives the uninterrupted result.
# Also: results never go into the trace; two writers of one output (capture,
# --resume beside a running capture, two replays) are refused with the
# holder's pid; a capture killed at any write has its documents and groups
# in its partial (and after --resume); resume refuses another --group-field and the
# policy path; runs that score no token and --out DIR --force fail at once.
# OLMOE_FAULT_POINTS=N: injection points per writer and signal (default 8).
. tests/lib.sh
B="$OLMOE_BIN"
CAP="$B/olmoe-capture"
TR="$B/olmoe-traces"
PTS=${OLMOE_FAULT_POINTS:-8}
"$OLMOE_TESTBIN/test_forward_ref" --write-model "$T/model" >/dev/null ||
    { fail setup "cannot write the tiny model"; exit 0; }
awk 'BEGIN { srand(3); for (d = 0; d < 25; d++) { n = 3 + int(rand() * 20); s = "";
     for (i = 0; i < n; i++) s = s " " 1 + int(rand() * 90); print s } }' >"$T/tok.txt"
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 16 --save-residuals --quiet \
    --out "$T/t.h5" >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
cp "$T/t.h5" "$T/orig.h5"
RP="--model $T/model --policy topk(k=2) --quiet"

# the uninterrupted results, in a results file of a copy of the trace
mkdir "$T/ref" && cp "$T/t.h5" "$T/ref/t.h5"
"$B/olmoe-replay" "$T/ref/t.h5" $RP >/dev/null 2>"$T/err" || fail ref_replay "$(cat "$T/err")"
check results_beside_trace test -f "$T/ref/t.results.h5"
check trace_never_written cmp -s "$T/ref/t.h5" "$T/orig.h5"
check results_record_trace sh -c "h5dump -a /trace_checksum '$T/ref/t.results.h5' | grep -q '\"[0-9a-f]\{32\}\"'"
check results_provenance sh -c "h5dump -a /provenance/0/argv '$T/ref/t.results.h5' | grep -q 'topk(k=2)'"
same_results() { h5diff -q "$T/ref/t.results.h5" "$1" '/replay/topk(k=2,norm=model)/nll' >/dev/null 2>&1; }

if ! command -v strace >/dev/null 2>&1; then
    echo "SKIP test_faults/injection: strace is missing (apt-get install strace)"
    pass injection_skipped
    exit 0
fi
# count_writes CMD...: the pwrite64 calls of a run (it runs once, fully)
count_writes() { strace -f -o "$T/count" -e trace=pwrite64 "$@" >/dev/null 2>&1; grep -c pwrite64 "$T/count"; }
# points N: PTS points spread over 1..N
points() { awk -v n="$1" -v k="$PTS" 'BEGIN { for (i = 0; i < k && i < n; i++) print 1 + int(i * n / k) }'; }

# ---- results writer: olmoe-replay into the results file ----
rm -f "$T/t.results.h5"
NW=$(count_writes "$B/olmoe-replay" "$T/t.h5" $RP)
rm -f "$T/t.results.h5"
bad=0 runs=0
for sig in KILL TERM INT; do
    for i in $(points "$NW"); do
        runs=$((runs + 1))
        strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIG$sig:when=$i \
            "$B/olmoe-replay" "$T/t.h5" $RP >/dev/null 2>&1
        cmp -s "$T/t.h5" "$T/orig.h5" || { bad=$((bad + 1)); echo "replay SIG$sig at write $i: trace changed" >&2; }
        "$TR" verify "$T/t.h5" >/dev/null 2>&1 || { bad=$((bad + 1)); echo "replay SIG$sig at $i: verify" >&2; }
        # the previous results file (none) is intact: the rerun completes it
        "$B/olmoe-replay" "$T/t.h5" $RP >/dev/null 2>"$T/err" && same_results "$T/t.results.h5" ||
            { bad=$((bad + 1)); echo "replay SIG$sig at $i: rerun: $(cat "$T/err")" >&2; }
        rm -f "$T/t.results.h5"
    done
done
echo "test_faults: replay: $NW writes, $runs injected runs, $bad failures" >&2
[ "$bad" -eq 0 ] && pass "replay_killed_at_writes_$runs" || fail replay_killed "$bad of $runs runs failed"

# a full disk: the results writer fails, the trace and an earlier results file stay
"$B/olmoe-replay" "$T/t.h5" --model "$T/model" --policy 'topk(k=4)' --quiet >/dev/null 2>&1
cp "$T/t.results.h5" "$T/res-before.h5"
(ulimit -f 8; "$B/olmoe-replay" "$T/t.h5" $RP >/dev/null 2>&1)
check full_disk_trace_same cmp -s "$T/t.h5" "$T/orig.h5"
check full_disk_results_same cmp -s "$T/t.results.h5" "$T/res-before.h5"
"$B/olmoe-replay" "$T/t.h5" $RP >/dev/null 2>&1 && same_results "$T/t.results.h5" &&
    pass full_disk_rerun || fail full_disk_rerun "the rerun differs"
check full_disk_partial_gone test ! -e "$T/t.results.h5.partial"
rm -f "$T/t.results.h5"

# stats --store and analyze --in-trace go to the results file too
"$B/olmoe-replay" "$T/t.h5" --mode stats --policy 'topk(k=2)' --store --quiet >/dev/null 2>&1
"$B/olmoe-analyze" coactivation "$T/t.h5" --in-trace --quiet >/dev/null 2>&1
check stats_analyze_beside sh -c "h5ls '$T/t.results.h5' | grep -q stats && h5ls '$T/t.results.h5' | grep -q analyze"
check stats_analyze_trace_same cmp -s "$T/t.h5" "$T/orig.h5"
# a results file is refused beside another trace
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --quiet --out "$T/u.h5" >/dev/null 2>&1
cp "$T/t.results.h5" "$T/u.results.h5"
expect_fail results_of_another_trace "results of another trace" "$B/olmoe-replay" "$T/u.h5" \
    --mode stats --policy 'topk(k=2)' --store --quiet

# ---- one writer per output ----
OLMOE_TEST_BATCH_DELAY_MS=100 "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --batch 1 \
    --quiet --out "$T/c.h5" >/dev/null 2>&1 &
cpid=$!
n=0
while [ ! -e "$T/c.h5.partial" ] && [ $n -lt 500 ]; do sleep 0.02; n=$((n + 1)); done
expect_fail second_capture_refused "process $cpid" "$CAP" --model "$T/model" --tokens "$T/tok.txt" \
    --ctx 8 --quiet --force --out "$T/c.h5"
expect_fail resume_beside_running_refused "process $cpid" "$CAP" --model "$T/model" \
    --tokens "$T/tok.txt" --ctx 8 --batch 1 --quiet --resume --out "$T/c.h5"
wait $cpid && check first_capture_whole sh -c "'$TR' verify '$T/c.h5' | grep -q ': ok$'" ||
    fail first_capture_whole "exit $?"
check no_lock_left test ! -e "$T/c.h5.lock"

# ---- the capture header: documents and groups survive a kill before the first window ----
awk 'BEGIN { srand(5); split("the of a man said time house water night city old people long", w, " ");
     for (d = 0; d < 9; d++) { n = 5 + int(rand() * 40); s = "";
     for (i = 0; i < n; i++) s = s w[1 + int(rand() * 13)] " ";
     printf "{\"genre\": \"%s\", \"text\": \"%s.\"}\n", d % 3 ? "news" : "fiction", s } }' >"$T/docs.jsonl"
J="--model models/olmoe-brown --input $T/docs.jsonl --format jsonl --group-field genre --ctx 48 --batch 2 --quiet"
"$CAP" $J --out "$T/g-ref.h5" >/dev/null 2>"$T/err" || fail header_ref "$(cat "$T/err")"
same_trace() {
    for d in /tokens /router_logits /baseline/nll /baseline/argmax /windows /documents /groups; do
        h5diff -q "$1" "$2" "$d" >/dev/null 2>&1 || { echo "$2: $d differs" >&2; return 1; }
    done
}
NC=$(count_writes "$CAP" $J --out "$T/g.h5" --force)
bad=0 runs=0 kept=0
for i in $(points "$NC"); do
    runs=$((runs + 1))
    rm -f "$T/g.h5" "$T/g.h5.partial"
    strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIGKILL:when=$i \
        "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1
    if [ -e "$T/g.h5.partial" ]; then
        kept=$((kept + 1))
        "$TR" verify "$T/g.h5.partial" >/dev/null 2>&1 || { bad=$((bad + 1)); echo "capture at $i: partial fails verify" >&2; }
        "$CAP" $J --resume --out "$T/g.h5" >/dev/null 2>&1
    elif [ ! -e "$T/g.h5" ]; then
        "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1
    fi
    same_trace "$T/g-ref.h5" "$T/g.h5" || { bad=$((bad + 1)); echo "capture killed at write $i: differs" >&2; }
done
echo "test_faults: capture --group-field: $NC writes, $runs injected runs ($kept resumed), $bad failures" >&2
[ "$bad" -eq 0 ] && pass "capture_killed_at_writes_$runs" || fail capture_killed "$bad of $runs runs failed"

# the header goes in before the partial appears: a kill at any write from the
# partial's appearance to its first commit leaves one with documents and groups
R=$(strace -f -o "$T/cr" -e trace=pwrite64,rename "$CAP" $J --out "$T/h.h5" >/dev/null 2>&1;
    awk '/rename\(.*partial.creating/ { print n; exit } /pwrite64/ { n++ }' "$T/cr")
bad=0 runs=0
for i in $(seq $((R + 1)) $((R + 10))); do
    rm -f "$T/h.h5" "$T/h.h5.partial"
    strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIGKILL:when=$i \
        "$CAP" $J --out "$T/h.h5" >/dev/null 2>&1
    [ -e "$T/h.h5.partial" ] || continue
    runs=$((runs + 1))
    "$TR" info "$T/h.h5.partial" 2>&1 | grep -q '^documents: *9 in 2 groups' ||
        { bad=$((bad + 1)); echo "capture killed at write $i: partial without its header" >&2; }
done
[ "$runs" -gt 5 ] && [ "$bad" -eq 0 ] && pass "partial_has_header_at_$runs" ||
    fail partial_has_header "$bad of $runs partials lack documents or groups"

# resume refuses what changes the trace
rm -f "$T/g.h5" "$T/g.h5.partial"
OLMOE_TEST_BATCH_DELAY_MS=0 strace -f -o /dev/null -e trace=pwrite64 \
    -e inject=pwrite64:signal=SIGKILL:when=$((NC / 3)) "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1
if [ -e "$T/g.h5.partial" ]; then
    expect_fail resume_other_group_field "group_field" "$CAP" --model models/olmoe-brown \
        --input "$T/docs.jsonl" --format jsonl --group-field text --ctx 48 --batch 2 --quiet --resume --out "$T/g.h5"
    expect_fail resume_other_policy_path "routing_path" "$CAP" $J --policy 'topk(k=8)' --resume --out "$T/g.h5"
else
    fail resume_refusals "no partial left by the kill"
fi

# runs that score nothing, and an output that is a directory, fail before work
expect_fail ctx_one "no token" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 1 --quiet --out "$T/z.h5"
expect_fail max_tokens_one "no token" "$CAP" --model models/olmoe-brown --input "$T/docs.jsonl" \
    --format jsonl --max-tokens 1 --quiet --out "$T/z.h5"
mkdir "$T/adir"
expect_fail out_dir_force "not a file" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --quiet --force --out "$T/adir"
