"""Tests of qkv.translation: a smoke-budget train-then-translate through the command line,
exact resumption, checkpoints loaded with weights_only=True, line-preserving translation, bad
input named by line, evaluation of any parallel files, and checkpoints written as sets.
"""

import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qkv.translation import (
    RECIPES,
    _length_groups,
    capped,
    load_translator,
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

def test_an_interrupted_save_leaves_a_complete_set_that_resume_continues(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    train(TINY, folder, progress=False, until=3)
    (folder / "notes.txt").write_text("mine")
    real_rename = Path.rename

    def interrupted(self, target):  # the new set never reaches its place
        if Path(target) == folder:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, folder, resume=True, progress=False)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not folder.exists()
    _, _, config, state = load_translator(folder)  # the last complete set: step 3
    assert state["step"] == config["step"] == 3
    resumed = train(TINY, folder, resume=True, progress=False)
    straight = train(TINY, tmp_path / "straight", progress=False)
    for p, q in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert (folder / "notes.txt").read_text() == "mine"   # a file of the user's is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "straight"]  # nothing left over


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
