"""qkv.plot: every panel labelled, one colour bar, shapes validated."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qkv.plot import plot_curves, show_heatmaps  # noqa: E402


def teardown_function():
    plt.close("all")


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_heatmap_grid_has_labels_titles_and_one_colorbar():
    weights = torch.rand(2, 3, 4, 5)
    fig = show_heatmaps(weights, xlabel="Keys", ylabel="Queries",
                        titles=[f"head {i}" for i in range(6)],
                        row_labels=list("abcd"), col_labels=list("vwxyz"))
    panels = _panels(fig)
    assert len(panels) == 6
    assert [ax.get_title() for ax in panels] == [f"head {i}" for i in range(6)]
    assert all(ax.get_xlabel() == "Keys" and ax.get_ylabel() == "Queries" for ax in panels)
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list("abcd")
    assert [t.get_text() for t in panels[0].get_xticklabels()] == list("vwxyz")
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "attention weight"
    image = panels[0].images[0]
    assert torch.allclose(torch.as_tensor(image.get_array().data), weights[0, 0].double())


def test_a_stack_wraps_into_rows_of_max_cols_panels():
    weights = torch.rand(3, 2, 2)
    fig = show_heatmaps(weights, titles=["a", "b", "c"], max_cols=2)
    visible = [ax for ax in _panels(fig) if ax.axison]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c"]
    assert len(_panels(fig)) == 4  # a 2 x 2 grid whose last panel is switched off
    rows = sorted({round(ax.get_position().y0, 3) for ax in visible})
    assert len(rows) == 2
    with pytest.raises(ValueError, match="max_cols must be a positive int"):
        show_heatmaps(weights, max_cols=0)


def test_heatmap_accepts_a_single_matrix_and_annotates():
    fig = show_heatmaps(torch.eye(3), annotate=True)
    (ax,) = _panels(fig)
    assert [t.get_text() for t in ax.texts] == ["1.00", "0.00", "0.00", "0.00", "1.00", "0.00",
                                                "0.00", "0.00", "1.00"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(matrices=torch.rand(5)), "matrices must have 2, 3 or 4 dimensions"),
        (dict(matrices=torch.rand(3, 4), row_labels=["a"]), "row_labels has 1 labels but the matrix has 3"),
        (dict(matrices=torch.rand(3, 4), col_labels=list("abc")), "col_labels has 3 labels but the matrix has 4"),
        (dict(matrices=torch.rand(2, 3, 4), titles=["x"]), "titles has 1 entries for 2 panels"),
        (dict(matrices=torch.rand(2, 2, 3, 4), titles=["x"]), "titles has 1 entries for 4 panels"),
    ],
)
def test_heatmap_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_heatmaps(**kwargs)


def test_plot_curves_labels_and_legend():
    x = torch.linspace(0, 1, 11)
    fig = plot_curves(x, {"up": x, "down": 1 - x}, xlabel="x", ylabel="y", logy=False)
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "down"]
    with pytest.raises(ValueError, match="curve 'bad' has shape"):
        plot_curves(x, {"bad": x[:3]}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="curves is empty"):
        plot_curves(x, {}, xlabel="x", ylabel="y")


def _draw_line(ax, slope):
    x = torch.linspace(0, 1, 5)
    ax.plot(x, slope * x)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def test_explore_draws_static_small_multiples_in_the_book(monkeypatch):
    from qkv.plot import explore

    monkeypatch.setenv("QKV_STATIC_FIGURES", "1")
    fig, slider = explore(_draw_line, "slope", values=[0.5, 1, 2, 4], shown=[0.5, 1, 4])
    assert slider is None
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == ["slope = 0.5", "slope = 1", "slope = 4"]
    assert all(ax.get_xlabel() == "x" for ax in visible)
    assert len(fig.axes) == 4  # 2 x 2 grid, the fourth switched off


def test_explore_adds_a_slider_in_a_live_notebook(monkeypatch):
    import qkv.plot as plot

    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(plot, "_live_widgets", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *args: None)
    drawn = []
    fig, slider = plot.explore(lambda ax, v: drawn.append(v), "h", values=[0.1, 0.3, 1.0],
                               shown=[0.3])
    assert [label for label, _ in slider.options] == ["0.1", "0.3", "1"]
    assert slider.value == 0.3 and drawn[:1] == [0.3]
    slider.value = 1.0  # moving the slider redraws with the new value
    assert drawn[-1] == 1.0


def test_live_widgets_is_off_outside_a_kernel(monkeypatch):
    import qkv.plot as plot

    monkeypatch.delenv("QKV_STATIC_FIGURES", raising=False)
    assert plot._live_widgets() is False  # pytest is not a notebook kernel
    with pytest.raises(ValueError, match="at least one value"):
        plot.explore(_draw_line, "s", values=[], shown=[1])


def test_figures_are_drawn_at_100_dpi_with_no_text_under_8_points():
    """_static/legible-figures.js keeps figures at 81 % of their natural width or more, which
    keeps text at 9 px or more only if no text is under 8 pt at 100 dpi."""
    import re
    from pathlib import Path

    import matplotlib

    assert matplotlib.rcParams["figure.dpi"] == 100
    assert matplotlib.rcParams["font.size"] >= 8
    root = Path(__file__).resolve().parents[1]
    sources = [p.read_text(encoding="utf-8") for p in (root / "chapters").glob("*.ipynb")]
    sources += [p.read_text(encoding="utf-8") for p in (root / "src" / "qkv").rglob("*.py")]
    sizes = [float(size) for text in sources
             for size in re.findall(r"(?:fontsize|labelsize)=([0-9.]+)", text)]
    assert sizes and min(sizes) >= 8, f"a text of {min(sizes)} pt"
    named = [name for text in sources
             for name in re.findall(r"(?:fontsize|labelsize)=\\?[\"']([a-z-]+)", text)]
    assert not {"xx-small", "x-small"} & set(named), "a text under 8 pt"
    assert not any(re.search(r"\bdpi=([0-7]?[0-9])\b", text) for text in sources)
    script = (root / "_static" / "legible-figures.js").read_text(encoding="utf-8")
    scale = float(re.search(r"MIN_SCALE = ([0-9.]+)", script)[1])
    assert 8 * 100 / 72 * scale >= 9
