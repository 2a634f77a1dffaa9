"""TSNE(method=...): the sparse kNN P with the FFT and Barnes-Hut repulsions.

Quality against the exact method on digits, the 'auto' rule, bad input,
determinism, duplicates, the optimiser on a sparse P, progress output.
"""
import contextlib
import io
import warnings

import numpy as np
import pytest
import tensorflow as tf

import tsne_ops
from tsne_ops import datasets, metrics, tsne
from tsne_ops.affinities import sparse_joint_probabilities
from tsne_ops.tsne import TSNE, GradientDescent, choose_method

# A short schedule keeps each fit to seconds; every method gets the same.
FAST = dict(max_iter=500, early_exaggeration_iter=150, random_state=0)


@pytest.fixture(scope="module")
def digits500():
    return datasets.load_digits(n=500)


@pytest.fixture(scope="module")
def fits(digits500):
    """One fit per method on the same digits, the same schedule."""
    X, _ = digits500
    out = {}
    for method in ("exact", "fft", "barnes_hut"):
        model = TSNE(method=method, **FAST)
        out[method] = model, model.fit_transform(X)
    return out


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_sparse_methods_reach_the_exact_methods_quality(digits500, fits, method):
    X, y = digits500
    exact_model, Y_exact = fits["exact"]
    model, Y = fits[method]
    assert model.method_ == method and model.sparse_ and exact_model.sparse_ is False
    assert np.all(np.isfinite(Y)) and Y.shape == (500, 2)
    # Scored against the same dense P: the kNN P keeps 91 of 499 neighbours,
    # so the KL may be a little higher, never much (a wrong repulsion or
    # optimiser would be off by far more than 10%).
    kl_exact = metrics.kl_divergence(X, Y_exact)
    kl = metrics.kl_divergence(X, Y)
    assert kl <= kl_exact * 1.10, (kl, kl_exact)
    acc_exact = metrics.knn_accuracy(Y_exact, y, k=10)
    assert metrics.knn_accuracy(Y, y, k=10) >= acc_exact - 0.02
    assert metrics.knn_accuracy(Y, y, k=10) > 0.95


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_reported_kl_is_the_methods_own_approximation(digits500, fits, method):
    # kl_divergence_ is the KL at the start of the last iteration, over the
    # sparse P with Z from the method; the loss of the result is within the
    # change of one iteration of it.
    X, _ = digits500
    model, _ = fits[method]
    P = sparse_joint_probabilities(X.astype(np.float32), model.perplexity_)
    options = {"angle": 0.5} if method == "barnes_hut" else {}
    kl = float(tsne_ops.tsne_loss(P, model.embedding_, method=method, **options))
    assert model.kl_divergence_ == pytest.approx(kl, rel=2e-3)
    # ... and not the dense P's KL, which differs (the sparse P drops pairs).
    assert abs(metrics.kl_divergence(X, model.embedding_) - kl) > 1e-3


def test_auto_rule():
    n2 = tsne._AUTO_EXACT_MAX_N[2]
    assert choose_method(n2, 2) == ("exact", False)
    assert choose_method(n2 + 1, 2) == ("fft", True)
    assert choose_method(tsne._AUTO_EXACT_MAX_N[1] + 1, 1) == ("fft", True)
    assert choose_method(tsne._AUTO_EXACT_MAX_N[3] + 1, 3) == ("barnes_hut", True)
    assert choose_method(tsne._AUTO_EXACT_MAX_N[3], 3) == ("exact", False)
    big = tsne._AUTO_DENSE_MAX_N_HIGH_D
    assert choose_method(big, 4) == ("exact", False)
    assert choose_method(big + 1, 5) == ("exact", True)


def test_auto_fits_what_the_rule_says(monkeypatch):
    X, _ = datasets.load_digits(n=120)
    model = TSNE(max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X)
    assert (model.method_, model.sparse_, model.optimizer_) == ("exact", False, "sklearn")
    monkeypatch.setitem(tsne._AUTO_EXACT_MAX_N, 2, 100)
    monkeypatch.setitem(tsne._AUTO_EXACT_MAX_N, 3, 100)
    model = TSNE(max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X)
    assert (model.method_, model.sparse_) == ("fft", True)
    model = TSNE(n_components=3, max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X)
    assert (model.method_, model.sparse_) == ("barnes_hut", True)
    monkeypatch.setattr(tsne, "_AUTO_DENSE_MAX_N_HIGH_D", 100)
    model = TSNE(n_components=4, max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X)
    assert (model.method_, model.sparse_) == ("exact", True)
    assert model.embedding_.shape == (120, 4) and np.all(np.isfinite(model.embedding_))


