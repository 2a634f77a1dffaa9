"""The op that combines a repulsion computed elsewhere with the sparse
attraction (``SparseTsneGradientFromRepulsion``) and the method registry of
``tsne_gradient`` / ``tsne_loss`` (``register_repulsion``).

Reference: given the exact R and Z, the combined op must equal the fused
exact kernel (``method='exact'``) in grad, KL and the loss's gradient; R and
Z come from ``references.repulsion`` (numpy, float64) or, for a registered
method, from TensorFlow ops on the dense distances.
"""
import numpy as np
import pytest
import tensorflow as tf

import kernels_module
import references
from helpers import sparse_p
import tsne_ops
from tsne_ops import ops

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def exact_repulsion_tf(y, dof, scale=1.0):
    """(R, Z) from the dense distances in TensorFlow (a test-only method)."""
    d2 = tsne_ops.pairwise_squared_distance(y)
    base = 1.0 + d2 / dof
    off = 1.0 - tf.eye(tf.shape(y)[1], dtype=y.dtype)[tf.newaxis]
    w = off * tf.pow(base, -0.5 * (dof + 1.0))
    wu = w / base
    rep = y * tf.reduce_sum(wu, axis=2, keepdims=True) - tf.matmul(wu, y)
    return scale * rep, tf.reduce_sum(w, axis=[1, 2])


@pytest.fixture
def exact_tf_method():
    ops.register_repulsion("exact_tf_test", exact_repulsion_tf, {"scale": 1.0})
    yield "exact_tf_test"
    del ops._REPULSIONS["exact_tf_test"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, n, d, dof, ex", [(None, 300, 2, 1.0, 1.0), (2, 257, 1, 0.5, 12.0),
                                                  (None, 200, 3, 2.0, 4.0)])
def test_from_repulsion_op_with_exact_r_z_equals_exact(rng, dtype, batch, n, d, dof, ex):
    p = sparse_p(rng, n, 15, dtype, batch)
    y = (2.0 * rng.normal(size=((batch,) if batch else ()) + (n, d))).astype(dtype)
    yb = y if batch else y[None]
    rz = [references.repulsion(yb[b], dof) for b in range(yb.shape[0])]
    rep = np.stack([r for r, _ in rz]).astype(dtype)
    z = np.array([z for _, z in rz], dtype)
    pb, _, _ = ops._sparse_p_and_y(p, y)
    for scale in (False, True):
        g, kl = ops._ops.tsne_sparse_tsne_gradient_from_repulsion(
            pb.indices, pb.values, pb.dense_shape, yb, rep, z, tf.constant(ex, dtype),
            tf.constant(dof, dtype), scale_repulsion_by_p_sum=scale)
        g_ref, kl_ref = ops._ops.tsne_sparse_tsne_gradient(
            pb.indices, pb.values, pb.dense_shape, yb, tf.constant(ex, dtype),
            tf.constant(dof, dtype), scale_repulsion_by_p_sum=scale)
        kernels_module.assert_close(g.numpy(), g_ref.numpy(), RTOL[dtype], "grad from (R, Z)")
        np.testing.assert_allclose(kl.numpy(), kl_ref.numpy(), rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_registered_method_equals_exact_grad_kl_and_loss_gradient(rng, dtype, exact_tf_method):
    n, dof = 240, 0.7
    p = sparse_p(rng, n, 12, dtype)
    y = tf.constant((3.0 * rng.normal(size=(n, 2))).astype(dtype))
    g, kl = tsne_ops.tsne_gradient(p, y, exaggeration=4.0, dof=dof, method=exact_tf_method)
    g_ref, kl_ref = tsne_ops.tsne_gradient(p, y, exaggeration=4.0, dof=dof, method="exact")
    kernels_module.assert_close(g.numpy(), g_ref.numpy(), 10 * RTOL[dtype], "grad")
    np.testing.assert_allclose(kl.numpy(), kl_ref.numpy(), rtol=10 * RTOL[dtype])
    assert kl.shape == ()
    g2, kl2 = tsne_ops.tsne_gradient(p, y, dof=dof, compute_kl=False, method=exact_tf_method)
    assert kl2 is None and g2.shape == y.shape
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        loss = tsne_ops.tsne_loss(p, y, dof=dof, method=exact_tf_method)
        loss_ref = tsne_ops.tsne_loss(p, y, dof=dof, method="exact")
    np.testing.assert_allclose(loss.numpy(), loss_ref.numpy(), rtol=10 * RTOL[dtype])
    kernels_module.assert_close(tape.gradient(loss, y).numpy(), tape.gradient(loss_ref, y).numpy(),
                                10 * RTOL[dtype], "loss gradient")
    # The option reaches the method: twice the repulsion is a different gradient.
    g3, _ = tsne_ops.tsne_gradient(p, y, dof=dof, method=exact_tf_method, scale=2.0)
    assert not np.allclose(g3.numpy(), tsne_ops.tsne_gradient(p, y, dof=dof, method=exact_tf_method)[0].numpy())


def test_registered_method_in_graph_mode(rng, exact_tf_method):
    n = 150
    p = sparse_p(rng, n, 10, np.float64)
    y = tf.constant(rng.normal(size=(n, 2)))

    @tf.function
    def step(y):
        with tf.GradientTape() as tape:
            tape.watch(y)
            loss = tsne_ops.tsne_loss(p, y, method=exact_tf_method)
        return loss, tape.gradient(loss, y)

    loss, grad = step(y)
    assert grad.shape == y.shape
    with tf.GradientTape() as tape:
        tape.watch(y)
        ref = tsne_ops.tsne_loss(p, y)
    kernels_module.assert_close(grad.numpy(), tape.gradient(ref, y).numpy(), 1e-10, "graph mode")
    np.testing.assert_allclose(loss.numpy(), ref.numpy(), rtol=1e-10)


def test_pybind_from_repulsion_equals_exact(rng):
    tk = kernels_module.load_or_skip()
    n, dof = 200, 1.5
    p = sparse_p(rng, n, 10, np.float64)
    y = 2 * rng.normal(size=(n, 2))
    rep, z = references.repulsion(y, dof)
    pi, pv = p.indices.numpy(), p.values.numpy()
    g, kl = tk.sparse_tsne_gradient_from_repulsion(pi, pv, y, rep, np.array(z), 3.0, dof)
    g_ref, kl_ref = tk.sparse_tsne_gradient(pi, pv, y, 3.0, dof)
    kernels_module.assert_close(g, g_ref, 1e-11, "pybind grad from (R, Z)")
    np.testing.assert_allclose(kl, kl_ref, rtol=1e-11)
    with pytest.raises(ValueError, match=r"z must be finite and > 0.*z\[0\] = -1"):
        tk.sparse_tsne_gradient_from_repulsion(pi, pv, y, rep, np.array(-1.0))
    with pytest.raises(ValueError, match="repulsion must have the shape of y"):
        tk.sparse_tsne_gradient_from_repulsion(pi, pv, y, rep[:-1], np.array(z))


# -------------------------------------------------------------- bad input --

def test_unknown_method_names_it_and_the_choices(rng):
    p = sparse_p(rng, 50, 5, np.float64)
    y = rng.normal(size=(50, 2))
    for fn in (lambda: tsne_ops.tsne_gradient(p, y, method="bh"),
               lambda: tsne_ops.tsne_loss(p, y, method="bh")):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"method must be one of \('exact', 'fft'.*but is 'bh'"):
            fn()


