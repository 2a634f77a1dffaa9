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
import numpy as np
import tensorflow as tf

from tsne_ops.ops import (_batched, _float_attr, _invalid, _ops, _real_number, _scalar,
                          _unbatch, register_repulsion)

__all__ = ["fft_repulsion", "barnes_hut_repulsion", "FftKernelCache"]


# Grid sizes: the number of boxes per dimension is 5-smooth (only factors 2,
# 3 and 5), so the FFT length 2 p n_boxes (zero-padded to twice the grid for
# a linear, not circular, convolution) is one that TensorFlow's FFTs (DUCC
# on the CPU, cuFFT on the GPU) run at full speed, as FIt-SNE's list of
# allowed sizes does. The caps bound the grid: 60000 nodes in 1D, 1920 x 1920
# in 2D (beyond them the boxes widen with the embedding); max_intervals is
# that many nodes over interpolation_points.
# Defaults, from experiments/fft_interpolation_accuracy.py (the repulsion's
# error against the exact sums on clustered and real t-SNE embeddings 80-340
# wide, N = 1,000 and 10,000; experiments/results/fft_interpolation_accuracy.jsonl):
# with the stencil centred on each point (cc/compute/fft_interpolation.h), 5 nodes
# in boxes 1.4 wide (3.6 nodes per unit) stay within 6e-3, where the
# box-based stencil of FIt-SNE needed 3 nodes in boxes 0.5 wide (6 per unit,
# 2.8 times the grid in 2D) for 9e-3 and 3 nodes in boxes 1 wide (openTSNE's)
# are off by 3-6%. 1D grids are cheap: 3 nodes in boxes 0.25 wide, for
# sparse 1D embeddings.
_FFT_MAX_NODES = {1: 60000, 2: 1920}
_FFT_INTERPOLATION_POINTS = {1: 3, 2: 5}
_FFT_INTERVAL_WIDTH = {1: 0.25, 2: 1.4}
_SMOOTH_SIZES = np.array(sorted(
    2 ** i * 3 ** j * 5 ** k
    for i in range(16) for j in range(10) for k in range(7)
    if 2 ** i * 3 ** j * 5 ** k <= max(_FFT_MAX_NODES.values())
), np.int64)
_FFT_OPTIONS = {
    "interpolation_points": None,
    "min_intervals": 50,
    "interval_width": None,
    "max_intervals": None,
}


def _fft_grid(y, p, min_intervals, interval_width, max_intervals):
    """(origin [B, d], box_width [B], n_boxes, fft_length) covering every
    batch element's points; one n_boxes (the grid's shape) for the batch.

    While the widest embedding needs more than ``min_intervals`` boxes of
    ``interval_width`` (and fewer than ``max_intervals``), the boxes are
    exactly ``interval_width`` wide and the grid, a 5-smooth number of them,
    reaches a little past the points: the kernels on the grid then change
    only when ``n_boxes`` does, and a fit reuses their spectra
    (:class:`FftKernelCache`). Otherwise the ``n_boxes`` boxes span the
    points exactly (narrower boxes for a small embedding, wider at the cap).
    """
    lo = tf.reduce_min(y, axis=1)
    hi = tf.reduce_max(y, axis=1)
    extent = tf.reduce_max(hi - lo, axis=1)  # square boxes: the widest side
    widest = tf.cast(tf.reduce_max(extent), tf.float64)
    interval_width = tf.cast(interval_width, tf.float64)
    need = tf.math.ceil(widest / interval_width)
    want = tf.maximum(tf.cast(min_intervals, tf.float64), need)
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
    spanning = side / tf.cast(n_boxes, y.dtype)
    fixed = (need >= float(min_intervals)) & (
        tf.cast(n_boxes, tf.float64) * interval_width >= widest)
    box_width = tf.where(fixed, tf.cast(interval_width, y.dtype) * tf.ones_like(spanning),
                         spanning)
    return lo, box_width, n_boxes, tf.cast(length, tf.int32)


