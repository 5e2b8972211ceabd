# test_analyze_cli.sh: olmoe-analyze as a command: every subcommand on the
# hand-made traces of tests/test_analyze_util.h (answers known by
# construction), its outputs (tables, CSV, JSON, HDF5 in a file or in the
# trace), refusals, usage errors, nothing left behind on failure, and memory
# that does not grow with the trace.
. tests/lib.sh
A="$OLMOE_BIN/olmoe-analyze"
"$OLMOE_TESTBIN/test_analyze" --make "$T" || { fail make "cannot write the fixtures"; exit 1; }

# usage errors exit 129
usage_fail() { # usage_fail NAME PATTERN CMD...
    n=$1 pat=$2; shift 2
    "$@" >"$T/stdout" 2>"$T/stderr"
    rc=$?
    if [ "$rc" -ne 129 ]; then fail "$n" "exit $rc, wanted 129: $(head -c 300 "$T/stderr")"
    elif ! grep -q -- "$pat" "$T/stderr"; then fail "$n" "stderr lacks '$pat': $(head -c 300 "$T/stderr")"
    else pass "$n"; fi
}

# ---- coactivation: experts 0 and 1 of layer 0 always together ----
if "$A" coactivation "$T/a.h5" --top 2 --csv "$T/co.csv" --json "$T/co.json" >"$T/out" 2>"$T/err"; then
    pass coactivation_runs
else
    fail coactivation_runs "$(cat "$T/err")"
fi
check coactivation_pair grep -Eq '^ +0 +0 +1 +1\.0000 +300 +300$' "$T/out"
check coactivation_csv_rows test "$(wc -l <"$T/co.csv")" -eq $((1 + 3 * 8 * 8))
check coactivation_csv_cell grep -qx '0,0,1,300,300,1' "$T/co.csv"
if command -v python3 >/dev/null 2>&1; then
    check coactivation_json python3 -c "
import json, sys
d = json.load(open('$T/co.json'))
assert d['analysis'] == 'coactivation' and d['n_tokens'] == 600
assert d['layers'][0]['prob'][0][1] == 1.0 and d['layers'][1]['max_cond_mean'] == 1.0
"
fi
"$A" coactivation "$T/a.h5" --policy 'topk(k=1)' --layers 0 --quiet --csv "$T/k1.csv" >/dev/null 2>"$T/err"
check coactivation_policy grep -qx '0,0,0,300,300,1' "$T/k1.csv"

# ---- flow ----
"$A" flow "$T/a.h5" --from 1 --to 2 --top 3 >"$T/out" 2>"$T/err"
check flow_runs grep -Eq '^ +1 +2 +600 ' "$T/out"
"$A" flow "$T/a.h5" --quiet --csv "$T/flow.csv" >/dev/null 2>"$T/err"
check flow_all_pairs test "$(grep -c '^1,2,' "$T/flow.csv")" -eq 64
usage_fail flow_bad_layer 'layers 0..2' "$A" flow "$T/a.h5" --from 2
usage_fail flow_to_without_from '--to needs --from' "$A" flow "$T/a.h5" --to 1
usage_fail flow_one_layer 'needs two layers' "$A" flow "$T/a.h5" --layers 1

# ---- specialization ----
"$A" specialization "$T/a.h5" --by group --top 2 >"$T/out" 2>"$T/err"
check group_nmi grep -Eq '^ +1 +2\.000 +1\.0000 +3\.000$' "$T/out"
check group_top grep -Eq '^ +1 +4 science +100 +1\.0000 +0\.2222 +4\.500$' "$T/out"
check group_left_out grep -q '150 tokens in no group' "$T/out"
expect_fail group_missing 'no document groups' "$A" specialization "$T/nogroups.h5" --by group
"$A" specialization "$T/a.h5" --by token --min-count 12 --quiet --csv "$T/tok.csv" \
    --tokenizer models/olmoe-brown/tokenizer.json >/dev/null 2>"$T/err"
check token_csv grep -q '^layer,token_id,token,count,top_expert,top_share$' "$T/tok.csv"
# ids below 25 always go to experts v%8 and (v+3)%8 at layer 2: share 1
check token_share awk -F, '$1 == 2 && $2 < 25 && $NF != 1 { bad = 1 } END { exit bad }' "$T/tok.csv"
usage_fail by_missing '--by group or --by token' "$A" specialization "$T/a.h5"
usage_fail by_bad "--by 'x'" "$A" specialization "$T/a.h5" --by x
usage_fail layers_bad "layers '7'" "$A" specialization "$T/a.h5" --by token --layers 7
# the message nests the parser's own ("7 is out of range"), which once came out garbled
usage_fail layers_bad_says_which "--layers '0,7': 7 is out of range \[0, 2\] (the trace has 3 layers" \
    "$A" coactivation "$T/a.h5" --layers 0,7

