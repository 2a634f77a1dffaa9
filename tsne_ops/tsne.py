"""Plain t-SNE: the embedding itself is optimised (case A).

t-SNE turns the data into a joint distribution P over pairs of points
(Gaussian neighbourhoods whose widths are calibrated to a perplexity, then
symmetrised) and looks for points in 2 or 3 dimensions whose Student-t
distribution Q over pairs matches P, by gradient descent on KL(P || Q).
Everything after P depends only on P: the data enters once.

:class:`TSNE` is a drop-in replacement for ``sklearn.manifold.TSNE``:
the same parameters, the same initialisation, the same optimiser (momentum
and gains, early exaggeration for the first 250 iterations, convergence
checks every 50), the same fitted attributes. The difference is where the
work happens: the distances, the perplexity search and the gradient are the
TensorFlow ops of this package (C++ on the CPU, CUDA on a GPU), and the
optimiser (:class:`GradientDescent`) runs as a ``tf.while_loop`` inside
``tf.function`` so that no Python runs between iterations.

Small N runs the exact method (a dense P, every pair). Large N keeps P only
over each point's nearest neighbours (a ``tf.SparseTensor``) and
approximates the repulsion over all pairs, by FFT-accelerated interpolation
(``method='fft'``) or a Barnes-Hut tree (``method='barnes_hut'``);
``method='auto'`` chooses by N and the embedding dimension
(:func:`choose_method`).
For a numpy ``X`` with the exact method and no TensorFlow GPU, the same
kernels run without TensorFlow (``tsne_ops/_native.py``: P through the
pybind11 module, the same optimiser as a C++ loop), and TensorFlow is not
imported at all.
"""
import math
import sys
import time
import warnings

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import validate_data

from tsne_ops.distances import check_metric
from tsne_ops._validation import (_bad, _is_int, _is_real, check_perplexity, usable_perplexity,  # noqa: F401
                                  validate_input)

# sklearn.manifold._t_sne constants, kept identical so results compare.
_N_ITER_CHECK = 50
_MIN_GAIN = 0.01
_MOMENTUM_EARLY = 0.5
_MOMENTUM_LATE = 0.8
# Sparse data with at most this many elements (N x D) is densified: 1 GiB in float64.
_DENSIFY_MAX_ELEMENTS = 2 ** 27


def learning_rate_auto(n_samples, early_exaggeration):
    """scikit-learn's ``learning_rate='auto'``: max(N / early_exaggeration / 4, 50)."""
    return max(n_samples / early_exaggeration / 4.0, 50.0)


def initial_embedding(X, n_components, init, random_state):
    """scikit-learn's initialisation, as float32 ``[N, n_components]``.

    ``'pca'``: the first principal components, scaled so that the first column
    has standard deviation 1e-4 (``X`` may be ``scipy.sparse``, as
    scikit-learn's PCA takes it). ``'random'``: 1e-4 * standard normal.
    An array is returned as given.
    """
    from sklearn.decomposition import PCA
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    if isinstance(init, np.ndarray):
        return np.asarray(init)
    if init == "pca":
        # When every row of X is the same point, PCA has no direction to offer
        # and scikit-learn's scaling divides by zero: any start is as good.
        extent = (X.max(axis=0) - X.min(axis=0)) if scipy.sparse.issparse(X) else np.ptp(X, axis=0)
        if np.max(extent.toarray() if scipy.sparse.issparse(extent) else extent) > 0:
            pca = PCA(n_components=n_components, random_state=rng)
            pca.set_output(transform="default")
            Y = pca.fit_transform(X).astype(np.float32, copy=False)
            spread = float(np.std(Y[:, 0]))
            if spread > 0 and math.isfinite(spread):
                return Y / spread * 1e-4
        warnings.warn("init='pca': X has no variance (all rows are identical); "
                      "using init='random' instead", UserWarning, stacklevel=3)
    return 1e-4 * rng.standard_normal(size=(X.shape[0], n_components)).astype(np.float32)


