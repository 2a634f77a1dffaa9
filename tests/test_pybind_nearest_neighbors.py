"""nearest_neighbors in the pybind11 module ``_tsne_kernels`` (CPU path),
without TensorFlow: against the definition (references.nearest_neighbors),
deterministic over set_num_threads, and its ValueErrors. The GPU path is
checked against this one in test_gpu_kernels.py."""
import numpy as np
import pytest

import kernels_module
from references import nearest_neighbors as ref_knn

tk = kernels_module.load_or_skip()


@pytest.fixture
def rng():
    return np.random.default_rng(11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b,n,m,dim,k", [(None, 2, None, 1, 1), (None, 300, None, 30, 299),
                                         (2, 200, 790, 5, 17), (3, 97, None, 64, 9)])
def test_matches_definition(rng, dtype, b, n, m, dim, k):
    lead = () if b is None else (b,)
    x = rng.normal(size=lead + (n, dim)).astype(dtype)
    y = None if m is None else rng.normal(size=lead + (m, dim)).astype(dtype)
    idx, d2 = tk.nearest_neighbors(x, k, y)
    assert idx.dtype == np.int64 and d2.dtype == dtype and idx.shape == lead + (n, k)
    ref_idx, ref_d2 = ref_knn(x, k, y, dtype=dtype)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(d2, ref_d2, rtol=2e-7 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,dim", [(1100, 12), (1537, 6)])
def test_several_row_blocks_match_definition(rng, dtype, n, dim):
    """Self-search runs its 384-row blocks as a round-robin of tile pairs,
    each tile feeding both blocks: 3 blocks (a bye each round) and 5 blocks,
    on clustered data so that rows meet their neighbours in other blocks."""
    centres = rng.normal(scale=5.0, size=(7, dim))
    x = (centres[rng.integers(0, 7, size=n)] + rng.normal(size=(n, dim))).astype(dtype)
    idx, d2 = tk.nearest_neighbors(x, 30)
    ref_idx, ref_d2 = ref_knn(x, 30, dtype=dtype)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(d2, ref_d2, rtol=2e-7 if dtype == np.float32 else 1e-14)


def test_ties_and_numpy_integer_k(rng):
    x = rng.integers(0, 3, size=(400, 20)).astype(np.float32)
    idx, d2 = tk.nearest_neighbors(x, np.int64(40))
    ref_idx, ref_d2 = ref_knn(x, 40, dtype=np.float32)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(d2, ref_d2)


def test_deterministic_over_thread_counts(rng):
    x = rng.normal(size=(2, 1500, 40)).astype(np.float32)
    y = rng.normal(size=(1100, 3))
    before = tk.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 7):
            tk.set_num_threads(threads)
            results.append((tk.nearest_neighbors(x, 25), tk.nearest_neighbors(y[:700], 9, y)))
    finally:
        tk.set_num_threads(before)
    for (a, c) in results[1:]:
        for got, want in zip(a + c, results[0][0] + results[0][1]):
            assert np.array_equal(got, want)


X = np.arange(15, dtype=np.float64).reshape(5, 3)


@pytest.mark.parametrize("call, pattern", [
    (lambda: tk.nearest_neighbors(X, 0), r"k must be in \[1, 4\].*k = 0"),
    (lambda: tk.nearest_neighbors(X, 5), r"k must be in \[1, 4\].*k = 5"),
    (lambda: tk.nearest_neighbors(X, 6, X), r"k must be in \[1, 5\].*k = 6"),
    (lambda: tk.nearest_neighbors(X, 1.0), r"k must be an int, got 1.0"),
    (lambda: tk.nearest_neighbors(X, True), r"k must be an int, got True"),
    (lambda: tk.nearest_neighbors(X.tolist(), 1), r"x must be a numpy array"),
    (lambda: tk.nearest_neighbors(X.astype(np.int64), 1), r"x must be float32 or float64, but has dtype int64"),
    (lambda: tk.nearest_neighbors(X[0], 1), r"x must be rank 2 \[n, dim\] or rank 3 \[batch, n, dim\], but has shape \[3\]"),
    (lambda: tk.nearest_neighbors(X, 1, X.astype(np.float32)), r"y must have the same dtype as x \(float64\), but has dtype float32"),
    (lambda: tk.nearest_neighbors(X, 1, X[:, :2]), r"x and y must have the same batch size and dim, but x has shape \[5,3\] and y has shape \[5,2\]"),
    (lambda: tk.nearest_neighbors(X, 1, X[None]), r"x and y must have the same rank, but have shapes \[5,3\] and \[1,5,3\]"),
    (lambda: tk.nearest_neighbors(X[:1], 1), r"x needs at least 2 points, but has shape \[1,3\]"),
    (lambda: tk.nearest_neighbors(X[:, :0], 1), r"x must have dim >= 1"),
    (lambda: tk.nearest_neighbors(np.where(X == 7, np.nan, X), 1), r"x must be finite.*x\[0, 2, 1\] = nan"),
    (lambda: tk.nearest_neighbors(X, 1, np.where(X == 4, np.inf, X)), r"y must be finite.*y\[0, 1, 1\] = inf"),
    (lambda: tk.nearest_neighbors(X, 1, device="tpu"), r"device must be 'cpu' or 'cuda'"),
])
def test_bad_input_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
