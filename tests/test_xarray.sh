#!/bin/sh
# test_xarray.sh: a trace opens in xarray (h5netcdf engine, Debian's
# python3-xarray and python3-h5netcdf) with every axis named, no phony_dims,
# nothing of ours on the reading side: one layer's router logits equal
# h5py's, /windows' columns are named, /documents and /groups have their
# dimensions, and the groups /baseline and /residual open too. The same for
# a trace merged from two shards (virtual datasets) and after --copy. Its
# results file (olmoe-replay --sweep topk, --mode stats --store) opens the
# same way: each policy's group found by its "policy" attribute or typed by
# its name (the spec made typable), its
# perplexity that of its own per-token nll, every group without phony dims.
. tests/lib.sh
B=$OLMOE_BIN
M=$FIX/tiny-f32
PY=${OLMOE_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import xarray, h5netcdf, h5py' 2>/dev/null; then
    fail xarray "$PY cannot import xarray, h5netcdf and h5py (.ci/install-deps installs python3-xarray python3-h5netcdf python3-h5py)"
    exit 0
fi
"$B/olmoe-capture" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --save-residuals \
    --out "$T/t.h5" --quiet >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
for i in 0 1; do
    "$B/olmoe-capture" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --save-residuals \
        --shard $i/2 --out "$T/s$i.h5" --quiet >/dev/null 2>&1
done
"$B/olmoe-traces" merge "$T/m.h5" "$T/s0.h5" "$T/s1.h5" >/dev/null 2>"$T/err" || fail merge "$(cat "$T/err")"
"$B/olmoe-traces" merge --copy "$T/c.h5" "$T/s0.h5" "$T/s1.h5" >/dev/null 2>"$T/err" || fail merge_copy "$(cat "$T/err")"
cat >"$T/read.py" <<'PY'
import sys
import h5py
import numpy as np
import xarray as xr

path = sys.argv[1]
ds = xr.open_dataset(path, engine="h5netcdf")          # no phony_dims
layer1 = ds["router_logits"].sel(layer=1).values        # [token, expert]
with h5py.File(path, "r") as f:
    assert np.array_equal(layer1, f["router_logits"][:, 1, :]), "router logits differ"
    w = f["windows"][:]
assert ds["router_logits"].dims == ("token", "layer", "expert"), ds["router_logits"].dims
assert ds["windows"].dims == ("window", "window_field")
assert list(ds["window_field"].values) == ["start", "length", "stored_from"]
assert np.array_equal(ds["windows"].sel(window_field="length").values, w[:, 1])
assert ds["documents"].dims == ("document",) and ds.sizes["document"] == 5
assert ds["groups"].dims == ("groups",)
assert ds.attrs["format"] == "olmoe-trace"
b = xr.open_dataset(path, engine="h5netcdf", group="baseline")
assert b["nll"].dims == ("token",) and b.sizes["token"] == ds.sizes["token"]
r = xr.open_dataset(path, engine="h5netcdf", group="residual")
assert r["attn"].dims == ("token", "layer", "hidden")
print("ok", layer1.shape)
PY
for f in t m c; do
    if "$PY" "$T/read.py" "$T/$f.h5" >"$T/out" 2>"$T/err"; then pass "xarray_$f"
    else fail "xarray_$f" "$(tail -n 3 "$T/err")"; fi
done
"$B/olmoe-replay" "$T/t.h5" --model "$M" --sweep topk --device cpu --quiet >/dev/null 2>"$T/err" ||
    fail replay_sweep "$(cat "$T/err")"
"$B/olmoe-replay" "$T/t.h5" --mode stats --store --policy 'topk(k=2)' --quiet >/dev/null 2>"$T/err" ||
    fail stats_store "$(cat "$T/err")"
cat >"$T/results.py" <<'PY'
import sys
import h5py
import numpy as np
import xarray as xr

trace, results = sys.argv[1], sys.argv[2]
logits = xr.open_dataset(trace, engine="h5netcdf")["router_logits"].sel(layer=1)  # [token, expert]
with h5py.File(results, "r") as f:          # policy spec -> its group
    groups = {g.attrs["policy"]: g.name for g in f["replay"].values()}
    every = []
    f.visititems(lambda n, o: every.append(n) if isinstance(o, h5py.Group) else None)
assert sorted(groups) == ["topk(k=%d,norm=model)" % k for k in (1, 2, 4, 8)], sorted(groups)
for spec, name in sorted(groups.items()):
    r = xr.open_dataset(results, engine="h5netcdf", group=name)
    assert r["nll"].dims == ("token",) and r.sizes["token"] == logits.sizes["token"]
    assert r["experts"].dims == ("token", "layer") and r["load"].dims == ("layer", "expert")
    assert r["k_hist"].dims == ("layer", "k") and r.sizes["expert"] == logits.sizes["expert"]
    own = float(np.exp(np.nanmean(r["nll"].values.astype(np.float64))))
    assert abs(r.attrs["perplexity"] / own - 1) < 1e-5, (spec, r.attrs["perplexity"], own)
assert groups["topk(k=4,norm=model)"] == "/replay/topk_k_4_norm_model", groups  # typable names
s = xr.open_dataset(results, engine="h5netcdf", group="stats/topk_k_2_norm_model")
assert s["mean_k"].dims == ("layer",) and s["load"].dims == ("layer", "expert")
for name in every:                          # every group opens without phony dims
    xr.open_dataset(results, engine="h5netcdf", group=name)
print("ok", len(groups), len(every))
PY
if "$PY" "$T/results.py" "$T/t.h5" "$T/t.results.h5" >"$T/out" 2>"$T/err"; then pass xarray_results
else fail xarray_results "$(tail -n 3 "$T/err")"; fi
check merged_verifies sh -c "'$B/olmoe-traces' verify '$T/m.h5' >/dev/null"
check single_verifies sh -c "'$B/olmoe-traces' verify '$T/t.h5' >/dev/null"
