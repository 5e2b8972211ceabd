#!/bin/sh
# test_iface.sh: one interface for every command. The policy options are
# the same everywhere (capture takes --policy bh --alpha 0.1 as replay does);
# the model comes from the trace when --model is absent, is stored as an
# absolute path, is found by a bundled model's name, and a wrong --model says
# what it needs; --input x.jsonl is read as JSON lines; replay's device is
# auto; and the recorded-command round trip: each command whose command line
# is stored is run, its stored command read back and run again elsewhere,
# with the same results.
. tests/lib.sh
B=$OLMOE_BIN
CAP="$B/olmoe-capture"
R="$B/olmoe-replay"
M=$FIX/tiny-f32
BROWN=models/olmoe-brown
ROOT=$PWD
# the attribute ATTR of OBJECT in FILE (a string), as stored
stored() { h5dump -y -w 0 -a "$2/$3" "$1" 2>/dev/null | sed -n 's/^ *"\(.*\)"$/\1/p' | sed 's/\\"/"/g; s/\\\\/\\/g'; }
if ! command -v h5dump >/dev/null 2>&1 || ! command -v h5diff >/dev/null 2>&1; then
    pass skipped_without_hdf5_tools
    exit 0
fi

# ---- capture takes the policy options of replay ----
"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --policy topp --p 0.5 --max-k 4 \
    --out "$T/short.h5" --quiet >/dev/null 2>"$T/err"
check capture_shorthand_runs test -s "$T/short.h5"
"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --policy 'topp(p=0.5,max_k=4)' \
    --out "$T/spec.h5" --quiet >/dev/null 2>>"$T/err"
check capture_shorthand_same_policy test "$(stored "$T/short.h5" / policy)" = "$(stored "$T/spec.h5" / policy)"
check capture_shorthand_same_logits h5diff "$T/short.h5" "$T/spec.h5" /router_logits
expect_fail capture_one_policy "one policy" "$CAP" --model "$M" --tokens "$M/tokens.txt" --policy topp --p 0.5,0.9 --out "$T/x.h5"
expect_fail capture_kde_name "needs --kde" "$CAP" --model "$M" --tokens "$M/tokens.txt" --policy bh --alpha 0.1 --out "$T/x.h5"

# ---- the model: absolute in the trace, from the trace, by name, or a clear refusal ----
mkdir -p "$T/run" && cp -r "$M" "$T/run/ckpt"
(cd "$T/run" && "$CAP" --model ckpt --tokens ckpt/tokens.txt --ctx 24 --device cpu --save-residuals \
    --out run.h5 --quiet >/dev/null 2>"$T/err")
stored "$T/run/run.h5" / model_dir >"$T/md"
check model_dir_absolute grep -q '^/.*/run/ckpt$' "$T/md"
cp "$T/run/run.h5" "$T/a.h5"
cp "$T/run/run.h5" "$T/b.h5"
"$R" "$T/a.h5" --policy topk --k 2 --out "$T/ra.h5" --quiet >"$T/ra" 2>"$T/err"
check replay_model_from_trace test -s "$T/ra.h5"
"$R" "$T/b.h5" --model "$T/run/ckpt" --policy topk --k 2 --out "$T/rb.h5" --quiet >"$T/rb" 2>>"$T/err"
check replay_model_from_trace_same h5diff "$T/ra.h5" "$T/rb.h5" '/replay/topk_k_2_norm_model/nll'
check replay_device_auto sh -c "'$R' --help | grep -q -- '--device DEV *auto (default'"
check replay_auto_is_cpu_here sh -c "h5dump -a '/replay/topk_k_2_norm_model/device' '$T/ra.h5' | grep -q '\"cpu'"
# other weights than the trace's: refused, naming both
expect_fail replay_other_weights "captured with other weights" "$R" "$T/a.h5" --model "$FIX/tiny-fused" --policy topk --out "$T/x.h5"
mv "$T/run/ckpt" "$T/run/gone"
expect_fail replay_model_gone "which is not there: give --model DIR" "$R" "$T/a.h5" --policy topk --out "$T/x.h5"
mv "$T/run/gone" "$T/run/ckpt"
# match-k without --model scores with the trace's model
"$R" "$T/run/run.h5" --match-k 2 --families topp --out "$T/mk.h5" --quiet >"$T/out" 2>"$T/err"
check match_k_model_from_trace grep -q '^replay  *2 topp ' "$T/out"
expect_fail model_not_a_dir "needs a local checkpoint directory (config.json" "$CAP" --model OLMoE-1B-7B-0924 --tokens "$M/tokens.txt" --out "$T/x.h5"
check model_message_says_how sh -c "grep -q 'huggingface-cli download' '$T/stderr'"
# a bundled model by name (make install puts them in PREFIX/share/olmoe-routing/models)
mkdir -p "$T/share/models" && ln -s "$PWD/$M" "$T/share/models/tiny"
OLMOE_DATADIR="$T/share" "$CAP" --model tiny --tokens "$M/tokens.txt" --ctx 24 --device cpu \
    --out "$T/named.h5" --quiet >/dev/null 2>"$T/err"
