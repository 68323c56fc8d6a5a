"""The training loop chapters 5 and 6 share: schedule, clipping, evaluation, checkpoints.

:func:`fit` runs a fixed number of optimisation steps (budgets are step counts, never wall
clock). Each step takes a batch, computes ``loss_fn(model, batch)``, back-propagates, clips
the gradient norm, sets the learning rate from the schedule and updates the parameters with
AdamW (betas 0.9, 0.98 as in Vaswani et al., 2017). A run can be resumed exactly: pass the
returned optimizer back with ``start_step``, and the schedule continues where it stopped.

:func:`warmup_lr` is the schedule as a pure function: a linear warm-up, then constant,
inverse square root (Vaswani et al., 2017) or cosine decay. :func:`save_checkpoint` and
:func:`load_checkpoint` store state dicts only, loaded with ``weights_only=True``;
:func:`average_states` averages the weights of several checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from qkv.attention import _require_count
from qkv.runtime import live_progress

SCHEDULES = ("inverse_sqrt", "cosine", "constant")
"""The learning-rate schedules :func:`warmup_lr` knows."""


def warmup_lr(step: int, warmup_steps: int, schedule: str = "inverse_sqrt",
              total_steps: int | None = None) -> float:
    """The factor that multiplies the peak learning rate at update number ``step`` (0-based).

    During warm-up (``step < warmup_steps``) the factor grows linearly, ``(step + 1) /
    warmup_steps``, reaching 1 at the last warm-up step. Afterwards, with ``s = step + 1``
    and ``w = max(warmup_steps, 1)``:

    * ``"constant"``: 1;
    * ``"inverse_sqrt"``: ``sqrt(w / s)``, the decay of Vaswani et al. (2017), continuous at
      the end of the warm-up;
    * ``"cosine"``: ``(1 + cos(pi * p)) / 2`` with ``p = (step - warmup_steps) / (total_steps
      - warmup_steps)`` capped at 1: from 1 down to 0 at ``step = total_steps``.

    Args:
        step: index of the update, >= 0.
        warmup_steps: length of the linear warm-up, >= 0 (0: no warm-up).
        schedule: one of :data:`SCHEDULES`.
        total_steps: number of updates of the whole run; required by ``"cosine"`` and then
            larger than ``warmup_steps``.

    Returns:
        A float in (0, 1] (``"cosine"`` reaches 0 at its end).
    """
    _require_count("step", step, minimum=0)
    _require_count("warmup_steps", warmup_steps, minimum=0)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if schedule == "cosine":
        if total_steps is None:
            raise ValueError("schedule='cosine' needs total_steps")
        _require_count("total_steps", total_steps, minimum=warmup_steps + 1)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup_steps, 1) / (step + 1))
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def to_device(batch: Any, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> Any:
    """Move every tensor inside ``batch`` to ``device`` (floating ones also to ``dtype``).

    Handles tensors, tuples (named tuples too), lists, dicts and dataclass instances, nested in
    any way; anything else is returned unchanged. Integer tensors (token ids) keep their dtype.
    """
    if isinstance(batch, torch.Tensor):
        cast = dtype if dtype is not None and batch.is_floating_point() else None
        return batch.to(device=device, dtype=cast)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: to_device(getattr(batch, f.name), device, dtype)
                   for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **changes)
    if isinstance(batch, dict):
        return type(batch)((k, to_device(v, device, dtype)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, device, dtype) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, dtype) for v in batch)
    return batch


@dataclasses.dataclass
class History:
    """What :func:`fit` did.

    Attributes:
        steps: for every update, the number of updates done once it was applied (``start_step
            + 1``, ``start_step + 2``, ...).
        loss: the training loss of each update (before it was applied).
        lr: the learning rate each update used.
        grad_norm: the gradient norm of each update, before clipping.
        evals: one dict per evaluation: ``{"step": updates done, **evaluate(model)}``.
        optimizer: the optimizer, to continue training (``fit(..., optimizer=history.optimizer,
            start_step=history.steps[-1])``) or to checkpoint.
    """

    steps: list[int] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    grad_norm: list[float] = dataclasses.field(default_factory=list)
    evals: list[dict[str, float]] = dataclasses.field(default_factory=list)
    optimizer: torch.optim.Optimizer | None = None

    def last_eval(self) -> dict[str, float]:
        """The most recent evaluation record (an empty dict if there was none)."""
        return self.evals[-1] if self.evals else {}


def _batch_source(batches) -> Callable[[int], Any]:
    """Turn ``batches`` into ``next_batch(step)``.

    A callable is called with the step index; an iterator is consumed (it continues where a
    previous run stopped); another iterable (a list, a DataLoader) is iterated again from its
    start each time it runs out.
    """
    if callable(batches) and not isinstance(batches, Iterable):
        return batches
    if not isinstance(batches, Iterable):
        raise TypeError(f"batches must be an iterable, an iterator or a function of the step; "
                        f"got {type(batches).__name__}")
    is_iterator = isinstance(batches, Iterator)
    state = {"it": iter(batches), "fresh": True}

    def next_batch(step: int):
        try:
            batch = next(state["it"])
        except StopIteration:
            if is_iterator or state["fresh"]:
                raise ValueError(f"batches ran out at step {step}: pass an iterable that can "
                                 "be iterated again, a longer iterator, or a function of the "
                                 "step") from None
            state["it"] = iter(batches)
            state["fresh"] = True
            return next_batch(step)
        state["fresh"] = False
        return batch

    return next_batch


def _evaluate(model: nn.Module, evaluate, step: int) -> dict[str, float]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model)
    model.train(was_training)
    if not isinstance(metrics, dict):
        raise TypeError(f"evaluate must return a dict of floats; got {type(metrics).__name__}")
    return {"step": step, **{name: float(value) for name, value in metrics.items()}}


def fit(
    model: nn.Module,
    batches,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    steps: int,
    *,
    lr: float,
    warmup_steps: int = 0,
    schedule: str = "inverse_sqrt",
    total_steps: int | None = None,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    start_step: int = 0,
    eval_every: int | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` for ``steps`` updates and return the :class:`History`.

    Args:
        model: the module to train; moved to ``device`` (and ``dtype``) and put in training mode.
        batches: an iterator (consumed, so a second call continues it), an iterable re-iterated
            whenever it runs out (a list, a DataLoader), or a function ``batches(step) ->
            batch`` of the update index (exactly resumable). A batch is anything
            :func:`to_device` can move: tensors, tuples, dicts, dataclasses.
        loss_fn: ``loss_fn(model, batch) -> scalar loss tensor``.
        steps: number of updates in this call (the budget).
        lr: the peak learning rate; the schedule multiplies it by :func:`warmup_lr`.
        warmup_steps, schedule: see :func:`warmup_lr`.
        total_steps: length of the whole run for ``"cosine"``; default ``start_step + steps``.
            Give it when a run is split into several calls.
        weight_decay: AdamW's decoupled weight decay (only for the default optimizer).
        clip_norm: largest gradient norm (all parameters together); None: no clipping.
        optimizer: None for AdamW(lr, betas=(0.9, 0.98), weight_decay); else used as it is,
            e.g. the ``history.optimizer`` of a previous call, to resume.
        start_step: number of updates already done (the schedule continues from there).
        eval_every: call ``evaluate`` after every ``eval_every``-th update (counted from the
            start of the whole run); it is always called at the end.
        evaluate: ``evaluate(model) -> {name: float}``, run in eval mode without gradients.
        device: where to train (default: where the model's parameters are).
        dtype: optional floating dtype for the model and the floating tensors of each batch.
        seed: if given, ``torch.manual_seed(seed)`` first (dropout, sampling in batches).
        progress: show a tqdm progress bar with the loss; None (the default): only when a
            person runs the notebook (:func:`qkv.runtime.live_progress`).

    Returns:
        A :class:`History` with per-update loss, lr and gradient norm, the evaluations and the
        optimizer.

    Raises:
        FloatingPointError: if a loss is NaN or infinite (the update is not applied).
    """
    _require_count("steps", steps)
    _require_count("start_step", start_step, minimum=0)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None; got {clip_norm!r}")
    if eval_every is not None:
        _require_count("eval_every", eval_every)
        if evaluate is None:
            raise ValueError("eval_every is set but evaluate is None")
    total_steps = start_step + steps if total_steps is None else total_steps
    warmup_lr(start_step, warmup_steps, schedule, total_steps)  # validates the schedule early
    if seed is not None:
        torch.manual_seed(seed)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    if device is None:
        device = next(model.parameters()).device
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98),
                                      weight_decay=weight_decay)
    next_batch = _batch_source(batches)
    history = History(optimizer=optimizer)
    parameters = [p for p in model.parameters() if p.requires_grad]
    model.train()
    if progress is None:
        progress = live_progress()
    bar = tqdm(range(start_step, start_step + steps), disable=not progress, leave=False)
    for step in bar:
        rate = lr * warmup_lr(step, warmup_steps, schedule, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        loss = loss_fn(model, to_device(next_batch(step), device, dtype))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError("loss_fn must return a scalar tensor")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = math.inf if clip_norm is None else clip_norm
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        optimizer.step()
        history.steps.append(step + 1)
        history.loss.append(loss.item())
        history.lr.append(rate)
        history.grad_norm.append(norm.item())
        if eval_every is not None and (step + 1) % eval_every == 0:
            history.evals.append(_evaluate(model, evaluate, step + 1))
        if progress:
            shown = {f"eval {k}": f"{v:.4g}" for k, v in history.last_eval().items() if k != "step"}
            bar.set_postfix({"loss": f"{history.loss[-1]:.4f}", **shown})
    if evaluate is not None and (not history.evals or history.evals[-1]["step"] != step + 1):
        history.evals.append(_evaluate(model, evaluate, step + 1))
    return history


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of model state dicts (checkpoint averaging, Vaswani et al., 2017).

    Args:
        states: one or more state dicts with the same keys, shapes and dtypes, e.g. the
            ``model.state_dict()`` of the same model at several steps.

    Returns:
        A new state dict: each floating tensor is the mean over ``states`` (computed in float64,
        returned in its own dtype and on its own device); any other tensor (an integer counter)
        is taken from the last state.
    """
    if not states:
        raise ValueError("states must hold at least one state dict; got none")
    keys = list(states[0])
    for number, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ValueError(f"states[{number}] has other keys than states[0]: "
                             f"{sorted(set(state) ^ set(keys))}")
        for key in keys:
            if state[key].shape != states[0][key].shape or state[key].dtype != states[0][key].dtype:
                raise ValueError(f"states[{number}][{key!r}] is {tuple(state[key].shape)} "
                                 f"{state[key].dtype}; states[0][{key!r}] is "
                                 f"{tuple(states[0][key].shape)} {states[0][key].dtype}")
    averaged = {}
    for key in keys:
        last = states[-1][key]
        if not last.is_floating_point():
            averaged[key] = last.clone()
            continue
        total = sum(state[key].detach().double() for state in states)
        averaged[key] = (total / len(states)).to(last.dtype)
    return averaged


def save_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0) -> None:
    """Save the state dicts of ``model`` (and ``optimizer``) and the step count to ``path``."""
    state = {"model": model.state_dict(), "step": step}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, Path(path))


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: torch.device | str | None = None) -> int:
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer``); return the step.

    Only tensors and plain containers are unpickled (``weights_only=True``).
    """
    state = torch.load(Path(path), map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"{path} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])
