#!/bin/sh
# test_old_trace.sh: a trace written by the binaries of an earlier layout of the
# tree (tests/fixtures/old-trace/README.md says which commit and command) is
# read by today's commands as those old binaries read it. The expected outputs
# in tests/fixtures/old-trace/expected/ were printed by the old binaries.
. tests/lib.sh
F=$FIX/old-trace
E=$F/expected
M=$PWD/models/olmoe-brown
TR="$OLMOE_BIN/olmoe-traces"
root=$PWD

gzip -dc "$F/old.h5.gz" >"$T/old.h5" || { fail unpack "gzip -dc $F/old.h5.gz"; exit 0; }
cp "$T/old.h5" "$T/pristine.h5"

# same_numbers EXPECTED ACTUAL TOL: the same lines, every number within TOL
# relative (TOL 0: equal as printed)
same_numbers() {
    awk -v tol="$3" '
    function split_line(s, nums,   n, k) {
        n = 0; k = ""
        while (match(s, /-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) {
            nums[++n] = substr(s, RSTART, RLENGTH)
            k = k substr(s, 1, RSTART - 1) "#"
            s = substr(s, RSTART + RLENGTH)
        }
        skel = k s
        return n
    }
    NR == FNR { want[FNR] = $0; nw = FNR; next }
    {
        if (FNR > nw) { print "extra line " FNR ": " $0; bad = 1; exit }
        n1 = split_line(want[FNR], a); s1 = skel
        n2 = split_line($0, b); s2 = skel
        if (s1 != s2 || n1 != n2) { print "line " FNR ": want " want[FNR] ", got " $0; bad = 1; exit }
        for (i = 1; i <= n1; i++) {
            x = a[i] + 0; y = b[i] + 0; d = x - y; if (d < 0) d = -d
            m = (x < 0 ? -x : x); if ((y < 0 ? -y : y) > m) m = (y < 0 ? -y : y)
            if ((tol == 0 && a[i] != b[i]) || (tol > 0 && d > tol * m + 1e-12)) {
                print "line " FNR ": " a[i] " became " b[i]; bad = 1; exit
            }
        }
    }
    END { if (!bad && FNR < nw && NR > nw) { print "missing lines after " FNR; bad = 1 }
          exit bad }' "$1" "$2" >"$T/why" 2>&1
}
same() { # same NAME EXPECTED ACTUAL TOL
    if same_numbers "$2" "$3" "$4"; then pass "$1"; else fail "$1" "$(head -c 300 "$T/why")"; fi
}

cd "$T"
# verify and info: what the old olmoe-traces said (info may say more today)
"$TR" verify old.h5 >verify.txt 2>err
check verify-ok [ $? -eq 0 ]
check verify-same cmp -s "$root/$E/verify.txt" verify.txt
"$TR" info old.h5 >info.txt 2>err
check info-ok [ $? -eq 0 ]
missing=""
while IFS= read -r line; do
    grep -Fxq -- "$line" info.txt || missing="$missing[$line]"
done <"$root/$E/info.txt"
check info-same-lines [ -z "$missing" ]
[ -z "$missing" ] || echo "    info lines the old binary printed and this one does not: $missing"

# exports: every number as the old binary printed it
for k in tokens nll argmax windows; do
    "$TR" export old.h5 --what $k >$k.csv 2>err
    same "export-$k" "$root/$E/$k.csv" $k.csv 0
done
"$TR" export old.h5 --what text --tokenizer "$M/tokenizer.json" >text.csv 2>err
check export-text cmp -s "$root/$E/text.csv" text.csv
"$TR" export old.h5 --what logits --count 2 >logits-head.csv 2>err
same export-logits-head "$root/$E/logits-head.csv" logits-head.csv 0
sum=$("$TR" export old.h5 --what logits 2>err | sha256sum | cut -d' ' -f1)
check export-logits-all [ "$sum" = "$(cat "$root/$E/logits.sha256")" ]

# the replay result the old olmoe-replay stored in the trace
"$TR" export old.h5 --what decisions --policy 'topk(k=4)' --tokenizer "$M/tokenizer.json" \
    >decisions.txt 2>err
same export-decisions "$root/$E/decisions.txt" decisions.txt 0
"$OLMOE_BIN/olmoe-report" old.h5 --out rep --quiet --format svg >/dev/null 2>err
check report-ok [ $? -eq 0 ]
for d in "$root/$E"/report/*.dat; do
    n=$(basename "$d")
    grep -v '^#' "$d" >want.dat
    grep -v '^#' "rep/$n" >got.dat 2>/dev/null
    same "report-$n" want.dat got.dat 0
done

# replay of the old trace by today's olmoe-replay: the old binary's numbers
# (recomputed, so within 1e-6 relative; OpenBLAS may differ by machine);
# --resamples 0 leaves out the intervals that the old format did not have
"$OLMOE_BIN/olmoe-replay" old.h5 --model "$M" --policy 'topk(k=4)' --out r.h5 --json r.json \
    --resamples 0 --quiet >/dev/null 2>err
check replay-ok [ $? -eq 0 ]
grep -v -E '"(seconds|cpu_seconds|tokens_per_second|model|trace)":' r.json >replay.json
same replay-json "$root/$E/replay.json" replay.json 1e-6

# the old result, stored in the trace under its spec, is found by the spec:
# storing it again is refused, and --force replaces it (in the results file
# beside the trace) under its typable name, never beside it
expect_fail store-again-refused 'already exists' "$OLMOE_BIN/olmoe-replay" old.h5 --model "$M" \
    --policy 'topk(k=4)' --quiet
check store-again-nothing-written [ ! -e old.results.h5 ]
"$OLMOE_BIN/olmoe-replay" old.h5 --model "$M" --policy 'topk(k=4)' --force --resamples 0 --quiet \
    >/dev/null 2>err
check store-force-ok [ $? -eq 0 ]
h5ls old.results.h5/replay >groups.txt 2>err
check store-force-typable-name [ "$(cut -d' ' -f1 groups.txt)" = topk_k_4_norm_model ]
"$TR" info old.h5 >info2.txt 2>err
check store-force-listed-by-spec grep -q \
    '^  replay  *topk(k=4,norm=model)  *command \[0\]  in /replay/topk_k_4_norm_model$' info2.txt
"$TR" export old.h5 --what decisions --policy 'topk(k=4)' --tokenizer "$M/tokenizer.json" \
    >decisions2.txt 2>err
same store-force-decisions "$root/$E/decisions.txt" decisions2.txt 1e-5

# reading never wrote the trace
check trace-untouched cmp -s old.h5 pristine.h5
