#!/usr/bin/env python3
"""train_brown.py: train the bundled OLMoE-architecture model on the Brown corpus.

Run on the GPU machine (transformers 5.17, torch 2.11, tokenizers, h5py):

    python3 models/train_brown.py --data data/brown --out models/olmoe-brown

1. A GPT-NeoX-style byte-level BPE tokenizer (NFC, ByteLevel pre-tokenizer and
   decoder, <|endoftext|> = 0 and <|padding|> = 1) trained on the train split.
2. An OlmoeForCausalLM: 64 experts, top-8, norm_topk_prob false, q/k norm,
   OLMoE's load-balancing loss (router_aux_loss_coef 0.01), trained on the
   train split's token stream (each document followed by <|endoftext|>) cut
   into 256-token sequences, AdamW, warmup + cosine, bf16 autocast, seed 0,
   early stopping on the valid split's loss.
3. The best checkpoint saved in bf16 (model.safetensors, hub layout), then
   reloaded in float32 and evaluated by HF on the valid and test splits at
   top-k 1, 2, 4, 8, 16, 32, 64 (windows of ctx tokens over the stream, every
   token after the first of a window scored: docs/DESIGN.md section 9).
4. The numbers our tests compare against (reference.h5: test-split token ids,
   per-token NLL on a slice at each top-k, greedy generations; hf_eval.json:
   perplexity and accuracy per split and top-k), written by HF here, never by
   our code, and loss_curve.csv. MODEL.md, the model card, quotes them.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import transformers
from transformers import OlmoeConfig, OlmoeForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))
sys.path.insert(0, HERE)
from make_fixtures import train_tokenizer  # noqa: E402
from eval_brown import evaluate, read_split, stream_of  # noqa: E402

def log(*a):
    print(*a, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/brown")
    ap.add_argument("--out", default="models/olmoe-brown")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=160)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--expert-size", type=int, default=32)
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=330.0, help="seconds of training at most")
    ap.add_argument("--fixture-windows", type=int, default=16)
    args = ap.parse_args()
    cmdline = "python3 models/train_brown.py " + " ".join(sys.argv[1:])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    log(f"transformers {transformers.__version__}, torch {torch.__version__}, device {device}")

    # ---- data and tokenizer
    splits = {s: read_split(args.data, s) for s in ("train", "valid", "test")}
    for s, d in splits.items():
        log(f"{s}: {len(d)} documents, {sum(len(x['text']) for x in d)} characters")
    t0 = time.time()
    tok = train_tokenizer([d["text"] for d in splits["train"]], args.vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    pad = tok.token_to_id("<|padding|>")
    vocab = tok.get_vocab_size()
    log(f"tokenizer: vocab {vocab} (eos {eos}, pad {pad}) in {time.time() - t0:.1f}s")
    streams = {s: stream_of(tok, d, eos) for s, d in splits.items()}
    for s, st in streams.items():
        log(f"{s}: {len(st)} tokens")

    # ---- model
    cfg_kw = dict(vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.expert_size,
                  num_hidden_layers=args.layers, num_attention_heads=args.heads,
                  num_key_value_heads=args.heads, num_experts=args.experts,
                  num_experts_per_tok=args.topk, norm_topk_prob=False, clip_qkv=None,
                  max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  router_aux_loss_coef=0.01, output_router_logits=True, pad_token_id=pad,
                  eos_token_id=eos, bos_token_id=None, attention_dropout=0.0)
    try:
        cfg = OlmoeConfig(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **cfg_kw)
    except TypeError:
        cfg = OlmoeConfig(rope_theta=10000.0, **cfg_kw)
    model = OlmoeForCausalLM(cfg).to(device)
    nparam = sum(p.numel() for p in model.parameters())
    log(f"model: {nparam} parameters ({nparam * 2 / 1e6:.2f} MB in bf16)")

    train = torch.tensor(streams["train"], dtype=torch.long)
    nseq = (len(train) - 1) // args.seq
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.max_steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    gen = torch.Generator().manual_seed(args.seed)
    valid_t = torch.tensor(streams["valid"], dtype=torch.long, device=device)
    vseq = (len(valid_t) - 1) // args.seq

    @torch.no_grad()
    def valid_loss():
        model.eval()
        tot, cnt = 0.0, 0
        for i in range(0, vseq, 64):
            idx = torch.arange(i, min(vseq, i + 64), device=device)
            x = torch.stack([valid_t[j * args.seq:(j + 1) * args.seq] for j in idx.tolist()])
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                lg = model(input_ids=x).logits.float()
            l = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1),
                                reduction="sum")
            tot += l.item()
            cnt += x[:, 1:].numel()
        model.train()
        return tot / cnt

    curve = []
    best, best_step, bad = float("inf"), -1, 0
    best_path = os.path.join(args.out, ".best.pt")
    t_start = time.time()
    model.train()
    perm, pos, epoch = torch.randperm(nseq, generator=gen), 0, 0
    step = 0
    for step in range(args.max_steps):
        if pos + args.batch > nseq:
            perm, pos, epoch = torch.randperm(nseq, generator=gen), 0, epoch + 1
        # random offset per epoch so sequences are not always cut at the same places
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        x = torch.stack([train[j * args.seq:(j + 1) * args.seq] for j in idx.tolist()]).to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(input_ids=x, labels=x)
        loss = out.loss  # cross-entropy + 0.01 * load-balancing loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            aux = float(out.aux_loss) if getattr(out, "aux_loss", None) is not None else float("nan")
            curve.append((step, float(loss), aux, float("nan")))
        if (step + 1) % args.eval_every == 0:
            vl = valid_loss()
            curve.append((step + 1, float("nan"), float("nan"), vl))
            el = time.time() - t_start
            log(f"step {step + 1}: train {float(loss):.4f} valid {vl:.4f} "
                f"(ppl {math.exp(vl):.2f}) epoch {epoch} {el:.0f}s")
            if vl < best - 1e-4:
                best, best_step, bad = vl, step + 1, 0
                torch.save(model.state_dict(), best_path)
            else:
                bad += 1
                if bad >= args.patience:
                    log(f"early stop: no valid improvement in {bad} evaluations")
                    break
            if el > args.time_limit:
                log("time limit reached")
                break
    train_time = time.time() - t_start
    steps_done = step + 1
    log(f"trained {steps_done} steps in {train_time:.0f}s; best valid {best:.4f} at {best_step}")

    # ---- save best in bf16, hub layout
    model.load_state_dict(torch.load(best_path))
    os.remove(best_path)
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(args.out)
    with open(os.path.join(args.out, "loss_curve.csv"), "w") as f:
        f.write("step,train_loss,aux_loss,valid_loss\n")
        for r in curve:
            f.write(",".join("" if (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"
                             for v in r) + "\n")

    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(dict(steps=steps_done, best_step=best_step, best_valid_loss=best,
                       train_seconds=train_time, parameters=nparam, command=cmdline,
                       seed=args.seed, seq=args.seq, batch=args.batch, lr=args.lr,
                       weight_decay=args.wd, warmup=args.warmup, max_steps=args.max_steps,
                       transformers=transformers.__version__, torch=str(torch.__version__) + "",
                       device=torch.cuda.get_device_name(0) if device == "cuda" else "cpu"),
                  f, indent=1)
    del model, opt
    evaluate(args.out, args.data, ctx=args.seq, fixture_windows=args.fixture_windows)
    log("done")


if __name__ == "__main__":
    main()
