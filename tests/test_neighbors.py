"""tsne_ops.neighbors.nearest_neighbors: the neighbour search behind the sparse P.

'exact' is the op; 'approx' is faiss-cpu's IVF index (an optional extra, skipped
with a reason where it is not installed) and must find >= 90% of the true
neighbours; 'auto' picks by N; a bad `neighbors` value is a clear ValueError."""
import numpy as np
import pytest
import tensorflow as tf

from references import nearest_neighbors as ref_knn
from tsne_ops import affinities, neighbors, ops


def mixture(n=2000, dim=10, components=8, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(components, dim))
    return (centres[rng.integers(0, components, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_exact_is_the_op():
    x = mixture(500)
    idx, d2 = neighbors.nearest_neighbors(x, 15, neighbors="exact")
    want_idx, want_d2 = ops.nearest_neighbors(x, 15)
    np.testing.assert_array_equal(idx.numpy(), want_idx.numpy())
    np.testing.assert_array_equal(d2.numpy(), want_d2.numpy())


def test_approx_recall_and_layout():
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu)")
    x = mixture()
    k = 30
    idx, d2 = neighbors.nearest_neighbors(x, k, neighbors="approx")
    idx, d2 = idx.numpy(), d2.numpy()
    assert idx.dtype == np.int64 and d2.dtype == np.float32 and idx.shape == d2.shape == (len(x), k)
    assert not (idx == np.arange(len(x))[:, None]).any(), "a point is its own neighbour"
    assert ((idx >= 0) & (idx < len(x))).all()
    assert (np.diff(d2, axis=1) >= 0).all(), "rows not sorted by distance"
    ref_idx, _ = ref_knn(x, k)
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(idx, ref_idx))
    assert hits / ref_idx.size >= 0.9
    # The distances are those of the pairs returned (float32 GEMM accuracy).
    direct = ((x[:, None, :].astype(np.float64) - x[idx].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(d2, direct, rtol=1e-3, atol=1e-3)


def test_approx_feeds_sparse_p_and_float64():
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu)")
    x = mixture(900).astype(np.float64)
    p = affinities.sparse_joint_probabilities(x, 10.0, neighbors="approx")
    assert isinstance(p, tf.SparseTensor) and p.dtype == tf.float64
    np.testing.assert_allclose(tf.sparse.reduce_sum(p).numpy(), 1.0, rtol=1e-10)
    dense = tf.sparse.to_dense(p).numpy()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-12, atol=0)


def test_auto_resolves_by_size(monkeypatch):
    assert neighbors.resolve_neighbors(1000) == "exact"
    assert neighbors.resolve_neighbors(10**7, "exact") == "exact"
    monkeypatch.setattr(neighbors, "_faiss_available", lambda: True)
    assert neighbors.resolve_neighbors(neighbors.AUTO_EXACT_MAX_N + 1) == "approx"
    monkeypatch.setattr(neighbors, "_faiss_available", lambda: False)
    assert neighbors.resolve_neighbors(neighbors.AUTO_EXACT_MAX_N + 1) == "exact"


def test_missing_faiss_names_the_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        neighbors.nearest_neighbors(mixture(100), 5, neighbors="approx")


@pytest.mark.parametrize("value", ["fast", "", None, 3, "EXACT"])
def test_bad_neighbors_value(value):
    with pytest.raises(ValueError, match=r"neighbors must be one of 'auto', 'exact', 'approx', but neighbors = "):
        affinities.sparse_joint_probabilities(mixture(100), 5.0, neighbors=value)


def test_approx_bad_input():
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install faiss-cpu)")
    x = mixture(100)
    with pytest.raises(ValueError, match=r"k must be in \[1, 99\].*k = 100"):
        neighbors.nearest_neighbors(x, 100, neighbors="approx")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X must be finite, but X\[3, 2\] = nan"):
        neighbors.nearest_neighbors(bad, 5, neighbors="approx")
    with pytest.raises(ValueError, match="takes one"):
        neighbors.nearest_neighbors(np.stack([x, x]), 5, neighbors="approx")