@pytest.mark.parametrize("params, words", [
    (dict(method="bogus"), ["method", "'bogus'"]),
    (dict(method=None), ["method", "None"]),
    (dict(angle=-0.5), ["angle", "-0.5"]),
    (dict(angle=float("nan")), ["angle", "nan"]),
    (dict(method="fft", n_components=3), ["method='fft'", "n_components=3"]),
    (dict(method="barnes_hut", n_components=4), ["method='barnes_hut'", "n_components=4"]),
    (dict(neighbors="fast"), ["neighbors", "'fast'"]),
    (dict(optimizer="adam"), ["optimizer", "'adam'"]),
    (dict(n_jobs=0), ["n_jobs", "0"]),
    (dict(n_jobs=1.5), ["n_jobs", "1.5"]),
])
def test_bad_parameters_name_the_argument_and_value(params, words):
    X, _ = datasets.load_digits(n=50)
    with pytest.raises(ValueError) as err:
        TSNE(**params).fit(X)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_same_seed_same_embedding(method):
    X, _ = datasets.load_digits(n=200)
    a = TSNE(method=method, max_iter=60, early_exaggeration_iter=30, random_state=3).fit_transform(X)
    b = TSNE(method=method, max_iter=60, early_exaggeration_iter=30, random_state=3).fit_transform(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["fft", "barnes_hut"])
def test_duplicates_in_x(method):
    # Every point three times: ties at distance 0 in the kNN search and in the
    # perplexity calibration, coincident points in the tree and on the grid.
    X, y = datasets.load_digits(n=100)
    X3, y3 = np.repeat(X, 3, axis=0), np.repeat(y, 3)
    model = TSNE(method=method, max_iter=300, early_exaggeration_iter=100, random_state=0)
    Y = model.fit_transform(X3)
    assert np.all(np.isfinite(Y)) and np.isfinite(model.kl_divergence_)
    assert model.kl_divergence_ > 0
    # Copies end together (closer than the typical neighbour distance).
    spread_copies = np.linalg.norm(Y[0::3] - Y[1::3], axis=1).mean()
    nn_distance = np.sort(np.linalg.norm(Y[0::3, None] - Y[None, 0::3], axis=2), axis=1)[:, 1].mean()
    assert spread_copies < nn_distance
    assert metrics.knn_accuracy(Y, y3, k=10) > 0.9


def test_optimizer_on_sparse_p_equals_dense_p():
    # With k = N - 1 the kNN P is the dense P: the sparse path with the exact
    # repulsion must follow the dense path's trajectory.
    X, _ = datasets.load_digits(n=120)
    X = X.astype(np.float64)
    Ps = sparse_joint_probabilities(X, 20.0, n_neighbors=len(X) - 1)
    Pd = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(X), 20.0)
    Y0 = np.random.RandomState(0).randn(len(X), 2) * 1e-2
    a = GradientDescent(Ps, Y0, 50.0, 1.0, method="exact")
    b = GradientDescent(Pd, Y0, 50.0, 1.0)
    ka, ga = a.run(20, 0.5, 12.0)
    kb, gb = b.run(20, 0.5, 12.0)
    a.reset(), b.reset()
    ka, ga = a.run(30, 0.8, 1.0)
    kb, gb = b.run(30, 0.8, 1.0)
    np.testing.assert_allclose(a.embedding(), b.embedding(), rtol=1e-8, atol=1e-10)
    assert ka == pytest.approx(kb, rel=1e-8) and ga == pytest.approx(gb, rel=1e-8)
    assert isinstance(a.embedding(), np.ndarray)


def test_optimizer_dense_p_refuses_an_approximate_method():
    with pytest.raises(ValueError, match="method='fft' needs a sparse P"):
        GradientDescent(np.eye(3) / 3, np.zeros((3, 2)), 10.0, 1.0, method="fft")


def test_step_clipping_bounds_each_points_move():
    X, _ = datasets.load_digits(n=200)
    P = sparse_joint_probabilities(X.astype(np.float32), 20.0)
    Y0 = (np.random.RandomState(0).randn(200, 2) * 1e-2).astype(np.float32)
    opt = GradientDescent(P, Y0, 1e5, 1.0, method="barnes_hut", max_step_norm=0.5)
    before = opt.embedding()
    opt.run(1, 0.8, 12.0)
    moved = np.linalg.norm(opt.embedding() - before, axis=1)
    assert moved.max() <= 0.5 * (1 + 1e-5) and moved.max() > 0.4


