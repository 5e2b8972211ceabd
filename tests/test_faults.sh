#!/bin/sh
# test_faults.sh: a completed capture is never lost, and every writer is
# safe against a kill at any write. With strace's fault injection each writer
# is killed at sampled write calls (pwrite64; export: write): olmoe-replay,
# stats --store, analyze --in-trace and match-k (the results file), merge and
# merge --copy, kde fit, export (SIGKILL), and replay, merge and capture also
# with SIGTERM and SIGINT and under a file-size limit (a full disk); after each:
#   - no input (the trace, the shards) changed a byte (cmp);
#   - the output is absent or whole (merged traces: verify says ok), never
#     half-written; a capture's partial verifies;
#   - a rerun (beside what the fault left) or --resume gives the
#     uninterrupted result.
# Also: results never go into the trace; two writers of one output (capture,
# --resume beside a running capture) are refused with the holder's pid; a
# capture killed at any write from its partial's appearance on has its
# documents and groups in it; resume refuses another --group-field and the
# policy path; runs that score no token and --out DIR --force fail at once.
# OLMOE_FAULT_POINTS=N: injection points per writer and signal (default 3;
# 0: every write call, as for the numbers in the commit notes).
. tests/lib.sh
B="$OLMOE_BIN"
CAP="$B/olmoe-capture"
TR="$B/olmoe-traces"
PTS=${OLMOE_FAULT_POINTS:-3}
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
same_results() { h5diff -q "$T/ref/t.results.h5" "$1" '/replay/topk_k_2_norm_model/nll' >/dev/null 2>&1; }

if ! command -v strace >/dev/null 2>&1; then
    echo "SKIP test_faults/injection: strace is missing (apt-get install strace)"
    pass injection_skipped
    exit 0
fi
# count_writes SYSCALL CMD: the SYSCALL calls of a run of the shell command CMD (run once, fully)
count_writes() { strace -f -o "$T/count" -e trace="$1" sh -c "$2" >/dev/null 2>&1; grep -c "^[0-9]* *$1(" "$T/count"; }
# points N: PTS points spread over 1..N (OLMOE_FAULT_POINTS=0: every one)
points() { awk -v n="$1" -v k="$PTS" 'BEGIN { if (k == 0) k = n; for (i = 0; i < k && i < n; i++) print 1 + int(i * n / k) }'; }
# inputs_same: no input of any writer changed (the trace, the shards)
inputs_same() { cmp -s "$T/t.h5" "$T/orig.h5" && cmp -s "$T/s0.h5" "$T/s0.orig" && cmp -s "$T/s1.h5" "$T/s1.orig"; }
# settle OUT SAME CMD: after a fault OUT is absent or whole (SAME OUT), and
# CMD run again (beside whatever the fault left: .partial, lock) makes it whole
settle() {
    if [ -e "$1" ]; then
        $2 "$1" || { echo "output left as it should not be"; return 1; }
        return 0
    fi
    sh -c "$3" >/dev/null 2>"$T/err" || { echo "rerun failed: $(head -c 200 "$T/err")"; return 1; }
    $2 "$1" || { echo "rerun differs from the uninterrupted run"; return 1; }
}
# fault NAME SYSCALL SIGS OUT SAME CMD: runs CMD (a shell command writing OUT)
# with each signal of SIGS injected at sampled SYSCALL calls; after each,
# inputs_same and settle. Counts go to stderr and to the check's name.
fault() {
    name=$1 sc=$2 sigs=$3 out=$4 same=$5 cmd=$6
    rm -f "$out" "$out.partial"
    nw=$(count_writes "$sc" "$cmd")
    $same "$out" || fail "$name-uninterrupted" "the uninterrupted run differs"
    bad=0 runs=0
    for sig in $sigs; do
        for i in $(points "$nw"); do
            runs=$((runs + 1))
            rm -f "$out"
            strace -f -o /dev/null -e trace="$sc" -e inject="$sc":signal=SIG$sig:when=$i \
                sh -c "$cmd" >/dev/null 2>&1
            inputs_same || { bad=$((bad + 1)); echo "$name SIG$sig at $sc $i: an input changed" >&2; }
            why=$(settle "$out" "$same" "$cmd") ||
                { bad=$((bad + 1)); echo "$name SIG$sig at $sc $i: $why" >&2; }
            rm -f "$out" "$out.partial"
        done
    done
    echo "test_faults: $name: $nw $sc calls, $runs injected runs ($sigs), $bad failures" >&2
    [ "$bad" -eq 0 ] && pass "${name}_faults_at_${runs}_writes" || fail "$name" "$bad of $runs runs failed"
}
# full_disk NAME BLOCKS OUT SAME CMD: CMD under a file-size limit fails, leaves
# no OUT and no partial, changes no input; the rerun is whole
full_disk() {
    rm -f "$2.partial" "$3"
    if (ulimit -f "$2"; sh -c "$5") >/dev/null 2>&1; then
        fail "$1-full-disk" "did not fail under a limit of $2 blocks"
    elif [ -e "$3" ] || [ -e "$3.partial" ]; then
        fail "$1-full-disk" "left $(ls "$3"* 2>/dev/null | tr '\n' ' ')"
    elif ! inputs_same; then
        fail "$1-full-disk" "an input changed"
    elif ! why=$(settle "$3" "$4" "$5"); then
        fail "$1-full-disk" "$why"
    else
        pass "$1-full-disk"
    fi
    rm -f "$3"
}

