"""Tests of qkv.translation: a smoke-budget train-then-translate through the command line,
exact resumption, checkpoints loaded with weights_only=True, and line-preserving translation.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from qkv.translation import (
    RECIPES,
    _length_groups,
    capped,
    load_translator,
    main,
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
