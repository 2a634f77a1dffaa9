"""tsne_ops.metrics against scikit-learn, an independent numpy reference and
cases small enough to check by hand; each test fails for a wrong metric."""
import numpy as np
import pytest
from sklearn.manifold import trustworthiness as sk_trustworthiness
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from tsne_ops import metrics


def _data(n=150, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    X = rng.randn(n, 6) + 2.0 * y[:, None]
    Y = rng.randn(n, 2) + 1.5 * y[:, None]
    return X, Y, y


def _trustworthiness_reference(X, Y, k):
    """Venna & Kaski's trustworthiness, written out from its definition:

    T(k) = 1 - 2 / (n k (2n - 3k - 1)) sum_i sum_{j in U_k(i)} (r(i, j) - k),
    U_k(i): the k nearest neighbours of i in the embedding that are not among
    its k nearest in the data; r(i, j): the rank of j among i's data neighbours.
    """
    n = len(X)
    dx = ((X[:, None] - X[None]) ** 2).sum(-1)
    dy = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    penalty = 0.0
    for i in range(n):
        order = np.argsort(dx[i], kind="stable")
        rank = np.empty(n, int)
        rank[order] = np.arange(1, n + 1)
        data_nn = set(order[:k])
        for j in np.argsort(dy[i], kind="stable")[:k]:
            if j not in data_nn:
                penalty += rank[j] - k
    return 1.0 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * penalty


# ------------------------------------------------------------ k-NN accuracy --

def test_loo_knn_equals_sklearn_leave_one_out():
    _, Y, y = _data()
    for k in (1, 5, 10):
        ref = cross_val_score(KNeighborsClassifier(k), Y, y, cv=LeaveOneOut()).mean()
        assert metrics.knn_accuracy(Y, y, k=k) == pytest.approx(ref)


def test_knn_accuracy_by_hand():
    # Points on a line, no tied distances. k = 1: the nearest other point of
    # 3 is 1 (label 0, wrong), of 14 is 11.5 (label 1, wrong), the other four
    # are right: 4/6. k = 3: only 10 and 11.5 get their own label: 2/6.
    Y = np.array([[0.0], [1.0], [3.0], [10.0], [11.5], [14.0]])
    labels = np.array([0, 0, 1, 1, 1, 0])
    assert metrics.knn_accuracy(Y, labels, k=1) == pytest.approx(4 / 6)
    assert metrics.knn_accuracy(Y, labels, k=3) == pytest.approx(2 / 6)


def test_knn_accuracy_never_counts_the_point_itself():
    # Exact duplicates with different labels: a point that voted for itself
    # would score 1.0; its only true neighbour is its twin.
    Y = np.array([[0.0], [0.0], [5.0], [5.0]])
    assert metrics.knn_accuracy(Y, np.array([0, 1, 1, 1]), k=1) == pytest.approx(0.5)
    assert metrics.knn_accuracy(Y, np.array([0, 0, 1, 1]), k=1) == 1.0


def test_knn_separates_good_from_random():
    _, Y, y = _data()
    rng = np.random.RandomState(1)
    assert metrics.knn_accuracy(Y, y) > 0.7
    assert metrics.knn_accuracy(rng.randn(*Y.shape), y) < 0.5
    assert 0.7 < metrics.knn_accuracy(Y, y, cv=5) <= 1.0


def test_train_test_accuracy():
    _, Y, y = _data()
    assert metrics.train_test_knn_accuracy(Y[:100], y[:100], Y[100:], y[100:]) == pytest.approx(
        KNeighborsClassifier(1).fit(Y[:100], y[:100]).score(Y[100:], y[100:]))
    # By hand: test points next to training points of another class score 0.
    tr, te = np.array([[0.0], [10.0]]), np.array([[0.5], [9.0], [1.0]])
    assert metrics.train_test_knn_accuracy(tr, [0, 1], te, [1, 0, 0]) == pytest.approx(1 / 3)


# ---------------------------------------------------------- trustworthiness --

@pytest.mark.parametrize("k", [1, 5, 12])
def test_trustworthiness_is_sklearns_and_the_definitions(k):
    X, Y, _ = _data(80)
    value = metrics.trustworthiness(X, Y, n_neighbors=k)
    assert value == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=k))
    assert value == pytest.approx(_trustworthiness_reference(X, Y, k))


def test_trustworthiness_with_tied_distances_ranks_the_smaller_index_first():
    # Integer data ties everywhere; the rule is the stable one of the reference.
    rng = np.random.RandomState(5)
    X = rng.randint(0, 3, size=(90, 4)).astype(np.float64)
    Y = rng.randn(90, 2)
    assert metrics.trustworthiness(X, Y, n_neighbors=6) == pytest.approx(
        _trustworthiness_reference(X, Y, 6), abs=1e-12)


def test_trustworthiness_runs_in_row_blocks_without_n_by_n_matrices():
    # More points than one block of rows (2^24 / n): the blocks must add up.
    X, Y, _ = _data(5000)
    idx = np.random.RandomState(1).choice(5000, 400, replace=False)
    assert metrics.trustworthiness(X, Y) == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=5))
    assert metrics.trustworthiness(X[idx], Y[idx]) == pytest.approx(
        _trustworthiness_reference(X[idx], Y[idx], 5))


