#!/usr/bin/env bash
# A Colab-like run: a fresh virtual environment on Python 3.12 with only what Colab preinstalls,
# then every chapter executed top to bottom, its own first cell doing the install (from this
# checkout instead of the network, through QKV_INSTALL_SOURCE). It proves that the Colab cell
# installs what the chapters need and replaces none of the packages Colab ships (torch, numpy,
# ipywidgets, ...).
#
#   bash scripts/colab_like.sh [VENV_DIR] [BUDGET] [CHAPTERS]
#   (defaults: /tmp/qkv-colab, smoke, every chapter; CHAPTERS like "01 04")
#
# VENV_DIR "system" runs in the interpreter $COLAB_PYTHON (default python3) as it is, installing
# nothing beforehand: that is the weekly check in Colab's own runtime image. Otherwise the base
# Python is $COLAB_BASE_PYTHON (default Python 3.12, Colab's; CI passes 3.11, whose torch wheel
# is on its disk).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-/tmp/qkv-colab}
budget=${2:-smoke}
chapters=${3:-}
if [ "$venv" = system ]; then
  run_python=${COLAB_PYTHON:-python3}
else
  python=${COLAB_BASE_PYTHON:-python3.12}
  if ! "$python" --version >/dev/null 2>&1; then  # pyenv keeps 3.12 out of the PATH
    python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
  fi
  [ -n "$python" ] || { echo "no Python 3.12 found: set COLAB_BASE_PYTHON"; exit 1; }
  run_python=$venv/bin/python
fi

if [ "$venv" != system ] && [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  # What a Colab runtime ships (the packages the chapters use from it): the newest releases,
  # except ipywidgets, which Colab keeps on the 7.7 line for its own widget manager.
  "$venv/bin/pip" install -q torch torchvision numpy matplotlib pandas scipy requests pillow \
    ipython ipykernel "ipywidgets==7.7.1" tqdm nbclient nbformat matplotlib-inline
fi
# Colab's kernel has google.colab imported at start-up; the chapters' first cell looks for it.
if [ "$venv" != system ]; then
  site=$("$run_python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  mkdir -p "$site/google/colab"
  touch "$site/google/__init__.py" "$site/google/colab/__init__.py"
  echo "import google.colab  # noqa: simulate Colab's start-up" > "$site/sitecustomize.py"
fi

preinstalled() { "$run_python" -m pip freeze --exclude-editable | grep -viE '^(qkv|d2l)[=@ ]' | sort; }
before=$(preinstalled)
"$run_python" -m pip uninstall -q -y qkv d2l 2>/dev/null || true   # each run installs afresh

# As on Colab, QKV_STATIC_FIGURES is unset: the chapters build their sliders with ipywidgets 7.7.
QKV_INSTALL_SOURCE="$repo" QKV_BUDGET="$budget" \
  "$run_python" - "$repo" "$chapters" <<'PY'
import sys, time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

repo, wanted = Path(sys.argv[1]), sys.argv[2].split()
failures = []
for path in sorted((repo / "chapters").glob("*.ipynb")):
    if wanted and path.name[:2] not in wanted:
        continue
    notebook = nbformat.read(path, as_version=4)
    if not any(cell.cell_type == "code" for cell in notebook.cells):
        continue
    start = time.perf_counter()
    try:
        NotebookClient(notebook, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        status = "ok"
    except Exception as error:  # report every chapter, then fail
        status = f"FAILED: {type(error).__name__}: {str(error)[-300:]}"
        failures.append(path.name)
    print(f"{path.stem:28s} {time.perf_counter() - start:7.1f} s  {status}", flush=True)
sys.exit(1 if failures else 0)
PY
changed=$(diff <(echo "$before") <(preinstalled) | grep '^<' | sed 's/^< /  /' || true)
if [ -n "$changed" ]; then
  echo "the Colab cell replaced or removed packages Colab ships:"; echo "$changed"; exit 1
fi
echo "every preinstalled package kept its version, among them:" \
  $(echo "$before" | grep -iE '^(torch|numpy|ipywidgets)==')
echo "Colab-like run passed"
