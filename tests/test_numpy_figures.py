"""numpy_core.figures: decision boundaries side by side."""
from __future__ import annotations

import numpy as np
import pytest

from numpy_core import MLP, Perceptron, make_moons
from numpy_core.figures import decision_boundaries_figure, draw_decision_boundary


class Halfplane:
    """P(class 1) = 1 right of x = 0, else 0: its 0.5 line is the vertical axis."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p1 = (X[:, 0] > 0).astype(float)
        return np.stack([1 - p1, p1], axis=1)


def test_one_titled_panel_per_network_with_every_point():
    X, y = make_moons(60, noise=0.1, seed=0)
    nets = {"perceptron": Perceptron(2, seed=0), "MLP": MLP([2, 8, 2], seed=0)}
    fig = decision_boundaries_figure(nets, X, y, resolution=30)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["perceptron", "MLP"]
    for ax in axes:
        points = [c for c in ax.collections if hasattr(c, "get_offsets") and len(c.get_offsets()) == len(X)]
        assert len(points) == 1
        np.testing.assert_allclose(points[0].get_offsets(), X)


def test_the_drawn_boundary_is_where_the_network_changes_its_mind():
    from matplotlib.figure import Figure

    X = np.array([[-1.0, -1.0], [1.0, 1.0]])
    ax = Figure().subplots()
    draw_decision_boundary(ax, Halfplane(), X, np.array([0, 1]), resolution=101)
    line = ax.collections[-2]  # the 0.5 contour, drawn before the points
    vertices = np.concatenate([path.vertices for path in line.get_paths()])
    assert np.abs(vertices[:, 0]).max() < 0.05  # on x = 0, whatever y
    assert np.ptp(vertices[:, 1]) > 2


@pytest.mark.parametrize("X", [np.zeros((5, 3)), np.zeros(5)])
def test_refuses_inputs_that_are_not_2d_points(X):
    with pytest.raises(ValueError, match="2-D inputs"):
        decision_boundaries_figure({"p": Perceptron(2)}, X, np.zeros(5, int))


def test_refuses_no_networks():
    with pytest.raises(ValueError, match="no networks"):
        decision_boundaries_figure({}, np.zeros((2, 2)), np.zeros(2, int))


def test_the_saved_decision_boundary_draws_the_same_picture(tmp_path):
    from numpy_core.plots import plot_decision_boundary

    path = plot_decision_boundary(Halfplane(), np.array([[-1.0, -1.0], [1.0, 1.0]]), np.array([0, 1]),
                                  tmp_path / "sub" / "boundary.png", resolution=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2-D inputs"):
        plot_decision_boundary(Halfplane(), np.zeros((5, 3)), np.zeros(5, int), tmp_path / "x.png")
