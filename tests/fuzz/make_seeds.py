#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py: writes the generated seed inputs of the fuzz
corpora (python3 standard library only; run from the repository root):
  corpus/safetensors/  the tiny model of fuzz_tiny.h, F32/BF16/F16, hub and
                       fused expert layouts, plus small odd-but-valid files
  corpus/st_index/     model.safetensors.index.json texts for fuzz_st_index
  corpus/tokenizer_json/  small byte-level BPE tokenizer.json files (+ a text
                       after the \xff\xfe separator fuzz_tokenizer_json splits at)
  corpus/corpus/       corpus files behind fuzz_corpus's two option bytes
The hand-written seeds of the other targets are committed as they are."""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# fuzz_tiny.h: V 8, D 4, I 2, L 1, 2 heads x 2 dims, 1 KV head, 2 experts
BASE = [
    ("lm_head.weight", [8, 4]),
    ("model.embed_tokens.weight", [8, 4]),
    ("model.layers.0.input_layernorm.weight", [4]),
    ("model.layers.0.mlp.gate.weight", [2, 4]),
    ("model.layers.0.post_attention_layernorm.weight", [4]),
    ("model.layers.0.self_attn.k_norm.weight", [2]),
    ("model.layers.0.self_attn.k_proj.weight", [2, 4]),
    ("model.layers.0.self_attn.o_proj.weight", [4, 4]),
    ("model.layers.0.self_attn.q_norm.weight", [4]),
    ("model.layers.0.self_attn.q_proj.weight", [4, 4]),
    ("model.layers.0.self_attn.v_proj.weight", [2, 4]),
    ("model.norm.weight", [4]),
]
HUB = [(f"model.layers.0.mlp.experts.{e}.{p}.weight", s)
       for e in range(2)
       for p, s in (("gate_proj", [2, 4]), ("up_proj", [2, 4]), ("down_proj", [4, 2]))]
FUSED = [("model.layers.0.mlp.experts.gate_up_proj", [2, 4, 4]),
         ("model.layers.0.mlp.experts.down_proj", [2, 4, 2])]
SIZE = {"F32": 4, "BF16": 2, "F16": 2}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def safetensors(tensors, dtype="F32", metadata=None, pad=0):
    header, off = {}, 0
    for name, shape in tensors:
        nb = numel(shape) * SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * pad  # the format allows trailing spaces (8-byte alignment)
    data = bytes((i * 37) & 0xFF for i in range(off))  # not all zero: conversions see bits
    return struct.pack("<Q", len(text)) + text + data


def write(sub, name, data):
    d = os.path.join(ROOT, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    for dt in ("F32", "BF16", "F16"):
        write("safetensors", f"tiny-hub-{dt.lower()}", safetensors(BASE + HUB, dt))
    write("safetensors", "tiny-fused-f32", safetensors(BASE + FUSED, "F32"))
    write("safetensors", "tiny-fused-bf16-meta",
          safetensors(BASE + FUSED, "BF16", {"format": "pt"}, pad=5))
    # odd but valid: empty header, a scalar, a zero-size tensor, a missing lm_head
    write("safetensors", "empty-header", struct.pack("<Q", 2) + b"{}")
    write("safetensors", "scalar-and-empty",
          safetensors([("a", []), ("b", [0, 3]), ("c", [2])], "F32"))
    write("safetensors", "tiny-no-lm-head", safetensors(BASE[1:] + HUB, "F32"))

    # index seeds for fuzz_st_index: its shards hold BASE + HUB split at
    # FUZZ_ST_SPLIT (the first 9 tensors of fuzz_tiny.h's sorted list)
    names = sorted(n for n, _ in BASE + HUB)
    shard = lambda i: "model-00001-of-00002.safetensors" if i < 9 else \
        "model-00002-of-00002.safetensors"
    wm = {n: shard(i) for i, n in enumerate(names)}
    write("st_index", "good", json.dumps({"metadata": {"total_size": 0}, "weight_map": wm},
                                         indent=1))
    wrong = dict(wm)
    wrong[names[0]] = shard(20)
    write("st_index", "wrong-shard", json.dumps({"weight_map": wrong}))
    short = dict(list(wm.items())[:-1])
    write("st_index", "missing-entry", json.dumps({"weight_map": short}))
    write("st_index", "escape", json.dumps({"weight_map": {names[0]: "../x.safetensors"}}))
    tokenizer_seeds()
    corpus_seeds()


def bytes_to_unicode():
    """GPT-2's byte -> printable character table"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer(normalizer, merges_as_pairs=False, added=(), extra_model=None, prefix=False):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    merges = []
    for a, b in (("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "t"), ("Ġt", "h"), ("o", "r")):
        vocab.setdefault(a + b, len(vocab))
        merges.append([a, b] if merges_as_pairs else f"{a} {b}")
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": False, "vocab": vocab, "merges": merges}
    model.update(extra_model or {})
    toks = []
    nid = len(vocab)
    for content, special, norm, lstrip, rstrip, single in added:
        tid = vocab.get(content, nid)
        if tid == nid:
            nid += 1
        toks.append({"id": tid, "content": content, "single_word": single, "lstrip": lstrip,
                     "rstrip": rstrip, "normalized": norm, "special": special})
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": toks,
            "normalizer": normalizer,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": prefix,
                              "trim_offsets": True, "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": False,
                               "trim_offsets": True, "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": model}


def tokenizer_seeds():
    sep = b"\xff\xfe"
    text = "hello <|endoftext|> the e\u0301 \ufb01 [X] world".encode()
    special = ("<|endoftext|>", True, False, False, False, False)
    seeds = {
        "plain": tokenizer(None, added=[special]),
        "nfc-pairs": tokenizer({"type": "NFC"}, merges_as_pairs=True,
                               added=[special, ("[X]", False, True, True, True, False)]),
        "sequence": tokenizer({"type": "Sequence", "normalizers": [{"type": "NFKD"},
                                                                   {"type": "NFC"}]},
                              added=[special, ("he", False, True, False, False, True)],
                              prefix=True),
        "ignore-merges": tokenizer({"type": "NFKC"}, extra_model={"ignore_merges": True}),
    }
    for name, tok in seeds.items():
        write("tokenizer_json", name, json.dumps(tok, ensure_ascii=False).encode() + sep + text)
    write("tokenizer_json", "no-text", json.dumps(seeds["plain"]))


def corpus_seeds():
    text = b"The jury said.\n\nIt was \xc3\xa9t\xc3\xa9 <|endoftext|> there.\r\n  \t\nlast"
    jl = [{"doc": "a1", "genre": "news", "text": "Vincent G. Ierulli has been appointed."},
          {"doc": "a2", "genre": "lore", "text": "Line one.\n\nLine two \u00e9.", "body": "x"},
          {"doc": "a3", "genre": "news", "text": ""}]
    jsonl = "\n".join(json.dumps(o) for o in jl).encode() + b"\n\n"
    write("corpus", "text", bytes([0, 0]) + text)
    write("corpus", "lines", bytes([1, 0]) + text)
    write("corpus", "lines-max", bytes([1 | 16, 5]) + text)
    write("corpus", "jsonl-groups", bytes([2 | 4, 0]) + jsonl)
    write("corpus", "jsonl-body-max", bytes([2 | 8 | 16, 7]) + jsonl)
    write("corpus", "text-groups", bytes([4, 0]) + text)


if __name__ == "__main__":
    main()
