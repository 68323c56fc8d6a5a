"""How long would each chapter's full budget take on a GPU? An estimate from counted work.

The full budget is what a Colab learner with a GPU gets. Until it is measured on a GPU, this
script estimates it. Each chapter runs twice on the CPU at the full budget as a dry run
(``QKV_DRY_RUN_STEPS`` = 2, then 4: the full budget's models and sizes, with every step count
capped), while two counters run in the kernel: the floating-point operations of matrix
products and attention (``torch.utils.flop_counter.FlopCounterMode``) and the number of tensor
operators dispatched (on a GPU, roughly one kernel launch each). Every step count passes
through :func:`qkv.runtime.capped_steps`, which tells a listener; the work between two counts
is charged to the first, so each training loop gets a per-step cost (the difference of the two
dry runs) and a fixed cost, and the full budget's work is fixed + per step × its full count.

The time model, per GPU, gives a range rather than a number:

* fast end: FLOPs at the card's peak FP32 rate + 5 µs per operator;
* slow end: FLOPs at a quarter of that rate + 20 µs per operator (small models are
  launch-bound: the Python and launch overhead of eager PyTorch dominates).

Peak FP32 rates (NVIDIA's data sheets; the chapters compute in float32, without TF32): T4
8.1 TFLOP/s, H100 SXM 67 TFLOP/s. Not counted: work outside tensor operators (tokenizer
training, reading data, sacreBLEU, Python loops between operators), which takes the same time
as on the CPU. Counted only at the dry run's size: work that a dry run cuts other than through a
step count; chapter 6 decodes 10 test sentences instead of 1,000 and 10 validation sentences
instead of 200 in its beam sweep, so its estimate leaves out most of its decoding. Measured
times replace these estimates when a GPU run exists.

    python benchmarks/full_budget_estimate.py [--chapters 05 06] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from measure_chapters import chapter_paths, run_chapter, write_atomically  # noqa: E402

from qkv import report  # noqa: E402

CAPS = (2, 4)
GPUS = {"T4": 8.1e12, "H100 SXM": 67e12}
"""Peak FP32 FLOP/s from NVIDIA's data sheets."""
SLOW, FAST = (0.25, 20e-6), (1.0, 5e-6)
"""(share of peak FLOP/s reached, seconds per operator) at the two ends of the range."""

COUNT = """\
import json as _json
from torch.utils._python_dispatch import TorchDispatchMode as _DispatchMode
from torch.utils.flop_counter import FlopCounterMode as _FlopCounterMode
import qkv.runtime as _runtime

class _OperatorCounter(_DispatchMode):
    operators = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        _OperatorCounter.operators += 1
        return func(*args, **(kwargs or {}))

_flops = _FlopCounterMode(display=False)
_segments = [{"full": 0, "capped": 0, "flops": 0, "operators": 0}]
def _listen(steps, capped):
    _segments.append({"full": steps, "capped": capped, "flops": _flops.get_total_flops(),
                      "operators": _OperatorCounter.operators})
_runtime.STEP_LISTENERS.append(_listen)
_flops.__enter__()
_counter = _OperatorCounter()
_counter.__enter__()
"""

REPORT = """\
_counter.__exit__(None, None, None)
_flops.__exit__(None, None, None)
_ends = _segments[1:] + [{"flops": _flops.get_total_flops(), "operators": _OperatorCounter.operators}]
with open({path!r}, "w") as _file:
    _json.dump([{"full": s["full"], "capped": s["capped"], "flops": e["flops"] - s["flops"],
                 "operators": e["operators"] - s["operators"]}
                for s, e in zip(_segments, _ends)], _file)
"""


def counted_dry_run(path: Path, cap: int) -> tuple[list[dict], list[dict]]:
    """Run ``path`` at the full budget capped at ``cap`` steps; return its counted segments and
    the cells that raised under the counters.

    A cell can fail only because it is counted (e.g. one that builds a tensor subclass, such as
    ``torch.nn.attention.bias.causal_lower_right``, under the operator counter): such cells are
    listed and their work is missing from the count. ``tests/test_full_budget_dry_run.py`` runs
    the same chapters without counters, where every cell must pass.
    """
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "segments.json"
        first_code = [c.cell_type for c in notebook.cells].index("code")
        notebook.cells.insert(first_code + 1, nbformat.v4.new_code_cell(COUNT))
        notebook.cells.append(nbformat.v4.new_code_cell(REPORT.replace("{path!r}", repr(str(out)))))
        counted = Path(scratch) / path.name
        nbformat.write(notebook, counted)
        run = run_chapter(counted, "full", timeout=3600, allow_errors=True,
                          env={"QKV_DRY_RUN_STEPS": str(cap)})
        return json.loads(out.read_text()), run["errors"]


def full_budget_work(low: list[dict], high: list[dict]) -> dict:
    """Extrapolate two counted dry runs to the full step counts: FLOPs, operators, steps."""
    if [s["full"] for s in low] != [s["full"] for s in high]:
        raise RuntimeError("the two dry runs met different step counts; cannot pair their loops")
    total = {"flops": 0.0, "operators": 0.0}
    for a, b in zip(low, high):
        for key in total:
            per_step = (b[key] - a[key]) / (b["capped"] - a["capped"]) if b["capped"] > a["capped"] else 0
            total[key] += a[key] + max(per_step, 0) * (a["full"] - a["capped"])
    return {**total, "step counts": [s["full"] for s in low[1:]]}


def seconds(work: dict, peak: float) -> tuple[float, float]:
    """(fast, slow) estimated seconds of ``work`` on a GPU with ``peak`` FP32 FLOP/s."""
    return tuple(work["flops"] / (share * peak) + work["operators"] * launch
                 for share, launch in (FAST, SLOW))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=report.RESULTS / "full-budget-estimate.json")
    args = parser.parse_args()
    rows, summary = [], {}
    for path in chapter_paths(args.chapters):
        (low, errors), (high, _) = (counted_dry_run(path, cap) for cap in CAPS)
        work = full_budget_work(low, high)
        row = {"chapter": path.stem, "GFLOP": round(work["flops"] / 1e9, 1),
               "operators (millions)": round(work["operators"] / 1e6, 2),
               "step counts": work["step counts"],
               "cells not counted": "; ".join(f"{e['cell']} ({e['error']})" for e in errors)
                                    or "none"}
        for gpu, peak in GPUS.items():
            fast, slow = seconds(work, peak)
            row[f"{gpu} (min)"] = f"{fast / 60:.2g}–{slow / 60:.2g}"
            summary[f"{path.stem}, {gpu}: estimated minutes"] = row[f"{gpu} (min)"]
        rows.append(row)
        print(row, flush=True)
    write_atomically(args.out, {
        "benchmark": "full budget on a GPU: estimate from counted FLOPs and operators",
        "device": f"estimate (counted on {report.device_name('cpu')})",
        "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/full_budget_estimate.py", "model": {
            "peak FP32 FLOP/s": GPUS, "fast end": {"share of peak": FAST[0], "s per operator": FAST[1]},
            "slow end": {"share of peak": SLOW[0], "s per operator": SLOW[1]}},
        "rows": rows, "summary": summary})
    print(report.markdown_table(rows))


if __name__ == "__main__":
    main()
