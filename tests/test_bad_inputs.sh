#!/bin/sh
# tests/test_bad_inputs.sh: the bad-input table. Every row is one
# bad input given to a command; each must
#   - exit non-zero (1..129: an error, not a signal or a sanitizer abort),
#   - print one line on stderr (a usage error may add its "try --help"),
#     "olmoe-CMD: fatal|usage: ..." matching the row's pattern, which names
#     the file and the problem,
#   - leave the output directory as it was (no output, no .partial),
#   - print no ASan/UBSan report (under make asan-test the commands are
#     sanitizer builds),
#   - finish within 120 s (a hang is a failure, not a stuck suite).
# Rows are data: NAME | REQUIRES | SETUP | COMMAND | PATTERN (grep -E; the
# rest of the line, so it may contain '|'). SETUP runs in the test shell with
# the helpers below; COMMAND runs in a subshell. REQUIRES names a capability
# (see has()) or is empty; a row whose capability is missing prints a SKIP
# line saying why, so it is visible and not counted.
# Variables: $D the row's directory, $O=$D/out/run.h5 the output (in $D/out,
# the directory that must stay as it was), $M a model copy, $TT a trace copy,
# $TR a good trace of tests/fixtures/tiny-1layer, $TOK its tokens. Captures
# pass --ctx 64: the tiny model's max_position_embeddings is 256, and the
# default 2048 would add a warning line to every row.
. tests/lib.sh

# ---- commands (sanitizer builds in asan-test), each with a time limit ----
capture() { timeout 120 "$OLMOE_BIN/olmoe-capture" "$@"; }
traces() { timeout 120 "$OLMOE_BIN/olmoe-traces" "$@"; }
kde() { timeout 120 "$OLMOE_BIN/olmoe-kde" "$@"; }
replay() { timeout 120 "$OLMOE_BIN/olmoe-replay" "$@"; }
analyze() { timeout 120 "$OLMOE_BIN/olmoe-analyze" "$@"; }
report() { timeout 120 "$OLMOE_BIN/olmoe-report" "$@"; }
# a full disk: writes past N blocks fail with EFBIG (SIGXFSZ ignored, as a
# full disk sends no signal either)
disk_limit() { n=$1; shift; (ulimit -f "$n" && trap '' XFSZ && "$@"); }
# standard output on a full device (text outputs given as -)
to_full() { "$@" >/dev/full; }

# ---- setup helpers ----
model() { rm -rf "$D/m"; cp -r "$FIX/$1" "$D/m"; M=$D/m; }
trace_copy() { cp "$TR" "$D/t.h5"; TT=$D/t.h5; }
cut_to() { truncate -s "$2" "$1"; }
# same-length replacement of the first OLD in FILE (binary safe: the
# safetensors header is ASCII and offsets must not move)
swap() { LC_ALL=C sed -i "s/$2/$3/" "$1"; }
# a trace of tests/fixtures/tiny-NAME at FILE
fixture_trace() { capture --model "$FIX/tiny-$1" --tokens "$FIX/tiny-$1/tokens.txt" --ctx 64 --quiet --out "$2"; }
# bytes (printf escapes) written over FILE at OFFSET
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

# capabilities a row may require
has() {
    case $1 in
    replay-model) # replay mode (--model): not built yet
        { "$OLMOE_BIN/olmoe-replay" --help; "$OLMOE_BIN/olmoe-replay" --mode replay --help; } 2>&1 |
            grep -q -- '--model' ;;
    *) return 1 ;;
    esac
}

# ---- the good inputs the rows break ----
TOK=$FIX/tiny-1layer/tokens.txt
TR=$T/good.h5
if ! "$OLMOE_BIN/olmoe-capture" --model "$FIX/tiny-1layer" --tokens "$TOK" --out "$TR" --quiet \
    --ctx 64 >/dev/null 2>"$T/good.err"; then
    fail setup "capturing the good trace failed: $(head -c 300 "$T/good.err")"
    exit 0
fi
LONGDOC=$(seq -s ' ' 1 300) # one document of 300 tokens

