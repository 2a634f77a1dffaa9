"""pairwise_squared_distance: forward against numpy, gradients against finite
differences, symmetry/zero-diagonal guarantees, batching and graph mode."""
import numpy as np
import pytest
import tensorflow as tf

import hostile_data
import tsne_ops
from references import squared_distances


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("batch,n,m,dim", [(1, 2, 3, 1), (3, 7, 5, 2), (2, 33, 17, 40), (1, 70, 70, 100)])
def test_cross_matches_numpy(rng, dtype, rtol, batch, n, m, dim):
    x = rng.normal(size=(batch, n, dim)).astype(dtype)
    y = rng.normal(size=(batch, m, dim)).astype(dtype)
    out = tsne_ops.pairwise_squared_distance(x, y).numpy()
    assert out.dtype == dtype and out.shape == (batch, n, m)
    ref = squared_distances(x.astype(np.float64), y.astype(np.float64))
    # Errors are judged against the largest distance (the data's spread), not
    # |x|^2, which a large mean inflates (see test_far_from_the_origin).
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * ref.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,dim", [(2, 1), (9, 3), (65, 20), (130, 784)])
def test_self_is_exactly_symmetric_zero_diagonal_nonnegative(rng, dtype, n, dim):
    x = rng.normal(size=(n, dim)).astype(dtype)
    x[-1] = x[0]  # a duplicate point: its distance must come out exactly 0, not negative
    out = tsne_ops.pairwise_squared_distance(x).numpy()
    assert out.shape == (n, n)
    assert np.array_equal(out, out.T)
    assert np.all(np.diag(out) == 0)
    assert np.all(out >= 0)
    ref = squared_distances(x.astype(np.float64))
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * ref.max())


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shift", [1e3, 1e4])
@pytest.mark.parametrize("dim", [3, 17, 50])
@pytest.mark.parametrize("cross", [False, True])
def test_far_from_the_origin(rng, dtype, tol, shift, dim, cross):
    # Issue 17, defect 2: above 16 dims the float32 norm expansion on data with
    # a mean of 1000 had errors of 96% of the distances. The error must be
    # small relative to the spread of the data (the reference is float64 on
    # the same rounded inputs, centred first so that it is itself exact).
    x = hostile_data.offset(rng, 300, dim, shift).astype(dtype)
    y = hostile_data.offset(rng, 130, dim, shift).astype(dtype) if cross else None
    out = tsne_ops.pairwise_squared_distance(x, y).numpy()
    ref = hostile_data.centred_squared_distances(x, y)
    err = np.abs(out - ref).max() / ref.max()
    assert err <= tol, f"max error / max distance = {err:.3g}"
    if not cross:
        assert np.array_equal(out, out.T) and np.all(np.diag(out) == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim,shift", [(20, 0.0), (64, 100.0), (300, 0.0)])
def test_duplicate_rows_are_exactly_zero_apart(rng, dtype, dim, shift):
    # Duplicates must tie exactly at 0 (perplexity calibration sends a row's
    # mass uniformly onto its ties); the norm expansion left them ~eps |x|^2
    # apart, so the search split them by rounding noise.
    x = np.repeat(rng.normal(size=(50, dim)) + shift, 3, axis=0)[rng.permutation(150)]
    x = x.astype(dtype)
    out = tsne_ops.pairwise_squared_distance(x).numpy()
    same = (x[:, None, :] == x[None, :, :]).all(-1)
    assert np.all(out[same] == 0) and np.all(out[~same] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_small_integer_data_is_exact(rng, dtype, levels):
    # Binary and 0..255 pixel data have integer distances that float32 holds
    # exactly; the shift that keeps float32 accurate far from the origin must
    # keep them exact, or tied distances (which decide P on such data) split
    # into near-ties by rounding noise.
    x = hostile_data.integer_images(rng, 200, 64, levels=levels)
    y = hostile_data.integer_images(rng, 110, 64, levels=levels)
    ref = squared_distances(x, y)
    np.testing.assert_array_equal(tsne_ops.pairwise_squared_distance(x.astype(dtype)).numpy(),
                                  squared_distances(x))
    np.testing.assert_array_equal(
        tsne_ops.pairwise_squared_distance(x.astype(dtype), y.astype(dtype)).numpy(), ref)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float64, 1e-11)])
