"""The chapters as files: listed in the contents, stripped of outputs, with a working Colab cell."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY = CONFIG["repository"]["url"]
RELEASE = "v" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(path):
    return [c for c in _load(path)["cells"] if c["cell_type"] == "code"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_contents_lists_the_seven_chapters_in_order_then_the_results():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "intro"
    listed = [entry["file"] for entry in toc["chapters"]]
    assert listed == [f"chapters/{p.stem}" for p in CHAPTERS] + ["notation", "results"]
    assert [p.name[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for cell in _code_cells(path):
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
            f"{path.name}: strip outputs before committing")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_starts_with_a_title(path):
    first = _load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    assert _source(first).startswith(f"# {int(path.name[:2])}. ")


EXECUTABLE = [p for p in CHAPTERS if _code_cells(p)]


def test_the_written_chapters_are_executable():
    assert [p.name[:2] for p in EXECUTABLE][:2] == ["01", "02"]


@pytest.mark.parametrize("path", EXECUTABLE, ids=lambda p: p.stem)
def test_first_code_cell_is_the_colab_cell_and_second_sets_up(path):
    colab, setup = (_source(c) for c in _code_cells(path)[:2])
    assert 'if "google.colab" in sys.modules:' in colab
    assert f'"git+{REPOSITORY}.git@{RELEASE}"' in colab, \
        "the Colab cell installs the release of _config.yml's repository (scripts/sync_colab.py)"
    assert "qkv.runtime.setup(" in setup or "setup(" in setup


def test_every_chapter_asks_colab_for_a_gpu_and_carries_its_own_badge():
    """scripts/sync_colab.py --check: metadata, badge and pinned release are up to date."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_colab", ROOT / "scripts" / "sync_colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0
    for path in EXECUTABLE:
        notebook = _load(path)
        assert notebook["metadata"]["accelerator"] == "GPU"
        badge = next(c for c in notebook["cells"] if "colab-badge" in c["metadata"].get("tags", []))
        assert f"/blob/main/chapters/{path.name})" in _source(badge)
        assert "remove-cell" in badge["metadata"]["tags"]  # the HTML book has its launch button


def _run_colab_cell(code, in_colab, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, check: calls.append(args))
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", object())
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code, "colab-cell", "exec"), {})
    return calls


@pytest.mark.parametrize("path", EXECUTABLE, ids=lambda p: p.stem)
def test_colab_cell_installs_only_on_colab_and_pins_nothing_colab_has(path, monkeypatch):
    code = _source(_code_cells(path)[0])
    monkeypatch.delenv("QKV_INSTALL_SOURCE", raising=False)
    assert _run_colab_cell(code, in_colab=False, monkeypatch=monkeypatch) == []
    install_package, install_d2l = _run_colab_cell(code, in_colab=True, monkeypatch=monkeypatch)
    assert install_package[-1] == f"git+{REPOSITORY}.git@{RELEASE}"
    assert install_d2l[-2:] == ["--no-deps", "d2l==1.0.3"]
    for pinned in ("torch", "numpy", "matplotlib"):
        assert not any(arg.startswith(pinned) for arg in install_package + install_d2l)
    monkeypatch.setenv("QKV_INSTALL_SOURCE", "/local/checkout")
    install_package, _ = _run_colab_cell(code, in_colab=True, monkeypatch=monkeypatch)
    assert install_package[-1] == "/local/checkout"


MARKDOWN_FILES = sorted(ROOT.glob("*.md"))
LIST_MARKER = re.compile(r"^\s*(?:[-+*]|\d+[.)])\s")


def _markdown_texts():
    for path in CHAPTERS:
        for index, cell in enumerate(_load(path)["cells"]):
            if cell["cell_type"] == "markdown":
                yield f"{path.stem} cell {index}", _source(cell)
    for path in MARKDOWN_FILES:
        yield path.name, path.read_text(encoding="utf-8")


def test_no_line_inside_inline_maths_starts_like_a_list_item():
    """A line that begins with "+ ", "- " or "1. " inside a `$...$` span becomes a list item in
    MyST, and the maths around it shows raw."""
    broken = []
    for where, text in _markdown_texts():
        open_dollars = 0
        for line in text.splitlines():
            if line.strip().startswith("$$") or line.startswith("```"):
                open_dollars = 0
                continue
            if open_dollars % 2 and LIST_MARKER.match(line):
                broken.append(f"{where}: {line.strip()[:60]}")
            open_dollars += line.replace(r"\$", "").count("$")
            if not line.strip():
                open_dollars = 0
    assert not broken, "lines that start a list inside inline maths:\n" + "\n".join(broken)


ASCII_MATHS = re.compile(r"\^|<=|>=|!=|\bsqrt\(|\btheta\b|\balpha\b|\bomega\b|\bR\^")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_figure_captions_write_maths_as_text_not_ascii_code(path):
    """Captions are plain text in the built book: "|u| ≤ 1" and "ℝ³", not "|u| <= 1", "R^3"."""
    captions = [cell["metadata"].get("mystnb", {}).get("figure", {}).get("caption", "")
                for cell in _load(path)["cells"]]
    bad = [caption[:80] for caption in captions if ASCII_MATHS.search(caption)]
    assert not bad, f"captions with ASCII maths: {bad}"
