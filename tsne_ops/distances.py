"""The distances P is calibrated on, for every input ``TSNE`` accepts.

t-SNE sees the data through squared distances: each point's Gaussian is
calibrated on them, over every other point (the exact method, a dense
``[N, N]`` matrix) or over its nearest neighbours (the large-N path). The
ops compute squared Euclidean distances of dense data themselves
(``pairwise_squared_distance``, ``nearest_neighbors``); everything else comes
here, with scikit-learn's conventions so that ``TSNE`` is a drop-in
replacement for ``sklearn.manifold.TSNE``:

* any ``metric`` that ``sklearn.metrics.pairwise_distances`` accepts (a name
  or a callable, with ``metric_params``): its distances are squared, as
  scikit-learn squares them (it calls the Euclidean ones "squared=True");
* ``metric='precomputed'``: ``X`` holds distances, also squared. A dense
  ``X`` is every distance; a sparse one is a neighbour graph whose stored
  entries are each point's candidate neighbours (scikit-learn's
  ``NearestNeighbors(metric='precomputed')`` picks the nearest of them and
  gives its errors when a row has too few);
* sparse data (``scipy.sparse``) with any metric, through scikit-learn.

This module needs no TensorFlow: it returns numpy arrays that
:mod:`tsne_ops.affinities` turns into P.
"""
import numpy as np
import scipy.sparse

__all__ = ["check_metric", "squared_distances", "nearest_neighbors", "graph_neighbors"]


def check_metric(metric, metric_params):
    """``metric``: 'precomputed', a callable, or a name
    ``sklearn.metrics.pairwise_distances`` accepts; ``metric_params``: a dict or None."""
    from sklearn.metrics import pairwise

    if not (callable(metric) or isinstance(metric, str)):
        raise ValueError(f"metric must be a string or a callable, got metric={metric!r}")
    # scikit-learn's TSNE validates against the same private list.
    valid = getattr(pairwise, "_VALID_METRICS", None)
    if isinstance(metric, str) and metric != "precomputed" and valid is not None \
            and metric not in valid:
        raise ValueError(f"metric must be 'precomputed', a callable or one of "
                         f"{sorted(valid)}, got metric={metric!r}")
    if metric_params is not None and not isinstance(metric_params, dict):
        raise ValueError(f"metric_params must be a dict or None, got metric_params={metric_params!r}")
    # NearestNeighbors (the large-N path, and scikit-learn's default method)
    # needs the covariance; pairwise_distances would estimate it from X. One
    # rule for every method: it is given.
    if metric == "mahalanobis" and not {"V", "VI"} & set(metric_params or {}):
        raise ValueError(f"metric_params: Must provide either V or VI for Mahalanobis distance "
                         f"(metric='mahalanobis', got metric_params={metric_params!r})")


def _check(distances, metric):
    """scikit-learn's check of computed distances, and ours for NaN and infinity."""
    where = "X" if metric == "precomputed" else f"metric={metric!r}"
    if not np.all(np.isfinite(distances)):
        raise ValueError(f"{where}: the distances contain NaN or infinity")
    if np.any(distances < 0):
        raise ValueError(f"{where}: All distances should be positive, the metric given is not "
                         f"correct (found a distance of {distances.min()!r})")
    return distances


def _squared(distances, metric):
    """The square of checked distances (in place: they are our own copy)."""
    where = "X" if metric == "precomputed" else f"metric={metric!r}"
    largest = distances.max() if distances.size else 0
    with np.errstate(over="ignore"):  # reported below, by name
        distances = np.square(_check(distances, metric), out=distances)
    if not np.all(np.isfinite(distances)):
        raise ValueError(f"{where}: the distances are too large to square in "
                         f"{distances.dtype.name} (the largest is {largest!r})")
    return distances


