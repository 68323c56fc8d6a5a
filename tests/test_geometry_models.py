"""qkv.geometry's models of hyperbolic space: parity with geoopt, identities, errors.

geoopt 0.5.1 is the test oracle (float64 curvature: its default float32 curvature would cost
seven digits). Its import decorates functions with ``torch.jit.script``, which current torch
deprecates with a FutureWarning: filtered here, so the suite also passes under ``-W error``.
"""

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qkv.geometry as G
from qkv.pooling import gaussian_scores

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import geoopt

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:geoopt")

F64 = torch.float64
CURVATURES = [0.3, 1.0, 2.5]


def ball_points(*shape, c=1.0, radius=0.95, seed=0, dtype=F64):
    """Random points (..., D) of the ball of curvature -c, with sqrt(c)|x| up to ``radius``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    r = torch.rand(*shape[:-1], 1, generator=generator, dtype=dtype) * radius
    return x / x.norm(dim=-1, keepdim=True) * r / math.sqrt(c)


def geoopt_ball(c):
    return geoopt.PoincareBall(c=torch.tensor(c, dtype=F64))


# ------------------------------------------------------------------ parity with geoopt

@pytest.mark.parametrize("c", CURVATURES)
def test_mobius_add_and_distance_match_geoopt(c):
    x, y = ball_points(40, 5, c=c, seed=1), ball_points(40, 5, c=c, seed=2)
    ball = geoopt_ball(c)
    torch.testing.assert_close(G.mobius_add(x, y, c), ball.mobius_add(x, y))
    torch.testing.assert_close(G.poincare_distance(x, y, c), ball.dist(x, y))


@pytest.mark.parametrize("c", CURVATURES)
def test_exp_and_log_maps_match_geoopt(c):
    x, y = ball_points(40, 4, c=c, seed=3), ball_points(40, 4, c=c, seed=4)
    v = 0.7 * torch.randn(40, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    ball = geoopt_ball(c)
    torch.testing.assert_close(G.expmap0(v, c), ball.expmap0(v, project=False))
    torch.testing.assert_close(G.logmap0(y, c), ball.logmap0(y))
    torch.testing.assert_close(G.expmap(x, v, c), ball.expmap(x, v, project=False))
    torch.testing.assert_close(G.logmap(x, y, c), ball.logmap(x, y))


@pytest.mark.parametrize("c", CURVATURES)
def test_lorentz_distance_matches_geoopt_and_the_ball(c):
    x, y = ball_points(30, 3, c=c, seed=6), ball_points(30, 3, c=c, seed=7)
    hx, hy = G.poincare_to_lorentz(x, c), G.poincare_to_lorentz(y, c)
    lorentz = geoopt.Lorentz(k=torch.tensor(1 / c, dtype=F64))  # <x, x> = -k: curvature -1/k
    torch.testing.assert_close(G.lorentz_distance(hx, hy, c), lorentz.dist(hx, hy))
    torch.testing.assert_close(G.lorentz_distance(hx, hy, c), G.poincare_distance(x, y, c))


def test_einstein_midpoint_matches_geoopt_gyromidpoint():
    points, weights = ball_points(12, 3, seed=8), torch.rand(4, 12, dtype=F64)
    expected = torch.stack([
        geoopt.manifolds.stereographic.math.weighted_midpoint(
            points, weights=w, k=torch.tensor(-1.0, dtype=F64), reducedim=[0])
        for w in weights])
    torch.testing.assert_close(G.einstein_midpoint(points, weights), expected)


# ---------------------------------------------------------------------------- identities

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from(CURVATURES))
def test_left_cancellation_and_isometry_of_translations(seed, c):
    a, x, y = (ball_points(6, 3, c=c, seed=seed + i) for i in range(3))
    torch.testing.assert_close(G.mobius_add(-x, G.mobius_add(x, y, c), c), y)
    moved = G.poincare_distance(G.mobius_add(a, x, c), G.mobius_add(a, y, c), c)
    torch.testing.assert_close(moved, G.poincare_distance(x, y, c))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from(CURVATURES))
def test_exp_and_log_are_inverse(seed, c):
    x, y = ball_points(5, 4, c=c, seed=seed), ball_points(5, 4, c=c, seed=seed + 1)
    torch.testing.assert_close(G.expmap(x, G.logmap(x, y, c), c), y)
    torch.testing.assert_close(G.expmap0(G.logmap0(y, c), c), y)
    v = G.logmap(x, y, c)  # its Riemannian length is the distance
    torch.testing.assert_close(G.conformal_factor(x, c) * v.norm(dim=-1),
                               G.poincare_distance(x, y, c))


def test_distance_closed_forms_and_symmetry():
    x, y = ball_points(50, 3, seed=9), ball_points(50, 3, seed=10)
    artanh_form = 2 * torch.atanh(G.mobius_add(-x, y).norm(dim=-1))
    torch.testing.assert_close(G.poincare_distance(x, y), artanh_form)
    torch.testing.assert_close(G.poincare_distance(x, y), G.poincare_distance(y, x))
    r = torch.tensor([[0.5, 0.0]], dtype=F64)
    assert G.poincare_distance(torch.zeros(1, 2, dtype=F64), r).item() == pytest.approx(
        2 * math.atanh(0.5))


def test_halfplane_distance_equals_disk_distance_through_cayley():
    generator = torch.Generator().manual_seed(11)
    p = torch.stack([4 * torch.randn(60, generator=generator, dtype=F64),
                     torch.rand(60, generator=generator, dtype=F64) * 3 + 1e-3], dim=-1)
    q = p.flip(0)
    for c in CURVATURES:
        disk = G.poincare_distance(G.cayley_to_disk(p, c), G.cayley_to_disk(q, c), c)
        torch.testing.assert_close(G.halfplane_distance(p, q, c), disk)
        torch.testing.assert_close(G.disk_to_halfplane(G.cayley_to_disk(p, c), c), p)


def test_halfplane_known_values():
    top, bottom = torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([0.0, 0.01], dtype=F64)
    assert G.halfplane_distance(top, bottom).item() == pytest.approx(math.log(100))  # 4.61
    left, right = torch.tensor([-1.0, 1.0], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64)
    assert G.halfplane_distance(left, right).item() == pytest.approx(2 * math.asinh(1))


def test_halfplane_geodesics_are_vertical_lines_and_semicircles():
    vertical = G.halfplane_geodesic(torch.tensor([0.5, 2.0], dtype=F64),
                                    torch.tensor([0.5, 0.1], dtype=F64), steps=33)
    torch.testing.assert_close(vertical[:, 0], torch.full((33,), 0.5, dtype=F64))
    arc = G.halfplane_geodesic(torch.tensor([-1.0, 1.0], dtype=F64),
                               torch.tensor([2.0, 0.5], dtype=F64), steps=33)
    # a semicircle centred on the x-axis: the centre is where the perpendicular bisector of
    # the two ends meets y = 0, and every point is at the same distance from it
    centre_x = (2.0**2 + 0.5**2 - 1.0 - 1.0) / (2 * (2.0 + 1.0))
    radii = torch.hypot(arc[:, 0] - centre_x, arc[:, 1])
    torch.testing.assert_close(radii, radii[0].expand(33))
    lengths = G.halfplane_distance(arc[:-1], arc[1:])  # equal hyperbolic spacing
    torch.testing.assert_close(lengths, lengths.mean().expand(32))


def test_ball_to_hyperboloid_and_klein_round_trips():
    for c in CURVATURES:
        x = ball_points(20, 3, c=c, seed=12)
        h = G.poincare_to_lorentz(x, c)
        torch.testing.assert_close(G.lorentz_inner(h, h), torch.full((20,), -1 / c, dtype=F64))
        torch.testing.assert_close(G.lorentz_to_poincare(h, c), x)
        torch.testing.assert_close(G.klein_to_poincare(G.poincare_to_klein(x, c), c), x)


def test_einstein_midpoint_of_two_points_is_the_geodesic_midpoint():
    a, b = ball_points(2, 3, seed=13)
    midpoint = G.einstein_midpoint(torch.stack([a, b]), torch.ones(1, 2, dtype=F64))[0]
    half = G.poincare_distance(a, b) / 2
    torch.testing.assert_close(G.poincare_distance(a, midpoint), half)
    torch.testing.assert_close(G.poincare_distance(b, midpoint), half)


def test_kernel_bridge_dot_products_of_unit_vectors_are_gaussian_scores():
    generator = torch.Generator().manual_seed(14)
    q, k = (torch.nn.functional.normalize(torch.randn(n, 6, generator=generator, dtype=F64),
                                          dim=-1) for n in (5, 9))
    t = 0.3
    torch.testing.assert_close(torch.softmax(q @ k.T / t, -1),
                               torch.softmax(gaussian_scores(q, k, bandwidth=math.sqrt(t)), -1))


def test_sphere_distance_is_arccos_and_ranks_like_the_dot_product():
    generator = torch.Generator().manual_seed(15)
    x = torch.nn.functional.normalize(torch.randn(40, 3, generator=generator, dtype=F64), dim=-1)
    d = G.sphere_distance(x[:, None], x[None])
    torch.testing.assert_close(d, torch.arccos((x @ x.T).clamp(-1, 1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(2 * torch.sin(d / 2), torch.cdist(x, x))
    assert G.order_violations(d, -(x @ x.T)) == 0.0


def test_rolled_strip_is_isometric_yet_changes_the_order_of_distances():
    point = torch.tensor([3.0, 1.0], dtype=F64)
    jacobian = torch.autograd.functional.jacobian(lambda p: G.roll_up_strip(p, gap=1.0), point)
    torch.testing.assert_close(jacobian.T @ jacobian, torch.eye(2, dtype=F64))
    generator = torch.Generator().manual_seed(16)
    strip = torch.stack([1 + 20 * torch.rand(80, generator=generator, dtype=F64),
                         torch.rand(80, generator=generator, dtype=F64)], dim=-1)
    rolled = G.roll_up_strip(strip, gap=1.0)
    assert G.order_violations(torch.cdist(strip, strip), torch.cdist(rolled, rolled)) > 0.2


def test_order_violations_counts_reversals_and_ties():
    d = torch.tensor([[0.0, 1, 2], [1, 0, 3], [2, 3, 0]])
    assert G.order_violations(d, d) == 0.0
    assert G.order_violations(d, -d) == 1.0
    assert G.order_violations(d, torch.ones(3, 3)) == 0.5


def test_project_moves_only_points_beyond_the_margin():
    inside = torch.tensor([[0.3, 0.4]], dtype=F64)
    assert torch.equal(G.project(inside), inside)
    far = torch.tensor([[3.0, 4.0]], dtype=F64)
    assert G.project(far, c=4.0).norm().item() == pytest.approx((1 - G.DEFAULT_EPS) / 2)
    # tanh of a long tangent vector rounds onto the boundary in float32; project fixes it
    edge = G.expmap0(torch.tensor([[20.0, 0.0]]))
    assert edge.norm().item() == 1.0
    G.poincare_distance(G.project(edge), torch.zeros(1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_batches_are_kept(dtype):
    x, y = ball_points(2, 3, 4, seed=17, dtype=dtype), ball_points(3, 4, seed=18, dtype=dtype)
    for result in (G.mobius_add(x, y), G.expmap(x, y), G.logmap(x, y), G.project(x)):
        assert result.shape == (2, 3, 4) and result.dtype == dtype
    assert G.poincare_distance(x, y).shape == (2, 3)
    assert G.poincare_to_lorentz(x).shape == (2, 3, 5)
    assert G.poincare_geodesic(x, y, steps=7).shape == (2, 3, 7, 4)


def test_gradients_are_finite_near_the_boundary_in_float64():
    x = torch.tensor([[1 - 1e-12, 0.0], [0.0, -(1 - 1e-9)]], dtype=F64, requires_grad=True)
    y = torch.tensor([[0.0, 1 - 1e-10], [0.6, 0.0]], dtype=F64, requires_grad=True)
    loss = (G.poincare_distance(x, y) + G.logmap0(x).sum(-1) + G.logmap(x, y).sum(-1)).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    z = torch.zeros(1, 2, dtype=F64, requires_grad=True)  # zero gradient at zero distance
    G.poincare_distance(z, z.detach()).sum().backward()
    assert torch.equal(z.grad, torch.zeros(1, 2, dtype=F64))


# ---------------------------------------------------------------------------- bad input

def test_bad_input_gets_clear_errors():
    inside, outside = torch.zeros(1, 2), torch.tensor([[0.8, 0.8]])
    with pytest.raises(ValueError, match=r"inside the Poincaré ball .* qkv.geometry.project"):
        G.poincare_distance(inside, outside)
    with pytest.raises(ValueError, match="c must be positive"):
        G.mobius_add(inside, inside, c=0.0)
    with pytest.raises(ValueError, match="c must be positive"):
        G.expmap0(inside, c=-1.0)
    with pytest.raises(ValueError, match="upper half-plane y > 0"):
        G.halfplane_distance(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        G.cayley_to_disk(torch.ones(3, 3))
    with pytest.raises(TypeError, match="share one dtype"):
        G.mobius_add(inside, inside.double())
    with pytest.raises(ValueError, match="do not broadcast"):
        G.poincare_distance(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="floating-point"):
        G.logmap0(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="unit vectors"):
        G.sphere_distance(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="upper sheet of the hyperboloid"):
        G.lorentz_distance(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="eps must be a float"):
        G.project(inside, eps=1e-9)  # rounds to the boundary in float32
    with pytest.raises(ValueError, match="must be positive"):
        G.roll_up_strip(torch.tensor([[0.0, 1.0]]))
