"""Trees and how well a space holds them: constructions, distortion and reconstruction scores.

* :func:`balanced_tree` builds the test case of the chapter; :func:`tree_distances` and
  :func:`related_mask` give its metric and its ancestor-descendant relation.
* :func:`sarkar_embedding` places a tree in the Poincaré disk with every edge of the same
  hyperbolic length and the edges at a node spread evenly (Sarkar, 2011); long edges give a
  distortion close to 1. :func:`radial_layout` and :func:`classical_mds` are planar baselines.
* :func:`distortion` (worst case and mean), :func:`planar_lower_bound` (what no planar
  embedding can beat), :func:`reconstruction_metrics` (mean rank and MAP of Nickel and Kiela,
  2017) and :func:`gromov_delta` (how tree-like a metric is) measure the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from qkv.geometry._checks import require_count, require_curvature, require_positive
from qkv.geometry.poincare import _mobius_add


@dataclass(frozen=True)
class Tree:
    """A rooted tree on nodes 0..n-1, listed parents first.

    Attributes:
        parent: (n,) int64; ``parent[0] == -1`` (node 0 is the root) and ``parent[i] < i``.
        depth: (n,) int64, the number of edges from the root.
    """

    parent: torch.Tensor
    depth: torch.Tensor

    @classmethod
    def from_parents(cls, parent) -> Tree:
        """Build a tree from a parent list (node 0 the root, ``parent[i] < i`` for i > 0)."""
        parent = torch.as_tensor(parent, dtype=torch.int64)
        if parent.dim() != 1 or len(parent) < 1 or parent[0] != -1:
            raise ValueError(f"parent must be a 1-D list starting with -1 (the root); got "
                             f"{parent.tolist()[:8]}")
        index = torch.arange(len(parent))
        if len(parent) > 1 and not ((parent[1:] >= 0) & (parent[1:] < index[1:])).all():
            raise ValueError("every non-root node i needs a parent in 0..i-1 (parents first)")
        depth = torch.zeros(len(parent), dtype=torch.int64)
        for i in range(1, len(parent)):
            depth[i] = depth[parent[i]] + 1
        return cls(parent, depth)

    @property
    def num_nodes(self) -> int:
        return len(self.parent)

    def children(self) -> list[list[int]]:
        """The children of every node, in index order."""
        result: list[list[int]] = [[] for _ in range(self.num_nodes)]
        for child, parent in enumerate(self.parent.tolist()[1:], start=1):
            result[parent].append(child)
        return result

    def preorder(self) -> list[int]:
        """The nodes in depth-first order (a node, then each child's subtree in turn), so that
        every subtree is a contiguous block: the order for heat maps over pairs of nodes."""
        children, order, stack = self.children(), [], [0]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(reversed(children[node]))
        return order

    def edges(self) -> torch.Tensor:
        """(n - 1, 2) int64 pairs (parent, child)."""
        children = torch.arange(1, self.num_nodes)
        return torch.stack([self.parent[1:], children], dim=1)


def balanced_tree(branching: int, depth: int) -> Tree:
    """The complete tree in which every internal node has ``branching`` children.

    Nodes are numbered breadth first, so node i > 0 has parent ``(i - 1) // branching``; there
    are ``(branching^(depth+1) - 1) / (branching - 1)`` of them (364 for branching 3, depth 5).
    """
    require_count("branching", branching, minimum=2)
    require_count("depth", depth, minimum=1)
    n = (branching ** (depth + 1) - 1) // (branching - 1)
    return Tree.from_parents([-1] + [(i - 1) // branching for i in range(1, n)])


def ancestor_matrix(tree: Tree) -> torch.Tensor:
    """(n, n) bool, ``[u, a]`` True when a is u or an ancestor of u."""
    n = tree.num_nodes
    ancestors = torch.eye(n, dtype=torch.bool)
    for i in range(1, n):
        ancestors[i] |= ancestors[tree.parent[i]]
    return ancestors


def tree_distances(tree: Tree, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n, n) numbers of edges between every two nodes.

    ``d(u, v) = depth(u) + depth(v) - 2 depth(lca(u, v))``, where the lowest common ancestor's
    depth is one less than the number of common ancestors (a node counts as its own).
    """
    ancestors = ancestor_matrix(tree).to(dtype)
    lca_depth = ancestors @ ancestors.T - 1
    depth = tree.depth.to(dtype)
    return depth[:, None] + depth[None, :] - 2 * lca_depth


def related_mask(tree: Tree) -> torch.Tensor:
    """(n, n) bool: True where one node is a proper ancestor of the other (the closure's pairs)."""
    ancestors = ancestor_matrix(tree)
    return (ancestors | ancestors.T) & ~torch.eye(tree.num_nodes, dtype=torch.bool)


def sarkar_embedding(tree: Tree, edge_length: float, c=1.0,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Embed a tree in the Poincaré disk with Sarkar's construction (Sarkar, 2011).

    The root sits at the origin with its children evenly spread at hyperbolic distance
    ``edge_length``. Each further node is moved to the origin by the isometry
    ``y -> (-x) (+) y``; there its k children are placed at distance ``edge_length`` in the
    directions that split the full angle evenly with the direction of its parent, and the
    isometry is undone. Every edge has hyperbolic length ``edge_length``, and the larger it
    is, the closer the hyperbolic distances come to ``edge_length`` times the tree distances.

    Args:
        tree: the tree; edge_length: hyperbolic length of every edge, > 0.
        c: positive curvature; dtype: float64 is needed for long edges (the points crowd the
            boundary: at edge length 5 and depth 5, ``1 - |x|`` is about 3e-11).

    Returns:
        (n, 2) points of the disk ``c |x|^2 < 1``.
    """
    edge_length = require_positive("edge_length", edge_length)
    c = require_curvature(c)
    radius = math.tanh(math.sqrt(c) * edge_length / 2) / math.sqrt(c)
    points = torch.zeros(tree.num_nodes, 2, dtype=dtype)
    for node, kids in enumerate(tree.children()):
        if not kids:
            continue
        here = points[node]
        if node == 0:
            start, slots = 0.0, len(kids)
            angles = [start + 2 * math.pi * j / slots for j in range(slots)]
        else:  # directions that avoid the one pointing back to the parent
            back = _mobius_add(-here, points[tree.parent[node]], c)
            start, slots = math.atan2(back[1].item(), back[0].item()), len(kids) + 1
            angles = [start + 2 * math.pi * j / slots for j in range(1, slots)]
        local = radius * torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=dtype)
        points[kids] = _mobius_add(here.expand_as(local), local, c)
    return points


def radial_layout(tree: Tree, radii) -> torch.Tensor:
    """A planar baseline: nodes of depth k on the circle of radius ``radii[k]``.

    Each node owns an angular wedge proportional to its number of leaves, split among its
    children in the same way, and sits in the middle of its wedge.

    Args:
        tree: the tree; radii: one non-decreasing radius per depth, ``radii[0] = 0``.

    Returns:
        (n, 2) float64 points of the plane.
    """
    radii = torch.as_tensor(radii, dtype=torch.float64)
    if radii.dim() != 1 or len(radii) <= tree.depth.max() or radii[0] != 0:
        raise ValueError(f"radii must list one radius per depth 0..{int(tree.depth.max())}, "
                         f"starting with 0; got {radii.tolist()}")
    children = tree.children()
    leaves = torch.ones(tree.num_nodes, dtype=torch.float64)
    for node in reversed(range(tree.num_nodes)):
        if children[node]:
            leaves[node] = sum(leaves[k] for k in children[node])
    low, width = torch.zeros(tree.num_nodes, dtype=torch.float64), leaves * (2 * math.pi
                                                                            / leaves[0])
    for node, kids in enumerate(children):
        offset = low[node]
        for kid in kids:
            low[kid] = offset
            offset = offset + width[kid]
    angle = low + width / 2
    radius = radii[tree.depth]
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


def classical_mds(distances: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Classical multidimensional scaling: the best rank-``dim`` Euclidean fit of the Gram matrix.

    Args:
        distances: (n, n) symmetric distances; dim: output dimension.

    Returns:
        (n, dim) points whose inner products match ``-J D^2 J / 2`` (J centres) as well as
        ``dim`` dimensions allow.
    """
    require_count("dim", dim)
    n = distances.shape[0]
    centring = torch.eye(n, dtype=distances.dtype) - 1 / n
    gram = -0.5 * centring @ distances.pow(2) @ centring
    values, vectors = torch.linalg.eigh(gram)  # ascending
    top = values[-dim:].flip(0).clamp_min(0)
    return vectors[:, -dim:].flip(1) * top.sqrt()


def minimize_distortion(reference: torch.Tensor, init: torch.Tensor, steps: int,
                        lr: float = 0.01, sharpness: float = 30.0) -> torch.Tensor:
    """Move Euclidean points to lower their worst-case distortion against ``reference``.

    Adam minimises a smooth stand-in for ``log max(ratio) - log min(ratio)`` over all pairs:
    ``(logsumexp(s log ratio) + logsumexp(-s log ratio)) / s`` with ``s = sharpness``, which
    tends to the worst-case log distortion as s grows.

    Args:
        reference: (n, n) target distances, > 0 off the diagonal.
        init: (n, dim) starting points (e.g. :func:`radial_layout`), distinct.
        steps: number of Adam steps; lr: its step size; sharpness: s above.

    Returns:
        (n, dim) points, detached, the dtype of ``init``.
    """
    require_count("steps", steps, minimum=0)
    lr, sharpness = require_positive("lr", lr), require_positive("sharpness", sharpness)
    if init.dim() != 2 or reference.shape != (init.shape[0], init.shape[0]):
        raise ValueError(f"init must be (n, dim) and reference (n, n); got "
                         f"{tuple(init.shape)} and {tuple(reference.shape)}")
    upper = torch.triu_indices(init.shape[0], init.shape[0], offset=1)
    target = reference[upper[0], upper[1]].to(init.dtype)
    points = init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([points], lr=lr)
    for _ in range(steps):
        difference = points[upper[0]] - points[upper[1]]
        log_ratio = torch.log(torch.linalg.vector_norm(difference, dim=-1) / target)
        loss = (torch.logsumexp(sharpness * log_ratio, 0)
                + torch.logsumexp(-sharpness * log_ratio, 0)) / sharpness
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return points.detach()


class Distortion(NamedTuple):
    """How far an embedding's distances are from the tree's, over all pairs of nodes.

    ``worst``: ``max(ratio) / min(ratio)`` with ``ratio = d_embedded / d_tree``, independent
    of the scale (1 is an isometry up to scale; infinite if two nodes coincide).
    ``mean``: the mean of ``|ratio / s - 1|`` with s the median ratio.
    """

    worst: float
    mean: float


def distortion(embedded: torch.Tensor, reference: torch.Tensor) -> Distortion:
    """Worst-case and mean distortion of the distances ``embedded`` against ``reference``.

    Args:
        embedded, reference: (n, n) distance matrices (reference > 0 off the diagonal).

    Returns:
        A :class:`Distortion`.
    """
    if embedded.shape != reference.shape or embedded.dim() != 2 or embedded.shape[0] < 2:
        raise ValueError(f"embedded and reference must be (n, n) matrices of one shape, n >= 2; "
                         f"got {tuple(embedded.shape)} and {tuple(reference.shape)}")
    upper = torch.triu_indices(*reference.shape, offset=1)
    ratio = (embedded[upper[0], upper[1]] / reference[upper[0], upper[1]]).double()
    if not torch.isfinite(ratio).all() or (ratio < 0).any():
        raise ValueError("distances must be finite and non-negative, reference > 0 off the "
                         "diagonal")
    smallest = ratio.min().item()
    worst = math.inf if smallest == 0 else ratio.max().item() / smallest
    scale = ratio.median()
    return Distortion(worst, (ratio / scale - 1).abs().mean().item())


def planar_lower_bound(branching: int, depth: int) -> float:
    """A lower bound on the worst-case distortion of ANY embedding of the balanced tree in R^2.

    Scale the embedding so that no distance shrinks (ratio >= 1) and let D be the largest
    ratio. The ``branching^depth`` leaves are at least 2 apart in the tree, so disks of radius
    1 around them are disjoint; they all lie within ``depth * D + 1`` of the root's image.
    Comparing areas, ``branching^depth <= (depth D + 1)^2``, so
    ``D >= (branching^(depth/2) - 1) / depth``.
    """
    require_count("branching", branching, minimum=2)
    require_count("depth", depth)
    return (branching ** (depth / 2) - 1) / depth


def reconstruction_metrics(distances: torch.Tensor, related: torch.Tensor,
                           chunk: int = 64) -> tuple[float, float]:
    """Mean rank and mean average precision (MAP) of recovering a relation from distances.

    For a node u and a node v related to it, the rank is 1 plus the number of nodes unrelated
    to u that lie closer to u than v (a tie counts one half), as in Nickel and Kiela (2017);
    mean rank averages over all related ordered pairs (1 is perfect). The average precision of
    u averages, over its related v, the fraction of related nodes among all nodes at distance
    at most d(u, v); MAP averages it over the nodes with at least one related node (1 is
    perfect).

    Args:
        distances: (n, n) distances; related: (n, n) bool relation, False on the diagonal.

    Returns:
        ``(mean_rank, map)``.
    """
    if related.dtype != torch.bool or related.shape != distances.shape or distances.dim() != 2:
        raise ValueError(f"related must be a bool (n, n) matrix like distances; got "
                         f"{related.dtype} {tuple(related.shape)} and {tuple(distances.shape)}")
    if related.diagonal().any():
        raise ValueError("related must be False on the diagonal (a node is not its own relative)")
    n = distances.shape[0]
    others = ~torch.eye(n, dtype=torch.bool, device=distances.device)
    rank_sum = pairs = precision_sum = 0.0
    nodes = 0
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        d, rel, valid = distances[rows], related[rows], others[rows]
        # [u, v, w]: compare d(u, w) with d(u, v)
        closer = (d[:, None, :] < d[:, :, None]) & valid[:, None, :]
        tied = (d[:, None, :] == d[:, :, None]) & valid[:, None, :]
        unrelated = (~rel & valid)[:, None, :]
        ranks = 1 + (closer & unrelated).sum(-1) + 0.5 * (tied & unrelated).sum(-1)
        within = closer | tied  # w at distance <= d(u, v), w != u
        precision = (within & rel[:, None, :]).sum(-1) / within.sum(-1).clamp_min(1)
        rank_sum += (ranks * rel).sum().item()
        pairs += rel.sum().item()
        has = rel.any(-1)
        precision_sum += ((precision * rel).sum(-1)[has] / rel.sum(-1)[has]).sum().item()
        nodes += has.sum().item()
    if pairs == 0:
        raise ValueError("related holds no pair")
    return rank_sum / pairs, precision_sum / nodes


def gromov_delta(distances: torch.Tensor) -> float:
    """Gromov's four-point delta: 0 for a tree metric, large for metrics far from any tree.

    For every four points the three sums ``d(x,y) + d(z,w)``, ``d(x,z) + d(y,w)``,
    ``d(x,w) + d(y,z)`` are compared; delta is half the largest gap between the largest sum
    and the second largest (Gromov, 1987). Costs O(n^4): meant for n up to about 60.

    Args:
        distances: (n, n) symmetric distances.

    Returns:
        delta as a float (divide by the diameter for a scale-free number).
    """
    if distances.dim() != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be (n, n); got {tuple(distances.shape)}")
    d = distances.double()
    delta = 0.0
    for w in range(d.shape[0]):  # Gromov products at base point w
        product = (d[:, w, None] + d[None, :, w] - d) / 2
        # max over z of min((x|z), (z|y)) minus (x|y), maximised over x, y
        reach = torch.minimum(product[:, :, None], product[None, :, :]).amax(1)
        delta = max(delta, (reach - product).max().item())
    return delta
