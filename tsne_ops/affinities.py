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
:func:`joint_probabilities_of` is the entry point for everything else
``TSNE`` accepts (other metrics, sparse data, precomputed distances and
neighbour graphs): the distances come from :mod:`tsne_ops.distances`, P from
the same ops.
"""
import math

import scipy.sparse
import tensorflow as tf

from tsne_ops import distances, ops

__all__ = ["exact_joint_probabilities", "sparse_joint_probabilities", "default_n_neighbors",
           "joint_probabilities_of"]


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


def sparse_joint_probabilities(X, perplexity, n_neighbors=None):
    """The joint probabilities P of ``X`` over each point's nearest neighbours.

    The exact ``n_neighbors`` nearest neighbours of every point (blocked, no
    N x N matrix), the perplexity search over their distances, then the
    symmetrisation, as scikit-learn's ``_joint_probabilities_nn``.

    Args:
      X: ``[N, D]`` (or ``[B, N, D]``) data, float32 or float64.
      perplexity: the target perplexity, in ``(0, n_neighbors)``.
      n_neighbors: neighbours per point (default :func:`default_n_neighbors`).

    Returns:
      a canonical ``tf.SparseTensor`` P of dense shape ``[N, N]`` (``[B, N, N]``),
      symmetric, summing to 1 (per batch element).
    """
    x = tf.convert_to_tensor(X)
    if n_neighbors is None:
        n_neighbors = default_n_neighbors(int(x.shape[-2]), perplexity)
    indices, sq_distances = ops.nearest_neighbors(x, n_neighbors)
    return ops.knn_joint_probabilities(indices, sq_distances, perplexity)


def joint_probabilities_of(X, perplexity, metric="euclidean", metric_params=None, sparse=False,
                           n_neighbors=None):
    """P of any input ``TSNE`` accepts, over every pair or over nearest neighbours.

    Dense Euclidean data goes straight to the ops (:func:`exact_joint_probabilities`,
    :func:`sparse_joint_probabilities`); any other ``metric`` (a name or a
    callable ``sklearn.metrics.pairwise_distances`` accepts, with
    ``metric_params``), sparse data and ``metric='precomputed'`` get their
    squared distances from :mod:`tsne_ops.distances`, with scikit-learn's
    conventions (distances are squared; a sparse precomputed ``X`` is a
    neighbour graph, P over the nearest of its stored entries).

    Args:
      X: validated ``[N, D]`` data (numpy or ``scipy.sparse``), or with
        ``metric='precomputed'`` an ``[N, N]`` distance matrix (a sparse one
        only with ``sparse=True``).
      perplexity: the target perplexity, in ``(0, N - 1)`` (``(0, n_neighbors)``
        with ``sparse``).
      sparse: P over each point's ``n_neighbors`` nearest neighbours (default
        :func:`default_n_neighbors`), a ``tf.SparseTensor``; otherwise dense
        ``[N, N]``.

    Returns:
      P, symmetric, zero diagonal, summing to 1, in the distances' dtype.
    """
    plain = metric == "euclidean" and not metric_params and not scipy.sparse.issparse(X)
    graph = metric == "precomputed" and scipy.sparse.issparse(X)
    if n_neighbors is None:
        n_neighbors = default_n_neighbors(X.shape[0], perplexity)
    if not sparse or (n_neighbors >= X.shape[0] - 1 and not graph):
        # Every other point is a neighbour (or the caller wants every pair):
        # the dense P, the same numbers whichever method asked for it.
        if plain:
            P = exact_joint_probabilities(X, perplexity)
        else:
            d2 = distances.squared_distances(X, metric, metric_params)
            P = exact_joint_probabilities(d2, perplexity, precomputed=True)
        return tf.sparse.from_dense(P) if sparse else P
    if plain:
        return sparse_joint_probabilities(X, perplexity, n_neighbors)
    indices, d2 = distances.nearest_neighbors(X, n_neighbors, metric, metric_params)
    return ops.knn_joint_probabilities(indices, d2, perplexity)
