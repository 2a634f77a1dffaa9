"""The pybind11 module's CPU path and the TensorFlow CPU ops run the same
kernels: their results agree bit for bit (the kernels do not depend on the
thread pool that shards them)."""
import re

import numpy as np
import pytest
import tensorflow as tf

import tsne_ops
from kernels_module import load_or_skip
from references import random_joint_p


@pytest.fixture(scope="module")
def kernels():
    return load_or_skip()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distances(kernels, rng, dtype):
    for dim in (3, 50):
        x = rng.normal(size=(2, 37, dim)).astype(dtype)
        y = rng.normal(size=(2, 11, dim)).astype(dtype)
        np.testing.assert_array_equal(kernels.pairwise_squared_distance(x),
                                      tsne_ops.pairwise_squared_distance(x).numpy())
        np.testing.assert_array_equal(kernels.pairwise_squared_distance(x, y),
                                      tsne_ops.pairwise_squared_distance(x, y).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distance_gradient(kernels, rng, dtype):
    x = tf.constant(rng.normal(size=(2, 9, 4)).astype(dtype))
    g = rng.normal(size=(2, 9, 9)).astype(dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        d = tsne_ops.pairwise_squared_distance(x)
    ours = tape.gradient(d, x, output_gradients=tf.constant(g)).numpy()
    gx, _ = kernels.pairwise_squared_distance_grad(g, x.numpy())
    np.testing.assert_array_equal(gx, ours)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affinities(kernels, rng, dtype):
    d = tsne_ops.pairwise_squared_distance(rng.normal(size=(2, 60, 5)).astype(dtype)).numpy()
    p_tf, beta_tf = tsne_ops.perplexity_affinities(d, 10.0)
    p_m, beta_m, unconverged = kernels.perplexity_affinities(d, 10.0)
    np.testing.assert_array_equal(p_m, p_tf.numpy())
    np.testing.assert_array_equal(beta_m, beta_tf.numpy())
    assert unconverged == 0
    np.testing.assert_array_equal(kernels.joint_probabilities(d, 10.0),
                                  tsne_ops.joint_probabilities(d, 10.0).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dof", [1.0, 0.5])
def test_gradient(kernels, rng, dtype, dof):
    p = random_joint_p(rng, 70, 2, dtype=dtype)
    y = rng.normal(size=(2, 70, 2)).astype(dtype)
    g_tf, kl_tf = tsne_ops.tsne_gradient(p, y, exaggeration=4.0, dof=dof)
    g_m, kl_m = kernels.tsne_gradient(p, y, exaggeration=4.0, dof=dof)
    np.testing.assert_array_equal(g_m, g_tf.numpy())
    np.testing.assert_array_equal(kl_m, kl_tf.numpy())


# Both front ends validate with cc/compute/validation.h: the same bad input
# gets the same message from the op (InvalidArgumentError) and the module
# (ValueError). Rank-3 inputs, so that the op sees the shapes the caller gave.
def _bad_inputs():
    d = np.ones((1, 6, 6)) - np.eye(6)
    x = np.zeros((1, 4, 3))
    x[0, 2, 1] = np.nan
    p = np.full((1, 5, 5), 0.05)
    y = np.zeros((1, 4, 2))
    big = np.array([[[0.0], [3e19]]], np.float32)
    fy = np.linspace(0.0, 1.0, 10).reshape(1, 5, 2)   # FFT points in the grid [0, 1]^2
    fy3 = np.zeros((1, 5, 3))
    fq, fo, fo3, fh = np.ones((1, 5, 1)), np.zeros((1, 2)), np.zeros((1, 3)), np.full((1,), 0.25)
    fft_op = tsne_ops.ops._ops
    return [
        ("perplexity", lambda m: m.perplexity_affinities(d, 5.0),
         lambda: tsne_ops.perplexity_affinities(d, 5.0)),
        ("square", lambda m: m.joint_probabilities(d[:, :, :5], 2.0),
         lambda: tsne_ops.joint_probabilities(d[:, :, :5], 2.0)),
        ("negative", lambda m: m.joint_probabilities(-d, 2.0),
         lambda: tsne_ops.joint_probabilities(-d, 2.0)),
        ("nan", lambda m: m.pairwise_squared_distance(x), lambda: tsne_ops.pairwise_squared_distance(x)),
        ("cross", lambda m: m.pairwise_squared_distance(x[..., :2], y[..., :1]),
         lambda: tsne_ops.pairwise_squared_distance(x[..., :2], y[..., :1])),
        ("overflow", lambda m: m.pairwise_squared_distance(big),
         lambda: tsne_ops.pairwise_squared_distance(big)),
        ("p shape", lambda m: m.tsne_gradient(p, y), lambda: tsne_ops.tsne_gradient(p, y)),
        ("dof", lambda m: m.tsne_gradient(p[:, :4, :4], y, dof=-0.5),
         lambda: tsne_ops.tsne_gradient(p[:, :4, :4], y, dof=-0.5)),
        ("exaggeration", lambda m: m.tsne_gradient(p[:, :4, :4], y, exaggeration=float("inf")),
         lambda: tsne_ops.tsne_gradient(p[:, :4, :4], y, exaggeration=float("inf"))),
        # exact nearest neighbours
        ("knn points", lambda m: m.nearest_neighbors(x[:, :1], 1),
         lambda: tsne_ops.nearest_neighbors(x[:, :1], 1)),
        ("knn dim", lambda m: m.nearest_neighbors(x[:, :, :0], 1),
         lambda: tsne_ops.nearest_neighbors(x[:, :, :0], 1)),
        ("knn k", lambda m: m.nearest_neighbors(y, 4), lambda: tsne_ops.nearest_neighbors(y, 4)),
        ("knn cross k", lambda m: m.nearest_neighbors(y, 3, y[:, :2]),
         lambda: tsne_ops.nearest_neighbors(y, 3, y=y[:, :2])),
        ("knn cross dim", lambda m: m.nearest_neighbors(x[..., :2], 1, y[..., :1]),
         lambda: tsne_ops.nearest_neighbors(x[..., :2], 1, y=y[..., :1])),
        ("knn nan", lambda m: m.nearest_neighbors(x, 2), lambda: tsne_ops.nearest_neighbors(x, 2)),
        # the FFT interpolation's spread and gather
        ("fft d", lambda m: m.fft_spread(fy3, fq, fo3, fh, 4),
         lambda: fft_op.tsne_fft_spread(fy3, fq, fo3, fh, 4)),
        ("fft origin", lambda m: m.fft_spread(fy, fq, fo[:, :1], fh, 4),
         lambda: fft_op.tsne_fft_spread(fy, fq, fo[:, :1], fh, 4)),
        ("fft box_width", lambda m: m.fft_spread(fy, fq, fo, fh[:0], 4),
         lambda: fft_op.tsne_fft_spread(fy, fq, fo, fh[:0], 4)),
        ("fft charges", lambda m: m.fft_spread(fy, fq[:, :3], fo, fh, 4),
         lambda: fft_op.tsne_fft_spread(fy, fq[:, :3], fo, fh, 4)),
        ("fft n_boxes", lambda m: m.fft_spread(fy, fq, fo, fh, 0),
         lambda: fft_op.tsne_fft_spread(fy, fq, fo, fh, 0)),
        ("fft outside", lambda m: m.fft_spread(9 + fy, fq, fo, fh, 4),
         lambda: fft_op.tsne_fft_spread(9 + fy, fq, fo, fh, 4)),
        ("fft potentials", lambda m: m.fft_gather(fy, np.zeros((1, 1, 12, 11)), fo, fh),
         lambda: fft_op.tsne_fft_gather(fy, np.zeros((1, 1, 12, 11)), fo, fh)),
        ("fft interpolation_points", lambda m: m.fft_gather(fy, np.zeros((1, 1, 18, 18)), fo, fh, 9),
         lambda: fft_op.tsne_fft_gather(fy, np.zeros((1, 1, 18, 18)), fo, fh, interpolation_points=9)),
    ]


@pytest.mark.parametrize("case", range(len(_bad_inputs())), ids=[c[0] for c in _bad_inputs()])
def test_same_error_message(kernels, case):
    _, module_call, op_call = _bad_inputs()[case]
    with pytest.raises(ValueError) as from_module:
        module_call(kernels)
    with pytest.raises(tf.errors.InvalidArgumentError) as from_op:
        op_call()
    # TensorFlow wraps the kernel's message: "{{function_node ...}} MESSAGE [Op:...] name: ".
    op_message = re.sub(r"^\{\{function_node [^}]*\}\} | \[Op:.*$", "", from_op.value.message)
    assert str(from_module.value) == op_message
