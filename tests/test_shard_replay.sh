#!/bin/sh
# test_shard_replay.sh: olmoe-replay --shard i/N and --mode merge.
# Replay, exact and validate results of 2 shards, run one after another on
# the CPU and merged, equal the unsharded run's bit for bit: every per-token
# dataset, the expert loads and histograms, every summary attribute (whole run
# and per group) and the validation table. Bad sets of shards are refused.
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
RP="$OLMOE_BIN/olmoe-replay"
M=models/olmoe-brown
awk 'BEGIN { srand(5); split("the of a man said time house water night city old people long", w, " ");
     for (d = 0; d < 12; d++) { n = 5 + int(rand() * 60); s = "";
     for (i = 0; i < n; i++) s = s w[1 + int(rand() * 13)] " ";
     printf "{\"genre\": \"%s\", \"text\": \"%s.\"}\n", d % 3 ? "news" : "fiction", s } }' >"$T/docs.jsonl"
"$CAP" --model $M --input "$T/docs.jsonl" --format jsonl --group-field genre --ctx 48 --stride 16 \
    --save-residuals --quiet --out "$T/t.h5" >/dev/null || { fail capture "exit $?"; exit 0; }
P="--model $M --policy topk(k=4) --policy topp(p=0.5) --chunk 64 --validate --quiet"
"$RP" "$T/t.h5" $P --out "$T/full.h5" >/dev/null || { fail unsharded "exit $?"; exit 0; }
for i in 0 1; do
    "$RP" "$T/t.h5" $P --shard $i/2 --out "$T/s$i.h5" >"$T/s$i.out" 2>"$T/err" ||
        { fail "shard$i" "$(head -c 300 "$T/err")"; exit 0; }
done
check shard-table-counts-its-rows grep -q "^# [0-9]* tokens ([0-9]* scored)" "$T/s1.out"
"$RP" --mode merge --out "$T/m.h5" --csv "$T/m.csv" "$T/t.h5" "$T/s1.h5" "$T/s0.h5" >"$T/m.out" 2>"$T/err" ||
    { fail merge "$(head -c 300 "$T/err")"; exit 0; }

same_results() {
    for k in replay exact; do
        for id in 'topk(k=4,norm=model)' 'topp(p=0.5,max_k=8,min_k=1,T=1,norm=model)'; do
            g="/$k/$(typable "$id")"
            for d in nll argmax experts k_hist load mean_k_layer; do
                h5diff -q "$1" "$2" "$g/$d" >/dev/null 2>&1 || { echo "$g/$d differs" >&2; return 1; }
            done
            for a in perplexity nll_sum n_scored mean_k accuracy sd_k share_min_k share_max_k \
                compute_saved baseline_perplexity n_tokens $(for x in fiction news; do
                    for y in perplexity n_scored mean_k accuracy; do echo "groups/$x/$y"; done; done); do
                x=$(h5dump -a "$g/$a" "$1" 2>/dev/null | grep '(0)')
                y=$(h5dump -a "$g/$a" "$2" 2>/dev/null | grep '(0)')
                [ -n "$x" ] && [ "$x" = "$y" ] || { echo "$g $a: '$x' vs '$y'" >&2; return 1; }
            done
        done
    done
    for d in policy replay_ppl exact_ppl rel_diff nll_corr nll_mad; do
        h5diff -q "$1" "$2" "/validate/$d" >/dev/null 2>&1 || { echo "/validate/$d differs" >&2; return 1; }
    done
}
check merged-equals-unsharded same_results "$T/full.h5" "$T/m.h5"
check merged-csv-rows [ "$(wc -l <"$T/m.csv")" -gt 4 ]
check merged-prints-table grep -q "^replay topk(k=4,norm=model)" "$T/m.out"

expect_fail missing-shard "a run of 2 shards, 1 given" "$RP" --mode merge --out "$T/x.h5" "$T/t.h5" "$T/s1.h5"
expect_fail duplicate "both are shard 1/2" "$RP" --mode merge --out "$T/x.h5" "$T/t.h5" "$T/s1.h5" "$T/s1.h5"
expect_fail not-a-shard "not the results of olmoe-replay --shard" "$RP" --mode merge --out "$T/x.h5" "$T/t.h5" "$T/full.h5"
expect_fail exists "already exists (use --force" "$RP" --mode merge --out "$T/m.h5" "$T/t.h5" "$T/s0.h5" "$T/s1.h5"
expect_fail needs-out "--shard needs --out" "$RP" "$T/t.h5" $P --shard 0/2
expect_fail too-many "use at most 1 shard (or a smaller --chunk)" "$RP" "$T/t.h5" $P --shard 0/2 --chunk 100000 --out "$T/y.h5"
check no-output-on-error [ ! -e "$T/x.h5" ] && [ ! -e "$T/y.h5" ]
