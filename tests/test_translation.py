"""Tests of qkv.translation: a smoke-budget train-then-translate through the command line,
exact resumption, checkpoints loaded with weights_only=True, line-preserving translation, bad
input named by line, evaluation of any parallel files (with confidence intervals), checkpoints
written as sets, the attention analysis, and checkpoints shared as checksummed archives.
"""

import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from qkv.checkpoints import fetch_translator, load_snapshots, load_translator, pack_translator
from qkv.data.multi30k import sha256_of
from qkv.translation import (
    RECIPES,
    _length_groups,
    alignment_by_head,
    anchors,
    capped,
    cross_attention,
    head_alignment,
    main,
    read_lines,
    train,
    translate,
)

pytestmark = pytest.mark.skipif(
    not os.environ.get("QKV_DATA") and not os.path.isdir(
        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "multi30k")),
    reason="no offline copy of Multi30k (set QKV_DATA)")

TINY = dataclasses.replace(RECIPES["smoke"], vocab_size=300, d_model=16, d_ff=32, steps=6,
                           checkpoint_every=3, train_sentences=400, test_sentences=5,
                           warmup_steps=2)


@pytest.fixture(autouse=True)
def offline_data(monkeypatch):
    if not os.environ.get("QKV_DATA"):
        shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
        monkeypatch.setenv("QKV_DATA", os.path.abspath(shared))


def test_smoke_budget_train_then_translate_from_the_command_line(tmp_path):
    out = tmp_path / "model"
    assert main(["train", "--budget", "smoke", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} >= {"model.pt", "tokenizer.json", "config.json",
                                               "scores.json"}
    scores = json.loads((out / "scores.json").read_text())
    assert "BLEU" not in scores["beam1"]["bleu_signature"] and "tok:13a" in \
        scores["beam1"]["bleu_signature"]
    lines = "Ein Hund rennt.\n\nZwei Männer spielen Fußball.\n   \nEine Frau."
    result = subprocess.run([sys.executable, "-m", "qkv.translation", "translate", "--model",
                             str(out), "--beam", "2", "--threads", "1"], input=lines,
                            capture_output=True, text=True, check=True, env=os.environ.copy())
    outputs = result.stdout.split("\n")
    assert outputs[-1] == "" and len(outputs) - 1 == 5  # five lines, each ended by "\n"
    assert outputs[1] == "" and outputs[3] == ""
    assert all(outputs[i] for i in (0, 2, 4))


def test_resumed_training_ends_with_the_same_weights(tmp_path):
    straight = train(TINY, tmp_path / "a", progress=False)
    train(TINY, tmp_path / "b", progress=False, until=3)
    resumed = train(TINY, tmp_path / "b", resume=True, progress=False)
    for (name, p), q in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert resumed.history["step"] == list(range(1, 7))
    assert len(resumed.history["evals"]) == 2
    with pytest.raises(ValueError, match="another recipe"):
        train(dataclasses.replace(TINY, lr=1.0), tmp_path / "b", resume=True, progress=False)


def test_checkpoint_averaging_is_the_mean_of_the_last_checkpoints_and_survives_resume(tmp_path):
    averaging = dataclasses.replace(TINY, checkpoint_every=2, average_last=2)
    straight = train(averaging, tmp_path / "a", progress=False)
    assert straight.history["average"]["steps"] == [4, 6]
    assert straight.history["average"]["val_loss"] > 0
    # the same training without averaging, stopped at step 4 and at step 6
    at4 = train(dataclasses.replace(averaging, average_last=1), tmp_path / "c", progress=False,
                until=4).model.state_dict()
    at6 = train(dataclasses.replace(averaging, average_last=1), tmp_path / "c", resume=True,
                progress=False).model.state_dict()
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(value, (at4[name] + at6[name]) / 2, msg=name)
    model, _, _, _ = load_translator(tmp_path / "a")  # the saved model is the average too
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, straight.model.state_dict()[name], rtol=0, atol=0)
    assert [step for step, _ in load_snapshots(tmp_path / "a")] == [4, 6]
    # in parts (stopping between checkpoints too) the snapshots come back from disk
    train(averaging, tmp_path / "b", progress=False, until=2)
    train(averaging, tmp_path / "b", resume=True, progress=False, until=4)
    assert [step for step, _ in load_snapshots(tmp_path / "b")] == [2, 4]
    resumed = train(averaging, tmp_path / "b", resume=True, progress=False)
    for (name, p), q in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert resumed.history["average"] == straight.history["average"]
    with pytest.raises(ValueError, match="average_last must be a positive integer"):
        train(dataclasses.replace(TINY, average_last=0), tmp_path / "d", progress=False)


