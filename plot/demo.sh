#!/bin/sh
# plot/demo.sh MODEL OUTDIR BINDIR: the main job on the bundled model, as
# `make demo` runs it: capture the committed Brown test split (by genre) into
# a trace, then summarise it. Later stages of the pipeline join here as they land.
set -eu
model=$1 out=$2 bin=$3
corpus=data/brown-test.jsonl
mkdir -p "$out"
# The whole pipeline, in about a minute on a laptop CPU: capture (with the
# attention residuals replay needs) -> null distributions -> a sweep of four
# routing families at budgets that differ (plot/demo-sweep.txt: the top-k
# ladder, threshold, top-p, BH at alphas that select more than one expert)
# -> matched compute -> the routing analyses -> the report. So that it stays
# short and still covers every genre, it reads the first DEMO_CHARS
# characters (default 3000, about 850 tokens) of the first document of each
# genre of the test split; DEMO_CHARS=0 reads the whole split.
chars=${DEMO_CHARS:-3000}
t0=$(date +%s)
stage() { echo "== [$(($(date +%s) - t0)) s] $*"; }
if [ "$chars" -gt 0 ]; then
    # text is the last field of each line; cutting it at a space keeps the JSON valid
    awk -v max="$chars" '
    {
        g = ""
        if (match($0, /"genre": "[^"]*"/)) g = substr($0, RSTART, RLENGTH)
        if (g in seen) next
        seen[g] = 1
        i = index($0, "\"text\": \"")
        if (!i) next
        head = substr($0, 1, i + 8); text = substr($0, i + 9)
        if (length(text) > max) {
            cut = max
            while (cut > 1 && substr(text, cut, 1) != " ") cut--
            text = substr(text, 1, cut - 1) "\"}"
        }
        print head text
    }' "$corpus" >"$out/demo.jsonl"
    corpus=$out/demo.jsonl
fi
stage "olmoe-capture: $model over $corpus"
# a new trace: the results of an earlier demo's belong to the old one
rm -f "$out/run.results.h5"
"$bin/olmoe-capture" --model "$model" --input "$corpus" --format jsonl --field text \
    --group-field genre --ctx 256 --save-residuals --out "$out/run.h5" --force --quiet
stage "olmoe-traces info"
"$bin/olmoe-traces" info "$out/run.h5"

stage "olmoe-kde fit: per-layer null distributions"
"$bin/olmoe-kde" fit "$out/run.h5" --out "$out/null.h5" --force

sweep=plot/demo-sweep.txt
stage "olmoe-replay --mode stats: four families ($sweep) on the captured logits"
"$bin/olmoe-replay" "$out/run.h5" --mode stats --sweep "$sweep" --kde "$out/null.h5" --store --force --quiet

stage "olmoe-replay: their perplexity (frozen-attention replay; tables in $out/replay.txt)"
"$bin/olmoe-replay" "$out/run.h5" --sweep "$sweep" --kde "$out/null.h5" --force --quiet >"$out/replay.txt"

stage "olmoe-replay --match-k 2,4: each family calibrated to 2 and 4 experts per token, then scored"
"$bin/olmoe-replay" "$out/run.h5" --match-k 2,4 --families 'topp,threshold,bh' --kde "$out/null.h5" \
    --force --quiet >"$out/match.txt"

stage "olmoe-analyze: co-activation, flow, domain and token specialization"
"$bin/olmoe-analyze" coactivation "$out/run.h5" --in-trace --force --quiet
"$bin/olmoe-analyze" flow "$out/run.h5" --in-trace --force --quiet
"$bin/olmoe-analyze" specialization "$out/run.h5" --by group --in-trace --force --quiet
"$bin/olmoe-analyze" specialization "$out/run.h5" --by token --in-trace --force --quiet

stage "olmoe-report"
"$bin/olmoe-report" "$out/run.h5" --kde "$out/null.h5" --out "$out/report" --force --quiet
echo
echo "demo: the report is $out/report/report.md (figures, data and gnuplot scripts next to it)," \
    "made in $(($(date +%s) - t0)) s"