def test_unknown_option_names_the_method_and_the_option(rng):
    p = sparse_p(rng, 50, 5, np.float64)
    y = rng.normal(size=(50, 2))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"method 'fft' does not take option\(s\) \['angle'\]"):
        tsne_ops.tsne_gradient(p, y, method="fft", angle=0.5)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"method 'exact' takes no options, but got \['angle'\]"):
        tsne_ops.tsne_loss(p, y, method="exact", angle=0.5)


def test_approximate_method_needs_sparse_p(rng):
    y = rng.normal(size=(20, 2))
    p = references.random_joint_p(rng, 20)
    with pytest.raises(tf.errors.InvalidArgumentError, match="method 'fft' needs a sparse p"):
        tsne_ops.tsne_gradient(p, y, method="fft")


def test_from_repulsion_op_rejects_bad_r_and_z(rng):
    n = 40
    p = sparse_p(rng, n, 5, np.float64)
    pb, yb, _ = ops._sparse_p_and_y(p, rng.normal(size=(n, 2)))
    rep, z = np.zeros((1, n, 2)), np.ones(1)
    one = tf.constant(1.0, tf.float64)
    call = lambda r, zz: ops._ops.tsne_sparse_tsne_gradient_from_repulsion(  # noqa: E731
        pb.indices, pb.values, pb.dense_shape, yb, r, zz, one, one)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"repulsion must have the shape of y"):
        call(np.zeros((1, n, 3)), z)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must be \[batch\] = \[1\]"):
        call(rep, np.ones(2))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"z must be finite and > 0, but z\[0\] = 0"):
        call(rep, np.zeros(1))
    bad = rep.copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"repulsion must be finite.*\[0, 3, 1\]"):
        call(bad, z)


@pytest.mark.parametrize("method, d", [("fft", 1), ("fft", 2), ("barnes_hut", 2), ("barnes_hut", 3)])
def test_builtin_approximations_through_tsne_gradient_match_exact(rng, method, d):
    # Both approximations are registered by importing tsne_ops (fft and
    # barnes_hut live in tsne_ops.repulsion): the gradient, KL and the loss's
    # gradient in y through method=... are within 1e-2 of the exact ones.
    p = sparse_p(rng, 600, 30, np.float64)
    y = tf.constant(rng.normal(scale=5.0, size=(600, d)))
    g_exact, kl_exact = tsne_ops.tsne_gradient(p, y, method="exact")
    g, kl = tsne_ops.tsne_gradient(p, y, method=method)
    assert np.linalg.norm(g - g_exact) / np.linalg.norm(g_exact) < 1e-2
    assert abs(float(kl) - float(kl_exact)) / abs(float(kl_exact)) < 1e-2
    with tf.GradientTape() as tape:
        tape.watch(y)
        loss = tsne_ops.tsne_loss(p, y, method=method)
    dy = tape.gradient(loss, y)
    with tf.GradientTape() as tape:
        tape.watch(y)
        loss_exact = tsne_ops.tsne_loss(p, y)
    dy_exact = tape.gradient(loss_exact, y)
    assert np.linalg.norm(dy - dy_exact) / np.linalg.norm(dy_exact) < 1e-2


def test_barnes_hut_takes_angle_and_rejects_other_options(rng):
    p = sparse_p(rng, 200, 20, np.float64)
    y = tf.constant(rng.normal(size=(200, 2)))
    g0, _ = tsne_ops.tsne_gradient(p, y, method="barnes_hut", angle=0.0)
    g_exact, _ = tsne_ops.tsne_gradient(p, y, method="exact")
    np.testing.assert_allclose(g0, g_exact, rtol=1e-9, atol=1e-12)
    with pytest.raises(tf.errors.InvalidArgumentError, match="barnes_hut.*interpolation_points"):
        tsne_ops.tsne_gradient(p, y, method="barnes_hut", interpolation_points=3)
