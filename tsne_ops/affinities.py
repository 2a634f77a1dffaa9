"""Affinities: the joint probabilities P that t-SNE matches, from the data.

t-SNE looks at the data only through P. Each point i gets a Gaussian
neighbourhood whose width is calibrated so that the conditional distribution
``P(j|i)`` has a given perplexity (an effective number of neighbours), and
``P = (P(j|i) + P(i|j)) / sum`` makes it symmetric. Everything after P (the
optimiser of :class:`tsne_ops.TSNE`, the loss of
:class:`tsne_ops.ParametricTSNE`, the KL of :mod:`tsne_ops.metrics`) starts
from the functions here, so that each P is built in one place:

* :func:`exact_joint_probabilities`: every pair (a dense ``[N, N]`` P), the
  exact method, the fastest there is up to about 10,000 points;
* :func:`sparse_joint_probabilities`: only each point's ``3 x perplexity``
  nearest neighbours (a ``tf.SparseTensor``), as every large-N t-SNE does;
  O(N k) memory, so it scales to the whole training set.

Both are thin compositions of the ops (``pairwise_squared_distance`` +
``joint_probabilities``; ``nearest_neighbors`` + ``knn_joint_probabilities``).
"""
import math

import tensorflow as tf

from tsne_ops import ops

__all__ = ["exact_joint_probabilities", "sparse_joint_probabilities", "default_n_neighbors"]


def exact_joint_probabilities(X, perplexity, precomputed=False):
    """The dense joint probabilities P of ``X`` over every pair.

    Args:
      X: ``[N, D]`` (or ``[B, N, D]``) data, float32 or float64; with
        ``precomputed``, ``[N, N]`` squared distances instead.
      perplexity: the target perplexity, in ``(0, N - 1)``.
      precomputed: ``X`` holds squared distances.

    Returns:
      ``P`` ``[N, N]`` (``[B, N, N]``) in ``X``'s dtype: symmetric, zero
      diagonal, summing to 1.
    """
    x = tf.convert_to_tensor(X)
    sq_dist = x if precomputed else ops.pairwise_squared_distance(x)
    return ops.joint_probabilities(sq_dist, perplexity)


def default_n_neighbors(n_samples, perplexity):
    """scikit-learn's neighbourhood for the sparse P: ``min(N - 1, int(3 perplexity + 1))``."""
    return int(min(n_samples - 1, math.floor(3.0 * perplexity + 1)))


def sparse_joint_probabilities(X, perplexity, n_neighbors=None, neighbors="exact"):
    """The joint probabilities P of ``X`` over each point's nearest neighbours.

    The exact ``n_neighbors`` nearest neighbours of every point (blocked, no
    N x N matrix), the perplexity search over their distances, then the
    symmetrisation, as scikit-learn's ``_joint_probabilities_nn``.

    Args:
      X: ``[N, D]`` (or ``[B, N, D]``) data, float32 or float64.
      perplexity: the target perplexity, in ``(0, n_neighbors)``.
      n_neighbors: neighbours per point (default :func:`default_n_neighbors`).
      neighbors: how they are found: ``'exact'`` or ``'auto'`` (both the
        exact ``nearest_neighbors`` op here).

    Returns:
      a canonical ``tf.SparseTensor`` P of dense shape ``[N, N]`` (``[B, N, N]``),
      symmetric, summing to 1 (per batch element).
    """
    if neighbors not in ("auto", "exact"):
        raise ValueError(f"neighbors must be 'auto' or 'exact', got neighbors={neighbors!r}")
    x = tf.convert_to_tensor(X)
    if n_neighbors is None:
        n_neighbors = default_n_neighbors(int(x.shape[-2]), perplexity)
    indices, sq_distances = ops.nearest_neighbors(x, n_neighbors)
    return ops.knn_joint_probabilities(indices, sq_distances, perplexity)