# the writers' inputs: the trace, and two shards of the same run
for s in 0 1; do
    "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 16 --shard $s/2 --quiet --out "$T/s$s.h5" >/dev/null 2>&1
    cp "$T/s$s.h5" "$T/s$s.orig"
done
# ---- the results writers: into TRACE.results.h5, never into the trace ----
RES="$T/t.results.h5"
# same_ds OUT OBJ: OBJ of OUT equals the reference's, but for its groups' creation times
same_ds() {
    ex=$(h5ls -r "$T/ref.out$2" 2>/dev/null | awk -v g="$2" '$2 == "Group" { printf " --exclude-attribute=%s%s", g, $1 }')
    h5diff -q --exclude-attribute="$2" $ex "$T/ref.out" "$1" "$2" >/dev/null 2>&1
}
ref_of() { rm -f "$RES"; sh -c "$1" >/dev/null 2>&1; mv "$RES" "$T/ref.out"; }
RC="'$B/olmoe-replay' '$T/t.h5' --model '$T/model' --policy 'topk(k=2)' --quiet"
ref_of "$RC"
same_replay() { same_ds "$1" '/replay/topk_k_2_norm_model/nll'; }
fault replay pwrite64 "KILL TERM INT" "$RES" same_replay "$RC"

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

# stats --store, analyze --in-trace and match-k write the results file the same way
SC="'$B/olmoe-replay' '$T/t.h5' --mode stats --policy 'topk(k=2)' --store --quiet"
ref_of "$SC"
same_stats() { same_ds "$1" /stats; }
fault stats-store pwrite64 KILL "$RES" same_stats "$SC"
AC="'$B/olmoe-analyze' coactivation '$T/t.h5' --in-trace --quiet"
ref_of "$AC"
same_analyze() { same_ds "$1" /analyze; }
fault analyze-in-trace pwrite64 KILL "$RES" same_analyze "$AC"
MC="'$B/olmoe-replay' '$T/t.h5' --match-k 2 --families topp --model '$T/model' --quiet"
ref_of "$MC"
same_match() { same_ds "$1" /match; }
fault match-k pwrite64 KILL "$RES" same_match "$MC"

