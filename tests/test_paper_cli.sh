#!/bin/sh
# test_paper_cli.sh: olmoe-analyze intervals, compare-policies and headroom
# on the tiny fixture's exact top-k ladder: the baseline against itself is
# [0, 0] with p = 1 (in the table, CSV and JSON); a seed reproduces its
# numbers; a perplexity that overflows is null in the JSON, which stays
# strict JSON, and a path that is not UTF-8 has U+FFFD for its bad byte; the
# headroom oracle's mean k lies in [1, baseline k] and its perplexity is at
# most the baseline's times e^eps; its routing file runs under --exact; the
# man page documents every option --help lists.
. tests/lib.sh
B=$OLMOE_BIN
A="$B/olmoe-analyze"
M=$FIX/tiny-f32
"$B/olmoe-capture" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --top-k 4 --save-residuals \
    --out "$T/t.h5" --quiet >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
"$B/olmoe-replay" "$T/t.h5" --model "$M" --exact --policy 'topk(k={1,2,3})' --quiet >/dev/null 2>"$T/err" ||
    fail ladder "$(cat "$T/err")"

# ---- error bars ----
if "$A" compare-policies "$T/t.h5" baseline baseline --csv "$T/self.csv" --json "$T/self.json" >"$T/self" 2>"$T/err"
then pass self_runs; else fail self_runs "$(cat "$T/err")"; fi
check self_zero grep -q 'B/A - 1 +0.000 % \[+0.000 %, +0.000 %\].*p = 1$' "$T/self"
check self_csv_zero sh -c "sed 1d '$T/self.csv' | cut -d, -f15-18 | grep -qx '0,0,0,1'"
check self_json_zero python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
sys.exit(not (r["delta_ci"] == [0, 0] and r["delta"] == 0 and r["p_value"] == 1))' "$T/self.json"
# one of the 5 documents holds no scored token (its only one ends the stream): 4 are drawn
check self_units grep -q 'over 4 documents' "$T/self"
"$A" compare-policies "$T/t.h5" 'topk(k=1)' 'topk(k=2)' --seed 3 --resamples 200 --csv "$T/a.csv" --quiet >/dev/null
"$A" compare-policies "$T/t.h5" 'topk(k=1)' 'topk(k=2)' --seed 3 --resamples 200 --csv "$T/b.csv" --quiet >/dev/null
"$A" compare-policies "$T/t.h5" 'topk(k=1)' 'topk(k=2)' --seed 4 --resamples 200 --csv "$T/c.csv" --quiet >/dev/null
check seed_reproduces cmp -s "$T/a.csv" "$T/b.csv"
check seed_matters sh -c "! cmp -s '$T/a.csv' '$T/c.csv'"
if "$A" intervals "$T/t.h5" --csv "$T/i.csv" >"$T/i" 2>"$T/err"; then pass intervals_runs
else fail intervals_runs "$(cat "$T/err")"; fi
check intervals_rows test "$(sed 1d "$T/i.csv" | wc -l)" -eq 3
check intervals_row grep -q '^exact,"topk(k=2,norm=model)","baseline",document,4,' "$T/i.csv"
expect_fail missing_policy "no exact results for topk(k=7)" "$A" compare-policies "$T/t.h5" baseline 'topk(k=7)'

# olmoe-replay's own CSV and JSON carry the intervals
"$B/olmoe-replay" "$T/t.h5" --model "$M" --exact --policy 'topk(k=2)' --out "$T/r.h5" --csv "$T/r.csv" \
    --json "$T/r.json" --seed 3 --resamples 300 --quiet >/dev/null 2>"$T/err" || fail replay_ci "$(cat "$T/err")"
# (ids hold commas inside quotes: columns counted from the end)
check replay_csv_ci awk -F, 'NR == 1 { ok = $16 == "ppl_lo" && $19 == "delta_hi" }
    NR == 2 { ok = ok && $(NF-3) + 0 < $(NF-12) + 0 && $(NF-12) + 0 < $(NF-2) + 0 && $(NF-1) < $NF } END { exit !ok }' "$T/r.csv"
check replay_json_ci grep -q '"resamples": 300' "$T/r.json"
"$A" intervals "$T/t.h5" --results "$T/r.h5" --seed 3 --resamples 300 --csv "$T/i3.csv" --quiet >/dev/null
awk -F, 'NR == 2 { printf "%.6g %.6g\n", $(NF-3), $(NF-2) }' "$T/r.csv" >"$T/ci_a"
grep '^exact,"topk(k=2,' "$T/i3.csv" | head -n 1 | awk -F, '{ printf "%.6g %.6g\n", $(NF-8), $(NF-7) }' >"$T/ci_b"
check replay_ci_equals_intervals cmp -s "$T/ci_a" "$T/ci_b"

# ---- numbers without a JSON form ----
# a stored NLL of 1e30 nats: the perplexity overflows to infinity and its
# interval and delta are NaN or infinite, which JSON writes as null (the
# table prints inf); every other number is finite. The parse refuses NaN and
# Infinity, which Python's json would otherwise take.
PY=${OLMOE_PYTHON:-/usr/bin/python3}
json_strict() { # json_strict FILE KEY=null|number...: FILE is strict JSON; each key of its last row is as said
    python3 - "$@" <<'PYEOF'
import json, math, sys
def bad(c): raise ValueError("not JSON: " + c)
doc = json.load(open(sys.argv[1]), parse_constant=bad)
def finite(x):
    if isinstance(x, float): assert math.isfinite(x), x
    elif isinstance(x, dict): [finite(v) for v in x.values()]
    elif isinstance(x, list): [finite(v) for v in x]
finite(doc)
r = doc["results"][-1]
for kv in sys.argv[2:]:
    k, want = kv.split("=")
    v = r[k]
    ok = v is None if want == "null" else isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok: sys.exit("%s: %r, wanted %s" % (k, v, want))
PYEOF
}
if ! "$PY" -c 'import h5py' 2>/dev/null; then
    fail huge_nll_setup "$PY cannot import h5py (apt-get install python3-h5py; .ci/install-deps does)"
