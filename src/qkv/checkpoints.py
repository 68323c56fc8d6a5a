"""Translation checkpoints (chapter 6): saved as a set, loaded, packed and fetched by URL.

* :func:`save_translator` writes ``model.pt``, ``tokenizer.json`` and ``config.json`` into a
  folder as a set (a staging folder renamed into place), so an interrupted save never leaves
  files that disagree; :func:`load_translator` reads the last complete set. A run that
  averages its last checkpoints keeps their weights in the same set (``snapshots.pt``, read
  by :func:`load_snapshots`), so the average survives a resume.
* :func:`pack_translator` writes a reproducible ``.tar.gz`` and returns its SHA-256;
  :func:`fetch_translator` loads a folder, or downloads an archive from a URL, checks its
  SHA-256, and unpacks it as a set, never overwriting a file of the user's.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import torch

from qkv.data.multi30k import fetch_verified, sha256_of
from qkv.data.text import SubwordTokenizer
from qkv.seq2seq import Seq2SeqTransformer

CHECKPOINT_FILES = ("model.pt", "config.json", "tokenizer.json")
SNAPSHOT_FILE = "snapshots.pt"
"""Weights of the last checkpoints of a run that averages them (see :func:`save_translator`)."""


def _previous(folder: Path) -> Path:
    """Where :func:`save_translator` keeps the last complete set while it swaps in a new one."""
    return folder.parent / f".{folder.name}.previous"


def save_translator(folder: str | Path, model: Seq2SeqTransformer, tokenizer: SubwordTokenizer,
                    recipe, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, history: dict | None = None,
                    snapshots: list[tuple[int, dict]] | None = None) -> Path:
    """Write ``model.pt``, ``tokenizer.json`` and ``config.json`` into ``folder``, as a set;
    ``recipe`` is the training recipe (a dataclass, :class:`qkv.translation.Recipe`).
    ``snapshots``, ``[(step, model state dict), ...]``, the checkpoints a run will average,
    go into the same set as ``snapshots.pt`` (None: no such file).

    The files go into a new folder beside ``folder`` (with a copy of any other file already
    in ``folder``, such as ``scores.json``), which then replaces ``folder`` by two renames:
    the old folder to ``.<name>.previous``, the new one into place. An interruption at any
    point leaves a complete set from one step, which :func:`load_translator` finds.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.writing-", dir=folder.parent))
    previous = _previous(folder)
    try:
        current = complete_set(folder)
        if current.is_dir():
            for item in current.iterdir():
                if item.name not in (*CHECKPOINT_FILES, SNAPSHOT_FILE) and item.is_file():
                    shutil.copy2(item, staging / item.name)
        state = {"model": model.state_dict(), "step": step}
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        torch.save(state, staging / "model.pt")
        if snapshots is not None:
            torch.save({"steps": [step for step, _ in snapshots],
                        "models": [weights for _, weights in snapshots]}, staging / SNAPSHOT_FILE)
        tokenizer.save(staging)
        config = {"model": model.config, "recipe": dataclasses.asdict(recipe), "step": step,
                  "history": history or {}}
        (staging / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            folder.rename(previous)
        staging.rename(folder)
    finally:  # after a failure the unfinished set is removed; the last complete one is kept
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    for stale in folder.parent.glob(f".{folder.name}.writing-*"):  # left by a killed process
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def complete_set(folder: Path) -> Path:
    """``folder``, or the previous set if a save was interrupted between its two renames."""
    if not folder.exists() and all((_previous(folder) / n).is_file() for n in CHECKPOINT_FILES):
        return _previous(folder)
    return folder


def load_snapshots(folder: str | Path, device=None) -> list[tuple[int, dict]]:
    """The ``[(step, model state dict), ...]`` saved with the last complete set in ``folder``
    (oldest first; ``[]`` if the set has none)."""
    path = complete_set(Path(folder)) / SNAPSHOT_FILE
    if not path.is_file():
        return []
    saved = torch.load(path, map_location=device or "cpu", weights_only=True)
    return list(zip(saved["steps"], saved["models"]))


def load_translator(folder: str | Path, device=None):
    """Load a checkpoint folder: ``(model in eval mode, tokenizer, config dict, state dict)``.

    The state dict holds the optimizer state and the step (for resuming). If a save was
    interrupted after moving the last set aside, that set is loaded.
    """
    folder = complete_set(Path(folder))
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a translation checkpoint: {name} is "
                                    "missing (make one with `python -m qkv.translation train`)")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokenizer = SubwordTokenizer.load(folder)
    model = Seq2SeqTransformer(**config["model"])
    state = torch.load(folder / "model.pt", map_location=device or "cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.to(device or "cpu").eval(), tokenizer, config, state


# ----------------------------------------------------------------------------- sharing

def pack_translator(folder: str | Path, archive: str | Path) -> str:
    """Write the checkpoint ``folder`` as a ``.tar.gz`` of its three files; return the
    archive's SHA-256 (publish it with the URL, for :func:`fetch_translator`).

    The archive is reproducible: the same files give the same bytes (no times or owners).
    An existing ``archive`` is not overwritten.
    """
    folder, archive = complete_set(Path(folder)), Path(archive)
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a translation checkpoint: {name} is missing")
    if archive.exists():
        raise FileExistsError(f"{archive} exists; choose another name (it was not overwritten)")
    archive.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.")
    try:
        with os.fdopen(handle, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w") as tar:
            for name in CHECKPOINT_FILES:
                data = (folder / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        os.replace(temporary, archive)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return sha256_of(archive)


def checkpoint_cache() -> Path:
    """Where :func:`fetch_translator` keeps downloads: ``$XDG_CACHE_HOME/qkv/checkpoints``
    (default ``~/.cache/qkv/checkpoints``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "qkv" / "checkpoints"


def fetch_translator(source: str | Path, sha256: str | None = None,
                     cache: str | Path | None = None, device=None,
                     opener=urllib.request.urlopen):
    """Load a trained translator from a checkpoint folder or from a URL, instead of training.

    Args:
        source: a checkpoint folder (as :func:`qkv.translation.train` writes it), or the URL (``https://``,
            ``http://`` or ``file://``) of an archive made by :func:`pack_translator`.
        sha256: the archive's published SHA-256; required for a URL. The download is checked
            against it before anything is unpacked.
        cache: where downloads go (default :func:`checkpoint_cache`): the archive is written to
            a temporary file and renamed into place only once its SHA-256 matches; it is then
            unpacked into a temporary folder renamed into place. A verified copy is reused;
            a file or folder of the same name that does not match is never overwritten.
        device: where to put the model.
        opener: opens a URL (for tests).

    Returns:
        ``(model in eval mode, tokenizer, config dict, state dict)``, as :func:`load_translator`.
    """
    if "://" not in str(source):
        return load_translator(source, device)
    url = str(source)
    if not url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"source must be a folder or an https://, http:// or file:// URL; "
                         f"got {url!r}")
    if not isinstance(sha256, str) or len(sha256) != 64 or \
            any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"a URL needs sha256, the archive's 64-digit hex SHA-256; got {sha256!r}")
    sha256 = sha256.lower()
    cache = Path(cache) if cache is not None else checkpoint_cache()
    folder = cache / sha256[:16]
    if not (folder / "model.pt").is_file():
        archive = fetch_verified(url, cache / f"{sha256[:16]}.tar.gz", sha256, opener,
                                 "Train the model instead, or download the archive by hand.")
        _unpack(archive, folder)
    return load_translator(folder, device)


def _unpack(archive: Path, folder: Path) -> None:
    """Unpack the three checkpoint files of ``archive`` into ``folder``, as a set."""
    if folder.exists():
        raise FileExistsError(f"{folder} exists but holds no complete checkpoint; remove it")
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.unpacking-", dir=folder.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if set(members) != set(CHECKPOINT_FILES) or not all(m.isfile()
                                                                for m in members.values()):
                raise ValueError(f"{archive} is not a checkpoint archive: it holds "
                                 f"{sorted(members)}, expected {list(CHECKPOINT_FILES)}")
            for name, member in members.items():  # only these plain files: nothing else
                (staging / name).write_bytes(tar.extractfile(member).read())
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
