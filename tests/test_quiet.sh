#!/bin/sh
# test_quiet.sh: --quiet and "-" mean the same in every command.
# --quiet silences what goes to stderr other than errors (notes, progress,
# timings) and never changes stdout: each command is run without and with
# it, and its stdout must be the same byte for byte, its quiet stderr empty.
# --json - (and --csv -) writes that output to stdout, alone (no table):
# valid JSON there, no file named "-"; both on stdout at once is a usage
# error; HDF5 outputs refuse "-" instead of creating a file of that name.
. tests/lib.sh
B=$OLMOE_BIN
CAP="$B/olmoe-capture"
R="$B/olmoe-replay"
A="$B/olmoe-analyze"
M=$PWD/$FIX/tiny-f32
cd "$T" # where a file named "-" would appear

"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --save-residuals --out "$T/t.h5" \
    --quiet >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
for i in 0 1; do
    "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --shard $i/2 --out "$T/s$i.h5" \
        --quiet >/dev/null 2>"$T/err" || { fail setup_shard "$(cat "$T/err")"; exit 0; }
done

# same_out NAME CMD...: CMD, then CMD --force --quiet: the same stdout, but
# for timings (the sed of $TIMES blanks them), nothing on the quiet run's stderr
TIMES='s/, [0-9.]* tokens\/s/, N tokens\/s/'
same_out() {
    n=$1
    shift
    if ! "$@" >"$T/o1" 2>"$T/e1"; then fail "$n" "exit status: $(head -c 300 "$T/e1")"; return; fi
    if ! "$@" --force --quiet >"$T/o2" 2>"$T/e2"; then fail "$n" "--quiet: $(head -c 300 "$T/e2")"; return; fi
    sed -E -i "$TIMES" "$T/o1" "$T/o2"
    if [ ! -s "$T/o1" ]; then
        fail "$n" "nothing on stdout to compare"
    elif ! cmp -s "$T/o1" "$T/o2"; then
        fail "$n" "--quiet changed stdout: $(diff "$T/o1" "$T/o2" | head -c 300)"
    elif [ -s "$T/e2" ]; then
        fail "$n" "--quiet left stderr: $(head -c 300 "$T/e2")"
    else
        pass "$n"
    fi
}

same_out capture "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --out "$T/c.h5"
check capture_has_notes test -s "$T/e1" # so that the quiet run had something to silence
same_out kde_fit "$B/olmoe-kde" fit "$T/t.h5" --out "$T/null.h5"
same_out kde_check "$B/olmoe-kde" check "$T/null.h5" "$T/t.h5"
# replay's rows end in seconds, CPU seconds and tokens/s; stats' in M token-layers/s
TIMES='s/^((exact|replay) .*)( +[0-9.]+){3}$/\1/'
same_out replay "$R" "$T/t.h5" --policy 'topk(k=1)' --policy 'topk(k=2)' --policy 'topk(k=3)' \
    --exact --out "$T/r.h5" --resamples 0
check replay_has_notes test -s "$T/e1"
TIMES='s/^(topk.*) +[0-9.]+$/\1/'
same_out replay_stats "$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --out "$T/st.h5"
TIMES='s/^((exact|replay) .*)( +[0-9.]+){3}$/\1/'
same_out replay_match "$R" "$T/t.h5" --match-k 2 --families topp --out "$T/mk.h5"
for i in 0 1; do
    "$R" "$T/t.h5" --policy 'topk(k=2)' --chunk 12 --shard $i/2 --out "$T/rs$i.h5" --quiet >/dev/null 2>&1
done
same_out replay_merge "$R" --mode merge --out "$T/m.h5" "$T/t.h5" "$T/rs0.h5" "$T/rs1.h5"
TIMES=''
same_out analyze "$A" coactivation "$T/t.h5" --top 3
same_out analyze_intervals "$A" intervals "$T/t.h5" --results "$T/r.h5" --resamples 50
same_out analyze_compare_policies "$A" compare-policies "$T/t.h5" 'topk(k=1)' 'topk(k=2)' \
    --results "$T/r.h5" --resamples 50
same_out analyze_headroom "$A" headroom "$T/t.h5" --results "$T/r.h5"
same_out traces_merge "$B/olmoe-traces" merge "$T/merged.h5" "$T/s0.h5" "$T/s1.h5"
same_out report "$B/olmoe-report" "$T/t.h5" "$T/r.h5" --out "$T/rep" --format svg

