"""Memory of the large-N fit (issue 16): the sparse P travels without copies.

- ``SparseCsr`` (and every op taking P's COO form) reads a rank-2 P's
  indices ``[nnz, 2]`` as they are: the same CSR, bit for bit, as the batched
  ``[nnz, 3]`` copy it used to be given, and bad input named in P's own form;
- ``KnnJointProbabilities(index_rank=2)`` writes a rank-2 P directly: the
  same entries as the ``[nnz, 3]`` list sliced;
- ``GradientDescent`` keeps only P's CSR view for the approximate methods
  (P's COO indices are freed once the caller drops P).

That a fit gives the bits of the code before these changes was checked
against a build of the commit before them (f313519) when they were merged.

The peak memory itself is measured by benchmarks/bench_memory.py.
"""
import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf

from helpers import sparse_p
from tsne_ops import ops
from tsne_ops.tsne import GradientDescent

BAD = tf.errors.InvalidArgumentError


def _batched(p):
    """The [nnz, 3] / [1, n, n] form of a rank-2 P (what the ops used to get)."""
    idx = p.indices.numpy()
    return (np.concatenate([np.zeros((len(idx), 1), np.int64), idx], axis=1),
            np.concatenate([[1], p.dense_shape.numpy()]).astype(np.int64))


@pytest.mark.parametrize("n, k", [(3, 2), (97, 7), (1500, 30)])
def test_rank2_sparse_csr_equals_rank3_bit_for_bit(rng, n, k):
    p = sparse_p(rng, n, k, np.float32, perplexity=min(10.0, k - 0.5))
    rp2, cols2 = ops._ops.tsne_sparse_csr(p.indices, p.dense_shape)
    rp3, cols3 = ops._ops.tsne_sparse_csr(*_batched(p))
    np.testing.assert_array_equal(rp2.numpy(), rp3.numpy())
    np.testing.assert_array_equal(cols2.numpy(), cols3.numpy())
    view = ops._sparse_csr(p, "fft")
    assert not view.batched and view.values is p.values  # P's values, not a copy
    np.testing.assert_array_equal(view.row_ptr.numpy(), rp3.numpy())


def test_rank2_coo_ops_equal_rank3_bit_for_bit(rng):
    n = 300
    p = sparse_p(rng, n, 12, np.float64)
    y = rng.normal(size=(1, n, 2))
    one = tf.constant(1.0, tf.float64)
    i3, s3 = _batched(p)
    g2, kl2 = ops._ops.tsne_sparse_tsne_gradient(p.indices, p.values, p.dense_shape, y, one, one)
    g3, kl3 = ops._ops.tsne_sparse_tsne_gradient(i3, p.values, s3, y, one, one)
    np.testing.assert_array_equal(g2.numpy(), g3.numpy())
    np.testing.assert_array_equal(kl2.numpy(), kl3.numpy())


def test_rank2_p_bad_input_is_named_in_its_own_form():
    csr = ops._ops.tsne_sparse_csr
    i64 = lambda a: np.asarray(a, np.int64)  # noqa: E731
    cases = [
        (i64([[0, 1]]), i64([4, 5]), r"p must be square \[n, n\], but has dense shape \[4, 5\]"),
        (i64([[0, 1]]), i64([-4, -4]), r"p dense_shape must be >= 0 with n n < 2\^63, but is \[-4, -4\]"),
        (i64([[0, 1]]), i64([2**32, 2**32]), r"n n < 2\^63, but is \[4294967296, 4294967296\]"),
        (i64([[0, 1]]), i64([1, 4, 4]), r"p dense_shape must be \[2\] \(\[n, n\]\) to match p indices "
                                         r"\[nnz, 2\], but has shape \[3\]"),
        (i64([[0, 0, 1]]), i64([4, 4]), r"p dense_shape must be \[3\] \(\[batch, n, n\]\) to match p "
                                         r"indices \[nnz, 3\], but has shape \[2\]"),
        (i64([[0, 1], [3, 4]]), i64([4, 4]), r"p indices must lie inside the dense shape \[4, 4\], "
                                              r"but entry 1 is \[3, 4\]"),
        (i64([[0, 1], [0, -1]]), i64([4, 4]), r"entry 1 is \[0, -1\]"),
        (i64([[1, 0], [0, 1]]), i64([4, 4]), r"canonical row-major order .* entry 1 \[0, 1\] comes "
                                              r"after entry 0"),
        (i64([[1, 0], [1, 0]]), i64([4, 4]), r"entry 1 \[1, 0\] repeats entry 0"),
        (i64([[0, 1, 2]])[:, :1], i64([4]), r"p indices must be \[nnz, 3\] \(batch, row, column\) or "
                                            r"\[nnz, 2\] \(row, column\), but have shape \[1,1\]"),
    ]
    for idx, shape, message in cases:
        with pytest.raises(BAD, match=message):
            csr(idx, shape)
    # The COO gradient op checks p in the same place (SparsePShape, CooToCsr).
    with pytest.raises(BAD, match=r"entry 1 is \[3, 4\]"):
        ops.tsne_gradient(tf.SparseTensor(i64([[0, 1], [3, 4]]), np.full(2, 0.5), [4, 4]),
                          np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_p_written_rank2_equals_the_rank3_list(rng, dtype):
    n, k = 400, 20
    x = rng.normal(size=(n, 5)).astype(dtype)
    idx, d2 = ops.nearest_neighbors(x, k)
    p2 = ops.knn_joint_probabilities(idx, d2, 6.0)
    i3, v3, s3 = ops._ops.tsne_knn_joint_probabilities(idx[None], d2[None], perplexity=6.0)
    assert p2.indices.shape[1] == 2 and p2.dense_shape.numpy().tolist() == [n, n]
    np.testing.assert_array_equal(p2.indices.numpy(), i3.numpy()[:, 1:])
    assert not i3.numpy()[:, 0].any()
    np.testing.assert_array_equal(p2.values.numpy(), v3.numpy())
    assert s3.numpy().tolist() == [1, n, n]


def test_knn_p_index_rank_is_checked(rng):
    idx, d2 = ops.nearest_neighbors(rng.normal(size=(2, 30, 3)), 5)
    with pytest.raises(BAD, match=r"index_rank 2 writes one \[n, n\] matrix, so indices must be "
                                  r"\[1, n, k\], but have shape \[2,30,5\]"):
        ops._ops.tsne_knn_joint_probabilities(idx, d2, perplexity=2.0, index_rank=2)
    with pytest.raises((BAD, ValueError), match=r"index_rank must be 2 or 3, but is 4"):
        ops._ops.tsne_knn_joint_probabilities(idx, d2, perplexity=2.0, index_rank=4)


@pytest.mark.parametrize("method", ["fft", "barnes_hut", "exact"])
def test_optimiser_keeps_no_reference_to_p(rng, method):
    n = 300
    p = sparse_p(rng, n, 10, np.float32)
    indices = weakref.ref(p.indices)
    opt = GradientDescent(p, 1e-4 * rng.normal(size=(n, 2)).astype(np.float32), 50.0, 1.0,
                          method=method)
    kl_before, _ = opt.run(3, 0.5, 12.0)
    del p
    gc.collect()
    # The approximate methods run on P's CSR view: P's COO indices are gone.
    # 'exact' runs the COO op, which takes P's indices as they are.
    assert (indices() is None) == (method != "exact")
    kl, _ = opt.run(3, 0.5, 12.0)
    assert np.isfinite(kl) and np.isfinite(opt.kl_divergence())
