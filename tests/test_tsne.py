"""tsne_ops.TSNE: scikit-learn's optimiser on the ops, its contract and its quality."""
import io
import contextlib

import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import squareform
from sklearn.base import clone
from sklearn.manifold import _t_sne as sk_tsne

import tsne_ops
from tsne_ops import datasets, metrics
from tsne_ops.tsne import TSNE, GradientDescent, initial_embedding, learning_rate_auto


@pytest.fixture(scope="module")
def digits500():
    X, y = datasets.load_digits(n=500)
    return X, y


def _blobs(n=120, d=5, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(4, d) * 6
    y = np.arange(n) % 4
    return (centres[y] + rng.randn(n, d)).astype(np.float64), y


def test_exported_from_package():
    assert tsne_ops.TSNE is TSNE


def test_optimizer_matches_sklearn_gradient_descent():
    # Same P, same start: 10 early-exaggeration iterations then 50 without,
    # against scikit-learn's own _gradient_descent and exact _kl_divergence.
    # (Early exaggeration at this learning rate is chaotic: rounding
    # differences grow ~10x per 5 iterations, so that phase is kept short.)
    X, _ = _blobs()
    n = len(X)
    P = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(X), 20.0).numpy()
    Y0 = np.random.RandomState(1).randn(n, 2) * 1e-2
    lr = 50.0
    opt = GradientDescent(P, Y0, lr, dof=1.0)
    opt.run(10, 0.5, 12.0)
    Y_early = opt.Y.numpy()
    opt.reset()
    kl_ours2, _ = opt.run(50, 0.8, 1.0)

    Pc = squareform(P, checks=False)
    common = dict(n_iter_check=50, n_iter_without_progress=300, learning_rate=lr,
                  min_grad_norm=0.0, args=[Pc * 12.0, 1, n, 2], kwargs={})
    p, _, _ = sk_tsne._gradient_descent(sk_tsne._kl_divergence, Y0.ravel().copy(), 0, 10,
                                        momentum=0.5, **common)
    np.testing.assert_allclose(Y_early, p.reshape(n, 2), rtol=1e-6, atol=1e-9)
    common["args"] = [Pc, 1, n, 2]
    p2, err2, _ = sk_tsne._gradient_descent(sk_tsne._kl_divergence, p, 11, 61,
                                            momentum=0.8, **common)
    np.testing.assert_allclose(opt.Y.numpy(), p2.reshape(n, 2), rtol=1e-5, atol=1e-8)
    assert kl_ours2 == pytest.approx(err2, rel=1e-5)


def test_quality_rises_and_matches_sklearn_on_small_digits(digits500):
    X, y = digits500
    init = initial_embedding(X, 2, "random", 0)
    acc_init = metrics.knn_accuracy(init, y, k=10)
    model = TSNE(init="random", random_state=0, max_iter=400, early_exaggeration_iter=150)
    Y = model.fit_transform(X)
    acc = metrics.knn_accuracy(Y, y, k=10)
    assert acc_init < 0.3
    assert acc > 0.95
    assert model.embedding_ is Y and Y.shape == (500, 2) and Y.dtype == np.float32
    assert model.n_iter_ == 399
    assert model.learning_rate_ == learning_rate_auto(500, 12.0) == 50.0
    # The reported KL is the KL of the result.
    assert model.kl_divergence_ == pytest.approx(metrics.kl_divergence(X, Y), rel=2e-2)
    from sklearn.manifold import TSNE as SkTSNE

    sk = SkTSNE(method="exact", init="random", random_state=0, max_iter=400).fit(X)
    # Same schedule except our shorter early phase; the KL should be as good.
    assert model.kl_divergence_ <= sk.kl_divergence_ * 1.05


