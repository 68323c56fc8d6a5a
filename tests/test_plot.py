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
