#!/bin/sh
# test_resume.sh: crash safety of olmoe-capture (docs/DESIGN.md §12).
# A capture killed with SIGKILL at random moments (its resumed runs too)
# leaves a partial that olmoe-traces verify accepts, and --resume continues
# it to the trace an uninterrupted run writes, bit for bit (every dataset
# and the totals). SIGINT stops at a batch boundary, keeps the partial and
# prints the command that continues it. Resume refuses other settings.
# OLMOE_KILLS=N sets the number of trials (default 3; a long soak ran
# 200), OLMOE_KILL_DELAY_MS the pause between batches of the
# killed runs (default 2: a run of this size on an idle machine writes its
# batches in a tenth of a second, after seconds of start-up).
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
TR="$OLMOE_BIN/olmoe-traces"
KILLS=${OLMOE_KILLS:-3}
KDELAY=${OLMOE_KILL_DELAY_MS:-2}
"$OLMOE_TESTBIN/test_forward_ref" --write-model "$T/model" >/dev/null ||
    { fail setup "cannot write the tiny model"; exit 0; }
# many short documents: hundreds of batches, each committed on its own
awk 'BEGIN { srand(7); for (d = 0; d < 120; d++) { n = 3 + int(rand() * 20); s = "";
     for (i = 0; i < n; i++) s = s " " 1 + int(rand() * 90); print s } }' >"$T/tok.txt"
A="--model $T/model --tokens $T/tok.txt --ctx 8 --batch 2 --quiet"
export OLMOE_TEST_BATCH_DELAY_MS=0

