"""Plain t-SNE without TensorFlow: the exact method on the CPU kernels.

For a numpy input on the CPU, :class:`tsne_ops.TSNE` needs the kernels, not
TensorFlow's graph: P comes from the pybind11 module's
``pairwise_squared_distance`` and ``joint_probabilities`` (the same C++ as the
ops; :func:`tsne_ops.affinities.exact_joint_probabilities_numpy`), and :class:`GradientDescent` runs scikit-learn's optimiser as a C++ loop
over the same fused gradient kernel (``cc/compute/gradient_descent.h``). So a
script that fits ``TSNE`` never imports TensorFlow (5-8 s of start-up), and
gets the embedding the TensorFlow path gives, to float rounding.
"""
import os
import sys

import numpy as np

__all__ = ["kernels", "available", "tensorflow_in_use", "n_threads", "threads", "float32_toward_zero", "as_kernel_array",
           "GradientDescent"]

_MIN_GAIN = 0.01  # sklearn.manifold._t_sne._gradient_descent's min_gain
# The ops' perplexity search tolerance: a float32 attribute, 1e-5 nats.
OP_AFFINITY_TOLERANCE = float(np.float32(1e-5))


def float32_toward_zero(value):
    """``value`` rounded to float32 toward zero, as the ops' float attributes
    hold it: rounding to nearest could carry a perplexity just below n - 1
    onto n - 1, where the kernel would refuse a value nobody passed."""
    v32 = np.float32(value)
    if np.isfinite(value) and abs(float(v32)) > abs(value):
        v32 = np.nextafter(v32, np.float32(0))
    return float(v32)


def kernels():
    """The pybind11 module ``tsne_ops._tsne_kernels`` (ImportError if not built)."""
    from tsne_ops import _tsne_kernels

    return _tsne_kernels


def available():
    """True when the pybind11 module is built and importable."""
    try:
        kernels()
    except ImportError:
        return False
    return True


def tensorflow_in_use(X=None):
    """True when TensorFlow is part of the job: ``X`` is a TensorFlow tensor or
    variable, or TensorFlow sees a GPU. TensorFlow is only looked at when it
    is already imported: this never imports it."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    if X is not None and (tf.is_tensor(X) or isinstance(X, tf.Variable)):
        return True
    # Visible devices: known without initialising TensorFlow's runtime.
    return bool(tf.config.get_visible_devices("GPU"))


def as_kernel_array(a):
    """``a`` as a C-contiguous numpy array whose dtype is numpy's own float32
    or float64 descriptor: the module checks dtypes by identity, which an
    equal descriptor from elsewhere (a read-only memmap's) fails."""
    x = np.ascontiguousarray(a)
    canonical = np.dtype(x.dtype.name)
    return x if x.dtype is canonical else x.astype(canonical)


def n_threads(n_jobs):
    """The kernels' thread count for scikit-learn's ``n_jobs``: None or -1 all
    cores (0 for the module), k > 0 k threads, k < -1 all but |k| - 1 cores
    (joblib's convention)."""
    if n_jobs is None or n_jobs == -1:
        return 0
    if n_jobs == 0:
        raise ValueError("n_jobs must be a non-zero integer or None, got n_jobs=0")
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


class threads:
    """Context manager: the kernels run with ``n_jobs`` threads inside it (see
    :func:`n_threads`), and the module's previous setting is restored after."""

    def __init__(self, n_jobs):
        self._n = n_threads(n_jobs)

    def __enter__(self):
        tk = kernels()
        self._previous = tk.get_num_threads()
        tk.set_num_threads(self._n)
        return self

    def __exit__(self, *exc):
        kernels().set_num_threads(self._previous)
        return False


class GradientDescent:
    """scikit-learn's t-SNE optimiser as a C++ loop over the dense CPU gradient.

    The interface of :class:`tsne_ops.tsne.GradientDescent` (which runs the
    same update as a ``tf.while_loop`` over the ``tsne_gradient`` op), on numpy
    arrays: ``run(n_steps, momentum, exaggeration)`` runs ``n_steps``
    iterations in one call of ``_tsne_kernels.gradient_descent`` and returns
    (KL at the start of the last iteration, norm of its gains-scaled
    gradient); ``reset()`` zeroes the momentum and the gains when early
    exaggeration ends; ``embedding()`` is a copy of the current ``Y``.
    The state lives in three C-contiguous ``[N, d]`` arrays of P's dtype;
    ``n_jobs`` sets the kernels' threads while it runs (see :func:`n_threads`).
    """

    def __init__(self, P, Y0, learning_rate, dof, n_jobs=None):
        self._tk = kernels()
        self.n_jobs = n_jobs
        self.P = as_kernel_array(P)
        self.Y = np.array(Y0, dtype=self.P.dtype, order="C", copy=True)
        self.update = np.zeros_like(self.Y)
        self.gains = np.ones_like(self.Y)
        self.learning_rate = float(learning_rate)
        self.dof = float(dof)

    def reset(self):
        """Zero the momentum and reset the gains (scikit-learn does this
        when early exaggeration ends)."""
        self.update[...] = 0
        self.gains[...] = 1

    def run(self, n_steps, momentum, exaggeration):
        """Run ``n_steps`` >= 1 iterations; returns (kl, grad_norm)."""
        with threads(self.n_jobs):
            kl, grad_norm = self._tk.gradient_descent(
                self.P, self.Y, self.update, self.gains, int(n_steps), self.learning_rate,
                float(momentum), float(exaggeration), self.dof, _MIN_GAIN)
        return float(kl), float(grad_norm)

    def embedding(self):
        """The current embedding ``Y`` (a numpy copy)."""
        return self.Y.copy()

    def kl_divergence(self):
        """KL(P || Q) of the current embedding, without exaggeration."""
        with threads(self.n_jobs):
            _, kl = self._tk.tsne_gradient(self.P, self.Y, dof=self.dof, compute_kl=True)
        return float(kl)