def squared_distances(X, metric="euclidean", metric_params=None):
    """The dense ``[N, N]`` squared distances of validated ``X`` (the exact method).

    ``X``: ``[N, D]`` data (dense or ``scipy.sparse``), or with
    ``metric='precomputed'`` a dense ``[N, N]`` distance matrix.
    Returns a new array, float32 or float64 as scikit-learn computes it.
    """
    if metric == "precomputed":
        if scipy.sparse.issparse(X):
            raise TypeError("X: a sparse precomputed distance matrix is a neighbour graph, "
                            "which has no dense squared distances; use the nearest-neighbour path")
        return _squared(np.array(X, copy=True), metric)
    from sklearn.metrics import pairwise_distances

    if metric == "euclidean" and not metric_params:
        # As scikit-learn: the squares straight from the Gram matrix.
        return _check(pairwise_distances(X, metric="euclidean", squared=True), metric)
    params = dict(metric_params or {})
    if metric == "mahalanobis" and "VI" not in params:
        # NearestNeighbors takes the covariance V, scipy's cdist its inverse
        params["VI"] = np.linalg.inv(params.pop("V"))
    return _squared(np.asarray(pairwise_distances(X, metric=metric, **params)), metric)


def nearest_neighbors(X, n_neighbors, metric="euclidean", metric_params=None):
    """Each point's ``n_neighbors`` nearest other points.

    ``X``: validated ``[N, D]`` data (dense or sparse), or with
    ``metric='precomputed'`` a ``[N, N]`` distance matrix: dense, or a sparse
    neighbour graph (:func:`graph_neighbors`). Data and dense distances go
    through scikit-learn's ``NearestNeighbors``, as in its ``TSNE``.

    Returns ``(indices [N, k] int64, squared distances [N, k])``, nearest
    first, the point itself excluded: the input of ``knn_joint_probabilities``.
    """
    if metric == "precomputed" and scipy.sparse.issparse(X):
        indices, distances = graph_neighbors(X, n_neighbors)
        return indices, _squared(distances, metric)
    from sklearn.neighbors import NearestNeighbors

    knn = NearestNeighbors(n_neighbors=n_neighbors, metric=metric, metric_params=metric_params)
    distances, indices = knn.fit(X).kneighbors()  # X=None: the point itself is left out
    return indices.astype(np.int64, copy=False), _squared(distances, metric)


def graph_neighbors(graph, n_neighbors):
    """The ``n_neighbors`` nearest of each row's stored entries in a sparse distance graph.

    The stored off-diagonal entries of row i are the distances from point i
    to its candidate neighbours (the diagonal is ignored, stored or not), as
    ``kneighbors_graph(X, n_neighbors, mode='distance')`` builds them; ties
    go to the smaller column. Unlike scikit-learn's
    ``NearestNeighbors(metric='precomputed')``, which asks for one entry
    more, a graph of exactly ``n_neighbors`` per row is enough.

    Returns ``(indices [N, k] int64, distances [N, k])``, nearest first.
    """
    graph = scipy.sparse.coo_matrix(graph)
    off = graph.row != graph.col
    rows, cols, values = graph.row[off], graph.col[off], graph.data[off]
    order = np.lexsort((cols, values, rows))  # by row, then distance, then column
    rows, cols, values = rows[order], cols[order], values[order]
    counts = np.bincount(rows, minlength=graph.shape[0])
    if counts.min() < n_neighbors:
        # scikit-learn's wording (its tests match it), counting the point itself
        raise ValueError(
            f"X: {n_neighbors + 1} neighbors per samples are required, but some samples have only "
            f"{counts.min() + 1} (counting the point itself: with metric='precomputed', each row "
            f"of a sparse X needs the distances to min(n_samples - 1, int(3 perplexity + 1)) = "
            f"{n_neighbors} other points; {int(np.sum(counts < n_neighbors))} rows have fewer)")
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < n_neighbors
    shape = (graph.shape[0], n_neighbors)
    return cols[keep].astype(np.int64).reshape(shape), values[keep].reshape(shape)
