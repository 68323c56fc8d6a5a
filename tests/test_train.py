"""Tests of qkv.train: the schedule's values, that fit learns, is deterministic, resumes exactly,
clips, evaluates when asked, moves batches, checkpoints, averages checkpoints, and rejects bad
arguments."""

import math
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from qkv.train import (History, average_states, fit, load_checkpoint, save_checkpoint,
                       to_device, warmup_lr)


# --------------------------------------------------------------------------------- schedule

def test_warmup_is_linear_and_reaches_one():
    assert [warmup_lr(s, 4, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_inverse_sqrt_matches_vaswani_normalised_by_its_peak():
    warmup, d_model = 10, 64
    for step in range(40):
        s = step + 1
        vaswani = d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)
        peak = d_model ** -0.5 * warmup ** -0.5
        assert warmup_lr(step, warmup, "inverse_sqrt") == pytest.approx(vaswani / peak)
    assert warmup_lr(3, 0, "inverse_sqrt") == pytest.approx(0.5)  # no warm-up: 1 / sqrt(s)


def test_cosine_goes_from_one_to_zero_after_warmup():
    values = [warmup_lr(s, 2, "cosine", total_steps=12) for s in range(14)]
    assert values[:3] == [0.5, 1.0, 1.0]
    assert values[7] == pytest.approx(0.5)  # half-way through the decay
    assert values[12] == pytest.approx(0.0) and values[13] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(values[1:], values[2:]))


def test_warmup_lr_errors():
    with pytest.raises(ValueError, match="schedule must be one of"):
        warmup_lr(0, 0, "linear")
    with pytest.raises(ValueError, match="schedule='cosine' needs total_steps"):
        warmup_lr(0, 0, "cosine")
    with pytest.raises(ValueError, match="total_steps must be an int >= 6"):
        warmup_lr(0, 5, "cosine", total_steps=5)
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        warmup_lr(-1, 0)


# --------------------------------------------------------------------------- fitting