def test_opentsne_schedule():
    X, y = datasets.load_digits(n=300)
    model = TSNE(method="barnes_hut", optimizer="opentsne", max_iter=250,
                 early_exaggeration_iter=100, random_state=0).fit(X)
    assert model.optimizer_ == "opentsne"
    # openTSNE's N / exaggeration in its units (this package's gradient is 4x
    # openTSNE's): N / 4 after the early phase, with scikit-learn's floor of 50.
    assert model.learning_rate_ == pytest.approx(75.0)
    assert metrics.knn_accuracy(model.embedding_, y, k=10) > 0.9
    exact = TSNE(method="exact", optimizer="auto", max_iter=60, early_exaggeration_iter=30).fit(X)
    assert exact.optimizer_ == "sklearn"


def test_precomputed_distances_on_the_sparse_path():
    X, _ = datasets.load_digits(n=150)
    # jittered: digits' integer pixels tie distances, and sqrt then square may
    # reorder a tie at the k-th neighbour
    X = X.astype(np.float64) + 1e-3 * np.random.default_rng(0).standard_normal(X.shape)
    # precomputed distances are squared before the search, as scikit-learn does
    D = np.sqrt(np.maximum(tsne_ops.pairwise_squared_distance(X).numpy(), 0.0))
    model = TSNE(method="barnes_hut", metric="precomputed", init="random")
    from sklearn.utils.validation import check_array

    P_pre = model.joint_probabilities(check_array(D), 30.0, sparse=True)
    P_x = sparse_joint_probabilities(X, 30.0)
    np.testing.assert_allclose(tf.sparse.to_dense(P_pre).numpy(), tf.sparse.to_dense(P_x).numpy(),
                               rtol=1e-6, atol=1e-12)
    Y = TSNE(method="barnes_hut", metric="precomputed", init="random", max_iter=100,
             early_exaggeration_iter=50, random_state=0).fit_transform(D)
    assert np.all(np.isfinite(Y))


def test_callback_and_verbose_on_the_sparse_path():
    X, _ = datasets.load_digits(n=120)
    seen = []

    def cb(it, kl, Y):
        seen.append((it, kl, Y.shape))

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        TSNE(method="fft", max_iter=100, early_exaggeration_iter=50, random_state=0, verbose=1,
             callback=cb, callback_every=25).fit(X)
    assert [s[0] for s in seen] == [25, 50, 75, 100] and seen[0][2] == (120, 2)
    text = out.getvalue()
    assert "[t-SNE] Computed sparse (nearest-neighbour) joint probabilities for 120 samples" in text
    assert "[t-SNE] KL divergence after 50 iterations with early exaggeration" in text
    assert "[t-SNE] KL divergence after 100 iterations:" in text
    # The tqdm bar on stderr: the iteration count and the KL of a 50-iteration check.
    assert "100/100" in err.getvalue() and "kl=" in err.getvalue()


def test_no_progress_bar_when_quiet(capsys):
    X, _ = datasets.load_digits(n=100)
    TSNE(method="barnes_hut", max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_n_jobs_after_tensorflow_started_warns():
    # This process has run ops already: TensorFlow's pool is fixed.
    tf.constant(1.0) + 1.0
    current = tf.config.threading.get_intra_op_parallelism_threads()
    other = 3 if current != 3 else 2
    X, _ = datasets.load_digits(n=60)
    # the TensorFlow path (a sparse method; the exact one on numpy runs without TensorFlow)
    with pytest.warns(UserWarning, match=f"n_jobs={other}.*no effect"):
        TSNE(n_jobs=other, method="barnes_hut", max_iter=60, early_exaggeration_iter=30,
             random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the count in effect already: nothing to say
        assert tsne.set_threads(current if current > 0 else -1) == current


@pytest.mark.slow
def test_n_jobs_sets_the_intra_op_threads_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "import tensorflow as tf\n"
            "from tsne_ops import TSNE, datasets\n"
            "X, _ = datasets.load_digits(n=60)\n"
            "TSNE(n_jobs=1, max_iter=60, early_exaggeration_iter=30).fit(X)\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "1"
