"""CUDA kernels of ``_tsne_kernels`` against the CPU kernels of the same module.

float64 agrees to ~1e-10 and float32 to ~1e-5 (relative to the largest
reference entry; the norm-relative form keeps cancelling entries from
dominating). Shapes cover N = 2, N that is not a multiple of any tile or
block size (tiles are 16, 32, 64 and 256 wide), batches B > 1, embedding
dims 1-7 (4 specialised kernels plus the generic one) and N = 20000 for the
gradient. Skipped, with the reason, when there is no CUDA device.
"""
import numpy as np
import pytest

import hostile_data
import kernels_module
from references import squared_distances

tk = kernels_module.load_or_skip()

pytestmark = pytest.mark.gpu

if not tk.built_with_cuda():
    pytest.skip("_tsne_kernels was built without CUDA (no nvcc at build time)", allow_module_level=True)
if not tk.has_cuda():
    pytest.skip("no CUDA device visible (cuda_device_count() == 0, or no driver)", allow_module_level=True)

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-10


assert_close = kernels_module.assert_close


def random_p(rng, b, n, dtype):
    """A symmetric joint-probability-like matrix (zero diagonal, sums to 1)."""
    p = rng.random(size=(b, n, n))
    p = p + np.swapaxes(p, 1, 2)
    p[:, np.arange(n), np.arange(n)] = 0
    p /= p.sum(axis=(1, 2), keepdims=True)
    return p.astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ------------------------------------------------------------ distances ---

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, dim", [(1, 2, 1), (1, 37, 3), (3, 130, 2), (2, 65, 17), (1, 200, 100)])
def test_distance_self(rng, dtype, b, n, dim):
    x = rng.normal(size=(b, n, dim)).astype(dtype)
    gpu = tk.pairwise_squared_distance(x, device="cuda")
    cpu = tk.pairwise_squared_distance(x, device="cpu")
    # The CPU uses the norm expansion for dim > 16; the GPU the direct sum.
    assert_close(gpu, cpu, 10 * tol(dtype), "self distances")
    assert np.array_equal(gpu, np.swapaxes(gpu, 1, 2)), "GPU self-distances must be exactly symmetric"
    assert np.all(np.diagonal(gpu, axis1=1, axis2=2) == 0)
    assert np.all(gpu >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, m, dim", [(1, 2, 3, 1), (2, 70, 33, 5), (1, 129, 250, 40)])
def test_distance_cross(rng, dtype, b, n, m, dim):
    x = rng.normal(size=(b, n, dim)).astype(dtype)
    y = rng.normal(size=(b, m, dim)).astype(dtype)
    assert_close(tk.pairwise_squared_distance(x, y, device="cuda"),
                 tk.pairwise_squared_distance(x, y, device="cpu"), 10 * tol(dtype), "cross distances")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, m, dim, cross", [
    (1, 2, 2, 1, False), (2, 67, 67, 3, False), (1, 300, 300, 33, False),
    (1, 2, 3, 2, True), (3, 45, 130, 5, True), (1, 1100, 700, 2, True),
])
def test_distance_grad(rng, dtype, b, n, m, dim, cross):
    x = rng.normal(size=(b, n, dim)).astype(dtype)
    y = rng.normal(size=(b, m, dim)).astype(dtype) if cross else None
    g = rng.normal(size=(b, n, m if cross else n)).astype(dtype)
    gx, gy = tk.pairwise_squared_distance_grad(g, x, y, device="cuda")
    cx, cy = tk.pairwise_squared_distance_grad(g, x, y, device="cpu")
    assert_close(gx, cx, 10 * tol(dtype), "grad_x")
    if cross:
        assert_close(gy, cy, 10 * tol(dtype), "grad_y")
    else:
        assert gy is None