@pytest.mark.parametrize("dim", [3, 50])
@pytest.mark.parametrize("cross", [False, True])
def test_gradient_far_from_the_origin(rng, dtype, tol, dim, cross):
    # The backward pass sums r_i x_i - sum_j g_ij y_j, which cancels the same
    # way; it must equal the gradient on centred data.
    x = hostile_data.offset(rng, 90, dim, 1e3).astype(dtype)
    y = hostile_data.offset(rng, 70, dim, 1e3).astype(dtype) if cross else None
    g = rng.normal(size=(90, 70 if cross else 90)).astype(dtype)
    xt = tf.constant(x)
    yt = None if y is None else tf.constant(y)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        if yt is not None:
            tape.watch(yt)
        loss = tf.reduce_sum(g * tsne_ops.pairwise_squared_distance(xt, yt))
    gx = tape.gradient(loss, xt).numpy()
    c = np.concatenate([x, x if y is None else y]).astype(np.float64).mean(0)
    xc = x.astype(np.float64) - c
    yc = xc if y is None else y.astype(np.float64) - c
    g64 = g.astype(np.float64)
    diff = xc[:, None, :] - yc[None, :, :]
    if cross:
        ref_x = 2 * (g64[..., None] * diff).sum(1)
        ref_y = -2 * (g64[..., None] * diff).sum(0)
        gy = tape.gradient(loss, yt).numpy()
        assert np.abs(gy - ref_y).max() <= tol * np.abs(ref_y).max()
    else:
        ref_x = 2 * ((g64 + g64.T)[..., None] * diff).sum(1)
    assert np.abs(gx - ref_x).max() <= tol * np.abs(ref_x).max()


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("n,m,dim", [(450, 330, 5), (450, 330, 40), (700, 700, 300)])
def test_matches_numpy_over_many_tiles(rng, dtype, rtol, n, m, dim):
    # Several of the kernel's 96 x 96 tiles plus a remainder, with a depth
    # (300) beyond one 256-deep pass.
    x = rng.normal(size=(n, dim)).astype(dtype)
    y = rng.normal(size=(m, dim)).astype(dtype)
    ref = squared_distances(x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(tsne_ops.pairwise_squared_distance(x, y).numpy(), ref,
                               rtol=rtol, atol=rtol * ref.max())
    out = tsne_ops.pairwise_squared_distance(x).numpy()
    ref = squared_distances(x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=rtol * ref.max())
    assert np.array_equal(out, out.T) and np.all(np.diag(out) == 0)
    # The backward pass, over the kernel's 64-column blocks.
    g = rng.normal(size=(n, n)).astype(dtype)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(g * tsne_ops.pairwise_squared_distance(xt))
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    gs = g64 + g64.T
    ref_g = 2 * (gs.sum(1)[:, None] * x64 - gs @ x64)
    np.testing.assert_allclose(tape.gradient(loss, xt).numpy(), ref_g, rtol=rtol * 10,
                               atol=rtol * 10 * np.abs(ref_g).max())


def test_rank2_is_batch_of_one(rng):
    x = rng.normal(size=(6, 3))
    y = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(
        tsne_ops.pairwise_squared_distance(x, y).numpy(),
        tsne_ops.pairwise_squared_distance(x[None], y[None]).numpy()[0],
    )


def test_batch_equals_separate_calls(rng):
    x = rng.normal(size=(3, 20, 50))
    together = tsne_ops.pairwise_squared_distance(x).numpy()
    for b in range(3):
        np.testing.assert_array_equal(together[b], tsne_ops.pairwise_squared_distance(x[b]).numpy())


@pytest.mark.parametrize("batch,n,m,dim", [(1, 2, 2, 1), (2, 5, 3, 2), (1, 7, 4, 3)])
def test_cross_gradient_matches_finite_differences(rng, batch, n, m, dim):
    x = rng.normal(size=(batch, n, dim))
    y = rng.normal(size=(batch, m, dim))
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b: tsne_ops.pairwise_squared_distance(a, b), [x, y], delta=1e-5
    )
    for t, nu in zip(theoretical, numerical):
        np.testing.assert_allclose(t, nu, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch,n,dim", [(1, 2, 1), (2, 5, 2), (1, 7, 3), (2, 3, 20)])
def test_self_gradient_matches_finite_differences(rng, batch, n, dim):
    x = rng.normal(size=(batch, n, dim))
    theoretical, numerical = tf.test.compute_gradient(
        lambda a: tsne_ops.pairwise_squared_distance(a), [x], delta=1e-5
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-7)


def test_gradient_through_weighted_sum(rng):
    # A non-symmetric upstream gradient exercises both terms of the self grad.
    x = tf.constant(rng.normal(size=(2, 6, 3)))
    weights = tf.constant(rng.normal(size=(2, 6, 6)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * tsne_ops.pairwise_squared_distance(x))
    got = tape.gradient(loss, x).numpy()
    xn, g = x.numpy(), weights.numpy()
    diff = xn[:, :, None, :] - xn[:, None, :, :]
    ref = 2 * ((g + np.swapaxes(g, 1, 2))[..., None] * diff).sum(2)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_eager_equals_tf_function(rng):
    x = rng.normal(size=(2, 10, 4)).astype(np.float32)
    eager = tsne_ops.pairwise_squared_distance(x).numpy()
    graph = tf.function(lambda a: tsne_ops.pairwise_squared_distance(a))(x).numpy()
    np.testing.assert_array_equal(eager, graph)


def test_shape_inference_in_graph_mode():
    @tf.function(input_signature=[tf.TensorSpec([None, 5, 3], tf.float32),
                                  tf.TensorSpec([None, None, 3], tf.float32)])
    def f(x, y):
        d_self = tsne_ops.pairwise_squared_distance(x)
        d_cross = tsne_ops.pairwise_squared_distance(x, y)
        assert d_self.shape.as_list() == [None, 5, 5]
        assert d_cross.shape.as_list() == [None, 5, None]
        return d_self, d_cross

    f.get_concrete_function()

    @tf.function(input_signature=[tf.TensorSpec([2, 5, 3], tf.float32),
                                  tf.TensorSpec([3, 4, 3], tf.float32)])
    def mismatched(x, y):
        return tsne_ops.pairwise_squared_distance(x, y)

    with pytest.raises(ValueError, match="Dimensions must be equal"):
        mismatched.get_concrete_function()
