"""Approximate t-SNE repulsions for the sparse (large-N) path.

The t-SNE gradient splits into an attraction over P's stored entries, cheap
for a sparse P, and a repulsion over every pair of points, which costs O(N^2)
when computed exactly. With ``a = dof``, ``u_ij = 1 / (1 + |y_i - y_j|^2 / a)``
and ``w_ij = u_ij^((a + 1) / 2)``, the repulsion is the pair of sums::

    R_i = sum_{j != i} w_ij u_ij (y_i - y_j)        Z = sum_{i != j} w_ij

and the gradient is ``(2 (a + 1) / a) (exaggeration A_i - s R_i / Z)``. The
functions here approximate ``(R, Z)`` in less than O(N^2); each has the
signature ``f(y, dof, **options) -> (R, Z)`` of the method registry that
``tsne_gradient(p_sparse, y, method=...)`` dispatches through.
"""
import tensorflow as tf

from tsne_ops.ops import _batched, _float_attr, _ops, _scalar, _unbatch

__all__ = ["barnes_hut_repulsion"]


def barnes_hut_repulsion(y, dof=1.0, angle=0.5, name=None):
    """The t-SNE repulsion ``(R, Z)`` by Barnes-Hut (CPU).

    The points go into a tree of cubic cells, a quadtree in 2D and an octree
    in 3D (a binary tree in 1D). Seen from point ``i``, a cell of width ``w``
    whose centre of mass lies at distance ``r`` acts as one body of all its
    points when ``w / r < angle`` (scikit-learn's criterion), so each point
    visits O(log N) cells instead of N points. The body carries the cell's
    second moment as well as its mass (a quadrupole correction), so at the
    default 0.5 the relative error of ``R`` is about 1e-3 (scikit-learn's
    monopole: about 1e-2); ``angle = 0`` is exact. Self-interaction is
    excluded exactly, and coincident points share one leaf, so duplicates do
    not deepen the tree. Deterministic whatever the thread count.

    On a GPU there is no tree kernel: use the exact repulsion
    (``tsne_gradient(p_sparse, y, method='exact')``), which the GPU runs fast.

    Args:
      y: ``[B, N, d]`` (or ``[N, d]``) embedding, float32 or float64, finite,
        ``d`` in {1, 2, 3}, ``N >= 2``.
      dof: Student-t degrees of freedom, > 0.
      angle: the Barnes-Hut trade-off theta, >= 0: larger is faster and less
        accurate.

    Returns:
      ``(R, Z)``: ``R`` shaped like ``y``, ``Z`` ``[B]`` (a scalar for rank-2
      ``y``).
    """
    with tf.name_scope(name or "barnes_hut_repulsion"):
        y, squeeze = _batched(y, "y", "[n, d]")
        angle = _float_attr(angle, "angle")
        with tf.device("/CPU:0"):  # the op has a CPU kernel only
            r, z = _ops.tsne_barnes_hut_repulsion(y, _scalar(dof, "dof", y.dtype), angle=angle)
        return _unbatch(r, squeeze), _unbatch(z, squeeze)


tf.no_gradient("TSNE>BarnesHutRepulsion")
