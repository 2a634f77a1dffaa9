"""Python wrappers for the tsne_ops kernels, and their registered gradients.

Every op takes a leading batch dimension ``[B, ...]``; a rank-2 input is a
batch of one, and then the result has no batch dimension either. Inputs must
be float32 or float64 (the same for every tensor argument of a call).
"""
import collections

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
    "register_repulsion",
    "nearest_neighbors",
    "build_info",
]


def _invalid(message):
    return tf.errors.InvalidArgumentError(None, None, message)


def _batched(value, name, inner_rank_name, dtype=None):
    """Converts `value` to a float tensor of rank 3; returns (tensor, was_rank_2)."""
    try:
        if dtype is not None and isinstance(value, (list, tuple)):
            t = tf.convert_to_tensor(value, dtype_hint=dtype)  # plain Python numbers
        else:
            t = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as e:
        # Ragged lists, None, object arrays: TensorFlow's message names no argument.
        raise _invalid(
            f"{name} must be a float32 or float64 array or tensor, but {type(value).__name__} "
            f"{_short_repr(value)} cannot be converted: {e}"
        ) from None
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


def _short_repr(value, limit=80):
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _is_tensor(value):
    return tf.is_tensor(value) or isinstance(value, tf.Variable)


def _real_dtype(dtype):
    return dtype != tf.bool and (dtype.is_floating or dtype.is_integer)


def _real_number(value, name, dtype=tf.float32):
    """`value` as a Python float, for a scalar argument carried as `dtype`.

    Only the type is checked here, plus that `dtype` can hold the value as a
    normal number (a positive 1e-40 would reach the kernel as 0, and 1e300 in
    float32 as inf, and the kernel's error would then quote a value nobody
    passed). The range
    (> 0, and for perplexity < n - 1) is checked by the kernels, which know n
    in eager and in graph mode alike.
    """
    is_scalar_array = isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0
    if isinstance(value, (bool, np.bool_, str, bytes)) or not (
        isinstance(value, (int, float, np.integer, np.floating))
        or (is_scalar_array and np.issubdtype(np.asarray(value).dtype, np.number)
            and not np.iscomplexobj(value))
        or (_is_tensor(value) and _real_dtype(value.dtype) and value.shape.rank == 0)
    ):
        raise _invalid(f"{name} must be a number, but is {_short_repr(value)}")
    try:
        v = float(value)
    except (TypeError, ValueError):  # a symbolic tensor inside tf.function
        raise _invalid(
            f"{name} must be a number known when the op is built, but is {_short_repr(value)}"
        ) from None
    held = float(np.asarray(v, dtype.as_numpy_dtype))
    # Subnormals count as outside: TensorFlow's CPU kernels flush them to 0.
    if np.isfinite(v) and v != 0 and (
        abs(held) < np.finfo(dtype.as_numpy_dtype).tiny or not np.isfinite(held)
    ):
        raise _invalid(f"{name} = {v!r} is outside the range of {dtype.name}")
    return v


def _float_attr(value, name):
    """`value` for a float attribute (float32 in the op), rounded toward zero."""
    from tsne_ops._native import float32_toward_zero

    return float32_toward_zero(_real_number(value, name, tf.float32))


def _scalar(value, name, dtype):
    """A scalar of `dtype` (Python numbers, numpy scalars, tensors, variables)."""
    if _is_tensor(value):
        if not _real_dtype(value.dtype):
            # tf.cast would fail on strings and silently drop a complex part.
            raise _invalid(f"{name} must be a real number, but has dtype {value.dtype.name}")
        return tf.cast(value, dtype)
    return tf.constant(_real_number(value, name, dtype), dtype)


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
            d, perplexity=_float_attr(perplexity, "perplexity")
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
        p = _ops.tsne_joint_probabilities(d, perplexity=_float_attr(perplexity, "perplexity"))
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
        # Rank-2 input: the op writes the rank-2 components ([nnz, 2] indices)
        # itself, so no [nnz, 3] list is made and sliced.
        p_idx, p_val, p_shape = _ops.tsne_knn_joint_probabilities(
            idx, d2, perplexity=_float_attr(perplexity, "perplexity"),
            index_rank=2 if squeeze else 3
        )
        return tf.SparseTensor(p_idx, p_val, p_shape)


# ------------------------------------------------- approximate repulsion --
#
# A repulsion method maps (y [B, N, d], dof, **options) to (R [B, N, d],
# Z [B]) with R_i = sum_{j != i} w_ij u_ij (y_i - y_j) and
# Z = sum_{i != j} w_ij; SparseTsneGradientFromRepulsion adds the attraction
# over P's stored entries. 'exact' is not in the registry: it stays on the
# fused SparseTsneGradient kernel.

