#!/usr/bin/env python3
"""ppl_compare.py A.json B.json TOL [--ids]: the exact (or replay) perplexity of
every policy in two olmoe-replay --json outputs, side by side; exit 1 when
any relative difference exceeds TOL or a policy is missing from one."""
import json
import sys


def results(path):
    with open(path) as f:
        j = json.load(f)
    return {(r["kind"], r["policy"]): r for r in j["results"]}


def main():
    a, b, tol = results(sys.argv[1]), results(sys.argv[2]), float(sys.argv[3])
    worst, bad = 0.0, 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            print(f"  {key[0]} {key[1]}: only in one file")
            bad += 1
            continue
        pa, pb = a[key]["perplexity"], b[key]["perplexity"]
        rel = abs(pb / pa - 1)
        worst = max(worst, rel)
        bad += rel > tol
        print(f"  {key[0]:6} {key[1]:<62} {pa:12.6f} {pb:12.6f} rel {rel:.2e} mean_k {a[key]['mean_k']:.4f} "
              f"{b[key]['mean_k']:.4f}")
    print(f"{len(set(a) | set(b))} policies, largest relative difference {worst:.2e} (tolerance {tol:g}): "
          f"{'ok' if not bad else f'{bad} over'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
