#!/bin/sh
# test_provenance.sh: every stored result points to the command that stored
# it (the "provenance" attribute, /provenance/<n>), olmoe-traces info lists
# the results with their commands, olmoe-report's report.md lists the
# commands, and olmoe-replay --skip-existing computes only what is missing:
# a top-k sweep, then the seed sweep (top-8 and BH) computes only BH.
. tests/lib.sh
B=$OLMOE_BIN
R="$B/olmoe-replay"
M1=$FIX/tiny-1layer
if ! "$B/olmoe-capture" --model "$M1" --tokens "$M1/tokens.txt" --ctx 32 --device cpu \
    --save-residuals --out "$T/run.h5" --quiet >/dev/null 2>"$T/err"; then
    fail setup "$(cat "$T/err")"
    exit 0
fi
RES=$T/run.results.h5
K8='topk(k=8,norm=model)'
prov_of() { h5dump -a "/replay/$(typable "$1")/provenance" "$RES" 2>/dev/null | sed -n 's/^ *(0): *//p'; }

# ---- --skip-existing ----
"$R" "$T/run.h5" --sweep topk --quiet >"$T/topk" 2>"$T/err" || fail sweep_topk "$(cat "$T/err")"
check topk_points_to_record_0 test "$(prov_of "$K8")" = 0
expect_fail refusal_names_skip_existing 'skip-existing' \
    "$R" "$T/run.h5" --sweep seed --pvalue pseudo --quiet
# which policies are skipped: notes on stderr (so not with --quiet)
if "$R" "$T/run.h5" --sweep seed --pvalue pseudo --skip-existing >"$T/seed" 2>"$T/err"
then pass skip_runs; else fail skip_runs "$(cat "$T/err")"; fi
check skip_says_topk8 grep -qxF "olmoe-replay: skipped (stored): $K8" "$T/err"
check skip_skips_only_topk8 test "$(grep -c 'skipped' "$T/err")" -eq 1
check skip_not_on_stdout sh -c "! grep -q 'skipped' '$T/seed'"
check skip_computes_no_topk sh -c "! grep -q '^replay topk' '$T/seed'"
n_bh=$(grep -c '^replay bh(' "$T/seed")
check skip_computes_every_bh test "$n_bh" -ge 1
check skip_stored_bh test "$(h5ls "$RES/replay" | grep -c '^bh_')" -eq "$n_bh"
check topk8_untouched test "$(prov_of "$K8")" = 0
check bh_points_to_record_1 test "$(prov_of 'bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=pseudo,norm=model)')" = 1
if "$R" "$T/run.h5" --sweep seed --pvalue pseudo --skip-existing >"$T/again" 2>"$T/err"
then pass skip_all_runs; else fail skip_all_runs "$(cat "$T/err")"; fi
check skip_all_nothing grep -qxF "olmoe-replay: every result is stored: nothing to compute" "$T/err"
check skip_all_stdout_empty test ! -s "$T/again"
check skip_all_no_record test "$(h5ls "$RES/provenance" | wc -l)" -eq 2

# ---- --mode stats --store --skip-existing ----
"$R" "$T/run.h5" --mode stats --policy topk --k 1,2 --store --quiet >/dev/null 2>"$T/err" ||
    fail stats_store "$(cat "$T/err")"
expect_fail stats_refusal_names_skip 'skip-existing' \
    "$R" "$T/run.h5" --mode stats --policy topk --k 1,2,3 --store --quiet
if "$R" "$T/run.h5" --mode stats --policy topk --k 1,2,3 --store --skip-existing >"$T/st" 2>"$T/err"
then pass stats_skip_runs; else fail stats_skip_runs "$(cat "$T/err")"; fi
check stats_skip_lines test "$(grep -c '^olmoe-replay: skipped (stored): topk(k=[12],' "$T/err")" -eq 2
check stats_skip_stored sh -c "h5ls '$RES/stats' | grep -c '^topk' | grep -qx 3"
check stats_points_to_record_3 sh -c "h5dump -a '/stats/topk_k_3_norm_model/provenance' '$RES' | grep -q '(0): 3\$'"

