"""Python wrappers for the tsne_ops kernels, and their registered gradients.

Every op takes a leading batch dimension ``[B, ...]``; a rank-2 input is a
batch of one, and then the result has no batch dimension either. Inputs must
be float32 or float64 (the same for every tensor argument of a call).
"""
import numpy as np
import tensorflow as tf

from tsne_ops._loader import load_op_library

_ops = load_op_library()

__all__ = [
    "pairwise_squared_distance",
    "perplexity_affinities",
    "joint_probabilities",
    "knn_joint_probabilities",
    "tsne_gradient",
    "tsne_loss",
    "fft_repulsion",
    "register_repulsion",
    "nearest_neighbors",
    "build_info",
]


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _batched(value, name, inner_rank_name, dtype=None):
    """Converts `value` to a float tensor of rank 3; returns (tensor, was_rank_2)."""
    if dtype is not None and isinstance(value, (list, tuple)):
        t = tf.convert_to_tensor(value, dtype_hint=dtype)  # plain Python numbers
    else:
        t = tf.convert_to_tensor(value)
    if t.dtype not in (tf.float32, tf.float64):
        raise _invalid(f"{name} must be float32 or float64, but has dtype {t.dtype.name}")
    if dtype is not None and t.dtype != dtype:
        raise _invalid(
            f"{name} must have the same dtype as the first argument ({dtype.name}), "
            f"but has dtype {t.dtype.name}"
        )
    rank = t.shape.rank
    if rank is None:
        raise _invalid(f"{name} must have a known rank (2 or 3)")
    if rank == 2:
        return t[tf.newaxis], True
    if rank == 3:
        return t, False
    raise _invalid(
        f"{name} must be rank 2 {inner_rank_name} or rank 3 [batch, ...], "
        f"but has shape {t.shape}"
    )


def _unbatch(t, squeeze):
    return t[0] if squeeze else t