def test_pca_init_is_sklearns(digits500):
    X, _ = digits500
    Y0 = initial_embedding(X, 2, "pca", 0)
    assert np.std(Y0[:, 0]) == pytest.approx(1e-4, rel=1e-3)
    from sklearn.decomposition import PCA

    ref = PCA(2, random_state=0).fit_transform(X)
    assert abs(np.corrcoef(Y0[:, 0], ref[:, 0])[0, 1]) > 0.999


def test_array_init_float64_and_3d():
    X, y = _blobs(90)
    init = np.random.RandomState(0).randn(90, 3) * 1e-4
    model = TSNE(3, init=init, perplexity=10, max_iter=200, early_exaggeration_iter=50,
                 dtype="float64", random_state=0)
    Y = model.fit_transform(X)
    assert Y.shape == (90, 3) and Y.dtype == np.float64
    assert metrics.knn_accuracy(Y, y, k=5) == 1.0


def test_precomputed_metric_equals_euclidean():
    # Precomputed distances are squared, as in scikit-learn: the same P to
    # rounding (sqrt then square), which the optimiser would amplify, so P is compared.
    X, _ = _blobs(80)
    D = np.sqrt(tsne_ops.pairwise_squared_distance(X).numpy())
    Pa = TSNE(perplexity=10).joint_probabilities(X)
    Pb = TSNE(metric="precomputed", perplexity=10, init="random").joint_probabilities(D)
    np.testing.assert_allclose(Pa, Pb, rtol=1e-9, atol=1e-15)


def test_callback_receives_progress_and_can_stop():
    X, _ = _blobs(60)
    calls = []

    def cb(iteration, kl, embedding):
        calls.append((iteration, kl, embedding.shape))
        return iteration >= 30

    model = TSNE(perplexity=10, max_iter=300, callback=cb, callback_every=10,
                 init="random", random_state=0).fit(X)
    assert [c[0] for c in calls] == [10, 20, 30]
    assert all(np.isfinite(c[1]) and c[2] == (60, 2) for c in calls)
    assert model.n_iter_ == 29


def test_verbose_prints_sklearn_style_lines():
    X, _ = _blobs(60)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        TSNE(perplexity=10, max_iter=300, verbose=2, random_state=0).fit(X)
    out = buf.getvalue()
    assert "[t-SNE] Iteration 50: error =" in out
    assert "KL divergence after 250 iterations with early exaggeration" in out


def test_min_grad_norm_stops_at_first_check():
    X, _ = _blobs(60)
    model = TSNE(perplexity=10, max_iter=1000, min_grad_norm=1e3, random_state=0).fit(X)
    # Stops at the first check of each phase (iterations 50 and 100), as
    # scikit-learn does.
    from sklearn.manifold import TSNE as SkTSNE

    sk = SkTSNE(perplexity=10, max_iter=1000, min_grad_norm=1e3, random_state=0,
                method="exact").fit(X)
    assert model.n_iter_ == sk.n_iter_ == 99


