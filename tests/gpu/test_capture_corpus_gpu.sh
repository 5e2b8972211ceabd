#!/bin/sh
# test_capture_corpus_gpu.sh: olmoe-capture --device cuda on a text corpus
# with the bundled trained model: windows per document of uneven length and
# small batch buffers (once these made the engine page-lock memory next to
# the NLL buffer, and every copy into it failed). The trace must agree with
# the CPU reference (fp32, equal to HF within 5e-7): perplexity within 0.5 %,
# the top-8 sets overlapping on >= 98 % of the experts at every layer (a
# trained router rarely sits on a tie; bf16 flips the rest). Prints the
# agreement as '#' lines.
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
M=models/olmoe-brown
A="--model $M --input data/brown-test.jsonl --format jsonl --field text --group-field genre --ctx 256 --max-tokens 20000 --quiet"
ppl() { "$OLMOE_BIN/olmoe-traces" info "$1" | awk '/^perplexity:/ { print $2 }'; }
if ! $CAP $A --device cpu --out "$T/cpu.h5" 2>"$T/err"; then
    fail cpu_capture "$(cat "$T/err")"
    exit 0
fi
for b in 8 1; do
    if $CAP $A --device cuda --batch $b --out "$T/cuda$b.h5" 2>"$T/err"; then
        pass "cuda_capture_batch$b"
    else
        fail "cuda_capture_batch$b" "$(head -c 300 "$T/err")"
        continue
    fi
    p0=$(ppl "$T/cpu.h5") p1=$(ppl "$T/cuda$b.h5")
    echo "# batch $b: perplexity cpu $p0, cuda $p1"
    check "perplexity_batch$b" awk -v a="$p0" -v b="$p1" 'BEGIN { d = b / a - 1; exit !(d < 0.005 && d > -0.005) }'
    "$OLMOE_BIN/olmoe-analyze" compare "$T/cpu.h5" "$T/cuda$b.h5" --top 1 >"$T/cmp" 2>&1
    # the per-layer table: from its header to the first empty line
    awk '/^layer/ { t = 1; next } !NF { t = 0 } t { printf "# batch '"$b"' layer %s: top-8 overlap %s, same set %s, top-1 %s\n", $1, $2, $4, $3 }' "$T/cmp"
    check "agreement_batch$b" awk '/^layer/ { t = 1; next } !NF { t = 0 } t { n++; if ($2 < 0.98) bad++ } END { exit !(n == 4 && !bad) }' "$T/cmp"
done
