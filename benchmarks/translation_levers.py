"""Levers on chapter 6's book-budget translation model: which changes pay on the same CPU budget.

Each named variant is a :class:`qkv.translation.Recipe`; for every (variant, seed) the script
trains it (or reuses a finished run of the same training recipe in ``--runs``), then scores the
VALIDATION split: greedy and beam BLEU with the recipe's own checkpoint averaging and decoding,
plus two probes that cost no extra training:

* averaging: greedy BLEU of the mean of the last j checkpoints, for j in ``--average`` (the
  run keeps the weights of its last ``max(j)`` checkpoints on disk, see ``Recipe.average_last``);
* decoding: beam BLEU for each ``beam:alpha`` in ``--decode``.

The test split (test_2016_flickr) is scored only with ``--test``, and only with the recipe's own
settings: choose the settings on validation first.

    QKV_THREADS=1 .venv/bin/python benchmarks/translation_levers.py --variants long long-drop \\
        --seeds 0 --threads 1 --out benchmarks/results/levers-cpu.json
    .venv/bin/python benchmarks/translation_levers.py --table \\
        --out benchmarks/results/levers-cpu.json

Rows are appended to ``--out`` (a row of the same variant, seed, threads and split choice is
replaced). Timings on a shared machine are inflated by the other processes: compare a variant
with a reference run made at the same time (``book-1600``, the recipe before these levers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from qkv.checkpoints import load_snapshots, load_translator
from qkv.data.multi30k import load_pairs
from qkv.report import device_name
from qkv.runtime import set_threads
from qkv.train import average_states
from qkv.translation import RECIPES, Recipe, evaluate, train

# The book recipe before this benchmark (1.7M parameters, 1600 steps, no dropout, beam 4).
BEFORE = Recipe(vocab_size=6000, d_model=128, num_heads=4, num_encoder_layers=2,
                num_decoder_layers=2, d_ff=512, dropout=0.0, max_tokens=1024, steps=1600,
                lr=3e-3, warmup_steps=150, checkpoint_every=400)
LONG = dataclasses.replace(BEFORE, steps=3000, checkpoint_every=200, average_last=1)

VARIANTS = {
    "book-1600": BEFORE,  # the reference: the recipe before
    "long": LONG,  # a longer cosine schedule, same model
    "long-drop": dataclasses.replace(LONG, dropout=0.1),  # plus dropout 0.1
    "long-v4k": dataclasses.replace(LONG, vocab_size=4000),  # a smaller vocabulary
    "long-v8k": dataclasses.replace(LONG, vocab_size=8000),  # a larger one
    "book": RECIPES["book"],  # the recipe chapter 6 uses now
    "smoke": RECIPES["smoke"],  # seconds: does the script run?
}
"""The recipes this script knows, by name."""

DECODING_FIELDS = ("average_last", "beam_size", "alpha", "test_sentences")


def training_key(recipe: Recipe, keep: int) -> str:
    """A short name for what training does (decoding and averaging excluded), so runs that
    differ only there share one checkpoint folder; ``keep`` checkpoints are kept for averaging."""
    fields = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in DECODING_FIELDS}
    return hashlib.sha256(json.dumps([fields, keep], sort_keys=True).encode()).hexdigest()[:12]


def run_variant(name: str, seed: int, args) -> dict:
    recipe = dataclasses.replace(VARIANTS[name], seed=seed)
    keep = max([recipe.average_last, *args.average])
    probe = dataclasses.replace(recipe, average_last=keep) if keep > 1 else recipe
    folder = Path(args.runs) / f"{training_key(probe, keep)}-s{seed}"
    timing = folder / "timing.json"
    if (folder / "model.pt").is_file() and timing.is_file() and \
            load_translator(folder)[3]["step"] == recipe.steps:
        train_s = json.loads(timing.read_text())["train_s"]
        print(f"{name} seed {seed}: reusing {folder}", file=sys.stderr)
    else:
        run = train(probe, folder, progress=False)
        train_s = run.seconds
        timing.write_text(json.dumps({"train_s": train_s, "threads": args.threads}))
    model, tokenizer, config, _ = load_translator(folder)
    snapshots = load_snapshots(folder)

    def averaged(j: int):
        if j > 1:
            if len(snapshots) < j:
                raise ValueError(f"{folder} keeps {len(snapshots)} checkpoints; {j} asked for")
            model.load_state_dict(average_states([w for _, w in snapshots[-j:]]))
        elif snapshots:
            model.load_state_dict(snapshots[-1][1])
        return model.eval()

    def bleu(split, j, beam, alpha):
        sources, references = load_pairs(split)
        start = time.perf_counter()
        scores, _ = evaluate(averaged(j), tokenizer, sources, references, beam, alpha)
        return round(scores.bleu, 2), time.perf_counter() - start

    row = {"variant": name, "seed": seed, "steps": recipe.steps, "train_s": round(train_s, 1),
           "threads": args.threads, "recipe": dataclasses.asdict(recipe)}
    row["val_bleu_greedy"], decode_s = bleu("val", recipe.average_last, 1, recipe.alpha)
    row["val_greedy_decode_s"] = round(decode_s, 1)
    row["val_bleu_beam"], _ = bleu("val", recipe.average_last, recipe.beam_size, recipe.alpha)
    row["val_average_greedy"] = {str(j): (row["val_bleu_greedy"] if j == recipe.average_last
                                         else bleu("val", j, 1, recipe.alpha)[0])
                                 for j in sorted(set(args.average)) if j <= max(len(snapshots), 1)}
    row["val_decoding"] = {}
    for setting in args.decode:
        beam, alpha = setting.split(":")
        row["val_decoding"][setting] = bleu("val", recipe.average_last, int(beam), float(alpha))[0]
    if args.test:
        row["test_bleu_greedy"], test_decode_s = bleu("test_2016_flickr", recipe.average_last, 1,
                                                      recipe.alpha)
        row["test_greedy_decode_s"] = round(test_decode_s, 1)
        row["test_bleu_beam"], _ = bleu("test_2016_flickr", recipe.average_last,
                                        recipe.beam_size, recipe.alpha)
    row.update(date=_now(), device=_device(), torch=torch.__version__)
    return row


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _device() -> str:
    """The CPU and its instruction set as torch sees it (bf16 autocast pays only with
    AVX512-BF16 or AMX)."""
    return f"{device_name('cpu')}, {torch.backends.cpu.get_cpu_capability()}"


def summary(rows: list[dict]) -> dict[str, float]:
    """Per variant, the mean over its seeds of each BLEU the rows hold (for the results page)."""
    found = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        seeds = ", ".join(str(r["seed"]) for r in mine)
        for key, label in (("val_bleu_greedy", "val BLEU greedy"),
                           ("val_bleu_beam", "val BLEU beam"),
                           ("test_bleu_greedy", "test BLEU greedy"),
                           ("test_bleu_beam", "test BLEU beam")):
            values = [r[key] for r in mine if key in r]
            if len(values) == len(mine):
                found[f"{variant}: {label} (seeds {seeds})"] = round(sum(values) / len(values), 2)
    return found


def table(rows: list[dict]) -> str:
    """A markdown table of the rows."""
    lines = ["| variant | seed | steps | train s (threads) | val greedy | val beam | "
             "val greedy, mean of last j | val beam:alpha | test greedy | test beam |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        averages = ", ".join(f"{j}: {b}" for j, b in r.get("val_average_greedy", {}).items())
        decoding = ", ".join(f"{k}: {b}" for k, b in r.get("val_decoding", {}).items())
        lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['train_s']:.0f} "
                     f"({r['threads']}) | {r['val_bleu_greedy']} | {r['val_bleu_beam']} | "
                     f"{averages} | {decoding} | {r.get('test_bleu_greedy', '')} | "
                     f"{r.get('test_bleu_beam', '')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["book"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--average", nargs="*", type=int, default=[1],
                        help="probe: greedy val BLEU of the mean of the last j checkpoints")
    parser.add_argument("--decode", nargs="*", default=[],
                        help="probe: beam val BLEU for each BEAM:ALPHA")
    parser.add_argument("--test", action="store_true", help="also score test_2016_flickr")
    parser.add_argument("--runs", default="/tmp/qkv-levers", help="checkpoint folders")
    parser.add_argument("--out", default="benchmarks/results/levers-cpu.json")
    parser.add_argument("--table", action="store_true", help="print --out as a markdown table")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(table(json.loads(out.read_text())["rows"]))
        return 0
    set_threads(args.threads)
    for name in args.variants:
        for seed in args.seeds:
            row = run_variant(name, seed, args)
            print(json.dumps(row), flush=True)
            saved = json.loads(out.read_text()) if out.is_file() else {"rows": []}
            saved["rows"] = [r for r in saved["rows"] if (r["variant"], r["seed"], r["threads"],
                             "test_bleu_beam" in r) != (name, seed, args.threads, args.test)]
            saved["rows"].append(row)
            saved.update(benchmark="translation_levers", device=_device(), date=_now(),
                         torch=torch.__version__, summary=summary(saved["rows"]))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(saved, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
