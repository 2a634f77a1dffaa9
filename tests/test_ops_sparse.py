"""The sparse-P path: ``knn_joint_probabilities`` and ``tsne_gradient`` /
``tsne_loss`` on a ``tf.SparseTensor`` P (exact repulsion).

References: the dense ops on the same data (``joint_probabilities`` of the
full distance matrix at k = N - 1; ``tsne_gradient`` / ``tsne_loss`` on
``tf.sparse.to_dense(p)``), scikit-learn's ``_joint_probabilities_nn`` at
k = 90, and finite differences. kNN inputs come from scikit-learn's
``NearestNeighbors`` (int64 indices, squared distances).
"""
import numpy as np
import pytest
import tensorflow as tf
from scipy.sparse import csr_matrix
from sklearn.manifold import _t_sne
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

import kernels_module
import tsne_ops
from helpers import sparse_p

DTYPES = [np.float32, np.float64]
FLOOR = 2.220446049250313e-16  # joint_probabilities' floor (scikit-learn's MACHINE_EPSILON)


def knn(x, k):
    """(indices int64 [N, k], squared distances [N, k]) of each point, itself excluded."""
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()
    return idx.astype(np.int64), (dist**2).astype(x.dtype)


def data_with_ties(rng, n, dim, dtype, group=12):
    """Gaussian blobs plus `group` copies of one point (its rows cannot reach a
    perplexity below `group - 1`: that many neighbours tie at distance 0) and
    a few duplicate pairs."""
    x = rng.normal(size=(n, dim)) + 4.0 * rng.integers(0, 3, size=(n, 1))
    x[1:group] = x[0]
    x[group + 1 : group + 6] = x[group + 10 : group + 15]
    return x.astype(dtype)


def as_dense(sp):
    return tf.sparse.to_dense(sp).numpy()


def assert_canonical(sp, n):
    idx = sp.indices.numpy()
    flat = np.ravel_multi_index(tuple(idx.T), tuple(sp.dense_shape.numpy()))
    assert np.all(np.diff(flat) > 0), "indices are not in strictly increasing row-major order"
    assert np.all(idx[:, -1] != idx[:, -2]), "a diagonal entry is stored"


# --------------------------------------------------- knn_joint_probabilities --