def test_trustworthiness_is_one_for_neighbourhood_preserving_embeddings():
    X, _, _ = _data(80)
    assert metrics.trustworthiness(X, X) == 1.0
    # Rotation, scale and translation keep every neighbourhood.
    q, _ = np.linalg.qr(np.random.RandomState(3).randn(6, 6))
    assert metrics.trustworthiness(X, 7.0 * X @ q + 100.0) == pytest.approx(1.0)


def test_trustworthiness_of_garbled_embeddings():
    X, Y, _ = _data(120)
    # Rows of the embedding shuffled: neighbourhoods are random, T is about
    # 0.5 (its expectation for a random embedding), far below a real one.
    garbled = Y[np.random.RandomState(4).permutation(len(Y))]
    t = metrics.trustworthiness(X, garbled)
    assert t == pytest.approx(_trustworthiness_reference(X, garbled, 5))
    assert 0.35 < t < 0.65 < metrics.trustworthiness(X, Y)
    # By hand: 6 points on a line (no tied distances), the embedding swaps the
    # two ends. For k = 1 the embedding neighbours of points 0, 1 and 5 are 4,
    # 5 and 1, of data ranks 4, 5 and 4; the others keep theirs:
    # T = 1 - 2 / (6 (12 - 3 - 1)) ((4 - 1) + (5 - 1) + (4 - 1)) = 7/12.
    line = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [15.0]])
    swapped = line[[5, 1, 2, 3, 4, 0]]
    assert metrics.trustworthiness(line, swapped, n_neighbors=1) == pytest.approx(7 / 12)
    assert _trustworthiness_reference(line, swapped, 1) == pytest.approx(7 / 12)


def test_trustworthiness_max_samples_scores_a_seeded_subset():
    X, Y, _ = _data(150)
    idx = np.random.RandomState(7).choice(150, 60, replace=False)
    assert metrics.trustworthiness(X, Y, max_samples=60, random_state=7) == pytest.approx(
        sk_trustworthiness(X[idx], Y[idx], n_neighbors=5))
    assert metrics.trustworthiness(X, Y, max_samples=1000) == pytest.approx(
        sk_trustworthiness(X, Y, n_neighbors=5))


# ------------------------------------------------------------ KL divergence --

def _kl_reference(X, Y, perplexity, dof):
    """KL(P || Q) in numpy: P from the ops (tested against scikit-learn in
    test_ops_affinities), Q the Student-t with `dof` degrees of freedom."""
    import tsne_ops

    P = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(X), perplexity).numpy()
    d2 = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    W = (1.0 + d2 / dof) ** (-(dof + 1.0) / 2.0)
    np.fill_diagonal(W, 0)
    Q = W / W.sum()
    mask = ~np.eye(len(X), dtype=bool)
    return np.sum(P[mask] * np.log(P[mask] / Q[mask]))


@pytest.mark.parametrize("dof", [1.0, 0.6, 3.0])
def test_kl_divergence_matches_numpy_reference(dof):
    X, Y, _ = _data(60)
    assert metrics.kl_divergence(X, Y, perplexity=10.0, dof=dof) == pytest.approx(
        _kl_reference(X, Y, 10.0, dof), rel=1e-6)


def test_kl_divergence_is_lower_for_a_better_embedding():
    X, Y, _ = _data(60)
    garbled = Y[np.random.RandomState(5).permutation(60)]
    assert metrics.kl_divergence(X, Y, perplexity=10.0) < metrics.kl_divergence(
        X, garbled, perplexity=10.0)


# ----------------------------------------------------------------- evaluate --

def test_evaluate_values_are_the_metrics():
    X, Y, y = _data(60)
    out = metrics.evaluate(X, Y, y, perplexity=10.0, dof=0.6, k=5, n_neighbors=4)
    assert out["n_samples"] == 60 and out["knn_k"] == 5
    assert out["kl_divergence"] == pytest.approx(_kl_reference(X, Y, 10.0, 0.6), rel=1e-6)
    assert out["trustworthiness"] == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=4))
    assert out["knn_accuracy"] == pytest.approx(
        cross_val_score(KNeighborsClassifier(5), Y, y, cv=LeaveOneOut()).mean())
    assert "kl_divergence" not in metrics.evaluate(X, Y, y, perplexity=10.0, kl=False)
    # Subsampled for trustworthiness only: the k-NN accuracy still uses all points.
    sub = metrics.evaluate(X, Y, y, perplexity=10.0, kl=False, max_samples=30)
    idx = np.random.RandomState(0).choice(60, 30, replace=False)
    assert sub["trustworthiness"] == pytest.approx(
        sk_trustworthiness(X[idx], Y[idx], n_neighbors=5))
    assert sub["knn_accuracy"] == pytest.approx(metrics.knn_accuracy(Y, y, k=10))


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