class GradientDescent:
    """scikit-learn's t-SNE optimiser on the ``tsne_gradient`` op.

    Per iteration (``sklearn.manifold._t_sne._gradient_descent``)::

        grad   = tsne_gradient(P, Y, exaggeration, dof, method)
        gains  = max(where(update * grad < 0, gains + 0.2, gains * 0.8), 0.01)
        update = momentum * update - learning_rate * gains * grad
        update = update * min(1, max_step_norm / |update_i|)   (per point; optional)
        Y     += update

    ``P`` is a dense ``[N, N]`` array (the exact gradient, fused kernel) or a
    ``tf.SparseTensor`` (as ``knn_joint_probabilities`` returns): then the
    attraction runs over P's stored entries and the repulsion is ``method``
    (``'exact'``, ``'fft'``, ``'barnes_hut'``, with ``method_options`` such
    as ``angle``), as in ``tsne_gradient``. ``max_step_norm`` (openTSNE's
    step clipping) bounds how far one point moves in one iteration.

    The state (``Y``, ``update``, ``gains``) lives in ``tf.Variable``s.
    :meth:`run` executes ``n`` iterations in one ``tf.function`` call: a
    ``tf.while_loop`` of ``n - 1`` iterations without the KL divergence and a
    last one with it, so the only per-iteration work is the gradient
    kernel(s) and a few element-wise ops on ``[N, d]`` tensors.

    The interface :class:`TSNE` relies on (and the only one): ``run``,
    ``reset`` and ``embedding``.
    """

    def __init__(self, P, Y0, learning_rate, dof, method="exact", max_step_norm=None,
                 **method_options):
        import tensorflow as tf

        from tsne_ops import ops

        self._tf = tf
        if isinstance(P, tf.SparseTensor):
            # The sparse ops take P as it is (a rank-2 P's [nnz, 2] indices
            # too): no batched copy of its indices is built.
            self._p = P
            if method != "exact":
                # An approximate method takes P's CSR view, checked and
                # converted once here (the COO op converted P in every call:
                # half its time at 70,000 points); same kernel, same bits. It
                # also carries the method's cache ('fft': the kernels'
                # spectra, reused while the grid is unchanged). The view holds
                # P's values but not its COO indices (16 bytes an entry): the
                # optimiser keeps no reference to P itself, so a caller that
                # drops P frees them.
                self._p = ops._sparse_csr(P, method)
        else:
            self._p = tf.convert_to_tensor(P)
            if method != "exact" or method_options:
                raise ValueError(f"method={method!r} needs a sparse P (a tf.SparseTensor); "
                                 f"a dense P is always exact")
        dtype = P.dtype if isinstance(P, tf.SparseTensor) else self._p.dtype
        self.Y = tf.Variable(tf.cast(Y0, dtype), trainable=False, name="embedding")
        self.update = tf.Variable(tf.zeros_like(self.Y), trainable=False, name="update")
        self.gains = tf.Variable(tf.ones_like(self.Y), trainable=False, name="gains")
        self.learning_rate = float(learning_rate)
        self.dof = float(dof)
        self.method = method
        self.method_options = dict(method_options)
        self.max_step_norm = None if max_step_norm is None else float(max_step_norm)
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    def reset(self):
        """Zero the momentum and reset the gains (scikit-learn does this
        when early exaggeration ends)."""
        self.update.assign(self._tf.zeros_like(self.update))
        self.gains.assign(self._tf.ones_like(self.gains))

    def embedding(self):
        """The current embedding, a numpy ``[N, d]`` copy."""
        return self.Y.numpy()

    def gradient(self, Y, exaggeration=1.0, compute_kl=True):
        """``tsne_gradient`` of this optimiser's P, dof and method at ``Y``."""
        from tsne_ops import ops

        return ops.tsne_gradient(self._p, Y, exaggeration=exaggeration, dof=self.dof,
                                 compute_kl=compute_kl, method=self.method, **self.method_options)

    def loss(self, Y=None):
        """KL(P || Q) at ``Y`` (default: the current embedding), with Z from
        the same approximation as the gradient."""
        from tsne_ops import ops

        Y = self.Y if Y is None else Y
        return float(ops.tsne_loss(self._p, Y, dof=self.dof, method=self.method,
                                   **self.method_options))

    def _run_impl(self, n_steps, lr, momentum, exaggeration):
        # Every argument is a tensor: one trace per optimiser.
        tf = self._tf
        dtype = self.Y.dtype
        lr = tf.cast(lr, dtype)
        mom = tf.cast(momentum, dtype)
        exaggeration = tf.cast(exaggeration, dtype)
        min_gain = tf.constant(_MIN_GAIN, dtype)
        up = tf.constant(0.2, dtype)
        down = tf.constant(0.8, dtype)
        max_step = self.max_step_norm

        def step(y, update, gains, compute_kl):
            grad, kl = self.gradient(y, exaggeration, compute_kl)
            gains = tf.maximum(tf.where(update * grad < 0, gains + up, gains * down), min_gain)
            grad = gains * grad
            update = mom * update - lr * grad
            if max_step is not None:
                norm = tf.norm(update, axis=-1, keepdims=True)
                update = update * tf.minimum(tf.ones_like(norm),
                                             tf.constant(max_step, dtype) / tf.maximum(
                                                 norm, tf.constant(1e-30, dtype)))
            return y + update, update, gains, grad, kl

        def body(i, y, update, gains):
            y, update, gains, _, _ = step(y, update, gains, False)
            return i + 1, y, update, gains

        _, y, update, gains = tf.while_loop(
            lambda i, *_: i < n_steps - 1, body,
            (tf.constant(0, tf.int32), self.Y.read_value(), self.update.read_value(),
             self.gains.read_value()))
        y, update, gains, grad, kl = step(y, update, gains, True)
        self.Y.assign(y)
        self.update.assign(update)
        self.gains.assign(gains)
        return kl, tf.norm(grad)

    def run(self, n_steps, momentum, exaggeration, learning_rate=None):
        """Run ``n_steps`` >= 1 iterations. Returns (KL at the start of the
        last iteration, norm of the gains-scaled gradient of that iteration),
        the two numbers scikit-learn's convergence check uses. With an
        approximate method the KL uses that method's Z. ``learning_rate``
        (optional) replaces the one given at construction from now on."""
        tf = self._tf
        if learning_rate is not None:
            self.learning_rate = float(learning_rate)
        kl, grad_norm = self._run(tf.constant(int(n_steps), tf.int32),
                                  tf.constant(self.learning_rate, tf.float64),
                                  tf.constant(float(momentum), tf.float64),
                                  tf.constant(float(exaggeration), tf.float64))
        return float(kl), float(grad_norm)

    def kl_divergence(self):
        """KL(P || Q) of the current embedding, without exaggeration (Z from
        the method's approximation): :meth:`loss` at the current ``Y``."""
        return self.loss()


