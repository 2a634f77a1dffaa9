"""Exact t-SNE in plain TensorFlow: the composite baseline of the suite.

This is t-SNE the way the original TensorFlow write-ups do it, with no custom
op anywhere: the embedding ``Y`` is a ``tf.Variable``, the loss is built from
broadcast ``[N, N, d]`` differences and ``[N, N]`` temporaries, and the
gradient comes from ``tf.GradientTape``. It exists to show what the fused
kernels of ``tsne_ops`` buy over the straightforward TensorFlow program.

Everything else is kept identical to scikit-learn's exact method so that the
numbers compare:

* affinities: squared Euclidean distances (``|x|^2 + |y|^2 - 2 x y^T``), a
  per-row bisection on the Gaussian precision to the target perplexity
  (scikit-learn's ``_binary_search_perplexity``: entropy in nats, tolerance
  1e-5, at most 100 steps, all rows at once), then ``P = (P + P^T) / sum``
  and ``max(P, eps)``; plain TensorFlow ops in float64;
* objective: ``sum(e*P * log(1 + |y_i - y_j|^2)) + log Z``, which is
  ``KL(P || Q) - sum(P log P)`` for exaggeration ``e = 1``. Its gradient is
  scikit-learn's exact gradient ``4 sum_j (e*p_ij - q_ij)(1 + d_ij)^-1
  (y_i - y_j)``, also under early exaggeration (autodiff of ``KL(e*P || Q)``
  itself would scale the repulsive term by ``e`` too, which is not what
  scikit-learn or the fused kernel compute);
* optimiser: scikit-learn's ``_gradient_descent`` (gains +0.2 / x0.8, min gain
  0.01, momentum 0.5 for the 250 early-exaggeration iterations with
  exaggeration 12, then a fresh optimiser state with momentum 0.8),
  learning rate ``max(N / 12 / 4, 50)``, PCA initialisation scaled to a
  first-column standard deviation of 1e-4; a fixed number of iterations (no
  early stopping), run as ``tf.while_loop`` inside ``tf.function``.
"""
import time

import numpy as np

EXAGGERATION_ITER = 250
_MIN_GAIN = 0.01
_PERPLEXITY_TOL = 1e-5
_PERPLEXITY_STEPS = 100


def joint_probabilities(X, perplexity):
    """scikit-learn's exact P for ``X`` [N, D], in plain TensorFlow (float64 numpy out)."""
    import tensorflow as tf

    @tf.function
    def run(x):
        x = tf.cast(x, tf.float32)
        sq = tf.reduce_sum(x * x, axis=1)
        d2 = tf.maximum(sq[:, None] + sq[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True), 0.0)
        d2 = tf.cast(d2, tf.float64)
        n = tf.shape(d2)[0]
        off_diag = 1.0 - tf.eye(n, dtype=tf.float64)
        target = tf.math.log(tf.constant(perplexity, tf.float64))

        def cond_p(beta):
            p = tf.exp(-d2 * beta[:, None]) * off_diag
            s = tf.maximum(tf.reduce_sum(p, axis=1), 1e-8)
            p = p / s[:, None]
            entropy = tf.math.log(s) + beta * tf.reduce_sum(d2 * p, axis=1)
            return p, entropy - target

        inf = tf.constant(np.inf, tf.float64)

        def body(i, beta, lo, hi, done):
            _, diff = cond_p(beta)
            done = done | (tf.abs(diff) <= _PERPLEXITY_TOL)
            up = diff > 0  # entropy too high: sharpen (larger beta)
            new_lo = tf.where(up, beta, lo)
            new_hi = tf.where(up, hi, beta)
            beta_up = tf.where(tf.math.is_inf(hi), beta * 2.0, (beta + hi) / 2.0)
            beta_dn = tf.where(tf.math.is_inf(lo), beta / 2.0, (beta + lo) / 2.0)
            new_beta = tf.where(up, beta_up, beta_dn)
            beta = tf.where(done, beta, new_beta)
            lo = tf.where(done, lo, new_lo)
            hi = tf.where(done, hi, new_hi)
            return i + 1, beta, lo, hi, done

        ones = tf.ones([n], tf.float64)
        _, beta, _, _, _ = tf.while_loop(
            lambda i, b, lo, hi, done: (i < _PERPLEXITY_STEPS) & ~tf.reduce_all(done),
            body, (0, ones, -inf * ones, inf * ones, tf.zeros([n], tf.bool)))
        p, _ = cond_p(beta)
        p = p + tf.transpose(p)
        p = p / tf.maximum(tf.reduce_sum(p), np.finfo(np.float64).eps)
        return tf.maximum(p, np.finfo(np.float64).eps) * off_diag

    return run(tf.constant(X)).numpy()