# ---- every --quiet says the same in --help ----
for c in "olmoe-capture" "olmoe-kde fit" "olmoe-kde check" "olmoe-replay" "olmoe-replay --mode stats" \
    "olmoe-replay --match-k 2" "olmoe-replay --mode merge" "olmoe-analyze coactivation" \
    "olmoe-analyze intervals" "olmoe-traces merge" "olmoe-report"; do
    set -- $c
    cmd=$1
    shift
    "$B/$cmd" "$@" --help >"$T/help" 2>&1
    check "help_$(echo "$c" | tr ' -' '__')" grep -q -- '--quiet  *no notes or progress on stderr$' "$T/help"
done

# ---- --json -: the JSON alone on stdout ----
# json_out NAME CMD...: CMD --json - prints valid JSON, nothing else, and no file "-"
json_out() {
    n=$1
    shift
    if ! "$@" --json - >"$T/j" 2>"$T/e"; then fail "$n" "exit status: $(head -c 300 "$T/e")"
    elif ! python3 -m json.tool "$T/j" >/dev/null 2>"$T/e"; then fail "$n" "not JSON: $(head -c 300 "$T/j")"
    elif [ -e ./- ]; then fail "$n" "a file named '-' was written"
    else pass "$n"
    fi
}
json_out json_replay "$R" "$T/t.h5" --policy 'topk(k=2)' --out "$T/j1.h5" --resamples 20
json_out json_replay_stats "$R" "$T/t.h5" --mode stats --policy 'topk(k=2)'
json_out json_replay_match "$R" "$T/t.h5" --match-k 2 --families topp --out "$T/j2.h5"
json_out json_replay_merge "$R" --mode merge --out "$T/j3.h5" "$T/t.h5" "$T/rs0.h5" "$T/rs1.h5"
json_out json_analyze "$A" coactivation "$T/t.h5" --top 3
json_out json_analyze_flow "$A" flow "$T/t.h5" --top 3
json_out json_intervals "$A" intervals "$T/t.h5" --results "$T/r.h5" --resamples 50
json_out json_compare_policies "$A" compare-policies "$T/t.h5" 'topk(k=1)' 'topk(k=2)' --results "$T/r.h5" \
    --resamples 50
json_out json_headroom "$A" headroom "$T/t.h5" --results "$T/r.h5"
# the same JSON as --json FILE writes, but for the command line it records
"$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --json "$T/st.json" --quiet >/dev/null
"$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --json - --quiet >"$T/st-stdout.json"
# same_json A B: the same JSON but for timings
same_json() {
    python3 -c '
import json, sys
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if "second" not in k and not k.endswith("_per_s")}
    return [strip(v) for v in x] if isinstance(x, list) else x
a, b = (strip(json.load(open(f))) for f in sys.argv[1:3])
sys.exit(a != b or not a)' "$1" "$2" 2>/dev/null
}
check json_same_as_file same_json "$T/st.json" "$T/st-stdout.json"
# --csv - likewise, and the CSV alone on stdout
"$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --csv "$T/st.csv" --quiet >/dev/null
"$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --csv - --quiet >"$T/st-stdout.csv"
check csv_same_as_file cmp -s "$T/st.csv" "$T/st-stdout.csv"
"$B/olmoe-kde" check "$T/null.h5" "$T/t.h5" --csv "$T/k.csv" >/dev/null
"$B/olmoe-kde" check "$T/null.h5" "$T/t.h5" --csv - >"$T/k-stdout.csv"
check kde_check_csv_stdout cmp -s "$T/k.csv" "$T/k-stdout.csv"
# olmoe-traces export --out -: stdout, as without --out
"$B/olmoe-traces" export "$T/t.h5" --what tokens >"$T/x1"
"$B/olmoe-traces" export "$T/t.h5" --what tokens --out - >"$T/x2"
check export_out_dash cmp -s "$T/x1" "$T/x2"
check no_file_named_dash test ! -e ./-

expect_fail json_and_csv_stdout "only one output can go to standard output" \
    "$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --json - --csv -
expect_fail analyze_json_and_csv_stdout "only one output can go to standard output" \
    "$A" coactivation "$T/t.h5" --json - --csv -
expect_fail capture_out_dash "not for standard output" \
    "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --out -
expect_fail kde_out_dash "is for text outputs" "$B/olmoe-kde" fit "$T/t.h5" --out -
expect_fail replay_out_dash "is for text outputs" "$R" "$T/t.h5" --mode stats --policy 'topk(k=2)' --out -
check no_file_named_dash_after_refusals test ! -e ./-

# a trace path with a quote and a backslash still gives valid JSON
cp "$T/t.h5" "$T/q\"u\\ote.h5"
json_out json_path_escaped "$A" intervals "$T/q\"u\\ote.h5" --results "$T/r.h5" --resamples 50
check json_path_kept sh -c "python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))[\"trace\"] != sys.argv[2])' '$T/j' '$T/q\"u\\ote.h5'"