class FftKernelCache:
    """The spectra of the FFT repulsion's kernels, kept from one call to the
    next (``tsne_gradient(..., method='fft')`` inside an optimiser's loop).

    The kernels on the grid depend only on the node spacing, the FFT length
    and ``dof``; while the embedding grows within one grid (boxes exactly
    ``interval_width`` wide, see ``_fft_grid``) they are the same from
    iteration to iteration, and their FFTs (``1 + d`` of the ``2 + d`` per
    call) need not be redone. The cache holds the last key and spectra in
    ``tf.Variable``s and recomputes them when the key changes; results are
    the same bits as without it. One cache per optimiser (batch size fixed).
    """

    def __init__(self, batch=1):
        self.batch = int(batch)
        self._slots = {}  # spectra dtype -> (key, spectra) variables

    def _slot(self, dtype):
        if dtype not in self._slots:
            # NaN never equals a key: the first call fills the slot.
            key = tf.Variable(tf.fill([self.batch + 2], tf.constant(np.nan, tf.float64)),
                              trainable=False, name="fft_kernel_key")
            spectra = tf.Variable(tf.zeros([0, 0, 0], dtype), shape=tf.TensorShape(None),
                                  trainable=False, name="fft_kernel_spectra")
            self._slots[dtype] = (key, spectra)
        return self._slots[dtype]

    def get(self, key, compute, dtype):
        """``compute()`` (the spectra, ``dtype``) for ``key`` [batch + 2],
        from the cache when the key is unchanged."""
        last, slot = self._slot(dtype)
        key = tf.cast(key, tf.float64)

        def fresh():
            value = compute()
            with tf.control_dependencies([slot.assign(value), last.assign(key)]):
                return tf.identity(value)

        hit = tf.reduce_all(tf.equal(last, key))
        return tf.cond(hit, slot.read_value, fresh)


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


def fft_repulsion(y, dof=1.0, interpolation_points=None, min_intervals=50, interval_width=None,
                  max_intervals=None, name=None):
    """The t-SNE repulsion by FFT-accelerated interpolation (FIt-SNE), d = 1 or 2.

    The sums over all pairs ``R_i = sum_{j != i} w_ij u_ij (y_i - y_j)`` and
    ``Z = sum_{i != j} w_ij`` (``u = (1 + r^2 / dof)^-1``,
    ``w = u^((dof + 1) / 2)``) are kernel sums, and a smooth translation
    invariant kernel is well interpolated by polynomials on a regular grid:
    a unit charge per point is spread onto the ``interpolation_points``
    Lagrange nodes per dimension nearest it (``FftSpread``), convolved on
    the grid with the kernels ``w u r`` (each component of the offset ``r``)
    by TensorFlow's FFT (zero-padded, so the convolution is not circular),
    and the potentials are interpolated back (``FftGather``):
    ``R_i = (w u r * 1)_i``. ``Z = sum_i (w * 1)_i - N`` is the grid's inner
    product with its convolution by ``w``, summed in the frequency domain
    (Parseval: no inverse FFT). Cost O(N p^d + G log G) for G grid nodes.

    The grid grows with the embedding as in FIt-SNE and openTSNE: at least
    ``min_intervals`` boxes per dimension, boxes no wider than
    ``interval_width`` while the embedding is large, a count with no prime
    factor above 5 (fast FFT lengths), and at most ``max_intervals`` (default:
    60000 nodes in 1D, 1920 in 2D, over ``interpolation_points``). One grid
    shape serves the whole batch.

    Args:
      y: ``[B, N, d]`` (or ``[N, d]``) embedding, d = 1 or 2, float32 or float64.
      dof: Student-t degrees of freedom, > 0.
      interpolation_points: nodes per box and stencil (1 to 8; default 3 in
        1D, 5 in 2D).
      min_intervals: the fewest boxes per dimension, >= 1.
      interval_width: the widest box while the cap allows, > 0 (default 0.25
        in 1D, 1.4 in 2D), times ``sqrt(dof)`` when ``dof < 1`` (the kernel
        is that much narrower).
      max_intervals: the most boxes per dimension (at most the node cap over
        ``interpolation_points``).

    Returns:
      ``(R, Z)``: ``R`` shaped like ``y``, ``Z`` ``[B]`` (a scalar for rank-2 input).
    """
    with tf.name_scope(name or "fft_repulsion"):
        y, squeeze = _batched(y, "y", "[n, d]")
        rep, z = _fft_repulsion(y, _scalar(dof, "dof", y.dtype), interpolation_points,
                                min_intervals, interval_width, max_intervals)
        return _unbatch(rep, squeeze), _unbatch(z, squeeze)