# ---- compare ----
"$A" compare "$T/a.h5" "$T/b.h5" --top 1 --csv "$T/cmp.csv" >"$T/out" 2>"$T/err"
check compare_overlap grep -qx '1,0.5,0,0,.*,2,2' "$T/cmp.csv"
check compare_worst grep -Eq '^ +123 ' "$T/out"
expect_fail compare_tokens 'different tokens (position 77' "$A" compare "$T/a.h5" "$T/c.h5" --csv "$T/bad.csv"
check compare_no_leftover test ! -e "$T/bad.csv" -a ! -e "$T/bad.csv.partial"
expect_fail compare_length 'has 500' "$A" compare "$T/a.h5" "$T/d.h5"
usage_fail compare_one 'two traces' "$A" compare "$T/a.h5"

# ---- HDF5 results: a file, the trace ----
"$A" coactivation "$T/a.h5" --quiet --out "$T/res.h5" >/dev/null 2>"$T/err"
check out_file test -s "$T/res.h5" -a ! -e "$T/res.h5.partial"
expect_fail out_exists 'use --force' "$A" coactivation "$T/a.h5" --out "$T/res.h5"
"$A" flow "$T/a.h5" --quiet --out "$T/res.h5" >/dev/null 2>"$T/err" && pass out_adds || fail out_adds "$(cat "$T/err")"
"$A" coactivation "$T/a.h5" --quiet --out "$T/res.h5" --force >/dev/null 2>"$T/err" && pass out_force ||
    fail out_force "$(cat "$T/err")"
if command -v h5ls >/dev/null 2>&1; then
    check out_holds_both sh -c "h5ls -r '$T/res.h5' | grep -q '^/analyze/flow/topk_k_2_norm_model/prob ' &&
        h5ls -r '$T/res.h5' | grep -q '^/analyze/coactivation/topk_k_2_norm_model/prob '"
fi
cp "$T/a.h5" "$T/a2.h5"
expect_fail out_not_a_trace 'not an olmoe-analyze results file' "$A" coactivation "$T/a.h5" --out "$T/a2.h5" --force
check out_trace_untouched cmp -s "$T/a.h5" "$T/a2.h5"
cp "$T/a.h5" "$T/t.h5"
"$A" compare "$T/t.h5" "$T/b.h5" --in-trace --quiet >/dev/null 2>"$T/err" && pass in_trace || fail in_trace "$(cat "$T/err")"
expect_fail in_trace_exists 'use --force' "$A" compare "$T/t.h5" "$T/b.h5" --in-trace --quiet
"$A" compare "$T/t.h5" "$T/b.h5" --in-trace --quiet --force >/dev/null 2>"$T/err" && pass in_trace_force ||
    fail in_trace_force "$(cat "$T/err")"
"$A" coactivation "$T/t.h5" --in-trace --quiet --name mine >/dev/null 2>"$T/err" && pass in_trace_name ||
    fail in_trace_name "$(cat "$T/err")"
check in_trace_verifies sh -c "'$OLMOE_BIN/olmoe-traces' verify '$T/t.h5' >/dev/null"
if command -v h5ls >/dev/null 2>&1; then
    check in_trace_layout sh -c "h5ls -r '$T/t.results.h5' | grep -q '^/analyze/compare/b_h5/overlap '"
fi
# the group's name is typable; the result is shown, and found, by its name
"$OLMOE_BIN/olmoe-traces" info "$T/t.h5" >"$T/info" 2>&1
check in_trace_info grep -qE '^  analyze +compare/b\.h5 .* in /analyze/compare/b_h5$' "$T/info"
check in_trace_info_named grep -qE '^  analyze +coactivation/mine .*command' "$T/info"
usage_fail out_and_in_trace 'choose one' "$A" coactivation "$T/a.h5" --out "$T/x.h5" --in-trace

