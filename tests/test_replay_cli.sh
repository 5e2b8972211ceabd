#!/bin/sh
# test_replay_cli.sh: olmoe-replay's replay, exact and validate modes end to
# end on the HF fixtures, against olmoe-capture: one layer (freezing
# attention is exact) replay of top-k against capture --top-k; --exact
# against capture --policy for topk, topp and bh with kde, pseudo and
# empirical p-values; the refusals; outputs; and olmoe-traces export --what
# decisions on the bundled model.
. tests/lib.sh
B=$OLMOE_BIN
CAP="$B/olmoe-capture"
R="$B/olmoe-replay"
# close NAME A.h5 PATH_A B.h5 PATH_B TOL: two NLL datasets agree (NaN where
# the other has NaN, |a - b| <= TOL max(1, |b|) elsewhere)
close() {
    n=$1; shift
    if "$OLMOE_TESTBIN/test_replay_run" --compare "$@" >"$T/cmp" 2>&1; then pass "$n"
    else fail "$n" "$(cat "$T/cmp")"; fi
}
M1=$FIX/tiny-1layer
M2=$FIX/tiny-f32
id_of() { "$B/olmoe-traces" info "$1" | sed -n 's/^policy: *//p'; }

if ! "$CAP" --model "$M1" --tokens "$M1/tokens.txt" --ctx 32 --device cpu --save-residuals \
    --out "$T/one.h5" --quiet >/dev/null 2>"$T/err"; then
    fail setup "$(cat "$T/err")"
    exit 0
fi

# ---- replay on one layer: the table, JSON, CSV, results in the trace ----
if "$R" "$T/one.h5" --model "$M1" --policy topk --k 1,2,4,8 --json "$T/one.json" --csv "$T/one.csv" \
    --quiet >"$T/out" 2>"$T/err"; then pass replay_runs; else fail replay_runs "$(cat "$T/err")"; fi
check table_labels_replay grep -q '^replay topk(k=1,norm=model) ' "$T/out"
check table_legend grep -q 'replay = frozen-attention replay, an optimistic estimate' "$T/out"
check self_check_line grep -q '^# self-check: replay of topk(k=4,norm=model) against the captured NLL (bfloat16 residuals)' "$T/out"
check json_format grep -q '"format": "olmoe-replay"' "$T/one.json"
check json_self_check grep -q '"mean_nll_rel_diff"' "$T/one.json"
check csv_rows test "$(wc -l <"$T/one.csv")" -eq 5
check csv_row grep -q '^replay,"topk(k=2,norm=model)","all",recompute,"cpu",' "$T/one.csv"
check results_beside_trace sh -c "h5ls -r '$T/one.results.h5' | grep -q 'replay/topk_k_8_norm_model/experts'"
check trace_untouched sh -c "! h5ls '$T/one.h5' | grep -q replay"
check trace_still_verifies sh -c "'$B/olmoe-traces' verify '$T/one.h5' >/dev/null"

# one layer: replay of top-k against the exact capture with --top-k. The
# residuals are bfloat16: each NLL moves by a few 1e-3 (tests/test_replay.c
# measures it; with fp32 residuals the two agree to 1e-6), so 0.02 relative.
for k in 1 2 4 8; do
    "$CAP" --model "$M1" --tokens "$M1/tokens.txt" --ctx 32 --device cpu --top-k $k --out "$T/k$k.h5" --quiet >/dev/null
    close "one_layer_top$k" "$T/one.results.h5" "/replay/topk_k_${k}_norm_model/nll" "$T/k$k.h5" /baseline/nll 0.02
done

# ---- --exact against capture --policy (same batching: one window at a time) ----
"$CAP" --model "$M2" --tokens "$M2/tokens.txt" --ctx 24 --device cpu --save-residuals --out "$T/two.h5" --quiet >/dev/null
"$B/olmoe-kde" fit "$T/two.h5" --out "$T/null.h5" --quiet >/dev/null 2>&1
i=0
for spec in 'topk(k=3)' 'topp(p=0.7,max_k=6)' 'bh(alpha=0.2,max_k=8)' 'bh(alpha=0.2,pvalue=pseudo)' \
    'bh(alpha=0.3,max_k=6,pvalue=empirical)'; do
    i=$((i + 1))
    extra=""
    case $spec in
    *pseudo*) ;;
    *empirical*) extra="--empirical $T/two.h5 --empirical-max 0" ;;
    bh*) extra="--kde $T/null.h5" ;;
    esac
    # shellcheck disable=SC2086
    if "$CAP" --model "$M2" --tokens "$M2/tokens.txt" --ctx 24 --device cpu --policy "$spec" $extra \
        --out "$T/p$i.h5" --quiet >/dev/null 2>"$T/err"; then pass "capture_policy_$i"
    else fail "capture_policy_$i" "$(cat "$T/err")"; fi
    echo "$spec" >>"$T/sweep.txt"
