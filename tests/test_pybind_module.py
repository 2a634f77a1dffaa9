"""CPU path of the pybind11 module ``_tsne_kernels`` against independent numpy
references (written from the definitions in cc/compute/*.h, not from the
kernels). Imports the module without TensorFlow."""
import os
import subprocess
import sys

import numpy as np
import pytest

import hostile_data
import kernels_module

tk = kernels_module.load_or_skip()

DTYPES = [np.float32, np.float64]
EPS = 2.220446049250313e-16


def rtol_for(dtype):
    return 2e-5 if dtype == np.float32 else 1e-10


# ------------------------------------------------------------ references ---

def ref_sqdist(x, y=None):
    x = x.astype(np.float64)
    y = x if y is None else y.astype(np.float64)
    return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def ref_sqdist_grad(g, x, y=None):
    g, x = g.astype(np.float64), x.astype(np.float64)
    if y is None:
        s = g + np.swapaxes(g, -1, -2)
        gx = 2 * (s.sum(-1)[..., None] * x - s @ x)
        return gx, None
    y = y.astype(np.float64)
    gx = 2 * (g.sum(-1)[..., None] * x - g @ y)
    gy = 2 * (g.sum(-2)[..., None] * y - np.swapaxes(g, -1, -2) @ x)
    return gx, gy


def ref_conditional_row(d_row, i, perplexity, tol=1e-13):
    """Bisection on beta (in log space) to a tight entropy tolerance."""
    mask = np.arange(d_row.size) != i
    dd = d_row[mask].astype(np.float64)
    dd = dd - dd.min()
    target = np.log(perplexity)

    def probs(beta):
        e = np.exp(-beta * dd)
        return e / e.sum()

    def entropy(beta):
        p = probs(beta)
        nz = p[p > 0]
        return -(nz * np.log(nz)).sum()

    lo, hi = -60.0, 60.0  # log(beta)
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        if entropy(np.exp(mid)) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    out = np.zeros(d_row.size)
    out[mask] = probs(np.exp(0.5 * (lo + hi)))
    return out


def ref_symmetrize(pc):
    pc = pc.astype(np.float64)
    n = pc.shape[-1]
    eye = np.eye(n, dtype=bool)
    pc = np.where(eye, 0.0, pc)
    s = pc + np.swapaxes(pc, -1, -2)
    total = s.sum(axis=(-1, -2), keepdims=True)
    p = np.maximum(s / total, EPS)
    return np.where(eye, 0.0, p)


def ref_tsne(p, y, exaggeration=1.0, dof=1.0, scale_by_p_sum=False):
    """Dense float64 reference for one batch element: (grad, kl)."""
    p = p.astype(np.float64).copy()
    y = y.astype(np.float64)
    n = y.shape[0]
    eye = np.eye(n, dtype=bool)
    p[eye] = 0
    d2 = ref_sqdist(y)
    u = 1.0 / (1.0 + d2 / dof)
    w = u ** ((dof + 1) / 2)
    w[eye] = 0
    z = w.sum()
    q = w / z
    s = p.sum() if scale_by_p_sum else 1.0
    coef = (exaggeration * p - s * q) * u
    grad = (2 * (dof + 1) / dof) * (coef.sum(1)[:, None] * y - coef @ y)
    m = p > 0
    kl = (p[m] * np.log(p[m] / q[m])).sum()
    return grad, kl


assert_close = kernels_module.assert_close


# ------------------------------------------------------------------ tests ---

def test_imports_without_tensorflow():
    code = (
        "import sys; sys.path.insert(0, {tests!r}); import kernels_module; "
        "m = kernels_module.load(); assert m is not None; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; print(m.cpu_isa())"
    ).format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("avx2", "baseline")


def test_info_functions():
    assert isinstance(tk.has_cuda(), bool)
    assert isinstance(tk.built_with_cuda(), bool)
    assert tk.cuda_device_count() >= 0
    if not tk.built_with_cuda():
        assert not tk.has_cuda()
    assert tk.cpu_isa() in ("avx2", "baseline")
    old = tk.get_num_threads()
    tk.set_num_threads(1)
    assert tk.get_num_threads() == 1
    tk.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [1, 3, 40])
