"""Cached versus uncached greedy decoding: same tokens, how much faster? (chapter 6)

Greedy decoding with the key/value cache feeds one token per step through the decoder; without
it every step re-runs the whole prefix. This script decodes exactly 100 new tokens both ways
with the book-budget model shape (untrained: speed does not depend on the weights), asserts
that they produce identical tokens, and reports the speed-up as a ratio. The cache runs
through ``greedy_decode``'s default, the fast path ``qkv.decoding.FastCachedDecoder``; the
readable cached path (``fast=False``, the code chapter 6 prints) is timed too, for comparison.
The three are timed in turn within each repeat, so that load from other processes falls on
all of them alike, and each reports its fastest repeat.

The end-of-sentence row of the tied output matrix is zeroed, so its logit is 0 while the best
of the thousands of others is far above: the untrained model never stops early, and every decoder
generates all 100 tokens.

Usage::

    QKV_THREADS=1 python benchmarks/decoding.py [--batch 1 16 64] [--repeats 5] [--out FILE]

Writes a JSON record (default ``benchmarks/results/decoding-cpu.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch

from qkv import report
from qkv.decoding import greedy_decode
from qkv.runtime import set_threads
from qkv.seq2seq import Seq2SeqTransformer
from qkv.translation import RECIPES

NEW_TOKENS = 100
SOURCE_LENGTH = 20
VOCAB = RECIPES["book"].vocab_size


def book_shaped_model() -> Seq2SeqTransformer:
    recipe = RECIPES["book"]
    torch.manual_seed(0)
    model = Seq2SeqTransformer(VOCAB, VOCAB, recipe.d_model, recipe.num_heads,
                               recipe.num_encoder_layers, recipe.num_decoder_layers, recipe.d_ff,
                               recipe.dropout, recipe.norm_first, max_len=NEW_TOKENS + 1,
                               share_embeddings=True, tie_output=True)
    with torch.no_grad():
        model.output.weight[model.eos_id] = 0.0  # never the argmax: no early stop
    return model.eval()


def fastest(fns: dict, repeats: int) -> dict:
    """Fastest of ``repeats`` timed calls of each function (the least disturbed by other
    processes), calling the functions in turn within each repeat."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "decoding-cpu.json"))
    args = parser.parse_args()
    threads = set_threads()
    model = book_shaped_model()
    load_before = os.getloadavg()[0]
    rows = []
    for batch in args.batch:
        src = torch.randint(4, VOCAB, (batch, SOURCE_LENGTH),
                            generator=torch.Generator().manual_seed(batch))
        decoders = {
            "cached": lambda: greedy_decode(model, src, NEW_TOKENS),
            "readable": lambda: greedy_decode(model, src, NEW_TOKENS, fast=False),
            "uncached": lambda: greedy_decode(model, src, NEW_TOKENS, use_cache=False),
        }
        tokens = {name: decode() for name, decode in decoders.items()}  # also a warm-up
        assert tokens["cached"].shape == (batch, NEW_TOKENS), tokens["cached"].shape
        assert torch.equal(tokens["cached"], tokens["uncached"]), "cached and uncached disagree"
        assert torch.equal(tokens["readable"], tokens["uncached"]), "readable path disagrees"
        best = fastest(decoders, args.repeats)
        fast, readable, slow = best["cached"], best["readable"], best["uncached"]
        rows.append({"batch": batch, "cached_s": round(fast, 4), "uncached_s": round(slow, 4),
                     "speedup": round(slow / fast, 2), "readable_cached_s": round(readable, 4),
                     "readable_speedup": round(slow / readable, 2), "tokens_equal": True})
        print(f"batch {batch:3d}: cached {fast:.3f} s, uncached {slow:.3f} s, "
              f"speed-up {slow / fast:.1f}x (identical tokens); readable cached path "
              f"{readable:.3f} s, {slow / readable:.1f}x")
    record = {
        "benchmark": "greedy decoding, key/value cache vs re-running the prefix",
        "new_tokens": NEW_TOKENS, "source_length": SOURCE_LENGTH, "vocab_size": VOCAB,
        "model": {k: getattr(RECIPES["book"], k) for k in (
            "d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "d_ff")},
        "date": datetime.date.today().isoformat(), "dtype": "float32",
        "device": report.device_name("cpu"), "threads": threads, "torch": torch.__version__,
        "repeats": args.repeats, "cached_path": "qkv.decoding.FastCachedDecoder",
        "timing": "fastest of the repeats, the decoders timed in turn within each repeat",
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "results": rows,
        "summary": {f"cached / uncached speed-up, batch {row['batch']}": row["speedup"]
                    for row in rows},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