done
if "$R" "$T/two.h5" --model "$M2" --exact --sweep "$T/sweep.txt" --kde "$T/null.h5" --empirical-max 0 \
    --chunk 1 --out "$T/exact.h5" --quiet >"$T/out" 2>"$T/err"; then pass exact_runs
else fail exact_runs "$(cat "$T/err")"; fi
check table_labels_exact grep -q '^exact  topp(p=0.7,max_k=6,min_k=1,T=1,norm=model) ' "$T/out"
check exact_needs_no_self_check sh -c "! grep -q '^# self-check' '$T/out'"
for j in 1 2 3 4 5; do
    id=$(id_of "$T/p$j.h5")
    close "exact_equals_capture_$j" "$T/exact.h5" "/exact/$(typable "$id")/nll" "$T/p$j.h5" /baseline/nll 1e-6
done
check capture_records_policy test "$(id_of "$T/p3.h5")" = 'bh(alpha=0.2,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)'
check out_file_format sh -c "h5dump -a /format '$T/exact.h5' | grep -q olmoe-replay"
check out_leaves_trace sh -c "! h5ls '$T/two.results.h5' | grep -q exact"

# ---- --validate ----
if "$R" "$T/two.h5" --model "$M2" --validate --sweep topk --quiet >"$T/out" 2>"$T/err"; then pass validate_runs
else fail validate_runs "$(cat "$T/err")"; fi
check validate_table grep -q '^# validation: replay against exact' "$T/out"
check validate_ranking grep -q '^# ranking of the 4 policies by perplexity' "$T/out"
check validate_h5 sh -c "h5ls -r '$T/two.results.h5' | grep -q '^/validate/nll_corr'"
check validate_baseline_row grep -q '^topk(k=2,norm=model) ' "$T/out"
check mode_validate sh -c "'$R' '$T/two.h5' --mode validate --model '$M2' --policy 'topk(k=1)' --out '$T/v.h5' --quiet | grep -q '^# validation'"

# ---- refusals, and nothing left behind ----
expect_fail checksum "captured with other weights" "$R" "$T/two.h5" --model "$FIX/tiny-fused" --policy topk --json "$T/bad.json"
check checksum_no_output test ! -e "$T/bad.json" -a ! -e "$T/bad.json.partial"
"$CAP" --model "$M2" --tokens "$M2/tokens.txt" --ctx 24 --device cpu --out "$T/bare.h5" --quiet >/dev/null
expect_fail no_residuals "bare.h5 has no /residual/attn: capture it with olmoe-capture --save-residuals" \
    "$R" "$T/bare.h5" --model "$M2" --policy topk
check exact_without_residuals sh -c "'$R' '$T/bare.h5' --model '$M2' --policy topk --exact --quiet >/dev/null"
if ! command -v nvidia-smi >/dev/null 2>&1; then # no GPU here: refused, naming the device
    expect_fail cuda_refused "device 'cuda'" "$R" "$T/two.h5" --model "$M2" --policy topk --device cuda --out "$T/c.h5"
fi
expect_fail unknown_device "unknown device 'tpu'" "$R" "$T/two.h5" --model "$M2" --policy topk --device tpu --out "$T/c.h5"
expect_fail exists "already exists (--force recomputes it, --skip-existing computes only what is missing)" "$R" "$T/two.h5" --model "$M2" --policy 'topk(k=4)'
check force_replaces sh -c "'$R' '$T/two.h5' --model '$M2' --policy 'topk(k=4)' --force --quiet >/dev/null"
expect_fail bad_routing "neither recompute nor captured" "$R" "$T/two.h5" --model "$M2" --policy topk --routing sometimes
expect_fail needs_kde "needs --kde" "$R" "$T/two.h5" --model "$M2" --policy 'bh(alpha=0.1)'
expect_fail bad_mode "unknown mode" "$R" "$T/two.h5" --mode replayy --model "$M2" --policy topk
"$R" "$T/two.h5" --model "$M2" --policy 'topk(k=0)' --out "$T/u.h5" 2>/dev/null
check usage_129 test $? -eq 129
check captured_routing sh -c "'$R' '$T/two.h5' --model '$M2' --policy 'topk(k=1)' --routing captured --out '$T/cap.h5' --quiet | grep -q '^replay topk(k=1,norm=model) '"
expect_fail capture_policy_and_topk "choose one way to route" "$CAP" --model "$M2" --tokens "$M2/tokens.txt" --policy topk --top-k 2 --out "$T/x.h5"
expect_fail capture_bad_policy "alpha must be in (0, 1)" "$CAP" --model "$M2" --tokens "$M2/tokens.txt" --policy 'bh(alpha=2)' --out "$T/x.h5"
expect_fail capture_policy_needs_kde "needs --kde" "$CAP" --model "$M2" --tokens "$M2/tokens.txt" --policy 'bh(alpha=0.1)' --out "$T/x.h5"
check capture_refusals_no_output test ! -e "$T/x.h5" -a ! -e "$T/x.h5.partial"

