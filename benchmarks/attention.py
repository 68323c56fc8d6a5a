"""Speed and memory of multi-head attention: qkv's two paths against torch.nn.MultiheadAttention.

For several sizes (B, L, d_model, H) of self-attention this prints, in one run,

* the median time of the forward pass (under ``torch.no_grad``) and of forward + backward for
  qkv's readable path (``need_weights=True``), its fast path (``need_weights=False``, through
  ``F.scaled_dot_product_attention``) and ``torch.nn.MultiheadAttention(need_weights=False)``,
  all three holding the same weights (``MultiHeadAttention.from_torch``);
* the ratio ``torch_time / our_time`` for each of our paths: >= 1.0 means ours is at least as
  fast as PyTorch's layer;
* the memory of the readable path against the fast path as L grows. On a GPU this is measured
  with ``torch.cuda.max_memory_allocated`` (peak bytes allocated during one forward pass, above
  what was allocated before it: intermediates and the output), together with PyTorch's layer
  and ``F.scaled_dot_product_attention`` alone on already projected q, k, v. On a CPU nothing
  is measured: the table gives the size of the (B, H, L, L) weight tensor the readable path
  materialises, B * H * L * L * itemsize, against 0 for the fused kernel, which never stores it
  (the attention operators that ran, with their input shapes, are recorded to show which
  variants build a (B, H, L, L) tensor).

Every timed call is first checked to compute the same output as the others. Calls of the three
variants are interleaved, so that noise from other processes falls on all of them alike.

Usage (from the repository root)::

    python benchmarks/attention.py --quick                       # a few seconds: smoke check
    python benchmarks/attention.py --threads 1 --out benchmarks/results/attention-cpu.json
    python benchmarks/attention.py --device cuda --dtype float16 \\
        --out benchmarks/results/attention-gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from qkv import report
from qkv.multihead import MultiHeadAttention

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


@dataclass(frozen=True)
class Size:
    """One benchmark size: batch B, sequence length L, model width d_model and heads H."""

    batch: int
    length: int
    d_model: int
    heads: int

    def __str__(self) -> str:
        return f"B={self.batch} L={self.length} d={self.d_model} H={self.heads}"


# Timing sizes per setting; memory sizes are (B, d_model, H) plus the lengths L to sweep.
TIME_SIZES = {
    "quick": [Size(2, 16, 32, 4), Size(1, 64, 32, 4)],
    "cpu": [Size(8, 128, 256, 8), Size(4, 512, 256, 8), Size(2, 1024, 512, 8)],
    "cuda": [Size(32, 256, 512, 8), Size(16, 1024, 1024, 16), Size(8, 2048, 1024, 16),
             Size(4, 4096, 1024, 16)],
}
MEMORY_SWEEP = {
    "quick": ((2, 32, 4), [16, 32, 64]),
    "cpu": ((4, 256, 8), [128, 256, 512, 1024, 2048, 4096]),
    "cuda": ((4, 1024, 16), [1024, 2048, 4096, 8192, 16384]),
}
REPEATS = {"quick": (1, 3), "cpu": (3, 15), "cuda": (5, 30)}  # (warm-up calls, timed calls)


# --------------------------------------------------------------------------------- set-up

def build_pair(size: Size, device: torch.device, dtype: torch.dtype):
    """PyTorch's layer (batch first, eval mode) and ours with the same weights."""
    reference = nn.MultiheadAttention(size.d_model, size.heads, batch_first=True)
    reference = reference.to(device=device, dtype=dtype).eval()
    return reference, MultiHeadAttention.from_torch(reference).eval()


def variant_calls(reference: nn.Module, ours: MultiHeadAttention) -> dict[str, Callable]:
    """name -> f(x) returning the self-attention output (B, L, d_model) of that variant."""
    return {
        "readable": lambda x: ours(x, x, x, need_weights=True)[0],
        "fast": lambda x: ours(x, x, x, need_weights=False)[0],
        "torch": lambda x: reference(x, x, x, need_weights=False)[0],
    }


