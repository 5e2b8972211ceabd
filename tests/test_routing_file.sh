#!/bin/sh
# test_routing_file.sh: the file policy (routing files, man/olmoe-trace.5).
# The man page's own Python example (h5py) writes top-4 of a top-4 trace's
# router logits; --exact with that file must give top-4's exact numbers bit
# for bit (same experts, same weights, so the same arithmetic); capture
# --routing-file must reproduce capture --policy 'topk(k=4)', sharded too (merged shards
# equal the unsharded capture); malformed files are each
# refused with one line and nothing written; --mode stats routes it too.
. tests/lib.sh
B=$OLMOE_BIN
CAP="$B/olmoe-capture"
R="$B/olmoe-replay"
M=$FIX/tiny-f32
# Debian's interpreter: the one python3-h5py installs into (.ci/install-deps)
PY=${OLMOE_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import h5py' 2>/dev/null; then
    fail h5py "$PY cannot import h5py (apt-get install python3-h5py; .ci/install-deps does)"
    exit 0
fi
close() { # close NAME A.h5 PATH_A B.h5 PATH_B TOL
    n=$1; shift
    if "$OLMOE_TESTBIN/test_replay_run" --compare "$@" >"$T/cmp" 2>&1; then pass "$n"
    else fail "$n" "$(cat "$T/cmp")"; fi
}

"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --top-k 4 --save-residuals \
    --out "$T/k4.h5" --quiet >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
sed -n '/routing-example-begin/,/routing-example-end/p' man/olmoe-trace.5 | sed '1d;$d' >"$T/example.py"
check example_extracted test "$(wc -l <"$T/example.py")" -ge 15
if "$PY" "$T/example.py" "$T/k4.h5" "$T/top4.h5" 2>"$T/err"; then pass example_runs
else fail example_runs "$(cat "$T/err")"; fi

# ---- --exact: the file against topk(k=4), one run ----
if "$R" "$T/k4.h5" --model "$M" --exact --policy 'topk(k=4)' --routing-file "$T/top4.h5" \
    --csv "$T/x.csv" --quiet >"$T/out" 2>"$T/err"; then pass exact_runs; else fail exact_runs "$(cat "$T/err")"; fi
id=$(grep -o 'file(path=top4.h5,sum=[0-9a-f]*,norm=model)' "$T/out" | head -n 1)
check id_has_name_and_sum test -n "$id"
close exact_equals_top4 "$T/k4.results.h5" "/exact/$(typable "$id")/nll" "$T/k4.results.h5" "/exact/topk_k_4_norm_model/nll" 0
# the capture's own hook (engine/route.c) and batching round differently: close, not equal
close exact_near_capture "$T/k4.results.h5" "/exact/$(typable "$id")/nll" "$T/k4.h5" /baseline/nll 1e-5
check csv_two_rows test "$(grep -c '^exact,' "$T/x.csv")" -eq 2
# replay (frozen attention) and stats route it too
if "$R" "$T/k4.h5" --model "$M" --policy 'topk(k=4)' --routing-file "$T/top4.h5" --out "$T/rp.h5" \
    --quiet >/dev/null 2>"$T/err"; then pass replay_runs; else fail replay_runs "$(cat "$T/err")"; fi
close replay_equals_top4 "$T/rp.h5" "/replay/$(typable "$id")/nll" "$T/rp.h5" "/replay/topk_k_4_norm_model/nll" 0

"$R" "$T/k4.h5" --mode stats --routing-file "$T/top4.h5" --quiet >"$T/st" 2>"$T/err" || fail stats_runs "$(cat "$T/err")"
check stats_same_as_top4 grep -q '^file(path=top4.h5,sum=[0-9a-f]*,norm=model) *4.000 *0.00 0.000 1.000 1.0000 1.0000' "$T/st"

# ---- capture --routing-file reproduces capture --policy 'topk(k=4)' ----
"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --policy 'topk(k=4)' --out "$T/cp.h5" --quiet >/dev/null
if "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --routing-file "$T/top4.h5" \
    --out "$T/cf.h5" --quiet >/dev/null 2>"$T/err"; then pass capture_runs; else fail capture_runs "$(cat "$T/err")"; fi
close capture_equals_top4 "$T/cf.h5" /baseline/nll "$T/cp.h5" /baseline/nll 0

# ---- capture --shard with a routing file: each shard routes its tokens by
# their positions in the whole run, so the merged shards are the unsharded
# capture (a shard routing by its own positions would take other tokens' experts) ----
"$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --batch 1 --routing-file "$T/top4.h5" \
    --out "$T/cs.h5" --quiet >/dev/null 2>"$T/err" || fail capture_batch1 "$(cat "$T/err")"
for i in 0 1; do
    if "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --batch 1 --routing-file "$T/top4.h5" \
        --shard $i/2 --out "$T/cs-$i.h5" --quiet >/dev/null 2>"$T/err"; then pass "shard_${i}_runs"
    else fail "shard_${i}_runs" "$(cat "$T/err")"; fi
done
check shard_1_starts_inside sh -c "h5dump -a /shard_offset '$T/cs-1.h5' | grep -q '(0): [1-9]'"
"$B/olmoe-traces" merge "$T/cs-m.h5" "$T/cs-0.h5" "$T/cs-1.h5" >/dev/null 2>"$T/err" || fail shard_merge "$(cat "$T/err")"
for d in /tokens /router_logits /baseline/nll /baseline/argmax; do
    check "shards_equal_unsharded_$d" h5diff -q "$T/cs.h5" "$T/cs-m.h5" "$d"
done

# ---- refusals: one line, nothing written ----
mk() { # mk NAME PYTHON-STATEMENTS: top4.h5 copied to NAME.h5, then edited with f open
    cp "$T/top4.h5" "$T/$1.h5"
    "$PY" -c "import h5py, numpy as np
f = h5py.File('$T/$1.h5', 'r+')
$2
f.close()"
}
mk range "e = f['experts'][:]; e[3, 1, 0] = 8; del f['experts']; f['experts'] = e"
mk dup "e = f['experts'][:]; e[5, 0, 1] = e[5, 0, 0]; del f['experts']; f['experts'] = e"
mk gap "e = f['experts'][:]; e[2, 0, 1] = -1; del f['experts']; f['experts'] = e"
mk empty "e = f['experts'][:]; e[7, 1, :] = -1; del f['experts']; f['experts'] = e"
mk shape "e = f['experts'][:]; del f['experts']; f['experts'] = e[:, :1, :]"
mk ntok "e = f['experts'][:]; t = f['tokens'][:]; del f['experts'], f['tokens']; f['experts'] = e[:-1]; f['tokens'] = t[:-1]"
mk tokens "t = f['tokens'][:]; t[10] = (t[10] + 1) % 64; del f['tokens']; f['tokens'] = t"
mk weights "f['weights'] = np.full(f['experts'].shape, np.nan, dtype=np.float32)"
mk format "f.attrs['format'] = 'something-else'"
for case in "range:expert 8 is outside \[0, 8)" "dup:expert .* twice" "gap:after the -1 padding" \
    "empty:no expert" "shape:/experts must be \[tokens, 2 layers, K\]" "ntok:/experts has 150 tokens, the trace 151" \
    "tokens:/tokens\[10\] is" "weights:is not finite" "format:not a routing file"; do
    n=${case%%:*} pat=${case#*:}
    expect_fail "refuses_$n" "$pat" "$R" "$T/k4.h5" --model "$M" --exact --routing-file "$T/$n.h5" --out "$T/no_$n.h5"
    check "nothing_written_$n" test ! -e "$T/no_$n.h5" -a ! -e "$T/no_$n.h5.partial"
done
expect_fail capture_refuses "expert 8 is outside" "$CAP" --model "$M" --tokens "$M/tokens.txt" --ctx 24 \
    --device cpu --routing-file "$T/range.h5" --out "$T/no_cap.h5"
check capture_nothing_written test ! -e "$T/no_cap.h5" -a ! -e "$T/no_cap.h5.partial"
expect_fail sum_mismatch "the policy says sum=000000000000" "$R" "$T/k4.h5" --model "$M" --exact \
    --policy "file(path=$T/top4.h5,sum=000000000000)" --out "$T/no_sum.h5"
expect_fail needs_path "file needs path" "$R" "$T/k4.h5" --model "$M" --exact --policy 'file()' --out "$T/no_p.h5"