# -- choosing the method ------------------------------------------------------
#
# The embedding dimensions each sparse method supports on the CPU.
_METHOD_DIMS = {"fft": (1, 2), "barnes_hut": (1, 2, 3)}
_METHODS = ("auto", "exact", "barnes_hut", "fft")
_NEIGHBORS = ("auto", "exact", "approx")
# method='auto': the dense exact method up to these N (by n_components),
# the sparse kNN P with an approximate repulsion above. Measured by
# benchmarks/tsne_crossover.py (benchmarks/results/tsne_crossover.json:
# whole default fits on MNIST PCA-50, one run, 2 shared cores): in 2
# dimensions exact was the fastest method at every N measured (2,000, 5,000,
# 10,000; see the file's "rule" entry), Barnes-Hut closing in (its time over
# exact's falling towards 1 at 10,000), so the switch is at 10,000, where a
# dense P also starts to cost real memory (400 MB at 10,000, 1.6 GB at
# 20,000). Not measured: 1 and 3 dimensions (the exact kernel's cost hardly
# depends on d and the octree costs more than the quadtree, so 3-D's
# crossover is no lower than 2-D's), and FFT against Barnes-Hut above
# 10,000: Barnes-Hut was the faster of the two up to 10,000, but 'fft' is
# chosen above for its cost per iteration that grows with the embedding's
# extent rather than with N log N (to be confirmed at 20,000-70,000).
_AUTO_EXACT_MAX_N = {1: 10000, 2: 10000, 3: 10000}
# Beyond 3 dimensions neither approximation applies: the dense exact method
# up to this N, then the sparse P with the exact all-pairs repulsion (O(N^2)
# time but O(N k) memory, where a dense P would need N^2 floats).
_AUTO_DENSE_MAX_N_HIGH_D = 10000


def choose_method(n_samples, n_components):
    """What ``method='auto'`` runs for ``n_samples`` points embedded in
    ``n_components`` dimensions: ``(method, sparse)``, ``sparse`` True when P
    is the kNN P (``sparse_joint_probabilities``) rather than the dense one.

    - up to the measured crossover (``_AUTO_EXACT_MAX_N``): ``'exact'`` on the
      dense P, scikit-learn's exact method;
    - above it, ``'fft'`` for 1 or 2 dimensions and ``'barnes_hut'`` for 3;
    - more than 3 dimensions: ``'exact'``, dense up to
      ``_AUTO_DENSE_MAX_N_HIGH_D`` points, then on the sparse P (exact
      all-pairs repulsion in tiles, O(N^2) time, O(N k) memory).
    """
    if n_components > 3:
        return "exact", n_samples > _AUTO_DENSE_MAX_N_HIGH_D
    if n_samples <= _AUTO_EXACT_MAX_N[n_components]:
        return "exact", False
    return ("fft" if n_components <= 2 else "barnes_hut"), True


# -- the optimiser's schedule --------------------------------------------------
#
# 'sklearn': scikit-learn's (momentum 0.5 then 0.8, one learning rate,
# no step clipping). 'opentsne': openTSNE's choices (momentum 0.8 in both
# phases, the learning rate N / exaggeration of openTSNE's gradient, which
# lacks the factor 2 (dof + 1) / dof = 4 of this package's, so N / 48 during
# early exaggeration (scikit-learn's 'auto') and N / 4 after (both at least
# 50, scikit-learn's floor); each point's
# step clipped to a norm of 5, 750 iterations). Which one the sparse methods
# use by default comes from benchmarks/tsne_optimizer.py: in
# benchmarks/results/tsne_optimizer.json (MNIST 20,000, 'fft') openTSNE's
# finished sooner but at a higher KL against the common P, so scikit-learn's
# stays (the brief: switch only for a lower KL in less time).
_OPTIMIZERS = ("auto", "sklearn", "opentsne")
_SPARSE_DEFAULT_OPTIMIZER = "sklearn"
_OPENTSNE_MAX_STEP_NORM = 5.0


def set_threads(n_jobs):
    """Make TensorFlow's intra-op pool (where the ops' CPU kernels run) use
    ``n_jobs`` threads (-1: every core, -2: all but one, as joblib).

    TensorFlow fixes its pools when its context starts (the first op of the
    process); after that a different count cannot be set, and this warns
    (UserWarning) and keeps the running pool. Returns the count in effect
    (0 = TensorFlow's default, one per core)."""
    import os

    import tensorflow as tf

    want = n_jobs if n_jobs > 0 else max((os.cpu_count() or 1) + 1 + n_jobs, 1)
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == want or (current == 0 and n_jobs == -1):  # 0: TensorFlow's one per core
        return current
    try:
        tf.config.threading.set_intra_op_parallelism_threads(want)
    except RuntimeError:
        warnings.warn(
            f"n_jobs={n_jobs!r} ({want} threads) has no effect: TensorFlow started already in "
            f"this process with {current or 'its default of one per core'} intra-op threads, and "
            f"its thread pool cannot change after that; set n_jobs on the first fit of the "
            f"process (or call tf.config.threading.set_intra_op_parallelism_threads before "
            f"anything else runs)", UserWarning, stacklevel=3)
        return current
    return want


