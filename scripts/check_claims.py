"""Run chapters over several seeds and thread counts and tabulate every claim they make.

    python scripts/check_claims.py --budget book --seeds 0 1 2 --threads 1 2
    python scripts/check_claims.py --budget book --seeds 0 1 2 --chapters 05 07
    python scripts/check_claims.py --table        # only print the table of the saved runs
    python scripts/check_claims.py --merge /tmp/claims-05.json   # runs made with --out elsewhere

Each (chapter, seed, threads) runs top to bottom in a fresh kernel with ``QKV_SEED`` and
``QKV_THREADS`` set. A failing cell does not stop the run: every :func:`qkv.runtime.claim` is
collected, true or false, with every cell that raised (a plain ``assert`` included) and every
result the chapter records. Runs are merged into ``benchmarks/results/claims-<device type>.json``
after each one (a run replaces the earlier one with the same chapter, budget, seed and threads),
so an interrupted check keeps what it measured; the book's results page reads the spread over
seeds from that file. The table lists, per chapter, budget, seed and threads: the claims that
held, those that did not, the cells that raised, and the headline results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_chapters import chapter_paths, device_name, run_chapter, write_atomically  # noqa: E402

from qkv import report  # noqa: E402

ORDER = {"smoke": 0, "book": 1, "full": 2}


def merge(out: Path, run: dict, device_type: str, device: str) -> dict:
    """Merge one run into ``out``, replacing the run with the same key; return the file's data."""
    data = json.loads(out.read_text()) if out.exists() else {"runs": []}
    if data.get("device", device) != device:
        raise SystemExit(f"{out} holds runs on {data['device']!r}, not {device!r}: "
                         "use --out for another file")
    key = lambda r: (r["chapter"], r["budget"], r["seed"], r["threads"])  # noqa: E731
    runs = [r for r in data["runs"] if key(r) != key(run)] + [run]
    data.update(device_type=device_type, device=device, torch=torch.__version__,
                date=datetime.date.today().isoformat(),
                command="python scripts/check_claims.py",
                runs=sorted(runs, key=lambda r: (r["chapter"], ORDER[r["budget"]], r["seed"],
                                                 r["threads"])))
    write_atomically(out, data)
    return data


def table(data: dict) -> str:
    """The Markdown tables of the runs in ``data``: per chapter and budget, the claims that held
    and failed and the cells that raised; then per run, its time and results."""
    runs = [{"chapter": run["chapter"], "budget": run["budget"], "seed": run["seed"],
             "threads": run["threads"], "time (s)": round(run["wall_s"]),
             "claims held": f"{sum(c['holds'] for c in run['claims'])} of {len(run['claims'])}",
             "cells that raised": len(run["errors"]),
             "results": "; ".join(f"{r['name']} = {report.format_value(r['value'], r.get('unit', ''))}"
                                  for r in run["results"]) or "none"}
            for run in data["runs"]]
    return (report.markdown_table(report.claim_checks([data])) + "\n\n"
            + report.markdown_table(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="book", choices=list(ORDER))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapter numbers such as 05 07 (default: every chapter with code)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="only print the saved table")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                        help="merge the runs of other claims files (same device) into --out")
    args = parser.parse_args()
    if any(seed < 0 for seed in args.seeds) or any(t < 1 for t in args.threads):
        parser.error("--seeds must be non-negative and --threads positive")
    device_type, device = device_name()
    out = args.out or report.RESULTS / f"claims-{device_type}.json"
    if args.table:
        print(table(json.loads(out.read_text())))
        return
    if args.merge:
        for other in args.merge:
            for run in json.loads(other.read_text())["runs"]:
                data = merge(out, run, device_type, device)
        out.with_suffix(".md").write_text(table(data) + "\n", encoding="utf-8")
        return
    for path in chapter_paths(args.chapters):
        for threads in args.threads:
            for seed in args.seeds:
                run = run_chapter(path, args.budget, args.timeout, allow_errors=True,
                                  env={"QKV_SEED": str(seed), "QKV_THREADS": str(threads)})
                run["seed"] = seed
                failed = sum(not c["holds"] for c in run["claims"])
                print(f"{path.stem:28s} {args.budget:5s} seed {seed} threads {threads} "
                      f"{run['wall_s']:6.0f} s  claims {len(run['claims']) - failed}/"
                      f"{len(run['claims'])}  cells raised {len(run['errors'])}", flush=True)
                data = merge(out, run, device_type, device)
                out.with_suffix(".md").write_text(table(data) + "\n", encoding="utf-8")
    print(f"table written to {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
