"""qkv.runtime: budgets, seeding, threads and device choice."""

import json
import random

import numpy as np
import pytest
import torch

from qkv import runtime


@pytest.mark.parametrize("name", runtime.BUDGETS)
def test_budget_reads_environment(monkeypatch, name):
    monkeypatch.setenv("QKV_BUDGET", f" {name.upper()} ")
    assert runtime.budget() == name
    assert runtime.by_budget(smoke=1, book=2, full=3) == {"smoke": 1, "book": 2, "full": 3}[name]


def test_budget_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("QKV_BUDGET", raising=False)
    assert runtime.budget() == ("full" if torch.cuda.is_available() else "book")


def test_unknown_budget_is_rejected(monkeypatch):
    monkeypatch.setenv("QKV_BUDGET", "huge")
    with pytest.raises(ValueError, match="QKV_BUDGET must be one of smoke, book, full; got 'huge'"):
        runtime.budget()


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    runtime.seed_everything(7)
    first = draw()
    runtime.seed_everything(7)
    second = draw()
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        runtime.seed_everything(seed)


def test_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("QKV_THREADS", "2")
        assert runtime.set_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("QKV_THREADS", "two")
        with pytest.raises(ValueError, match="QKV_THREADS must be a positive integer; got 'two'"):
            runtime.set_threads()
        with pytest.raises(ValueError, match="num_threads must be a positive integer"):
            runtime.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_choose_device():
    assert runtime.choose_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.choose_device().type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            runtime.choose_device("cuda")


def test_setup_reports_what_it_chose(monkeypatch, capsys):
    monkeypatch.setenv("QKV_BUDGET", "smoke")
    monkeypatch.delenv("QKV_THREADS", raising=False)
    run = runtime.setup(seed=3, device="cpu")
    assert (run.seed, run.budget, run.device) == (3, "smoke", torch.device("cpu"))
    assert "budget=smoke, device=cpu, seed=3" in capsys.readouterr().out


def test_record_prints_and_appends_to_the_results_file(monkeypatch, tmp_path, capsys):
    import json

    target = tmp_path / "results.jsonl"
    monkeypatch.setenv("QKV_RESULTS_FILE", str(target))
    runtime.record("accuracy", 0.98765, unit="")
    runtime.record("BLEU", 30, unit="BLEU")
    assert capsys.readouterr().out.splitlines() == ["result: accuracy = 0.9877",
                                                     "result: BLEU = 30 BLEU"]
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows == [{"name": "accuracy", "value": 0.98765, "unit": ""},
                    {"name": "BLEU", "value": 30, "unit": "BLEU"}]


def test_record_without_results_file_only_prints(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("QKV_RESULTS_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    runtime.record("x", "fine")
    assert capsys.readouterr().out == "result: x = fine\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, value, error", [("", 1, ValueError), ("x", None, TypeError),
                                                ("x", True, TypeError)])
def test_record_bad_input(name, value, error):
    with pytest.raises(error):
        runtime.record(name, value)


def test_seed_from_environment_overrides_setup(monkeypatch, capsys):
    monkeypatch.setenv("QKV_SEED", "2")
    run = runtime.setup(seed=0, num_threads=torch.get_num_threads())
    assert run.seed == 2 and "seed=2 (from QKV_SEED)" in capsys.readouterr().out
    monkeypatch.setenv("QKV_SEED", "-1")
    with pytest.raises(ValueError, match="QKV_SEED must be a non-negative integer; got '-1'"):
        runtime.setup()
    monkeypatch.delenv("QKV_SEED")
    assert runtime.setup(seed=5).seed == 5


def test_step_budget_is_capped_only_in_a_dry_run(monkeypatch):
    monkeypatch.setenv("QKV_BUDGET", "full")
    monkeypatch.delenv("QKV_DRY_RUN_STEPS", raising=False)
    assert runtime.step_budget(smoke=1, book=10, full=1000) == 1000
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "3")
    assert runtime.step_budget(smoke=1, book=10, full=1000) == 3
    assert runtime.by_budget(smoke=1, book=10, full=1000) == 1000  # sizes are not capped
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "0")
    with pytest.raises(ValueError, match="QKV_DRY_RUN_STEPS must be a positive integer"):
        runtime.step_budget(smoke=1, book=10, full=1000)


def test_claim_raises_records_or_prints(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("QKV_CLAIMS_FILE", raising=False)
    monkeypatch.delenv("QKV_DRY_RUN_STEPS", raising=False)
    assert runtime.claim(torch.tensor(True), "a true claim")
    with pytest.raises(AssertionError, match="claim does not hold: accuracy above 0.9"):
        runtime.claim(0.5 > 0.9, "accuracy above 0.9")
    claims = tmp_path / "claims.jsonl"
    monkeypatch.setenv("QKV_CLAIMS_FILE", str(claims))
    assert not runtime.claim(False, "collected, not raised")
    assert runtime.claim(True, "collected too")
    assert [json.loads(line) for line in claims.read_text().splitlines()] == [
        {"claim": "collected, not raised", "holds": False}, {"claim": "collected too", "holds": True}]
    monkeypatch.delenv("QKV_CLAIMS_FILE")
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "2")
    assert not runtime.claim(False, "printed in a dry run")
    assert "claim does not hold here: printed in a dry run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="statement must be a non-empty string"):
        runtime.claim(True, " ")


def test_glue_returns_the_value_and_rejects_bad_names():
    assert runtime.glue("best_h", torch.tensor(0.25)) == 0.25
    assert runtime.glue("device_name", "cpu") == "cpu"
    with pytest.raises(ValueError, match="name must be letters, digits and underscores"):
        runtime.glue("best h", 1.0)
    with pytest.raises(TypeError, match="value must be a number or a string"):
        runtime.glue("flag", True)


def test_capped_steps_tells_its_listeners(monkeypatch):
    seen = []
    monkeypatch.setattr(runtime, "STEP_LISTENERS", [lambda steps, capped: seen.append((steps, capped))])
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "4")
    assert runtime.capped_steps(100) == 4 and runtime.capped_steps(2) == 2
    monkeypatch.delenv("QKV_DRY_RUN_STEPS")
    assert runtime.capped_steps(100) == 100
    assert seen == [(100, 4), (2, 2), (100, 100)]
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        runtime.capped_steps(2.5)


def test_progress_bars_only_when_a_person_runs_the_notebook(monkeypatch):
    import sys

    from qkv.runtime import live_progress

    for name in ("QKV_PROGRESS", "QKV_BUDGET", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # as in a Jupyter kernel
    assert live_progress()
    monkeypatch.setenv("QKV_BUDGET", "book")  # the book build, the tests, the scripts
    assert not live_progress()
    monkeypatch.delenv("QKV_BUDGET")
    monkeypatch.setenv("CI", "true")
    assert not live_progress()
    monkeypatch.setenv("QKV_PROGRESS", "1")
    assert live_progress()
    monkeypatch.setenv("QKV_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not live_progress()
    monkeypatch.delenv("QKV_PROGRESS")
    monkeypatch.delitem(sys.modules, "ipykernel")  # a plain Python script
    assert not live_progress()
