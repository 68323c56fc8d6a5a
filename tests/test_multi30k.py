"""Tests of qkv.data.multi30k: offline copies, checksums, atomic downloads, clear errors.
No test touches the network: downloads come from file:// URLs or a stand-in opener.
"""

import gzip
import io
import shutil
import urllib.error
from pathlib import Path

import pytest

from qkv.data import multi30k

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data(monkeypatch):
    """The offline copy: $QKV_DATA if set, else ../shared/data (as CI sets it)."""
    import os
    root = Path(os.environ.get("QKV_DATA", SHARED))
    if not (root / "multi30k" / "val.de.gz").is_file():
        pytest.skip("no offline copy of Multi30k (set QKV_DATA)")
    return root


@pytest.fixture
def no_local_copy(monkeypatch, tmp_path):
    """No QKV_DATA and an empty cache folder under tmp_path."""
    monkeypatch.delenv("QKV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "qkv" / "multi30k"


def test_reads_the_offline_copy_and_knows_the_split_sizes(shared_data, monkeypatch):
    monkeypatch.setenv("QKV_DATA", str(shared_data))
    for split, count in multi30k.LINES.items():
        if split == "train":
            continue  # the biggest file; its size is checked by test_translation's smoke run
        sources, targets = multi30k.load_pairs(split)
        assert len(sources) == len(targets) == count
        assert all(sources) and all(targets)
    assert multi30k.locate("val.en.gz") == shared_data / "multi30k" / "val.en.gz"


def test_published_checksums_match_the_offline_copy(shared_data):
    for line in (shared_data / "multi30k" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert multi30k.SHA256[name] == digest


def test_download_from_a_file_url_is_verified_and_cached(shared_data, no_local_copy):
    url = (shared_data / "multi30k").as_uri() + "/"
    path = multi30k.locate("val.de.gz", base_url=url)
    assert path == no_local_copy / "val.de.gz"
    assert sorted(p.name for p in no_local_copy.iterdir()) == ["val.de.gz"]
    assert len(multi30k.load_lines("val", "de")) == 1014  # now from the cache, no URL needed


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, no_local_copy):
    fake = tmp_path / "mirror"
    fake.mkdir()
    with gzip.open(fake / "val.de.gz", "wt") as stream:
        stream.write("Ein falscher Satz.\n")
    with pytest.raises(ValueError, match="SHA-256 .* expected .*nothing was saved"):
        multi30k.locate("val.de.gz", base_url=fake.as_uri())
    assert list(no_local_copy.iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(no_local_copy):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 10:
                raise urllib.error.URLError("connection reset")
            return super().read(5)

    with pytest.raises(ConnectionError, match="could not download .*QKV_DATA"):
        multi30k.locate("val.en.gz", opener=lambda url: Broken(b"x" * 100))
    assert list(no_local_copy.iterdir()) == []


def test_offline_gives_a_clear_error(no_local_copy):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(ConnectionError, match="Without a network connection, set QKV_DATA"):
        multi30k.load_pairs("test_2016_flickr", opener=offline)


def test_corrupted_local_copy_is_reported(shared_data, tmp_path, monkeypatch):
    (tmp_path / "multi30k").mkdir()
    shutil.copy(shared_data / "multi30k" / "val.en.gz", tmp_path / "multi30k" / "val.de.gz")
    monkeypatch.setenv("QKV_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="corrupted"):
        multi30k.locate("val.de.gz")


def test_bad_names_are_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        multi30k.load_lines("test2017", "de")
    with pytest.raises(ValueError, match="language must be one of"):
        multi30k.load_lines("val", "fr")
    with pytest.raises(ValueError, match="unknown Multi30k file"):
        multi30k.locate("train.fr.gz")