def check_same_outputs(calls: dict[str, Callable], x: torch.Tensor) -> None:
    """Refuse to time variants that do not compute the same function."""
    tolerance = {torch.float64: 1e-9, torch.float32: 1e-4}.get(x.dtype, 2e-2)
    with torch.no_grad():
        outputs = {name: call(x).float() for name, call in calls.items()}
    for name, output in outputs.items():
        if not torch.allclose(output, outputs["torch"], atol=tolerance, rtol=tolerance):
            gap = (output - outputs["torch"]).abs().max().item()
            raise RuntimeError(f"{name} differs from torch.nn.MultiheadAttention by {gap:.3g}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------- timing

def median_times(calls: dict[str, Callable], x: torch.Tensor, modules: list[nn.Module],
                 backward: bool, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved, after ``warmup`` untimed rounds.

    Forward only runs under ``torch.no_grad``; with ``backward`` the output's sum is
    back-propagated to the input and the parameters (gradients are cleared outside the clock).
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(warmup + repeats):
        for name, call in calls.items():
            for module in modules:
                module.zero_grad(set_to_none=True)
            x.grad = None
            synchronize(x.device)
            start = time.perf_counter()
            if backward:
                call(x).sum().backward()
            else:
                with torch.no_grad():
                    call(x)
            synchronize(x.device)
            if round_ >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def time_rows(sizes: list[Size], device: torch.device, dtype: torch.dtype, warmup: int,
              repeats: int) -> list[dict]:
    """One row per (size, pass) with milliseconds and ratios torch / ours."""
    rows = []
    for size in sizes:
        reference, ours = build_pair(size, device, dtype)
        calls = variant_calls(reference, ours)
        x = torch.randn(size.batch, size.length, size.d_model, device=device, dtype=dtype)
        check_same_outputs(calls, x)
        x.requires_grad_(True)
        for backward in (False, True):
            seconds = median_times(calls, x, [reference, ours], backward, warmup, repeats)
            row = {**asdict(size), "pass": "forward+backward" if backward else "forward",
                   "ms": {name: 1e3 * s for name, s in seconds.items()},
                   "ratio": {name: seconds["torch"] / seconds[name] for name in ("readable", "fast")}}
            print(format_time_row(row), flush=True)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------- memory

@contextlib.contextmanager
def _stderr_silenced():
    """Send what C++ code writes to file descriptor 2 to /dev/null (the profiler logs there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def attention_operators(call: Callable, x: torch.Tensor) -> list[str]:
    """The attention and softmax operators one forward pass runs, with their first input's shape.

    A softmax over a (B, H, L, L) input means the variant stores the weight matrix; the fused
    kernels (``_scaled_dot_product_flash_attention...``) never do.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    with _stderr_silenced(), torch.no_grad(), torch.profiler.profile(
            activities=activities, record_shapes=True) as profile:
        call(x)
    found = []
    for event in profile.key_averages(group_by_input_shape=True):
        if "attention" in event.key or "softmax" in event.key:
            shape = event.input_shapes[0] if event.input_shapes else []
            found.append(f"{event.key} {list(shape)}")
    return sorted(set(found))


def cuda_peak_bytes(call: Callable, *inputs: torch.Tensor) -> int | None:
    """Peak bytes allocated during ``call(*inputs)`` above what was allocated before it.

    Returns None if the call runs out of memory.
    """
    device = inputs[0].device
    synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    try:
        with torch.no_grad():
            output = call(*inputs)
        synchronize(device)
    except torch.cuda.OutOfMemoryError:
        return None
    peak = torch.cuda.max_memory_allocated(device) - before
    del output
    return peak


def memory_rows(batch: int, d_model: int, heads: int, lengths: list[int], device: torch.device,
                dtype: torch.dtype) -> list[dict]:
    """Memory of the readable path against the fast path for growing L (see the module doc)."""
    rows = []
    itemsize = torch.empty((), dtype=dtype).element_size()
    for length in lengths:
        size = Size(batch, length, d_model, heads)
        row = {**asdict(size)}
        if device.type == "cuda":
            reference, ours = build_pair(size, device, dtype)
            x = torch.randn(batch, length, d_model, device=device, dtype=dtype)
            row["method"] = "measured: torch.cuda.max_memory_allocated during one forward pass"
            row["bytes"] = {name: cuda_peak_bytes(call, x)
                            for name, call in variant_calls(reference, ours).items()}
            q, k, v = (ours.split_heads(torch.randn_like(x)) for _ in range(3))
            row["bytes"]["sdpa_alone"] = cuda_peak_bytes(F.scaled_dot_product_attention, q, k, v)
            del reference, ours, x, q, k, v
        else:
            row["method"] = ("formula: the (B, H, L, L) weight tensor, B*H*L*L*itemsize, for the "
                             "readable path; 0 for the fused kernel, which never stores it")
            row["bytes"] = {"readable": batch * heads * length * length * itemsize, "fast": 0}
        print(format_memory_row(row), flush=True)
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------- reports

def format_time_row(row: dict) -> str:
    size = Size(row["batch"], row["length"], row["d_model"], row["heads"])
    ms, ratio = row["ms"], row["ratio"]
    return (f"{str(size):28s} {row['pass']:17s} readable {ms['readable']:9.2f} ms  "
            f"fast {ms['fast']:9.2f} ms  torch {ms['torch']:9.2f} ms  "
            f"torch/readable {ratio['readable']:5.2f}  torch/fast {ratio['fast']:5.2f}")


def _mib(value: int | None) -> str:
    return "     OOM" if value is None else f"{value / 2**20:8.1f}"


def format_memory_row(row: dict) -> str:
    size = Size(row["batch"], row["length"], row["d_model"], row["heads"])
    parts = "  ".join(f"{name} {_mib(value)} MiB" for name, value in row["bytes"].items())
    return f"{str(size):28s} {parts}"


def summary(time_rows_: list[dict]) -> dict:
    """The worst (smallest) ratio torch / ours of each path over every size and pass."""
    return {f"min_ratio_{name}": min(row["ratio"][name] for row in time_rows_)
            for name in ("readable", "fast")}


# ----------------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats: a smoke check that the script runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per variant (default: 15 on CPU, 30 on GPU)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but no CUDA device is available")
    if torch.device(args.device).type == "cpu" and args.dtype in ("float16", "bfloat16"):
        parser.error(f"--dtype {args.dtype} is for GPUs; use float32 or float64 on the CPU")
    return args


def describe_run(args: argparse.Namespace, argv, warmup: int, repeats: int) -> dict:
    """Where, when and how the benchmark ran: the header of the results file."""
    device = torch.device(args.device)
    return {
        "benchmark": "multi-head self-attention: qkv readable / fast path vs nn.MultiheadAttention",
        "device": report.device_name(device), "device_type": device.type, "dtype": args.dtype,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        # other processes on the machine slow every variant alike (calls are interleaved),
        # but they add noise: record how busy the machine was when the benchmark started
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg")
        else None,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "quick": args.quick,
        "warmup": warmup, "repeats": repeats,
        "command": " ".join(["python benchmarks/attention.py",
                             *(sys.argv[1:] if argv is None else argv)]),
    }


def operator_report(size: Size, device: torch.device, dtype: torch.dtype) -> dict[str, list[str]]:
    """For each variant, the attention operators of one forward pass (see attention_operators)."""
    x = torch.randn(size.batch, size.length, size.d_model, device=device, dtype=dtype)
    calls = variant_calls(*build_pair(size, device, dtype))
    operators = {name: attention_operators(call, x) for name, call in calls.items()}
    print(f"\nAttention operators in one forward pass at {size} (operator [first input's shape]):")
    for name, names in operators.items():
        print(f"  {name:9s} {', '.join(names)}")
    return operators


def main(argv=None) -> dict:
    """Run the benchmark, print its tables, optionally write the JSON; return the results."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    setting = "quick" if args.quick else device.type
    warmup, repeats = REPEATS[setting]
    repeats = args.repeats or repeats
    torch.manual_seed(0)
    header = describe_run(args, argv, warmup, repeats)
    print(", ".join(f"{k}={header[k]}" for k in ("device", "dtype", "torch", "threads", "cpus",
                                                   "load_average", "date")))
    print(f"\nTime: median of {repeats} calls after {warmup} warm-up calls; ratio = torch / ours "
          "(>= 1.0: ours at least as fast)")
    timing = time_rows(TIME_SIZES[setting], device, dtype, warmup, repeats)
    (batch, d_model, heads), lengths = MEMORY_SWEEP[setting]
    operators = operator_report(Size(batch, lengths[0], d_model, heads), device, dtype)
    print("\nMemory as L grows (MiB)")
    memory = memory_rows(batch, d_model, heads, lengths, device, dtype)
    results = {**header, "operators": operators, "summary": summary(timing), "time": timing,
               "memory": memory}
    print(f"\nSummary (worst ratio over all rows): {results['summary']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
