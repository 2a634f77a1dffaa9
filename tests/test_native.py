"""The TensorFlow-free exact t-SNE (tsne_ops/_native.py and the module's
gradient_descent, cc/compute/gradient_descent.h): the optimiser against a
numpy reference of scikit-learn's update, against the TensorFlow path on the
same P and Y0, determinism across thread counts, and bad input."""
import subprocess
import sys

import numpy as np
import pytest

import kernels_module

tk = kernels_module.load_or_skip()

from tsne_ops import _native  # noqa: E402


def _problem(rng, n=120, d=2, dtype=np.float64, clusters=4):
    centres = rng.normal(scale=6.0, size=(clusters, 5))
    x = centres[rng.integers(clusters, size=n)] + rng.normal(size=(n, 5))
    p = tk.joint_probabilities(tk.pairwise_squared_distance(x), 15.0).astype(dtype)
    y0 = (1e-4 * rng.standard_normal((n, d))).astype(dtype)
    return p, y0


def _reference_descent(p, y, update, gains, n_steps, lr, momentum, exaggeration, dof=1.0):
    """scikit-learn's _gradient_descent update written out in numpy, on the
    module's gradient (checked against its own reference in test_pybind_module)."""
    kl = None
    for step in range(n_steps):
        grad, kl = tk.tsne_gradient(p, y, exaggeration=exaggeration, dof=dof,
                                    compute_kl=step == n_steps - 1)
        inc = update * grad < 0.0
        gains = np.where(inc, gains + p.dtype.type(0.2), gains * p.dtype.type(0.8))
        gains = np.maximum(gains, p.dtype.type(0.01))
        # The kernel's association (TensorFlow's): (lr * gains) * grad, but
        # lr * (gains * grad) in the last iteration of a call.
        lr_t, scaled = p.dtype.type(lr), gains * grad
        step_lr = lr_t * scaled if step == n_steps - 1 else (lr_t * gains) * grad
        update = p.dtype.type(momentum) * update - step_lr
        grad = scaled
        y = y + update
    return y, update, gains, float(kl), float(np.linalg.norm(grad.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_matches_numpy_reference(rng, dtype, d):
    p, y0 = _problem(rng, d=d, dtype=dtype)
    opt = _native.GradientDescent(p, y0, learning_rate=50.0, dof=max(d - 1, 1))
    want = y0.copy(), np.zeros_like(y0), np.ones_like(y0)
    for n_steps, momentum, ex in ((30, 0.5, 12.0), (20, 0.8, 1.0)):
        kl, norm = opt.run(n_steps, momentum, ex)
        *want, kl_ref, norm_ref = _reference_descent(p, *want, n_steps, 50.0, momentum, ex,
                                                     dof=max(d - 1, 1))
        rtol = 1e-4 if dtype == np.float32 else 1e-11
        np.testing.assert_allclose(opt.Y, want[0], rtol=rtol, atol=rtol * np.abs(want[0]).max())
        np.testing.assert_allclose(kl, kl_ref, rtol=rtol)
        np.testing.assert_allclose(norm, norm_ref, rtol=rtol)
        assert np.array_equal(opt.gains > 0.01, want[2] > 0.01) or dtype == np.float32
    assert opt.embedding() is not opt.Y and np.array_equal(opt.embedding(), opt.Y)
    # The optimisation did something: the clusters separated.
    assert np.ptp(opt.Y) > 100 * np.ptp(y0)


def test_reset_zeroes_momentum_and_gains(rng):
    p, y0 = _problem(rng)
    opt = _native.GradientDescent(p, y0, 50.0, 1.0)
    opt.run(10, 0.5, 12.0)
    assert np.any(opt.update != 0) and np.any(opt.gains != 1)
    opt.reset()
    assert np.all(opt.update == 0) and np.all(opt.gains == 1)
    # KL without exaggeration equals the module's loss.
    _, kl = tk.tsne_gradient(p, opt.Y)
    assert opt.kl_divergence() == pytest.approx(float(kl), rel=1e-12)


def test_deterministic_for_any_thread_count(rng):
    p, y0 = _problem(rng, n=700, dtype=np.float32)
    results = []
    for n_jobs in (1, 2, 3):
        opt = _native.GradientDescent(p, y0, 60.0, 1.0, n_jobs=n_jobs)
        kl, norm = opt.run(25, 0.5, 12.0)
        results.append((opt.embedding(), kl, norm))
    for y, kl, norm in results[1:]:
        assert np.array_equal(y, results[0][0])
        assert (kl, norm) == results[0][1:]


def test_threads_restores_the_module_setting():
    before = tk.get_num_threads()
    with _native.threads(1):
        assert tk.get_num_threads() == 1
    assert tk.get_num_threads() == before
    assert _native.n_threads(None) == 0 and _native.n_threads(-1) == 0
    assert _native.n_threads(3) == 3 and _native.n_threads(-10 ** 6) == 1
    with pytest.raises(ValueError, match="n_jobs=0"):
        _native.n_threads(0)


def test_bad_input_names_the_argument(rng):
    p, y0 = _problem(rng, n=20)
    up, ga = np.zeros_like(y0), np.ones_like(y0)
    gd = tk.gradient_descent
    with pytest.raises(ValueError, match="y must have p's dtype float64, got dtype float32"):
        gd(p, y0.astype(np.float32), up, ga, 1, 10.0, 0.5)
    with pytest.raises(ValueError, match=r"update must have y's shape \(20, 2\), got shape \(20, 3\)"):
        gd(p, y0.copy(), np.zeros((20, 3)), ga, 1, 10.0, 0.5)
    with pytest.raises(ValueError, match="gains is updated in place, so it must be a C-contiguous"):
        gd(p, y0.copy(), up, np.ones((2, 20)).T, 1, 10.0, 0.5)
    with pytest.raises(ValueError, match=r"p must be a square \[n, n\] matrix, got shape \(20, 19\)"):
        gd(p[:, 1:], y0.copy(), up, ga, 1, 10.0, 0.5)
    with pytest.raises(ValueError, match=r"p must be \[n, n\] with n = y's number of points"):
        gd(p, y0[:10].copy(), up[:10], ga[:10], 1, 10.0, 0.5)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        gd(p, y0.copy(), up, ga, 0, 10.0, 0.5)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0, got -1"):
        gd(p, y0.copy(), up, ga, 1, -1.0, 0.5)
    with pytest.raises(ValueError, match="momentum must be a finite number >= 0, got nan"):
        gd(p, y0.copy(), up, ga, 1, 10.0, float("nan"))
    with pytest.raises(ValueError, match="exaggeration must be a finite number > 0, got 0"):
        gd(p, y0.copy(), up, ga, 1, 10.0, 0.5, exaggeration=0.0)
    bad = p.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match=r"p must be finite.*p\[3, 4\] = inf"):
        gd(bad, y0.copy(), up, ga, 1, 10.0, 0.5)
    y = y0.copy()
    y[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"y\[5, 1\] = nan"):
        gd(p, y, up, ga, 1, 10.0, 0.5)
    readonly = y0.copy()
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="y is updated in place"):
        gd(p, readonly, up, ga, 1, 10.0, 0.5)