table() {
    cat <<'EOF'
truncated_safetensors | | model tiny-1layer; cut_to $M/model.safetensors 3000 | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: .*(outside the data area|runs past the end|truncated)
truncated_header | | model tiny-1layer; cut_to $M/model.safetensors 100 | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: header length [0-9]+ runs past the end of the file
header_length_huge | | model tiny-1layer; poke $M/model.safetensors 0 '\377\377\377\377\377\377\377\177' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: header length [0-9]+
header_not_json | | model tiny-1layer; poke $M/model.safetensors 8 'x' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: bad header JSON
safetensors_empty | | model tiny-1layer; : >$M/model.safetensors | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: 0 bytes is too short
dtype_mismatch | | model tiny-1layer; swap $M/model.safetensors '"F32"' '"F16"' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: tensor '[^']+' holds [0-9]+ bytes, its shape and dtype need [0-9]+
unsupported_dtype | | model tiny-1layer; swap $M/model.safetensors '"F32"' '"I32"' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: tensor '[^']+' has dtype I32
shape_mismatch_config | | model tiny-1layer; swap $M/config.json '"hidden_size": 64' '"hidden_size": 32' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: tensor '[^']+' has shape \[[0-9, ]+\], config says \[[0-9, ]+\]
missing_tensor | | model tiny-1layer; swap $M/model.safetensors 'model.norm.weight' 'model.norm.weighX' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors: missing tensor 'model\.norm\.weight'
wrong_model_type | | model tiny-1layer; swap $M/config.json '"olmoe"' '"llama"' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | config\.json: model_type "llama" is not supported
config_not_json | | model tiny-1layer; printf '{"model_type": ' >$M/config.json | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | config\.json: bad JSON at line 1
config_missing | | model tiny-1layer; rm $M/config.json | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | config\.json: No such file or directory
missing_shard | | model tiny-bf16-sharded; rm $M/model-00003-of-00007.safetensors | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model-00003-of-00007\.safetensors: No such file or directory
index_leaves_model_dir | | model tiny-bf16-sharded; swap $M/model.safetensors.index.json '"model-00002-of-00007.safetensors"' '"..\/model-00002-of-00007.safetensors"' | capture --model $M --tokens $TOK --out $O --ctx 64 --quiet | model\.safetensors\.index\.json: weight_map entry '[^']+' is not a file name in the model directory
empty_corpus | | : >$D/empty.txt | capture --model $FIX/tiny-1layer --tokens $D/empty.txt --out $O --ctx 64 --quiet | empty\.txt: no token ids
token_not_a_number | | echo '5 six 7' >$D/tok.txt | capture --model $FIX/tiny-1layer --tokens $D/tok.txt --out $O --ctx 64 --quiet | tok\.txt:1: 'six' is not a token id
token_past_vocab | | printf '1 2\n3 384\n' >$D/tok.txt | capture --model $FIX/tiny-1layer --tokens $D/tok.txt --out $O --ctx 64 --quiet | tok\.txt:2: token id 384 is not below vocab_size 384
input_without_tokenizer | | echo 'Some text.' >$D/c.txt | capture --model $FIX/tiny-1layer --input $D/c.txt --out $O --ctx 64 --quiet | tokenizer\.json: No such file or directory
tokenizer_past_vocab | | model tiny-1layer; cp $FIX/tokenizer/tokenizer.json $M/; echo 'Some text.' >$D/c.txt | capture --model $M --input $D/c.txt --out $O --ctx 64 --quiet | tokenizer\.json: token ids reach [0-9]+, the model's vocab_size is 384
ctx_past_max_positions | | echo "$LONGDOC" >$D/long.txt | capture --model $FIX/tiny-1layer --tokens $D/long.txt --ctx 1000 --out $O --quiet | max_position_embeddings
invalid_policy_parameter | | : | replay $TR --mode stats --policy 'bh(alpha=2)' --json $D/out/r.json | alpha must be in \(0, 1\), got 2
unknown_policy | | : | replay $TR --mode stats --policy 'fancy(k=2)' --json $D/out/r.json | unknown policy 'fancy'
policy_k_past_experts | | : | replay $TR --mode stats --policy 'topk(k=64)' --json $D/out/r.json | k=64 is more than the model's 16 experts
bad_sweep_file | | printf 'topk(k=8)\nbh(alpha=0.1,max_k=0)\n' >$D/sweep.txt | replay $TR --mode stats --sweep $D/sweep.txt --json $D/out/r.json | sweep\.txt:2: .*max_k must be in \[1, 256\], got 0
truncated_trace | | trace_copy; cut_to $TT 20000 | kde fit $TT --out $O --quiet | t\.h5: .*(truncated|cannot open|read)
damaged_trace_superblock | | trace_copy; poke $TT 45 '\001' | traces info $TT | t\.h5: cannot open: incorrect metadata checksum
not_a_trace | | echo hello >$D/x.h5 | replay $D/x.h5 --mode stats --policy 'topk(k=2)' --json $D/out/r.json | x\.h5: .*not an HDF5 file
null_not_hdf5 | | echo hello >$D/null.h5 | replay $TR --mode stats --policy 'bh(alpha=0.1)' --kde $D/null.h5 --json $D/out/r.json | null\.h5: .*not an HDF5 file
trace_from_another_model | replay-model | model tiny-clip | replay $TR --model $M --policy 'topk(k=4)' --out $O | model checksum
trace_without_residuals | replay-model | : | replay $TR --model $FIX/tiny-1layer --policy 'topk(k=4)' --out $O | (residual|--save-residuals)
unwritable_output | | : >$D/out/notadir | capture --model $FIX/tiny-1layer --tokens $TOK --out $D/out/notadir/run.h5 --ctx 64 --quiet | notadir/run\.h5.*Not a directory
existing_output | | echo keep >$O | capture --model $FIX/tiny-1layer --tokens $TOK --out $O --ctx 64 --quiet | run\.h5: already exists \(use --force to overwrite\)
full_disk_capture | | : | disk_limit 16 capture --model $FIX/tiny-1layer --tokens $TOK --out $O --ctx 64 --quiet | run\.h5(\.partial)?: .*File too large
full_disk_kde | | : | disk_limit 8 kde fit $TR --out $O --quiet | run\.h5(\.partial)?: .*File too large
full_disk_export | | : | disk_limit 2 traces export $TR --what logits --out $D/out/x.csv | x\.csv(\.partial)?: .*(File too large|write failed)
full_disk_stats_json | | : | disk_limit 1 replay $TR --mode stats --sweep topk --json $D/out/r.json --quiet | r\.json(\.partial)?: write error: File too large$
kde_layers_empty | | : | kde fit $TR --layers '' --out $O --quiet | --layers '': none given
kde_layers_negative | | : | kde fit $TR --layers=-1 --out $O --quiet | --layers '-1': '-1' is not a number or a range A-B
analyze_layers_negative | | : | analyze coactivation $TR --layers=-1 --out $D/out/a.h5 --quiet | --layers '-1': '-1' is not a number or a range A-B \(the trace has 1 layers\)$
analyze_name_empty | | : | analyze coactivation $TR --out $D/out/a.h5 --name '' --quiet | --name: result name '' must be non-empty
analyze_name_dotdot | | : | analyze coactivation $TR --out $D/out/a.h5 --name .. --quiet | --name: result name '\.\.' must be
match_tol_huge | | : | replay $TR --match-k 2 --families topp --match-tol 1e9 --mode stats --out $D/out/m.h5 | --match-tol must be in \(0, 1e6\), got 1e\+09
floor_denormal | | kde fit $TR --out $D/null.h5 --quiet | kde pvalue $D/null.h5 --layer 0 --floor 1e-320 1.0 | --floor: '1e-320' is too small
tokens_directory | | mkdir $D/tok | capture --model $FIX/tiny-1layer --tokens $D/tok --out $O --ctx 64 --quiet | tok: read error: Is a directory
sweep_directory | | mkdir $D/sw | replay $TR --mode stats --sweep $D/sw --json $D/out/r.json | sw: read error: Is a directory
routing_file_not_hdf5 | | echo hello >$D/x.h5 | replay $TR --mode stats --policy "file(path=$D/x.h5)" --json $D/out/r.json | \): [^ ]*/x\.h5: cannot open: not an HDF5 file
report_truncated_trace | | trace_copy; cut_to $TT 20000 | report $TT --out $D/out/rep | t\.h5: cannot open: truncated file
kde_check_other_depth | | fixture_trace mixtral $D/m.h5 && kde fit $D/m.h5 --out $D/null.h5 --quiet | kde check $D/null.h5 $TR | null\.h5: fitted to a model of 2 layers, .*good\.h5 has 1
kde_check_per_expert_other_experts | | fixture_trace mixtral $D/m.h5 && fixture_trace qwen2moe $D/q.h5 && kde fit $D/m.h5 --per-expert --out $D/null.h5 --quiet | kde check $D/null.h5 $D/q.h5 | q\.h5: the null is per expert of 4 experts, the trace has 8
out_is_the_trace | | cp $TR $D/out/t.h5 | kde fit $D/out/t.h5 --out $D/out/t.h5 --force --quiet | t\.h5: is an input of this command
json_is_the_trace | | cp $TR $D/out/t.h5 | analyze coactivation $D/out/t.h5 --json $D/out/t.h5 --force --quiet | t\.h5: is an input of this command
out_is_the_results | | cp $TR $D/out/t.h5; replay $D/out/t.h5 --mode stats --policy 'topk(k=2)' --store --quiet | replay $D/out/t.h5 --mode stats --policy 'topk(k=3)' --out $D/out/t.results.h5 --force --quiet | t\.results\.h5: is an input of this command
csv_is_the_null | | cp $TR $D/out/t.h5; kde fit $D/out/t.h5 --out $D/out/null.h5 --quiet | kde check $D/out/null.h5 $D/out/t.h5 --csv $D/out/null.h5 --force | null\.h5: is an input of this command
results_is_a_null | | kde fit $TR --out $D/null.h5 --quiet | analyze intervals $TR --results $D/null.h5 --quiet | null\.h5: is a file of format 'olmoe-kde', not a results file \(olmoe-replay --out\)$
results_is_a_trace | | : | analyze compare-policies $TR baseline baseline --results $TR --quiet | good\.h5: is a file of format 'olmoe-trace', not a results file
results_is_stats | | replay $TR --mode stats --policy 'topk(k=2)' --out $D/s.h5 --quiet | analyze headroom $TR --results $D/s.h5 --quiet | s\.h5: is a file of format 'olmoe-stats', not a results file
full_stdout_json | | : | to_full replay $TR --mode stats --sweep topk --json - --quiet | standard output: write error: No space left on device$
full_disk_analyze_json | | : | disk_limit 1 analyze coactivation $TR --json $D/out/a.json --quiet | a\.json: write error: File too large$
full_disk_kde_check_csv | | kde fit $TR --out $D/null.h5 --quiet | disk_limit 1 kde check $D/null.h5 $TR --csv $D/out/c.csv | c\.csv: write error: File too large$
full_disk_report_data | | cp $TR $D/t.h5 && replay $D/t.h5 --mode stats --sweep seed --pvalue pseudo --store --quiet | disk_limit 1 report $D/t.h5 --out $D/out/rep | [a-z_]+\.dat: write error: File too large$
results_read_only_replay | | cp $TR $D/out/t.h5 && replay $D/out/t.h5 --mode stats --policy 'topk(k=2)' --store --quiet && chmod 444 $D/out/t.results.h5 | replay $D/out/t.h5 --mode stats --policy 'topk(k=3)' --store --quiet | t\.results\.h5: is read-only \(mode 444\)
results_read_only_analyze | | cp $TR $D/out/t.h5 && replay $D/out/t.h5 --mode stats --policy 'topk(k=2)' --store --quiet && chmod 444 $D/out/t.results.h5 | analyze coactivation $D/out/t.h5 --in-trace --quiet | t\.results\.h5: is read-only \(mode 444\)
replay_device_empty | | capture --model $FIX/tiny-1layer --tokens $TOK --ctx 64 --save-residuals --quiet --out $D/r.h5 | replay $D/r.h5 --policy 'topk(k=2)' --device '' --json $D/out/r.json | --device: unknown device ''
EOF
}