# ----------------------------------------------------------- affinities ---

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, perplexity", [(1, 2, 0.5), (1, 3, 1.5), (2, 77, 10.0), (1, 500, 30.0)])
def test_perplexity_affinities(rng, dtype, b, n, perplexity):
    d = tk.pairwise_squared_distance(rng.normal(size=(b, n, 4))).astype(dtype)
    pg, bg, ug = tk.perplexity_affinities(d, perplexity, device="cuda")
    pc, bc, uc = tk.perplexity_affinities(d, perplexity, device="cpu")
    # float64: the same search step for step, sums in double in another order,
    # so betas and P agree to rounding. float32: the CPU evaluates rows with a
    # float exp and the GPU with a double one, so the two searches stop at
    # slightly different betas, both within the 1e-5 nat tolerance.
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    if dtype == np.float64:
        assert ug == uc
    # N = 2 cannot reach any perplexity < 1: both devices stop at once and
    # keep the first beta (affinities.h, BetaLimit), finite.
    assert np.all(np.isfinite(bg)) and np.all(np.isfinite(bc))
    assert_close(bg, bc, rtol, "beta")
    assert_close(pg, pc, rtol, "p_conditional")
    assert np.all(np.diagonal(pg, axis1=1, axis2=2) == 0)


def _tie_cases(rng):
    """Squared distances with rows that cannot reach the perplexity."""
    dup = np.concatenate([hostile_data.duplicates(rng, 3, 8), rng.normal(size=(20, 5))])
    return [
        ("duplicates", squared_distances(dup), 5.0),
        ("binary", squared_distances(hostile_data.binary_images(rng, 150, 10, 0.5)), 5.0),
        ("identical", np.zeros((40, 40)), 10.0),
        ("two_points", np.array([[0.0, 3.0], [3.0, 0.0]]), 0.5),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(4))
def test_tied_rows_match_cpu(rng, dtype, case):
    # Issue 17, defect 1: such rows stop at the same BetaLimit on both devices
    # and are written as their limit (uniform on the tied points).
    name, d, perplexity = _tie_cases(rng)[case]
    d = d.astype(dtype)
    tied, limit = hostile_data.tied_rows(d, perplexity)
    assert tied.any(), name
    pg, bg, ug = tk.perplexity_affinities(d, perplexity, device="cuda")
    pc, bc, uc = tk.perplexity_affinities(d, perplexity, device="cpu")
    assert np.all(np.isfinite(pg)) and np.all(np.isfinite(bg)), name
    assert ug == uc == tied.sum(), (name, ug, uc, tied.sum())
    np.testing.assert_allclose(pg[tied], limit[tied], atol=1e-7)
    np.testing.assert_array_equal(bg[tied], bc[tied])
    assert_close(pg, pc, 2e-4 if dtype == np.float32 else 1e-10, name)
    jg = tk.joint_probabilities(d, perplexity, device="cuda")
    jc = tk.joint_probabilities(d, perplexity, device="cpu")
    assert np.all(np.isfinite(jg))
    assert_close(jg, jc, 2e-4 if dtype == np.float32 else 1e-10, name + " joint")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift", [1e3, 1e4])
@pytest.mark.parametrize("dim", [3, 17, 50])
def test_distances_far_from_the_origin(rng, dtype, shift, dim):
    # Issue 17, defect 2: errors relative to the spread, not |x|^2, on both
    # devices (float64 reference on centred data); the gradient likewise.
    x = hostile_data.offset(rng, 300, dim, shift).astype(dtype)
    y = hostile_data.offset(rng, 130, dim, shift).astype(dtype)
    t = 1e-5 if dtype == np.float32 else 1e-12
    for yy in (None, y):
        ref = hostile_data.centred_squared_distances(x, yy)
        for device in ("cuda", "cpu"):
            out = tk.pairwise_squared_distance(x, yy, device=device)
            assert np.abs(out - ref).max() <= t * ref.max(), (device, yy is None)
    g = rng.normal(size=(300, 130)).astype(dtype)
    gx, gy = tk.pairwise_squared_distance_grad(g, x, y, device="cuda")
    cx, cy = tk.pairwise_squared_distance_grad(g, x, y, device="cpu")
    assert_close(gx, cx, 100 * tol(dtype), "grad_x")
    assert_close(gy, cy, 100 * tol(dtype), "grad_y")