class _Repulsion:
    __slots__ = ("fn", "options", "dims", "make_cache")

    def __init__(self, fn, options, dims, make_cache=None):
        self.fn, self.options, self.dims = fn, dict(options), tuple(dims)
        self.make_cache = make_cache


_REPULSIONS = {}


def register_repulsion(method, fn, options=None, dims=None, make_cache=None):
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
      make_cache: optional ``make_cache(batch) -> cache``: state an optimiser
        keeps for the method across its iterations, passed to ``fn`` as
        ``cache=`` (``fn`` must give the same results with or without it).
    """
    _REPULSIONS[method] = _Repulsion(fn, options or {}, dims or (), make_cache)


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


# P's CSR view for the approximate methods, built once by ``_sparse_csr``
# when P serves many calls (GradientDescent's iterations): row_ptr
# [B * N + 1] and cols [nnz] (SparseCsr), P's values, P's dense_shape
# ([B, N, N], or [N, N] when P was rank 2), batched (False when P was rank
# 2: results then lose the batch axis), and the cache of one method for the
# calls of a loop (``(method, cache)`` from the method's ``make_cache``, or
# None).
_SparseCsr = collections.namedtuple("_SparseCsr", "row_ptr cols values dense_shape batched cache",
                                    defaults=(None,))


def _sparse_csr(p, method=None):
    """The CSR view of a canonical rank-2 or rank-3 ``tf.SparseTensor`` ``p``,
    checked and converted once (the SparseCsr op, which reads a rank-2 ``p``'s
    indices as they are: no batched copy); ``tsne_gradient`` and
    ``tsne_loss`` take it in place of ``p`` for an approximate method. With
    ``method``, the view also carries that method's cache (if it keeps one),
    used by every call with that method."""
    if not isinstance(p, tf.SparseTensor):
        raise _invalid(f"p must be a tf.SparseTensor, but is {type(p).__name__}")
    if p.dtype not in (tf.float32, tf.float64):
        raise _invalid(f"p must be float32 or float64, but has dtype {p.dtype.name}")
    batched = _sparse_rank(p) == 3
    row_ptr, cols = _ops.tsne_sparse_csr(p.indices, p.dense_shape)
    cache = None
    entry = _REPULSIONS.get(method)
    if entry is not None and entry.make_cache is not None:
        batch = 1
        if batched:
            batch = p.shape[0] if p.shape[0] is not None else int(p.dense_shape[0])
        cache = (method, entry.make_cache(batch))
    return _SparseCsr(row_ptr, cols, p.values, p.dense_shape, batched, cache)


def _method_cache(p, method):
    """The cache ``p`` (a ``_SparseCsr``) carries for ``method``, or None."""
    if isinstance(p, _SparseCsr) and p.cache is not None and p.cache[0] == method:
        return p.cache[1]
    return None


def _approximate_p_and_y(method, entry, p, y):
    """``_sparse_p_and_y`` for an approximate repulsion ``method``: ``p`` must
    be sparse (or its ``_SparseCsr`` view) and ``y`` of a dimension the
    method supports."""
    if isinstance(p, _SparseCsr):
        y, squeeze = _batched(y, "y", "[n, d]", dtype=p.values.dtype)
        if squeeze == p.batched:
            raise _invalid(f"p and y must have the same rank, but p is rank "
                           f"{3 if p.batched else 2} and y has shape {y.shape}")
    elif not isinstance(p, tf.SparseTensor):
        raise _invalid(
            f"method {method!r} needs a sparse p (a tf.SparseTensor, as "
            f"knn_joint_probabilities returns); a dense p is always exact"
        )
    else:
        p, y, squeeze = _sparse_p_and_y(p, y)
    d = y.shape[-1]
    if entry.dims and d is not None and d not in entry.dims:
        raise _invalid(
            f"method {method!r} supports embedding dimensions d in {entry.dims}, but y has "
            f"d = {d} (shape {y.shape})"
        )
    return p, y, squeeze


def _dense_p_and_y(p, y):
    """A dense ``p`` ``[B, N, N]`` and ``y`` ``[B, N, d]`` of one rank and dtype."""
    if isinstance(p, _SparseCsr):
        raise _invalid("p's CSR view (_sparse_csr) serves the approximate methods only; "
                       "method 'exact' takes the tf.SparseTensor")
    p, squeeze = _batched(p, "p", "[n, n]")
    y, squeeze_y = _batched(y, "y", "[n, d]", dtype=p.dtype)
    if squeeze != squeeze_y:
        raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
    return p, y, squeeze


def _approximate_gradient(entry, options, p, y, exaggeration, dof, compute_kl,
                          scale_repulsion_by_p_sum, cache=None):
    """The approximate gradient and KL for a batched sparse ``p`` (a
    ``tf.SparseTensor``, converted by the op in every call, or its
    ``_SparseCsr`` view, only checked: the same kernel and bits).
    ``cache``: state the method keeps between calls (``FftKernelCache`` for
    'fft'), passed to ``entry.fn`` when given; optimisers make one."""
    dof_t = _scalar(dof, "dof", y.dtype)
    extra = {} if cache is None else {"cache": cache}
    rep, z = entry.fn(tf.stop_gradient(y), dof_t, **options, **extra)
    args = (y, tf.stop_gradient(rep), tf.stop_gradient(z),
            _scalar(exaggeration, "exaggeration", y.dtype), dof_t)
    attrs = dict(compute_kl=bool(compute_kl), scale_repulsion_by_p_sum=scale_repulsion_by_p_sum)
    if isinstance(p, _SparseCsr):
        return _ops.tsne_csr_tsne_gradient_from_repulsion(p.row_ptr, p.cols, p.values, *args,
                                                          **attrs)
    return _ops.tsne_sparse_tsne_gradient_from_repulsion(p.indices, p.values, p.dense_shape,
                                                         *args, **attrs)


def _approximate_loss(entry, options, p, y, dof, cache=None):
    """KL with Z from the approximation; its gradient in y from the same pass."""

    @tf.custom_gradient
    def loss(y_):
        dy, kl = _approximate_gradient(entry, options, p, y_, 1.0, dof, True, True, cache)

        def grad(dkl):
            return dkl[:, tf.newaxis, tf.newaxis] * dy

        return kl, grad

    return loss(y)


def _sparse_rank(p):
    """The rank of a sparse ``p``: 2 (``[n, n]``) or 3 (``[batch, n, n]``).
    The sparse ops take either as it is (a rank-2 ``p`` is a batch of one)."""
    rank = p.shape.rank
    if rank not in (2, 3):
        raise _invalid(f"p must be rank 2 [n, n] or rank 3 [batch, n, n], but has shape {p.shape}")
    return rank


def _sparse_p_and_y(p, y):
    """A sparse ``p`` and ``y`` as the sparse ops take them: p as it is (rank
    2 or 3; the ops read a rank-2 p's indices ``[nnz, 2]`` as a batch of one,
    so no batched copy is built), y rank 3, one dtype."""
    if p.dtype not in (tf.float32, tf.float64):
        raise _invalid(f"p must be float32 or float64, but has dtype {p.dtype.name}")
    y, squeeze = _batched(y, "y", "[n, d]", dtype=p.dtype)
    if (_sparse_rank(p) == 2) != squeeze:
        raise _invalid(f"p and y must have the same rank, but have shapes {p.shape} and {y.shape}")
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
            p, y, squeeze = _approximate_p_and_y(method, entry, p, y)
            grad, kl = _approximate_gradient(entry, options, p, y, exaggeration, dof,
                                             compute_kl, False, _method_cache(p, method))
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
        p, y, squeeze = _dense_p_and_y(p, y)
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
            p, y, squeeze = _approximate_p_and_y(method, entry, p, y)
            return _unbatch(_approximate_loss(entry, options, p, y, dof,
                                              _method_cache(p, method)), squeeze)
        if isinstance(p, tf.SparseTensor):
            p, y, squeeze = _sparse_p_and_y(p, y)
            kl = _ops.tsne_sparse_tsne_loss(
                p.indices, p.values, p.dense_shape, y, _scalar(dof, "dof", y.dtype)
            )
            return _unbatch(kl, squeeze)
        p, y, squeeze = _dense_p_and_y(p, y)
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
        # log1p(d2 / dof) = softplus(log d2 - log dof), with d2 taken from y
        # scaled into [-1, 1]: neither d2 (float32 y past 1e19) nor d2 / dof
        # (y at 1e4 with dof 1e-30) may overflow where the loss is finite.
        scale = tf.reduce_max(tf.abs(y), axis=[1, 2], keepdims=True)
        scale = tf.where(scale > 0, scale, tf.ones_like(scale))
        log_d2 = tf.math.log(_ops.tsne_squared_distance(y / scale)) + 2.0 * tf.math.log(scale)
        log1p_ratio = tf.math.softplus(log_d2 - tf.math.log(dof))
        log_w = -0.5 * (dof + 1.0) * log1p_ratio
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
tf.no_gradient("TSNE>SparseCsr")
tf.RegisterGradient("TSNE>CsrTsneGradientFromRepulsion")(
    _not_differentiable("tsne_gradient", "second derivatives of t-SNE are not implemented")
)
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


# The approximate repulsions live in tsne_ops.repulsion and register
# themselves there; importing it here makes them available wherever the ops are.
from tsne_ops import repulsion as _repulsion  # noqa: E402,F401  (registers 'fft', 'barnes_hut')