def _fft_repulsion(y, dof, interpolation_points=None, min_intervals=50, interval_width=None,
                   max_intervals=None, cache=None):
    d = y.shape[-1]
    if d not in (1, 2):
        raise _invalid(
            f"method 'fft' supports embedding dimensions d = 1 or 2, but y has d = {d} "
            f"(shape {y.shape}); use method='exact' (or 'barnes_hut' where registered)"
        )
    if interpolation_points is None:
        interpolation_points = _FFT_INTERPOLATION_POINTS[d]
    if isinstance(interpolation_points, (bool, np.bool_)) or not isinstance(
            interpolation_points, (int, np.integer)) or not 1 <= interpolation_points <= 8:
        raise _invalid(
            f"method 'fft': interpolation_points must be an int in [1, 8], but is "
            f"{interpolation_points!r}")
    if isinstance(min_intervals, (bool, np.bool_)) or not isinstance(
            min_intervals, (int, np.integer)) or min_intervals < 1:
        raise _invalid(f"method 'fft': min_intervals must be an int >= 1, but is {min_intervals!r}")
    cap = max(_FFT_MAX_NODES[d] // int(interpolation_points), int(min_intervals))
    if max_intervals is None:
        max_intervals = cap
    if isinstance(max_intervals, (bool, np.bool_)) or not isinstance(
            max_intervals, (int, np.integer)) or not min_intervals <= max_intervals <= cap:
        raise _invalid(
            f"method 'fft': max_intervals must be an int in [min_intervals, {cap}] = "
            f"[{min_intervals}, {cap}] for d = {d} and interpolation_points = "
            f"{interpolation_points}, but is {max_intervals!r}")
    if interval_width is None:
        interval_width = _FFT_INTERVAL_WIDTH[d]
    width = _real_number(interval_width, "interval_width", tf.float64)
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
    spacing = box_width / p
    if d == 1:
        fft, ifft, fft_length = tf.signal.rfft, tf.signal.irfft, [length]
    else:
        fft, ifft, fft_length = tf.signal.rfft2d, tf.signal.irfft2d, [length, length]

    def kernel_spectra():
        # Kernel values at the node offsets of the circulant of length L:
        # offset k for k <= L / 2, k - L above (offsets past m - 1 are never used).
        idx = tf.range(length)
        off = tf.cast(tf.where(idx <= length // 2, idx, idx - length), dtype)
        offs = off[tf.newaxis] * spacing[:, tf.newaxis]  # [B, L], node offset in y units
        if d == 1:
            r2 = tf.square(offs)
            comps = [offs]
        else:
            ox, oy = offs[:, :, tf.newaxis], offs[:, tf.newaxis, :]
            r2 = tf.square(ox) + tf.square(oy)
            comps = [ox, oy]  # broadcast against wu [B, L, L]
        base = 1.0 + r2 / dof
        # exp(a log b), not pow(b, a): Grappler rewrites pow with a constant
        # exponent (pow(b, -1) -> 1 / b), differently inside FftKernelCache's
        # tf.cond, and the bits with and without the cache would differ.
        w = tf.exp(-0.5 * (dof + 1.0) * tf.math.log(base))
        wu = w / base
        kernels = tf.stack([w] + [wu * c for c in comps], axis=1)  # [B, 1 + d, L(, L)]
        return fft(kernels, fft_length)

    g_hat = fft(grid, fft_length)  # [B, 1, L(, L/2 + 1)]
    if cache is None:
        k_hat = kernel_spectra()
    else:
        if cache.batch != y.shape[0]:
            raise _invalid(f"FftKernelCache(batch={cache.batch}) cannot serve y of shape {y.shape}")
        key = tf.concat([tf.cast(spacing, tf.float64),
                         tf.cast(tf.stack([length]), tf.float64),
                         tf.cast(tf.reshape(dof, [1]), tf.float64)], axis=0)
        k_hat = cache.get(key, kernel_spectra, g_hat.dtype)
    pot = ifft(g_hat * k_hat[:, 1:], fft_length)
    pot = pot[:, :, :m] if d == 1 else pot[:, :, :m, :m]
    rep = _ops.tsne_fft_gather(y, pot, origin, box_width, interpolation_points=p)
    # sum_i (w * 1)_i = <grid, w * grid> = sum_k |g_k|^2 Re(w_k) / L^d over
    # the full spectrum; the half spectrum of rfft counts its inner columns
    # twice (the real input's spectrum is conjugate-symmetric).
    half = tf.shape(g_hat)[-1]
    col = tf.range(half)
    twice = tf.cast(tf.where((col == 0) | (2 * col == length), 1, 2), dtype)
    power = tf.math.real(g_hat[:, 0]) ** 2 + tf.math.imag(g_hat[:, 0]) ** 2
    terms = power * tf.math.real(k_hat[:, 0]) * twice
    total = _sum_over_points(tf.reshape(terms, [tf.shape(terms)[0], -1]))
    z = total / tf.cast(length, dtype) ** d - tf.cast(n, dtype)
    return rep, z


register_repulsion("fft", _fft_repulsion, _FFT_OPTIONS, dims=(1, 2), make_cache=FftKernelCache)


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


def _barnes_hut(y, dof, angle=0.5):
    return barnes_hut_repulsion(y, dof, angle=angle)


register_repulsion("barnes_hut", _barnes_hut, {"angle": 0.5}, dims=(1, 2, 3))
