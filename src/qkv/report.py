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
    """Rows ``chapter, budget, result, seed 0, spread over seeds, device, date`` of the results
    the chapters record, for the given ``budgets`` (the pages show book and full: smoke results
    only prove a run).

    Where ``scripts/check_claims.py`` ran a chapter and budget over several seeds (``runs`` in a
    claims file), the row takes seed 0 from it (the run with the most threads) and gives the
    minimum and maximum over every seed and thread count tried. Otherwise the row comes from
    ``scripts/measure_chapters.py`` (``chapters``), which runs seed 0 only, and says so.
    """
    rows, swept = [], set()
    for data in files:
        groups: dict[tuple[str, str], list[dict]] = {}
        for run in data.get("runs", []):
            if run["budget"] in budgets:
                groups.setdefault((run["chapter"], run["budget"]), []).append(run)
        for (chapter, budget), runs in groups.items():
            swept.add((chapter, budget))
            lowest = min(r["seed"] for r in runs)  # seed 0 when it was run
            first = max((r for r in runs if r["seed"] == lowest), key=lambda r: r["threads"])
            seeds = sorted({r["seed"] for r in runs})
            threads = sorted({r["threads"] for r in runs})
            for item in first["results"]:
                values = [i["value"] for r in runs for i in r["results"] if i["name"] == item["name"]]
                unit = item.get("unit", "")
                numeric = all(isinstance(v, (int, float)) for v in values)
                spread = (f"{format_value(min(values))}–{format_value(max(values), unit)}"
                          if numeric and len(values) > 1 else "one run only")
                rows.append({
                    "chapter": chapter, "budget": budget, "result": item["name"],
                    "seed 0": format_value(item["value"], unit) if lowest == 0 else "not run",
                    "spread over seeds (min–max)": spread,
                    "seeds; threads": f"{', '.join(map(str, seeds))}; "
                                      f"{', '.join(map(str, threads))}",
                    "device": data["device"], "date": data["date"]})
    for data in files:
        for run in data.get("chapters", []):
            if run["budget"] not in budgets or (run["chapter"], run["budget"]) in swept:
                continue
            where = _where(data, run)
            rows += [{"chapter": run["chapter"], "budget": run["budget"], "result": item["name"],
                      "seed 0": format_value(item["value"], item.get("unit", "")),
                      "spread over seeds (min–max)": "seed 0 only",
                      "seeds; threads": f"0; {run.get('threads', data.get('threads', '?'))}",
                      "device": data["device"], "date": where["date"]}
                     for item in run["results"]]
    return rows


def claim_checks(files: list[dict]) -> list[dict]:
    """Rows ``chapter, budget, seeds; threads, claims held, claims that failed, cells that
    raised, device, date``: one per chapter and budget that ``scripts/check_claims.py`` ran."""
    rows = []
    for data in files:
        groups: dict[tuple[str, str], list[dict]] = {}
        for run in data.get("runs", []):
            groups.setdefault((run["chapter"], run["budget"]), []).append(run)
        for (chapter, budget), runs in groups.items():
            claims = [c for r in runs for c in r["claims"]]
            failed = sorted({f"{c['claim']} (seed {r['seed']}, {r['threads']} thread(s))"
                             for r in runs for c in r["claims"] if not c["holds"]})
            raised = sorted({f"cell {e['cell']}: {e['error']} (seed {r['seed']}, "
                             f"{r['threads']} thread(s))" for r in runs for e in r["errors"]})
            rows.append({
                "chapter": chapter, "budget": budget,
                "seeds; threads": f"{', '.join(map(str, sorted({r['seed'] for r in runs})))}; "
                                  f"{', '.join(map(str, sorted({r['threads'] for r in runs})))}",
                "claims held": f"{sum(c['holds'] for c in claims)} of {len(claims)}",
                "claims that failed": "; ".join(failed) or "none",
                "cells that raised": "; ".join(raised) or "none",
                "device": data["device"], "date": data["date"]})
    return rows


def benchmark_summaries(files: list[dict]) -> list[dict]:
    """Rows ``benchmark, quantity, value, device, date`` from each benchmark's ``summary``; the
    benchmark is named on its first row only, so that a narrow table does not repeat it."""
    return [
        {"benchmark": data["benchmark"] if index == 0 else "", "quantity": name,
         "value": format_value(value, ""), **_where(data)}
        for data in files if "benchmark" in data
        for index, (name, value) in enumerate(data["summary"].items())
    ]


def format_value(value, unit: str = "") -> str:
    """A recorded value as the tables show it: four significant digits, then the unit."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def by_device(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Group rows by where and when they were measured, so a table names them once.

    Returns ``(heading, rows)`` pairs in first-seen order; the heading reads "DEVICE, DATE" and
    the rows lose their ``device`` and ``date`` keys.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        heading = f"{row['device']}, {row['date']}"
        groups.setdefault(heading, []).append(
            {k: v for k, v in row.items() if k not in ("device", "date")})
    return list(groups.items())


def markdown_table(rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (all with the same keys)."""
    if not rows:
        return "(nothing measured yet)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[key]) for key in keys) + " |" for row in rows]
    return "\n".join(lines)
