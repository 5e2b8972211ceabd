#!/bin/sh
# bench/study_paper.sh OUTDIR: what a routing paper quotes, on the bundled
# trained model (models/olmoe-brown) and the Brown test split, on the CPU,
# from the repo root (bench/STUDY.md, "Error bars, headroom and the null"):
#   a. capture the test split at ctx 256 with residuals (as run A of study_brown.sh);
#   b. --exact for top-1, 2, 4, 8 and threshold at the taus run A calibrated on
#      the valid split for 2 and 4 experts per token (0.0925, 0.05326);
#   c. olmoe-analyze headroom (eps 0.01 and 0.1), its oracles as routing
#      files, and --exact with both;
#   d. 95 % bootstrap intervals of every result and the paired tests of
#      top-2 / top-4 against threshold at matched compute;
#   e. olmoe-kde check: a null fitted on the first half of the tokens, checked
#      on the second half (the split has no held-out valid file here);
#   f. olmoe-report over all of it.
# Environment: BIN (bin), MODEL (models/olmoe-brown). Every stage prints its wall time.
set -eu
[ $# -eq 1 ] || { echo "usage: sh bench/study_paper.sh OUTDIR" >&2; exit 129; }
O=$1
BIN=${BIN:-bin}
MODEL=${MODEL:-models/olmoe-brown}
mkdir -p "$O"
t0=$(date +%s)
stage() { echo "== $* ($(($(date +%s) - t0)) s)"; }

stage "a. capture"
"$BIN/olmoe-capture" --model "$MODEL" --input data/brown-test.jsonl --format jsonl --field text \
    --group-field genre --ctx 256 --save-residuals --device cpu --out "$O/test.h5" --force --quiet
stage "b. exact ladder and threshold"
"$BIN/olmoe-replay" "$O/test.h5" --model "$MODEL" --exact --policy 'topk(k={1,2,4,8})' \
    --policy 'threshold(tau={0.0925,0.05326},max_k=16)' --device cpu --out "$O/ladder.h5" \
    --csv "$O/ladder.csv" --force --quiet
stage "c. headroom and its oracles"
"$BIN/olmoe-analyze" headroom "$O/test.h5" --results "$O/ladder.h5" --csv "$O/headroom.csv" \
    --json "$O/headroom.json" --write-routing "$O/oracle01.h5" --write-eps 0.01 --force | tee "$O/headroom.txt"
"$BIN/olmoe-analyze" headroom "$O/test.h5" --results "$O/ladder.h5" --eps 0.1 \
    --write-routing "$O/oracle1.h5" --write-eps 0.1 --force --quiet
"$BIN/olmoe-replay" "$O/test.h5" --model "$MODEL" --exact --routing-file "$O/oracle01.h5" \
    --routing-file "$O/oracle1.h5" --device cpu --out "$O/oracle_exact.h5" --csv "$O/oracle_exact.csv" \
    --force --quiet
stage "d. intervals and paired tests"
R="--results $O/ladder.h5 --results $O/oracle_exact.h5"
# shellcheck disable=SC2086 # $R is options
"$BIN/olmoe-analyze" intervals "$O/test.h5" $R --csv "$O/intervals.csv" --json "$O/intervals.json" \
    --force | tee "$O/intervals.txt"
for pair in "topk(k=2) threshold(tau=0.0925,max_k=16)" "topk(k=4) threshold(tau=0.05326,max_k=16)" \
    "topk(k=2) topk(k=4)"; do
    # shellcheck disable=SC2086
    set -- $pair
    # shellcheck disable=SC2086
    "$BIN/olmoe-analyze" compare-policies "$O/test.h5" "$1" "$2" $R
done | tee "$O/compare.txt"
stage "e. null check"
"$BIN/olmoe-kde" fit "$O/test.h5" --max-tokens 69632 --out "$O/null_half.h5" --force --quiet
"$BIN/olmoe-kde" check "$O/null_half.h5" "$O/test.h5" --start 69632 --csv "$O/nullcheck.csv" \
    --png "$O/nullcheck.png" --force | tee "$O/nullcheck.txt"
stage "f. report"
"$BIN/olmoe-report" "$O/test.h5" "$O/ladder.h5" "$O/oracle_exact.h5" --out "$O/report" --force --quiet
grep -q '^## Error bars' "$O/report/report.md" && grep -q '^## Headroom' "$O/report/report.md"
stage "done"