def test_estimator_contract():
    model = TSNE(perplexity=5.0, random_state=1)
    params = model.get_params()
    assert params["perplexity"] == 5.0 and params["init"] == "pca" and params["dtype"] == "float32"
    model.set_params(max_iter=250)
    assert model.max_iter == 250
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert "perplexity=5.0" in repr(model)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_components=0), "n_components"),
    (dict(n_components=2.0), "n_components"),
    (dict(perplexity=0), "perplexity"),
    (dict(perplexity=float("nan")), "perplexity"),
    (dict(perplexity=60), "perplexity"),  # 60 samples: must be < 60, as in scikit-learn
    (dict(early_exaggeration=0.5), "early_exaggeration"),
    (dict(learning_rate="fast"), "learning_rate"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(max_iter=0), "max_iter"),
    (dict(n_iter_without_progress=-2), "n_iter_without_progress"),
    (dict(min_grad_norm=-1.0), "min_grad_norm"),
    (dict(metric="cosine-ish"), "metric"),
    (dict(metric_params=[]), "metric_params"),
    (dict(init="spectral"), "init"),
    (dict(init=[[0, 0]]), "init"),
    (dict(init=np.zeros((3, 2))), "init"),
    (dict(metric="precomputed"), 'init="pca"'),
    (dict(verbose=-1), "verbose"),
    (dict(method="tree"), "method"),
    (dict(angle=-1.0), "angle"),
    (dict(n_jobs="all"), "n_jobs"),
    (dict(dof=0.0), "dof"),
    (dict(dtype="float16"), "dtype"),
    (dict(early_exaggeration_iter=-1), "early_exaggeration_iter"),
    (dict(callback=3), "callback"),
    (dict(callback_every=0), "callback_every"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    X, _ = _blobs(60)
    with pytest.raises(ValueError, match=name):
        TSNE(**kwargs).fit(X)


@pytest.mark.parametrize("X, match", [
    (np.zeros(10), "Expected 2D array"),
    (np.zeros((1, 3)), "1 sample"),
    (np.zeros((5, 0)), "0 feature"),
    (np.array([[0.0, np.nan], [1, 2], [3, 4], [5, 6]]), "Input X contains NaN"),
    (np.array([[0.0, np.inf], [1, 2], [3, 4], [5, 6]]), "Input X contains infinity"),
    (np.array([["a", "b"]] * 5), "could not convert string to float"),
    (np.ones((5, 2)) + 1j, "Complex data not supported"),
])
def test_bad_data_raises_value_error(X, match):
    # scikit-learn's messages (check_array), as check_estimator expects
    with pytest.raises(ValueError, match=match):
        TSNE(perplexity=1.0).fit(X)


def test_angle_is_honoured_by_barnes_hut():
    X, _ = _blobs(80)
    fit = lambda **kw: TSNE(perplexity=5.0, max_iter=60, early_exaggeration_iter=30,
                            random_state=0, method="barnes_hut", **kw).fit_transform(X)
    a, b = fit(angle=0.0), fit(angle=0.9)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, fit(angle=0.0))


def test_n_jobs_sets_the_kernels_threads_without_tensorflow_and_warns_with_it():
    import warnings

    X, _ = _blobs(40)
    # numpy input: the TensorFlow-free path honours n_jobs (tsne_ops/_native.py).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Y = TSNE(perplexity=5.0, max_iter=250, random_state=0, n_jobs=1).fit_transform(X)
    # A tensor keeps the TensorFlow path, whose thread pools n_jobs cannot set.
    with pytest.warns(UserWarning, match=r"n_jobs=2 .*has no effect"):
        Y_tf = TSNE(perplexity=5.0, max_iter=250, random_state=0,
                    n_jobs=2).fit_transform(tf.constant(X))
    np.testing.assert_array_equal(Y, Y_tf)
    with pytest.raises(ValueError, match=r"n_jobs must be a non-zero integer.*got n_jobs=0"):
        TSNE(n_jobs=0).fit(X)


