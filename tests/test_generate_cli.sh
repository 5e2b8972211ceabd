#!/bin/sh
# test_generate_cli.sh: olmoe-capture --prompts FILE --generate N (greedy
# generation, capture/generate*.c): token for token against HF's greedy
# generate (tests/fixtures/tiny-f32 and the bundled model's reference.h5
# /generate), the --out file's layout, a policy with variable expert counts,
# --no-cache agreeing with the KV cache, and the errors (one line, exit
# 128/129, no output left behind).
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
BROWN=models/olmoe-brown
O="$T/gen.h5"
# (lib.sh's check uses $n: no variable of that name here)
no_output() { [ ! -e "$O" ] && [ ! -e "$O.partial" ]; }
# a 1-D int dataset as one line of blank-separated numbers
ids_of() { h5dump -y -w 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | tr -d 'DATA{}\n' | tr ',' ' ' | tr -s ' ' | sed 's/^ //; s/ $//'; }
# the generated ids printed by --print-ids for prompt $2
printed() { sed -n "s/^\[$2\] ids: .* | //p" "$1"; }

# ---- a tiny fixture: ids prompt, HF's 16 greedy tokens at its top-k ----
ref="$FIX/tiny-f32/reference.h5"
prompt=$(ids_of "$ref" /generate/prompt)
want=$(ids_of "$ref" /generate/output | cut -d' ' -f9-)
printf '%s\n' "$prompt" >"$T/ids.txt"
if "$CAP" --model "$FIX/tiny-f32" --prompts "$T/ids.txt" --prompt-format ids --generate 16 --device cpu \
    --print-ids --quiet >"$T/o1" 2>"$T/e1"; then
    check tiny_same_as_hf test "$(printed "$T/o1" 0)" = "$want"
else
    fail tiny_run "$(head -c 300 "$T/e1")"
fi
check tiny_quiet test ! -s "$T/e1"
check tiny_prints_ids_without_tokenizer grep -q "^\[0\] continuation: $want\$" "$T/o1"
"$CAP" --model "$FIX/tiny-f32" --prompts "$T/ids.txt" --prompt-format ids --generate 16 --device cpu --print-ids \
    --no-cache --quiet >"$T/o2" 2>&1
check no_cache_same_tokens test "$(printed "$T/o2" 0)" = "$want"

# ---- the bundled model: text prompts through its tokenizer, top-8 ----
printf 'The jury said that\nIn the evening, the old man\n\nScientists have found\n' >"$T/prompts.txt"
if "$CAP" --model "$BROWN" --prompts "$T/prompts.txt" --generate 24 --device cpu --print-ids --out "$O" \
    >"$T/o3" 2>"$T/e3"; then
    bref="$BROWN/reference.h5"
    for i in 0 1 2; do
        np=$(ids_of "$bref" /generate/prompt_$i | wc -w)
        check "brown_prompt_ids_$i" test "$(sed -n "s/^\[$i\] ids: \(.*\) | .*/\1/p" "$T/o3")" = "$(ids_of "$bref" /generate/prompt_$i)"
        check "brown_same_as_hf_$i" test "$(printed "$T/o3" $i)" = "$(ids_of "$bref" /generate/output_$i | cut -d' ' -f$((np + 1))-)"
        check "brown_stored_$i" test "$(ids_of "$O" /generate/$i/generated)" = "$(printed "$T/o3" $i)"
    done
else
    fail brown_run "$(head -c 300 "$T/e3")"
fi
check brown_prints_text grep -q '^\[0\] prompt: The jury said that$' "$T/o3"
check brown_escapes_newlines grep -q '^\[1\] continuation: .*\\n\\n' "$T/o3"
check brown_notes_kv_cache grep -q 'KV cache' "$T/e3"
check out_no_partial test ! -e "$O.partial"
check out_format sh -c "h5dump -a /format '$O' | grep -q '\"olmoe-generate\"'"
check out_layout sh -c "h5ls -r '$O' | grep -q '/generate/2/chosen  *Dataset {24, 4, 8}' &&
    h5ls -r '$O' | grep -q '/generate/2/experts  *Dataset {24, 4}' &&
    h5ls -r '$O' | grep -q '/generate/2/weights  *Dataset {24, 4, 8}' &&
    h5ls -r '$O' | grep -q '/generate/2/prompt  *Dataset {6}'"