def test_a_dry_run_caps_the_recipe_steps(tmp_path, monkeypatch):
    assert capped(RECIPES["full"]) is RECIPES["full"]  # no dry run: the recipe itself
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "2")
    short = capped(RECIPES["full"])
    assert (short.steps, short.warmup_steps, short.checkpoint_every) == (2, 1, 2)
    assert dataclasses.replace(short, steps=4000, warmup_steps=800,
                               checkpoint_every=1000) == RECIPES["full"]  # nothing else changes
    run = train(TINY, tmp_path / "a", progress=False)
    assert run.history["step"] == [1, 2] and run.recipe.steps == 2
    resumed = train(TINY, tmp_path / "a", resume=True, progress=False)  # same capped recipe
    assert resumed.history["step"] == [1, 2]


def test_checkpoint_round_trip_and_translate_keeps_lines(tmp_path):
    run = train(TINY, tmp_path, progress=False)
    model, tokenizer, config, state = load_translator(tmp_path)
    assert state["step"] == 6 and config["recipe"]["d_model"] == 16
    src = torch.tensor([tokenizer.encode("Ein Mann schläft.")])
    tgt = torch.tensor([[1, 5, 6]])
    torch.testing.assert_close(model(src, tgt), run.model(src, tgt))
    sentences = ["Ein Hund.", "", "Zwei Kinder spielen im Park am Fluss.", " "]
    out = translate(model, tokenizer, sentences, beam_size=1)
    assert len(out) == 4 and out[1] == "" and out[3] == ""
    assert out == translate(model, tokenizer, sentences, beam_size=1, max_tokens=1)
    with pytest.raises(FileNotFoundError, match="not a translation checkpoint"):
        load_translator(tmp_path / "nothing")


def test_command_line_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["translate", "--model", str(tmp_path / "nothing")]) == 1
    message = capsys.readouterr().err
    assert message.startswith("error: ") and "model.pt is missing" in message
    assert message.count("\n") == 1  # no traceback


def test_length_groups_cover_every_nonempty_item_within_budget():
    lengths = [3, 0, 7, 1, 7, 2, 12, 5]
    groups = _length_groups(lengths, max_tokens=14)
    assert sorted(i for g in groups for i in g) == [0, 2, 3, 4, 5, 6, 7]
    for group in groups:
        assert len(group) == 1 or len(group) * max(lengths[i] for i in group) <= 14


# ----------------------------------------------------------------------------- bad input

def _translate_cli(model_folder, data: bytes, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    status = main(["translate", "--model", str(model_folder), "--threads", "1"])
    return status, capsys.readouterr()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    train(TINY, folder, progress=False)
    return folder


def test_read_lines_keeps_lines_and_names_the_line_that_is_not_utf8():
    assert read_lines(b"", "x") == []
    assert read_lines(b"Ein Hund.\r\n\nZwei.\n", "x") == ["Ein Hund.", "", "Zwei."]
    with pytest.raises(ValueError, match=r"line 2 of the input is not valid UTF-8 \(byte 4"):
        read_lines("Gut.\nNic\xe9ht.\n".encode("latin-1"), "the input")


def test_translate_names_a_line_that_is_not_utf8(tiny_model, monkeypatch, capsys):
    status, output = _translate_cli(tiny_model, "Ein Hund.\nSchön.\n".encode("latin-1"),
                                    monkeypatch, capsys)
    assert status == 1 and output.out == ""
    assert output.err.startswith("error: line 2 of the input is not valid UTF-8")
    assert output.err.count("\n") == 1  # one line, no traceback


def test_translate_refuses_a_line_longer_than_the_model_reads(tiny_model, monkeypatch, capsys):
    status, output = _translate_cli(tiny_model, ("Ein Hund. " + "Hund " * 400 + "\n").encode(),
                                    monkeypatch, capsys)
    assert status == 1
    assert "sentence 1 is" in output.err and "at most 128" in output.err


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_scores_validation_by_default_and_any_parallel_files(tiny_model, tmp_path,
                                                                      capsys):
    assert main(["evaluate", "--model", str(tiny_model), "--threads", "1"]) == 0
    assert capsys.readouterr().out.startswith("val (1014 sentences)")
    src, ref = tmp_path / "de.txt.gz", tmp_path / "en.txt"
    src.write_bytes(gzip.compress("Ein Hund rennt.\nEine Frau.\n".encode()))
    ref.write_text("A dog runs.\nA woman.\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model), "--src", str(src), "--ref",
                 str(ref)]) == 0
    assert capsys.readouterr().out.startswith(f"{src} (2 sentences)")
    ref.write_text("A dog runs.\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model), "--src", str(src), "--ref",
                 str(ref)]) == 1
    assert "--src has 2 lines but --ref has 1" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tiny_model), "--src", str(src)]) == 1
    assert "--src and --ref go together" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoint sets

