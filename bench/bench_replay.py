#!/usr/bin/env python3
"""bench_replay.py: olmoe-replay on the GPU at OLMoE-1B-7B's shapes (random
weights) against what HF transformers would need to evaluate the same
policies by running the model once per policy.

    python3 bench/bench_capture.py make-model --work /tmp/bench --windows 150
    python3 bench/bench_replay.py --work /tmp/bench --bin bin --json out.json

Steps, each timed by wall clock around the command (everything included:
process start, loading and checksumming the 13.8 GB checkpoint, uploading
it, reading the trace, writing results):
  1. olmoe-capture --device cuda without residuals (the exact sweep's trace),
  2. olmoe-kde fit: the per-layer nulls pvalue=kde needs.
  3. olmoe-replay --sweep seed --exact --kde null.h5 --device cuda: the
     CUDA engine's whole forward per policy, every policy routed on the GPU.
  4. (after HF, below) olmoe-capture --save-residuals, the trace replay
     needs, and its size; then olmoe-replay --sweep seed by frozen-attention
     replay (target < 20 s on one H100).
  5. HF transformers 5.17 (OlmoeForCausalLM, sdpa, experts grouped_mm, bf16)
     top-8 forward over the same tokens at batch 8, per-token NLL copied to
     the host: timed after one warm-up batch; x 21 is what evaluating the 21
     policies would need at best, if HF could run them (it routes top-k only).
Prints one table (markdown) and writes the numbers to --json.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import math
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, flush=True)


def run_cmd(name, cmd, env=None, timeout=None):
    """runs cmd, returns (wall seconds, rc, stdout, stderr)"""
    log(f"$ {' '.join(cmd)}")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                           timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), \
            f"timed out after {timeout} s"
    wall = time.time() - t0
    log(f"[{name}] rc={rc} wall={wall:.1f} s")
    tail = lambda s, n: "\n".join(s.strip().splitlines()[-n:])  # noqa: E731
    if out.strip():
        log(tail(out, 60))
    if err.strip():
        log(tail(err, 30))
    return wall, rc, out, err


def hf_forward(args, windows):
    """HF top-8 forward over the windows at batch B: seconds for all of them
    (after one warm-up batch), NLL per token to the host every batch"""
    import bench_capture as bc  # its token reader (and numpy, torch: on the GPU machine only)
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import OlmoeForCausalLM
    ids = bc.read_tokens(os.path.join(args.work, "tokens.txt"), windows)
    mdir = os.path.join(args.work, "model")
    t0 = time.time()
    kw = dict(dtype=torch.bfloat16, attn_implementation="sdpa", device_map="cuda")
    try:
        model = OlmoeForCausalLM.from_pretrained(mdir, experts_implementation="grouped_mm", **kw)
    except TypeError:
        model = OlmoeForCausalLM.from_pretrained(mdir, **kw)
        model.set_experts_implementation("grouped_mm")
    model.eval()
    load_s = time.time() - t0
    c = model.config
    V, B = c.vocab_size, args.batch

    def step(b):
        x = torch.from_numpy(ids[b * B:(b + 1) * B]).cuda()
        with torch.inference_mode():
            out = model(input_ids=x, use_cache=False)
            nll = F.cross_entropy(out.logits[:, :-1].float().reshape(-1, V), x[:, 1:].reshape(-1),
                                  reduction="none")
        return nll.cpu()

    nb = (len(ids) + B - 1) // B
    step(0)  # warm-up
    torch.cuda.synchronize()
    t0 = time.time()
    tot, cnt = 0.0, 0
    for b in range(nb):
        nll = step(b).double()
        tot += float(nll.sum())
        cnt += nll.numel()
    torch.cuda.synchronize()
    secs = time.time() - t0
    res = dict(transformers=transformers.__version__, torch=torch.__version__,
               attn=getattr(c, "_attn_implementation", "?"), experts=getattr(c, "_experts_implementation", "?"),
               load_s=load_s, seconds=secs, tokens=int(len(ids) * ids.shape[1]),
               tokens_per_s=len(ids) * ids.shape[1] / secs, perplexity=math.exp(tot / cnt),
               gpu_name=torch.cuda.get_device_name(0))
    log("HF:", json.dumps(res))
    del model
    torch.cuda.empty_cache()
    return res


def table_of(out):
    """the policy rows of olmoe-replay's table: kind, policy, perplexity, mean_k, seconds"""
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 10 and f[0] in ("replay", "exact"):
            rows.append(dict(kind=f[0], policy=f[1], perplexity=f[2], mean_k=f[5], seconds=f[7]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/olmoe-bench")
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--windows", type=int, default=150, help="windows of 2048 tokens (150: 307,200 tokens)")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=32768, help="olmoe-replay --chunk for replay")
    ap.add_argument("--exact-chunk", type=int, default=8192,
                    help="--chunk for --exact (the engine takes max_tokens x max_k x D <= 2e9: 8192 at max_k 64)")
    ap.add_argument("--sweep", default="seed")
    ap.add_argument("--device", default="cuda", help="cuda; cpu only to try the script on a small model")
    ap.add_argument("--skip", default="",
                    help="comma list of steps to skip: capture-plain,capture,kde,replay,exact,hf")
    ap.add_argument("--step-timeout", type=int, default=300)
    ap.add_argument("--json")
    args = ap.parse_args()
    skip = set(x for x in args.skip.split(",") if x)
    W, B = args.work, args.bin
    model, trace, null = os.path.join(W, "model"), os.path.join(W, "run.h5"), os.path.join(W, "null.h5")
    tok = os.path.join(W, "tokens.txt")
    if args.windows:  # the token file holds at least this many windows
        with open(tok) as f:
            lines = f.readlines()
        if len(lines) > args.windows:
            tok = os.path.join(W, f"tokens_{args.windows}.txt")
            with open(tok, "w") as g:
                g.writelines(lines[:args.windows])
    n_tokens = args.windows * args.ctx
    du = shutil.disk_usage(W)
    log(f"disk {W}: {du.free / 2**30:.1f} GiB free of {du.total / 2**30:.1f}; the trace needs "
        f"~{n_tokens * (16 * 2048 * 2 + 16 * 64 * 4 + 12) / 2**30:.1f} GiB")
    res = dict(tokens=n_tokens, windows=args.windows, chunk=args.chunk, sweep=args.sweep)

    plain = os.path.join(W, "plain.h5")

    def capture(key, out_path, extra):
        wall, rc, out, err = run_cmd(key, [f"{B}/olmoe-capture", "--model", model, "--tokens", tok, "--ctx",
                                           str(args.ctx), "--batch", str(args.batch), "--device", args.device,
                                           "--out", out_path, "--force"] + extra, timeout=args.step_timeout)
        m = re.search(r"steady state: ([0-9.]+) tokens/s", err)
        res[key.replace("-", "_")] = dict(wall_s=wall, rc=rc,
                                          trace_gib=os.path.getsize(out_path) / 2**30 if rc == 0 else None,
                                          steady_tokens_per_s=float(m.group(1)) if m else None)

    def sweep(kind, trace_path):
        extra = ["--exact", "--chunk", str(args.exact_chunk)] if kind == "exact" else ["--chunk", str(args.chunk)]
        jpath = os.path.join(W, f"{kind}.json")
        wall, rc, out, err = run_cmd(kind, [f"{B}/olmoe-replay", trace_path, "--model", model, "--sweep", args.sweep,
                                            "--kde", null, "--device", args.device, "--force"] + extra +
                                     ["--out", os.path.join(W, f"{kind}.h5"), "--json", jpath],
                                     timeout=args.step_timeout)
        m = re.search(r"([0-9.]+) s wall, ([0-9.]+) s reading the trace", err)
        res[kind] = dict(wall_s=wall, rc=rc, env={}, rows=table_of(out),
                         run_s=float(m.group(1)) if m else None, read_s=float(m.group(2)) if m else None)

    # the exact sweep needs no residuals: it runs first, on the plain trace,
    # so that a short device call still gets it; then HF, then the trace
    # with residuals and the replay sweep
    if "capture-plain" not in skip:
        capture("capture-plain", plain, [])
    src = plain if os.path.exists(plain) else trace
    if "kde" not in skip:
        wall, rc, out, err = run_cmd("kde", [f"{B}/olmoe-kde", "fit", src, "--out", null, "--force"],
                                     timeout=args.step_timeout)
        res["kde"] = dict(wall_s=wall, rc=rc)
    if "exact" not in skip:
        sweep("exact", src)
    if "hf" not in skip:
        try:
            res["hf"] = hf_forward(args, args.windows)
        except Exception as e:  # report, do not lose the rest
            log("HF failed:", repr(e))
            res["hf"] = dict(failed=repr(e))
    if "capture" not in skip:
        capture("capture", trace, ["--save-residuals"])
    if "replay" not in skip:
        sweep("replay", trace)

    P = len(res.get("replay", res.get("exact", {})).get("rows", [])) or 21
    hf = res.get("hf", {})
    log("")
    log(f"## replay bench: {n_tokens:,} tokens ({args.windows} windows of {args.ctx}), sweep {args.sweep} "
        f"({P} policies), {hf.get('gpu_name', '?')}")
    log("| step | wall s | notes |")
    log("| --- | ---: | --- |")
    if "capture_plain" in res:
        c = res["capture_plain"]
        log(f"| olmoe-capture --device {args.device} (no residuals) | {c['wall_s']:.1f} | rc {c['rc']}; steady state "
            f"{c['steady_tokens_per_s'] or 0:,.0f} tokens/s |")
    if "capture" in res:
        c = res["capture"]
        log(f"| olmoe-capture --device {args.device} --save-residuals | {c['wall_s']:.1f} | rc {c['rc']}; trace "
            f"{c['trace_gib'] or 0:.1f} GiB; steady state {c['steady_tokens_per_s'] or 0:,.0f} tokens/s |")
    if "kde" in res:
        log(f"| olmoe-kde fit | {res['kde']['wall_s']:.1f} | rc {res['kde']['rc']} |")
    for kind in ("replay", "exact"):
        if kind in res:
            r = res[kind]
            log(f"| olmoe-replay --sweep {args.sweep}{' --exact' if kind == 'exact' else ''} --device {args.device} | "
                f"{r['wall_s']:.1f} | rc {r['rc']}; {r['run_s'] or 0:.1f} s in the run ({r['read_s'] or 0:.1f} s "
                f"reading the trace), {len(r['rows'])} policies {r['env'] or ''} |")
    if "seconds" in hf:
        log(f"| HF transformers {hf['transformers']} top-8 forward (sdpa, {hf['experts']}), batch {args.batch} | "
            f"{hf['seconds']:.1f} | {hf['tokens_per_s']:,.0f} tokens/s, load {hf['load_s']:.0f} s not counted |")
        log(f"| HF x {P} policies (at best) | {hf['seconds'] * P:.1f} | |")
        for key, what in (("capture_plain", "capture"), ("capture", "capture --save-residuals")):
            c = res.get(key, {})
            if c.get("steady_tokens_per_s"):
                log(f"ratio {what} / HF top-8 forward: {c['steady_tokens_per_s'] / hf['tokens_per_s']:.2f}x "
                    f"(steady state), {n_tokens / c['wall_s'] / hf['tokens_per_s']:.2f}x (wall, load included)")
        for kind in ("replay", "exact"):
            if kind in res and res[kind]["rc"] == 0:
                log(f"ratio HF x {P} / olmoe-replay {kind}: {hf['seconds'] * P / res[kind]['wall_s']:.2f}x "
                    f"(wall, everything included)")
    for kind in ("replay", "exact"):
        if kind in res and res[kind]["rows"]:
            log(f"\n{kind} per policy:")
            for r in res[kind]["rows"]:
                log(f"  {r['policy']:<60} ppl {r['perplexity']:>10} mean_k {r['mean_k']:>6} {r['seconds']:>8} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = all(res[k]["rc"] == 0 for k in ("capture", "kde", "replay", "exact") if k in res)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
