"""nearest_neighbors: the exact k-NN op against scikit-learn's brute-force
search and against the definition (references.nearest_neighbors), with ties,
data far from the origin, shapes around the kernel's tile sizes (row blocks
of 384, column blocks of 768, a GEMM path above dim 16), determinism across
thread counts, graph mode, no gradient, and every bad input."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from sklearn.neighbors import NearestNeighbors

import tsne_ops
from references import nearest_neighbors as ref_knn

DTYPES = [np.float32, np.float64]


def sklearn_knn(x, k, y=None):
    """(indices, squared distances) from scikit-learn's brute-force search."""
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute")
    if y is None:
        dist, idx = nn.fit(x.astype(np.float64)).kneighbors()
    else:
        dist, idx = nn.fit(y.astype(np.float64)).kneighbors(x.astype(np.float64))
    return idx, dist**2


def run(x, k, y=None):
    idx, d2 = tsne_ops.nearest_neighbors(x, k, y=y)
    return idx.numpy(), d2.numpy()


def check_sorted_with_index_ties(idx, d2):
    """Rows by increasing distance; equal distances by increasing index."""
    assert np.all(np.diff(d2, axis=-1) >= 0)
    same = np.diff(d2, axis=-1) == 0
    assert np.all(np.diff(idx, axis=-1)[same] > 0)


