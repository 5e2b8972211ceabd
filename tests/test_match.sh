#!/bin/sh
# test_match.sh: olmoe-replay --match-k end to end on the tiny one-layer
# fixture (captured here with --save-residuals): the table, its CSV and
# /match, scores that equal separate replays of the same policies, exact
# rows; calibration alone on a synthetic trace; targets out of reach; the
# new families and skip(beta=median) in stats mode; and the errors.
. tests/lib.sh
B=$OLMOE_BIN
M=$FIX/tiny-1layer
if ! "$B/olmoe-capture" --model "$M" --tokens "$M/tokens.txt" --ctx 32 --save-residuals \
        --device cpu --out "$T/run.h5" --quiet >/dev/null 2>"$T/err" ||
   ! "$B/olmoe-kde" fit "$T/run.h5" --out "$T/null.h5" --quiet >/dev/null 2>>"$T/err" ||
   ! "$OLMOE_TESTBIN/test_stats" --write-trace "$T/syn.h5" 3000 3 64 0 float32 2>>"$T/err"; then
    fail setup "$(cat "$T/err")"
    exit 0
fi
cp "$T/run.h5" "$T/orig.h5"
R() { "$B/olmoe-replay" "$@"; }
# |a - b| <= tol
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t) }'; }

# ---- end to end: 3 targets x (top-k + 6 families), replay ----
if R "$T/run.h5" --match-k 1,2,3 --model "$M" --kde "$T/null.h5" --out "$T/m.h5" --csv "$T/m.csv" \
    --quiet >"$T/out" 2>"$T/err"; then pass e2e
else fail e2e "$(cat "$T/err")"; fi
check csv_rows test "$(wc -l <"$T/m.csv")" -eq 22
check grid_rows test "$(grep -c '^\(topk\|topp\|bh\|threshold\|skip\|entropy\|hc\)  ' "$T/out")" -eq 7
check h5_match sh -c "h5ls '$T/m.h5/match' | grep -q delta_vs_topk && h5ls '$T/m.h5/match' | grep -q 'achieved_k.*{21}'"
check h5_replay sh -c "h5ls -r '$T/m.h5' | grep -q 'replay/topk_k_2_norm_model/nll'"
check trace_untouched sh -c "! h5ls '$T/run.h5' | grep -q '^match'"
# every reached point is within the tolerance; top-k rows have delta 0
check within_tol awk -F, 'NR > 1 && $7 == 1 { d = $6 - $2; if (d < 0) d = -d; if (d > 0.01) bad = 1 } END { exit bad }' "$T/m.csv"
check topk_delta_zero awk -F, 'NR > 1 && $3 == "\"topk\"" && $11 != 0 { bad = 1 } END { exit bad }' "$T/m.csv"
# scores equal separate replays of the same policies
for fam in topk skip entropy; do
    line=$(grep "^replay  *2 $fam " "$T/out")
    id=$(echo "$line" | awk '{ print $NF }')
    ppl=$(echo "$line" | awk '{ print $7 }')
    R "$T/orig.h5" --model "$M" --policy "$id" --out "$T/one-$fam.h5" --quiet >"$T/one" 2>"$T/err"
    single=$(awk -v id="$id" '$1 == "replay" && $2 == id { print $3 }' "$T/one")
    check "same_as_replay_$fam" near "$ppl" "$single" 0.0015
done

# ---- with --exact: exact rows too, in the trace itself ----
if R "$T/run.h5" --match-k 2 --families 'topp,skip(max_k=4)' --model "$M" --exact --quiet \
    >"$T/out" 2>"$T/err"; then pass exact
else fail exact "$(cat "$T/err")"; fi
check exact_grid grep -q '^# exact: ' "$T/out"
check exact_rows test "$(grep -c '^exact  ' "$T/out")" -eq 3
check in_trace sh -c "h5ls -r '$T/run.results.h5' | grep -q '^/match/kind' && h5ls -r '$T/run.results.h5' | grep -q '^/exact/skip_beta_'"
expect_fail match_exists "/match already exists (--force recomputes it, --skip-existing leaves it)" \
    R "$T/run.h5" --match-k 2 --families topp --model "$M"
# --skip-existing: a stored /match is nothing to do, said before the calibration starts
if R "$T/run.h5" --match-k 2 --families topp --model "$M" --skip-existing >"$T/skip" 2>"$T/err"
then pass skip_existing; else fail skip_existing "$(cat "$T/err")"; fi
check skip_says_match grep -qxF "olmoe-replay: skipped (stored): /match" "$T/err"
check skip_no_calibration sh -c "! grep -q 'calibrat' '$T/skip' '$T/err'"
if R "$T/run.h5" --match-k 2 --families topp --model "$M" --force --quiet >/dev/null 2>"$T/err"
then pass force; else fail force "$(cat "$T/err")"; fi

# ---- calibration alone (no model) on a synthetic trace ----
S="$T/syn.h5"
if R "$S" --match-k 1.5,3 --families 'topp,bh(pvalue=pseudo),skip,entropy,threshold,hc(pvalue=pseudo)' \
    --out "$T/c.h5" >"$T/out" 2>"$T/err"; then pass calibrate_only