@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_p_equals_dense_p_at_k_n_minus_1(rng, dtype):
    n, perplexity = 500, 5.0
    x = data_with_ties(rng, n, 5, dtype)
    idx, d2 = knn(x, n - 1)
    sp = tsne_ops.knn_joint_probabilities(idx, d2, perplexity)
    assert sp.dense_shape.numpy().tolist() == [n, n]
    assert sp.values.dtype == dtype
    assert_canonical(sp, n)
    p = as_dense(sp)
    assert np.all(np.isfinite(p))
    np.testing.assert_array_equal(p, p.T)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    # float64 dense reference: the float32 dense search is issue 17's defect 1
    # (NaN on rows that cannot reach their perplexity); the kNN search runs in
    # float64 for both dtypes.
    d2_dense = pairwise_distances(x.astype(np.float64), metric="sqeuclidean")
    dense = tsne_ops.joint_probabilities(d2_dense, perplexity).numpy()
    # Rows that cannot reach the perplexity are counted as the dense search counts them.
    tk = kernels_module.load_or_skip()
    unconverged = tk.knn_joint_probabilities(idx, d2, perplexity)[3]
    assert unconverged >= 12 and unconverged == tk.perplexity_affinities(d2_dense, perplexity)[2]
    above = dense > FLOOR
    rtol = 1e-4 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(p[above], dense[above], rtol=rtol, atol=1e-12)
    # Below the dense op's floor the sparse P keeps the exact (tiny) value.
    off = ~np.eye(n, dtype=bool) & ~above
    assert np.all(p[off] <= 2 * FLOOR)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tied_rows_put_their_mass_on_the_tied_points(rng, dtype):
    n, group = 400, 12
    x = data_with_ties(rng, n, 4, dtype, group=group)
    idx, d2 = knn(x, 30)
    sp = tsne_ops.knn_joint_probabilities(idx, d2, 5.0)  # 5 < group - 1 ties: unreachable
    p = as_dense(sp)
    assert np.all(np.isfinite(p))
    block = p[:group, :group][~np.eye(group, dtype=bool)]
    # Each copy's conditional mass is uniform over the other group - 1 copies
    # and all of it stays there: the block holds (group + group) / (2 n).
    np.testing.assert_allclose(block, block[0], rtol=1e-5)
    np.testing.assert_allclose(block.sum(), group / n, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_p_matches_scikit_learn_at_k_90(rng, dtype):
    n, k, perplexity = 800, 90, 30.0
    x = data_with_ties(rng, n, 10, dtype, group=4)
    idx, d2 = knn(x, k)
    sp = tsne_ops.knn_joint_probabilities(idx, d2, perplexity)
    assert_canonical(sp, n)
    graph = csr_matrix((d2.astype(np.float64).ravel(), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    ref = csr_matrix(_t_sne._joint_probabilities_nn(graph, perplexity, 0))
    ref.sort_indices()
    ri, rj = ref.nonzero()
    got = as_dense(sp)
    # Same pattern (the union of the graph and its transpose), same values
    # (scikit-learn searches by bisection in float32 to the same 1e-5 nats).
    assert sp.values.shape[0] == ref.nnz
    np.testing.assert_allclose(got[ri, rj], ref.toarray()[ri, rj], rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-5)


def test_knn_p_batched_equals_each_batch(rng):
    b, n, k = 3, 120, 20
    xs = [rng.normal(size=(n, 3)) for _ in range(b)]
    nn = [knn(x, k) for x in xs]
    idx = np.stack([t[0] for t in nn])
    d2 = np.stack([t[1] for t in nn])
    sp = tsne_ops.knn_joint_probabilities(idx, d2, 8.0)
    assert sp.dense_shape.numpy().tolist() == [b, n, n]
    assert_canonical(sp, n)
    dense = as_dense(sp)
    for i in range(b):
        one = as_dense(tsne_ops.knn_joint_probabilities(idx[i], d2[i], 8.0))
        np.testing.assert_array_equal(dense[i], one)
        np.testing.assert_allclose(dense[i].sum(), 1.0, rtol=1e-12)


# ------------------------------------------------ gradient and loss on sparse P --

def tol(dtype):
    return dict(rtol=2e-4, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)


def assert_grad_close(got, want, dtype):
    # Relative to the largest entry: cancelling entries must not dominate.
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got / scale, want / scale, **tol(dtype))


CASES = [
    # (n, d, dof, exaggeration, compute_kl, batch)
    (300, 2, 1.0, 1.0, True, None),
    (300, 2, 1.0, 12.0, False, None),
    (257, 3, 0.7, 4.0, True, None),
    (200, 1, 3.0, 1.0, True, None),
    (150, 5, 1.0, 1.0, True, None),
    (130, 2, 2.0, 1.0, False, 2),
    (1100, 2, 1.0, 1.0, True, None),  # beyond one 1024-column tile
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d,dof,ex,compute_kl,b", CASES)
def test_sparse_gradient_equals_dense(rng, dtype, n, d, dof, ex, compute_kl, b):
    p = sparse_p(rng, n, 30, dtype, batch=b, perplexity=10.0, dim=5)
    shape = (n, d) if b is None else (b, n, d)
    y = (3 * rng.normal(size=shape)).astype(dtype)
    g, kl = tsne_ops.tsne_gradient(p, y, exaggeration=ex, dof=dof, compute_kl=compute_kl)
    gd, kld = tsne_ops.tsne_gradient(tf.sparse.to_dense(p), y, exaggeration=ex, dof=dof, compute_kl=compute_kl)
    assert g.shape == shape and g.dtype == dtype
    assert_grad_close(g.numpy(), gd.numpy(), dtype)
    if compute_kl:
        np.testing.assert_allclose(kl.numpy(), kld.numpy(), rtol=1e-4 if dtype == np.float32 else 1e-10)
    else:
        assert kl is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dof", [1.0, 0.6, 2.5])
def test_sparse_loss_and_its_gradient_equal_dense(rng, dtype, dof):
    p = sparse_p(rng, 200, 25, dtype, batch=2, perplexity=8.0, dim=5)
    # An unnormalised P: the loss gradient scales the repulsion by sum(p).
    p = tf.SparseTensor(p.indices, p.values * 1.7, p.dense_shape)
    y = tf.constant((2 * rng.normal(size=(2, 200, 2))).astype(dtype))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(y)
        loss = tsne_ops.tsne_loss(p, y, dof=dof)
        loss_d = tsne_ops.tsne_loss(tf.sparse.to_dense(p), y, dof=dof)
    np.testing.assert_allclose(loss.numpy(), loss_d.numpy(), rtol=1e-4 if dtype == np.float32 else 1e-10)
    assert_grad_close(tape.gradient(loss, y).numpy(), tape.gradient(loss_d, y).numpy(), dtype)


@pytest.mark.parametrize("dof", [1.0, 0.5, 3.0])
def test_sparse_loss_against_finite_differences(rng, dof):
    p = sparse_p(rng, 40, 12, np.float64, perplexity=4.0, dim=5)
    y0 = rng.normal(size=(40, 2))
    theoretical, numerical = tf.test.compute_gradient(lambda y: tsne_ops.tsne_loss(p, y, dof=dof), [y0])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-8)


def test_stored_diagonal_and_zero_entries_are_handled_as_dense(rng):
    n = 60
    y = rng.normal(size=(n, 2))
    p = rng.random((n, n)) * (rng.random((n, n)) < 0.2)
    p = p + p.T
    p[3, 3] = 0.5  # a stored diagonal: ignored, as the dense op ignores it
    p[5, 7] = p[7, 5] = 0.0
    mask = p > 0
    mask[5, 7] = mask[7, 5] = True  # stored zeros
    i, j = np.nonzero(mask)
    sp = tf.SparseTensor(np.stack([i, j], 1).astype(np.int64), p[i, j], [n, n])
    g, kl = tsne_ops.tsne_gradient(sp, y)
    gd, kld = tsne_ops.tsne_gradient(p, y)
    assert_grad_close(g.numpy(), gd.numpy(), np.float64)
    np.testing.assert_allclose(kl.numpy(), kld.numpy(), rtol=1e-10)


def test_results_do_not_depend_on_the_thread_count(rng):
    tk = kernels_module.load_or_skip()
    x = data_with_ties(rng, 1100, 5, np.float32)
    idx, d2 = knn(x, 30)
    y = rng.normal(size=(1100, 2)).astype(np.float32)
    saved = tk.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            tk.set_num_threads(threads)
            pi, pv, shape, _ = tk.knn_joint_probabilities(idx, d2, 10.0)
            g, kl = tk.sparse_tsne_gradient(pi, pv, y, dof=0.8)
            runs.append((pi, pv, g, kl))
    finally:
        tk.set_num_threads(saved)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
import tsne_ops
from sklearn.neighbors import NearestNeighbors
rng = np.random.default_rng(5)
h = hashlib.sha256()
for dtype in (np.float32, np.float64):
    x = rng.normal(size=(1100, 5)).astype(dtype)
    x[1:12] = x[0]
    dist, idx = NearestNeighbors(n_neighbors=30).fit(x).kneighbors()
    p = tsne_ops.knn_joint_probabilities(idx.astype(np.int64), (dist ** 2).astype(dtype), 10.0)
    y = rng.normal(size=(1100, 2)).astype(dtype)
    g, kl = tsne_ops.tsne_gradient(p, y, dof=0.8)
    for t in (p.indices, p.values, g, kl):
        h.update(t.numpy().tobytes())
print(h.hexdigest())
"""


def test_ops_do_not_depend_on_tensorflows_thread_count():
    # The intra-op pool is fixed at start-up: one process per thread count.
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    digests = [
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(t)], env=env, check=True,
                       capture_output=True, text=True).stdout.split()[-1]
        for t in (1, 3)
    ]
    assert digests[0] == digests[1]


def test_pybind_module_matches_the_ops(rng):
    tk = kernels_module.load_or_skip()
    x = rng.normal(size=(150, 4))
    idx, d2 = knn(x, 20)
    pi, pv, shape, unconverged = tk.knn_joint_probabilities(idx, d2, 6.0)
    sp = tsne_ops.knn_joint_probabilities(idx, d2, 6.0)
    assert unconverged == 0 and shape == (150, 150)
    np.testing.assert_array_equal(pi, sp.indices.numpy())
    np.testing.assert_array_equal(pv, sp.values.numpy())
    y = rng.normal(size=(150, 2))
    g, kl = tk.sparse_tsne_gradient(pi, pv, y, exaggeration=2.0, dof=1.5)
    gt, klt = tsne_ops.tsne_gradient(sp, y, exaggeration=2.0, dof=1.5)
    np.testing.assert_array_equal(g, gt.numpy())
    np.testing.assert_array_equal(kl, klt.numpy())


def test_knn_op_is_not_differentiable(rng):
    idx, d2 = knn(rng.normal(size=(30, 2)), 10)
    d2 = tf.constant(d2)
    with tf.GradientTape() as tape:
        tape.watch(d2)
        sp = tsne_ops.knn_joint_probabilities(idx, d2, 3.0)
        s = tf.reduce_sum(sp.values)
    assert tape.gradient(s, d2) is None


# ------------------------------------------------------------------ errors --

ERR = tf.errors.InvalidArgumentError


@pytest.fixture
def graph(rng):
    x = rng.normal(size=(40, 3))
    return knn(x, 10)


@pytest.mark.parametrize("perplexity", [0.0, -1.0, 10.0, 11.0, float("nan"), float("inf")])
def test_perplexity_out_of_range(graph, perplexity):
    with pytest.raises(ERR, match="perplexity must be in \\(0, k\\)"):
        tsne_ops.knn_joint_probabilities(*graph, perplexity)


def test_bad_knn_indices(graph):
    idx, d2 = graph
    for bad, value, what in [(-1, "-1", "in \\[0, n\\)"), (40, "40", "in \\[0, n\\)")]:
        i2 = idx.copy()
        i2[7, 3] = bad
        with pytest.raises(ERR, match=f"indices must be {what}.*indices\\[0, 7, 3\\] = {value}"):
            tsne_ops.knn_joint_probabilities(i2, d2, 3.0)
    i2 = idx.copy()
    i2[5, 2] = 5
    with pytest.raises(ERR, match="own neighbour.*indices\\[0, 5, 2\\] = 5"):
        tsne_ops.knn_joint_probabilities(i2, d2, 3.0)
    i2 = idx.copy()
    i2[6, 4] = i2[6, 1]
    with pytest.raises(ERR, match="distinct.*indices\\[0, 6\\] lists"):
        tsne_ops.knn_joint_probabilities(i2, d2, 3.0)
    with pytest.raises(ERR, match="indices must be int64, but has dtype int32"):
        tsne_ops.knn_joint_probabilities(idx.astype(np.int32), d2, 3.0)
    with pytest.raises(ERR, match="same shape"):
        tsne_ops.knn_joint_probabilities(idx[:, :9], d2, 3.0)
    with pytest.raises(ERR, match="same shape"):
        tsne_ops.knn_joint_probabilities(idx[np.newaxis], d2, 3.0)


@pytest.mark.parametrize("value,what", [(np.nan, "finite"), (-0.5, ">= 0|non-negative|nonnegative")])
def test_bad_knn_distances(graph, value, what):
    idx, d2 = graph
    d2 = d2.copy()
    d2[4, 2] = value
    with pytest.raises(ERR, match=f"sq_distances.*({what})"):
        tsne_ops.knn_joint_probabilities(idx, d2, 3.0)


def test_bad_knn_k(rng):
    x = rng.normal(size=(5, 2))
    idx = np.array([[j for j in range(5) if j != i] for i in range(5)], np.int64)
    d2 = np.ones((5, 4))
    with pytest.raises(ERR, match="k <= n - 1 = 4.*k = 5"):
        tsne_ops.knn_joint_probabilities(np.concatenate([idx, idx[:, :1]], 1), np.ones((5, 5)), 2.0)
    del x


def test_method_other_than_exact(graph):
    p = tsne_ops.knn_joint_probabilities(*graph, 3.0)
    y = np.zeros((40, 2))
    # 'fft' is registered now (tests/test_ops_fft_repulsion.py); unknown names still fail.
    for fn in (lambda: tsne_ops.tsne_gradient(p, y, method="no_such"), lambda: tsne_ops.tsne_loss(p, y, method="no_such")):
        with pytest.raises(ERR, match="method must be one of \\('exact', 'fft'.*\\), but is 'no_such'"):
            fn()


def _sp(idx, vals, shape):
    return tf.SparseTensor(np.asarray(idx, np.int64), np.asarray(vals, np.float64), shape)


def test_sparse_p_not_square_or_mismatched(rng):
    y = rng.normal(size=(4, 2))
    with pytest.raises(ERR, match="p must be square"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [1, 0]], [0.5, 0.5], [4, 5]), y)
    with pytest.raises(ERR, match="p must have dense shape \\[batch, n, n\\] = \\[1, 4, 4\\]"):
        tsne_ops.tsne_loss(_sp([[0, 1], [1, 0]], [0.5, 0.5], [5, 5]), y)
    with pytest.raises(ERR, match="same rank"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [1, 0]], [0.5, 0.5], [4, 4]), y[np.newaxis])


def test_sparse_p_not_canonical(rng):
    y = rng.normal(size=(4, 2))
    with pytest.raises(ERR, match="canonical row-major order.*entry 1 \\[0, 1\\] comes after entry 0"):
        tsne_ops.tsne_gradient(_sp([[1, 0], [0, 1]], [0.5, 0.5], [4, 4]), y)
    with pytest.raises(ERR, match="canonical row-major order.*entry 1 \\[0, 1\\] repeats entry 0"):
        tsne_ops.tsne_loss(_sp([[0, 1], [0, 1]], [0.5, 0.5], [4, 4]), y)
    with pytest.raises(ERR, match="inside the dense shape \\[4, 4\\].*entry 1 is \\[2, 4\\]"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [2, 4]], [0.5, 0.5], [4, 4]), y)


def test_sparse_p_not_canonical_deep_in_a_long_list(rng):
    """The index check runs over ranges of entries in parallel: the message
    still names the first bad entry, wherever the shards fall, and a good
    list gives the same gradient whatever the thread count."""
    n, k = 3000, 40
    rows = np.repeat(np.arange(n), k)
    cols = (rows + 1 + np.tile(np.arange(k), n)) % n
    idx = np.stack([rows, cols], 1)
    idx = idx[np.lexsort((idx[:, 1], idx[:, 0]))]
    vals = np.full(len(idx), 1.0 / len(idx))
    y = rng.normal(size=(n, 2))
    ok = tf.SparseTensor(idx, vals, [n, n])
    g, _ = tsne_ops.tsne_gradient(ok, y, method="fft")
    assert np.all(np.isfinite(g.numpy()))
    for e in (len(idx) // 3, len(idx) - 1):
        bad = idx.copy()
        bad[e] = bad[e - 1]
        with pytest.raises(ERR, match=f"canonical row-major order.*entry {e} .* repeats entry {e - 1}"):
            tsne_ops.tsne_gradient(tf.SparseTensor(bad, vals, [n, n]), y, method="fft")
        bad = idx.copy()
        bad[e, 1] = n + 5
        bad[-1, 1] = n + 7  # a later bad entry too: the first one is named
        if e == len(idx) - 1:
            bad[e, 1] = n + 5
        with pytest.raises(ERR, match=f"inside the dense shape.*entry {e} is \\[{bad[e, 0]}, {n + 5}\\]"):
            tsne_ops.tsne_gradient(tf.SparseTensor(bad, vals, [n, n]), y, method="fft")


def test_sparse_p_nan_values_or_y(rng):
    y = rng.normal(size=(4, 2))
    with pytest.raises(ERR, match="p values must be finite.*nan"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [1, 0]], [np.nan, 0.5], [4, 4]), y)
    with pytest.raises(ERR, match="p values.*-0.5"):
        tsne_ops.tsne_loss(_sp([[0, 1], [1, 0]], [-0.5, 0.5], [4, 4]), y)
    y[2, 1] = np.nan
    with pytest.raises(ERR, match="y must be finite.*y\\[0, 2, 1\\] = nan"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [1, 0]], [0.5, 0.5], [4, 4]), y)


def test_sparse_p_dtype_mismatch(rng):
    y = rng.normal(size=(4, 2)).astype(np.float32)
    with pytest.raises(ERR, match="y must have the same dtype"):
        tsne_ops.tsne_gradient(_sp([[0, 1], [1, 0]], [0.5, 0.5], [4, 4]), y)


def test_graph_mode_shapes_and_gradient(rng):
    x = rng.normal(size=(80, 3))
    idx, d2 = knn(x, 10)
    y = tf.Variable(rng.normal(size=(80, 2)))

    @tf.function
    def run(idx, d2):
        p = tsne_ops.knn_joint_probabilities(idx, d2, 3.0)
        with tf.GradientTape() as tape:
            loss = tsne_ops.tsne_loss(p, y)
        g, kl = tsne_ops.tsne_gradient(p, y)
        assert p.shape.rank == 2 and g.shape == (80, 2) and kl.shape == () and loss.shape == ()
        return loss, tape.gradient(loss, y), kl

    loss, g, kl = run(idx, d2)
    eager = tsne_ops.knn_joint_probabilities(idx, d2, 3.0)
    np.testing.assert_allclose(loss.numpy(), kl.numpy(), rtol=1e-12)
    np.testing.assert_allclose(loss.numpy(), tsne_ops.tsne_loss(eager, y).numpy(), rtol=1e-12)
    assert np.all(np.isfinite(g.numpy()))


def test_pybind_bad_input_is_a_value_error(graph):
    tk = kernels_module.load_or_skip()
    idx, d2 = graph
    bad = idx.copy()
    bad[3, 1] = 3
    cases = [
        (lambda: tk.knn_joint_probabilities(idx, d2, 10.0), "perplexity must be in \\(0, k\\)"),
        (lambda: tk.knn_joint_probabilities(bad, d2, 3.0), "own neighbour.*indices\\[0, 3, 1\\] = 3"),
        (lambda: tk.knn_joint_probabilities(idx.astype(np.int32), d2, 3.0), "indices must be int64"),
        (lambda: tk.knn_joint_probabilities(idx, d2[:, :5], 3.0), "same shape"),
        (lambda: tk.knn_joint_probabilities(idx, -d2, 3.0), "sq_distances"),
        (lambda: tk.sparse_tsne_gradient(np.array([[1, 0], [0, 1]]), np.ones(2), np.zeros((4, 2))),
         "canonical row-major order"),
        (lambda: tk.sparse_tsne_gradient(np.array([[0, 1], [1, 0]]), np.ones(2), np.full((4, 2), np.nan)),
         "y must be finite"),
        (lambda: tk.sparse_tsne_gradient(np.array([[0, 1], [1, 5]]), np.ones(2), np.zeros((4, 2))),
         "inside the dense shape"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