def test_defaults_do_not_warn():
    import warnings

    X, _ = _blobs(40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TSNE(perplexity=5.0, max_iter=250, random_state=0).fit(X)


def test_perplexity_below_n_samples_is_lowered_with_a_warning():
    """scikit-learn allows perplexity < n_samples; no row can reach n - 1 or
    more, so such a value is lowered to 0.99 (n - 1), near-uniform P."""
    X, y = _blobs(20)
    with pytest.warns(UserWarning, match=r"perplexity=19.5 is too high for 20 points.*18.81"):
        model = TSNE(perplexity=19.5, max_iter=250, random_state=0).fit(X)
    assert model.perplexity_ == pytest.approx(0.99 * 19)
    assert np.all(np.isfinite(model.embedding_))
    P = np.asarray(model.joint_probabilities(X.astype(np.float64), model.perplexity_))
    off = P[~np.eye(20, dtype=bool)]
    # near-uniform over the 380 ordered pairs
    assert np.max(np.abs(off * 380 - 1)) < 0.5
    assert TSNE(perplexity=5.0, max_iter=250).fit(X).perplexity_ == 5.0


def test_one_dimensional_embedding_separates_blobs():
    X, y = _blobs(120)
    Y = TSNE(1, perplexity=10.0, random_state=0).fit_transform(X)
    assert Y.shape == (120, 1) and np.all(np.isfinite(Y))
    # four well-separated blobs: each one a contiguous run along the line
    assert metrics.knn_accuracy(Y, y, k=5) > 0.95


def test_two_samples_and_integer_input():
    # N = 2: sklearn accepts it; P is 1/2 per pair whatever the perplexity.
    with pytest.warns(UserWarning, match="perplexity"):
        Y = TSNE(perplexity=1.0, init="random", max_iter=250, random_state=0,
                 dtype="float64").fit_transform(np.array([[0.0, 1.0], [2.0, 3.0]]))
    assert Y.shape == (2, 2) and np.all(np.isfinite(Y))
    Xi = (_blobs(60)[0] * 10).astype(np.int64)
    model = TSNE(perplexity=5.0, max_iter=250, random_state=0).fit(Xi)
    assert model.n_features_in_ == 5 and np.all(np.isfinite(model.embedding_))


def test_output_dtype_follows_the_dtype_parameter_and_the_tag():
    from sklearn.utils import get_tags

    X, _ = _blobs(40)
    for dtype in ("float32", "float64"):
        model = TSNE(perplexity=5.0, max_iter=250, random_state=0, dtype=dtype)
        assert get_tags(model).transformer_tags.preserves_dtype == [dtype]
        assert model.fit_transform(X.astype(np.float32)).dtype == dtype
        assert model.fit_transform(X).dtype == dtype


def test_precomputed_must_be_square_and_nonnegative():
    with pytest.raises(ValueError, match="square"):
        TSNE(metric="precomputed", init="random", perplexity=1.0).fit(np.ones((5, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        TSNE(metric="precomputed", init="random", perplexity=1.0).fit(-np.ones((5, 5)))


@pytest.mark.slow
def test_digits_floor_against_sklearn_exact():
    """Full digits, scikit-learn's defaults and PCA init: KL no higher than
    scikit-learn's exact method reaches, and 10-NN accuracy >= 0.97."""
    from sklearn.manifold import TSNE as SkTSNE

    X, y = datasets.load_digits()
    ours = TSNE(random_state=0).fit(X)
    sk = SkTSNE(method="exact", random_state=0).fit(X)
    assert ours.n_iter_ == sk.n_iter_ == 999
    assert ours.kl_divergence_ <= sk.kl_divergence_ + 1e-3
    assert metrics.knn_accuracy(ours.embedding_, y, k=10) >= 0.97


def test_pca_init_of_identical_rows_falls_back_to_random():
    # Found by the fuzz suite: PCA of constant X has zero spread, and
    # scikit-learn's scaling divided by it (NaN start, then "y must be finite").
    with pytest.warns(UserWarning, match="init='pca'.*no variance"):
        Y0 = initial_embedding(np.ones((40, 2)), 2, "pca", 0)
    assert np.isfinite(Y0).all() and Y0.std() > 0
    with pytest.warns(UserWarning, match="no variance"):
        emb = TSNE(perplexity=2.0, max_iter=250, init="pca", dtype="float64",
                   random_state=0).fit_transform(np.ones((40, 2)))
    assert np.isfinite(emb).all()


@pytest.mark.parametrize("estimator", ["TSNE", "ParametricTSNE"])
def test_perplexity_below_float32_range_is_a_value_error(estimator):
    # Found by the fuzz suite: 1e-45 passed the "> 0" check and reached the
    # op as an InvalidArgumentError about float32.
    X = np.random.default_rng(0).normal(size=(8, 2))
    with pytest.raises(ValueError, match="perplexity.*1e-45"):
        getattr(tsne_ops, estimator)(perplexity=1e-45).fit(X)