# ---- olmoe-traces info: every result with its command ----
"$B/olmoe-analyze" coactivation "$T/run.h5" --in-trace --quiet >/dev/null 2>"$T/err" ||
    fail analyze "$(cat "$T/err")"
"$B/olmoe-traces" info "$T/run.h5" >"$T/info" 2>"$T/err" || fail info "$(cat "$T/err")"
n_res=$(( $(h5ls "$RES/replay" | wc -l) + $(h5ls "$RES/stats" | wc -l) + $(h5ls "$RES/analyze/coactivation" | wc -l) ))
check info_counts grep -q "^results: *$n_res in $RES\$" "$T/info"
check info_topk_line grep -qE "^  replay +topk\(k=8,norm=model\) +command \[0\]  in /replay/topk_k_8_norm_model\$" "$T/info"
check info_bh_line grep -qE "^  replay +bh\(alpha=0\.2,max_k=4,.*command \[1\]  in /replay/bh_alpha_0_2_max_k_4_[a-zA-Z0-9_]*\$" "$T/info"
check info_analyze_line grep -qE "^  analyze +coactivation/topk\(k=4,norm=model\) +command \[4\]  in /analyze/coactivation/topk_k_4_norm_model\$" "$T/info"
check info_record_0 grep -qF "[0] $R $T/run.h5 --sweep topk --quiet" "$T/info"
check info_record_1 grep -qF "[1] $R $T/run.h5 --sweep seed --pvalue pseudo --skip-existing" "$T/info"
check info_stats_line grep -qE "^  stats +topk\(k=3,norm=model\) +command \[3\]  in /stats/topk_k_3_norm_model\$" "$T/info"
check info_record_4 grep -qF "[4] $B/olmoe-analyze coactivation $T/run.h5 --in-trace --quiet" "$T/info"
sum=$(h5dump -a /trace_checksum "$RES" | sed -n 's/^ *(0): *"\(.*\)"/\1/p')
check info_inputs_checksum grep -qF "inputs: trace $T/run.h5 ($sum), model" "$T/info"

# ---- --force recomputes; the result then points to the new record ----
"$R" "$T/run.h5" --policy 'topk(k=8)' --force --quiet >/dev/null 2>"$T/err" || fail force "$(cat "$T/err")"
check force_relinks test "$(prov_of "$K8")" = 5

# ---- a results file of its own (--out): its results point to its record ----
"$R" "$T/run.h5" --policy 'topk(k=2)' --out "$T/own.h5" --quiet >/dev/null 2>"$T/err" ||
    fail out "$(cat "$T/err")"
check out_points_to_record_0 sh -c "h5dump -a '/replay/topk_k_2_norm_model/provenance' '$T/own.h5' | grep -q '(0): 0\$'"

# ---- report.md lists the commands ----
"$B/olmoe-report" "$T/run.h5" --out "$T/rep" --quiet >/dev/null 2>"$T/err" || fail report "$(cat "$T/err")"
check report_section grep -q '^## Commands' "$T/rep/report.md"
check report_cmd_topk grep -qxF "   $R $T/run.h5 --sweep topk --quiet" "$T/rep/report.md"
check report_cmd_skip grep -qxF "   $R $T/run.h5 --sweep seed --pvalue pseudo --skip-existing" "$T/rep/report.md"
check report_cmd_analyze grep -qxF "   $B/olmoe-analyze coactivation $T/run.h5 --in-trace --quiet" "$T/rep/report.md"
check report_cmd_force grep -qxF "   $R $T/run.h5 --policy 'topk(k=8)' --force --quiet" "$T/rep/report.md"
check report_inputs grep -qF "Inputs: trace $T/run.h5 ($sum), model" "$T/rep/report.md"
check report_results grep -qF "Results: replay/$K8." "$T/rep/report.md"