def regression_task(seed=0, n=64):
    """y = x @ w + 0.5 with a fixed w; batches of 16 as a function of the step."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.5

    def batch(step):
        rows = torch.arange(16 * step, 16 * step + 16) % n
        return x[rows], y[rows]

    return batch


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_reduces_the_loss_on_a_tiny_regression():
    model = fresh_model()
    history = fit(model, regression_task(), mse, 300, lr=0.05, schedule="constant",
                  progress=False)
    assert isinstance(history, History) and history.steps == list(range(1, 301))
    assert history.loss[-1] < 1e-3 < history.loss[0]
    assert isinstance(history.optimizer, torch.optim.AdamW)
    assert history.optimizer.defaults["betas"] == (0.9, 0.98)


def test_fit_is_deterministic_with_a_seed():
    def run():
        torch.manual_seed(0)  # the same initial weights; fit's seed then fixes the dropout
        model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 1))
        history = fit(model, regression_task(), mse, 20, lr=0.01, seed=3, progress=False)
        return params(model), history.loss

    (first, loss1), (second, loss2) = run(), run()
    assert torch.equal(first, second) and loss1 == loss2


@pytest.mark.parametrize("batches_kind", ["function", "iterator"])
@pytest.mark.parametrize("schedule", ["inverse_sqrt", "cosine"])
def test_resume_equals_one_long_run(batches_kind, schedule):
    def source():
        batch = regression_task()
        return batch if batches_kind == "function" else (batch(s) for s in range(10**6))

    common = dict(lr=0.03, warmup_steps=5, schedule=schedule, total_steps=30, progress=False)
    whole = fresh_model()
    fit(whole, source(), mse, 30, **common)
    split, batches = fresh_model(), source()
    first = fit(split, batches, mse, 12, **common)
    second = fit(split, batches, mse, 18, optimizer=first.optimizer, start_step=12, **common)
    torch.testing.assert_close(params(split), params(whole), atol=1e-7, rtol=1e-6)
    assert second.steps[0] == 13 and second.steps[-1] == 30
    assert second.lr[0] == pytest.approx(0.03 * warmup_lr(12, 5, schedule, 30))


def test_clip_norm_is_honoured():
    """With SGD at lr = 1, a step moves the parameters by exactly the clipped gradient."""
    def huge_loss(model, batch):
        return 1000.0 * mse(model, batch)

    for clip in (0.1, 2.0):
        model = fresh_model()
        before = params(model)
        sgd = torch.optim.SGD(model.parameters(), lr=1.0)
        history = fit(model, regression_task(), huge_loss, 1, lr=1.0, schedule="constant",
                      clip_norm=clip, optimizer=sgd, progress=False)
        assert history.grad_norm[0] > clip  # the raw gradient was larger ...
        assert (params(model) - before).norm().item() == pytest.approx(clip, rel=1e-4)  # cut
    model = fresh_model()
    before = params(model)
    history = fit(model, regression_task(), huge_loss, 1, lr=1.0, schedule="constant",
                  clip_norm=None, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                  progress=False)
    assert (params(model) - before).norm().item() == pytest.approx(history.grad_norm[0], rel=1e-4)


def test_evaluate_runs_every_n_steps_and_at_the_end_in_eval_mode_without_grad():
    seen = []

    def evaluate(model):
        seen.append((model.training, torch.is_grad_enabled()))
        return {"loss": mse(model, regression_task()(0)).item()}

    model = fresh_model()
    history = fit(model, regression_task(), mse, 10, lr=0.01, eval_every=4, evaluate=evaluate,
                  progress=False)
    assert [record["step"] for record in history.evals] == [4, 8, 10]
    assert seen == [(False, False)] * 3 and model.training
    assert history.last_eval()["loss"] == pytest.approx(mse(model, regression_task()(0)).item())
    resumed = fit(model, regression_task(), mse, 4, lr=0.01, eval_every=4, evaluate=evaluate,
                  start_step=10, optimizer=history.optimizer, progress=False)
    assert [record["step"] for record in resumed.evals] == [12, 14]  # counted over the run


def test_a_list_of_batches_is_iterated_again():
    batch = regression_task()(0)
    history = fit(fresh_model(), [batch, batch], mse, 5, lr=0.01, progress=False)
    assert len(history.loss) == 5


def test_dtype_moves_model_and_floating_batch_tensors():
    model = fresh_model()
    seen = []

    def loss(model, batch):
        seen.append(batch[0].dtype)
        return mse(model, batch)

    fit(model, regression_task(), loss, 2, lr=0.01, dtype=torch.float64, progress=False)
    assert seen == [torch.float64] * 2 and model.weight.dtype == torch.float64


Pair = namedtuple("Pair", "source target")


@dataclass(frozen=True)
class Batch:
    tokens: torch.Tensor
    lengths: list


def test_to_device_handles_nested_structures():
    tokens = torch.arange(3)
    batch = {"pair": Pair(torch.ones(2), [tokens, "text"]), "data": Batch(torch.zeros(1), [1])}
    moved = to_device(batch, "cpu", torch.float64)
    assert isinstance(moved["pair"], Pair) and isinstance(moved["data"], Batch)
    assert moved["pair"].source.dtype == torch.float64
    assert moved["pair"].target[0].dtype == torch.int64 and moved["pair"].target[1] == "text"
    assert moved["data"].tokens.dtype == torch.float64 and moved["data"].lengths == [1]


def test_checkpoint_round_trip_resumes_exactly(tmp_path):
    common = dict(lr=0.03, warmup_steps=3, progress=False)
    whole = fresh_model()
    fit(whole, regression_task(), mse, 20, **common)
    model = fresh_model()
    first = fit(model, regression_task(), mse, 8, **common)
    save_checkpoint(tmp_path / "ckpt.pt", model, first.optimizer, step=8)
    restored = fresh_model(seed=5)
    optimizer = torch.optim.AdamW(restored.parameters(), lr=0.03, betas=(0.9, 0.98))
    step = load_checkpoint(tmp_path / "ckpt.pt", restored, optimizer)
    fit(restored, regression_task(), mse, 12, optimizer=optimizer, start_step=step, **common)
    assert step == 8
    torch.testing.assert_close(params(restored), params(whole), atol=1e-7, rtol=1e-6)
    save_checkpoint(tmp_path / "model.pt", model)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "model.pt", fresh_model(), optimizer)


def test_fit_errors():
    task, model = regression_task(), fresh_model()
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fit(model, task, mse, 0, lr=0.1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        fit(model, task, mse, 1, lr=0.0)
    with pytest.raises(ValueError, match="clip_norm must be positive or None"):
        fit(model, task, mse, 1, lr=0.1, clip_norm=0.0)
    with pytest.raises(ValueError, match="eval_every is set but evaluate is None"):
        fit(model, task, mse, 1, lr=0.1, eval_every=2)
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit(model, task, mse, 1, lr=0.1, schedule="step")
    with pytest.raises(TypeError, match="batches must be an iterable"):
        fit(model, 3, mse, 1, lr=0.1)
    with pytest.raises(ValueError, match="batches ran out at step 2"):
        fit(model, iter([task(0), task(1)]), mse, 3, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="batches ran out at step 0"):
        fit(model, [], mse, 3, lr=0.1, progress=False)
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor"):
        fit(model, task, lambda m, b: m(b[0]), 1, lr=0.1, progress=False)
    with pytest.raises(FloatingPointError, match="the loss is nan at step 0"):
        fit(model, task, lambda m, b: mse(m, b) * math.nan, 1, lr=0.1, progress=False)
    with pytest.raises(TypeError, match="evaluate must return a dict"):
        fit(model, task, mse, 1, lr=0.1, evaluate=lambda m: 1.0, progress=False)


def test_progress_bar_shows_loss_and_evaluations(capsys):
    history = fit(fresh_model(), regression_task(), mse, 4, lr=0.01, eval_every=2,
                  evaluate=lambda model: {"loss": 1.0}, progress=True)
    assert len(history.evals) == 2
    assert "eval loss=1" in capsys.readouterr().err


def test_average_states_is_the_mean_of_known_states():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "count": torch.tensor(3),
         "h": torch.tensor([1.0], dtype=torch.float16)}
    b = {"w": torch.tensor([[3.0, 0.0], [5.0, -4.0]]), "count": torch.tensor(7),
         "h": torch.tensor([2.0], dtype=torch.float16)}
    mean = average_states([a, b])
    torch.testing.assert_close(mean["w"], torch.tensor([[2.0, 1.0], [4.0, 0.0]]))
    assert mean["count"].item() == 7  # not a weight: taken from the last state
    assert mean["h"].dtype == torch.float16 and mean["h"].item() == 1.5
    torch.testing.assert_close(average_states([a])["w"], a["w"])
    assert mean["w"] is not a["w"] and a["w"][0, 0] == 1.0  # the inputs are left alone
    model = fresh_model()
    copies = [model.state_dict(), {k: v * 3 for k, v in model.state_dict().items()}]
    for key, value in average_states(copies).items():
        torch.testing.assert_close(value, 2 * model.state_dict()[key])
    with pytest.raises(ValueError, match="at least one"):
        average_states([])
    with pytest.raises(ValueError, match=r"states\[1\] has other keys"):
        average_states([a, {"w": b["w"]}])
    with pytest.raises(ValueError, match=r"states\[1\]\['w'\] is \(4,\)"):
        average_states([a, {**b, "w": torch.zeros(4)}])
