#!/usr/bin/env python3
"""eval_brown.py: HF transformers' evaluation of the bundled model.

Run on the GPU machine (train_brown.py calls it after training; run it alone
when the data splits change):

    python3 models/eval_brown.py --model models/olmoe-brown --data data/brown

Loads the saved bf16 weights in float32 and evaluates, with HF, the valid and
test splits at top-k 1, 2, 4, 8, 16, 32, 64: the token stream is each
document's tokens (HF tokenizer, the model's tokenizer.json) followed by
<|endoftext|>, cut into windows of ctx tokens, every token after the first of
a window scored (docs/DESIGN.md section 9). Writes into the model directory:
  hf_eval.json   perplexity, accuracy and scored tokens per split and top-k,
                 with training.json's facts merged in;
  reference.h5   what the C tests compare against: the test split's token ids,
                 per-token NLL and argmax on its first --fixture-windows windows
                 at each top-k, and greedy generations under top-8;
  encodings.jsonl  HF's encodings of varied texts with this tokenizer.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

import transformers
from transformers import OlmoeForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
from make_fixtures import TOKENIZER_TEXTS, record_encodings  # noqa: E402

EVAL_TOPKS = [1, 2, 4, 8, 16, 32, 64]
PROMPTS = ["The jury said that", "In the evening, the old man", "Scientists have found"]


def log(*a):
    print(*a, flush=True)


def read_split(datadir, split):
    with open(os.path.join(datadir, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def stream_of(tok, docs, eos):
    ids = []
    for d in docs:
        ids.extend(tok.encode(d["text"]).ids)
        ids.append(eos)
    return np.array(ids, dtype=np.int32)


def windows(n, ctx):
    return [(s, min(ctx, n - s)) for s in range(0, n, ctx)]


@torch.no_grad()
def eval_nll(model, stream, ctx, device, batch=32):
    """Per-position NLL of the next token (NaN where unscored) and argmax."""
    n = len(stream)
    nll = np.full((n,), np.nan, np.float32)
    argmax = np.zeros((n,), np.int32)
    wins = windows(n, ctx)
    full = [w for w in wins if w[1] == ctx]
    rest = [w for w in wins if w[1] != ctx]
    t = torch.tensor(stream, dtype=torch.long, device=device)
    for i in range(0, len(full), batch):
        chunk = full[i:i + batch]
        ids = torch.stack([t[s:s + ctx] for s, _ in chunk])
        lg = model(input_ids=ids).logits.float()
        lp = torch.log_softmax(lg, dim=-1)
        v = -lp[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
        am = lg.argmax(-1)
        for j, (s, _) in enumerate(chunk):
            nll[s:s + ctx - 1] = v[j].cpu().numpy()
            argmax[s:s + ctx] = am[j].cpu().numpy()
    for s, m in rest:
        ids = t[s:s + m][None]
        lg = model(input_ids=ids).logits.float()
        argmax[s:s + m] = lg[0].argmax(-1).cpu().numpy()
        if m > 1:
            lp = torch.log_softmax(lg[0], dim=-1)
            nll[s:s + m - 1] = (-lp[:-1].gather(1, ids[0, 1:, None])[:, 0]).cpu().numpy()
    return nll, argmax


def ppl_of(nll):
    m = ~np.isnan(nll)
    return float(np.exp(nll[m].astype(np.float64).mean())), int(m.sum())


def load_fp32(path, k, device):
    m = OlmoeForCausalLM.from_pretrained(path, dtype=torch.float32, num_experts_per_tok=k,
                                         attn_implementation="eager")
    return m.to(device).eval()


def evaluate(model_dir, datadir, ctx=256, fixture_windows=16):
    import h5py
    from tokenizers import Tokenizer
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    eos, pad = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|padding|>")
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    splits = {s: read_split(datadir, s) for s in ("valid", "test")}
    streams = {s: stream_of(tok, d, eos) for s, d in splits.items()}
    nfix = fixture_windows * ctx
    results = {}
    ref = h5py.File(os.path.join(model_dir, "reference.h5"), "w")
    ref.attrs["transformers_version"] = transformers.__version__
    ref.attrs["torch_version"] = str(torch.__version__) + ""
    ref.attrs["ctx"] = ctx
    ref.attrs["topks"] = np.array(EVAL_TOPKS, np.int32)
    ref.attrs["fixture_tokens"] = nfix
    ref.create_dataset("test_tokens", data=streams["test"], compression="gzip", shuffle=True)
    for k in EVAL_TOPKS:
        if k > cfg["num_experts"]:
            continue
        m = load_fp32(model_dir, k, device)
        row = {}
        for split in ("valid", "test"):
            nll, am = eval_nll(m, streams[split], ctx, device)
            p, ns = ppl_of(nll)
            scored = ~np.isnan(nll)
            nxt = np.roll(streams[split], -1)
            row[split] = dict(ppl=p, n_scored=ns,
                              accuracy=float((am[scored] == nxt[scored]).mean()))
            if split == "test":
                g = ref.create_group(f"topk_{k}")
                fnll, fam = eval_nll(m, streams["test"][:nfix], ctx, device)
                fp, fns = ppl_of(fnll)
                g.create_dataset("nll", data=fnll)
                g.create_dataset("argmax", data=fam)
                g.attrs["perplexity"] = fp
                g.attrs["n_scored"] = fns
                g.attrs["full_test_perplexity"] = p
        results[str(k)] = row
        log(f"top-{k}: valid ppl {row['valid']['ppl']:.4f}, test ppl {row['test']['ppl']:.4f}, "
            f"test acc {row['test']['accuracy']:.4f}")
        del m
    m = load_fp32(model_dir, cfg["num_experts_per_tok"], device)
    g = ref.create_group("generate")
    for i, text in enumerate(PROMPTS):
        pids = tok.encode(text).ids
        with torch.no_grad():
            out = m.generate(input_ids=torch.tensor([pids], device=device), do_sample=False,
                             max_new_tokens=24, min_new_tokens=24, pad_token_id=pad,
                             eos_token_id=None)
        o = out[0].cpu().numpy().astype(np.int32)
        g.create_dataset(f"prompt_{i}", data=np.array(pids, np.int32))
        g.create_dataset(f"output_{i}", data=o)
        log(f"generate[{i}]: {tok.decode(o.tolist())!r}")
    ref.close()
    record_encodings(tok, TOKENIZER_TEXTS + [d["text"][:3000] for d in splits["test"][:5]],
                     os.path.join(model_dir, "encodings.jsonl"))
    info = {}
    tpath = os.path.join(model_dir, "training.json")
    if os.path.exists(tpath):
        with open(tpath) as f:
            info["training"] = json.load(f)
    info.update(results=results, ctx=ctx, eval_device=torch.cuda.get_device_name(0)
                if device == "cuda" else "cpu", transformers=transformers.__version__,
                tokens={s: int(len(v)) for s, v in streams.items()},
                documents={s: len(v) for s, v in splits.items()})
    with open(os.path.join(model_dir, "hf_eval.json"), "w") as f:
        json.dump(info, f, indent=1)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/olmoe-brown")
    ap.add_argument("--data", default="data/brown")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--fixture-windows", type=int, default=16)
    args = ap.parse_args()
    evaluate(args.model, args.data, args.ctx, args.fixture_windows)


if __name__ == "__main__":
    main()