check bundled_by_name h5diff "$T/named.h5" "$T/spec.h5" /tokens
OLMOE_DATADIR="$T/share" "$CAP" --tokens "$M/tokens.txt" --out "$T/x.h5" >/dev/null 2>"$T/err"
check no_model_no_bundle sh -c "grep -q 'the bundled model olmoe-brown is not installed' '$T/err'"

# ---- --input x.jsonl without --format: JSON lines, said so ----
head -n 3 data/brown-test.jsonl >"$T/c.jsonl"
"$CAP" --model "$BROWN" --input "$T/c.jsonl" --ctx 64 --max-tokens 192 --device cpu --out "$T/j1.h5" >/dev/null 2>"$T/err"
check jsonl_detected_note grep -q 'read as JSON lines' "$T/err"
"$CAP" --model "$BROWN" --input "$T/c.jsonl" --format jsonl --ctx 64 --max-tokens 192 --device cpu --out "$T/j2.h5" --quiet >/dev/null 2>&1
check jsonl_detected_same h5diff "$T/j1.h5" "$T/j2.h5" /tokens

# ---- the recorded-command round trip ----
# every command runs in $T/rt1; its stored command runs again in $T/rt2 (the
# same inputs under the same names); the results must be the same
mkdir -p "$T/rt1" "$T/rt2"
cp "$T/run/run.h5" "$T/rt1/run.h5"
cp -r "$T/run/ckpt" "$T/rt1/ckpt"
cd "$T/rt1" || exit 1
"$CAP" --model ckpt --tokens ckpt/tokens.txt --ctx 24 --device cpu --policy bh --alpha 0.3 --pvalue pseudo \
    --max-k 4 --out cap.h5 --quiet >/dev/null 2>&1