def _resume_interrupted_before_the_rename(recipe, folder, monkeypatch):
    """Resume training in ``folder`` and interrupt the save just before the new set is
    renamed into place (as a Ctrl-C there would)."""
    real_rename = Path.rename

    def interrupted(self, target):  # the new set never reaches its place
        if Path(target) == folder:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, folder, resume=True, progress=False)
    monkeypatch.setattr(Path, "rename", real_rename)


def test_an_interrupted_save_leaves_a_complete_set_that_resume_continues(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    train(TINY, folder, progress=False, until=3)
    (folder / "notes.txt").write_text("mine")
    _resume_interrupted_before_the_rename(TINY, folder, monkeypatch)
    assert not folder.exists()
    _, _, config, state = load_translator(folder)  # the last complete set: step 3
    assert state["step"] == config["step"] == 3
    resumed = train(TINY, folder, resume=True, progress=False)
    straight = train(TINY, tmp_path / "straight", progress=False)
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert (folder / "notes.txt").read_text() == "mine"   # a file of the user's is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "straight"]  # nothing left over


def test_an_interrupted_save_keeps_the_snapshots_of_its_set(tmp_path, monkeypatch):
    averaging = dataclasses.replace(TINY, checkpoint_every=2, average_last=2)
    folder = tmp_path / "run"
    train(averaging, folder, progress=False, until=4)
    _resume_interrupted_before_the_rename(averaging, folder, monkeypatch)
    _, _, config, state = load_translator(folder)  # the set of step 4, with its snapshots
    assert state["step"] == 4 and [s for s, _ in load_snapshots(folder)] == [2, 4]
    torch.testing.assert_close(load_snapshots(folder)[-1][1], state["model"], rtol=0, atol=0)
    resumed = train(averaging, folder, resume=True, progress=False)
    straight = train(averaging, tmp_path / "straight", progress=False)
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_save_that_fails_while_writing_leaves_the_old_set_alone(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    train(TINY, folder, progress=False, until=3)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train(TINY, folder, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_evaluate_prints_intervals_and_lower_cased_bleu(tiny_model, tmp_path, capsys):
    src, ref = tmp_path / "de.txt", tmp_path / "en.txt"
    src.write_text("Ein Hund rennt.\nEine Frau.\nZwei Männer.\n", encoding="utf-8")
    ref.write_text("A dog runs.\nA woman.\nTwo men.\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model), "--src", str(src), "--ref", str(ref),
                 "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "95 % CI" in out and "bs:50" in out and "BLEU, lower-cased" in out
    assert "case:lc" in out


# ----------------------------------------------------------------------------- looking inside

def test_head_alignment_of_known_patterns():
    eye, flipped = torch.eye(4), torch.eye(4).flip(1)
    uniform = torch.full((4, 4), 0.25)
    stuck = torch.zeros(4, 4)
    stuck[:, 2] = 1.0  # every step looks at source token 2
    result = head_alignment(torch.stack([eye, flipped, uniform, stuck]))
    torch.testing.assert_close(result["concentration"], torch.tensor([1.0, 1.0, 0.25, 1.0]))
    torch.testing.assert_close(result["monotonicity"], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    skipping = torch.tensor([[0.7, 0.3, 0.0], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]])
    one = head_alignment(skipping)  # peaks 0, 2, 1: one forward move of two
    assert one["concentration"].item() == pytest.approx((0.7 + 0.8 + 0.6) / 3)
    assert one["monotonicity"].item() == pytest.approx(0.5)
    assert head_alignment(torch.ones(1, 1, 3) / 3)["monotonicity"].item() == 0.0
    with pytest.raises(ValueError, match="weights"):
        head_alignment(torch.ones(3))


def test_anchors_are_tokens_spelled_alike_once_on_each_side():
    source = ["▁Peter", "▁spielt", "▁in", "▁einem", "▁Park", "▁in", "."]
    output = ["▁Peter", "▁plays", "▁in", "▁a", "▁Park", "."]
    assert anchors(source, output) == [(0, 0), (4, 4)]  # "in" twice in the source, "." no letter


def test_cross_attention_and_alignment_by_head_shapes(tiny_model):
    model, tokenizer, config, _ = load_translator(tiny_model)
    seen = cross_attention(model, tokenizer, "Ein Hund rennt im Park.", max_new_tokens=8)
    layers, heads = config["model"]["num_decoder_layers"], config["model"]["num_heads"]
    assert seen.weights.shape == (layers, heads, len(seen.output_tokens),
                                  len(seen.source_tokens))
    torch.testing.assert_close(seen.weights.sum(-1), torch.ones(seen.weights.shape[:-1]))
    assert seen.translation == translate(model, tokenizer, ["Ein Hund rennt im Park."])[0] or \
        len(seen.output_tokens) == 8
    given = cross_attention(model, tokenizer, "Ein Hund rennt im Park.", "A dog runs.")
    assert given.output_tokens == tokenizer.tokens("A dog runs.")
    sources = ["Ein Hund.", "Peter spielt in Berlin.", ""]
    summary = alignment_by_head(model, tokenizer, sources, ["A dog.", "Peter plays in Berlin.",
                                                            "Nothing."])
    expected_hits, expected_count = 0.0, 0
    for source, output in zip(sources[:2], ["A dog.", "Peter plays in Berlin."]):
        alone = cross_attention(model, tokenizer, source, output)
        for row, column in anchors(alone.source_tokens, alone.output_tokens):
            expected_hits = expected_hits + (alone.weights[:, :, row].argmax(-1) == column).float()
            expected_count += 1
    assert summary["sentences"] == 2 and summary["anchors"] == expected_count > 0
    torch.testing.assert_close(summary["anchor_hits"], expected_hits / expected_count)
    assert summary["concentration"].shape == (layers, heads)
    assert summary["monotonicity"].shape == (layers, heads)
    assert summary["anchor_hits"].shape == (layers, heads)


# ----------------------------------------------------------------------------- sharing

def test_fetch_translator_from_a_file_url_with_its_checksum(tiny_model, tmp_path):
    archive = tmp_path / "share" / "model.tar.gz"
    digest = pack_translator(tiny_model, archive)
    assert digest == sha256_of(archive)
    assert pack_translator(tiny_model, tmp_path / "again.tar.gz") == digest  # reproducible
    with pytest.raises(FileExistsError):
        pack_translator(tiny_model, archive)
    cache = tmp_path / "cache"
    model, tokenizer, _, state = fetch_translator(archive.as_uri(), digest, cache=cache)
    original, _, _, _ = load_translator(tiny_model)
    for p, q in zip(original.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert state["step"] == 6
    kept = sorted(p.name for p in cache.iterdir())
    assert kept == [digest[:16], f"{digest[:16]}.tar.gz"]  # no temporary files left
    archive.unlink()  # a second call uses the cached copy, without the URL
    fetch_translator(archive.as_uri(), digest.upper(), cache=cache)
    folder_model, _, _, _ = fetch_translator(tiny_model)  # a folder works too
    assert folder_model.config == model.config


def test_fetch_translator_refuses_a_bad_checksum_and_keeps_the_users_files(tiny_model, tmp_path,
                                                                          capsys):
    archive = tmp_path / "model.tar.gz"
    digest = pack_translator(tiny_model, archive)
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="SHA-256"):
        fetch_translator(archive.as_uri(), wrong, cache=cache)
    assert list(cache.iterdir()) == []  # nothing saved, no temporary file left
    with pytest.raises(ValueError, match="sha256"):
        fetch_translator(archive.as_uri(), None, cache=cache)
    with pytest.raises(ConnectionError, match="could not download"):
        fetch_translator((tmp_path / "missing.tar.gz").as_uri(), digest, cache=cache)
    users = cache / f"{digest[:16]}.tar.gz"
    users.write_bytes(b"the user's own file")
    with pytest.raises(ValueError, match="not overwritten"):
        fetch_translator(archive.as_uri(), digest, cache=cache)
    assert users.read_bytes() == b"the user's own file"
    assert main(["translate", "--model", archive.as_uri(), "--sha256", wrong]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["pack", "--model", str(tiny_model), "--out", str(tmp_path / "cli.tar.gz")]) == 0
    assert capsys.readouterr().out == f"{digest}  {tmp_path / 'cli.tar.gz'}\n"
    assert main(["pack", "--model", str(tiny_model), "--out", str(archive)]) == 1  # exists
    assert "not overwritten" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "other.tar.gz"
    with tarfile.open(not_a_checkpoint, "w:gz") as tar:
        tar.add(archive, arcname="../evil")
    with pytest.raises(ValueError, match="not a checkpoint archive"):
        fetch_translator(not_a_checkpoint.as_uri(), sha256_of(not_a_checkpoint),
                         cache=tmp_path / "cache2")
    assert not (tmp_path / "evil").exists()
    assert [p.name for p in (tmp_path / "cache2").iterdir()] == \
        [f"{sha256_of(not_a_checkpoint)[:16]}.tar.gz"]
