"""Riemannian geometry for chapter 7: what the dot product assumes, and hyperbolic attention.

Submodules, in the order of the chapter:

- :mod:`qkv.geometry.surfaces`: the sphere, a rolled-up strip, and order violations;
- :mod:`qkv.geometry.halfplane`: the Poincaré half-plane and the Cayley map to the disk;
- :mod:`qkv.geometry.poincare`: the Poincaré ball (Möbius addition, distance, exp/log maps);
- :mod:`qkv.geometry.lorentz`: the Lorentz and Klein models, the Einstein midpoint;
- :mod:`qkv.geometry.trees`: trees, Sarkar's construction, distortion, reconstruction scores;
- :mod:`qkv.geometry.learning`: Nickel-Kiela embeddings trained with Riemannian SGD;
- :mod:`qkv.geometry.attention`: hyperbolic attention;
- :mod:`qkv.geometry.tree_attention`: learned attention over a tree in three geometries;
- :mod:`qkv.geometry.hyperbolicity`: Gromov's delta relative to the diameter, on samples.

Conventions: points are tensors (..., D) of one floating dtype (float32 or float64), batched
over the leading axes; ``c > 0`` is the curvature parameter, meaning curvature ``-c``. A point
outside the ball, a half-plane point with y <= 0, or c <= 0 raises a ``ValueError``; only
:func:`project` moves points back inside the ball, and the training and attention code call it
explicitly.
"""

from qkv.geometry.attention import (
    GATES,
    HyperbolicAttention,
    beta_for_perplexity,
    hyperbolic_attention,
)
from qkv.geometry.halfplane import (
    cayley_to_disk,
    disk_to_halfplane,
    halfplane_distance,
    halfplane_geodesic,
)
from qkv.geometry.hyperbolicity import (
    DeltaEstimate,
    delta_at,
    delta_hyperbolicity,
    relative_delta,
)
from qkv.geometry.learning import (
    GEOMETRIES,
    TrainedEmbedding,
    nickel_kiela_loss,
    riemannian_sgd_step,
    train_tree_embedding,
)
from qkv.geometry.lorentz import (
    einstein_midpoint,
    klein_to_poincare,
    lorentz_distance,
    lorentz_inner,
    lorentz_to_poincare,
    poincare_to_klein,
    poincare_to_lorentz,
)
from qkv.geometry.poincare import (
    DEFAULT_EPS,
    conformal_factor,
    expmap,
    expmap0,
    logmap,
    logmap0,
    mobius_add,
    poincare_distance,
    poincare_geodesic,
    project,
    riemannian_gradient,
    tangent_midpoint,
)
from qkv.geometry.surfaces import order_violations, roll_up_strip, sphere_distance
from qkv.geometry.trees import (
    Distortion,
    Tree,
    ancestor_matrix,
    balanced_tree,
    classical_mds,
    distortion,
    gromov_delta,
    minimize_distortion,
    planar_lower_bound,
    radial_layout,
    reconstruction_metrics,
    related_mask,
    sarkar_embedding,
    tree_distances,
)
from qkv.geometry.tree_attention import (
    SCORES,
    TreeAttention,
    TreeAttentionResult,
    ancestor_relation,
    num_parameters,
    train_tree_attention,
)

__all__ = [
    "GATES", "HyperbolicAttention", "beta_for_perplexity", "hyperbolic_attention",
    "cayley_to_disk", "disk_to_halfplane", "halfplane_distance", "halfplane_geodesic",
    "GEOMETRIES", "TrainedEmbedding", "nickel_kiela_loss", "riemannian_sgd_step",
    "train_tree_embedding",
    "einstein_midpoint", "klein_to_poincare", "lorentz_distance", "lorentz_inner",
    "lorentz_to_poincare", "poincare_to_klein", "poincare_to_lorentz",
    "DEFAULT_EPS", "conformal_factor", "expmap", "expmap0", "logmap", "logmap0", "mobius_add",
    "poincare_distance", "poincare_geodesic", "project", "riemannian_gradient", "tangent_midpoint",
    "DeltaEstimate", "delta_at", "delta_hyperbolicity", "relative_delta",
    "SCORES", "TreeAttention", "TreeAttentionResult", "ancestor_relation", "num_parameters",
    "train_tree_attention",
    "order_violations", "roll_up_strip", "sphere_distance",
    "Distortion", "Tree", "ancestor_matrix", "balanced_tree", "classical_mds", "distortion",
    "gromov_delta", "minimize_distortion", "planar_lower_bound", "radial_layout",
    "reconstruction_metrics",
    "related_mask", "sarkar_embedding", "tree_distances",
]