# ------------------------------------------------- against scikit-learn ---

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n,m,dim,k",
    [
        (2, None, 1, 1),  # smallest self case
        (50, None, 3, 49),  # k = N - 1
        (383, None, 2, 5),  # around the 384-row block
        (385, None, 20, 1),  # k = 1, GEMM path
        (400, 769, 7, 12),  # cross, around the 768-column block
        (500, None, 50, 90),  # k = 90 as t-SNE uses it, GEMM path
        (100, 30, 40, 30),  # cross, k = M
        (1700, None, 17, 10),  # several row and column blocks
    ],
)
def test_matches_sklearn_brute(rng, dtype, n, m, dim, k):
    x = rng.normal(size=(n, dim)).astype(dtype)
    y = None if m is None else rng.normal(size=(m, dim)).astype(dtype)
    idx, d2 = run(x, k, y)
    assert idx.dtype == np.int64 and d2.dtype == dtype
    assert idx.shape == d2.shape == (n, k)
    sk_idx, sk_d2 = sklearn_knn(x, k, y)
    # Continuous random data has no ties, so the indices must agree exactly.
    np.testing.assert_array_equal(idx, sk_idx)
    np.testing.assert_allclose(d2, sk_d2, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-12)
    # The returned distances are the exact ones rounded to the dtype.
    ref_idx, ref_d2 = ref_knn(x, k, y, dtype=dtype)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(d2, ref_d2.astype(dtype), rtol=2e-7 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cross", [False, True])
def test_batched_equals_each_batch(rng, dtype, cross):
    x = rng.normal(size=(3, 230, 24)).astype(dtype)
    y = rng.normal(size=(3, 310, 24)).astype(dtype) if cross else None
    idx, d2 = run(x, 8, y)
    assert idx.shape == (3, 230, 8)
    for b in range(3):
        sk_idx, sk_d2 = sklearn_knn(x[b], 8, None if y is None else y[b])
        np.testing.assert_array_equal(idx[b], sk_idx)
        np.testing.assert_allclose(d2[b], sk_d2, rtol=1e-5 if dtype == np.float32 else 1e-12)
        b_idx, b_d2 = run(x[b], 8, None if y is None else y[b])
        np.testing.assert_array_equal(idx[b], b_idx)
        np.testing.assert_array_equal(d2[b], b_d2)


# ---------------------------------------------------------------- ties ---

def test_duplicates_smaller_index_first():
    x = np.array([[0, 0], [1, 0], [0, 0], [1, 0], [5, 5]], np.float32)
    idx, d2 = run(x, 3)
    # Row 0: its duplicate 2 at distance 0 (the row itself is excluded by
    # index, not by distance), then 1 and 3 at distance 1, smaller index first.
    np.testing.assert_array_equal(idx[0], [2, 1, 3])
    np.testing.assert_array_equal(d2[0], [0, 1, 1])
    np.testing.assert_array_equal(idx[2], [0, 1, 3])
    np.testing.assert_array_equal(idx[4], [1, 3, 0])  # 1 and 3 tie at 41
    np.testing.assert_array_equal(d2[4], [41, 41, 50])
    # Cross: y = x reversed, (0, 0) sits at rows 2 and 4 of y, (1, 0) at 1 and 3.
    idx, d2 = run(x, 4, y=x[::-1].copy())
    np.testing.assert_array_equal(idx[0], [2, 4, 1, 3])
    np.testing.assert_array_equal(d2[0], [0, 0, 1, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,dim,cross", [(300, 3, False), (500, 24, False), (260, 24, True)])
def test_integer_grid_ties_match_definition(rng, dtype, n, dim, cross):
    # Few distinct values: many exact ties and duplicated rows, on both the
    # direct (dim <= 16) and the GEMM path of the distance tiles.
    x = rng.integers(0, 3, size=(n, dim)).astype(dtype)
    y = rng.integers(0, 3, size=(n + 40, dim)).astype(dtype) if cross else None
    k = 25
    idx, d2 = run(x, k, y)
    ref_idx, ref_d2 = ref_knn(x, k, y, dtype=dtype)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(d2, ref_d2)
    check_sorted_with_index_ties(idx, d2)
    if not cross:
        assert not np.any(idx == np.arange(n)[:, None])
    # scikit-learn orders ties arbitrarily, but its distances must agree.
    _, sk_d2 = sklearn_knn(x, k, y)
    np.testing.assert_allclose(d2, sk_d2, rtol=1e-12, atol=1e-9)


# ------------------------------------------------ far from the origin ----

@pytest.mark.parametrize("offset", [1e3, 1e4])
@pytest.mark.parametrize("dim", [5, 50])
@pytest.mark.parametrize("cross", [False, True])
def test_float32_offset_equals_float64(rng, offset, dim, cross):
    # Data on a 1/256 grid is exactly representable in float32 even at 1e4
    # (ulp 2^-10 there), so float32 + offset and float64 without must give
    # the same neighbours and the same (rounded) distances.
    x64 = np.round(rng.normal(size=(700, dim)) * 256) / 256
    y64 = np.round(rng.normal(size=(650, dim)) * 256) / 256 if cross else None
    k = 30
    idx64, d64 = run(x64, k, y64)
    x32 = (x64 + offset).astype(np.float32)
    y32 = None if y64 is None else (y64 + offset).astype(np.float32)
    assert np.array_equal(x32.astype(np.float64) - offset, x64)  # the premise
    idx32, d32 = run(x32, k, y32)
    np.testing.assert_array_equal(idx32, idx64)
    np.testing.assert_array_equal(d32, d64.astype(np.float32))
    sk_idx, _ = sklearn_knn(x64, k, y64)
    assert np.mean(idx64 == sk_idx) > 0.999  # the 1/256 grid allows a rare exact tie


# ------------------------------------------------------------ contract ---

def test_rank2_and_graph_mode_shapes(rng):
    x = rng.normal(size=(2, 40, 3)).astype(np.float32)
    idx, d2 = tsne_ops.nearest_neighbors(x[0], 4)
    assert idx.shape == (40, 4)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    def f(t):
        i, d = tsne_ops.nearest_neighbors(t, 4)
        assert i.shape.as_list() == [None, None, 4] and i.dtype == tf.int64
        assert d.shape.as_list() == [None, None, 4] and d.dtype == tf.float32
        return i, d

    gi, gd = f(tf.constant(x))
    ei, ed = run(x, 4)
    np.testing.assert_array_equal(gi.numpy(), ei)
    np.testing.assert_array_equal(gd.numpy(), ed)

    @tf.function
    def g(a, b):
        return tsne_ops.nearest_neighbors(a, 3, y=b)

    cg = g.get_concrete_function(tf.TensorSpec([2, 40, 3], tf.float64), tf.TensorSpec([2, 9, 3], tf.float64))
    assert cg.structured_outputs[0].shape.as_list() == [2, 40, 3]


def test_not_differentiable(rng):
    x = tf.Variable(rng.normal(size=(20, 3)))
    with tf.GradientTape() as tape:
        _, d2 = tsne_ops.nearest_neighbors(x, 3)
        loss = tf.reduce_sum(d2)
    assert tape.gradient(loss, x) is None


_DETERMINISM = r"""
import sys, hashlib
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
import tsne_ops
rng = np.random.default_rng(5)
h = hashlib.sha256()
for x, y in [(rng.normal(size=(2, 1100, 37)).astype(np.float32), None),
             (rng.normal(size=(900, 6)), rng.normal(size=(1300, 6)))]:
    i, d = tsne_ops.nearest_neighbors(x, 20, y=y)
    h.update(i.numpy().tobytes()); h.update(d.numpy().tobytes())
print(h.hexdigest())
"""


def test_deterministic_across_intra_op_threads():
    digests = set()
    for threads in (1, 2, 3):
        out = subprocess.run([sys.executable, "-c", _DETERMINISM, str(threads)], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        digests.add(out.stdout.strip().splitlines()[-1])
    assert len(digests) == 1


# ---------------------------------------------------------- bad input ----

X = np.zeros((5, 3), np.float32) + np.arange(5, dtype=np.float32)[:, None]


def with_nan(a, value, where):
    a = a.copy()
    a[where] = value
    return a


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: tsne_ops.nearest_neighbors(X, 0), r"k must be in \[1, 4\].*k = 0"),
        (lambda: tsne_ops.nearest_neighbors(X, -2), r"k must be in \[1, 4\].*k = -2"),
        (lambda: tsne_ops.nearest_neighbors(X, 5), r"k must be in \[1, 4\].*n - 1.*k = 5"),
        (lambda: tsne_ops.nearest_neighbors(X, 3, y=X[:2]), r"k must be in \[1, 2\].*y.*k = 3"),
        (lambda: tsne_ops.nearest_neighbors(X, 2.0), r"k must be an int, but is 2.0"),
        (lambda: tsne_ops.nearest_neighbors(X, True), r"k must be an int, but is True"),
        (lambda: tsne_ops.nearest_neighbors(X[0], 1), r"x must be rank 2.*shape \(3,\)"),
        (lambda: tsne_ops.nearest_neighbors(X[None, None], 1), r"x must be rank 2.*shape \(1, 1, 5, 3\)"),
        (lambda: tsne_ops.nearest_neighbors(X.astype(np.int32), 1), r"x must be float32 or float64.*int32"),
        (lambda: tsne_ops.nearest_neighbors(X.astype(np.float16), 1), r"x must be float32 or float64.*float16"),
        (lambda: tsne_ops.nearest_neighbors(X, 1, y=X.astype(np.float64)), r"y must have the same dtype.*float64"),
        (lambda: tsne_ops.nearest_neighbors(X, 1, y=X[:, :2]), r"x and y must have the same batch size and dim.*\[1,5,2\]"),
        (lambda: tsne_ops.nearest_neighbors(np.stack([X, X]), 1, y=X[None]),
         r"x and y must have the same batch size and dim.*\[2,5,3\].*\[1,5,3\]"),
        (lambda: tsne_ops.nearest_neighbors(X, 1, y=np.stack([X, X])), r"x and y must have the same rank"),
        (lambda: tsne_ops.nearest_neighbors(X[:0], 1), r"x needs at least 2 points.*\[1,0,3\]"),
        (lambda: tsne_ops.nearest_neighbors(X[:1], 1), r"x needs at least 2 points.*\[1,1,3\]"),
        (lambda: tsne_ops.nearest_neighbors(X[:0], 1, y=X), r"x needs at least 1 point,.*\[1,0,3\]"),
        (lambda: tsne_ops.nearest_neighbors(X[:, :0], 1), r"x must have dim >= 1.*\[1,5,0\]"),
        (lambda: tsne_ops.nearest_neighbors(with_nan(X, np.nan, (3, 1)), 2), r"x must be finite.*x\[0, 3, 1\] = nan"),
        (lambda: tsne_ops.nearest_neighbors(X, 2, y=with_nan(X, np.inf, (1, 2))), r"y must be finite.*y\[0, 1, 2\] = inf"),
        (lambda: tsne_ops.nearest_neighbors(with_nan(X, -np.inf, (0, 0)), 2, y=X), r"x must be finite.*= -inf"),
    ],
)
def test_bad_input_is_invalid_argument(call, pattern):
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        call()


def test_raw_op_checks_k_in_graph_mode():
    # The shape function rejects k < 1 before any kernel runs.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="k must be >= 1, but k = 0"):
        tf.function(lambda t: tsne_ops.ops._ops.tsne_nearest_neighbors(t, k=0)).get_concrete_function(
            tf.TensorSpec([1, 5, 3], tf.float32))
