#!/bin/sh
# test_corpus_cli.sh: olmoe-capture --input (raw text through the model's
# tokenizer.json) on the bundled model: the same trace and perplexity as
# --tokens with HF's ids of the same text, HF's own perplexity on that slice
# (models/olmoe-brown/reference.h5 from models/eval_brown.py), groups, the
# formats, --stride windows, and the errors.
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
TR="$OLMOE_BIN/olmoe-traces"
M=models/olmoe-brown
REF=$M/reference.h5
O="$T/out.h5"
no_output() { [ ! -e "$O" ] && [ ! -e "$O.partial" ]; }
rel_close() { awk -v a="$1" -v b="$2" -v tol="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= tol * b) }'; }

# HF's token ids of the test split's first 4096 tokens (16 windows of 256), one document
h5dump -y -w 0 -o "$T/ids.raw" -d /test_tokens -s 0 -c 4096 "$REF" >/dev/null 2>&1
tr -d ' \n' <"$T/ids.raw" | tr ',' ' ' >"$T/ids.txt" && echo >>"$T/ids.txt"
check hf_ids_read test "$(wc -w <"$T/ids.txt")" -eq 4096

"$CAP" --model $M --input data/brown-test.jsonl --format jsonl --group-field genre \
    --max-tokens 4096 --ctx 256 --out "$T/in.h5" --quiet >"$T/o_in" 2>"$T/e_in" ||
    fail input_run "$(head -c 300 "$T/e_in")"
"$CAP" --model $M --tokens "$T/ids.txt" --ctx 256 --out "$T/tok.h5" --quiet >"$T/o_tok" 2>&1 ||
    fail tokens_run "$(head -c 300 "$T/o_tok")"
check input_prints_perplexity grep -q '^perplexity [0-9.]* over 4080 scored tokens (16 windows)' "$T/o_in"
check same_tokens_as_hf h5diff "$T/in.h5" "$T/tok.h5" /tokens
check same_perplexity_as_tokens test "$(cut -d' ' -f2 "$T/o_in")" = "$(cut -d' ' -f2 "$T/o_tok")"
# HF's perplexity on the same windows: exp(mean NLL) over the scored (non-NaN) positions
h5dump -y -w 0 -o "$T/nll.raw" -d /topk_8/nll "$REF" >/dev/null 2>&1
hf=$(tr ',' '\n' <"$T/nll.raw" | awk 'NF && $1 !~ /[nN]a[nN]/ { s += $1; n++ } END { printf "%.9g", exp(s / n) }')
check hf_perplexity rel_close "$(cut -d' ' -f2 "$T/o_in")" "$hf" 1e-5
check trace_verifies sh -c "'$TR' verify '$T/in.h5' >/dev/null"
"$TR" info "$T/in.h5" >"$T/info" 2>&1
check info_groups grep -q '^documents: *2 in 1 groups (news)' "$T/info"
check info_corpus grep -q '^corpus: *data/brown-test.jsonl' "$T/info"
check tokenizer_checksum sh -c "grep -q '^tokenizer: *[0-9a-f]\{32\}' '$T/info'"

# --stride: windows begin every 128 tokens until one reaches the end
"$CAP" --model $M --input data/brown-test.jsonl --format jsonl --max-tokens 1000 --ctx 256 \
    --stride 128 --out "$T/st.h5" --quiet >"$T/o_st" 2>&1
check stride_scores_each_once grep -q '^perplexity [0-9.]* over 999 scored tokens (7 windows)' "$T/o_st"
check stride_in_trace sh -c "'$TR' info '$T/st.h5' | grep -q 'windows: *7 (ctx 256, stride 128)'"
check stride_verifies sh -c "'$TR' verify '$T/st.h5' >/dev/null"

# plain text and lines; EOS after each document
printf 'The jury said it was good.\n\nNo one knew.\n' >"$T/doc.txt"
"$CAP" --model $M --input "$T/doc.txt" --ctx 64 --out "$T/t.h5" --quiet >/dev/null 2>&1
"$CAP" --model $M --input "$T/doc.txt" --format lines --ctx 64 --out "$T/l.h5" --quiet >/dev/null 2>&1
check text_one_document sh -c "'$TR' info '$T/t.h5' | grep -q '^documents: *1\$'"
check lines_two_documents sh -c "'$TR' info '$T/l.h5' | grep -q '^documents: *2\$'"
"$TR" export "$T/l.h5" --what tokens >"$T/l.csv" 2>&1
check lines_end_with_eos sh -c "tail -n 1 '$T/l.csv' | grep -q '^\(.*,\)\?0\$'"

# errors: one clear line, no output left
expect_fail both_inputs "give one of --tokens FILE and --input FILE" "$CAP" --model $M --tokens "$T/ids.txt" --input "$T/doc.txt" --out "$O"
expect_fail format_needs_input "need --input" "$CAP" --model $M --tokens "$T/ids.txt" --format lines --out "$O"
expect_fail bad_format "unknown format 'xml'" "$CAP" --model $M --input "$T/doc.txt" --format xml --out "$O"
expect_fail stride_too_big "usage: --stride 64 must be below --ctx 64" "$CAP" --model $M --input "$T/doc.txt" --ctx 64 --stride 64 --out "$O"
printf '{"text": "a"}\n{"text": "b",}\n' >"$T/bad.jsonl"
expect_fail bad_json "bad.jsonl:2: invalid JSON" "$CAP" --model $M --input "$T/bad.jsonl" --format jsonl --out "$O"
printf '{"text": "a", "genre": 3}\n' >"$T/g.jsonl"
expect_fail bad_group "g.jsonl:1: field 'genre' is not a string" "$CAP" --model $M --input "$T/g.jsonl" --format jsonl --group-field genre --out "$O"
expect_fail group_needs_jsonl "groups need the jsonl format" "$CAP" --model $M --input "$T/doc.txt" --group-field genre --out "$O"
printf 'ok\nab\377\n' >"$T/u.txt"
expect_fail bad_utf8 "u.txt:2: invalid UTF-8 at byte 5" "$CAP" --model $M --input "$T/u.txt" --format lines --out "$O"
expect_fail missing_input "nope.txt: No such file" "$CAP" --model $M --input "$T/nope.txt" --out "$O"
# reading stops at the first bad byte and at --max-tokens: an endless input ends at once
expect_fail urandom_stops_at_bad_byte "/dev/urandom: invalid UTF-8 at byte" timeout 20 "$CAP" --model $M \
    --input /dev/urandom --format text --max-tokens 1000 --out "$O"
yes 'The jury said it was good and no one knew why' | timeout 20 "$CAP" --model $M \
    --input /dev/stdin --format text --max-tokens 1000 --ctx 250 --quiet --out "$T/yes.h5" >"$T/o_yes" 2>&1
check endless_pipe_stops_at_max_tokens grep -q '^perplexity [0-9.]* over 996 scored tokens (4 windows)' "$T/o_yes"
rm -f "$T/yes.h5"
mkdir "$T/notok"
ln -s "$PWD/$M/config.json" "$PWD/$M/model.safetensors" "$T/notok/"
expect_fail no_tokenizer "notok/tokenizer.json: No such file" "$CAP" --model "$T/notok" --input "$T/doc.txt" --out "$O"
check errors_leave_no_output no_output

# olmoe-traces export --what text: the tokens decoded by the trace's tokenizer
"$TR" export "$T/l.h5" --what text --format raw --out "$T/l.txt" 2>"$T/e_x"
printf 'The jury said it was good.<|endoftext|>No one knew.<|endoftext|>' >"$T/l.want"
check export_text_raw cmp -s "$T/l.txt" "$T/l.want"
"$TR" export "$T/l.h5" --what text --start 1 --count 2 >"$T/l2.csv" 2>&1
check export_text_csv sh -c "head -n 1 '$T/l2.csv' | grep -qx 'position,token,text' && test \$(wc -l <'$T/l2.csv') -eq 3"
check export_text_tokenizer_option sh -c "'$TR' export '$T/l.h5' --what text --tokenizer $M/tokenizer.json --format raw | cmp -s - '$T/l.want'"
expect_fail export_other_tokenizer "but the trace was captured with tokenizer" "$TR" export "$T/l.h5" --what text --tokenizer tests/fixtures/tokenizer/tokenizer.json
expect_fail export_tokenizer_needs_text "--tokenizer goes with --what text" "$TR" export "$T/l.h5" --what nll --tokenizer $M/tokenizer.json
