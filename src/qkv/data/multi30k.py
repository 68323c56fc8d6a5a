"""Multi30k (task 1, German-English), offline-first and checksummed (chapter 6).

Multi30k (Elliott et al., 2016) pairs English captions of Flickr30K images with German
translations: 29,000 training pairs, 1,014 validation pairs and the 1,000-pair
``test_2016_flickr`` test set. Its maintainers provide it for non-commercial research and
educational use; the captions describe Flickr images, whose use follows Flickr's terms.

Where the files come from, in this order:

1. ``$QKV_DATA/multi30k/<file>`` when the environment variable ``QKV_DATA`` names a folder
   holding them (CI and offline machines);
2. the user cache, ``$XDG_CACHE_HOME/qkv/multi30k`` (default ``~/.cache/qkv/multi30k``);
3. a download from the canonical repository into that cache: written to a temporary file
   next to it, checked against the SHA-256 sum below, and only then renamed into place, so
   an interrupted or corrupted download never leaves a file that looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

BASE_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
"""The canonical source: the ``multi30k/dataset`` repository, folder ``data/task1/raw``."""

SPLITS = ("train", "val", "test_2016_flickr")
LANGUAGES = ("de", "en")

SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}
"""SHA-256 of every file, as published with the course data."""

LINES = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}
"""Number of sentences per split."""


def cache_dir() -> Path:
    """The download folder: ``$XDG_CACHE_HOME/qkv/multi30k``, else ``~/.cache/qkv/multi30k``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "qkv" / "multi30k"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> None:
    if name not in SHA256:
        raise ValueError(f"unknown Multi30k file {name!r}; known files: {', '.join(SHA256)}")


def _verified(path: Path, name: str) -> Path:
    actual = sha256_of(path)
    if actual != SHA256[name]:
        raise ValueError(f"{path} has SHA-256 {actual}, expected {SHA256[name]}: the file is "
                         "corrupted or not the published Multi30k file; delete it or fix "
                         "QKV_DATA")
    return path


def download(name: str, folder: Path, base_url: str = BASE_URL,
             opener: Callable = urllib.request.urlopen) -> Path:
    """Download ``name`` from ``base_url`` into ``folder``, verified and moved atomically
    (see :func:`fetch_verified`).

    Args:
        name: a key of :data:`SHA256`, e.g. ``"train.de.gz"``.
        folder: destination folder (created if missing).
        base_url: URL of the folder holding the files (``file://`` URLs work too).
        opener: function that opens a URL and returns a binary stream (for tests).

    Returns:
        The path of the verified file.

    Raises:
        ConnectionError: if the file cannot be fetched (e.g. offline).
        ValueError: if the downloaded bytes do not have the published SHA-256.
    """
    _check_name(name)
    hint = (f"Without a network connection, set QKV_DATA to a folder whose multi30k/ "
            f"subfolder holds {name} (see the book's data notes)")
    return fetch_verified(base_url.rstrip("/") + "/" + name, folder / name, SHA256[name],
                          opener, hint, replace=True)


def fetch_verified(url: str, destination: Path, sha256: str,
                   opener: Callable = urllib.request.urlopen, hint: str = "",
                   replace: bool = False) -> Path:
    """Download ``url`` to ``destination``, checked against ``sha256``, moved atomically.

    The bytes go to a temporary file beside ``destination`` while their SHA-256 is computed;
    on a mismatch or any error the temporary file is deleted and nothing is left behind; on
    success it is renamed to ``destination`` (an atomic rename on one file system).

    A file already at ``destination`` is kept and returned if it has the expected SHA-256;
    if it has another, it is replaced only with ``replace=True`` (a cache the function owns),
    else a ValueError names it: a user's file is never overwritten silently.

    Raises:
        ConnectionError: the URL cannot be read (``hint`` is added to the message).
        ValueError: the bytes do not have the expected SHA-256, or ``destination`` holds
            another file and ``replace`` is False.
    """
    destination = Path(destination)
    if destination.is_file() and not replace:
        if sha256_of(destination) == sha256:
            return destination
        raise ValueError(f"{destination} exists with another SHA-256 than {sha256}; move it "
                         "away or choose another destination (it was not overwritten)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                         suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                with opener(url) as response:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as error:
                raise ConnectionError(f"could not download {url} ({error}). {hint}".rstrip()
                                      ) from error
        if digest.hexdigest() != sha256:
            raise ValueError(f"the download of {url} has SHA-256 {digest.hexdigest()}, "
                             f"expected {sha256}; nothing was saved")
        os.replace(temporary, destination)
        return destination
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def locate(name: str, base_url: str = BASE_URL, opener: Callable = urllib.request.urlopen
           ) -> Path:
    """Path of a verified copy of the Multi30k file ``name``: QKV_DATA, cache, or download.

    Raises:
        ValueError: unknown name, or a copy whose SHA-256 does not match.
        ConnectionError: the file is nowhere local and cannot be downloaded.
    """
    _check_name(name)
    shared = os.environ.get("QKV_DATA")
    if shared and (Path(shared) / "multi30k" / name).is_file():
        return _verified(Path(shared) / "multi30k" / name, name)
    cached = cache_dir() / name
    if cached.is_file():
        return _verified(cached, name)
    return download(name, cache_dir(), base_url, opener)


def load_lines(split: str, language: str, **kwargs) -> list[str]:
    """The sentences of one side of a split, one string per line (no trailing newline).

    Args:
        split: one of :data:`SPLITS`.
        language: ``"de"`` or ``"en"``.
        kwargs: passed to :func:`locate` (``base_url``, ``opener``).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}; got {language!r}")
    path = locate(f"{split}.{language}.gz", **kwargs)
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        return stream.read().splitlines()


def load_pairs(split: str, source: str = "de", target: str = "en",
               **kwargs) -> tuple[list[str], list[str]]:
    """Aligned (source sentences, target sentences) of a split; German to English by default."""
    sources, targets = load_lines(split, source, **kwargs), load_lines(split, target, **kwargs)
    if len(sources) != len(targets):
        raise ValueError(f"{split}: {len(sources)} {source} lines but {len(targets)} {target} "
                         "lines")
    return sources, targets
