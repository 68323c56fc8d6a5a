"""Execute chapters with given budgets, time them, and collect the results they record.

    python scripts/measure_chapters.py --budgets smoke book            # every chapter
    python scripts/measure_chapters.py --budgets book --chapters 05 06  # some chapters
    python scripts/measure_chapters.py --readme                         # only refresh README

Each chapter runs top to bottom in a fresh kernel (nbclient), with ``QKV_BUDGET`` set and
``QKV_RESULTS_FILE`` pointing at a scratch file that :func:`qkv.runtime.record` appends to. The
wall times and results are merged into ``benchmarks/results/chapters-<device type>.json`` (a run
replaces the earlier entry for the same chapter and budget), which the book's results page and
the README's results section (rewritten here between its markers) read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from qkv import report

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def device_name() -> tuple[str, str]:
    """(device type, readable name) of the machine the chapters run on."""
    device_type = "gpu" if torch.cuda.is_available() else "cpu"
    return device_type, report.device_name("cuda" if device_type == "gpu" else "cpu")


def run_chapter(path: Path, budget: str, timeout: int, env: dict | None = None,
                allow_errors: bool = False) -> dict:
    """Execute one chapter with ``budget``; return its wall time, results and claims.

    ``env`` adds environment variables for the kernel (``QKV_SEED``, ``QKV_THREADS``). With
    ``allow_errors`` a failing cell does not stop the run: the result lists the failing cells
    (index and error name) under ``errors``, and every :func:`qkv.runtime.claim` is collected
    (true or false) under ``claims``.
    """
    notebook = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        results_file, claims_file = Path(scratch) / "results.jsonl", Path(scratch) / "claims.jsonl"
        os.environ.update(QKV_BUDGET=budget, QKV_RESULTS_FILE=str(results_file),
                          QKV_STATIC_FIGURES="1", **(env or {}))
        if allow_errors:
            os.environ["QKV_CLAIMS_FILE"] = str(claims_file)
        try:
            client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                    allow_errors=allow_errors,
                                    resources={"metadata": {"path": str(path.parent)}})
            start = time.perf_counter()
            client.execute()
            wall = time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(saved)
        read = lambda file: [json.loads(line) for line in  # noqa: E731
                             (file.read_text().splitlines() if file.exists() else [])]
        results, claims = read(results_file), read(claims_file)
    errors = [{"cell": index, "error": output.get("ename", "?"), "message": output.get("evalue", "")}
              for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    threads = (env or {}).get("QKV_THREADS") or os.environ.get("QKV_THREADS")
    return {"chapter": path.stem, "budget": budget, "wall_s": wall,
            "threads": int(threads or torch.get_num_threads()),
            "date": datetime.date.today().isoformat(),
            "results": results, **({"claims": claims, "errors": errors} if allow_errors else {})}


def chapter_paths(numbers: list[str] | None) -> list[Path]:
    """The chapters with code, all or those whose names start with one of ``numbers``."""
    paths = sorted(CHAPTERS.glob("*.ipynb"))
    if numbers is not None:
        unknown = set(numbers) - {p.name[:2] for p in paths}
        if unknown:
            raise SystemExit(f"--chapters: no chapter numbered {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p.name[:2] in numbers]
    return [p for p in paths
            if any(c.cell_type == "code" for c in nbformat.read(p, as_version=4).cells)]


def write_atomically(out: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``out`` through a temporary file, so a crash leaves no half file."""
    temporary = out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(out)


def merge(out: Path, runs: list[dict], device_type: str, device: str) -> None:
    """Merge ``runs`` into ``out`` (replacing the same chapter and budget), written atomically."""
    data = json.loads(out.read_text()) if out.exists() else {"chapters": []}
    if data.get("device", device) != device:
        raise SystemExit(f"{out} holds runs on {data['device']!r}, not {device!r}: "
                         "use --out for another file")
    fresh = {(run["chapter"], run["budget"]) for run in runs}
    kept = [run for run in data["chapters"] if (run["chapter"], run["budget"]) not in fresh]
    order = {"smoke": 0, "book": 1, "full": 2}
    data.pop("threads", None)  # each run says how many threads it had
    data.update(device_type=device_type, device=device, torch=torch.__version__,
                date=datetime.date.today().isoformat(), command="python scripts/measure_chapters.py",
                chapters=sorted(kept + runs, key=lambda r: (r["chapter"], order[r["budget"]])))
    write_atomically(out, data)


def refresh_readme() -> None:
    """Rewrite the README's results section from the result files."""
    files = report.load_results()
    def tables(rows):  # device and date once per table
        return "\n\n".join(f"Measured on *{where}*:\n\n{report.markdown_table(group)}"
                           for where, group in report.by_device(rows)) or "(nothing measured yet)"

    section = "\n\n".join([
        START,
        "*Generated by `scripts/measure_chapters.py --readme` from `benchmarks/results/`; "
        "do not edit by hand.*",
        "**Chapter run times**\n\n" + tables(report.chapter_times(files)),
        "**Headline results** (book and full budgets; seed 0 and the spread over the seeds and "
        "thread counts that `scripts/check_claims.py` ran)\n\n"
        + tables(report.chapter_results(files, ("book", "full"))),
        "**Claims checked over seeds and threads** (`scripts/check_claims.py`)\n\n"
        + tables(report.claim_checks(files)),
        "**Benchmarks**\n\n" + tables(report.benchmark_summaries(files)),
        END,
    ])
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section to rewrite")
    head, rest = text.split(START, 1)
    README.write_text(head + section + rest.split(END, 1)[1], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="*", default=[], choices=["smoke", "book", "full"])
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapter numbers such as 01 05 (default: every chapter with code)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--readme", action="store_true", help="refresh README.md's results")
    args = parser.parse_args()
    device_type, device = device_name()
    out = args.out or report.RESULTS / f"chapters-{device_type}.json"
    runs = []
    for path in chapter_paths(args.chapters):
        for budget in args.budgets:
            run = run_chapter(path, budget, args.timeout)
            print(f"{path.stem:28s} {budget:6s} {run['wall_s']:7.1f} s  "
                  f"{len(run['results'])} result(s)", flush=True)
            merge(out, [run], device_type, device)  # after every run: an interrupted
            runs.append(run)                        # measurement keeps what it measured
    if args.readme or runs:
        refresh_readme()


if __name__ == "__main__":
    main()
