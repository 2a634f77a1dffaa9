"""P's CSR view (``SparseCsr``, ``ops._sparse_csr``) and the attraction op on
it (``CsrTsneGradientFromRepulsion``), which the fit calls once per iteration
with the same P.

References: the COO op ``SparseTsneGradientFromRepulsion`` on the same P (the
same kernel: the results must be bit-identical), scipy's CSR of P's indices,
and a ``TSNE(method='fft')`` fit through the COO path (``ops._sparse_csr``
replaced by the identity, so GradientDescent passes the tf.SparseTensor as
before).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from scipy.sparse import csr_matrix
from sklearn.datasets import make_blobs

import tsne_ops
from helpers import sparse_p
from tsne_ops import ops

DTYPES = [np.float32, np.float64]
BAD = tf.errors.InvalidArgumentError


def inputs(rng, n, d, dtype, batch=None, k=12):
    """(p, y, repulsion, z): a kNN P, an embedding, and any finite R and Z > 0
    (the op combines them; it does not compute them)."""
    p = sparse_p(rng, n, k, dtype, batch)
    shape = ((batch,) if batch else ()) + (n, d)
    y = (2.0 * rng.normal(size=shape)).astype(dtype)
    b = batch or 1
    rep = rng.normal(size=(b, n, d)).astype(dtype)
    z = (n * n * (0.5 + rng.random(b))).astype(dtype)
    return p, y, rep, z


def coo_op(p, y, rep, z, ex=1.0, dof=1.0, **attrs):
    pb, yb, _ = ops._sparse_p_and_y(p, y)
    dt = pb.values.dtype
    return ops._ops.tsne_sparse_tsne_gradient_from_repulsion(
        pb.indices, pb.values, pb.dense_shape, yb, rep, z, tf.constant(ex, dt),
        tf.constant(dof, dt), **attrs)


def csr_op(row_ptr, cols, values, y, rep, z, ex=1.0, dof=1.0, **attrs):
    y = tf.convert_to_tensor(y)
    y = y if y.shape.rank == 3 else y[None]
    return ops._ops.tsne_csr_tsne_gradient_from_repulsion(
        row_ptr, cols, values, y, rep, z, tf.constant(ex, y.dtype), tf.constant(dof, y.dtype),
        **attrs)


def csr_arrays(p):
    c = ops._sparse_csr(p)
    return c.row_ptr.numpy(), c.cols.numpy(), c.values.numpy()


# ------------------------------------------------------------- SparseCsr --

@pytest.mark.parametrize("batch", [None, 3])
def test_sparse_csr_is_scipys_csr_of_p(rng, batch):
    n = 90
    p = sparse_p(rng, n, 7, np.float64, batch)
    c = ops._sparse_csr(p)
    assert c.batched == (batch is not None)
    assert c.dense_shape.numpy().tolist() == ([batch, n, n] if batch else [n, n])  # p's own
    idx = p.indices.numpy()
    rows = idx[:, 0] * n + idx[:, 1] if batch else idx[:, 0]
    ref = csr_matrix((p.values.numpy(), (rows, idx[:, -1])), shape=((batch or 1) * n, n))
    np.testing.assert_array_equal(c.row_ptr.numpy(), ref.indptr)
    np.testing.assert_array_equal(c.cols.numpy(), ref.indices)
    np.testing.assert_array_equal(c.values.numpy(), ref.data)


def test_sparse_csr_checks_p_as_the_coo_ops_do(rng):
    p = sparse_p(rng, 40, 5, np.float64)
    idx = p.indices.numpy().copy()
    idx[[7, 8]] = idx[[8, 7]]
    swapped = tf.SparseTensor(idx, p.values, p.dense_shape)
    y = rng.normal(size=(40, 2))
    for call in (lambda: ops._sparse_csr(swapped),
                 lambda: tsne_ops.tsne_gradient(swapped, y, method="fft")):
        with pytest.raises(BAD, match=r"p must be in canonical row-major order.*entry 8 "
                                      r".* comes after entry 7"):
            call()
    idx[7, 1] = 40
    # A rank-2 p is read as it is: the message quotes its own shape and entry.
    with pytest.raises(BAD, match=r"p indices must lie inside the dense shape \[40, 40\], "
                                  r"but entry 7 is \[\d+, 40\]"):
        ops._sparse_csr(tf.SparseTensor(idx, p.values, p.dense_shape))
    ops_ = ops._ops
    with pytest.raises(BAD, match=r"p must be square"):
        ops_.tsne_sparse_csr(np.zeros((0, 3), np.int64), np.array([1, 4, 5], np.int64))
    with pytest.raises(BAD, match=r"p dense_shape must be >= 0 .* but is \[-1, 4, 4\]"):
        ops_.tsne_sparse_csr(np.zeros((0, 3), np.int64), np.array([-1, 4, 4], np.int64))
    with pytest.raises(BAD, match=r"p dense_shape must be >= 0 with batch n n < 2\^63"):
        ops_.tsne_sparse_csr(np.zeros((0, 3), np.int64), np.array([4, 2**32, 2**32], np.int64))
    with pytest.raises(BAD, match=r"p dense_shape must be \[2\] \(\[n, n\]\) to match p indices "
                                  r"\[nnz, 2\], but has shape \[3\]"):
        ops_.tsne_sparse_csr(np.zeros((5, 2), np.int64), np.array([1, 4, 4], np.int64))
    with pytest.raises(BAD, match=r"p indices must be \[nnz, 3\] \(batch, row, column\) or "
                                  r"\[nnz, 2\] \(row, column\), but have shape \[5,4\]"):
        ops_.tsne_sparse_csr(np.zeros((5, 4), np.int64), np.array([1, 4, 4], np.int64))
    with pytest.raises(BAD, match=r"p must be a tf.SparseTensor"):
        ops._sparse_csr(np.eye(3))


# ------------------------------------------------ the op against the COO op --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("compute_kl", [True, False])
@pytest.mark.parametrize("scale", [False, True])
def test_csr_op_equals_coo_op_bit_for_bit(rng, dtype, batch, compute_kl, scale):
    n, d = 257, 2 if batch else 3
    p, y, rep, z = inputs(rng, n, d, dtype, batch)
    attrs = dict(compute_kl=compute_kl, scale_repulsion_by_p_sum=scale)
    g0, kl0 = coo_op(p, y, rep, z, 4.0, 0.7, **attrs)
    g1, kl1 = csr_op(*csr_arrays(p), y, rep, z, 4.0, 0.7, **attrs)
    assert g1.dtype == dtype and np.all(np.isfinite(g1.numpy()))
    np.testing.assert_array_equal(g1.numpy(), g0.numpy())
    np.testing.assert_array_equal(kl1.numpy(), kl0.numpy())
    assert kl1.shape == ((batch or 1,) if compute_kl else (0,))


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_tsne_gradient_and_loss_take_the_csr_view(rng, method):
    p, y, _, _ = inputs(rng, 300, 2, np.float32)
    c = ops._sparse_csr(p)
    g0, kl0 = tsne_ops.tsne_gradient(p, y, exaggeration=12.0, method=method)
    g1, kl1 = tsne_ops.tsne_gradient(c, y, exaggeration=12.0, method=method)
    np.testing.assert_array_equal(g1.numpy(), g0.numpy())
    assert kl1.shape == () and kl1.numpy() == kl0.numpy()
    yt = tf.constant(y)
    grads = []
    for pp in (p, c):
        with tf.GradientTape() as tape:
            tape.watch(yt)
            loss = tsne_ops.tsne_loss(pp, yt, method=method)
        grads.append((loss.numpy(), tape.gradient(loss, yt).numpy()))
    assert grads[0][0] == grads[1][0]
    np.testing.assert_array_equal(grads[0][1], grads[1][1])
    with pytest.raises(BAD, match="p and y must have the same rank"):
        tsne_ops.tsne_gradient(c, y[None], method=method)
    with pytest.raises(BAD, match="serves the approximate methods only"):
        tsne_ops.tsne_gradient(c, y)


def test_csr_op_in_graph_mode(rng):
    p, y, rep, z = inputs(rng, 120, 2, np.float64, batch=2)
    c = ops._sparse_csr(p)

    @tf.function
    def f(rp, cols, y_):
        g, kl = ops._ops.tsne_csr_tsne_gradient_from_repulsion(
            rp, cols, c.values, y_, rep, z, tf.constant(1.0, tf.float64),
            tf.constant(1.0, tf.float64))
        return g, kl

    spec = tf.TensorSpec([None], tf.int64)
    conc = f.get_concrete_function(spec, spec, tf.TensorSpec([None, None, 2], tf.float64))
    # The shape function merges y with repulsion's (known) shape.
    assert conc.output_shapes[0].as_list() == [2, 120, 2]
    assert conc.output_shapes[1].as_list() == [2]
    g, kl = f(c.row_ptr, c.cols, y)
    g0, kl0 = coo_op(p, y, rep, z)
    np.testing.assert_array_equal(g.numpy(), g0.numpy())
    with pytest.raises(LookupError, match="not differentiable"):
        yt = tf.constant(y)
        with tf.GradientTape() as tape:
            tape.watch(yt)
            g, _ = csr_op(c.row_ptr, c.cols, c.values, yt, rep, z)
        tape.gradient(g, yt)


def test_empty_p(rng):
    n = 30
    for dtype in DTYPES:
        p = tf.SparseTensor(np.zeros((0, 2), np.int64), np.zeros(0, dtype), [n, n])
        row_ptr, cols, values = csr_arrays(p)
        np.testing.assert_array_equal(row_ptr, np.zeros(n + 1, np.int64))
        assert cols.shape == (0,) and values.shape == (0,)
        y = rng.normal(size=(n, 2)).astype(dtype)
        rep = rng.normal(size=(1, n, 2)).astype(dtype)
        z = np.array([50.0], dtype)
        g0, kl0 = coo_op(p, y, rep, z)
        g1, kl1 = csr_op(row_ptr, cols, values, y, rep, z)
        np.testing.assert_array_equal(g1.numpy(), g0.numpy())
        np.testing.assert_array_equal(kl1.numpy(), kl0.numpy())
        # No attraction: grad = -4 R / Z (dof 1).
        np.testing.assert_allclose(g1.numpy(), -4.0 * rep / z[0], rtol=1e-6)


# ------------------------------------------------------------- bad CSRs --

@pytest.fixture
def good(rng):
    """A valid CSR (batch 2, n = 40) with its y, R and Z, as numpy arrays."""
    p, y, rep, z = inputs(rng, 40, 2, np.float64, batch=2, k=5)
    return (*csr_arrays(p), y, rep, z)


def changed(arr, *pairs):
    """A copy of `arr` with arr[pos] = value for each (pos, value)."""
    out = arr.copy()
    for pos, value in pairs:
        out[pos] = value
    return out


def test_bad_row_ptr_names_it_and_the_value(good):
    rp, cols, vals, y, rep, z = good
    nnz = cols.size
    with pytest.raises(BAD, match=r"row_ptr must be \[batch \* n \+ 1\] = \[81\] for y of shape "
                                  r"\[2,40,2\], but has shape \[80\]"):
        csr_op(rp[:-1], cols, vals, y, rep, z)
    with pytest.raises(BAD, match=r"row_ptr\[0\] must be 0, but is 1(?!\d)"):
        csr_op(changed(rp, (0, 1)), cols, vals, y, rep, z)
    v9 = rp[9]
    with pytest.raises(BAD, match=rf"row_ptr must be non-decreasing, but row_ptr\[10\] = {v9 - 1} "
                                  rf"< row_ptr\[9\] = {v9}(?!\d)"):
        csr_op(changed(rp, (10, v9 - 1)), cols, vals, y, rep, z)
    # A wild offset mid-list: caught where the list decreases after it.
    with pytest.raises(BAD, match=rf"row_ptr must be non-decreasing, but row_ptr\[51\] = "
                                  rf"{rp[51]} < row_ptr\[50\] = {2**62}(?!\d)"):
        csr_op(changed(rp, (50, 2**62)), cols, vals, y, rep, z)
    for last in (nnz - 1, nnz + 3):
        with pytest.raises(BAD, match=rf"row_ptr's last entry row_ptr\[80\] must equal nnz = "
                                      rf"{nnz} \(the size of cols and p_values\), "
                                      rf"but is {last}(?!\d)"):
            csr_op(changed(rp, (80, last)), cols, vals, y, rep, z)


def test_bad_cols_name_them_and_the_value(good):
    rp, cols, vals, y, rep, z = good
    nnz = cols.size
    mid = nnz // 2
    for pairs, e, value in [([(0, -1)], 0, -1), ([(5, 40)], 5, 40),
                            ([(mid, 10**12), (mid + 9, -3)], mid, 10**12),
                            ([(nnz - 1, 41)], nnz - 1, 41)]:
        with pytest.raises(BAD, match=rf"cols must be in \[0, n\) = \[0, 40\), but cols\[{e}\] = "
                                      rf"{value}(?!\d)"):
            csr_op(rp, changed(cols, *pairs), vals, y, rep, z)
    with pytest.raises(BAD, match=r"cols must be \[nnz\], but has shape"):
        csr_op(rp, cols[None], vals, y, rep, z)
    with pytest.raises(BAD, match=rf"p_values must be \[nnz\] = \[{nnz}\] to match cols, but has "
                                  rf"shape \[{nnz - 1}\]"):
        csr_op(rp, cols, vals[:-1], y, rep, z)
    # row_ptr is checked first; then the shared checks of the COO op.
    with pytest.raises(BAD, match=r"row_ptr\[0\] must be 0"):
        csr_op(changed(rp, (0, 1)), changed(cols, (0, -1)), vals, y, rep, z)
    # p's values are checked by the kernel as it reads them (entry order):
    # the first bad one is named, whichever row it is in, and a bad column
    # before it is named first.
    for pairs, e, shown in [([(3, -1.0)], 3, "-1"), ([(mid, np.nan), (mid + 7, -2.0)], mid, "nan"),
                            ([(nnz - 1, np.inf)], nnz - 1, "inf")]:
        with pytest.raises(BAD, match=rf"p values must be finite and non-negative, "
                                      rf"but p values\[{e}\] = {shown}"):
            csr_op(rp, cols, changed(vals, *pairs), y, rep, z)
    with pytest.raises(BAD, match=rf"cols\[{mid - 5}\] = 99"):
        csr_op(rp, changed(cols, (mid - 5, 99)), changed(vals, (mid, np.nan)), y, rep, z)
    with pytest.raises(BAD, match=r"repulsion must have the shape of y"):
        csr_op(rp, cols, vals, y, rep[:, :, :1], z)
    with pytest.raises(BAD, match=r"z must be finite and > 0, but z\[1\] = 0"):
        csr_op(rp, cols, vals, y, rep, np.array([1.0, 0.0]))
    with pytest.raises(BAD, match=r"y needs at least 2 points"):
        csr_op(rp[:3], cols[:0], vals[:0], y[:, :1], rep[:, :1], z)


# ------------------------------------------------------------ determinism --

_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
import tsne_ops
from tsne_ops import ops
rng = np.random.default_rng(3)
n, k = 4000, 20
idx = np.stack([rng.choice(n - 1, k, replace=False) for _ in range(n)]).astype(np.int64)
idx += idx >= np.arange(n)[:, None]
p = tsne_ops.knn_joint_probabilities(idx, rng.random((n, k)), 8.0)
c = ops._sparse_csr(p)
y = rng.normal(size=(1, n, 2))
rep, z = rng.normal(size=(1, n, 2)), np.array([1e6])
one = tf.constant(1.0, tf.float64)
g, kl = ops._ops.tsne_csr_tsne_gradient_from_repulsion(c.row_ptr, c.cols, c.values, y, rep, z,
                                                        one, one)
h = hashlib.sha256()
for t in (c.row_ptr, c.cols, g, kl):
    h.update(t.numpy().tobytes())
cols = c.cols.numpy().copy()
nnz = cols.size
cols[3 * nnz // 4] = -7
cols[nnz // 4 + 1] = n + 5
try:
    ops._ops.tsne_csr_tsne_gradient_from_repulsion(c.row_ptr, cols, c.values, y, rep, z, one, one)
except tf.errors.InvalidArgumentError as e:
    print(e.message)
print(f"cols must be in [0, n) = [0, {n}), but cols[{nnz // 4 + 1}] = {n + 5}")
print(h.hexdigest())
"""


