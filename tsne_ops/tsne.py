"""Plain t-SNE: the embedding itself is optimised (case A).

t-SNE turns the data into a joint distribution P over pairs of points
(Gaussian neighbourhoods whose widths are calibrated to a perplexity, then
symmetrised) and looks for points in 2 or 3 dimensions whose Student-t
distribution Q over pairs matches P, by gradient descent on KL(P || Q).
Everything after P depends only on P: the data enters once.

:class:`TSNE` is a drop-in replacement for ``sklearn.manifold.TSNE``
(``method='exact'``): the same parameters, the same initialisation, the same
optimiser (momentum and gains, early exaggeration for the first 250
iterations, convergence checks every 50), the same fitted attributes. The
difference is where the work happens: the distances, the perplexity search and
the gradient are the TensorFlow ops of this package (C++ on the CPU, CUDA on
a GPU), and the optimiser runs as a ``tf.while_loop`` inside ``tf.function``
so that no Python runs between iterations.
"""
import math
import numbers
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import validate_data

from tsne_ops._validation import (_bad, _is_int, _is_real, check_perplexity, usable_perplexity,  # noqa: F401
                                  validate_input)

# sklearn.manifold._t_sne constants, kept identical so results compare.
_N_ITER_CHECK = 50
_MIN_GAIN = 0.01
_MOMENTUM_EARLY = 0.5
_MOMENTUM_LATE = 0.8


def learning_rate_auto(n_samples, early_exaggeration):
    """scikit-learn's ``learning_rate='auto'``: max(N / early_exaggeration / 4, 50)."""
    return max(n_samples / early_exaggeration / 4.0, 50.0)


def initial_embedding(X, n_components, init, random_state):
    """scikit-learn's initialisation, as float32 ``[N, n_components]``.

    ``'pca'``: the first principal components, scaled so that the first column
    has standard deviation 1e-4. ``'random'``: 1e-4 * standard normal.
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
        if np.ptp(X, axis=0).max() > 0:
            pca = PCA(n_components=n_components, random_state=rng)
            pca.set_output(transform="default")
            Y = pca.fit_transform(X).astype(np.float32, copy=False)
            spread = float(np.std(Y[:, 0]))
            if spread > 0 and math.isfinite(spread):
                return Y / spread * 1e-4
        warnings.warn("init='pca': X has no variance (all rows are identical); "
                      "using init='random' instead", UserWarning, stacklevel=3)
    return 1e-4 * rng.standard_normal(size=(len(X), n_components)).astype(np.float32)


class GradientDescent:
    """scikit-learn's t-SNE optimiser on the ``tsne_gradient`` op.

    Per iteration (``sklearn.manifold._t_sne._gradient_descent``)::

        grad   = tsne_gradient(P, Y, exaggeration, dof)
        gains  = max(where(update * grad < 0, gains + 0.2, gains * 0.8), 0.01)
        update = momentum * update - learning_rate * gains * grad
        Y     += update

    The state (``Y``, ``update``, ``gains``) lives in ``tf.Variable``s.
    :meth:`run` executes ``n`` iterations in one ``tf.function`` call: a
    ``tf.while_loop`` of ``n - 1`` iterations without the KL divergence and a
    last one with it, so the only per-iteration work is the fused gradient
    kernel and a few element-wise ops on ``[N, d]`` tensors.
    """

    def __init__(self, P, Y0, learning_rate, dof):
        import tensorflow as tf

        self._tf = tf
        self.P = tf.convert_to_tensor(P)
        dtype = self.P.dtype
        self.Y = tf.Variable(tf.cast(Y0, dtype), trainable=False, name="embedding")
        self.update = tf.Variable(tf.zeros_like(self.Y), trainable=False, name="update")
        self.gains = tf.Variable(tf.ones_like(self.Y), trainable=False, name="gains")
        self.learning_rate = float(learning_rate)
        self.dof = float(dof)
        self._run = tf.function(self._run_impl, reduce_retracing=True)

    def reset(self):
        """Zero the momentum and reset the gains (scikit-learn does this
        when early exaggeration ends)."""
        self.update.assign(self._tf.zeros_like(self.update))
        self.gains.assign(self._tf.ones_like(self.gains))

    def _run_impl(self, p, n_steps, momentum, exaggeration):
        # momentum and exaggeration are Python floats: one trace per phase.
        from tsne_ops import ops

        tf = self._tf
        dtype = p.dtype
        lr = tf.constant(self.learning_rate, dtype)
        mom = tf.constant(momentum, dtype)
        min_gain = tf.constant(_MIN_GAIN, dtype)
        up = tf.constant(0.2, dtype)
        down = tf.constant(0.8, dtype)

        def step(y, update, gains, compute_kl):
            grad, kl = ops.tsne_gradient(p, y, exaggeration=exaggeration, dof=self.dof,
                                         compute_kl=compute_kl)
            gains = tf.maximum(tf.where(update * grad < 0, gains + up, gains * down), min_gain)
            grad = gains * grad
            update = mom * update - lr * grad
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

    def run(self, n_steps, momentum, exaggeration):
        """Run ``n_steps`` >= 1 iterations. Returns (KL at the start of the
        last iteration, norm of the gains-scaled gradient of that iteration),
        the two numbers scikit-learn's convergence check uses."""
        kl, grad_norm = self._run(self.P, self._tf.constant(int(n_steps), self._tf.int32),
                                  float(momentum), float(exaggeration))
        return float(kl), float(grad_norm)