def test_distance_self(rng, dtype, dim):
    x = rng.normal(size=(37, dim)).astype(dtype)
    d = tk.pairwise_squared_distance(x)
    assert d.shape == (37, 37) and d.dtype == dtype
    assert_close(d, ref_sqdist(x), 10 * rtol_for(dtype), "self distances")
    assert np.array_equal(d, d.T), "self-distances must be exactly symmetric"
    assert np.all(np.diag(d) == 0)
    assert np.all(d >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_distance_cross_batched(rng, dtype):
    x = rng.normal(size=(3, 11, 5)).astype(dtype)
    y = rng.normal(size=(3, 7, 5)).astype(dtype)
    d = tk.pairwise_squared_distance(x, y)
    assert d.shape == (3, 11, 7)
    assert_close(d, ref_sqdist(x, y), 10 * rtol_for(dtype), "cross distances")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cross", [False, True])
def test_distance_grad(rng, dtype, cross):
    x = rng.normal(size=(2, 13, 4)).astype(dtype)
    y = rng.normal(size=(2, 9, 4)).astype(dtype) if cross else None
    m = 9 if cross else 13
    g = rng.normal(size=(2, 13, m)).astype(dtype)
    gx, gy = tk.pairwise_squared_distance_grad(g, x, y)
    rx, ry = ref_sqdist_grad(g, x, y)
    assert_close(gx, rx, 10 * rtol_for(dtype), "grad_x")
    if cross:
        assert_close(gy, ry, 10 * rtol_for(dtype), "grad_y")
    else:
        assert gy is None


def test_distance_grad_matches_finite_differences(rng):
    x = rng.normal(size=(6, 3))
    g = rng.normal(size=(6, 6))
    gx, _ = tk.pairwise_squared_distance_grad(g, x)
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = ((tk.pairwise_squared_distance(xp) - tk.pairwise_squared_distance(xm)) * g).sum() / (2 * h)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_perplexity_affinities(rng, dtype):
    x = rng.normal(size=(2, 40, 5))
    d = ref_sqdist(x).astype(dtype)
    perp = 8.0
    # float32 rows are evaluated with a float exp: 1e-10 nats is below what
    # float32 resolves, so float32 is held to the default 1e-5 tolerance.
    tol = 1e-10 if dtype == np.float64 else 1e-5
    pc, beta, unconverged = tk.perplexity_affinities(d, perp, tolerance=tol)
    assert pc.shape == (2, 40, 40) and beta.shape == (2, 40) and pc.dtype == dtype
    assert unconverged == 0
    assert np.all(np.diagonal(pc, axis1=1, axis2=2) == 0)
    np.testing.assert_allclose(pc.sum(-1), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-12)
    ent = -(np.where(pc > 0, pc * np.log(np.where(pc > 0, pc, 1)), 0)).sum(-1)
    np.testing.assert_allclose(ent, np.log(perp), atol=1e-5 if dtype == np.float32 else 1e-9)
    for b in range(2):
        for i in range(0, 40, 7):
            ref = ref_conditional_row(d[b, i], i, perp)
            assert_close(pc[b, i], ref, 1e-5 if dtype == np.float32 else 1e-7, f"row {b},{i}")


def test_perplexity_default_tolerance(rng):
    d = ref_sqdist(rng.normal(size=(60, 3)))
    pc, _, unconverged = tk.perplexity_affinities(d, 15.0)
    assert unconverged == 0
    ent = -(np.where(pc > 0, pc * np.log(np.where(pc > 0, pc, 1)), 0)).sum(-1)
    assert np.abs(ent - np.log(15.0)).max() <= 1e-5 + 1e-12


def test_perplexity_unconverged_count(rng):
    d = ref_sqdist(rng.normal(size=(30, 3)))
    _, _, unconverged = tk.perplexity_affinities(d, 5.0, tolerance=1e-12, max_iter=1)
    assert unconverged > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_tied_rows_are_counted_and_finite(rng, dtype):
    # Issue 17, defect 1: rows with more than `perplexity` points at their
    # smallest distance are counted as unconverged (float32 used to end on a
    # NaN entropy, counted as converged) and written as their limit.
    x = np.concatenate([hostile_data.duplicates(rng, 3, 8), rng.normal(size=(20, 5))])
    d = ref_sqdist(x).astype(dtype)
    tied, limit = hostile_data.tied_rows(d, 5.0)
    pc, beta, unconverged = tk.perplexity_affinities(d, 5.0)
    assert np.all(np.isfinite(pc)) and np.all(np.isfinite(beta))
    # The 24 duplicated rows, and any other point whose nearest neighbours
    # are one group of 8 copies.
    assert tied.sum() >= 24 and unconverged == tied.sum()
    np.testing.assert_allclose(pc[tied], limit[tied], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_symmetrize(rng, dtype):
    pc = rng.random(size=(2, 17, 17)).astype(dtype)
    pc[:, np.arange(17), np.arange(17)] = 0
    pc /= pc.sum(-1, keepdims=True)
    pc[0, 3, 5] = 0
    pc[0, 5, 3] = 0  # -> the eps floor
    p = tk.symmetrize_affinities(pc)
    assert p.dtype == dtype
    assert_close(p, ref_symmetrize(pc), rtol_for(dtype), "symmetrize")
    assert np.array_equal(p, np.swapaxes(p, 1, 2)), "P must be exactly symmetric"
    assert p[0, 3, 5] == dtype(EPS)
    assert np.all(np.diagonal(p, axis1=1, axis2=2) == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_joint_probabilities(rng, dtype):
    d = ref_sqdist(rng.normal(size=(25, 4))).astype(dtype)
    p = tk.joint_probabilities(d, 6.0)
    pc, _, _ = tk.perplexity_affinities(d, 6.0)
    np.testing.assert_array_equal(p, tk.symmetrize_affinities(pc))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("opts", [
    dict(),
    dict(exaggeration=12.0),
    dict(dof=0.7),
    dict(dof=3.0, exaggeration=2.0, scale_repulsion_by_p_sum=True),
])
def test_tsne_gradient(rng, dtype, d, opts):
    n = 23
    p = ref_symmetrize(rng.random(size=(2, n, n))).astype(dtype)
    y = rng.normal(size=(2, n, d)).astype(dtype)
    grad, kl = tk.tsne_gradient(p, y, **opts)
    assert grad.shape == (2, n, d) and kl.shape == (2,)
    for b in range(2):
        rg, rkl = ref_tsne(p[b], y[b], opts.get("exaggeration", 1.0), opts.get("dof", 1.0),
                           opts.get("scale_repulsion_by_p_sum", False))
        assert_close(grad[b], rg, 10 * rtol_for(dtype), "grad")
        np.testing.assert_allclose(kl[b], rkl, rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_tsne_gradient_rank2_and_no_kl(rng):
    n = 10
    p = ref_symmetrize(rng.random(size=(n, n)))
    y = rng.normal(size=(n, 2))
    grad, kl = tk.tsne_gradient(p, y)
    assert grad.shape == (n, 2) and np.ndim(kl) == 0
    grad2, kl2 = tk.tsne_gradient(p, y, compute_kl=False)
    assert kl2 is None
    # Separate code paths (the KL terms compiled in or out): equal to rounding.
    np.testing.assert_allclose(grad, grad2, rtol=1e-12, atol=1e-15)


def test_tsne_gradient_is_gradient_of_kl(rng):
    """With scale_repulsion_by_p_sum the gradient is exactly d KL / d y."""
    n = 9
    p = rng.random(size=(n, n))
    p = p + p.T
    np.fill_diagonal(p, 0)
    p *= 0.7 / p.sum()  # deliberately not summing to 1
    y = rng.normal(size=(n, 2))
    for dof in (1.0, 2.5):
        grad, _ = tk.tsne_gradient(p, y, dof=dof, scale_repulsion_by_p_sum=True)
        h = 1e-6
        num = np.zeros_like(y)
        for idx in np.ndindex(*y.shape):
            yp, ym = y.copy(), y.copy()
            yp[idx] += h
            ym[idx] -= h
            num[idx] = (tk.tsne_gradient(p, yp, dof=dof)[1] - tk.tsne_gradient(p, ym, dof=dof)[1]) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


def test_results_do_not_depend_on_thread_count(rng):
    n = 300
    p = ref_symmetrize(rng.random(size=(n, n)))
    y = rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 20))
    old = tk.get_num_threads()
    try:
        out = []
        for t in (1, 2, 3):
            tk.set_num_threads(t)
            out.append((tk.tsne_gradient(p, y), tk.pairwise_squared_distance(x),
                        tk.joint_probabilities(tk.pairwise_squared_distance(x), 30.0)))
        for o in out[1:]:
            np.testing.assert_array_equal(o[0][0], out[0][0][0])
            np.testing.assert_array_equal(o[0][1], out[0][0][1])
            np.testing.assert_array_equal(o[1], out[0][1])
            np.testing.assert_array_equal(o[2], out[0][2])
    finally:
        tk.set_num_threads(old)


def test_non_contiguous_input(rng):
    x = rng.normal(size=(10, 6))[:, ::2]
    np.testing.assert_allclose(tk.pairwise_squared_distance(x), ref_sqdist(x), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------- validation ---

@pytest.mark.parametrize("call, match", [
    (lambda: tk.pairwise_squared_distance(np.ones((3, 2), np.int32)), r"x must be float32 or float64.*int32"),
    (lambda: tk.pairwise_squared_distance(np.ones(3)), r"x must be rank 2 \[n, dim\] or rank 3 \[batch, n, dim\], but has shape \[3\]"),
    (lambda: tk.pairwise_squared_distance([[1.0, 2.0]]), r"x must be a numpy array"),
    (lambda: tk.pairwise_squared_distance(np.ones((3, 2)), np.ones((3, 3))), r"x and y must have the same batch size and dim, but x has shape \[3,2\] and y has shape \[3,3\]"),
    (lambda: tk.pairwise_squared_distance(np.ones((3, 2)), np.ones((3, 2), np.float32)), r"y must have the same dtype as x \(float64\), but has dtype float32"),
    (lambda: tk.pairwise_squared_distance(np.ones((2, 3, 2)), np.ones((3, 3, 2))), r"x and y must have the same batch size and dim"),
    (lambda: tk.pairwise_squared_distance(np.array([[0.0, np.inf]])), r"x must be finite, but x\[0, 1\] = inf"),
    (lambda: tk.pairwise_squared_distance(np.ones((3, 2)), device="tpu"), r"device must be 'cpu' or 'cuda'"),
    (lambda: tk.pairwise_squared_distance_grad(np.ones((3, 4)), np.ones((3, 2))), r"grad must have shape \[3,3\], but has shape \[3,4\]"),
    (lambda: tk.perplexity_affinities(np.ones((1, 1)), 0.5), r"sq_dist needs at least 2 points, but has shape \[1,1\]"),
    (lambda: tk.perplexity_affinities(np.ones((4, 4)), 3.0), r"perplexity must be in \(0, n - 1\) = \(0, 3\) for n = 4 points, but is 3"),
    (lambda: tk.perplexity_affinities(np.ones((4, 4)), 0.0), r"perplexity must be in"),
    (lambda: tk.perplexity_affinities(np.ones((4, 5)), 2.0), r"sq_dist must be square"),
    (lambda: tk.perplexity_affinities(-np.ones((4, 4)), 2.0), r"sq_dist must be finite and non-negative.*-1"),
    (lambda: tk.perplexity_affinities(np.ones((4, 4)), 2.0, tolerance=0.0), r"tolerance must be a finite number > 0, but is 0"),
    (lambda: tk.perplexity_affinities(np.ones((4, 4)), 2.0, max_iter=0), r"max_iter must be >= 1, but is 0"),
    (lambda: tk.symmetrize_affinities(np.full((3, 3), np.nan)), r"p_conditional must be finite and non-negative.*nan"),
    (lambda: tk.tsne_gradient(np.ones((4, 4)), np.ones((4, 2)), dof=0.0), r"dof must be a finite number > 0, but is 0"),
    (lambda: tk.tsne_gradient(np.ones((4, 4)), np.ones((4, 2)), exaggeration=-1.0), r"exaggeration must be a finite number > 0, but is -1"),
    (lambda: tk.tsne_gradient(np.ones((4, 4)), np.ones((4, 2)), dof=float("nan")), r"dof must be a finite number > 0, but is nan"),
    (lambda: tk.tsne_gradient(np.ones((5, 5)), np.ones((4, 2))), r"p must have shape \[batch, n, n\] = \[4,4\] to match y of shape \[4,2\], but has shape \[5,5\]"),
    (lambda: tk.tsne_gradient(np.ones((1, 1)), np.ones((1, 2))), r"y needs at least 2 points, but has shape \[1,2\]"),
    (lambda: tk.tsne_gradient(np.ones((4, 4)), np.full((4, 2), np.nan)), r"y must be finite, but y\[0, 0\] = nan"),
    (lambda: tk.set_num_threads(-1), r"num_threads must be >= 0"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cuda_device_without_gpu():
    if tk.has_cuda():
        pytest.skip("a CUDA device is present; tests/test_gpu_kernels.py covers device='cuda'")
    with pytest.raises(RuntimeError, match="CUDA|cuda"):
        tk.pairwise_squared_distance(np.ones((3, 2)), device="cuda")


def test_raw_api_validates_before_launch():
    if not tk.built_with_cuda():
        assert tk.cuda.available is False
        return
    assert tk.cuda.available is True
    with pytest.raises(ValueError, match="p must be a non-null device pointer"):
        tk.cuda.tsne_gradient(0, 0, 0, 0, 1, 5, 2)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        tk.cuda.tsne_gradient(1, 1, 1, 0, 1, 5, 2, dtype="float16")
    with pytest.raises(ValueError, match=r"perplexity must be in \(0, n - 1\)"):
        tk.cuda.perplexity_affinities(1, 1, 1, 1, 5, 10.0)
    assert tk.cuda.tsne_gradient_workspace_bytes(1, 1000, 2) > 0
    assert tk.cuda.tsne_gradient_workspace_bytes(1, 1000, 2) < 1000 * 1000 * 4  # never N x N
