"""Figures every chapter uses: labelled heat maps, curves, and sliders with a static fallback.

All functions return the matplotlib ``Figure`` so that a notebook can add to it, and every
axis gets a label: a figure without labelled axes is a bug in this book.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_numpy(matrix) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        return matrix.detach().to("cpu", torch.float64).numpy()
    return np.asarray(matrix, dtype=float)


def _check_labels(name: str, labels: Sequence[str] | None, expected: int) -> None:
    if labels is not None and len(labels) != expected:
        raise ValueError(f"{name} has {len(labels)} labels but the matrix has {expected}")


def show_heatmaps(
    matrices,
    xlabel: str = "Keys",
    ylabel: str = "Queries",
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    colorbar_label: str = "attention weight",
    cmap: str = "Reds",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    annotate: bool = False,
    panel_size: tuple[float, float] = (2.8, 2.8),
    max_cols: int = 2,
):
    """Draw a grid of heat maps (small multiples) with token labels and one shared colour bar.

    Args:
        matrices: a (n_q, n_k) matrix; a (panels, n_q, n_k) stack, wrapped into rows of at
            most ``max_cols`` panels so that each stays readable on a book page; or a
            (rows, cols, n_q, n_k) grid, drawn as given. Tensor or array.
        xlabel, ylabel: axis labels (written under every panel and left of every row).
        titles: one title per panel, in row-major order.
        row_labels, col_labels: tick labels for the queries (rows) and keys (columns).
        colorbar_label: what the colour encodes.
        vmin, vmax: colour range shared by all panels (``vmax=None``: the largest value).
        annotate: write each value in its cell (for small matrices).
        max_cols: the most panels in a row when ``matrices`` is a 3-D stack.

    Returns:
        The matplotlib figure.
    """
    data = _as_numpy(matrices)
    if data.ndim not in (2, 3, 4):
        raise ValueError(
            f"matrices must have 2, 3 or 4 dimensions (rows, cols, queries, keys); "
            f"got shape {tuple(data.shape)}"
        )
    if data.ndim == 2:
        panels, n_cols = data[None], 1
    elif data.ndim == 3:
        if not isinstance(max_cols, int) or max_cols < 1:
            raise ValueError(f"max_cols must be a positive int; got {max_cols!r}")
        panels, n_cols = data, min(max_cols, len(data))
    else:
        panels, n_cols = data.reshape(-1, *data.shape[2:]), data.shape[1]
    n_panels, n_q, n_k = panels.shape
    n_rows = -(-n_panels // n_cols)
    _check_labels("row_labels", row_labels, n_q)
    _check_labels("col_labels", col_labels, n_k)
    if titles is not None and len(titles) != n_panels:
        raise ValueError(f"titles has {len(titles)} entries for {n_panels} panels")
    vmax = float(np.nanmax(data)) if vmax is None else vmax
    low = vmin if vmin is not None else float(np.nanmin(data))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel_size[0] * n_cols + 1.0, panel_size[1] * n_rows),
        squeeze=False,
        constrained_layout=True,
    )
    image = None
    for index, ax in enumerate(axes.flat):
        if index >= n_panels:
            ax.set_axis_off()  # the last row of a wrapped stack may be short
            continue
        image = ax.imshow(panels[index], cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        if row_labels is not None:
            ax.set_yticks(range(n_q), labels=row_labels)
        if col_labels is not None:
            ax.set_xticks(range(n_k), labels=col_labels, rotation=45, ha="right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if titles is not None:
            ax.set_title(titles[index])
        if annotate:
            for (r, c), value in np.ndenumerate(panels[index]):
                dark = value > low + 0.6 * (vmax - low)
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    fig.colorbar(image, ax=axes, shrink=0.8, label=colorbar_label)
    return fig


def plot_curves(
    x,
    curves: Mapping[str, object],
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    ax=None,
    styles: Mapping[str, str] | None = None,
):
    """Plot named curves ``{label: y}`` against a shared ``x`` with a legend and labelled axes.

    Args:
        x: (n,) values for the horizontal axis.
        curves: label -> (n,) values.
        xlabel, ylabel: axis labels (required: every figure in the book labels its axes).
        styles: optional label -> matplotlib format string (e.g. ``"k--"``).
        ax: draw into this axis instead of a new figure.

    Returns:
        The matplotlib figure.
    """
    if not curves:
        raise ValueError("curves is empty: pass at least one {label: values} entry")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    else:
        fig = ax.figure
    x = _as_numpy(x)
    for label, y in curves.items():
        y = _as_numpy(y)
        if y.shape != x.shape:
            raise ValueError(f"curve {label!r} has shape {y.shape}, but x has shape {x.shape}")
        style = (styles or {}).get(label, "-")
        ax.plot(x, y, style, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _live_widgets() -> bool:
    """True in a live notebook where sliders can work; False in the book build, CI and scripts.

    The Makefile sets ``QKV_STATIC_FIGURES=1`` for every build and test run: there the book
    shows the static small multiples only (a widget would need a running kernel).
    """
    if os.environ.get("QKV_STATIC_FIGURES", "").strip() == "1":
        return False
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def _draw_titled(draw: Callable, ax, value, title: str) -> None:
    """Call ``draw(ax, value)``; give the panel ``title`` unless ``draw`` chose its own."""
    draw(ax, value)
    if not ax.get_title():
        ax.set_title(title)


def explore(
    draw: Callable,
    name: str,
    values: Sequence[float],
    shown: Sequence[float],
    panel_size: tuple[float, float] = (4.0, 3.0),
    max_cols: int = 2,
    value_format: str = "{:g}",
):
    """Small multiples of ``draw(ax, value)`` for a few values, plus a slider in live notebooks.

    The static figure (one panel per value in ``shown``, titled ``name = value`` unless ``draw``
    sets a title) is what the
    HTML book prints; in Jupyter or Colab a slider over ``values`` redraws one panel as it moves.

    Args:
        draw: ``draw(ax, value)`` draws one panel and labels its axes.
        name: the parameter's name, used in titles and on the slider.
        values: the slider's positions, in order.
        shown: the values drawn in the static figure.
        value_format: how a value is written in titles and on the slider.

    Returns:
        ``(figure, slider)``: the static figure, and the slider widget or ``None`` where no
        live kernel can drive it.
    """
    if not shown or not values:
        raise ValueError("explore needs at least one value in `values` and one in `shown`")
    n_cols = min(max_cols, len(shown))
    n_rows = -(-len(shown) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, constrained_layout=True,
                             figsize=(panel_size[0] * n_cols, panel_size[1] * n_rows))
    for ax, value in zip(axes.flat, shown):
        _draw_titled(draw, ax, value, f"{name} = {value_format.format(value)}")
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    if not _live_widgets():
        return fig, None
    import ipywidgets
    from IPython.display import display

    slider = ipywidgets.SelectionSlider(
        options=[(value_format.format(v), v) for v in values],
        value=min(values, key=lambda v: abs(v - shown[0])),
        description=name, continuous_update=False,
    )

    def redraw(value):
        single, ax = plt.subplots(figsize=panel_size, constrained_layout=True)
        _draw_titled(draw, ax, value, f"{name} = {value_format.format(value)}")
        plt.show()

    display(ipywidgets.VBox([slider, ipywidgets.interactive_output(redraw, {"value": slider})]))
    return fig, slider
