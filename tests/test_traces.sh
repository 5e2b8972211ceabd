#!/bin/sh
# test_traces.sh: olmoe-traces info / verify / export on a synthetic trace
# (written by the test_traces program, which also prints the numbers it
# wrote, computed from its own arrays), and stock HDF5 tools on the file.
. tests/lib.sh
TT="$OLMOE_TESTBIN/test_traces"
TR="$OLMOE_BIN/olmoe-traces"

"$TT" --write-sample "$T/a.h5" >"$T/expected" || { fail write-sample "exit $?"; exit 0; }
want() { sed -n "s/^$1 //p" "$T/expected"; }

# info shows the numbers the writer knows
"$TR" info "$T/a.h5" >"$T/info" 2>"$T/err"
check info-exit [ $? -eq 0 ]
check info-tokens grep -q "^tokens: *$(want tokens)\$" "$T/info"
check info-windows grep -q "^windows: *$(want windows) (ctx 16, stride 8)\$" "$T/info"
check info-scored grep -q "^scored: *$(want scored)\$" "$T/info"
check info-perplexity grep -q "^perplexity: *$(want perplexity)\$" "$T/info"
check info-complete grep -q "^format: *olmoe-trace 1, complete\$" "$T/info"
check info-model grep -q "^model: *olmoe, 3 layers x 5 experts, top-2" "$T/info"
check info-groups grep -q "^documents: *4 in 3 groups (news, fiction, late)\$" "$T/info"
check info-residuals grep -q "^residuals: *bfloat16 \[$(want tokens), 3, 4\]\$" "$T/info"
check info-logits grep -q "^router logits: *bfloat16 \[$(want tokens), 3, 5\]" "$T/info"

# a bad results file beside a trace: info still shows the trace (and the
# next one), with one line saying what is wrong with the results file
mkdir "$T/bad" && cp "$T/a.h5" "$T/bad/b.h5" && echo junk >"$T/bad/b.results.h5"
"$TR" info "$T/bad/b.h5" "$T/a.h5" >"$T/info-bad" 2>"$T/err"
check info-bad-results-exit [ $? -eq 0 ]
check info-bad-results-trace grep -q "^tokens: *$(want tokens)\$" "$T/info-bad"
check info-bad-results-line grep -q "^results: *none shown: .*b\.results\.h5: .*not an HDF5 file" "$T/info-bad"
check info-bad-results-next test "$(grep -c '^tokens:' "$T/info-bad")" -eq 2

# verify
"$TR" verify "$T/a.h5" >"$T/out" 2>"$T/err"
check verify-ok [ $? -eq 0 ]
check verify-says-ok grep -q ": ok\$" "$T/out"

# export: tokens as CSV equal what was written; raw sizes; --out discipline
"$TR" export "$T/a.h5" --what tokens >"$T/tokens.csv"
{ echo position,token; want tokens_csv | tr ' ' '\n'; } >"$T/want.csv"
check export-tokens-csv cmp -s "$T/tokens.csv" "$T/want.csv"
"$TR" export "$T/a.h5" --what nll --format raw --out "$T/nll.f32"
check export-nll-raw-size [ "$(wc -c <"$T/nll.f32")" -eq $(( 4 * $(want tokens) )) ]
check export-no-partial [ ! -e "$T/nll.f32.partial" ]
expect_fail export-refuses-existing "already exists" "$TR" export "$T/a.h5" --what nll --out "$T/nll.f32"
"$TR" export "$T/a.h5" --what nll --out "$T/nll.f32" --force
check export-force grep -q "^position,nll\$" "$T/nll.f32"
"$TR" export "$T/a.h5" --what logits --start 2 --count 3 >"$T/lg.csv"
check export-logits-rows [ "$(wc -l <"$T/lg.csv")" -eq $(( 1 + 3 * 3 )) ]
check export-logits-header grep -q "^position,layer,e0,e1,e2,e3,e4\$" "$T/lg.csv"
check export-logits-first grep -q "^2,0," "$T/lg.csv"
"$TR" export "$T/a.h5" --what nll >"$T/nll.csv"
check export-nll-nan grep -q "^39,nan\$" "$T/nll.csv"
check export-nll-cut grep -q "^15,[0-9]" "$T/nll.csv"

