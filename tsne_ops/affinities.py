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
  O(N k) memory, so it scales to the whole training set. The neighbours
  come from :func:`tsne_ops.neighbors.nearest_neighbors` (exact, or
  approximate through faiss at large N).

Both are thin compositions of the ops (``pairwise_squared_distance`` +
``joint_probabilities``; a neighbour search + ``knn_joint_probabilities``).
:func:`exact_joint_probabilities_numpy` is the first without TensorFlow (the
same kernels through the pybind11 module, numpy in and out): the P of
:class:`tsne_ops.TSNE` on the CPU. This module imports TensorFlow only when a
TensorFlow function runs.
:func:`joint_probabilities_of` is the entry point for everything else
``TSNE`` accepts (other metrics, sparse data, precomputed distances and
neighbour graphs): the distances come from :mod:`tsne_ops.distances`, P from
the same ops.
"""
import math

import scipy.sparse

from tsne_ops import distances

__all__ = ["exact_joint_probabilities", "exact_joint_probabilities_numpy",
           "sparse_joint_probabilities", "default_n_neighbors", "joint_probabilities_of"]


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
    import tensorflow as tf

    from tsne_ops import ops

    x = tf.convert_to_tensor(X)
    sq_dist = x if precomputed else ops.pairwise_squared_distance(x)
    return ops.joint_probabilities(sq_dist, perplexity)


def exact_joint_probabilities_numpy(X, perplexity, precomputed=False):
    """:func:`exact_joint_probabilities` without TensorFlow: the same kernels
    (``pairwise_squared_distance``, ``joint_probabilities``) through the
    pybind11 module ``tsne_ops._tsne_kernels``, on the CPU.

    Args:
      X: ``[N, D]`` (or ``[B, N, D]``) numpy data, float32 or float64; with
        ``precomputed``, ``[N, N]`` squared distances instead.
      perplexity: the target perplexity, in ``(0, N - 1)``.
      precomputed: ``X`` holds squared distances.

    Returns:
      ``P`` as a numpy array in ``X``'s dtype, equal to
      :func:`exact_joint_probabilities`'s.
    """
    from tsne_ops import _tsne_kernels as tk
    from tsne_ops._native import OP_AFFINITY_TOLERANCE, as_kernel_array, float32_toward_zero

    x = as_kernel_array(X)
    sq_dist = x if precomputed else tk.pairwise_squared_distance(x)
    # The op's attributes are float32: the same perplexity and tolerance.
    return tk.joint_probabilities(sq_dist, float32_toward_zero(perplexity),
                                  tolerance=OP_AFFINITY_TOLERANCE)


def default_n_neighbors(n_samples, perplexity):
    """scikit-learn's neighbourhood for the sparse P: ``min(N - 1, int(3 perplexity + 1))``."""
    return int(min(n_samples - 1, math.floor(3.0 * perplexity + 1)))


def sparse_joint_probabilities(X, perplexity, n_neighbors=None, neighbors="auto"):
    """The joint probabilities P of ``X`` over each point's nearest neighbours.

    The ``n_neighbors`` nearest neighbours of every point (no N x N matrix),
    the perplexity search over their distances, then the symmetrisation, as
    scikit-learn's ``_joint_probabilities_nn``.

    Args:
      X: ``[N, D]`` (or, exact only, ``[B, N, D]``) data, float32 or float64.
      perplexity: the target perplexity, in ``(0, n_neighbors)``.
      n_neighbors: neighbours per point (default :func:`default_n_neighbors`).
      neighbors: ``'exact'``, ``'approx'`` (faiss IVF, ``pip install faiss-cpu``)
        or ``'auto'``: exact up to ``tsne_ops.neighbors.AUTO_EXACT_MAX_N``
        points, approximate above when faiss is installed.

    Returns:
      a canonical ``tf.SparseTensor`` P of dense shape ``[N, N]`` (``[B, N, N]``),
      symmetric, summing to 1 (per batch element).
    """
    import tensorflow as tf

    from tsne_ops import neighbors as _neighbors
    from tsne_ops import ops

    x = tf.convert_to_tensor(X)
    if n_neighbors is None:
        n_neighbors = default_n_neighbors(int(x.shape[-2]), perplexity)
    indices, sq_distances = _neighbors.nearest_neighbors(x, n_neighbors, neighbors=neighbors)
    return ops.knn_joint_probabilities(indices, sq_distances, perplexity)


def joint_probabilities_of(X, perplexity, metric="euclidean", metric_params=None, sparse=False,
                           n_neighbors=None, numpy=False, neighbors="auto"):
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
      neighbors: how :func:`sparse_joint_probabilities` finds the neighbours
        of dense Euclidean data.
      numpy: a dense P as a numpy array from the kernels without TensorFlow
        (:func:`exact_joint_probabilities_numpy`); only with ``sparse=False``.

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
        dense = exact_joint_probabilities_numpy if numpy and not sparse else exact_joint_probabilities
        if plain:
            P = dense(X, perplexity)
        else:
            d2 = distances.squared_distances(X, metric, metric_params)
            P = dense(d2, perplexity, precomputed=True)
        if not sparse:
            return P
        import tensorflow as tf

        return tf.sparse.from_dense(P)
    if plain:
        return sparse_joint_probabilities(X, perplexity, n_neighbors, neighbors=neighbors)
    from tsne_ops import ops

    indices, d2 = distances.nearest_neighbors(X, n_neighbors, metric, metric_params)
    return ops.knn_joint_probabilities(indices, d2, perplexity)