"$B/olmoe-kde" fit run.h5 --out null.h5 --quiet >/dev/null 2>/dev/null
"$B/olmoe-analyze" coactivation run.h5 --top 3 --policy 'bh(alpha=0.2)' --kde null.h5 --in-trace --csv co.csv --quiet >/dev/null 2>/dev/null
"$B/olmoe-analyze" flow run.h5 --top 3 --in-trace --csv flow.csv --quiet >/dev/null 2>/dev/null
"$R" run.h5 --policy 'topp(p=0.6)' --policy threshold --tau 0.2 --out rep.h5 --csv rep.csv --quiet >/dev/null 2>&1
"$R" run.h5 --mode stats --policy bh --alpha 0.1,0.3 --kde null.h5 --out st.h5 --csv st.csv --quiet >/dev/null 2>&1
"$R" run.h5 --match-k 2 --families 'topp,threshold' --model ckpt --out mk.h5 --csv mk.csv --quiet >/dev/null 2>&1
cmd_cap=$(stored cap.h5 / command)
cmd_kde=$(stored null.h5 / command)
cmd_co=$(stored run.results.h5 '/analyze/coactivation/bh_alpha_0_2_max_k_8_min_k_1_T_1_pvalue_kde_norm_model' command)
cmd_flow=$(stored run.results.h5 '/analyze/flow/topk_k_2_norm_model' command)
cmd_rep=$(stored rep.h5 / command)
cmd_st=$(stored st.h5 / command)
cmd_mk=$(stored mk.h5 /match command)
cd "$T/rt2" || exit 1
cp "$T/run/run.h5" run.h5
cp -r "$T/run/ckpt" ckpt
roundtrip() { # NAME COMMAND CHECK...
    n=$1 c=$2; shift 2
    if [ -z "$c" ]; then fail "roundtrip_$n" "no command stored"; return; fi
    if ! sh -c "$c" >/dev/null 2>"$T/rt.err"; then fail "roundtrip_$n" "'$c' failed: $(head -c 300 "$T/rt.err")"; return; fi
    check "roundtrip_$n" "$@"
}
roundtrip capture "$cmd_cap" h5diff "$T/rt1/cap.h5" cap.h5 /router_logits
roundtrip kde "$cmd_kde" h5diff "$T/rt1/null.h5" null.h5 /cdf
roundtrip coactivation "$cmd_co" cmp -s "$T/rt1/co.csv" co.csv
roundtrip flow "$cmd_flow" cmp -s "$T/rt1/flow.csv" flow.csv
roundtrip replay "$cmd_rep" h5diff "$T/rt1/rep.h5" rep.h5 '/replay/topp_p_0_6_max_k_8_min_k_1_T_1_norm_model/nll'
roundtrip stats "$cmd_st" cmp -s "$T/rt1/st.csv" st.csv
roundtrip match_k "$cmd_mk" h5diff "$T/rt1/mk.h5" mk.h5 /match/perplexity
check coactivation_and_flow_differ test "$cmd_co" != "$cmd_flow"
cd "$ROOT" || exit 1

# ---- what man/olmoe-trace.5 promises: float16/bfloat16 logits, gzip ----
for dt in float16 bfloat16; do
    "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --logits-dtype $dt --compress 4 \
        --out "$T/$dt.h5" --quiet >/dev/null 2>"$T/err"
    check "logits_$dt" sh -c "h5ls -v '$T/$dt.h5/router_logits' | grep -q '16-bit little-endian floating-point' &&
                              h5ls -v '$T/$dt.h5/router_logits' | grep -q 'deflate.*{4}' &&
                              '$B/olmoe-traces' verify '$T/$dt.h5' >/dev/null"
done
# the tokens and the baseline are those of a float32 capture (only the storage differs)
check logits_dtype_same_nll h5diff "$T/float16.h5" "$T/spec.h5" /tokens
expect_fail logits_dtype_bad "float32, float16" "$CAP" --model "$M" --tokens "$M/tokens.txt" --logits-dtype int8 --out "$T/x.h5"

# ---- progress without a terminal: whole lines on stderr; --quiet: none ----
OLMOE_PROGRESS_SECONDS=0 "$R" "$T/run/run.h5" --policy topk --k 1 --out "$T/p1.h5" --chunk 24 >/dev/null 2>"$T/prog"
check progress_lines sh -c "test \$(grep -c '^olmoe-replay: [0-9]*/[0-9]* tokens (.*tokens/s, ETA' '$T/prog') -ge 2"
check progress_no_cr sh -c "! grep -q \"\$(printf '\\r')\" '$T/prog'"
OLMOE_PROGRESS_SECONDS=0 "$R" "$T/run/run.h5" --policy topk --k 1 --out "$T/p2.h5" --chunk 24 --quiet >/dev/null 2>"$T/prog"
check progress_quiet test ! -s "$T/prog"