# ---- policies needing more ----
expect_fail kde_needs_null 'give --kde' "$A" coactivation "$T/a.h5" --policy 'bh(alpha=0.1)'
if "$OLMOE_BIN/olmoe-kde" fit "$T/a.h5" --out "$T/null.h5" --quiet >/dev/null 2>"$T/err"; then
    # the policy options of olmoe-replay: shorthand flags and --kde
    "$A" coactivation "$T/a.h5" --policy bh --alpha 0.1 --max-k 4 --kde "$T/null.h5" >"$T/out" 2>"$T/err"
    check kde_policy_runs grep -q 'policy bh(alpha=0.1,max_k=4,min_k=1,T=1,pvalue=kde' "$T/out"
    # --null: the old name, still taken, with a note
    "$A" coactivation "$T/a.h5" --policy 'bh(alpha=0.1,max_k=4)' --null "$T/null.h5" >"$T/out2" 2>"$T/err"
    check null_alias_same cmp -s "$T/out" "$T/out2"
    check null_alias_deprecated grep -q 'deprecated' "$T/err"
else
    fail kde_policy_runs "olmoe-kde fit: $(cat "$T/err")"
fi
expect_fail kde_null_wrong 'not a null distribution' "$A" coactivation "$T/a.h5" --policy 'bh(alpha=0.1)' --kde "$T/a.h5"
expect_fail alpha_needs_policy 'go with --policy' "$A" coactivation "$T/a.h5" --alpha 0.1
expect_fail one_policy 'one policy' "$A" coactivation "$T/a.h5" --policy bh --alpha 0.1,0.2 --kde "$T/a.h5"

# ---- the stored command is the one given: subcommand included ----
if command -v h5dump >/dev/null 2>&1; then
    cp "$T/a.h5" "$T/rc.h5"
    "$A" coactivation "$T/rc.h5" --top 3 --in-trace --quiet >/dev/null 2>/dev/null
    "$A" flow "$T/rc.h5" --top 3 --in-trace --quiet >/dev/null 2>/dev/null
    h5dump -A "$T/rc.results.h5" >"$T/rc.dump" 2>/dev/null
    check command_has_subcommand sh -c "grep -q '\"[^\"]*olmoe-analyze coactivation [^\"]*rc.h5 --top 3' '$T/rc.dump' &&
                                        grep -q '\"[^\"]*olmoe-analyze flow [^\"]*rc.h5 --top 3' '$T/rc.dump'"
fi
expect_fail bad_policy 'policy' "$A" coactivation "$T/a.h5" --policy 'nope(k=1)'

# ---- memory does not grow with the trace ----
# both sizes are past what HDF5's chunk cache (16 MiB) holds
"$OLMOE_TESTBIN/test_analyze" --synth 10000 8 64 8 500 "$T/s1.h5" &&
    "$OLMOE_TESTBIN/test_analyze" --synth 40000 8 64 8 500 "$T/s2.h5" || fail synth "cannot write"
peak() { # peak MiB of --verbose
    "$A" "$@" --quiet --verbose 2>&1 | sed -n 's/.*peak memory \([0-9.]*\) \([KMG]\)iB.*/\1 \2/p' |
        awk '{ print ($2 == "K" ? $1 / 1024 : ($2 == "G" ? $1 * 1024 : $1)) }'
}
for cmd in coactivation "specialization --by group" "specialization --by token --min-count 2"; do
    m1=$(peak $cmd "$T/s1.h5") m2=$(peak $cmd "$T/s2.h5")
    name=flat_memory_$(echo "$cmd" | tr -c 'a-z\n' _ | cut -c1-24)
    if [ -n "$m1" ] && [ -n "$m2" ] && awk -v a="$m1" -v b="$m2" 'BEGIN { exit !(b < a * 1.1 + 2) }'; then
        pass "$name"
    else
        fail "$name" "peak ${m1:-?} MiB at 10000 tokens, ${m2:-?} MiB at 40000"
    fi
done

# ---- --top bounds every list; an empty top list says why ----
"$A" specialization "$T/a.h5" --by token --top 3 --min-count 1 >"$T/st" 2>/dev/null
nl=$(awk '/^layer +top_share/ { on = 1; next } on && /^$/ { exit } on { n++ } END { print n }' "$T/st")
check spec_token_top_lines test "$(grep -c '^ *[0-9][0-9]* *[0-9][0-9]*:' "$T/st")" -eq $((3 * nl))
"$A" coactivation "$T/a.h5" --min-count 1000000000 >"$T/co_empty" 2>/dev/null
check empty_pairs_say_why grep -q '^(none: no expert i was selected 1000000000 times' "$T/co_empty"