check out_types sh -c "h5dump -H -d /generate/0/experts '$O' | grep -q H5T_STD_U8LE &&
    h5dump -H -d /generate/0/chosen '$O' | grep -q H5T_STD_I16LE"
check out_policy_id sh -c "h5dump -a /policy '$O' | grep -q 'topk(k=8,norm=model)'"
check out_text_attr sh -c "h5dump -a /generate/2/text '$O' | grep -q 'Scientists have found'"

# ---- a policy with variable expert counts ----
printf 'The jury said that\n' >"$T/one.txt"
if "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 12 --device cpu --policy 'topp(p=0.5,max_k=16)' \
    --out "$T/topp.h5" --quiet >"$T/o4" 2>"$T/e4"; then
    counts=$(ids_of "$T/topp.h5" /generate/0/experts | tr ' ' '\n' | sort -un | wc -l)
    check topp_variable_counts test "$counts" -gt 1
    check topp_max_k sh -c "h5ls '$T/topp.h5/generate/0' | grep -q 'chosen  *Dataset {12, 4, 16}'"
    check topp_policy_id sh -c "h5dump -a /policy '$T/topp.h5' | grep -q 'topp(p=0.5,max_k=16'"
else
    fail topp_run "$(head -c 300 "$T/e4")"
fi
check bh_pseudo_runs sh -c "'$CAP' --model '$BROWN' --prompts '$T/one.txt' --generate 4 --device cpu --quiet \
    --policy 'bh(alpha=0.1,pvalue=pseudo)' | grep -q '^\[0\] experts: 1.00 per token and layer'"
eos=$("$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 4 --device cpu --quiet --stop-at-eos | grep -c 'stopped at EOS')
check stop_at_eos_not_hit test "$eos" = 0

# ---- errors ----
O="$T/err.h5"
expect_fail no_tokenizer "tokenizer.json: not found: text prompts need" \
    "$CAP" --model "$FIX/tiny-f32" --prompts "$T/prompts.txt" --generate 4 --device cpu --out "$O"
check no_tokenizer_no_output no_output
expect_fail n_zero "usage: --generate: 0 is out of range" "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 0
expect_fail n_text "usage: --generate: 'x' is not an integer" "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate x
expect_fail n_missing "usage: --prompts FILE needs --generate N" "$CAP" --model "$BROWN" --prompts "$T/one.txt"
expect_fail prompts_missing "usage: --generate N needs --prompts FILE" "$CAP" --model "$BROWN" --generate 3
expect_fail routing_file "a routing file is read by token position and checked against a trace's tokens, which this command does not give" \
    "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 3 --routing-file "$T/none.h5"
printf '\n  \n' >"$T/empty.txt"
expect_fail empty_prompts "empty.txt: no prompts" "$CAP" --model "$BROWN" --prompts "$T/empty.txt" --generate 3 \
    --device cpu --out "$O"
check empty_no_output no_output
expect_fail absent_prompts "absent.txt: No such file" "$CAP" --model "$BROWN" --prompts "$T/absent.txt" --generate 3 --device cpu
printf '1 2\n3 99999\n' >"$T/bad.txt"
expect_fail id_beyond_vocab "bad.txt:2: token id 99999 is not below vocab_size 4103" \
    "$CAP" --model "$BROWN" --prompts "$T/bad.txt" --prompt-format ids --generate 3 --device cpu
expect_fail bad_format "usage: --prompt-format: unknown prompt format 'json'" \
    "$CAP" --model "$BROWN" --prompts "$T/one.txt" --prompt-format json --generate 3
expect_fail policy_and_top_k "usage: --policy and --top-k" \
    "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 3 --policy 'topk(k=2)' --top-k 2
expect_fail with_tokens "usage: --generate: --tokens" \
    "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 3 --tokens "$T/ids.txt"
expect_fail kde_alone "usage: --kde, --empirical and the policy parameters (--alpha, ...) go with --policy" \
    "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 3 --kde "$T/null.h5"
touch "$O"
expect_fail exists "already exists (use --force" "$CAP" --model "$BROWN" --prompts "$T/one.txt" --generate 3 \
    --device cpu --out "$O"
check force_overwrites sh -c "'$CAP' --model '$BROWN' --prompts '$T/one.txt' --generate 3 --device cpu --out '$O' \
    --force --quiet >/dev/null && h5ls '$O/generate/0' >/dev/null"
