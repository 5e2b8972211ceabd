#!/usr/bin/env python3
"""h5same.py A B [PATH...]: compares datasets of two HDF5 files with h5py
(the GPU machine has no hdf5-tools). Each PATH is a dataset or a group (every
dataset below it); without PATHs, the whole of A. One line per dataset:
identical, or how it differs (NaN equals NaN; virtual datasets are read
through their sources). Exit 1 when any differs or is missing."""
import sys

import h5py
import numpy as np


def datasets(f, path):
    o = f[path]
    if isinstance(o, h5py.Dataset):
        return [path]
    out = []
    o.visititems(lambda n, x: out.append(f"{o.name.rstrip('/')}/{n}") if isinstance(x, h5py.Dataset) else None)
    return out


def main():
    a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
    paths = sys.argv[3:] or ["/"]
    bad = n = 0
    for p in paths:
        for d in datasets(a, p):
            n += 1
            if d not in b:
                print(f"  {d}: missing in {sys.argv[2]}")
                bad += 1
                continue
            x, y = a[d][()], b[d][()]
            if x.dtype.names:  # compound: compare field by field
                same = x.shape == y.shape and all(np.array_equal(x[k], y[k]) for k in x.dtype.names)
            else:
                same = x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
            if same:
                print(f"  {d}: identical")
                continue
            bad += 1
            msg = f"shapes {x.shape} vs {y.shape}"
            if x.shape == y.shape and x.dtype.kind in "fiu":
                diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
                diff = diff[~np.isnan(diff)]
                msg = f"{np.count_nonzero(diff)} of {x.size} values differ, max |diff| {diff.max():.3g}"
            print(f"  {d}: DIFFERS: {msg}")
    print(f"  {n} datasets, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
