"""The book's measured figures at a glance, read from the result files under benchmarks/results/.

Two kinds of files live there, each a JSON object with ``device`` and ``date``:

* benchmark results (``benchmarks/*.py --out``), with a ``benchmark`` title and a ``summary``
  object of headline numbers;
* chapter runs (``scripts/measure_chapters.py``), with a ``chapters`` list: per chapter and
  budget, the wall time and the results the chapter reported with :func:`qkv.runtime.record`.

:func:`chapter_times`, :func:`chapter_results` and :func:`benchmark_summaries` turn them into
rows; the results page of the book and the README's results section show those rows, so that
no figure is typed in by hand.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
"""The folder of result files in a checkout of the repository."""


def device_name(device="cpu") -> str:
    """How result files name a device: the GPU's name, or the CPU model and its core count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def load_results(folder: Path | str = RESULTS) -> list[dict]:
    """Read every ``*.json`` file in ``folder``, sorted by name; each gets a ``file`` entry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder at {folder}")
    files = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("device", "date"):
            if key not in data:
                raise ValueError(f"{path.name} has no {key!r}: every result says where and when")
        files.append({**data, "file": path.name})
    return files


def _where(data: dict, run: dict | None = None) -> dict:
    """Device (with threads) and date of a result; a run's own ``threads``/``date`` win."""
    where = {**data, **{k: v for k, v in (run or {}).items() if k in ("threads", "date")}}
    threads = f", {where['threads']} thread(s)" if "threads" in where else ""
    return {"device": f"{where['device']}{threads}", "date": where["date"]}


def chapter_times(files: list[dict]) -> list[dict]:
    """Rows ``chapter, budget, wall time (s), device, date`` of every measured chapter run."""
    return [
        {"chapter": run["chapter"], "budget": run["budget"], "wall time (s)": round(run["wall_s"], 1),
         **_where(data, run)}
        for data in files for run in data.get("chapters", [])
    ]


def chapter_results(files: list[dict], budgets=("smoke", "book", "full")) -> list[dict]:
    """Rows ``chapter, budget, result, value, device, date`` of the recorded chapter results
    of the given ``budgets`` (the pages show book and full: smoke results only prove a run)."""
    return [
        {"chapter": run["chapter"], "budget": run["budget"], "result": item["name"],
         "value": format_value(item["value"], item.get("unit", "")), **_where(data, run)}
        for data in files for run in data.get("chapters", []) if run["budget"] in budgets
        for item in run["results"]
    ]


def benchmark_summaries(files: list[dict]) -> list[dict]:
    """Rows ``benchmark, quantity, value, device, date`` from each benchmark's ``summary``."""
    return [
        {"benchmark": data["benchmark"], "quantity": name, "value": format_value(value, ""),
         **_where(data)}
        for data in files if "benchmark" in data for name, value in data["summary"].items()
    ]


def format_value(value, unit: str = "") -> str:
    """A recorded value as the tables show it: four significant digits, then the unit."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def markdown_table(rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (all with the same keys)."""
    if not rows:
        return "(nothing measured yet)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[key]) for key in keys) + " |" for row in rows]
    return "\n".join(lines)
