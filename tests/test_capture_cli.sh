#!/bin/sh
# test_capture_cli.sh: olmoe-capture's command line on a tiny random model
# (written by test_forward_ref --write-model): a good run, and every error
# case exits non-zero with one clear line and leaves no output behind.
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
"$OLMOE_TESTBIN/test_forward_ref" --write-model "$T/model" || { fail setup "cannot write the tiny model"; exit 0; }
printf '1 2 3 4 5 6 7 8 9 10\n\n11 12 13\n5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23\n' >"$T/tok.txt"

no_output() { [ ! -e "$T/out.h5" ] && [ ! -e "$T/out.h5.partial" ]; }

if "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --out "$T/run.h5" --quiet >"$T/o1" 2>"$T/e1"; then
    pass good_run
else
    fail good_run "$(head -c 300 "$T/e1")"
fi
check prints_perplexity grep -q '^perplexity [0-9.]* over 26 scored tokens (6 windows)' "$T/o1"
check quiet_is_quiet test ! -s "$T/e1"
check no_partial_left test ! -e "$T/run.h5.partial"
if [ -x "$OLMOE_BIN/olmoe-traces" ]; then
    check trace_verifies sh -c "'$OLMOE_BIN/olmoe-traces' verify '$T/run.h5' >/dev/null"
fi

# the batch size changes how windows are stacked (so GEMM shapes, so rounding), not the result
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --out "$T/b3.h5" --batch 4 --quiet >"$T/o3" 2>&1
close_enough() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-6 * a) }'; }
check batch_same_perplexity close_enough "$(cut -d' ' -f2 "$T/o1")" "$(cut -d' ' -f2 "$T/o3")"
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --out "$T/k1.h5" --top-k 1 --quiet >"$T/ok1" 2>&1
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --out "$T/again.h5" --quiet >/dev/null 2>&1
check same_run_bit_identical sh -c "h5diff '$T/run.h5' '$T/again.h5' /router_logits && h5diff '$T/run.h5' '$T/again.h5' /baseline/nll"
check top_k_changes_result test "$(cut -d' ' -f2 "$T/o1")" != "$(cut -d' ' -f2 "$T/ok1")"
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --out "$T/res.h5" --save-residuals --quiet >/dev/null 2>&1
check residuals_saved sh -c "h5ls '$T/res.h5/residual' 2>/dev/null | grep -q 'attn.*{32/Inf, 2, 32}\|attn.*{32, 2, 32}'"
check notes_without_quiet sh -c "'$CAP' --model '$T/model' --tokens '$T/tok.txt' --ctx 8 --out '$T/n.h5' 2>&1 >/dev/null | grep -q 'activations'"

# refuses to overwrite, unless --force
expect_fail exists "already exists (use --force" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --out "$T/run.h5"
check force_overwrites sh -c "'$CAP' --model '$T/model' --tokens '$T/tok.txt' --ctx 8 --out '$T/run.h5' --force --quiet >/dev/null"

O="$T/out.h5"
expect_fail missing_model "nope: no such directory" "$CAP" --model "$T/nope" --tokens "$T/tok.txt" --out "$O"
check missing_model_no_output no_output
mkdir "$T/empty"
cp "$T/model/config.json" "$T/empty/"
expect_fail no_weights "no model.safetensors or model.safetensors.index.json" "$CAP" --model "$T/empty" --tokens "$T/tok.txt" --out "$O"
expect_fail ctx_zero "usage: --ctx: 0 is out of range" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 0 --out "$O"
expect_fail ctx_text "usage: --ctx: 'many' is not an integer" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx many --out "$O"
check bad_ctx_no_output no_output
printf '1 2 3\n4 97 5\n' >"$T/big.txt"
expect_fail token_beyond_vocab "big.txt:2: token id 97 is not below vocab_size 97" "$CAP" --model "$T/model" --tokens "$T/big.txt" --out "$O"
check token_no_output no_output
printf '1 2 x\n' >"$T/word.txt"
expect_fail token_not_number "word.txt:1: 'x' is not a token id" "$CAP" --model "$T/model" --tokens "$T/word.txt" --out "$O"
expect_fail tokens_missing "absent.txt: No such file" "$CAP" --model "$T/model" --tokens "$T/absent.txt" --out "$O"
expect_fail unwritable_output "cannot write in" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --out "$T/no/such/dir/x.h5"
expect_fail no_out "usage: --out FILE is required" "$CAP" --model "$T/model" --tokens "$T/tok.txt"
expect_fail no_model_opt "usage: --model DIR is required" "$CAP" --tokens "$T/tok.txt" --out "$O"
expect_fail cuda "device 'cuda'" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --out "$O" --device cuda
expect_fail top_k_too_big "--top-k 9: the model has 8 experts" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --out "$O" --top-k 9
expect_fail stray_argument "unexpected argument 'extra'" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --out "$O" extra
check errors_no_output no_output
# a corrupt checkpoint: the loader's message reaches the user
cp -r "$T/model" "$T/cut"
head -c 100 "$T/model/model.safetensors" >"$T/cut/model.safetensors"
expect_fail corrupt_model "model.safetensors: header length" "$CAP" --model "$T/cut" --tokens "$T/tok.txt" --out "$O"
check corrupt_no_output no_output

# exit codes: usage 129, fatal 128
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 0 --out "$O" 2>/dev/null
check usage_exit_129 test $? -eq 129
"$CAP" --model "$T/nope" --tokens "$T/tok.txt" --out "$O" 2>/dev/null
check fatal_exit_128 test $? -eq 128

# --help, and the man page documents exactly the options --help lists
"$CAP" --help >"$T/help" 2>&1
check help_exit_0 test $? -eq 0
grep -o -- '--[a-z][a-z-]*' "$T/help" | sort -u >"$T/help_opts"
grep -o -- '\\-\\-[a-z][a-z\\-]*' man/olmoe-capture.1 | sed 's/\\//g' | sort -u >"$T/man_opts"
check man_matches_help cmp -s "$T/help_opts" "$T/man_opts"