elif ! "$B/olmoe-replay" "$T/t.h5" --model "$M" --exact --policy 'topk(k=2,norm=selected)' --out "$T/huge.h5" --quiet \
        >/dev/null 2>"$T/err" ||
    ! "$PY" -c "import h5py, numpy as np
f = h5py.File('$T/huge.h5', 'r+')
d = f['/exact/topk_k_2_norm_selected/nll']
x = d[:]
x[np.isfinite(x)] = 1e30
d[:] = x" 2>>"$T/err"; then
    fail huge_nll_setup "$(cat "$T/err")"
else
    "$A" compare-policies "$T/t.h5" baseline 'topk(k=2,norm=selected)' --results "$T/huge.h5" --resamples 50 \
        --json "$T/huge.json" >"$T/huge" 2>"$T/err" || fail huge_compare_runs "$(cat "$T/err")"
    check huge_table_inf grep -q '^B perplexity inf' "$T/huge"
    check huge_compare_json_null json_strict "$T/huge.json" perplexity=null delta=null \
        reference_perplexity=number delta_nll=number p_value=number
    check huge_compare_ci_null python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
sys.exit(not (r["delta_ci"] == [None, None] and None not in r["reference_perplexity_ci"]))' "$T/huge.json"
    # the trace's own rows first, then huge.h5's
    "$A" intervals "$T/t.h5" --results "$T/huge.h5" --resamples 50 --json - --quiet >"$T/huge-i.json" 2>"$T/err" ||
        fail huge_intervals_runs "$(cat "$T/err")"
    check huge_intervals_json_null json_strict "$T/huge-i.json" perplexity=null delta=null
fi
# JSON holds UTF-8 text only: a trace path that is not is written with U+FFFD
# for its bad byte, as every JSON writer does (tests/test_json_utf8.sh)
latin1="$T/l$(printf '\351').h5"
cp "$T/t.h5" "$latin1"
"$A" intervals "$latin1" --json "$T/l.json" --resamples 20 --quiet >/dev/null 2>"$T/err" ||
    fail json_not_utf8_runs "$(cat "$T/err")"
check json_not_utf8_replaced python3 -c 'import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
sys.exit(d["trace"] != sys.argv[2] + "/l\ufffd.h5")' "$T/l.json" "$T"

# ---- headroom ----
if "$A" headroom "$T/t.h5" --json "$T/h.json" --csv "$T/h.csv" --write-routing "$T/oracle.h5" >"$T/h" 2>"$T/err"
then pass headroom_runs; else fail headroom_runs "$(cat "$T/err")"; fi
check headroom_ladder grep -q 'ladder k = 1 2 3 (baseline k = 4)' "$T/h"
for eps in 0.01 0.1; do
    line=$(grep "^eps $eps:" "$T/h")
    check "mean_k_in_range_$eps" awk -v l="$line" 'BEGIN { split(l, w, " "); k = w[5] + 0; exit !(k >= 1 && k <= 4) }'
    check "oracle_within_eps_$eps" awk -v l="$line" -v e="$eps" 'BEGIN { n = split(l, w, " ");
        for (i = 1; i <= n; i++) { if (w[i] == "perplexity") o = w[i + 1] + 0; if (w[i] == "(baseline") b = w[i + 1] + 0 }
        exit !(o > 0 && b > 0 && o <= b * exp(e) * (1 + 1e-6)) }'
done
check headroom_csv_shares awk -F, 'NR > 1 && $1 == "0.01" { s += $8 } END { exit !(s > 0.999 && s < 1.001) }' "$T/h.csv"
if "$B/olmoe-replay" "$T/t.h5" --model "$M" --exact --routing-file "$T/oracle.h5" --csv "$T/o.csv" --quiet \
    >/dev/null 2>"$T/err"; then pass oracle_realised; else fail oracle_realised "$(cat "$T/err")"; fi
check oracle_row grep -q '^exact,"file(path=oracle.h5,sum=[0-9a-f]*,norm=model)"' "$T/o.csv"

# ---- the report's tables ----
if "$B/olmoe-report" "$T/t.h5" --out "$T/rep" --quiet >/dev/null 2>"$T/err"; then pass report_runs
else fail report_runs "$(cat "$T/err")"; fi
check report_error_bars grep -q '^| `topk(k=1,norm=model)` | exact | [0-9.]* | \[[0-9.]*, [0-9.]*\] |' "$T/rep/report.md"
check report_headroom grep -q '^| 0.01 | [0-9.]* | [0-9.]* |' "$T/rep/report.md"
check report_realised grep -q '^| `file(path=oracle.h5,sum=' "$T/rep/report.md"

# ---- --help and the man page ----
for c in intervals compare-policies headroom; do
    "$A" "$c" --help >"$T/help" 2>&1
    for o in $(grep -o '^ *--[a-z-]*' "$T/help" | tr -d ' ' | sort -u); do
        [ "$o" = --help ] && continue
        o_man=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
        grep -q -- "$o_man" man/olmoe-analyze.1 || fail "man_$c" "man/olmoe-analyze.1 lacks $o"
    done
    pass "help_$c"
done
