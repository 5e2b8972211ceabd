#!/bin/sh
# test_kde_cli.sh: olmoe-kde fit|show|pvalue end to end on a synthetic trace,
# and its errors (one short line, exit 128 fatal / 129 usage, no output left).
. tests/lib.sh
B=$OLMOE_BIN
if ! "$OLMOE_TESTBIN/test_stats" --write-trace "$T/run.h5" 3000 3 64 4 float32 2>"$T/err"; then
    fail make_trace "$(cat "$T/err")"
    exit 0
fi

if "$B/olmoe-kde" fit "$T/run.h5" --out "$T/null.h5" >"$T/fit.out" 2>"$T/err"; then pass fit
else fail fit "$(cat "$T/err")"; fi
check fit_no_partial test ! -e "$T/null.h5.partial"
check fit_table test "$(grep -c '^ *[0-9]' "$T/fit.out")" -eq 3
check format_attribute sh -c "h5dump -a format '$T/null.h5' | grep -q '\"olmoe-kde\"'"
"$B/olmoe-kde" show "$T/null.h5" >"$T/show" 2>"$T/err"
check show_rows test "$(grep -c '^ *[0-9]' "$T/show")" -eq 3
check show_tokens grep -q '3000 tokens x 64 experts' "$T/show"

# far below the grid: 1 - 1e-7 in fp32; far above: 1e-7; the median: about 0.5
"$B/olmoe-kde" pvalue "$T/null.h5" --layer 1 -1000 1000 >"$T/pv" 2>"$T/err"
check pvalue_low test "$(sed -n 1p "$T/pv")" = 0.999999881
check pvalue_high test "$(sed -n 2p "$T/pv")" = 1.00000001e-07
med=$(awk '$1 == 1 { print $9 }' "$T/show")
"$B/olmoe-kde" pvalue "$T/null.h5" --layer 1 "$med" >"$T/pv" 2>"$T/err"
check pvalue_median awk '{ exit !($1 > 0.49 && $1 < 0.51) }' "$T/pv"

expect_fail exists "already exists" "$B/olmoe-kde" fit "$T/run.h5" --out "$T/null.h5"
expect_fail bandwidth "bandwidth" "$B/olmoe-kde" fit "$T/run.h5" --out "$T/n2.h5" --bandwidth wide
"$B/olmoe-kde" fit "$T/run.h5" --out "$T/n2.h5" --bandwidth -1 2>/dev/null
check usage_exit_129 test $? -eq 129
check no_output_on_error test ! -e "$T/n2.h5" -a ! -e "$T/n2.h5.partial"
expect_fail layers "layers" "$B/olmoe-kde" fit "$T/run.h5" --out "$T/n2.h5" --layers 1-7
expect_fail no_out "out FILE is required" "$B/olmoe-kde" fit "$T/run.h5"
expect_fail no_trace "No such file" "$B/olmoe-kde" fit "$T/none.h5" --out "$T/n2.h5"
check no_output_on_fatal test ! -e "$T/n2.h5" -a ! -e "$T/n2.h5.partial"

if "$B/olmoe-kde" fit "$T/run.h5" --out "$T/sub.h5" --layers 0,2 --grid 512 --bandwidth silverman \
    --max-tokens 1000 --quiet >/dev/null 2>"$T/err"; then pass fit_options
else fail fit_options "$(cat "$T/err")"; fi
"$B/olmoe-kde" show "$T/sub.h5" >"$T/show" 2>&1
check subset_rows test "$(grep -c '^ *[0-9]' "$T/show")" -eq 2
check subset_header grep -q 'silverman bandwidth, 512 grid points, 2 of 3 layers' "$T/show"
check max_tokens grep -q '1000 tokens x 64 experts' "$T/show"
expect_fail missing_layer "no fit for layer 1" "$B/olmoe-kde" pvalue "$T/sub.h5" --layer 1 0.5
expect_fail pvalue_nan "not a number" "$B/olmoe-kde" pvalue "$T/sub.h5" --layer 0 abc

