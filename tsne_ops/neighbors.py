"""Nearest neighbours of the data: the one place the sparse P's neighbourhoods come from.

t-SNE beyond 10,000 points keeps P only over each point's ``k = 3 x
perplexity`` nearest neighbours. :func:`nearest_neighbors` finds them, for
:func:`tsne_ops.affinities.sparse_joint_probabilities` and so for every
estimator that builds a sparse P:

* ``'exact'``: the blocked exact search of the op
  :func:`tsne_ops.nearest_neighbors` (O(N^2 D) work, O(N k) memory; ties to
  the smaller index, equal to scikit-learn's brute force);
* ``'approx'``: faiss-cpu's inverted-file index ``IndexIVFFlat`` with
  ``nlist = sqrt(N)`` cells, ``nprobe = 20`` of them searched per query
  (about 98% of the true neighbours on MNIST, see docs/performance.md); an
  optional extra, ``pip install faiss-cpu``;
* ``'auto'``: exact up to :data:`AUTO_EXACT_MAX_N` points, where the exact
  search is still a small share of a t-SNE run, approximate above when
  faiss is installed (else exact).

Both return the layout of the op: ``indices`` ``[N, k]`` int64 and
``sq_distances`` ``[N, k]`` in ``X``'s dtype, each row sorted by increasing
distance (ties by index), the point itself excluded. TensorFlow is
imported only when a search runs.
"""
import math

import numpy as np

__all__ = ["nearest_neighbors", "resolve_neighbors", "AUTO_EXACT_MAX_N", "NEIGHBORS"]

NEIGHBORS = ("auto", "exact", "approx")

# Above this N, neighbors='auto' uses the approximate search (when faiss is
# installed). At 70,000 x 50 (k = 90, 2 threads) the exact op took 0.57x the
# time of the IVF search (benchmarks/results/bench_knn.json); the exact
# search grows as N^2 and the IVF one as N^1.5 (nprobe cells of N / sqrt(N)
# points per query), so they meet near (1 / 0.57)^2 x 70,000, about 220,000
# points: below 200,000 the exact search is no slower.
AUTO_EXACT_MAX_N = 200_000

# faiss IndexIVFFlat settings (nlist = sqrt(N) cells, nprobe of them searched).
IVF_NPROBE = 20


def _import_faiss():
    try:
        import faiss  # noqa: PLC0415 (an optional extra)
    except ImportError as e:
        raise ImportError(
            "neighbors='approx' needs faiss-cpu, an optional extra: pip install faiss-cpu"
        ) from e
    return faiss


def _faiss_available():
    try:
        _import_faiss()
    except ImportError:
        return False
    return True


def resolve_neighbors(n_samples, neighbors="auto"):
    """The search ``neighbors`` stands for at ``n_samples`` points: ``'exact'`` or ``'approx'``.

    Raises ValueError for a value other than ``'auto'``, ``'exact'``, ``'approx'``.
    """
    if not isinstance(neighbors, str) or neighbors not in NEIGHBORS:
        raise ValueError(f"neighbors must be one of {', '.join(map(repr, NEIGHBORS))}, "
                         f"but neighbors = {neighbors!r}")
    if neighbors == "auto":
        return "approx" if n_samples > AUTO_EXACT_MAX_N and _faiss_available() else "exact"
    return neighbors


def nearest_neighbors(X, k, neighbors="auto"):
    """The ``k`` nearest neighbours of every row of ``X`` among the other rows.

    Args:
      X: ``[N, D]`` data, float32 or float64 (``[B, N, D]`` for ``'exact'``).
      k: neighbours per point, in ``[1, N - 1]``.
      neighbors: ``'exact'``, ``'approx'`` (faiss IVF) or ``'auto'`` (see the module).

    Returns:
      ``(indices, sq_distances)`` tensors ``[N, k]`` int64 and ``[N, k]`` in
      ``X``'s dtype, sorted by increasing distance, ties by the smaller index.
    """
    import tensorflow as tf

    from tsne_ops import ops

    x = tf.convert_to_tensor(X)
    n = int(x.shape[-2]) if x.shape.rank is not None and x.shape.rank >= 2 else 0
    method = resolve_neighbors(n, neighbors)
    if method == "exact":
        return ops.nearest_neighbors(x, k)
    if x.shape.rank != 2:
        raise ValueError(f"neighbors='approx' takes one [N, D] array, but X has shape {list(x.shape)}")
    if x.dtype not in (tf.float32, tf.float64):
        raise TypeError(f"X must be float32 or float64, but X has dtype {x.dtype.name}")
    kk = int(k)
    if not 1 <= kk <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}] (n - 1 for the neighbours of X among its own {n} "
                         f"points), but k = {k}")
    idx, d2 = _approximate(x.numpy(), kk)
    return tf.constant(idx), tf.constant(d2.astype(x.dtype.as_numpy_dtype))


def _approximate(x, k):
    """faiss IndexIVFFlat search of x among itself; (indices, sq_distances) as numpy, self dropped."""
    import tensorflow as tf

    from tsne_ops import ops

    faiss = _import_faiss()
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"X must be finite, but X[{bad[0]}, {bad[1]}] = {x[tuple(bad)]}")
    n, dim = x.shape
    # Centred float32: faiss computes |x|^2 + |y|^2 - 2 x.y in float32, which
    # cancels to eps |x|^2; centring makes that eps times the data's spread.
    xc = np.ascontiguousarray(x - x.mean(axis=0), dtype=np.float32)
    nlist = max(1, int(math.sqrt(n)))
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    before = faiss.omp_get_max_threads()
    if threads > 0:
        faiss.omp_set_num_threads(threads)
    try:
        quantizer = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist)
        index.train(xc)
        index.add(xc)
        index.nprobe = min(nlist, IVF_NPROBE)
        d2, idx = index.search(xc, k + 1)
    finally:
        faiss.omp_set_num_threads(before)
    # Drop each query itself (not always first when there are duplicates),
    # else the last; rows the probed cells could not fill (-1) are searched
    # exactly instead.
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    idx = idx[~is_self].reshape(n, k)
    d2 = np.maximum(d2[~is_self].reshape(n, k), 0.0)
    short = np.flatnonzero((idx < 0).any(axis=1))
    if short.size:
        ei, ed = ops.nearest_neighbors(x[short], k + 1, y=x)
        ei, ed = ei.numpy(), ed.numpy()
        keep = ei != short[:, None]
        keep[keep.all(axis=1), -1] = False
        idx[short] = ei[keep].reshape(len(short), k)
        d2[short] = ed[keep].reshape(len(short), k)
    order = np.lexsort((idx, d2), axis=1)
    return (np.take_along_axis(idx, order, axis=1).astype(np.int64),
            np.take_along_axis(d2, order, axis=1))
