"""Re-running a chapter with the same budget on the same machine prints the same numbers."""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "02_nadaraya_watson.ipynb"


def _printed(path):
    """Execute the notebook; return, per code cell, all the text it printed (streams joined:
    how a stream is cut into chunks varies between runs, its content does not)."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    texts = []
    for cell in notebook.cells:
        printed = ""
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                printed += output["text"]
            elif "text/plain" in output.get("data", {}) and "image/png" not in output["data"]:
                printed += output["data"]["text/plain"]
        texts.append(printed)
    return texts


def test_a_chapter_prints_the_same_numbers_twice(monkeypatch):
    monkeypatch.setitem(os.environ, "QKV_BUDGET", "smoke")
    monkeypatch.setitem(os.environ, "QKV_STATIC_FIGURES", "1")
    first, second = _printed(CHAPTER), _printed(CHAPTER)
    assert any(any(ch.isdigit() for ch in text) for text in first), "the chapter prints numbers"
    assert first == second