if "$B/olmoe-kde" fit "$T/run.h5" --out "$T/proto.h5" --compat prototype --quiet >/dev/null 2>"$T/err"
then pass fit_prototype; else fail fit_prototype "$(cat "$T/err")"; fi
"$B/olmoe-kde" show "$T/proto.h5" >"$T/show" 2>&1
check prototype_header grep -q 'prototype construction, scott bandwidth, 10000 grid points' "$T/show"

expect_fail show_not_null "not a null distribution" "$B/olmoe-kde" show "$T/run.h5"
expect_fail unknown_cmd "unknown command" "$B/olmoe-kde" fits
check help sh -c "'$B/olmoe-kde' pvalue --help | grep -q 'usage: olmoe-kde pvalue'"

# the man page lists exactly the options the subcommands' --help list
for c in fit show pvalue check; do "$B/olmoe-kde" $c --help; done | grep -o -- '--[a-z][a-z-]*' |
    grep -v -- '--help' | sort -u >"$T/help_opts"
grep -o -- '\\-\\-[a-z][a-z\\-]*' man/olmoe-kde.1 | sed 's/\\//g' | sort -u >"$T/man_opts"
check man_matches_help cmp -s "$T/help_opts" "$T/man_opts"

# ---- check: the null of the fixture trace on its own tokens, CSV and figure ----
if "$B/olmoe-kde" check "$T/null.h5" "$T/run.h5" --start 10 --csv "$T/check.csv" >"$T/check" 2>"$T/err"; then
    pass check_runs
else fail check_runs "$(cat "$T/err")"; fi
check check_table grep -q '^ *0 *[0-9]* *0\.[0-9]*' "$T/check"
check check_csv_qq test "$(grep -c '^qq,0,' "$T/check.csv")" -eq 99
check check_csv_disc test "$(grep -c '^discoveries,0,' "$T/check.csv")" -eq 12
check check_help sh -c "'$B/olmoe-kde' check --help | grep -q 'usage: olmoe-kde check'"
expect_fail check_png_needs_csv "give --csv" "$B/olmoe-kde" check "$T/null.h5" "$T/run.h5" --png "$T/x.png"

# ---- --per-expert: a null per layer and expert, each that expert's logits ----
if "$B/olmoe-kde" fit "$T/run.h5" --per-expert --out "$T/pe.h5" --quiet >/dev/null 2>"$T/err"; then pass per_expert_fit
else fail per_expert_fit "$(cat "$T/err")"; fi
"$B/olmoe-kde" show "$T/pe.h5" >"$T/pe_show" 2>"$T/err"
check per_expert_rows test "$(grep -c '^ *[0-9]' "$T/pe_show")" -eq 192
# the median of expert e's own logits at layer 1 (from the trace, not from us)
# has p-value 0.5 under that expert's null
"$B/olmoe-traces" export "$T/run.h5" --what logits >"$T/logits.csv" 2>"$T/err"
for e in 3 40; do
    med=$(awk -F, -v c=$((e + 3)) 'NR > 1 && $2 == 1 { print $c }' "$T/logits.csv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    "$B/olmoe-kde" pvalue "$T/pe.h5" --layer 1 --expert $e -- "$med" >"$T/pv" 2>"$T/err"
    check "per_expert_median_$e" awk '{ exit !($1 > 0.47 && $1 < 0.53) }' "$T/pv"
done
expect_fail per_expert_needs_expert "per-expert null: --expert" "$B/olmoe-kde" pvalue "$T/pe.h5" --layer 1 0.5
expect_fail per_layer_no_expert "one null per layer" "$B/olmoe-kde" pvalue "$T/null.h5" --layer 1 --expert 2 0.5
# pvalue=kde routes with it
"$B/olmoe-replay" "$T/run.h5" --mode stats --policy bh --alpha 0.2 --kde "$T/pe.h5" --quiet >"$T/st" 2>"$T/err"
check per_expert_routes grep -q '^bh(alpha=0.2' "$T/st"
