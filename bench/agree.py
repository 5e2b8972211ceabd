#!/usr/bin/env python3
"""agree.py REF.h5 OTHER.h5 [K]: how far two traces of the same tokens agree
in routing: the share of token-layers whose top-K expert sets (from the
stored router logits) are equal, the mean overlap of those sets, the
largest router-logit difference, and the perplexities. Used to compare the
CUDA engine (bf16) with the CPU reference (fp32, equal to HF fp32 within
5e-7) on a trained model, where routing decisions are rarely near ties."""
import sys

import h5py
import numpy as np


def main():
    a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
    k = int(sys.argv[3]) if len(sys.argv) > 3 else int(a.attrs["top_k"])
    la = a["router_logits"][()].astype(np.float32)
    lb = b["router_logits"][()].astype(np.float32)
    assert la.shape == lb.shape, (la.shape, lb.shape)
    assert np.array_equal(a["tokens"][()], b["tokens"][()]), "different tokens"
    ta = np.argsort(-la, axis=-1)[..., :k]
    tb = np.argsort(-lb, axis=-1)[..., :k]
    sa, sb = np.sort(ta, axis=-1), np.sort(tb, axis=-1)
    same = np.all(sa == sb, axis=-1)
    E = la.shape[-1]
    ma = np.zeros(la.shape, bool)
    mb = np.zeros(lb.shape, bool)
    np.put_along_axis(ma, ta, True, axis=-1)
    np.put_along_axis(mb, tb, True, axis=-1)
    overlap = (ma & mb).sum(-1) / k
    print(f"{la.shape[0]} tokens x {la.shape[1]} layers x {E} experts, top-{k}")
    print(f"top-{k} sets equal: {100 * same.mean():.3f} % of token-layers; per layer: "
          + " ".join(f"{100 * same[:, l].mean():.2f}" for l in range(la.shape[1])))
    print(f"mean overlap of the top-{k} sets: {100 * overlap.mean():.3f} %")
    print(f"router logits: max |diff| {np.abs(la - lb).max():.3g}, mean {np.abs(la - lb).mean():.3g}")
    pa, pb = float(a.attrs["perplexity"]), float(b.attrs["perplexity"])
    print(f"perplexity {pa:.6f} vs {pb:.6f}: {100 * (pb / pa - 1):+.4f} %")


if __name__ == "__main__":
    main()