def test_divergence_is_an_error_not_nan(rng):
    p, y0 = _problem(rng, n=30)
    opt = _native.GradientDescent(p, y0 * 1e4, learning_rate=1e300, dof=1.0)
    with pytest.raises(ValueError, match=r"t-SNE optimisation diverged: .* at iteration \d+ of 50 "
                                         r"\(learning_rate = 1e\+300"):
        opt.run(50, 0.8, 12.0)


# ------------------------------------------------ against the TF path ----

def test_p_of_a_read_only_memmap(rng, tmp_path):
    from tsne_ops.affinities import exact_joint_probabilities_numpy

    joblib = pytest.importorskip("joblib")
    x = rng.normal(size=(40, 3))
    joblib.dump(x, tmp_path / "x.joblib")
    # joblib's memmap carries an equal but not identical dtype descriptor.
    mapped = joblib.load(tmp_path / "x.joblib", mmap_mode="r")
    assert mapped.dtype is not np.dtype("float64")
    np.testing.assert_array_equal(exact_joint_probabilities_numpy(mapped, 5.0),
                                  exact_joint_probabilities_numpy(x, 5.0))


def test_same_p_as_the_ops(rng):
    tf = pytest.importorskip("tensorflow")
    from tsne_ops.affinities import exact_joint_probabilities, exact_joint_probabilities_numpy

    x = rng.normal(size=(150, 7))
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        want = exact_joint_probabilities(xd, 12.3).numpy()
        got = exact_joint_probabilities_numpy(xd, 12.3)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    d2 = tk.pairwise_squared_distance(x)
    np.testing.assert_array_equal(exact_joint_probabilities_numpy(d2, 9.0, precomputed=True),
                                  exact_joint_probabilities(tf.constant(d2), 9.0, precomputed=True).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_embedding_as_the_tensorflow_optimiser(rng, dtype):
    pytest.importorskip("tensorflow")
    from tsne_ops.tsne import GradientDescent

    p, y0 = _problem(rng, n=300, dtype=dtype)
    ours = _native.GradientDescent(p, y0, 25.3, 1.0)
    theirs = GradientDescent(p, y0, 25.3, 1.0)
    for opt in (ours, theirs):  # early exaggeration, reset, then the late phase: 100 iterations
        opt.run(50, 0.5, 12.0)
        opt.reset()
        opt.run(25, 0.8, 1.0)
    kl, norm = ours.run(25, 0.8, 1.0)
    kl_tf, norm_tf = theirs.run(25, 0.8, 1.0)
    # The same kernel, the same element-wise rounding: bit for bit.
    np.testing.assert_array_equal(ours.embedding(), theirs.embedding())
    np.testing.assert_array_equal(ours.gains, theirs.gains.numpy())
    assert kl == kl_tf
    # TensorFlow's norm sums in float32, ours in double.
    assert norm == pytest.approx(norm_tf, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert ours.kl_divergence() == pytest.approx(theirs.kl_divergence(), rel=1e-6)


def test_tsne_native_and_tensorflow_paths_agree():
    tf = pytest.importorskip("tensorflow")
    from sklearn.datasets import load_digits

    from tsne_ops import TSNE

    X = load_digits().data[:400]
    kwargs = dict(max_iter=300, random_state=0)
    native = TSNE(**kwargs)
    Y = native.fit_transform(X)
    graph = TSNE(**kwargs)
    Y_tf = graph.fit_transform(tf.constant(X))  # a tensor keeps the TensorFlow path
    np.testing.assert_array_equal(Y, Y_tf)
    assert native.kl_divergence_ == graph.kl_divergence_
    assert native.n_iter_ == graph.n_iter_


def test_tsne_on_numpy_does_not_import_tensorflow():
    code = ("import sys, warnings\n"
            "import tsne_ops\n"
            "from sklearn.datasets import load_digits\n"
            "X = load_digits().data[:500]\n"
            "with warnings.catch_warnings():\n"
            "    warnings.simplefilter('error')\n"
            "    est = tsne_ops.TSNE(max_iter=300, random_state=0, n_jobs=1).fit(X)\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
            "import tsne_ops.metrics, tsne_ops.datasets, tsne_ops.affinities\n"
            "assert 'tensorflow' not in sys.modules\n"
            "from sklearn.neighbors import KNeighborsClassifier\n"
            "from sklearn.model_selection import cross_val_score\n"
            "y = load_digits().target[:500]\n"
            "acc = cross_val_score(KNeighborsClassifier(10), est.embedding_, y, cv=3).mean()\n"
            "print(est.kl_divergence_, acc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kl, acc = map(float, proc.stdout.split())
    assert 0 < kl < 1.5 and acc > 0.9, (kl, acc)