# ---- the other writers: merge (virtual and --copy), kde fit, export ----
same_trace() {
    for d in /tokens /router_logits /baseline/nll /baseline/argmax /windows /documents /groups; do
        h5diff -q "$1" "$2" "$d" >/dev/null 2>&1 || { echo "$2: $d differs" >&2; return 1; }
    done
}
# a merged trace: verify says ok, and it is the unsharded capture
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 16 --quiet --out "$T/whole.h5" >/dev/null 2>&1
same_merged() { "$TR" verify "$1" 2>&1 | grep -q ': ok (merged' && same_trace "$T/whole.h5" "$1"; }
MG="'$TR' merge '$T/m.h5' '$T/s0.h5' '$T/s1.h5'"
fault merge pwrite64 "KILL TERM INT" "$T/m.h5" same_merged "$MG"
full_disk merge 4 "$T/m.h5" same_merged "$MG"
fault merge-copy pwrite64 KILL "$T/m.h5" same_merged "$MG --copy"
full_disk merge-copy 16 "$T/m.h5" same_merged "$MG --copy"
KD="'$B/olmoe-kde' fit '$T/t.h5' --out '$T/k.h5' --quiet"
sh -c "$KD" && mv "$T/k.h5" "$T/k.ref"
same_kde() { h5diff -q "$T/k.ref" "$1" /pdf >/dev/null 2>&1 && h5diff -q "$T/k.ref" "$1" /cdf >/dev/null 2>&1; }
fault kde-fit pwrite64 KILL "$T/k.h5" same_kde "$KD"
EX="'$TR' export '$T/t.h5' --what logits --out '$T/e.csv'"
sh -c "$EX" && mv "$T/e.csv" "$T/e.ref"
same_export() { cmp -s "$T/e.ref" "$1"; }
fault export write KILL "$T/e.csv" same_export "$EX"

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
NC=$(count_writes pwrite64 "'$CAP' $J --out '$T/g.h5' --force")
bad=0 runs=0 kept=0
for sig in KILL TERM INT; do for i in $(points "$NC"); do
    runs=$((runs + 1))
    rm -f "$T/g.h5" "$T/g.h5.partial"
    strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIG$sig:when=$i \
        "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1
    if [ -e "$T/g.h5.partial" ]; then
        kept=$((kept + 1))
        "$TR" verify "$T/g.h5.partial" >/dev/null 2>&1 || { bad=$((bad + 1)); echo "capture at $i: partial fails verify" >&2; }
        "$CAP" $J --resume --out "$T/g.h5" >/dev/null 2>&1
    elif [ ! -e "$T/g.h5" ]; then
        "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1
    fi
    inputs_same || { bad=$((bad + 1)); echo "capture SIG$sig at write $i: an input changed" >&2; }
    same_trace "$T/g-ref.h5" "$T/g.h5" || { bad=$((bad + 1)); echo "capture SIG$sig at write $i: differs" >&2; }
done; done
echo "test_faults: capture --group-field: $NC pwrite64 calls, $runs injected runs (KILL TERM INT; $kept resumed), $bad failures" >&2
[ "$bad" -eq 0 ] && pass "capture_faults_at_${runs}_writes" || fail capture_faults "$bad of $runs runs failed"
# a full disk: capture fails with its partial kept (or none); resume or rerun is whole
rm -f "$T/g.h5" "$T/g.h5.partial"
(ulimit -f 40; "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1) && fail capture-full-disk "did not fail under the limit"
if [ -e "$T/g.h5.partial" ]; then "$CAP" $J --resume --out "$T/g.h5" >/dev/null 2>&1
else "$CAP" $J --out "$T/g.h5" >/dev/null 2>&1; fi
check capture-full-disk same_trace "$T/g-ref.h5" "$T/g.h5"

# the header goes in before the partial appears: a kill at any write from the
# partial's appearance to its first commit leaves one with documents and groups
R=$(strace -f -o "$T/cr" -e trace=pwrite64,rename "$CAP" $J --out "$T/h.h5" >/dev/null 2>&1;
    awk '/rename\(.*partial.creating/ { print n; exit } /pwrite64/ { n++ }' "$T/cr")
bad=0 runs=0
for i in $(seq $((R + 1)) $((R + 6))); do
    rm -f "$T/h.h5" "$T/h.h5.partial"
    strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIGKILL:when=$i \
        "$CAP" $J --out "$T/h.h5" >/dev/null 2>&1
    [ -e "$T/h.h5.partial" ] || continue
    runs=$((runs + 1))
    "$TR" info "$T/h.h5.partial" 2>&1 | grep -q '^documents: *9 in 2 groups' ||
        { bad=$((bad + 1)); echo "capture killed at write $i: partial without its header" >&2; }
done
[ "$runs" -gt 3 ] && [ "$bad" -eq 0 ] && pass "partial_has_header_at_$runs" ||
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
