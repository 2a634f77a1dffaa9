"""Every bad input gets an InvalidArgumentError that names the argument and
the offending value, in eager mode (where no shape function runs) and inside
tf.function."""
import numpy as np
import pytest
import tensorflow as tf

import tsne_ops
from references import random_joint_p

Invalid = tf.errors.InvalidArgumentError


def _p_y(n=5, d=2, batch=None):
    rng = np.random.default_rng(0)
    p = random_joint_p(rng, n, batch)
    y = rng.normal(size=(n, d) if batch is None else (batch, n, d))
    return p, y


# ---------------------------------------------------------------- distances --

def test_distance_wrong_rank():
    with pytest.raises(Invalid, match=r"x must be rank 2 .* but has shape \(5,\)"):
        tsne_ops.pairwise_squared_distance(np.zeros(5))
    with pytest.raises(Invalid, match=r"x must be rank 2"):
        tsne_ops.pairwise_squared_distance(np.zeros((1, 2, 3, 4)))


def test_distance_wrong_dtype():
    with pytest.raises(Invalid, match="x must be float32 or float64, but has dtype int64"):
        tsne_ops.pairwise_squared_distance(np.zeros((3, 2), np.int64))
    with pytest.raises(Invalid, match=r"y must have the same dtype as the first argument \(float64\), but has dtype float32"):
        tsne_ops.pairwise_squared_distance(np.zeros((3, 2)), np.zeros((3, 2), np.float32))


def test_distance_mismatched_dim_and_batch():
    with pytest.raises(Invalid, match=r"same batch size and dim, but x has shape \[1,3,4\] and y has shape \[1,3,5\]"):
        tsne_ops.pairwise_squared_distance(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(Invalid, match=r"same batch size and dim"):
        tsne_ops.pairwise_squared_distance(np.zeros((2, 3, 4)), np.zeros((1, 3, 4)))


@pytest.mark.parametrize("bad,text", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_distance_non_finite(bad, text):
    x = np.zeros((4, 3))
    x[2, 1] = bad
    with pytest.raises(Invalid, match=rf"x must be finite, but x\[0, 2, 1\] = {text}"):
        tsne_ops.pairwise_squared_distance(x)
    with pytest.raises(Invalid, match=rf"y must be finite, but y\[0, 2, 1\] = {text}"):
        tsne_ops.pairwise_squared_distance(np.zeros((4, 3)), x)


# --------------------------------------------------------------- affinities --

@pytest.mark.parametrize("fn", [tsne_ops.perplexity_affinities, tsne_ops.joint_probabilities])
def test_affinity_errors(fn):
    d = np.ones((6, 6)) - np.eye(6)
    with pytest.raises(Invalid, match=r"perplexity must be in \(0, n - 1\) = \(0, 5\) for n = 6 points, but is 5"):
        fn(d, 5.0)
    with pytest.raises(Invalid, match=r"perplexity must be in .* but is 0"):
        fn(d, 0.0)
    with pytest.raises(Invalid, match=r"perplexity must be in .* but is -3"):
        fn(d, -3.0)
    with pytest.raises(Invalid, match=r"perplexity must be in .* but is nan"):
        fn(d, float("nan"))
    with pytest.raises(Invalid, match=r"sq_dist must be square \[batch, n, n\], but has shape \[1,6,5\]"):
        fn(d[:, :5], 2.0)
    with pytest.raises(Invalid, match=r"sq_dist needs at least 2 points, but has shape \[1,1,1\]"):
        fn(np.zeros((1, 1)), 0.5)
    with pytest.raises(Invalid, match=r"sq_dist must be rank 2"):
        fn(np.zeros(4), 2.0)
    with pytest.raises(Invalid, match=r"perplexity must be a number, but is 'thirty'"):
        fn(d, "thirty")
    with pytest.raises(Invalid, match="sq_dist must be float32 or float64"):
        fn(d.astype(np.int32), 2.0)
    bad = d.copy()
    bad[1, 3] = np.nan
    with pytest.raises(Invalid, match=r"sq_dist must be finite and non-negative, but sq_dist\[0, 1, 3\] = nan"):
        fn(bad, 2.0)
    bad[1, 3] = -1.0
    with pytest.raises(Invalid, match=r"sq_dist\[0, 1, 3\] = -1"):
        fn(bad, 2.0)


# ----------------------------------------------------------------- gradient --

@pytest.mark.parametrize("name,kwargs", [
    ("dof", {"dof": 0.0}), ("dof", {"dof": -1.0}), ("dof", {"dof": float("nan")}),
    ("exaggeration", {"exaggeration": 0.0}), ("exaggeration", {"exaggeration": -2.0}),
    ("exaggeration", {"exaggeration": float("inf")}),
])
def test_gradient_bad_scalars(name, kwargs):
    p, y = _p_y()
    with pytest.raises(Invalid, match=rf"{name} must be a finite number > 0, but is"):
        tsne_ops.tsne_gradient(p, y, **kwargs)


def test_loss_bad_dof():
    p, y = _p_y()
    with pytest.raises(Invalid, match=r"dof must be a finite number > 0, but is -0.5"):
        tsne_ops.tsne_loss(p, y, dof=-0.5)


@pytest.mark.parametrize("fn", [lambda p, y: tsne_ops.tsne_gradient(p, y), tsne_ops.tsne_loss])
def test_gradient_shape_errors(fn):
    p, y = _p_y(n=5)
    with pytest.raises(Invalid, match=r"p must have shape \[batch, n, n\] = \[1,4,4\] to match y of shape \[1,4,2\], but has shape \[1,5,5\]"):
        fn(p, y[:4])
    with pytest.raises(Invalid, match=r"y needs at least 2 points, but has shape \[1,1,2\]"):
        fn(p[:1, :1], y[:1])
    with pytest.raises(Invalid, match=r"p must be rank 2"):
        fn(p[0], y)
    with pytest.raises(Invalid, match=r"p and y must have the same rank"):
        fn(p[None], y)
    pb, yb = _p_y(n=5, batch=3)
    with pytest.raises(Invalid, match=r"p must have shape \[batch, n, n\] = \[2,5,5\]"):
        fn(pb, yb[:2])
    with pytest.raises(Invalid, match="y must have the same dtype as the first argument"):
        fn(p, y.astype(np.float32))


@pytest.mark.parametrize("where", ["p", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fn", [lambda p, y: tsne_ops.tsne_gradient(p, y, compute_kl=False), tsne_ops.tsne_loss])
def test_gradient_non_finite(where, bad, fn):
    p, y = _p_y(n=6)
    (p if where == "p" else y)[1, 0] = bad
    with pytest.raises(Invalid, match=rf"{where} must be finite.* {where}\[0, 1, 0\] = {'nan' if np.isnan(bad) else 'inf'}"):
        fn(p, y)


def test_errors_inside_tf_function():
    p, y = _p_y()

    @tf.function
    def f(pp, yy):
        return tsne_ops.tsne_gradient(pp, yy, dof=-1.0)

    with pytest.raises(Invalid, match="dof must be a finite number > 0"):
        f(p, y)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float64)])
    def g(x):
        return tsne_ops.pairwise_squared_distance(x)

    x = np.zeros((3, 2))
    x[0, 0] = np.nan
    with pytest.raises(Invalid, match=r"x must be finite, but x\[0, 0, 0\] = nan"):
        g(x)