def _positive_float(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _invalid(f"{name} must be a number, but is {value!r}") from None
    return v


def _scalar(value, name, dtype):
    """A scalar of `dtype` (Python numbers, numpy scalars, tensors, variables)."""
    if tf.is_tensor(value) or isinstance(value, tf.Variable):
        return tf.cast(value, dtype)
    return tf.constant(_positive_float(value, name), dtype)


def pairwise_squared_distance(x, y=None, name=None):
    """Squared Euclidean distances between points, batch by batch.

    Args:
      x: ``[B, N, D]`` (or ``[N, D]``) points.
      y: optional ``[B, M, D]`` (or ``[M, D]``) points. Without it, the
        self-distance matrix of ``x``: exactly symmetric, with an exact zero
        diagonal and no negative entry.

    Returns:
      ``[B, N, M]`` (``[N, M]`` for rank-2 input) with
      ``out[b, i, j] = |x[b, i] - y[b, j]|^2``. Differentiable in ``x`` and ``y``.
    """
    with tf.name_scope(name or "pairwise_squared_distance"):
        x, squeeze = _batched(x, "x", "[n, dim]")
        if y is None:
            return _unbatch(_ops.tsne_squared_distance(x), squeeze)
        y, squeeze_y = _batched(y, "y", "[m, dim]", dtype=x.dtype)
        if squeeze != squeeze_y:
            raise _invalid(
                f"x and y must have the same rank, but have shapes {x.shape} and {y.shape}"
            )
        return _unbatch(_ops.tsne_cross_squared_distance(x, y), squeeze)


def perplexity_affinities(sq_dist, perplexity, name=None):
    """Conditional affinities ``P(j|i)`` calibrated to a perplexity.

    For each row i, a search on the precision ``beta_i`` makes the entropy of
    ``P(j|i) ∝ exp(-beta_i d_ij)`` (``j != i``) equal ``log(perplexity)`` to
    1e-5 nats. Rows sum to 1 and the diagonal is zero. Not differentiable.

    Args:
      sq_dist: ``[B, N, N]`` (or ``[N, N]``) squared distances.
      perplexity: the target perplexity, in ``(0, N - 1)``.

    Returns:
      ``(p_conditional [B, N, N], beta [B, N])``.
    """
    with tf.name_scope(name or "perplexity_affinities"):
        d, squeeze = _batched(sq_dist, "sq_dist", "[n, n]")
        p, beta = _ops.tsne_perplexity_affinities(
            d, perplexity=_positive_float(perplexity, "perplexity")
        )
        return _unbatch(p, squeeze), _unbatch(beta, squeeze)


def joint_probabilities(sq_dist, perplexity, name=None):
    """The symmetric joint probabilities P that t-SNE matches.

    ``p_ij = max((P(j|i) + P(i|j)) / sum, eps)`` for ``i != j`` (eps = 2.2e-16, as
    scikit-learn's ``_joint_probabilities``) and ``p_ii = 0``; each batch sums
    to 1. Not differentiable.

    Args:
      sq_dist: ``[B, N, N]`` (or ``[N, N]``) squared distances.
      perplexity: the target perplexity, in ``(0, N - 1)``.

    Returns:
      ``P`` of the same shape.
    """
    with tf.name_scope(name or "joint_probabilities"):
        d, squeeze = _batched(sq_dist, "sq_dist", "[n, n]")
        p = _ops.tsne_joint_probabilities(d, perplexity=_positive_float(perplexity, "perplexity"))
        return _unbatch(p, squeeze)


def knn_joint_probabilities(indices, sq_distances, perplexity, name=None):
    """Symmetric joint probabilities over a k-nearest-neighbour graph, sparse.

    The large-N form of ``joint_probabilities``: each row's conditional
    ``P(j|i)`` over its k neighbours only, calibrated by the same search (and
    tolerance), then ``P = (P_cond + P_cond^T) / sum`` as scikit-learn's
    ``_joint_probabilities_nn``. Rows whose perplexity cannot be reached (more
    than ``perplexity`` neighbours tied at the smallest distance) keep their
    closest precision, which spreads their mass over the tied points, and are
    counted in a logged warning. With ``k = N - 1`` the result equals
    ``joint_probabilities`` of the dense distances, except that entries below
    that op's 2.2e-16 floor are kept as they are. Not differentiable.

    Args:
      indices: ``[B, N, k]`` (or ``[N, k]``) int64 neighbours of each point:
        distinct, in ``[0, N)``, not the point itself (as
        ``NearestNeighbors.kneighbors()`` returns them).
      sq_distances: ``[B, N, k]`` (or ``[N, k]``) their squared distances.
      perplexity: the target perplexity, in ``(0, k)``.

    Returns:
      A ``tf.SparseTensor`` of dense shape ``[B, N, N]`` (``[N, N]`` for
      rank-2 input) in canonical row-major order, symmetric, each batch
      summing to 1, stored over the graph and its transpose.
    """
    with tf.name_scope(name or "knn_joint_probabilities"):
        d2, squeeze = _batched(sq_distances, "sq_distances", "[n, k]")
        idx = tf.convert_to_tensor(indices)
        if idx.dtype != tf.int64:
            raise _invalid(f"indices must be int64, but has dtype {idx.dtype.name}")
        if idx.shape.rank != d2.shape.rank - (1 if squeeze else 0):
            raise _invalid(
                f"indices and sq_distances must have the same shape, but have shapes "
                f"{idx.shape} and {tf.convert_to_tensor(sq_distances).shape}"
            )
        if squeeze:
            idx = idx[tf.newaxis]
        p_idx, p_val, p_shape = _ops.tsne_knn_joint_probabilities(
            idx, d2, perplexity=_positive_float(perplexity, "perplexity")
        )
        if squeeze:
            return tf.SparseTensor(p_idx[:, 1:], p_val, p_shape[1:])
        return tf.SparseTensor(p_idx, p_val, p_shape)


# ------------------------------------------------- approximate repulsion --
#
# A repulsion method maps (y [B, N, d], dof, **options) to (R [B, N, d],
# Z [B]) with R_i = sum_{j != i} w_ij u_ij (y_i - y_j) and
# Z = sum_{i != j} w_ij; SparseTsneGradientFromRepulsion adds the attraction
# over P's stored entries. 'exact' is not in the registry: it stays on the
# fused SparseTsneGradient kernel.

class _Repulsion:
    __slots__ = ("fn", "options", "dims")

    def __init__(self, fn, options, dims):
        self.fn, self.options, self.dims = fn, dict(options), tuple(dims)


_REPULSIONS = {}


def register_repulsion(method, fn, options=None, dims=None):
    """Registers an approximate repulsion for ``tsne_gradient`` and ``tsne_loss``.

    Args:
      method: the name users pass as ``method=``.
      fn: ``fn(y, dof, **options) -> (R, Z)`` for ``y`` ``[B, N, d]`` (rank 3,
        float32 or float64) and ``dof`` a scalar tensor of ``y``'s dtype; ``R``
        shaped like ``y`` and ``Z`` ``[B]``, both in ``y``'s dtype. Not
        differentiated (the loss's gradient in ``y`` is built from them).
      options: ``{name: default}`` of the keyword options ``fn`` accepts; any
        other keyword is rejected before ``fn`` runs.
      dims: the embedding dimensions ``d`` the method supports (None: any).
    """
    _REPULSIONS[method] = _Repulsion(fn, options or {}, dims or ())


def _methods():
    return ("exact",) + tuple(_REPULSIONS)


def _check_method(method, options=None):
    """The method's registry entry (None for 'exact') and its full options."""
    if method == "exact":
        if options:
            raise _invalid(
                f"method 'exact' takes no options, but got {sorted(options)}"
            )
        return None, {}
    if not isinstance(method, str) or method not in _REPULSIONS:
        raise _invalid(f"method must be one of {_methods()}, but is {method!r}")
    entry = _REPULSIONS[method]
    unknown = sorted(set(options or {}) - set(entry.options))
    if unknown:
        raise _invalid(
            f"method {method!r} does not take option(s) {unknown}; its options are "
            f"{sorted(entry.options)}"
        )
    return entry, {**entry.options, **(options or {})}


def _check_method_dims(method, entry, y):
    d = y.shape[-1]
    if entry.dims and d is not None and d not in entry.dims:
        raise _invalid(
            f"method {method!r} supports embedding dimensions d in {entry.dims}, but y has "
            f"d = {d} (shape {y.shape})"
        )


# Grid sizes: the number of boxes per dimension is 5-smooth (only factors 2,
# 3 and 5), so the FFT length 2 p n_boxes (zero-padded to twice the grid for
# a linear, not circular, convolution) is one that TensorFlow's FFTs (DUCC
# on the CPU, cuFFT on the GPU) run at full speed, as FIt-SNE's list of
# allowed sizes does. The caps bound the FFT: 6 x 20000 in 1D, 3840 x 3840 in
# 2D (beyond them the boxes widen with the embedding).
# The default box is half as wide as openTSNE's (1): with 3 nodes the error
# falls as the cube of the width, and at width 1 the repulsion of a clustered
# embedding 150-250 wide is off by 2-6% (measured; 0.04-0.8% at width 0.5).
_FFT_MAX_INTERVALS = {1: 20000, 2: 640}
# 1D grids are cheap (6 x 20000 nodes at most): finer boxes there, for
# sparse 1D embeddings (N = 500, sd 50: 1.05e-2 at width 0.5, measured).
_FFT_INTERVAL_WIDTH = {1: 0.25, 2: 0.5}
_SMOOTH_SIZES = np.array(sorted(
    2 ** i * 3 ** j * 5 ** k
    for i in range(16) for j in range(10) for k in range(7)
    if 2 ** i * 3 ** j * 5 ** k <= max(_FFT_MAX_INTERVALS.values())
), np.int64)
_FFT_OPTIONS = {
    "interpolation_points": 3,
    "min_intervals": 50,
    "interval_width": None,
    "max_intervals": None,
}


def _fft_grid(y, p, min_intervals, interval_width, max_intervals):
    """(origin [B, d], box_width [B], n_boxes, fft_length) covering every
    batch element's points; one n_boxes (the grid's shape) for the batch."""
    lo = tf.reduce_min(y, axis=1)
    hi = tf.reduce_max(y, axis=1)
    extent = tf.reduce_max(hi - lo, axis=1)  # square boxes: the widest side
    widest = tf.cast(tf.reduce_max(extent), tf.float64)
    want = tf.maximum(tf.cast(min_intervals, tf.float64), tf.math.ceil(widest / interval_width))
    want = tf.cast(tf.minimum(want, float(max_intervals)), tf.int64)
    # The smallest 5-smooth size >= want (max_intervals itself if none is below it).
    sizes = tf.constant(_SMOOTH_SIZES)
    pick = tf.searchsorted(sizes, want[tf.newaxis], side="left")[0]
    n_boxes = tf.minimum(tf.gather(sizes, tf.minimum(pick, len(_SMOOTH_SIZES) - 1)),
                         tf.constant(max_intervals, tf.int64))
    n_boxes = tf.maximum(n_boxes, want)
    length = 2 * p * n_boxes
    # All points identical: any width works (every point at the corner).
    side = tf.where(extent > 0, extent, tf.ones_like(extent))
    box_width = side / tf.cast(n_boxes, y.dtype)
    return lo, box_width, n_boxes, tf.cast(length, tf.int32)


def _sum_over_points(x):
    """sum over axis 1 of ``x`` [B, N], the same bits for any thread count.

    A plain reduce_sum over a long axis lets Eigen split it into one block
    per thread, so the rounding changes with the thread count. Here each
    chunk of 1024 is one output of an inner reduction (one thread each, fixed
    order), and the chunk sums (N / 1024 of them) are few enough that Eigen
    reduces them on one thread."""
    chunk = 1024
    n = tf.shape(x)[1]
    padded = tf.pad(x, [[0, 0], [0, (-n) % chunk]])
    parts = tf.reduce_sum(tf.reshape(padded, [tf.shape(x)[0], -1, chunk]), axis=2)
    return tf.reduce_sum(parts, axis=1)


def fft_repulsion(y, dof=1.0, interpolation_points=3, min_intervals=50, interval_width=None,
                  max_intervals=None, name=None):
    """The t-SNE repulsion by FFT-accelerated interpolation (FIt-SNE), d = 1 or 2.

    The sums over all pairs ``R_i = sum_{j != i} w_ij u_ij (y_i - y_j)`` and
    ``Z = sum_{i != j} w_ij`` (``u = (1 + r^2 / dof)^-1``,
    ``w = u^((dof + 1) / 2)``) are kernel sums, and a smooth translation
    invariant kernel is well interpolated by polynomials on a regular grid:
    a unit charge per point is spread onto ``interpolation_points`` Lagrange
    nodes per box (``FftSpread``), convolved on the grid with the kernels
    ``w(r)`` and ``w u r`` (each component of the offset ``r``) by
    TensorFlow's FFT (zero-padded, so the convolution is not circular), and
    the potentials are interpolated back (``FftGather``):
    ``Z = sum_i (w * 1)_i - N`` and ``R_i = (w u r * 1)_i``. Cost
    O(N p^d + G log G) for G grid nodes.

    The grid grows with the embedding as in FIt-SNE and openTSNE: at least
    ``min_intervals`` boxes per dimension, boxes no wider than
    ``interval_width`` while the embedding is large, a count with no prime
    factor above 5 (fast FFT lengths), and at most ``max_intervals`` (default:
    20000 in 1D, 640 in 2D). One grid shape serves the whole batch.

    Args:
      y: ``[B, N, d]`` (or ``[N, d]``) embedding, d = 1 or 2, float32 or float64.
      dof: Student-t degrees of freedom, > 0.
      interpolation_points: nodes per box (1 to 8).
      min_intervals: the fewest boxes per dimension, >= 1.
      interval_width: the widest box while the cap allows, > 0 (default 0.25
        in 1D, 0.5 in 2D), times ``sqrt(dof)`` when ``dof < 1`` (the kernel
        is that much narrower).
      max_intervals: the most boxes per dimension.

    Returns:
      ``(R, Z)``: ``R`` shaped like ``y``, ``Z`` ``[B]`` (a scalar for rank-2 input).
    """
    with tf.name_scope(name or "fft_repulsion"):
        y, squeeze = _batched(y, "y", "[n, d]")
        rep, z = _fft_repulsion(y, _scalar(dof, "dof", y.dtype), interpolation_points,
                                min_intervals, interval_width, max_intervals)
        return _unbatch(rep, squeeze), _unbatch(z, squeeze)


def _fft_repulsion(y, dof, interpolation_points=3, min_intervals=50, interval_width=None,
                   max_intervals=None):
    d = y.shape[-1]
    if d not in (1, 2):
        raise _invalid(
            f"method 'fft' supports embedding dimensions d = 1 or 2, but y has d = {d} "
            f"(shape {y.shape}); use method='exact' (or 'barnes_hut' where registered)"
        )
    if isinstance(interpolation_points, (bool, np.bool_)) or not isinstance(
            interpolation_points, (int, np.integer)) or not 1 <= interpolation_points <= 8:
        raise _invalid(
            f"method 'fft': interpolation_points must be an int in [1, 8], but is "
            f"{interpolation_points!r}")
    if isinstance(min_intervals, (bool, np.bool_)) or not isinstance(
            min_intervals, (int, np.integer)) or min_intervals < 1:
        raise _invalid(f"method 'fft': min_intervals must be an int >= 1, but is {min_intervals!r}")
    cap = _FFT_MAX_INTERVALS[d]
    if max_intervals is None:
        max_intervals = cap
    if isinstance(max_intervals, (bool, np.bool_)) or not isinstance(
            max_intervals, (int, np.integer)) or not min_intervals <= max_intervals <= cap:
        raise _invalid(
            f"method 'fft': max_intervals must be an int in [min_intervals, {cap}] = "
            f"[{min_intervals}, {cap}] for d = {d}, but is {max_intervals!r}")
    if interval_width is None:
        interval_width = _FFT_INTERVAL_WIDTH[d]
    width = _positive_float(interval_width, "interval_width")
    if not (width > 0 and np.isfinite(width)):
        raise _invalid(f"method 'fft': interval_width must be a finite number > 0, but is "
                       f"{interval_width!r}")
    p = int(interpolation_points)
    dtype = y.dtype
    n = tf.shape(y)[1]
    # The kernel (1 + r^2 / dof)^-(dof + 1) / 2 is sqrt(dof) wide: below dof = 1
    # the boxes narrow with it (measured: at dof = 0.5 and width 0.5 the
    # error of a clustered 1D embedding is 1.8e-2, at width 0.35 below 1e-2).
    width = width * tf.minimum(tf.constant(1.0, tf.float64), tf.sqrt(tf.cast(dof, tf.float64)))
    origin, box_width, n_boxes, length = _fft_grid(y, p, int(min_intervals), width,
                                                   int(max_intervals))
    # One charge per point (1): Z from the kernel w, and R straight from the
    # vector kernel w u (y_i - y_j), itself translation invariant. FIt-SNE
    # spreads the charges [1, y_j] instead and forms y_i (wu * 1) - (wu * y),
    # which cancels: at an extent of 300 it loses two digits of R.
    charges = tf.ones_like(y[..., :1])
    grid = _ops.tsne_fft_spread(y, charges, origin, box_width, n_boxes, interpolation_points=p)
    m = tf.cast(n_boxes, tf.int32) * p
    # Kernel values at the node offsets of the circulant of length L: offset
    # k for k <= L / 2, k - L above (offsets past m - 1 are never used).
    idx = tf.range(length)
    off = tf.cast(tf.where(idx <= length // 2, idx, idx - length), dtype)
    spacing = box_width / p
    offs = off[tf.newaxis] * spacing[:, tf.newaxis]  # [B, L], node offset in y units
    if d == 1:
        r2 = tf.square(offs)
        comps = [offs]
        fft, ifft, fft_length = tf.signal.rfft, tf.signal.irfft, [length]
    else:
        ox, oy = offs[:, :, tf.newaxis], offs[:, tf.newaxis, :]
        r2 = tf.square(ox) + tf.square(oy)
        comps = [ox, oy]  # broadcast against wu [B, L, L]
        fft, ifft, fft_length = tf.signal.rfft2d, tf.signal.irfft2d, [length, length]
    base = 1.0 + r2 / dof
    w = tf.pow(base, -0.5 * (dof + 1.0))
    wu = w / base
    kernels = tf.stack([w] + [wu * c for c in comps], axis=1)  # [B, 1 + d, L(, L)]
    pot = ifft(fft(grid, fft_length) * fft(kernels, fft_length), fft_length)
    pot = pot[:, :, :m] if d == 1 else pot[:, :, :m, :m]
    phi = _ops.tsne_fft_gather(y, pot, origin, box_width, interpolation_points=p)
    z = _sum_over_points(phi[..., 0]) - tf.cast(n, dtype)
    return phi[..., 1:], z


register_repulsion("fft", _fft_repulsion, _FFT_OPTIONS, dims=(1, 2))


def _approximate_gradient(entry, options, p, y, exaggeration, dof, compute_kl,
                          scale_repulsion_by_p_sum):
    dof_t = _scalar(dof, "dof", y.dtype)
    rep, z = entry.fn(tf.stop_gradient(y), dof_t, **options)
    return _ops.tsne_sparse_tsne_gradient_from_repulsion(
        p.indices, p.values, p.dense_shape, y, tf.stop_gradient(rep), tf.stop_gradient(z),
        _scalar(exaggeration, "exaggeration", y.dtype), dof_t,
        compute_kl=bool(compute_kl), scale_repulsion_by_p_sum=scale_repulsion_by_p_sum,
    )


def _approximate_loss(entry, options, p, y, dof):
    """KL with Z from the approximation; its gradient in y from the same pass."""

    @tf.custom_gradient
    def loss(y_):
        dy, kl = _approximate_gradient(entry, options, p, y_, 1.0, dof, True, True)

        def grad(dkl):
            return dkl[:, tf.newaxis, tf.newaxis] * dy

        return kl, grad

    return loss(y)


def _sparse_p_and_y(p, y):
    """A sparse ``p`` and ``y`` as the sparse ops take them: p's indices
    ``[nnz, 3]`` and dense shape ``[B, N, N]``, y rank 3, one dtype."""
    if p.dtype not in (tf.float32, tf.float64):
        raise _invalid(f"p must be float32 or float64, but has dtype {p.dtype.name}")
    y, squeeze = _batched(y, "y", "[n, d]", dtype=p.dtype)
    rank = p.shape.rank
    if rank == 2:
        if not squeeze:
            raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
        zeros = tf.zeros_like(p.indices[:, :1])
        p = tf.SparseTensor(
            tf.concat([zeros, p.indices], axis=1),
            p.values,
            tf.concat([tf.ones([1], tf.int64), p.dense_shape], axis=0),
        )
    elif rank == 3:
        if squeeze:
            raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
    else:
        raise _invalid(f"p must be rank 2 [n, n] or rank 3 [batch, n, n], but has shape {p.shape}")
    return p, y, squeeze


def tsne_gradient(p, y, exaggeration=1.0, dof=1.0, compute_kl=True, method="exact", name=None,
                  **method_options):
    """The fused t-SNE gradient and KL divergence (no N x N temporary).

    With ``a = dof``, ``u_ij = (1 + |y_i - y_j|^2 / a)^-1``,
    ``q_ij ∝ u_ij^((a + 1) / 2)``::

        grad_i = (2 (a + 1) / a) sum_j (exaggeration p_ij - q_ij) u_ij (y_i - y_j)

    Args:
      p: ``[B, N, N]`` (or ``[N, N]``) symmetric joint probabilities, dense or
        a ``tf.SparseTensor`` in canonical order (as
        ``knn_joint_probabilities`` returns): then the attraction runs over
        its stored entries and the repulsion over all pairs (see ``method``).
      y: ``[B, N, d]`` (or ``[N, d]``) embedding.
      exaggeration: factor on the attractive term, > 0.
      dof: Student-t degrees of freedom, > 0.
      compute_kl: also compute ``KL(P || Q)`` (two logarithms a pair); when
        False the second result is None.
      method: the repulsion for a sparse ``p``: ``'exact'`` (every pair, in
        tiles: O(N^2) time, O(N d) memory), ``'fft'`` (interpolation on a
        grid with an FFT convolution, d = 1 or 2; see ``fft_repulsion``), or
        any method added with ``register_repulsion``. A dense ``p`` is always
        exact.
      **method_options: the method's options (for ``'fft'``:
        ``interpolation_points``, ``min_intervals``, ``interval_width``,
        ``max_intervals``); unknown ones are an error.

    Returns:
      ``(grad, kl)``: ``grad`` shaped like ``y``; ``kl`` ``[B]`` (a scalar for
      rank-2 input) or None. With an approximate method, ``kl`` uses its Z.
    """
    with tf.name_scope(name or "tsne_gradient"):
        entry, options = _check_method(method, method_options)
        if entry is not None:
            if not isinstance(p, tf.SparseTensor):
                raise _invalid(
                    f"method {method!r} needs a sparse p (a tf.SparseTensor, as "
                    f"knn_joint_probabilities returns); a dense p is always exact"
                )
            p, y, squeeze = _sparse_p_and_y(p, y)
            _check_method_dims(method, entry, y)
            grad, kl = _approximate_gradient(entry, options, p, y, exaggeration, dof,
                                             compute_kl, False)
            return _unbatch(grad, squeeze), (_unbatch(kl, squeeze) if compute_kl else None)
        if isinstance(p, tf.SparseTensor):
            p, y, squeeze = _sparse_p_and_y(p, y)
            grad, kl = _ops.tsne_sparse_tsne_gradient(
                p.indices,
                p.values,
                p.dense_shape,
                y,
                _scalar(exaggeration, "exaggeration", y.dtype),
                _scalar(dof, "dof", y.dtype),
                compute_kl=bool(compute_kl),
            )
            return _unbatch(grad, squeeze), (_unbatch(kl, squeeze) if compute_kl else None)
        p, squeeze = _batched(p, "p", "[n, n]")
        y, squeeze_y = _batched(y, "y", "[n, d]", dtype=p.dtype)
        if squeeze != squeeze_y:
            raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
        grad, kl = _ops.tsne_tsne_gradient(
            p,
            y,
            _scalar(exaggeration, "exaggeration", p.dtype),
            _scalar(dof, "dof", p.dtype),
            compute_kl=bool(compute_kl),
        )
        return _unbatch(grad, squeeze), (_unbatch(kl, squeeze) if compute_kl else None)


def tsne_loss(p, y, dof=1.0, method="exact", name=None, **method_options):
    """The t-SNE loss ``KL(P || Q)``, differentiable in ``y`` (and ``p``).

    Its gradient with respect to ``y`` runs the fused t-SNE kernel (the exact
    gradient of this KL, also when ``p`` does not sum to 1); ``p`` must be
    symmetric. With respect to ``p`` the gradient is ``log(p_ij / q_ij) + 1``
    off the diagonal (``p`` clamped at the dtype's smallest normal number, so
    zero entries get a large negative but finite value).

    Args:
      p: ``[B, N, N]`` (or ``[N, N]``) symmetric joint probabilities, dense or
        a canonical ``tf.SparseTensor`` (then the loss is differentiable in
        ``y`` only; its gradient runs the sparse kernel).
      y: ``[B, N, d]`` (or ``[N, d]``) embedding.
      dof: Student-t degrees of freedom, > 0.
      method: the repulsion for a sparse ``p``, as in ``tsne_gradient``; with
        an approximate method, Z (in the loss) and the gradient in ``y`` both
        come from the same approximate pass.
      **method_options: the method's options, as in ``tsne_gradient``.

    Returns:
      ``kl``: ``[B]`` (a scalar for rank-2 input).
    """
    with tf.name_scope(name or "tsne_loss"):
        entry, options = _check_method(method, method_options)
        if entry is not None:
            if not isinstance(p, tf.SparseTensor):
                raise _invalid(
                    f"method {method!r} needs a sparse p (a tf.SparseTensor, as "
                    f"knn_joint_probabilities returns); a dense p is always exact"
                )
            p, y, squeeze = _sparse_p_and_y(p, y)
            _check_method_dims(method, entry, y)
            return _unbatch(_approximate_loss(entry, options, p, y, dof), squeeze)
        if isinstance(p, tf.SparseTensor):
            p, y, squeeze = _sparse_p_and_y(p, y)
            kl = _ops.tsne_sparse_tsne_loss(
                p.indices, p.values, p.dense_shape, y, _scalar(dof, "dof", y.dtype)
            )
            return _unbatch(kl, squeeze)
        p, squeeze = _batched(p, "p", "[n, n]")
        y, squeeze_y = _batched(y, "y", "[n, d]", dtype=p.dtype)
        if squeeze != squeeze_y:
            raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
        kl = _ops.tsne_tsne_loss(p, y, _scalar(dof, "dof", p.dtype))
        return _unbatch(kl, squeeze)


def nearest_neighbors(x, k, y=None, name=None):
    """The exact ``k`` nearest neighbours of each point, batch by batch.

    A blocked brute-force search: distance tiles on the same micro-kernel as
    :func:`pairwise_squared_distance` with a running top-k per row, so memory
    stays O((N + M) D) and no N x M matrix is formed. The returned distances
    are recomputed directly (sum of squared differences in double), so
    float32 is as good as float64 relative to the data's spread and a
    constant offset on the data changes nothing. Not differentiable.

    Args:
      x: ``[B, N, D]`` (or ``[N, D]``) query points, finite.
      k: number of neighbours, an int: ``1 <= k <= N - 1`` without ``y``,
        ``1 <= k <= M`` with it.
      y: optional ``[B, M, D]`` (or ``[M, D]``) reference points. Without it,
        the neighbours of each row of ``x`` among the other rows of ``x``
        (the row itself is excluded by index; an exact duplicate of it is
        still a neighbour, at distance 0).

    Returns:
      ``(indices, sq_distances)``, both ``[B, N, k]`` (``[N, k]`` for rank-2
      input): ``indices`` int64 rows of ``y`` (or ``x``) by increasing
      squared Euclidean distance, ties broken by the smaller index, and
      ``sq_distances`` their squared distances, in the dtype of ``x``.
    """
    with tf.name_scope(name or "nearest_neighbors"):
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise _invalid(f"k must be an int, but is {k!r}")
        x, squeeze = _batched(x, "x", "[n, dim]")
        if y is None:
            idx, d2 = _ops.tsne_nearest_neighbors(x, k=int(k))
        else:
            y, squeeze_y = _batched(y, "y", "[m, dim]", dtype=x.dtype)
            if squeeze != squeeze_y:
                raise _invalid(
                    f"x and y must have the same rank, but have shapes {x.shape} and {y.shape}"
                )
            idx, d2 = _ops.tsne_cross_nearest_neighbors(x, y, k=int(k))
        return _unbatch(idx, squeeze), _unbatch(d2, squeeze)


def build_info():
    """How the op library was built: ``{'tensorflow_version': str, 'cuda': bool}``."""
    version, cuda = _ops.tsne_build_info()
    return {"tensorflow_version": version.numpy().decode(), "cuda": bool(cuda.numpy())}


# --------------------------------------------------------------- gradients --

def _not_differentiable(op_name, what):
    def grad(op, *grads):
        raise LookupError(
            f"{op_name} is not differentiable ({what}); differentiate tsne_loss or "
            f"pairwise_squared_distance instead"
        )

    return grad


@tf.RegisterGradient("TSNE>SquaredDistance")
def _squared_distance_grad(op, grad):
    return _ops.tsne_squared_distance_grad(grad, op.inputs[0])


@tf.RegisterGradient("TSNE>CrossSquaredDistance")
def _cross_squared_distance_grad(op, grad):
    gx, gy = _ops.tsne_cross_squared_distance_grad(grad, op.inputs[0], op.inputs[1])
    return gx, gy


@tf.RegisterGradient("TSNE>TsneLoss")
def _tsne_loss_grad(op, grad):
    p, y, dof = op.inputs
    skip = getattr(op, "skip_input_indices", None) or ()
    g = grad[:, tf.newaxis, tf.newaxis]
    grad_y = None
    if 1 not in skip:
        dy, _ = _ops.tsne_tsne_gradient(
            p, y, tf.ones([], y.dtype), dof, compute_kl=False, scale_repulsion_by_p_sum=True
        )
        grad_y = g * dy
    grad_p = None
    if 0 not in skip:
        # d KL / d p_ij = log(p_ij / q_ij) + 1 (i != j). Needs the N x N q, so
        # it is only built when someone asks for the gradient in p.
        n = tf.shape(p)[1]
        d2 = _ops.tsne_squared_distance(y)
        log_w = -0.5 * (dof + 1.0) * tf.math.log1p(d2 / dof)
        off = 1.0 - tf.eye(n, dtype=p.dtype)[tf.newaxis]
        log_z = tf.math.reduce_logsumexp(log_w + tf.math.log(off), axis=[1, 2], keepdims=True)
        p_safe = tf.maximum(p, tf.constant(np.finfo(p.dtype.as_numpy_dtype).tiny, p.dtype))
        grad_p = g * off * (tf.math.log(p_safe) - (log_w - log_z) + 1.0)
    return grad_p, grad_y, None


@tf.RegisterGradient("TSNE>SparseTsneLoss")
def _sparse_tsne_loss_grad(op, grad):
    p_indices, p_values, p_shape, y, dof = op.inputs
    dy, _ = _ops.tsne_sparse_tsne_gradient(
        p_indices, p_values, p_shape, y, tf.ones([], y.dtype), dof,
        compute_kl=False, scale_repulsion_by_p_sum=True,
    )
    # Not differentiable in p: the gradient in its values would need log q
    # for the stored pairs and Z, which no caller has asked for yet.
    return None, None, None, grad[:, tf.newaxis, tf.newaxis] * dy, None


tf.no_gradient("TSNE>KnnJointProbabilities")
tf.RegisterGradient("TSNE>SparseTsneGradient")(
    _not_differentiable("tsne_gradient", "second derivatives of t-SNE are not implemented")
)
tf.no_gradient("TSNE>PerplexityAffinities")
tf.no_gradient("TSNE>JointProbabilities")
tf.no_gradient("TSNE>BuildInfo")
tf.no_gradient("TSNE>NearestNeighbors")
tf.no_gradient("TSNE>CrossNearestNeighbors")
tf.RegisterGradient("TSNE>TsneGradient")(
    _not_differentiable("tsne_gradient", "second derivatives of t-SNE are not implemented")
)
tf.RegisterGradient("TSNE>SquaredDistanceGrad")(
    _not_differentiable("the gradient of pairwise_squared_distance", "no second derivatives")
)
tf.RegisterGradient("TSNE>CrossSquaredDistanceGrad")(
    _not_differentiable("the gradient of pairwise_squared_distance", "no second derivatives")
)