# ---- decisions, on the bundled model (real text, document groups) ----
BM=models/olmoe-brown
if "$CAP" --model $BM --input data/brown-test.jsonl --format jsonl --group-field genre --max-tokens 400 \
    --ctx 100 --device cpu --save-residuals --out "$T/brown.h5" --quiet >/dev/null 2>"$T/err" &&
    "$R" "$T/brown.h5" --model $BM --policy 'topk(k=1)' --csv "$T/b.csv" --quiet >/dev/null 2>"$T/err"; then
    pass brown_replay
else
    fail brown_replay "$(cat "$T/err")"
fi
check brown_groups_h5 sh -c "h5ls -r '$T/brown.results.h5' | grep -q 'replay/topk_k_1_norm_model/groups/'"
check brown_groups_csv test "$(grep -c '^replay,"topk(k=1,norm=model)",' "$T/b.csv")" -gt 1
if "$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy 'topk(k=1)' --top 5 >"$T/d.csv" 2>"$T/err"
then pass decisions; else fail decisions "$(cat "$T/err")"; fi
check decisions_header test "$(head -1 "$T/d.csv")" = "position,context,next,nll_policy,nll_baseline,delta,mean_experts,experts_per_layer"
check decisions_rows test "$(wc -l <"$T/d.csv")" -eq 6
check decisions_experts sh -c "sed -n 2p '$T/d.csv' | grep -q ',1.000,1 1 1 1$'"
check decisions_text sh -c "sed -n 2p '$T/d.csv' | grep -q '^[0-9]*,\"[^\"]'"
expect_fail decisions_missing "no replay or exact results for topk(k=3,norm=model)" \
    "$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy 'topk(k=3)'
# a family's one stored result by its name; shorthand flags canonicalised;
# several stored: the message names them; --start/--count bound the positions
"$R" "$T/brown.h5" --model $BM --policy bh --alpha 0.3 --pvalue pseudo --quiet >/dev/null 2>"$T/err"
"$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy bh --top 3 >"$T/d1.csv" 2>"$T/err"
check decisions_family_found test "$(wc -l <"$T/d1.csv")" -eq 4
"$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy bh --alpha 0.3 --pvalue pseudo --top 3 >"$T/d2.csv" 2>"$T/err"
check decisions_shorthand_same cmp -s "$T/d1.csv" "$T/d2.csv"
"$R" "$T/brown.h5" --model $BM --policy bh --alpha 0.05 --pvalue pseudo --quiet >/dev/null 2>"$T/err"
expect_fail decisions_names_stored "stored for bh: replay/bh(alpha=0.05" "$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy bh
"$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy 'topk(k=1)' --start 100 --count 50 --top 1000 >"$T/d3.csv" 2>"$T/err"
check decisions_count sh -c "test \$(wc -l <'$T/d3.csv') -gt 2 && awk -F, 'NR > 1 && (\$1 < 100 || \$1 >= 150) { bad = 1 } END { exit bad }' '$T/d3.csv'"
expect_fail decisions_needs_policy "needs --policy" "$B/olmoe-traces" export "$T/brown.h5" --what decisions
expect_fail decisions_raw "csv only" "$B/olmoe-traces" export "$T/brown.h5" --what decisions --policy 'topk(k=1)' --format raw --out "$T/d.raw"
expect_fail policy_needs_decisions "go with --what decisions" "$B/olmoe-traces" export "$T/brown.h5" --what nll --policy topk

# ---- help and man page ----
check help_lists_modes sh -c "'$R' --help | grep -q '^  validate '"
# (the options of this mode's own; the policy options are the policies' page's;
# the page also names other commands' options, so only one direction)
"$R" --mode stats --help | grep -o -- '--[a-z][a-z-]*' | sort -u >"$T/stats_opts"
"$R" --mode replay --help | grep -o -- '--[a-z][a-z-]*' | grep -v -- '--help' | sort -u |
    comm -23 - "$T/stats_opts" >"$T/help_opts"
check own_options_seen grep -q -- '--validate' "$T/help_opts"
grep -o -- '\\-\\-[a-z][a-z\\-]*' man/olmoe-replay.1 | sed 's/\\//g' | sort -u >"$T/man_opts"
check man_has_replay_options sh -c "comm -23 '$T/help_opts' '$T/man_opts' | grep -q . && exit 1 || exit 0"