class TSNE(TransformerMixin, BaseEstimator):
    """t-SNE on TensorFlow custom ops, compatible with ``sklearn.manifold.TSNE``.

    Replace ``from sklearn.manifold import TSNE`` with
    ``from tsne_ops import TSNE``; parameters, defaults and fitted attributes
    follow scikit-learn's. Up to a few thousand points the default
    (``method='auto'``) is scikit-learn's exact method: a dense P and the
    fused O(N^2) gradient kernel. Beyond, P is kept only over each point's
    ``3 x perplexity`` nearest neighbours (a sparse P, O(N k) memory) and the
    repulsion over all pairs is approximated: by FFT-accelerated interpolation
    (``'fft'``, FIt-SNE's method, 1 or 2 dimensions) or by a Barnes-Hut tree
    (``'barnes_hut'``, up to 3 dimensions). The optimiser runs in TensorFlow
    (a ``tf.while_loop`` per chunk of iterations), with no Python between
    iterations.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding, >= 1.
    perplexity : float, default=30.0
        Effective number of neighbours of each point. Must be less than
        ``n_samples`` (ValueError otherwise, as in scikit-learn); a value in
        ``[n_samples - 1, n_samples)``, which no point can reach, is lowered
        to ``0.99 (n_samples - 1)`` with a UserWarning (``perplexity_``).
    early_exaggeration : float, default=12.0
        P is multiplied by this for the first ``early_exaggeration_iter``
        iterations, which pulls clusters together early.
    learning_rate : float or 'auto', default='auto'
        'auto' is scikit-learn's max(N / early_exaggeration / 4, 50) (with
        ``optimizer='opentsne'``: that during early exaggeration and
        max(N / 4, 50) after, openTSNE's N / exaggeration in its units).
    max_iter : int, default=1000
        Total iterations, early exaggeration included.
    n_iter_without_progress : int, default=300
        Stop when the KL divergence (checked every 50 iterations) has not
        improved for this many iterations, after early exaggeration.
    min_grad_norm : float, default=1e-7
        Stop when the gradient norm (checked every 50 iterations) falls below.
    metric : str or callable, default='euclidean'
        Any metric ``sklearn.metrics.pairwise_distances`` accepts; its
        distances are squared before the perplexity search, as scikit-learn
        does (Euclidean: squared Euclidean distances). 'precomputed': ``X``
        is a square matrix of distances (also squared), dense, or sparse: a
        neighbour graph such as ``kneighbors_graph(mode='distance')``, whose
        stored entries are each point's candidate neighbours (not with
        ``method='exact'``; a sparse matrix that stores every pair is used as
        the dense matrix it is).
    metric_params : dict or None
        Keyword arguments of the metric (for example ``{'V': ...}`` for
        'mahalanobis').
    init : {'pca', 'random'} or ndarray of shape (n_samples, n_components), default='pca'
        scikit-learn's initialisations (first column's std 1e-4).
    verbose : int, default=0
        1: a progress bar (tqdm, on stderr) over the iterations showing the
        KL divergence of the last 50-iteration check, and scikit-learn's line
        per phase (on stdout); 2: also a line per convergence check.
    random_state : int, RandomState or None
        Seeds the initialisation (the optimisation itself is deterministic).
    method : {'auto', 'exact', 'barnes_hut', 'fft'}, default='auto'
        'exact': dense P, exact gradient (scikit-learn's exact method).
        'barnes_hut': sparse kNN P, Barnes-Hut repulsion with ``angle``
        (n_components <= 3). 'fft': sparse kNN P, FFT-accelerated
        interpolation (n_components <= 2). 'auto': see :func:`choose_method`
        (exact up to the measured crossover, then 'fft' in 1-2 dimensions,
        'barnes_hut' in 3; above 3 dimensions exact, on the sparse P past
        10,000 points). The method used is in ``method_``.
    angle : float >= 0, default=0.5
        Barnes-Hut's trade-off theta (used by 'barnes_hut' only): larger is
        faster and less accurate; 0 is exact, and runs the exact repulsion
        (``method_`` is then 'exact').
    n_jobs : int or None, default=None
        Threads of the CPU kernels (None or -1: every core, k > 0: k threads,
        -k: all but k - 1, as joblib). Without TensorFlow (the exact method on
        a numpy ``X``, no TensorFlow GPU) they are the kernels module's
        threads; on the TensorFlow path TensorFlow's intra-op pool, which
        TensorFlow fixes at the first op of the process: a count given after
        that warns (UserWarning) and is not applied.
    neighbors : {'auto', 'exact', 'approx'}, default='auto'
        How the sparse methods find each point's nearest neighbours, passed
        to :func:`tsne_ops.affinities.sparse_joint_probabilities`. Unused by
        'exact'.
    optimizer : {'auto', 'sklearn', 'opentsne'}, default='auto'
        The schedule: 'sklearn' (scikit-learn's: momentum 0.5 then 0.8, one
        learning rate), 'opentsne' (momentum 0.8 throughout, the learning
        rate max(N / 4, 50) after early exaggeration, each point's step
        clipped to 5). 'auto': 'sklearn' for the exact method (identical to
        scikit-learn), the measured better one for the sparse methods.
    dof : float or None, default=None
        Degrees of freedom of the Student-t kernel; None is scikit-learn's
        max(n_components - 1, 1). Unlike scikit-learn's exact method, the
        gradient is correct for any dof.
    dtype : {'float32', 'float64'}, default='float32'
        Precision of the optimisation and of ``embedding_`` (P is computed in
        float64 when X is float64 or integer, in float32 when X is float32,
        then cast). The estimator's ``preserves_dtype`` tag says which input
        dtype comes out unchanged.
    early_exaggeration_iter : int, default=250
        Length of the early exaggeration phase (scikit-learn's fixed 250).
    callback : callable or None
        Called as ``callback(iteration, kl_divergence, embedding)`` every
        ``callback_every`` iterations (``iteration`` counts from 1,
        ``embedding`` is a numpy copy). Returning True stops the optimisation.
        This is how progress bars and animations hook in.
    callback_every : int, default=50

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components)
    method_ : str
        The method run ('exact', 'barnes_hut' or 'fft').
    sparse_ : bool
        Whether P was the sparse kNN P.
    optimizer_ : str
        The schedule run ('sklearn' or 'opentsne').
    perplexity_ : float
        The perplexity used: ``perplexity``, or its lowered value.
    kl_divergence_ : float
        KL divergence after optimisation (without exaggeration); for the
        sparse methods over the sparse P, with Z from the same approximation
        as the gradient.
    n_iter_ : int
        Index of the last iteration run (scikit-learn's convention: 999 after
        1000 iterations).
    learning_rate_ : float
        The learning rate (of the last phase).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (a pandas DataFrame).
    """

    def __init__(self, n_components=2, *, perplexity=30.0, early_exaggeration=12.0,
                 learning_rate="auto", max_iter=1000, n_iter_without_progress=300,
                 min_grad_norm=1e-7, metric="euclidean", metric_params=None, init="pca", verbose=0,
                 random_state=None, method="auto", angle=0.5, n_jobs=None, neighbors="auto",
                 optimizer="auto", dof=None, dtype="float32", early_exaggeration_iter=250,
                 callback=None, callback_every=50):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_iter_without_progress = n_iter_without_progress
        self.min_grad_norm = min_grad_norm
        self.metric = metric
        self.metric_params = metric_params
        self.init = init
        self.verbose = verbose
        self.random_state = random_state
        self.method = method
        self.angle = angle
        self.n_jobs = n_jobs
        self.neighbors = neighbors
        self.optimizer = optimizer
        self.dof = dof
        self.dtype = dtype
        self.early_exaggeration_iter = early_exaggeration_iter
        self.callback = callback
        self.callback_every = callback_every

    # scikit-learn's private schedule knobs, which its own tests set on an
    # instance: the length of early exaggeration (our early_exaggeration_iter)
    # and the interval of the convergence checks.
    _N_ITER_CHECK = _N_ITER_CHECK

    @property
    def _EXPLORATION_MAX_ITER(self):
        return self.early_exaggeration_iter

    @_EXPLORATION_MAX_ITER.setter
    def _EXPLORATION_MAX_ITER(self, value):
        self.early_exaggeration_iter = value

    # -- validation ---------------------------------------------------------

    def _validate_params(self):
        if not _is_int(self.n_components) or self.n_components < 1:
            raise _bad("n_components", self.n_components, "an integer >= 1")
        check_perplexity(self.perplexity)
        if not _is_real(self.early_exaggeration) or not self.early_exaggeration >= 1 \
                or not math.isfinite(self.early_exaggeration):
            raise _bad("early_exaggeration", self.early_exaggeration, "a finite number >= 1")
        if isinstance(self.learning_rate, str):
            if self.learning_rate != "auto":
                raise _bad("learning_rate", self.learning_rate, "'auto' or a number > 0")
        elif not _is_real(self.learning_rate) or not self.learning_rate > 0 \
                or not math.isfinite(self.learning_rate):
            raise _bad("learning_rate", self.learning_rate, "'auto' or a finite number > 0")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise _bad("max_iter", self.max_iter, "an integer >= 1")
        if not _is_int(self.n_iter_without_progress) or self.n_iter_without_progress < -1:
            raise _bad("n_iter_without_progress", self.n_iter_without_progress, "an integer >= -1")
        if not _is_real(self.min_grad_norm) or not self.min_grad_norm >= 0:
            raise _bad("min_grad_norm", self.min_grad_norm, "a number >= 0")
        check_metric(self.metric, self.metric_params)
        if isinstance(self.init, str):
            if self.init not in ("pca", "random"):
                raise _bad("init", self.init, "'pca', 'random' or an array")
            if self.init == "pca" and self.metric == "precomputed":
                # scikit-learn's message (its tests match it)
                raise ValueError('The parameter init="pca" cannot be used with '
                                 'metric="precomputed"; use init="random" or an array')
        elif not isinstance(self.init, np.ndarray):
            raise _bad("init", type(self.init).__name__, "'pca', 'random' or an array")
        if not _is_int(self.verbose) or self.verbose < 0:
            raise _bad("verbose", self.verbose, "an integer >= 0")
        if not isinstance(self.method, str) or self.method not in _METHODS:
            raise _bad("method", self.method, "one of " + ", ".join(map(repr, _METHODS)))
        if self.method == "barnes_hut" and self.n_components > 3:
            # scikit-learn's message (its tests match it)
            raise ValueError(f"'n_components' should be inferior to 4 for the barnes_hut "
                             f"algorithm as it relies on quad-tree or oct-tree, got "
                             f"n_components={self.n_components} with method='barnes_hut'")
        dims = _METHOD_DIMS.get(self.method)
        if dims is not None and self.n_components not in dims:
            raise ValueError(
                f"method={self.method!r} supports n_components in {dims} on the CPU, got "
                f"n_components={self.n_components}; use method='exact' (or 'barnes_hut' "
                f"for 3 dimensions)")
        if not _is_real(self.angle) or not 0 <= self.angle or not math.isfinite(self.angle):
            raise _bad("angle", self.angle, "a finite number >= 0")
        if self.n_jobs is not None and (not _is_int(self.n_jobs) or self.n_jobs == 0):
            raise _bad("n_jobs", self.n_jobs, "a non-zero integer (-1: every core) or None")
        if not isinstance(self.neighbors, str) or self.neighbors not in _NEIGHBORS:
            raise _bad("neighbors", self.neighbors, "one of " + ", ".join(map(repr, _NEIGHBORS)))
        if not isinstance(self.optimizer, str) or self.optimizer not in _OPTIMIZERS:
            raise _bad("optimizer", self.optimizer,
                       "one of " + ", ".join(map(repr, _OPTIMIZERS)))
        if self.dof is not None and (not _is_real(self.dof) or not self.dof > 0
                                     or not math.isfinite(self.dof)):
            raise _bad("dof", self.dof, "a finite number > 0 or None")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            raise _bad("dtype", self.dtype, "'float32' or 'float64'")
        if not _is_int(self.early_exaggeration_iter) or self.early_exaggeration_iter < 0:
            raise _bad("early_exaggeration_iter", self.early_exaggeration_iter, "an integer >= 0")
        if self.callback is not None and not callable(self.callback):
            raise _bad("callback", self.callback, "callable or None")
        if not _is_int(self.callback_every) or self.callback_every < 1:
            raise _bad("callback_every", self.callback_every, "an integer >= 1")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.input_tags.sparse = True
        # embedding_ is in the precision of the optimisation (``dtype``).
        try:
            tags.transformer_tags.preserves_dtype = [np.dtype(self.dtype).name]
        except TypeError:  # an invalid dtype: fit reports it
            tags.transformer_tags.preserves_dtype = []
        return tags

    def _validate_data(self, X):
        # scikit-learn's own validation: its messages for complex, object,
        # empty, one-sample and non-finite input, and n_features_in_.
        # Integers become float64, in which their distances are exact; any
        # sparse format becomes CSR.
        precomputed = self.metric == "precomputed"
        X = validate_input(validate_data, self, X, accept_sparse="csr",
                           dtype=[np.float64, np.float32], ensure_min_samples=2)
        n = X.shape[0]
        if precomputed:
            X = self._validate_precomputed(X)
        elif scipy.sparse.issparse(X) and n * X.shape[1] <= _DENSIFY_MAX_ELEMENTS:
            # Small enough to hold densely: the ops' own distances, and the
            # same P (and embedding) as the dense array would give.
            X = X.toarray()
        if isinstance(self.init, np.ndarray) and self.init.shape != (n, self.n_components):
            raise ValueError(f"init array must have shape ({n}, {self.n_components}), "
                             f"got {self.init.shape}")
        if isinstance(self.init, np.ndarray) and not np.all(np.isfinite(self.init)):
            raise ValueError("init array must not contain NaN or infinity")
        return X

    def _validate_precomputed(self, X):
        """A square, non-negative distance matrix; a sparse one (a neighbour
        graph) is refused by the exact method, and densified when it stores
        every pair (then it is the dense matrix, with the same result)."""
        if X.shape[0] != X.shape[1]:
            raise ValueError(f"X should be a square distance matrix with metric='precomputed', "
                             f"got shape {X.shape}")
        sparse = scipy.sparse.issparse(X)
        values = X.data if sparse else X
        if values.size and values.min() < 0:
            raise ValueError(f"X should contain positive distances (non-negative values) with "
                             f"metric='precomputed', got a minimum of {values.min()!r}")
        if not sparse:
            return X
        if self.method == "exact":
            # scikit-learn's message (its tests match it)
            raise TypeError('X: TSNE with method="exact" does not accept sparse precomputed '
                            'distance matrix. Use method="barnes_hut" or provide the dense '
                            'distance matrix.')
        X = X.copy() if not X.has_canonical_format else X
        X.sum_duplicates()
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        off_diagonal = np.bincount(rows[X.indices != rows], minlength=X.shape[0])
        return X.toarray() if np.all(off_diagonal == X.shape[0] - 1) else X

    # -- fitting ------------------------------------------------------------

    def joint_probabilities(self, X, perplexity=None, sparse=None, numpy=None):
        """P for validated data ``X`` (from :meth:`_validate_data`), in X's precision.

        ``sparse`` False: a dense ``[N, N]`` P over every pair; True: a
        ``tf.SparseTensor`` over each point's ``min(N - 1, int(3 perplexity +
        1))`` nearest neighbours (found as ``neighbors`` says), as
        scikit-learn's Barnes-Hut method builds it; None (default): what
        ``method`` uses (:func:`choose_method` for 'auto'). ``perplexity``
        defaults to ``usable_perplexity(self.perplexity, N)``. The dense P is a numpy
        array from the kernels without TensorFlow (``n_jobs`` threads) when no
        TensorFlow tensor or GPU is involved, else a ``tf.Tensor`` from the ops
        (the same values).
        """
        from tsne_ops import _native
        from tsne_ops.affinities import joint_probabilities_of

        if perplexity is None:
            perplexity = usable_perplexity(self.perplexity, X.shape[0])
        if sparse is None:
            sparse = (choose_method(X.shape[0], self.n_components)[1] if self.method == "auto"
                      else self.method != "exact")
        if numpy is None:
            numpy = not sparse and _native.available() and not _native.tensorflow_in_use(X)
        if numpy:
            with _native.threads(self.n_jobs):
                return joint_probabilities_of(X, perplexity, self.metric, self.metric_params,
                                              numpy=True)
        return joint_probabilities_of(X, perplexity, self.metric, self.metric_params,
                                      sparse=sparse, neighbors=self.neighbors)

    def fit(self, X, y=None):
        """Compute the embedding of ``X`` [n_samples, n_features]; returns self."""
        self.fit_transform(X)
        return self

    def _schedule(self, n):
        """(optimizer, early learning rate, late learning rate, early momentum,
        max step norm) for N = ``n`` points."""
        optimizer = self.optimizer
        if optimizer == "auto":
            optimizer = _SPARSE_DEFAULT_OPTIMIZER if self.sparse_ else "sklearn"
        if self.learning_rate == "auto":
            early = learning_rate_auto(n, self.early_exaggeration)
        else:
            early = float(self.learning_rate)
        if optimizer == "sklearn":
            return optimizer, early, early, _MOMENTUM_EARLY, None
        # openTSNE's N / exaggeration (in its units) after early exaggeration.
        late = learning_rate_auto(n, 1.0) if self.learning_rate == "auto" else early
        return optimizer, early, late, _MOMENTUM_LATE, _OPENTSNE_MAX_STEP_NORM

    def fit_transform(self, X, y=None):
        """Compute and return the embedding of ``X`` (also in ``embedding_``)."""
        self._validate_params()
        # -- issue 16: the exact method on a numpy X on the CPU runs without
        # TensorFlow (P and the optimiser on the kernels through the pybind11
        # module, tsne_ops/_native.py); a TensorFlow tensor or GPU keeps the
        # TensorFlow path. n_jobs sets the kernels' threads on that path, and
        # TensorFlow's intra-op threads on the other. --
        from tsne_ops import _native

        tensorflow_input = _native.tensorflow_in_use(X)
        X = self._validate_data(X)
        n = X.shape[0]
        self.perplexity_ = usable_perplexity(self.perplexity, n)
        dtype = np.dtype(self.dtype)
        dof = float(self.dof) if self.dof is not None else float(max(self.n_components - 1, 1))
        if self.method == "auto":
            self.method_, self.sparse_ = choose_method(n, self.n_components)
        else:
            self.method_, self.sparse_ = self.method, self.method != "exact"
        if self.method_ == "barnes_hut" and self.angle == 0:
            # theta = 0 opens every cell: Barnes-Hut is the exact repulsion, run
            # by the exact kernel (on the dense P when the kNN P holds every pair,
            # then the same numbers as method='exact').
            from tsne_ops.affinities import default_n_neighbors

            self.method_ = "exact"
            self.sparse_ = default_n_neighbors(n, self.perplexity_) < n - 1
        if scipy.sparse.issparse(X) and self.metric == "precomputed":
            # A neighbour graph holds no P over every pair: the sparse P, with
            # the exact all-pairs repulsion where 'auto' chose the exact method.
            self.sparse_ = True
        self.optimizer_, lr_early, lr_late, momentum_early, max_step = self._schedule(n)
        options = {"angle": float(self.angle)} if self.method_ == "barnes_hut" else {}

        t0 = time.time()
        native = (self.method_ == "exact" and not self.sparse_ and max_step is None
                  and _native.available() and not tensorflow_input)
        if not native:
            if self.n_jobs is not None:
                set_threads(self.n_jobs)
            import tensorflow as tf
        P = self.joint_probabilities(X, self.perplexity_, sparse=self.sparse_, numpy=native)
        if native:  # -- issue 16: P is a numpy array here --
            P = np.asarray(P).astype(dtype, copy=False)
        elif self.sparse_:
            P = tf.SparseTensor(P.indices, tf.cast(P.values, dtype), P.dense_shape)
        else:
            P = tf.cast(P, dtype)
        self._say(f"[t-SNE] Computed {'sparse (nearest-neighbour) ' if self.sparse_ else ''}"
                  f"joint probabilities for {n} samples in {time.time() - t0:.3f}s")
        Y0 = initial_embedding(X, self.n_components, self.init, self.random_state)
        if native:  # -- issue 16 --
            opt = _native.GradientDescent(P, Y0.astype(dtype), lr_early, dof, n_jobs=self.n_jobs)
        else:
            opt = GradientDescent(P, Y0.astype(dtype), lr_early, dof, method=self.method_,
                                  max_step_norm=max_step, **options)
        # The optimiser holds what it needs of P (for the approximate methods
        # only its CSR view, not P's COO indices), and the data are no longer
        # needed: neither stays alive through the iterations.
        del P, X, Y0
        self._optimize(opt, lr_early, lr_late, momentum_early, t0)
        return self.embedding_

    def _say(self, line):
        """A scikit-learn style line when verbose, above the progress bar."""
        if self.verbose:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)

    def _optimize(self, opt, lr_early, lr_late, momentum_early, t0):
        """The two phases on ``opt`` (anything with ``run``, ``reset``,
        ``embedding`` and ``kl_divergence``); sets embedding_, kl_divergence_,
        n_iter_, learning_rate_."""
        from tqdm import tqdm

        n_early = min(self.early_exaggeration_iter, self.max_iter)
        self._stopped = False
        self._bar = tqdm(total=self.max_iter, unit="it", disable=not self.verbose,
                         file=sys.stderr, leave=False, dynamic_ncols=True,
                         desc=f"t-SNE ({self.method_})")
        self.learning_rate_ = lr_early
        kl, it = None, -1
        try:
            if n_early > 0:
                kl, it = self._descend(opt, 0, n_early, momentum_early,
                                       float(self.early_exaggeration), n_early)
                self._say(f"[t-SNE] KL divergence after {it + 1} iterations with early "
                          f"exaggeration: {kl:f}")
            if not self._stopped and (it < n_early - 1 or self.max_iter > n_early):
                opt.reset()
                self.learning_rate_ = lr_late
                kl_late, it_late = self._descend(
                    opt, it + 1, self.max_iter, _MOMENTUM_LATE, 1.0, self.n_iter_without_progress,
                    learning_rate=lr_late if lr_late != lr_early else None)
                if it_late is not None:
                    kl, it = kl_late, it_late
                else:
                    kl = None
        finally:
            self._bar.refresh()  # the last count and KL, even inside tqdm's mininterval
            self._bar.close()
            del self._bar  # a fitted estimator stays picklable
        if kl is None or n_early == self.max_iter:
            # No iteration without exaggeration: report the plain KL.
            kl = opt.kl_divergence()
        self._say(f"[t-SNE] KL divergence after {it + 1} iterations: {kl:f} "
                  f"({time.time() - t0:.2f}s in all)")
        self.embedding_ = opt.embedding()
        self.kl_divergence_ = float(kl)
        self.n_iter_ = int(max(it, 0))

    def _descend(self, opt, it, max_iter, momentum, exaggeration, n_iter_without_progress,
                 learning_rate=None):
        """scikit-learn's ``_gradient_descent`` from iteration ``it`` to
        ``max_iter`` (exclusive), in chunks that end at convergence checks
        and callbacks. Returns (last KL, last iteration index), or
        (None, None) if there was nothing to run."""
        if it >= max_iter:
            return None, None
        best_error, best_iter = np.finfo(float).max, it
        i, error = it, None
        tic = time.time()
        every = self.callback_every if self.callback is not None else None
        while i < max_iter:
            stop = min(_next_multiple_end(i, self._N_ITER_CHECK), max_iter - 1)
            if every is not None:
                stop = min(stop, _next_multiple_end(i, every))
            if learning_rate is None:
                error, grad_norm = opt.run(stop - i + 1, momentum, exaggeration)
            else:  # a new rate from this phase on (only optimizer='opentsne')
                error, grad_norm = opt.run(stop - i + 1, momentum, exaggeration,
                                           learning_rate=learning_rate)
                learning_rate = None
            self._bar.update(stop - i + 1)
            i = stop
            if every is not None and (i + 1) % every == 0:
                if self.callback(i + 1, error, opt.embedding()) is True:
                    self._stopped = True
                    break
            if (i + 1) % self._N_ITER_CHECK == 0:
                self._bar.set_postfix(kl=f"{error:.4f}", refresh=False)
                if self.verbose >= 2:
                    toc = time.time()
                    self._say(f"[t-SNE] Iteration {i + 1}: error = {error:.7f}, gradient norm = "
                              f"{grad_norm:.7f} ({self._N_ITER_CHECK} iterations in {toc - tic:.3f}s)")
                    tic = toc
                if error < best_error:
                    best_error, best_iter = error, i
                elif i - best_iter > n_iter_without_progress:
                    if self.verbose >= 2:
                        self._say(f"[t-SNE] Iteration {i + 1}: did not make any progress during "
                                  f"the last {n_iter_without_progress} episodes. Finished.")
                    break
                if grad_norm <= self.min_grad_norm:
                    if self.verbose >= 2:
                        self._say(f"[t-SNE] Iteration {i + 1}: gradient norm {grad_norm:f}. "
                                  f"Finished.")
                    break
            i += 1
        return error, min(i, max_iter - 1)


def _next_multiple_end(i, k):
    """Smallest j >= i with (j + 1) % k == 0."""
    return ((i // k) + 1) * k - 1
