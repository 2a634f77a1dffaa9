"""tsne_gradient and tsne_loss: forward against numpy and scikit-learn, and
every gradient against finite differences (tf.test.compute_gradient)."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import squareform
from sklearn.manifold._t_sne import _kl_divergence

import tsne_ops
from references import kl_divergence, random_joint_p, student_t
from references import tsne_gradient as ref_gradient

SHAPES = [  # (batch, n, d)
    (1, 2, 1), (1, 2, 2), (2, 5, 2), (1, 7, 3), (3, 4, 1), (1, 9, 2), (2, 6, 3),
]


@pytest.mark.parametrize("dof", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("batch,n,d", SHAPES)
def test_loss_gradient_matches_finite_differences(rng, batch, n, d, dof):
    p = random_joint_p(rng, n, batch)
    y = rng.normal(size=(batch, n, d))
    theoretical, numerical = tf.test.compute_gradient(
        lambda yy: tsne_ops.tsne_loss(p, yy, dof=dof), [y], delta=1e-5
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


def test_loss_gradient_exact_when_p_does_not_sum_to_one(rng):
    # e.g. a P that is a sub-block of a larger one: the repulsion is scaled.
    p = random_joint_p(rng, 6, 2) * 0.37
    y = rng.normal(size=(2, 6, 2))
    theoretical, numerical = tf.test.compute_gradient(lambda yy: tsne_ops.tsne_loss(p, yy), [y], delta=1e-5)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dof", [0.5, 1.0, 2.0])
def test_loss_gradient_in_p_matches_finite_differences(rng, dof):
    p = random_joint_p(rng, 5, 2)
    y = rng.normal(size=(2, 5, 2))
    theoretical, numerical = tf.test.compute_gradient(
        lambda pp: tsne_ops.tsne_loss(pp, y, dof=dof), [p], delta=1e-5
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("exaggeration", [1.0, 4.0, 12.0])
@pytest.mark.parametrize("dof", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("batch,n,d", [(1, 2, 1), (2, 7, 2), (1, 5, 3)])
def test_gradient_is_the_derivative_of_the_exaggerated_objective(rng, batch, n, d, dof, exaggeration):
    # grad(ex) = d/dy [ -ex * sum p log w + log Z ] for P summing to 1, written
    # here in stock TensorFlow ops and differentiated numerically.
    p = random_joint_p(rng, n, batch)
    y = rng.normal(size=(batch, n, d))
    eye = tf.eye(n, dtype=tf.float64)

    def objective(yy):
        diff = yy[:, :, None, :] - yy[:, None, :, :]
        log_w = -0.5 * (dof + 1) * tf.math.log1p(tf.reduce_sum(diff**2, -1) / dof)
        w = tf.exp(log_w) * (1 - eye)
        return -exaggeration * tf.reduce_sum(p * log_w * (1 - eye), [1, 2]) + tf.math.log(
            tf.reduce_sum(w, [1, 2])
        )

    _, numerical = tf.test.compute_gradient(objective, [y], delta=1e-5)
    grad, _ = tsne_ops.tsne_gradient(p, y, exaggeration=exaggeration, dof=dof)
    # The Jacobian of a [B] objective w.r.t. y [B, n, d] is block diagonal.
    jac = numerical[0].reshape(batch, batch, n, d)
    expected = np.stack([jac[b, b] for b in range(batch)])
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dof", [0.5, 1.0, 2.0, 3.7])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_forward_matches_numpy(rng, dof, exaggeration, dtype, rtol):
    n, d = 57, 2
    p = random_joint_p(rng, n, dtype=dtype)
    y = rng.normal(size=(n, d)).astype(dtype) * 3
    grad, kl = tsne_ops.tsne_gradient(p, y, exaggeration=exaggeration, dof=dof)
    assert grad.dtype == dtype and kl.dtype == dtype and grad.shape == (n, d) and kl.shape == ()
    ref = ref_gradient(p, y, exaggeration, dof)
    np.testing.assert_allclose(grad.numpy(), ref, rtol=rtol * 10, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(float(kl), kl_divergence(p, y, dof), rtol=rtol * 10)
    np.testing.assert_allclose(float(tsne_ops.tsne_loss(p, y, dof=dof)), kl_divergence(p, y, dof), rtol=rtol * 10)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_all_embedding_dimensions(rng, d):
    p = random_joint_p(rng, 30)
    y = rng.normal(size=(30, d))
    grad, kl = tsne_ops.tsne_gradient(p, y, dof=1.5)
    np.testing.assert_allclose(grad.numpy(), ref_gradient(p, y, 1.0, 1.5), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(float(kl), kl_divergence(p, y, 1.5), rtol=1e-10)


def test_matches_scikit_learn_for_dof_1(rng):
    n, d = 40, 2
    p = random_joint_p(rng, n)
    y = rng.normal(size=(n, d))
    kl_sk, grad_sk = _kl_divergence(y.ravel(), squareform(p, checks=False), 1.0, n, d)
    grad, kl = tsne_ops.tsne_gradient(p, y)
    np.testing.assert_allclose(grad.numpy().ravel(), grad_sk, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(float(kl), kl_sk, rtol=1e-10)


def test_scikit_learn_gradient_is_wrong_for_dof_not_1(rng):
    """scikit-learn's exact gradient weights by w_ij instead of u_ij, which is
    only right for dof = 1. Finite differences side with tsne_ops."""
    n, d, dof = 12, 2, 2.0
    p = random_joint_p(rng, n)
    y = rng.normal(size=(n, d))
    _, numerical = tf.test.compute_gradient(lambda yy: tsne_ops.tsne_loss(p, yy, dof=dof), [y], delta=1e-5)
    fd = numerical[0].reshape(n, d)
    _, grad_sk = _kl_divergence(y.ravel(), squareform(p, checks=False), dof, n, d)
    grad, _ = tsne_ops.tsne_gradient(p, y, dof=dof)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-9)
    assert np.abs(grad_sk.reshape(n, d) - fd).max() > 1e-3 * np.abs(fd).max()


def test_compute_kl_false_returns_same_gradient(rng):
    p = random_joint_p(rng, 20, 2)
    y = rng.normal(size=(2, 20, 2))
    g1, kl = tsne_ops.tsne_gradient(p, y, exaggeration=3.0)
    g2, none = tsne_ops.tsne_gradient(p, y, exaggeration=3.0, compute_kl=False)
    assert none is None and kl.shape == (2,)
    # Same math; the KL variant of the loop vectorises differently.
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-12, atol=1e-15)


def test_batch_equals_separate_calls(rng):
    p = random_joint_p(rng, 15, 3)
    y = rng.normal(size=(3, 15, 2))
    g, kl = tsne_ops.tsne_gradient(p, y, dof=0.5)
    for b in range(3):
        gb, klb = tsne_ops.tsne_gradient(p[b], y[b], dof=0.5)
        np.testing.assert_array_equal(g.numpy()[b], gb.numpy())
        assert kl.numpy()[b] == klb.numpy()


def test_eager_equals_tf_function(rng):
    p = random_joint_p(rng, 25, 2, dtype=np.float32)
    y = rng.normal(size=(2, 25, 2)).astype(np.float32)
    eager = tsne_ops.tsne_gradient(p, y, exaggeration=12.0)
    graph = tf.function(lambda a, b: tsne_ops.tsne_gradient(a, b, exaggeration=12.0))(p, y)
    np.testing.assert_array_equal(eager[0].numpy(), graph[0].numpy())
    np.testing.assert_array_equal(eager[1].numpy(), graph[1].numpy())


def test_shape_inference():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32),
                                  tf.TensorSpec([4, 10, 3], tf.float32)])
    def f(p, y):
        grad, kl = tsne_ops.tsne_gradient(p, y)
        loss = tsne_ops.tsne_loss(p, y)
        assert grad.shape.as_list() == [4, 10, 3]
        assert kl.shape.as_list() == [4]
        assert loss.shape.as_list() == [4]
        return grad

    f.get_concrete_function()


def test_second_derivative_is_a_clear_error(rng):
    p = tf.constant(random_joint_p(rng, 5))
    y = tf.constant(rng.normal(size=(5, 2)))
    with tf.GradientTape() as tape:
        tape.watch(y)
        grad, _ = tsne_ops.tsne_gradient(p, y)
        s = tf.reduce_sum(grad)
    with pytest.raises(LookupError, match="not differentiable"):
        tape.gradient(s, y)


def test_deterministic_across_runs(rng):
    p = random_joint_p(rng, 300, dtype=np.float32)
    y = rng.normal(size=(300, 2)).astype(np.float32)
    first = tsne_ops.tsne_gradient(p, y)
    for _ in range(3):
        again = tsne_ops.tsne_gradient(p, y)
        np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
        assert first[1].numpy() == again[1].numpy()


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("n", [57, 450, 700])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_float_dof1_without_kl_matches_numpy(rng, dtype, rtol, n, d):
    # What TSNE runs on 49 iterations of 50: dof = 1, compute_kl=False (in
    # float32 a separate row-streaming kernel). n = 450 and 700 are 7 and 10
    # of the kernel's 64-row tiles plus a remainder.
    p = random_joint_p(rng, n, dtype=dtype)
    y = (rng.normal(size=(n, d)) * 3).astype(dtype)
    for exaggeration in (1.0, 12.0):
        grad, kl = tsne_ops.tsne_gradient(p, y, exaggeration=exaggeration, compute_kl=False)
        assert kl is None and grad.dtype == dtype
        ref = ref_gradient(p, y, exaggeration, 1.0)
        np.testing.assert_allclose(grad.numpy(), ref, rtol=rtol * 10, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("n", [450, 700])
@pytest.mark.parametrize("d,dof", [(2, 1.0), (3, 0.7), (5, 1.0), (2, 2.5)])
def test_forward_matches_numpy_over_many_tiles(rng, dtype, rtol, n, d, dof):
    # Several 64 x 64 tiles, and so several work units whose accumulators are
    # reduced afterwards, with and without the KL.
    p = random_joint_p(rng, n, dtype=dtype)
    y = (rng.normal(size=(n, d)) * 3).astype(dtype)
    grad, kl = tsne_ops.tsne_gradient(p, y, exaggeration=4.0, dof=dof)
    ref = ref_gradient(p, y, 4.0, dof)
    np.testing.assert_allclose(grad.numpy(), ref, rtol=rtol * 10, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(float(kl), kl_divergence(p, y, dof), rtol=rtol * 10)
    np.testing.assert_allclose(float(tsne_ops.tsne_loss(p, y, dof=dof)), kl_divergence(p, y, dof),
                               rtol=rtol * 10)
