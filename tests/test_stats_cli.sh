#!/bin/sh
# test_stats_cli.sh: olmoe-replay --mode stats end to end (table, JSON, CSV,
# HDF5 in a file and in the trace, sweeps, presets) and its errors.
. tests/lib.sh
B=$OLMOE_BIN
if ! "$OLMOE_TESTBIN/test_stats" --write-trace "$T/run.h5" 2000 4 64 3 bfloat16 2>"$T/err" ||
   ! "$B/olmoe-kde" fit "$T/run.h5" --out "$T/null.h5" --quiet >/dev/null 2>"$T/err"; then
    fail setup "$(cat "$T/err")"
    exit 0
fi
R() { "$B/olmoe-replay" "$T/run.h5" --mode stats --quiet "$@"; }

if R --policy 'bh(alpha=0.1,max_k=8)' --kde "$T/null.h5" --json "$T/s.json" --csv "$T/s.csv" \
    --out "$T/r.h5" >"$T/out" 2>"$T/err"; then pass one_policy
else fail one_policy "$(cat "$T/err")"; fi
check table_row grep -q '^bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model) ' "$T/out"
check json_format grep -q '"format": "olmoe-stats"' "$T/s.json"
# one header, then policy x (all + 3 groups) x (all + 4 layers)
check csv_rows test "$(wc -l <"$T/s.csv")" -eq 21
check csv_quoted grep -q '^"bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)","genre-2",3,' "$T/s.csv"
check h5_out sh -c "h5ls -r '$T/r.h5' | grep -q 'stats/bh_alpha_0_1_max_k_8_min_k_1_T_1_pvalue_kde_norm_model/group_load'"
check no_partials sh -c "! ls '$T' | grep -q partial"

R --sweep seed --pvalue pseudo >"$T/out" 2>"$T/err"
check seed_21 test "$(grep -c '^\(topk\|bh\)(' "$T/out")" -eq 21
R --policy topk --k 1,2,4 --policy 'topp(p=0.9)' >"$T/out" 2>"$T/err"
check option_sets test "$(grep -c '^\(topk\|topp\)(' "$T/out")" -eq 4
check topk8_full sh -c "R() { :; }; '$B/olmoe-replay' '$T/run.h5' --mode stats --quiet --policy topk | grep '^topk(k=8,norm=model) ' | grep -q ' 8.000  0.00 1.000 1.000 1.0000 1.0000 '"
if R --policy 'bh(alpha=0.2,max_k=16,pvalue=empirical)' --empirical-max 500 >"$T/out" 2>"$T/err"
then pass empirical; else fail empirical "$(cat "$T/err")"; fi

if R --policy topk --store 2>"$T/err" >/dev/null; then pass store; else fail store "$(cat "$T/err")"; fi
check store_group sh -c "h5ls -r '$T/run.results.h5' | grep -q 'stats/topk_k_8_norm_model/load'"
check store_leaves_trace sh -c "! h5ls '$T/run.h5' | grep -q stats"
expect_fail store_twice "already exists" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy topk --store
if R --policy topk --store --force 2>"$T/err" >/dev/null; then pass store_force
else fail store_force "$(cat "$T/err")"; fi
# the trace still reads after the in-place write
if R --policy 'topk(k=2)' >/dev/null 2>"$T/err"; then pass trace_still_reads
else fail trace_still_reads "$(cat "$T/err")"; fi

expect_fail needs_kde "needs --kde" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy 'bh(alpha=0.1)'
expect_fail bad_alpha "alpha must be in (0, 1), got 2" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy bh --alpha 2
expect_fail k_too_big "k=65 is more than the model's 64 experts" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy 'topk(k=65)'
expect_fail no_policy "no policy given" "$B/olmoe-replay" "$T/run.h5" --mode stats
expect_fail option_unused "no policy given takes alpha" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy topk --alpha 0.1
expect_fail bad_sweep "neither a preset" "$B/olmoe-replay" "$T/run.h5" --mode stats --sweep nothing
expect_fail unknown_mode "unknown mode" "$B/olmoe-replay" "$T/run.h5" --mode fast --policy topk
expect_fail missing_trace "No such file" "$B/olmoe-replay" "$T/none.h5" --mode stats --policy topk
expect_fail not_a_null "not a null distribution" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy topk --kde "$T/run.h5"
expect_fail existing_json "already exists" "$B/olmoe-replay" "$T/run.h5" --mode stats --policy topk --json "$T/s.json"
"$B/olmoe-replay" "$T/run.h5" --mode stats --policy 'bh(alpha=0.1)' --json "$T/bad.json" 2>/dev/null
check usage_129 test $? -eq 129
check nothing_left test ! -e "$T/bad.json" -a ! -e "$T/bad.json.partial"

# presets drop what does not fit a smaller model, with a note
"$OLMOE_TESTBIN/test_stats" --write-trace "$T/small.h5" 300 2 16 0 float32 2>/dev/null
"$B/olmoe-replay" "$T/small.h5" --mode stats --sweep topk >"$T/out" 2>"$T/err"
check preset_skip test "$(grep -c '^topk(' "$T/out")" -eq 5
check preset_note grep -q 'skipping topk(k=32,norm=model)' "$T/err"
check help sh -c "'$B/olmoe-replay' --mode stats --help | grep -q -- '--sweep NAME|FILE'"

# the man page lists every option of --mode stats (the other modes add theirs)
"$B/olmoe-replay" --mode stats --help | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' |
    sort -u >"$T/help_opts"
grep -o -- '\\-\\-[a-z][a-z\\-]*' man/olmoe-replay.1 | sed 's/\\//g' | sort -u >"$T/man_opts"
check man_has_stats_options sh -c "comm -23 '$T/help_opts' '$T/man_opts' | grep -q . && exit 1 || exit 0"