# errors: usage (129), fatal (128), one short line naming the file
"$TR" >/dev/null 2>&1
check usage-no-command [ $? -eq 129 ]
expect_fail usage-unknown "unknown command 'frobnicate'" "$TR" frobnicate
expect_fail usage-export-what "needs --what" "$TR" export "$T/a.h5"
expect_fail usage-export-kind "unknown kind 'bogus'" "$TR" export "$T/a.h5" --what bogus
expect_fail info-missing "$T/none.h5: No such file" "$TR" info "$T/none.h5"
"$TR" info "$T/none.h5" 2>/dev/null
check info-missing-exit [ $? -eq 128 ]
printf 'junk' >"$T/junk.h5"
"$TR" verify "$T/junk.h5" >"$T/out" 2>"$T/err"
check verify-junk-exit [ $? -eq 1 ]
check verify-junk-names-it grep -q "junk.h5: cannot open: not an HDF5 file" "$T/out"
check verify-junk-count grep -q "junk.h5: 1 problem\$" "$T/err"
"$TR" --help >"$T/help" 2>&1
check help-lists-commands grep -q "verify" "$T/help"
"$TR" export --help >"$T/help" 2>&1
check help-export grep -q -- "--what KIND" "$T/help"

# a full disk (file size limit): one line naming the file, exit 128, and not
# the SIGSEGV HDF5 1.10's exit handler dies of after a failed write
(ulimit -f 40 && trap '' XFSZ && "$TT" --write-sample "$T/full.h5") >/dev/null 2>"$T/err"
rc=$?
check full-disk-exit [ $rc -eq 128 ]
check full-disk-message grep -q "full.h5.*File too large" "$T/err"
check full-disk-one-line [ "$(wc -l <"$T/err")" -eq 1 ]

# a trace whose writer was killed after 3 windows: ok, incomplete
"$TT" --write-killed "$T/k.h5"
"$TR" verify "$T/k.h5" >"$T/out" 2>"$T/err"
check killed-verify-ok [ $? -eq 0 ]
check killed-verify-says grep -q "ok (incomplete: 3 windows" "$T/out"
"$TR" info "$T/k.h5" >"$T/info" 2>&1
check killed-info grep -q "INCOMPLETE" "$T/info"
check killed-info-windows grep -q "^windows: *3 " "$T/info"

# stock tools read the files: h5dump shows the schema and converts bfloat16
if command -v h5dump >/dev/null 2>&1; then
    h5dump -H "$T/a.h5" >"$T/dump" 2>&1
    check h5dump-header [ $? -eq 0 ]
    check h5dump-logits grep -q 'DATASET "router_logits"' "$T/dump"
    check h5dump-nll grep -q 'DATASET "nll"' "$T/dump"
    h5dump -d /residual/attn -c 1,1,1 "$T/a.h5" >"$T/dump" 2>&1
    check h5dump-bf16-values grep -q "(0,0,0): -\{0,1\}[0-9]" "$T/dump"
    # the killed file is still marked open by its writer: h5clear -s clears
    # the mark, after which stock tools read it like any other
    if command -v h5clear >/dev/null 2>&1; then
        h5dump -H "$T/k.h5" >/dev/null 2>&1
        check h5dump-killed-refused [ $? -ne 0 ]
        h5clear -s --increment "$T/k.h5" >/dev/null 2>&1
        h5dump -H -d /tokens "$T/k.h5" >/dev/null 2>&1
        check h5dump-killed-after-h5clear [ $? -eq 0 ]
        "$TR" verify "$T/k.h5" >/dev/null 2>&1
        check killed-verify-after-h5clear [ $? -eq 0 ]
    fi
else
    pass h5dump-not-installed
fi

# h5py, when some python3 here has it: names, shapes, bfloat16 as float32,
# the dimension scales, and the perplexity recomputed in float64
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import h5py' 2>/dev/null; then PY=$p; break; fi
done
if [ -n "$PY" ]; then
    "$PY" - "$T/a.h5" "$(want tokens)" "$(want perplexity)" >"$T/py" 2>&1 <<'PYEOF'
import sys, h5py, numpy as np
path, n, ppl = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with h5py.File(path, "r") as f:
    assert f.attrs["format"] == "olmoe-trace" and f.attrs["format_version"] == 1
    lg = f["router_logits"][:]
    assert lg.shape == (n, 3, 5) and lg.dtype == np.float32, (lg.shape, lg.dtype)
    assert f["residual/attn"][:].dtype == np.float32
    assert [list(d.keys()) for d in f["router_logits"].dims] == [["token"], ["layer"], ["expert"]]
    nll = f["baseline/nll"][:].astype(np.float64)
    assert abs(np.exp(np.nanmean(nll)) - ppl) < 1e-5 * ppl
    assert list(f["groups"].asstr()[:]) == ["news", "fiction", "late"]
print("h5py ok")
PYEOF
    check h5py-reads grep -q "^h5py ok" "$T/py"
else
    pass h5py-not-installed
fi
