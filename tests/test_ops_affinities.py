"""perplexity_affinities and joint_probabilities against the definition and
against scikit-learn."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import squareform
from sklearn.manifold._t_sne import _joint_probabilities
from sklearn.manifold._utils import _binary_search_perplexity

import hostile_data
import tsne_ops
from references import conditional_p, row_entropy, squared_distances


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,perplexity", [(3, 1.5), (31, 5.0), (200, 30.0)])
def test_rows_reach_the_perplexity(rng, dtype, n, perplexity):
    x = rng.normal(size=(n, 5))
    d = squared_distances(x).astype(dtype)
    p, beta = tsne_ops.perplexity_affinities(d, perplexity)
    p, beta = p.numpy(), beta.numpy()
    assert p.dtype == dtype and p.shape == (n, n) and beta.shape == (n,)
    assert np.all(np.diag(p) == 0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    tol = 1e-5 if dtype == np.float64 else 2e-4
    for i in range(n):
        assert abs(row_entropy(p[i].astype(np.float64)) - np.log(perplexity)) < tol
        # The row is exactly the Gaussian kernel at the beta returned.
        ref = conditional_p(d[i].astype(np.float64), float(beta[i]), i)
        np.testing.assert_allclose(p[i], ref, rtol=1e-9 if dtype == np.float64 else 1e-4, atol=1e-12 if dtype == np.float64 else 1e-7)


def test_far_away_rows_do_not_underflow(rng):
    # Distances of 1e6 would underflow exp(-beta d) without the shift.
    x = rng.normal(size=(50, 3)) * 1000.0
    p, _ = tsne_ops.perplexity_affinities(squared_distances(x), 10.0)
    assert np.all(np.isfinite(p.numpy()))
    np.testing.assert_allclose(p.numpy().sum(1), 1.0, rtol=1e-12)


def test_matches_scikit_learn_conditional(rng):
    x = rng.normal(size=(120, 8))
    d = squared_distances(x).astype(np.float32)
    ours, _ = tsne_ops.perplexity_affinities(d, 20.0)
    theirs = _binary_search_perplexity(d, 20.0, 0)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=2e-5, rtol=2e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_joint_matches_scikit_learn(rng, dtype):
    x = rng.normal(size=(150, 10))
    d = squared_distances(x)
    ours = tsne_ops.joint_probabilities(d.astype(dtype), 30.0).numpy()
    theirs = squareform(_joint_probabilities(d.astype(np.float32), 30.0, 0))
    assert np.array_equal(ours, ours.T)
    assert np.all(np.diag(ours) == 0)
    assert np.all(ours[~np.eye(150, dtype=bool)] >= 2.2e-16)
    np.testing.assert_allclose(ours.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=1e-8)


def test_joint_batch_equals_separate_calls(rng):
    x = rng.normal(size=(3, 40, 4))
    d = squared_distances(x)
    together = tsne_ops.joint_probabilities(d, 7.0).numpy()
    for b in range(3):
        np.testing.assert_array_equal(together[b], tsne_ops.joint_probabilities(d[b], 7.0).numpy())
        np.testing.assert_allclose(together[b].sum(), 1.0, rtol=1e-12)


def test_not_differentiable(rng):
    d = tf.constant(squared_distances(rng.normal(size=(10, 2))))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(d)
        p = tsne_ops.joint_probabilities(d, 3.0)
        pc, _ = tsne_ops.perplexity_affinities(d, 3.0)
    assert tape.gradient(p, d) is None
    assert tape.gradient(pc, d) is None


def test_shape_inference():
    @tf.function(input_signature=[tf.TensorSpec([None, 7, None], tf.float64)])
    def f(d):
        p, beta = tsne_ops.perplexity_affinities(d, 3.0)
        joint = tsne_ops.joint_probabilities(d, 3.0)
        assert p.shape.as_list() == [None, 7, 7]
        assert beta.shape.as_list() == [None, 7]
        assert joint.shape.as_list() == [None, 7, 7]
        return p

    f.get_concrete_function()


def test_eager_equals_tf_function(rng):
    d = squared_distances(rng.normal(size=(2, 30, 3)))
    eager = tsne_ops.joint_probabilities(d, 5.0).numpy()
    graph = tf.function(lambda t: tsne_ops.joint_probabilities(t, 5.0))(d).numpy()
    np.testing.assert_array_equal(eager, graph)


def _tie_cases(rng):
    """(name, squared distances, perplexity): rows with more than
    `perplexity` points tied at their smallest distance."""
    dup = squared_distances(hostile_data.duplicates(rng, 4, 10))  # 9 ties at 0
    binary = squared_distances(hostile_data.binary_images(rng, 150, 64))
    integer = squared_distances(hostile_data.integer_images(rng, 150, 16, levels=3))
    two = np.array([[0.0, 3.0], [3.0, 0.0]])
    return [("duplicates", dup, 5.0), ("binary", binary, 2.5), ("integer", integer, 1.5),
            ("two_points", two, 0.5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["duplicates", "binary", "integer", "two_points"])
def test_rows_that_cannot_reach_the_perplexity_are_their_limit(rng, dtype, case):
    # Defect 1 of issue 17: float32 doubled beta past the float maximum, got
    # -inf * 0 = NaN and took the NaN entropy for convergence. The right
    # answer is the beta -> infinity limit, uniform on the tied points.
    _, d, perplexity = next(c for c in _tie_cases(rng) if c[0] == case)
    d = d.astype(dtype)
    tied, limit = hostile_data.tied_rows(d, perplexity)
    assert tied.any()
    p, beta = tsne_ops.perplexity_affinities(d, perplexity)
    p, beta = p.numpy().astype(np.float64), beta.numpy().astype(np.float64)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(beta)) and np.all(beta > 0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(p[tied], limit[tied], atol=1e-6)
    for i in np.flatnonzero(~tied):
        tol = 1e-5 if dtype == np.float64 else 2e-4
        assert abs(row_entropy(p[i]) - np.log(perplexity)) < tol, i
    # float32 and float64 give the same answer.
    p64 = tsne_ops.perplexity_affinities(d.astype(np.float64), perplexity)[0].numpy()
    np.testing.assert_allclose(p, p64, atol=1e-4)
    joint = tsne_ops.joint_probabilities(d, perplexity).numpy()
    assert np.all(np.isfinite(joint))
    np.testing.assert_allclose(joint.sum(), 1.0, rtol=1e-5)


def test_duplicates_match_scikit_learn(rng):
    # scikit-learn (float32 distances, beta doubled 100 times) reaches the same
    # limit on rows whose smallest distance is 0.
    d = squared_distances(hostile_data.duplicates(rng, 6, 8)).astype(np.float32)
    theirs = _binary_search_perplexity(d, 4.0, 0)
    for dtype in (np.float32, np.float64):
        ours = tsne_ops.perplexity_affinities(d.astype(dtype), 4.0)[0].numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [450, 700])
def test_matches_scikit_learn_over_many_blocks(rng, dtype, n):
    # Several of the symmetrisation's 64 x 64 blocks plus a remainder.
    x = rng.normal(size=(n, 10))
    d = squared_distances(x)
    pc, beta = tsne_ops.perplexity_affinities(d.astype(dtype), 30.0)
    theirs_pc = _binary_search_perplexity(d.astype(np.float32), 30.0, 0)
    np.testing.assert_allclose(pc.numpy(), theirs_pc, atol=2e-5, rtol=2e-3)
    for i in range(0, n, 97):
        ref = conditional_p(d[i].astype(dtype).astype(np.float64), float(beta.numpy()[i]), i)
        np.testing.assert_allclose(pc.numpy()[i], ref, rtol=1e-4, atol=1e-7)
    ours = tsne_ops.joint_probabilities(d.astype(dtype), 30.0).numpy()
    theirs = squareform(_joint_probabilities(d.astype(np.float32), 30.0, 0))
    assert np.array_equal(ours, ours.T)
    np.testing.assert_allclose(ours, theirs, rtol=2e-3, atol=1e-8)