@pytest.mark.parametrize("dtype", DTYPES)
def test_duplicate_rows_are_exactly_zero_apart(rng, dtype):
    x = np.repeat(rng.normal(size=(50, 40)) + 100.0, 3, axis=0)[rng.permutation(150)].astype(dtype)
    same = (x[:, None, :] == x[None, :, :]).all(-1)
    for device in ("cuda", "cpu"):
        out = tk.pairwise_squared_distance(x, device=device)
        assert np.all(out[same] == 0) and np.all(out[~same] > 0), device


def test_perplexity_unconverged_count_on_device(rng):
    d = tk.pairwise_squared_distance(rng.normal(size=(2, 50, 3)))
    _, _, ug = tk.perplexity_affinities(d, 5.0, tolerance=1e-12, max_iter=1, device="cuda")
    _, _, uc = tk.perplexity_affinities(d, 5.0, tolerance=1e-12, max_iter=1, device="cpu")
    assert ug == uc > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n", [(1, 2), (3, 33), (1, 257)])
def test_symmetrize(rng, dtype, b, n):
    pc = rng.random(size=(b, n, n)).astype(dtype)
    pc[0, 0, 1] = 0
    pc[0, 1, 0] = 0  # the eps floor
    pg = tk.symmetrize_affinities(pc, device="cuda")
    assert_close(pg, tk.symmetrize_affinities(pc, device="cpu"), 1e-6 if dtype == np.float32 else 1e-12, "P")
    assert np.array_equal(pg, np.swapaxes(pg, 1, 2)), "P must be exactly symmetric"
    assert np.all(np.diagonal(pg, axis1=1, axis2=2) == 0)
    if n > 2:
        assert pg[0, 0, 1] == dtype(2.220446049250313e-16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_joint_probabilities(rng, dtype):
    d = tk.pairwise_squared_distance(rng.normal(size=(2, 90, 6))).astype(dtype)
    assert_close(tk.joint_probabilities(d, 20.0, device="cuda"),
                 tk.joint_probabilities(d, 20.0, device="cpu"), 1e-6 if dtype == np.float32 else 1e-10, "P")


# --------------------------------------------------------- t-SNE gradient ---

OPTS = [
    dict(),
    dict(exaggeration=12.0, compute_kl=False),
    dict(dof=0.6),
    dict(dof=2.0, exaggeration=4.0, scale_repulsion_by_p_sum=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, d", [(1, 2, 2), (1, 3, 1), (2, 97, 2), (1, 300, 3), (3, 129, 4),
                                     (1, 70, 5), (2, 41, 7), (1, 2500, 2)])
@pytest.mark.parametrize("opts", range(len(OPTS)))
def test_tsne_gradient(rng, dtype, b, n, d, opts):
    opts = OPTS[opts]
    p = random_p(rng, b, n, dtype)
    y = (rng.normal(size=(b, n, d)) * 3).astype(dtype)
    gg, kg = tk.tsne_gradient(p, y, device="cuda", **opts)
    # Reference: the CPU kernel in float64 on the same (upcast) inputs, so the
    # comparison measures the GPU's rounding, not the CPU's.
    gc, kc = tk.tsne_gradient(p.astype(np.float64), y.astype(np.float64), device="cpu", **opts)
    assert_close(gg, gc, 2 * tol(dtype), "grad")
    if opts.get("compute_kl", True):
        np.testing.assert_allclose(kg, kc, rtol=1e-4 if dtype == np.float32 else 1e-10)
    else:
        assert kg is None


def test_tsne_gradient_n20000(rng):
    """The production size, float32, against the CPU kernel in float64."""
    n, d = 20000, 2
    p = rng.random(size=(n, n), dtype=np.float32)
    p /= np.float32(p.sum(dtype=np.float64))
    y = (rng.normal(size=(n, d)) * 10).astype(np.float32)
    gg, kg = tk.tsne_gradient(p, y, exaggeration=4.0, device="cuda")
    p64 = p.astype(np.float64)
    gc, kc = tk.tsne_gradient(p64, y.astype(np.float64), exaggeration=4.0, device="cpu")
    del p64
    assert_close(gg, gc, 2e-5, "grad (N = 20000)")
    np.testing.assert_allclose(kg, kc, rtol=1e-4)


# ------------------------------------------------------------ determinism ---

def test_run_to_run_bitwise(rng):
    n = 3000
    p = random_p(rng, 1, n, np.float32)[0]
    y = rng.normal(size=(n, 2)).astype(np.float32)
    x = rng.normal(size=(1000, 20)).astype(np.float32)
    a = [tk.tsne_gradient(p, y, device="cuda") for _ in range(3)]
    for g, k in a[1:]:
        assert np.array_equal(g, a[0][0]) and np.array_equal(k, a[0][1])
    dd = [tk.pairwise_squared_distance(x, device="cuda") for _ in range(2)]
    assert np.array_equal(dd[0], dd[1])
    jp = [tk.joint_probabilities(dd[0], 30.0, device="cuda") for _ in range(2)]
    assert np.array_equal(jp[0], jp[1])
    gx = [tk.pairwise_squared_distance_grad(p, y, device="cuda")[0] for _ in range(2)]
    assert np.array_equal(gx[0], gx[1])


# ---------------------------------------------------- raw device pointers ---

def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


def test_raw_pointers_torch(rng):
    torch = _torch()
    if torch is None:
        pytest.skip("PyTorch with CUDA not installed")
    n, d = 513, 2
    p = random_p(rng, 1, n, np.float32)[0]
    y = rng.normal(size=(n, d)).astype(np.float32)
    tp, ty = torch.from_numpy(p).cuda(), torch.from_numpy(y).cuda()
    grad = torch.empty_like(ty)
    kl = torch.empty(1, dtype=torch.float32, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    tk.cuda.tsne_gradient(tp.data_ptr(), ty.data_ptr(), grad.data_ptr(), kl.data_ptr(), 1, n, d,
                          dtype="float32", stream=stream)
    torch.cuda.synchronize()
    g_ref, kl_ref = tk.tsne_gradient(p, y, device="cuda")
    assert np.array_equal(grad.cpu().numpy(), g_ref)
    assert kl.cpu().numpy()[0] == kl_ref

    x = torch.randn(3, 100, 7, dtype=torch.float64, device="cuda")
    out = torch.empty(3, 100, 100, dtype=torch.float64, device="cuda")
    tk.cuda.pairwise_squared_distance(x.data_ptr(), None, out.data_ptr(), 3, 100, 100, 7,
                                      dtype="float64", stream=stream)
    torch.cuda.synchronize()
    assert_close(out.cpu().numpy(), tk.pairwise_squared_distance(x.cpu().numpy()), 1e-10, "torch distances")


def test_csr_check_kernel_finds_the_first_bad_entries(rng):
    # The check CsrTsneGradientFromRepulsion runs on the GPU (the op library
    # has no TensorFlow on the GPU machine; the kernel is the same).
    torch = _torch()
    if torch is None:
        pytest.skip("PyTorch with CUDA not installed")
    n, k, batch = 300, 9, 2
    idx = np.stack([rng.choice(n, k, replace=False) for _ in range(batch * n)])
    coo = np.array([(u // n, u % n, j) for u in range(batch * n) for j in sorted(idx[u])],
                   np.int64)
    rp, cols = tk.coo_to_csr(coo, batch, n)
    rows, nnz, none = batch * n, cols.size, 2**64 - 1
    cases = [(rp, cols, none, none)]
    bad_rp = rp.copy()
    bad_rp[100] = bad_rp[99] - 1
    cases.append((bad_rp, cols, 100, none))
    bad_last = rp.copy()
    bad_last[-1] += 1
    cases.append((bad_last, cols, rows, none))
    bad_cols = cols.copy()
    bad_cols[[nnz // 3, nnz // 2, nnz - 1]] = [n, -1, 10**12]
    cases.append((rp, bad_cols, none, nnz // 3))
    for r, c, want_rp, want_cols in cases:
        dr, dc = torch.from_numpy(r).cuda(), torch.from_numpy(c).cuda()
        flags = torch.zeros(2, dtype=torch.int64, device="cuda")
        tk.cuda.check_csr(dr.data_ptr(), dc.data_ptr(), rows, nnz, n, flags.data_ptr(),
                          stream=torch.cuda.current_stream().cuda_stream)
        got = flags.cpu().numpy().view(np.uint64)
        assert got.tolist() == [want_rp, want_cols]


def test_raw_pointers_cupy(rng):
    cp = _cupy()
    if cp is None:
        pytest.skip("CuPy with a CUDA device not installed")
    n = 200
    dist = tk.pairwise_squared_distance(rng.normal(size=(2, n, 3)))
    dd = cp.asarray(dist)
    pc = cp.empty_like(dd)
    beta = cp.empty((2, n), dtype=cp.float64)
    count = cp.zeros(1, dtype=cp.int64)
    stream = cp.cuda.get_current_stream()
    tk.cuda.perplexity_affinities(dd.data.ptr, pc.data.ptr, beta.data.ptr, 2, n, 15.0,
                                  unconverged=count.data.ptr, dtype="float64", stream=stream.ptr)
    p = cp.empty_like(dd)
    tk.cuda.symmetrize_affinities(pc.data.ptr, p.data.ptr, 2, n, dtype="float64", stream=stream.ptr)
    stream.synchronize()
    ref_pc, ref_beta, ref_u = tk.perplexity_affinities(dist, 15.0, device="cuda")
    assert np.array_equal(cp.asnumpy(pc), ref_pc)
    assert int(count.get()[0]) == ref_u
    assert np.array_equal(cp.asnumpy(p), tk.symmetrize_affinities(ref_pc, device="cuda"))


# ---------------------------------------------------- nearest neighbours ---
# The GPU kernel accumulates the same double sums in the same order as the
# CPU kernel's exact step and orders by the same (distance, index) rule, so
# both must agree bit for bit, ties and duplicates included.

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, m, dim, k", [(None, 2, None, 1, 1), (None, 129, None, 3, 128),
                                             (2, 300, 1000, 33, 90), (1, 1000, None, 50, 90),
                                             (3, 70, 65, 100, 64)])
def test_nearest_neighbors_gpu_equals_cpu(rng, dtype, b, n, m, dim, k):
    lead = () if b is None else (b,)
    x = rng.normal(size=lead + (n, dim)).astype(dtype)
    y = None if m is None else rng.normal(size=lead + (m, dim)).astype(dtype)
    gi, gd = tk.nearest_neighbors(x, k, y, device="cuda")
    ci, cd = tk.nearest_neighbors(x, k, y, device="cpu")
    assert np.array_equal(gi, ci), "GPU and CPU neighbour indices differ"
    assert np.array_equal(gd, cd), "GPU and CPU neighbour distances differ"


def test_nearest_neighbors_gpu_ties_and_offset(rng):
    x = rng.integers(0, 3, size=(2, 500, 12)).astype(np.float32)
    gi, gd = tk.nearest_neighbors(x, 40, device="cuda")
    ci, cd = tk.nearest_neighbors(x, 40, device="cpu")
    assert np.array_equal(gi, ci) and np.array_equal(gd, cd)
    x64 = np.round(rng.normal(size=(800, 50)) * 256) / 256
    gi, gd = tk.nearest_neighbors((x64 + 1e4).astype(np.float32), 30, device="cuda")
    ci, cd = tk.nearest_neighbors(x64, 30, device="cpu")
    assert np.array_equal(gi, ci) and np.array_equal(gd, cd.astype(np.float32))


def test_nearest_neighbors_raw_pointers_torch(rng):
    torch = _torch()
    if torch is None:
        pytest.skip("PyTorch with CUDA not installed")
    x = rng.normal(size=(2, 400, 20)).astype(np.float32)
    tx = torch.from_numpy(x).cuda()
    idx = torch.empty(2, 400, 15, dtype=torch.int64, device="cuda")
    d2 = torch.empty(2, 400, 15, dtype=torch.float32, device="cuda")
    tk.cuda.nearest_neighbors(tx.data_ptr(), None, idx.data_ptr(), d2.data_ptr(), 2, 400, 0, 20, 15,
                              dtype="float32", stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    ci, cd = tk.nearest_neighbors(x, 15)
    assert np.array_equal(idx.cpu().numpy(), ci) and np.array_equal(d2.cpu().numpy(), cd)


# ------------------------------------------------------------ sparse P ---
# kNN graphs from a numpy brute-force search (the GPU machine has no
# scikit-learn guarantee): each point's k nearest others, ties by index.

def _knn(x, k):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k].astype(np.int64)
    return idx, np.take_along_axis(d2, idx, 1).astype(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, k", [(1, 3, 2), (1, 300, 40), (2, 257, 31), (1, 2000, 90)])
def test_knn_joint_probabilities(rng, dtype, b, n, k):
    parts = []
    for _ in range(b):
        x = rng.normal(size=(n, 4))
        x[1:8 if n > 8 else 2] = x[0]  # ties: some rows cannot reach their perplexity
        parts.append(_knn(x.astype(dtype), k))
    idx = np.stack([p[0] for p in parts]) if b > 1 else parts[0][0]
    d2 = np.stack([p[1] for p in parts]) if b > 1 else parts[0][1]
    perplexity = min(5.0, k - 0.5)
    gi, gv, gs, gu = tk.knn_joint_probabilities(idx, d2, perplexity, device="cuda")
    ci, cv, cs, cu = tk.knn_joint_probabilities(idx, d2, perplexity, device="cpu")
    assert np.array_equal(gi, ci), "GPU sparsity pattern differs from the CPU one"
    assert gs == cs and gu == cu
    assert np.all(np.isfinite(gv))
    assert_close(gv, cv, tol(dtype), "knn joint probabilities")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, d, dof, ex, kl", [
    (1, 2, 2, 1.0, 1.0, True), (1, 300, 2, 1.0, 12.0, True), (2, 257, 3, 0.7, 1.0, True),
    (1, 500, 1, 2.0, 4.0, False), (1, 130, 5, 1.0, 1.0, True), (1, 20000, 2, 1.0, 1.0, True),
])
def test_sparse_tsne_gradient(rng, dtype, b, n, d, dof, ex, kl):
    k = min(30, n - 1)
    parts = [_knn(rng.normal(size=(n, 3)).astype(dtype), k) for _ in range(b)] if n <= 2000 else None
    if parts is None:  # N = 20000: a random symmetric k-regular-ish graph, no N x N search
        i = np.repeat(np.arange(n), k)
        j = (i + rng.integers(1, n, size=i.size)) % n
        pairs = np.unique(np.concatenate([np.stack([i, j], 1), np.stack([j, i], 1)]), axis=0)
        pi, pv = pairs.astype(np.int64), rng.random(len(pairs)).astype(dtype)
    else:
        idx = np.stack([p[0] for p in parts]) if b > 1 else parts[0][0]
        d2 = np.stack([p[1] for p in parts]) if b > 1 else parts[0][1]
        pi, pv, _, _ = tk.knn_joint_probabilities(idx, d2, min(8.0, k - 0.5))
    shape = (b, n, d) if b > 1 else (n, d)
    y = (3 * rng.normal(size=shape)).astype(dtype)
    g_gpu, kl_gpu = tk.sparse_tsne_gradient(pi, pv, y, ex, dof, kl, device="cuda")
    g_cpu, kl_cpu = tk.sparse_tsne_gradient(pi, pv, y, ex, dof, kl, device="cpu")
    assert_close(g_gpu, g_cpu, 10 * tol(dtype), "sparse t-SNE gradient")
    if kl:
        assert_close(np.atleast_1d(kl_gpu), np.atleast_1d(kl_cpu), 10 * tol(dtype), "sparse KL")
    else:
        assert kl_gpu is None


# ---------------------------------------------- FFT interpolation (issue 16) --

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, d, n_boxes, p, c", [
    (1, 2, 1, 1, 3, 1), (1, 1000, 1, 50, 3, 2), (2, 777, 2, 13, 3, 3), (1, 20000, 2, 120, 3, 1),
    (1, 500, 2, 7, 5, 2),
])
def test_fft_spread_and_gather(rng, dtype, b, n, d, n_boxes, p, c):
    y = (5 * rng.normal(size=(b, n, d))).astype(dtype)
    y[:, 1:min(n, 40)] = y[:, :1]  # a pile of identical points: one box gets many
    q = rng.normal(size=(b, n, c)).astype(dtype)
    lo, hi = y.min(axis=1), y.max(axis=1)
    h = np.maximum((hi - lo).max(axis=1), 1.0).astype(dtype) / n_boxes
    g_gpu = tk.fft_spread(y, q, lo, h, n_boxes, p, device="cuda")
    g_cpu = tk.fft_spread(y, q, lo, h, n_boxes, p, device="cpu")
    assert_close(g_gpu, g_cpu, 10 * tol(dtype), "fft spread")
    # The GPU spread sums each node in a fixed order: the same bits every run.
    np.testing.assert_array_equal(tk.fft_spread(y, q, lo, h, n_boxes, p, device="cuda"), g_gpu)
    v = rng.normal(size=g_cpu.shape).astype(dtype)
    assert_close(tk.fft_gather(y, v, lo, h, p, device="cuda"),
                 tk.fft_gather(y, v, lo, h, p, device="cpu"), 10 * tol(dtype), "fft gather")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, n, d, dof, ex", [(1, 300, 2, 1.0, 12.0), (2, 257, 1, 0.7, 1.0),
                                               (1, 2000, 3, 2.0, 4.0)])
def test_sparse_tsne_gradient_from_repulsion(rng, dtype, b, n, d, dof, ex):
    parts = [_knn(rng.normal(size=(n, 3)).astype(dtype), 20) for _ in range(b)]
    idx = np.stack([p[0] for p in parts]) if b > 1 else parts[0][0]
    d2 = np.stack([p[1] for p in parts]) if b > 1 else parts[0][1]
    pi, pv, _, _ = tk.knn_joint_probabilities(idx, d2, 8.0)
    shape = (b, n, d) if b > 1 else (n, d)
    y = (3 * rng.normal(size=shape)).astype(dtype)
    rep = rng.normal(size=shape).astype(dtype)
    z = np.asarray(rng.random(size=(b,) if b > 1 else ()) * 1e4 + 1, dtype=dtype)
    for scale in (False, True):
        g_gpu, kl_gpu = tk.sparse_tsne_gradient_from_repulsion(pi, pv, y, rep, z, ex, dof, True,
                                                               scale, device="cuda")
        g_cpu, kl_cpu = tk.sparse_tsne_gradient_from_repulsion(pi, pv, y, rep, z, ex, dof, True,
                                                               scale, device="cpu")
        assert_close(g_gpu, g_cpu, 10 * tol(dtype), "gradient from (R, Z)")
        assert_close(np.atleast_1d(kl_gpu), np.atleast_1d(kl_cpu), 10 * tol(dtype), "KL from Z")
