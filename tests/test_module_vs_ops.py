"""The pybind11 module's CPU path and the TensorFlow CPU ops run the same
kernels: their results agree bit for bit (the kernels do not depend on the
thread pool that shards them)."""
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
