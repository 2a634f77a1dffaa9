"""tsne_ops.metrics against scikit-learn and numpy references."""
import numpy as np
import pytest
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tsne_ops import metrics


def _data(n=150, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    X = rng.randn(n, 6) + 2.0 * y[:, None]
    Y = rng.randn(n, 2) + 1.5 * y[:, None]
    return X, Y, y


def test_loo_knn_equals_sklearn_leave_one_out():
    _, Y, y = _data()
    for k in (1, 5, 10):
        ref = cross_val_score(KNeighborsClassifier(k), Y, y, cv=LeaveOneOut()).mean()
        assert metrics.knn_accuracy(Y, y, k=k) == pytest.approx(ref)


def test_knn_separates_good_from_random():
    _, Y, y = _data()
    rng = np.random.RandomState(1)
    assert metrics.knn_accuracy(Y, y) > 0.7
    assert metrics.knn_accuracy(rng.randn(*Y.shape), y) < 0.5
    assert 0.7 < metrics.knn_accuracy(Y, y, cv=5) <= 1.0


def test_trustworthiness_is_sklearns():
    from sklearn.manifold import trustworthiness

    X, Y, _ = _data()
    assert metrics.trustworthiness(X, Y, n_neighbors=5) == pytest.approx(
        trustworthiness(X, Y, n_neighbors=5))
    assert metrics.trustworthiness(X, X[:, :2] * 0 + X[:, :2]) <= 1.0
    assert 0 < metrics.trustworthiness(X, Y, max_samples=60) <= 1


def test_kl_divergence_matches_numpy_reference():
    import tsne_ops

    X, Y, _ = _data(60)
    P = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(X), 10.0).numpy()
    d2 = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    W = 1.0 / (1.0 + d2)
    np.fill_diagonal(W, 0)
    Q = W / W.sum()
    mask = ~np.eye(60, dtype=bool)
    ref = np.sum(P[mask] * np.log(P[mask] / Q[mask]))
    assert metrics.kl_divergence(X, Y, perplexity=10.0) == pytest.approx(ref, rel=1e-6)


def test_train_test_accuracy():
    _, Y, y = _data()
    assert metrics.train_test_knn_accuracy(Y[:100], y[:100], Y[100:], y[100:]) == pytest.approx(
        KNeighborsClassifier(1).fit(Y[:100], y[:100]).score(Y[100:], y[100:]))


def test_evaluate_reports_everything():
    X, Y, y = _data(60)
    out = metrics.evaluate(X, Y, y, perplexity=10.0, k=5)
    assert set(out) >= {"kl_divergence", "trustworthiness", "knn_accuracy", "n_samples"}
    assert out["n_samples"] == 60 and out["knn_k"] == 5


@pytest.mark.parametrize("call, match", [
    (lambda Y, y: metrics.knn_accuracy(Y, y, k=0), "k must be"),
    (lambda Y, y: metrics.knn_accuracy(Y, y, k=150), "k must be less"),
    (lambda Y, y: metrics.knn_accuracy(Y, y[:-1]), "labels"),
    (lambda Y, y: metrics.knn_accuracy(Y[:, 0], y), "2-D"),
    (lambda Y, y: metrics.knn_accuracy(Y, y, cv="kfold"), "cv must be"),
    (lambda Y, y: metrics.trustworthiness(Y, Y[:-1]), "samples"),
    (lambda Y, y: metrics.train_test_knn_accuracy(Y, y, Y[:, :1], y), "dimensions"),
])
def test_bad_arguments(call, match):
    _, Y, y = _data()
    with pytest.raises(ValueError, match=match):
        call(Y, y)