class TSNE(TransformerMixin, BaseEstimator):
    """t-SNE on TensorFlow custom ops, compatible with ``sklearn.manifold.TSNE``.

    Replace ``from sklearn.manifold import TSNE`` with
    ``from tsne_ops import TSNE``; parameters, defaults and fitted attributes
    follow scikit-learn's exact method. The gradient is always exact (the
    fused O(N^2) kernel); ``method``, ``angle`` and ``n_jobs`` are accepted
    for compatibility and validated, but there is no Barnes-Hut approximation
    yet, so setting them to anything but their defaults warns
    (``UserWarning``).

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
        'auto' is scikit-learn's max(N / early_exaggeration / 4, 50).
    max_iter : int, default=1000
        Total iterations, early exaggeration included.
    n_iter_without_progress : int, default=300
        Stop when the KL divergence (checked every 50 iterations) has not
        improved for this many iterations, after early exaggeration.
    min_grad_norm : float, default=1e-7
        Stop when the gradient norm (checked every 50 iterations) falls below.
    metric : {'euclidean', 'precomputed'}, default='euclidean'
        'precomputed': ``X`` is a square matrix of the distances to calibrate
        on (used as given, like scikit-learn).
    init : {'pca', 'random'} or ndarray of shape (n_samples, n_components), default='pca'
        scikit-learn's initialisations (first column's std 1e-4).
    verbose : int, default=0
        1: a line per phase; 2: also a line per convergence check.
    random_state : int, RandomState or None
        Seeds the initialisation (the optimisation itself is deterministic).
    method : {'exact', 'barnes_hut'}, default='exact'
        Accepted for compatibility; the gradient is exact either way
        ('barnes_hut' warns).
    angle : float in [0, 1], default=0.5
        Accepted for compatibility; unused (anything but 0.5 warns).
    n_jobs : int or None
        Accepted for compatibility; TensorFlow's thread pools are used
        (anything but None warns).
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
    perplexity_ : float
        The perplexity used: ``perplexity``, or its lowered value.
    kl_divergence_ : float
        KL divergence after optimisation (without exaggeration).
    n_iter_ : int
        Index of the last iteration run (scikit-learn's convention: 999 after
        1000 iterations).
    learning_rate_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names (a pandas DataFrame).
    """

    def __init__(self, n_components=2, *, perplexity=30.0, early_exaggeration=12.0,
                 learning_rate="auto", max_iter=1000, n_iter_without_progress=300,
                 min_grad_norm=1e-7, metric="euclidean", init="pca", verbose=0,
                 random_state=None, method="exact", angle=0.5, n_jobs=None, dof=None,
                 dtype="float32", early_exaggeration_iter=250, callback=None,
                 callback_every=50):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.n_iter_without_progress = n_iter_without_progress
        self.min_grad_norm = min_grad_norm
        self.metric = metric
        self.init = init
        self.verbose = verbose
        self.random_state = random_state
        self.method = method
        self.angle = angle
        self.n_jobs = n_jobs
        self.dof = dof
        self.dtype = dtype
        self.early_exaggeration_iter = early_exaggeration_iter
        self.callback = callback
        self.callback_every = callback_every

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
        if not isinstance(self.metric, str) or self.metric not in ("euclidean", "precomputed"):
            raise _bad("metric", self.metric, "'euclidean' or 'precomputed'")
        if isinstance(self.init, str):
            if self.init not in ("pca", "random"):
                raise _bad("init", self.init, "'pca', 'random' or an array")
            if self.init == "pca" and self.metric == "precomputed":
                raise ValueError("init='pca' cannot be used with metric='precomputed'; "
                                 "use init='random' or an array")
        elif not isinstance(self.init, np.ndarray):
            raise _bad("init", type(self.init).__name__, "'pca', 'random' or an array")
        if not _is_int(self.verbose) or self.verbose < 0:
            raise _bad("verbose", self.verbose, "an integer >= 0")
        if self.method not in ("exact", "barnes_hut"):
            raise _bad("method", self.method, "'exact' or 'barnes_hut'")
        if not _is_real(self.angle) or not 0 <= self.angle <= 1:
            raise _bad("angle", self.angle, "a number in [0, 1]")
        if self.n_jobs is not None and not _is_int(self.n_jobs):
            raise _bad("n_jobs", self.n_jobs, "an integer or None")
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
        # Accepted for scikit-learn compatibility, not honoured yet: say so
        # rather than let a user believe the setting took effect.
        if self.method != "exact":
            warnings.warn(f"method={self.method!r} is not implemented yet: the gradient is "
                          f"exact (method='exact')", UserWarning, stacklevel=3)
        if self.angle != 0.5:
            warnings.warn(f"angle={self.angle!r} has no effect: the gradient is exact",
                          UserWarning, stacklevel=3)
        if self.n_jobs is not None:
            warnings.warn(f"n_jobs={self.n_jobs!r} has no effect: TensorFlow's thread pools "
                          f"are used (tf.config.threading)", UserWarning, stacklevel=3)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.metric == "precomputed"
        # embedding_ is in the precision of the optimisation (``dtype``).
        try:
            tags.transformer_tags.preserves_dtype = [np.dtype(self.dtype).name]
        except TypeError:  # an invalid dtype: fit reports it
            tags.transformer_tags.preserves_dtype = []
        return tags

    def _validate_data(self, X):
        # scikit-learn's own validation: its messages for sparse, complex,
        # object, empty, one-sample and non-finite input, and n_features_in_.
        # Integers become float64, in which their distances are exact.
        X = validate_input(validate_data, self, X, accept_sparse=False,
                           dtype=[np.float64, np.float32], ensure_min_samples=2)
        n = X.shape[0]
        if self.metric == "precomputed":
            if X.shape[0] != X.shape[1]:
                raise ValueError(f"X must be a square distance matrix with metric='precomputed', "
                                 f"got shape {X.shape}")
            if np.any(X < 0):
                raise ValueError("X must be non-negative with metric='precomputed'")
        if isinstance(self.init, np.ndarray) and self.init.shape != (n, self.n_components):
            raise ValueError(f"init array must have shape ({n}, {self.n_components}), "
                             f"got {self.init.shape}")
        if isinstance(self.init, np.ndarray) and not np.all(np.isfinite(self.init)):
            raise ValueError("init array must not contain NaN or infinity")
        return X

    # -- fitting ------------------------------------------------------------

    def joint_probabilities(self, X, perplexity=None):
        """P for validated data ``X`` ([N, N] numpy array in X's precision);
        ``perplexity`` defaults to ``usable_perplexity(self.perplexity, N)``."""
        from tsne_ops.affinities import exact_joint_probabilities

        if perplexity is None:
            perplexity = usable_perplexity(self.perplexity, len(X))
        return exact_joint_probabilities(X, perplexity, precomputed=self.metric == "precomputed")

    def fit(self, X, y=None):
        """Compute the embedding of ``X`` [n_samples, n_features]; returns self."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Compute and return the embedding of ``X`` (also in ``embedding_``)."""
        import tensorflow as tf

        self._validate_params()
        X = self._validate_data(X)
        n = X.shape[0]
        self.perplexity_ = usable_perplexity(self.perplexity, n)
        dtype = np.dtype(self.dtype)
        dof = float(self.dof) if self.dof is not None else float(max(self.n_components - 1, 1))
        self.learning_rate_ = (learning_rate_auto(n, self.early_exaggeration)
                               if self.learning_rate == "auto" else float(self.learning_rate))

        t0 = time.time()
        P = tf.cast(self.joint_probabilities(X, self.perplexity_), dtype)
        if self.verbose:
            print(f"[t-SNE] Computed joint probabilities for {n} samples "
                  f"in {time.time() - t0:.3f}s")
        Y0 = initial_embedding(X, self.n_components, self.init, self.random_state)
        opt = GradientDescent(P, Y0.astype(dtype), self.learning_rate_, dof)

        n_early = min(self.early_exaggeration_iter, self.max_iter)
        self._stopped = False
        kl, it = None, -1
        if n_early > 0:
            kl, it = self._descend(opt, 0, n_early, _MOMENTUM_EARLY,
                                   float(self.early_exaggeration), n_early)
            if self.verbose:
                print(f"[t-SNE] KL divergence after {it + 1} iterations with early "
                      f"exaggeration: {kl:f}")
        if not self._stopped and (it < n_early - 1 or self.max_iter > n_early):
            opt.reset()
            kl_late, it_late = self._descend(opt, it + 1, self.max_iter, _MOMENTUM_LATE, 1.0,
                                             self.n_iter_without_progress)
            if it_late is not None:
                kl, it = kl_late, it_late
            else:
                kl = None
        if kl is None or n_early == self.max_iter:
            # No iteration without exaggeration: report the plain KL.
            from tsne_ops import ops
            kl = float(ops.tsne_loss(P, opt.Y, dof=dof))
        if self.verbose:
            print(f"[t-SNE] KL divergence after {it + 1} iterations: {kl:f} "
                  f"({time.time() - t0:.2f}s in all)")
        self.embedding_ = opt.Y.numpy()
        self.kl_divergence_ = float(kl)
        self.n_iter_ = int(max(it, 0))
        return self.embedding_

    def _descend(self, opt, it, max_iter, momentum, exaggeration, n_iter_without_progress):
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
            stop = min(_next_multiple_end(i, _N_ITER_CHECK), max_iter - 1)
            if every is not None:
                stop = min(stop, _next_multiple_end(i, every))
            error, grad_norm = opt.run(stop - i + 1, momentum, exaggeration)
            i = stop
            if every is not None and (i + 1) % every == 0:
                if self.callback(i + 1, error, opt.Y.numpy()) is True:
                    self._stopped = True
                    break
            if (i + 1) % _N_ITER_CHECK == 0:
                if self.verbose >= 2:
                    toc = time.time()
                    print(f"[t-SNE] Iteration {i + 1}: error = {error:.7f}, gradient norm = "
                          f"{grad_norm:.7f} ({_N_ITER_CHECK} iterations in {toc - tic:.3f}s)")
                    tic = toc
                if error < best_error:
                    best_error, best_iter = error, i
                elif i - best_iter > n_iter_without_progress:
                    if self.verbose >= 2:
                        print(f"[t-SNE] Iteration {i + 1}: did not make any progress during "
                              f"the last {n_iter_without_progress} episodes. Finished.")
                    break
                if grad_norm <= self.min_grad_norm:
                    if self.verbose >= 2:
                        print(f"[t-SNE] Iteration {i + 1}: gradient norm {grad_norm:f}. Finished.")
                    break
            i += 1
        return error, min(i, max_iter - 1)


def _next_multiple_end(i, k):
    """Smallest j >= i with (j + 1) % k == 0."""
    return ((i // k) + 1) * k - 1