# the reference, and how long its batches take (from its partial's creation on)
OLMOE_TEST_BATCH_DELAY_MS=$KDELAY "$CAP" $A --out "$T/ref.h5" >"$T/ref.out" &
pid=$!
while [ ! -e "$T/ref.h5.partial" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
t0=$(date +%s.%N)
wait $pid || { fail reference "exit $?"; exit 0; }
DUR=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')

# ---- SIGINT: clean stop at a batch boundary, the command to continue ----
# (10 ms between batches: still running when the signal comes, on any machine)
OLMOE_TEST_BATCH_DELAY_MS=10 "$CAP" $A --out "$T/int.h5" 2>"$T/int.err" &
pid=$!
n=0
while [ ! -e "$T/int.h5.partial" ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done
sleep 0.1
kill -INT $pid
wait $pid
rc=$?
check sigint_exit_130 [ $rc -eq 130 ]
check sigint_keeps_partial [ -e "$T/int.h5.partial" ] && [ ! -e "$T/int.h5" ]
check sigint_says_interrupted grep -q "interrupted: [0-9]* of [0-9]* windows are in $T/int.h5.partial; continue with:" "$T/int.err"
"$TR" verify "$T/int.h5.partial" >"$T/v.out" 2>&1
check sigint_partial_verifies grep -q "ok (incomplete: [0-9]* of [0-9]* windows" "$T/v.out"
expect_fail partial_not_overwritten "add --resume to continue it, or --force" "$CAP" $A --out "$T/int.h5"
expect_fail resume_other_ctx "attribute 'ctx' differs" "$CAP" $A --ctx 16 --out "$T/int.h5" --resume
expect_fail resume_other_batch "attribute 'batch' differs (file 2, this run 3)" "$CAP" $A --batch 3 --out "$T/int.h5" --resume
cp "$T/tok.txt" "$T/tok2.txt"
echo "5 6 7" >>"$T/tok2.txt"
expect_fail resume_other_input "the input is not the one the interrupted capture read" "$CAP" --model "$T/model" --tokens "$T/tok2.txt" --ctx 8 --batch 2 --quiet --out "$T/int.h5" --resume
expect_fail resume_force_usage "--resume and --force" "$CAP" $A --out "$T/int.h5" --resume --force
# the printed command, as printed, continues it
cmd=$(sed -n 's/^  \(.*--resume\)$/\1/p' "$T/int.err")
if sh -c "$cmd" >"$T/int.out" 2>&1; then pass sigint_resume_runs; else fail sigint_resume_runs "$(head -c 300 "$T/int.out")"; fi
check sigint_resume_bit_identical same_trace "$T/ref.h5" "$T/int.h5"
check resume_prints_same_perplexity [ "$(cut -d, -f1 "$T/ref.out")" = "$(cut -d, -f1 "$T/int.out")" ]
check resume_no_partial_left [ ! -e "$T/int.h5.partial" ]
expect_fail resume_complete "already complete" "$CAP" $A --out "$T/int.h5" --resume
# killed after the partial was closed, before its rename: --resume renames it
cp "$T/ref.h5" "$T/cr.h5.partial"
"$CAP" $A --out "$T/cr.h5" --resume >/dev/null 2>&1
check resume_closed_partial same_trace "$T/ref.h5" "$T/cr.h5"
expect_fail resume_nothing "no interrupted capture to resume" "$CAP" $A --out "$T/none.h5" --resume

# ---- a fatal error after the first batch (file size limit): the partial is
# kept with the command that continues it, and continues to the same trace ----
lim=$(( $(wc -c <"$T/ref.h5") * 3 / 4 ))
sh -c "trap '' XFSZ; exec prlimit --fsize=$lim '$CAP' $A --out '$T/lim.h5'" 2>"$T/lim.err"
check error_exit_128 [ $? -eq 128 ]
check error_one_line_and_hint sh -c "[ \$(wc -l <'$T/lim.err') -eq 2 ] && grep -q 'kept $T/lim.h5.partial (every completed batch); continue with: .*--resume' '$T/lim.err'"
"$CAP" $A --out "$T/lim.h5" --resume >/dev/null 2>&1
check error_resume_bit_identical same_trace "$T/ref.h5" "$T/lim.h5"

# ---- SIGKILL at random moments, resumed runs killed too ----
seed=$$
kills=0 bad=0 resumes=0
i=0
while [ $i -lt "$KILLS" ]; do
    i=$((i + 1))
    rm -f "$T"/k.h5*
    mode="" runs=0 had=0
    while [ ! -e "$T/k.h5" ] && [ $runs -lt 30 ]; do
        runs=$((runs + 1))
        seed=$((seed + 1))
        # mostly while batches are written (the partial exists), sometimes earlier
        # (while the trace is created, or a resume copies the partial)
        early=$(awk -v s=$seed 'BEGIN { srand(s); print (rand() < 0.2) }')
        delay=$(awk -v s=$seed -v d="$DUR" -v e=$early 'BEGIN { srand(s); rand(); r = rand();
                printf "%.3f", e ? r * 0.3 : r * 0.9 * d }')
        OLMOE_TEST_BATCH_DELAY_MS=$KDELAY "$CAP" $A --out "$T/k.h5" $mode >/dev/null 2>"$T/k.err" &
        pid=$!
        # the first run of a trial is killed, a later one (fresh or resumed) half the time
        if [ $runs -eq 1 ] || [ $((seed % 2)) -eq 0 ]; then
            if [ "$early" = 0 ]; then
                while [ ! -e "$T/k.h5.partial" ] && kill -0 $pid 2>/dev/null; do sleep 0.005; done
            fi
            sleep "$delay"
            kill -KILL $pid 2>/dev/null && kills=$((kills + 1))
        fi
        wait $pid 2>/dev/null
        if [ -e "$T/k.h5.partial" ]; then
            if ! "$TR" verify "$T/k.h5.partial" >"$T/kv.out" 2>&1; then
                bad=$((bad + 1))
                echo "trial $i: partial does not verify: $(head -c 300 "$T/kv.out")" >&2
                cp "$T/k.h5.partial" "${TMPDIR:-/tmp}/olmoe-bad-partial.$$.$i.h5" 2>/dev/null
                break
            fi
            # a resumed run keeps what the killed one had committed
            got=$(sed -n 's/.*incomplete: \([0-9]*\) of.*/\1/p' "$T/kv.out")
            grep -q ': ok$' "$T/kv.out" && got=$had # complete: killed before its rename
            if [ "${got:-0}" -lt "$had" ]; then
                bad=$((bad + 1))
                echo "trial $i: $got windows after a kill, $had before" >&2
            fi
            had=${got:-0}
            mode=--resume
            resumes=$((resumes + 1))
        elif [ ! -e "$T/k.h5" ]; then
            mode="" had=0 # killed before the trace existed: start again
        fi
    done
    if [ ! -e "$T/k.h5" ]; then
        bad=$((bad + 1))
        echo "trial $i: no complete trace after $runs runs: $(head -c 300 "$T/k.err")" >&2
    elif ! same_trace "$T/ref.h5" "$T/k.h5"; then
        bad=$((bad + 1))
        echo "trial $i: resumed trace differs from the uninterrupted one" >&2
    fi
done
echo "test_resume: $KILLS trials, $kills kills, $resumes resumes from a partial, $bad failures" >&2
check kill_resume_bit_identical [ $bad -eq 0 ]

# ---- a piped input: killed, then resumed only from the same bytes ----
P="--model $T/model --tokens /dev/stdin --ctx 8 --batch 2 --quiet"
cat "$T/tok.txt" | OLMOE_TEST_BATCH_DELAY_MS=10 "$CAP" $P --out "$T/p.h5" 2>/dev/null &
pid=$!
n=0
while [ ! -e "$T/p.h5.partial" ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done
sleep 0.1
kill -KILL $pid
{ wait $pid; } 2>/dev/null
check pipe_killed_keeps_partial [ -e "$T/p.h5.partial" ] && [ ! -e "$T/p.h5" ]
# the same bytes reordered (same length): refused, not spliced
tac "$T/tok.txt" >"$T/tac.txt"
expect_fail pipe_resume_other_bytes "the input is not the one the interrupted capture read" \
    sh -c "cat '$T/tac.txt' | '$CAP' $P --out '$T/p.h5' --resume"
check pipe_refusal_keeps_partial [ -e "$T/p.h5.partial" ]
cat "$T/tok.txt" | "$CAP" $P --out "$T/p.h5" --resume >/dev/null 2>"$T/p.err" ||
    fail pipe_resume "$(head -c 300 "$T/p.err")"
check pipe_resume_bit_identical same_trace "$T/ref.h5" "$T/p.h5"