def pca_init(X, n_components=2, random_state=0):
    """scikit-learn's ``init='pca'``."""
    from sklearn.decomposition import PCA

    Y = PCA(n_components=n_components, random_state=random_state).fit_transform(X)
    Y = Y.astype(np.float32)
    return Y / np.std(Y[:, 0]) * 1e-4


class CompositeTSNE:
    """Exact t-SNE in stock TensorFlow ops with autodiff (see the module doc).

    ``fit_transform(X)`` returns the embedding and sets ``embedding_``,
    ``kl_divergence_`` (exact KL(P || Q) after the last iteration),
    ``n_iter_`` (index of the last iteration, scikit-learn's convention) and
    ``affinity_time_`` (seconds spent computing P).
    """

    def __init__(self, n_components=2, perplexity=30.0, early_exaggeration=12.0,
                 max_iter=1000, random_state=0, log=None, log_every=250):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.max_iter = max_iter
        self.random_state = random_state
        self.log = log
        self.log_every = log_every

    def fit_transform(self, X):
        import tensorflow as tf

        t0 = time.perf_counter()
        P64 = joint_probabilities(X, self.perplexity)
        self.affinity_time_ = time.perf_counter() - t0
        n = X.shape[0]
        P = tf.constant(P64.astype(np.float32))
        p_log_p = float(np.sum(P64 * np.log(np.where(P64 > 0, P64, 1.0))))
        del P64
        lr = max(n / self.early_exaggeration / 4.0, 50.0)
        Y = tf.Variable(pca_init(X, self.n_components, self.random_state), name="Y")
        update = tf.Variable(tf.zeros_like(Y))
        gains = tf.Variable(tf.ones_like(Y))
        off_diag = 1.0 - tf.eye(n, dtype=tf.float32)

        def objective(y, p_e):
            diff = y[:, None, :] - y[None, :, :]            # [N, N, d]
            d2 = tf.reduce_sum(tf.square(diff), axis=-1)     # [N, N]
            num = off_diag / (1.0 + d2)                     # Student-t, dof = 1
            z = tf.reduce_sum(num)
            return tf.reduce_sum(p_e * tf.math.log1p(d2)) + tf.math.log(z)

        @tf.function
        def run(n_steps, momentum, exaggeration):
            p_e = P * exaggeration
            for _ in tf.range(n_steps):
                with tf.GradientTape() as tape:
                    tape.watch(Y)
                    loss = objective(Y, p_e)
                grad = tape.gradient(loss, Y)
                g = tf.maximum(tf.where(update * grad < 0.0, gains + 0.2, gains * 0.8), _MIN_GAIN)
                gains.assign(g)
                update.assign(momentum * update - lr * g * grad)
                Y.assign_add(update)
            return objective(Y, P)

        n_early = min(EXAGGERATION_ITER, self.max_iter)
        done, loss = 0, None
        phases = [(n_early, 0.5, self.early_exaggeration),
                  (self.max_iter - n_early, 0.8, 1.0)]
        for k, (steps, momentum, ex) in enumerate(phases):
            if k == 1:  # scikit-learn starts a fresh _gradient_descent
                update.assign(tf.zeros_like(update))
                gains.assign(tf.ones_like(gains))
            while steps > 0:
                chunk = min(steps, self.log_every)
                loss = run(tf.constant(chunk), tf.constant(momentum, tf.float32),
                           tf.constant(ex, tf.float32))
                steps -= chunk
                done += chunk
                if self.log is not None:
                    self.log(f"iteration {done}: KL {float(loss) + p_log_p:.4f} "
                             f"({time.perf_counter() - t0:.1f}s)")
        self.embedding_ = Y.numpy()
        self.kl_divergence_ = float(loss) + p_log_p
        self.n_iter_ = done - 1
        return self.embedding_