else fail calibrate_only "$(cat "$T/err")"; fi
check calibration_grid grep -q '^# calibration: ' "$T/out"
check calibration_kind sh -c "h5dump -d /match/kind '$T/c.h5' | grep -q '\"calibration\"'"
check notes_on_stderr grep -q 'skip at 1.5: beta=' "$T/err"
R "$S" --match-k 6 --match-max-k 4 --families skip --mode stats --out "$T/c2.h5" >"$T/out" 2>"$T/err"
check out_of_reach grep -q 'skip at k=6: cannot reach it: at most 4.000' "$T/out"
R "$S" --match-k 2 --families 'skip(min_k=3)' --out "$T/c3.h5" >"$T/out" 2>&1
check below_min_k grep -q 'cannot go below 3.000' "$T/out"

expect_fail families_topk "topk has no continuous parameter" R "$S" --match-k 2 --families topk
expect_fail families_knob "leave p out" R "$S" --match-k 2 --families 'topp(p=0.5)'
expect_fail target_range "more than the 64 experts" R "$S" --match-k 65 --families topp
expect_fail target_bad "is not a new number >= 1" R "$S" --match-k 0.5 --families topp
expect_fail target_twice "is not a new number >= 1" R "$S" --match-k 2,2 --families topp
expect_fail with_policy "do not go with --match-k" R "$S" --match-k 2 --policy topk
expect_fail needs_kde "needs --kde" R "$S" --match-k 2 --families bh
expect_fail exact_model "--exact needs --model" R "$S" --match-k 2 --exact
expect_fail no_residuals "save-residuals" R "$S" --match-k 2 --families topp --model "$M"
expect_fail knob_option "--alpha: --match-k calibrates alpha" R "$S" --match-k 2 --families bh --alpha 0.1 --pvalue pseudo
expect_fail unused_option "--pvalue: no family given takes pvalue" R "$S" --match-k 2 --families topp --pvalue pseudo
expect_fail option_set "one value with --match-k" R "$S" --match-k 2 --families topp --max-k 4,8
expect_fail stats_model "calibrates only" R "$S" --match-k 2 --mode stats --model "$M"
check nothing_left sh -c "! ls '$T' | grep -q partial"

# ---- the new families in stats mode, skip(beta=median) with --calibrate ----
R "$S" --mode stats --quiet --policy 'threshold(tau=0.05)' --policy 'entropy(scale=0.3,max_k=16)' \
    --policy 'hc(beta=0.5,pvalue=pseudo)' --policy 'skip(beta=0.3)' >"$T/out" 2>"$T/err"
check stats_families test "$(grep -c '^\(threshold\|entropy\|hc\|skip\)(' "$T/out")" -eq 4
R "$S" --mode stats --quiet --policy 'skip(beta=median,max_k=8)' --beta-trace "$S" >"$T/out" 2>"$T/err"
check stats_median grep -q '^skip(beta=median-[0-9a-f]\{12\},max_k=8,min_k=1,T=1,norm=model) ' "$T/out"
expect_fail median_needs_calib "needs a calibration trace (--beta-trace" R "$S" --mode stats --policy 'skip(beta=median)'
expect_fail calibrate_unused "--beta-trace: no policy given uses it" R "$S" --mode stats --policy topk --beta-trace "$S"
# --calibrate is match-k's calibration trace only
expect_fail calibrate_one_meaning "unknown option '--calibrate'" R "$S" --mode stats --policy 'skip(beta=median)' --calibrate "$S"

# ---- help of match-k, however it is asked for ----
R --match-k --help >"$T/h1" 2>&1
check match_k_help_value sh -c "grep -q -- '--families' '$T/h1'"
R --mode match-k --help >"$T/h2" 2>&1
check match_k_help_mode sh -c "grep -q -- '--families' '$T/h2'"

# ---- the scored mean k beside every target: table, JSON; --calibrate-scored ----
if R "$T/orig.h5" --match-k 2 --families 'topp,skip(max_k=4)' --model "$M" --out "$T/j.h5" \
    --json "$T/j.json" --quiet >"$T/out" 2>"$T/err"; then pass json_run
else fail json_run "$(cat "$T/err")"; fi
check grid_has_scored_k grep -q '^topp  .*@[0-9]' "$T/out"
check json_scored_k sh -c "grep -q '\"scored_k\": [0-9]' '$T/j.json' && grep -q '\"calibrated_on\": \"logits\"' '$T/j.json'"
if R "$T/orig.h5" --match-k 2 --families 'topp,skip(max_k=4)' --model "$M" --calibrate-scored \
    --out "$T/cs.h5" --csv "$T/cs.csv" --quiet >"$T/out" 2>"$T/err"; then pass calibrate_scored
else fail calibrate_scored "$(cat "$T/err")"; fi
# every reached family row: the mean k the replay scored is the target
check scored_within_tol awk -F, 'NR > 1 && $7 == 1 { n++; d = $8 - $2; if (d < 0) d = -d; if (d > 0.01) bad = 1 } END { exit bad || n < 2 }' "$T/cs.csv"
check scored_header grep -q 'calibrate-scored' "$T/out"
expect_fail calibrate_scored_model "needs --model" R "$S" --match-k 2 --families topp --calibrate-scored

# ---- the man page lists every option of --match-k ----
R "$S" --match-k 2 --help | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' | sort -u >"$T/help_opts"
grep -o -- '\\-\\-[a-z][a-z\-]*' man/olmoe-replay.1 | sed 's/\\//g' | sort -u >"$T/man_opts"
check man_has_match_options sh -c "comm -23 '$T/help_opts' '$T/man_opts' | grep -q . && exit 1 || exit 0"