def test_results_and_messages_do_not_depend_on_the_thread_count():
    # TensorFlow fixes its intra-op pool at start-up: one process per count.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    outs = [subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(t)], env=env, check=True,
                           capture_output=True, text=True).stdout.split("\n")[-4:-1]
            for t in (1, 3)]
    assert outs[0] == outs[1]
    message, expected, _ = outs[0]
    assert expected in message  # the first bad column, whatever the sharding


# ------------------------------------------------------------------ the fit --

def test_fft_fit_gives_the_bits_of_the_coo_path(monkeypatch):
    x, _ = make_blobs(2000, 10, centers=5, random_state=0)
    x = x.astype(np.float32)
    fit = lambda: tsne_ops.TSNE(method="fft", max_iter=270, random_state=0).fit(x)  # noqa: E731
    built = []
    real = ops._sparse_csr

    def counting(p, method=None):
        built.append(real(p, method))
        return built[-1]

    monkeypatch.setattr(ops, "_sparse_csr", counting)
    csr = fit()
    assert len(built) == 1 and isinstance(built[0], ops._SparseCsr)  # once per fit
    assert built[0].cache[0] == "fft"  # with the kernels' cache of its method
    # The COO path: GradientDescent hands the tf.SparseTensor to tsne_gradient
    # (no cache either).
    monkeypatch.setattr(ops, "_sparse_csr", lambda p, method=None: p)
    coo = fit()
    assert np.all(np.isfinite(csr.embedding_))
    np.testing.assert_array_equal(csr.embedding_, coo.embedding_)
    assert csr.kl_divergence_ == coo.kl_divergence_ and csr.n_iter_ == coo.n_iter_