# fingerprint of the output directory: names, sizes, contents
snapshot() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs -r cksum); }

n=0
table | while IFS='|' read -r name req setup cmd pat; do
    name=$(echo "$name" | tr -d ' ')
    req=$(echo "$req" | tr -d ' ')
    pat=${pat# }
    n=$((n + 1))
    D=$T/row$n
    O=$D/out/run.h5
    M= TT=
    mkdir -p "$D/out"
    if [ -n "$req" ] && ! has "$req"; then
        echo "SKIP test_bad_inputs/$name: needs $req (olmoe-replay --help does not mention --model yet)"
        continue
    fi
    if ! eval "$setup" >"$D/setup.log" 2>&1; then
        fail "$name" "setup failed: $(head -c 200 "$D/setup.log")"
        continue
    fi
    before=$(snapshot "$D/out")
    (ulimit -c 0; eval "$cmd") >"$D/stdout" 2>"$D/stderr"
    rc=$?
    after=$(snapshot "$D/out")
    # the error line(s): usage errors add "try '... --help'"
    grep -v "^try '.* --help'$" "$D/stderr" >"$D/lines"
    err=$(head -n 1 "$D/lines")
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$D/stderr"; then
        fail "$name" "sanitizer report: $(grep -m1 -E 'Sanitizer|runtime error' "$D/stderr")"
    elif [ "$rc" -eq 124 ]; then
        fail "$name" "hung: killed after 120 s"
    elif [ "$rc" -eq 0 ]; then
        fail "$name" "exit 0, wanted an error matching '$pat'$( [ -s "$D/stderr" ] && echo "; stderr: $(head -c 200 "$D/stderr")")"
    elif [ "$rc" -gt 129 ]; then
        fail "$name" "exit $rc (a signal?): $(head -c 200 "$D/stderr")"
    elif [ "$(wc -l <"$D/lines")" -ne 1 ]; then
        fail "$name" "stderr is not one line: $(head -c 300 "$D/stderr")"
    elif ! echo "$err" | grep -qE '^olmoe-[a-z]+: (fatal|usage): '; then
        fail "$name" "not an olmoe error line: $err"
    elif ! echo "$err" | grep -qE -- "$pat"; then
        fail "$name" "error lacks '$pat': $err"
    elif [ "$before" != "$after" ]; then
        fail "$name" "the output directory changed: $(cd "$D/out" && ls -A | tr '\n' ' ')"
    else
        pass "$name"
    fi
done
