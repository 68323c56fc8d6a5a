"""The full budget (what a Colab learner with a GPU gets) runs, here on the CPU, for a few steps.

Each chapter executes top to bottom with ``QKV_BUDGET=full`` and the test hook
``QKV_DRY_RUN_STEPS``: every model, data set and size is the full budget's, but each count of
training steps chosen with :func:`qkv.runtime.step_budget` stops after a few steps, and claims
about trained outcomes are printed instead of checked. A shape, dtype or memory error on the
full budget's path fails here instead of on a learner's GPU.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [p for p in sorted((ROOT / "chapters").glob("*.ipynb"))
            if any(c.cell_type == "code" for c in nbformat.read(p, as_version=4).cells)]
DRY_RUN_STEPS = 3


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_full_budget_code_path_runs(path, monkeypatch):
    monkeypatch.setenv("QKV_BUDGET", "full")
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", str(DRY_RUN_STEPS))
    monkeypatch.setenv("QKV_STATIC_FIGURES", "1")
    monkeypatch.delenv("QKV_CLAIMS_FILE", raising=False)
    monkeypatch.delenv("QKV_RESULTS_FILE", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    printed = "".join(output.get("text", "") for cell in notebook.cells
                      if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "budget=full" in printed and f"dry run of {DRY_RUN_STEPS} steps" in printed, (
        f"{path.name} did not print a full-budget dry run from qkv.runtime.setup")
