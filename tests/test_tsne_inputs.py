"""tsne_ops.TSNE's inputs beyond dense Euclidean data, with scikit-learn's meanings:
sparse X, other metrics (and metric_params), precomputed distances dense and
sparse (a neighbour graph), n_components=1, and their errors."""

import numpy as np
import pytest
import scipy.sparse
import tensorflow as tf
from scipy.spatial.distance import pdist, squareform
from sklearn.manifold import _t_sne as sk_tsne
from sklearn.metrics.pairwise import cosine_distances, manhattan_distances
from sklearn.neighbors import kneighbors_graph

from tsne_ops import affinities, metrics, tsne
from tsne_ops.tsne import TSNE

SHORT = dict(max_iter=60, early_exaggeration_iter=20, init="random", random_state=0)


def _blobs(n=60, d=5, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    return (rng.randn(3, d)[y] * 6 + rng.randn(n, d)), y


def _dense_p(P):
    return tf.sparse.to_dense(P).numpy() if isinstance(P, tf.SparseTensor) else np.asarray(P)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_x_gives_the_embedding_of_dense_x(fmt):
    X, _ = _blobs()
    X[np.abs(X) < 1] = 0.0
    dense = TSNE(perplexity=10, **SHORT).fit_transform(X)
    sparse = TSNE(perplexity=10, **SHORT).fit_transform(scipy.sparse.csr_matrix(X).asformat(fmt))
    np.testing.assert_array_equal(sparse, dense)
    # init='pca' takes sparse X too, as scikit-learn's PCA does
    Y = TSNE(perplexity=10, max_iter=60, early_exaggeration_iter=20, random_state=0) \
        .fit_transform(scipy.sparse.csr_matrix(X))
    assert Y.shape == (60, 2) and np.all(np.isfinite(Y))


@pytest.mark.parametrize("method", ["exact", "barnes_hut"])
def test_large_sparse_x_keeps_the_sparse_path_with_the_same_p(monkeypatch, method):
    # Past the densify bound, distances come from scikit-learn on the sparse
    # matrix: the same P up to rounding, and PCA init on the sparse matrix.
    X, y = _blobs(80)
    X[np.abs(X) < 1] = 0.0
    monkeypatch.setattr(tsne, "_DENSIFY_MAX_ELEMENTS", 0)
    model = TSNE(perplexity=10, method=method)
    Xs = model._validate_data(scipy.sparse.csr_matrix(X))
    assert scipy.sparse.issparse(Xs)
    p_sparse = _dense_p(model.joint_probabilities(Xs))
    p_dense = _dense_p(model.joint_probabilities(X))
    np.testing.assert_allclose(p_sparse, p_dense, rtol=1e-9, atol=1e-15)
    Y = TSNE(perplexity=10, method=method, max_iter=250, random_state=0).fit_transform(Xs)
    assert metrics.knn_accuracy(Y, y, k=5) > 0.95


@pytest.mark.parametrize("method", ["exact", "barnes_hut"])
def test_cosine_metric_equals_precomputed_cosine_distances(method):
    X, _ = _blobs()
    X = X.astype(np.float32)
    kw = dict(perplexity=10, method=method, **SHORT)
    a = TSNE(metric="cosine", **kw).fit_transform(X)
    b = TSNE(metric="precomputed", **kw).fit_transform(cosine_distances(X))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["exact", "barnes_hut"])
def test_manhattan_p_equals_precomputed_manhattan_p(method):
    # NearestNeighbors rounds the Manhattan distances differently from
    # manhattan_distances (scikit-learn's own test expects the embeddings to
    # differ for 'barnes_hut'), so P is compared, to rounding.
    X, _ = _blobs(90)
    model = TSNE(metric="manhattan", perplexity=10, method=method)
    pre = TSNE(metric="precomputed", perplexity=10, method=method, init="random")
    np.testing.assert_allclose(_dense_p(model.joint_probabilities(model._validate_data(X))),
                               _dense_p(pre.joint_probabilities(manhattan_distances(X))),
                               rtol=1e-9, atol=1e-15)


def test_metric_p_is_scikit_learns_of_the_squared_distances():
    X, _ = _blobs()
    model = TSNE(metric="chebyshev", perplexity=10)
    P = _dense_p(model.joint_probabilities(model._validate_data(X)))
    D = squareform(pdist(X, "chebyshev"))
    ref = squareform(sk_tsne._joint_probabilities(D ** 2, 10.0, 0))
    np.testing.assert_allclose(P, ref, rtol=2e-3, atol=1e-12)


def test_mahalanobis_takes_its_covariance_from_metric_params():
    X, _ = _blobs(50)
    kw = dict(perplexity=10, **SHORT)
    a = TSNE(metric="mahalanobis", metric_params={"V": np.cov(X.T)}, **kw).fit_transform(X)
    b = TSNE(metric="precomputed", **kw).fit_transform(squareform(pdist(X, "mahalanobis")))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="metric_params: Must provide either V or VI"):
        TSNE(metric="mahalanobis", **kw).fit(X)


@pytest.mark.parametrize("fmt", ["csr", "lil"])
def test_knn_graph_p_is_scikit_learns_over_the_stored_entries(fmt):
    X, _ = _blobs(90)
    k = 31  # min(N - 1, int(3 * 10 + 1))
    graph = kneighbors_graph(X, n_neighbors=k, mode="distance").asformat(fmt)
    model = TSNE(metric="precomputed", method="barnes_hut", perplexity=10, init="random")
    P = model.joint_probabilities(model._validate_data(graph))
    assert isinstance(P, tf.SparseTensor)
    ref_graph = kneighbors_graph(X, n_neighbors=k, mode="distance")
    ref_graph.data **= 2
    ref = sk_tsne._joint_probabilities_nn(ref_graph, 10.0, 0).toarray()
    np.testing.assert_allclose(_dense_p(P), ref, rtol=2e-3, atol=1e-12)
    # A graph of more neighbours than needed: the nearest k of each row.
    wider = kneighbors_graph(X, n_neighbors=50, mode="distance")
    np.testing.assert_allclose(_dense_p(model.joint_probabilities(model._validate_data(wider))),
                               _dense_p(P), rtol=1e-6, atol=1e-15)


def test_knn_graph_errors_name_x_and_method():
    X, _ = _blobs(40)
    graph = kneighbors_graph(X, n_neighbors=5, mode="distance")
    with pytest.raises(ValueError, match=r"X: 32 neighbors per samples are required, "
                                         r"but some samples have only 6 .*= 31 other"):
        TSNE(metric="precomputed", method="barnes_hut", perplexity=10, init="random").fit(graph)
    with pytest.raises(TypeError, match='X: TSNE with method="exact" does not accept sparse'):
        TSNE(metric="precomputed", method="exact", perplexity=3, init="random").fit(graph)


def test_sparse_matrix_of_every_distance_is_the_dense_matrix():
    X, _ = _blobs()
    D = squareform(pdist(X))
    kw = dict(metric="precomputed", method="barnes_hut", perplexity=10, **SHORT)
    a = TSNE(**kw).fit_transform(D)
    b = TSNE(**kw).fit_transform(scipy.sparse.csr_matrix(D))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["exact", "barnes_hut"])
def test_one_component_embeds_blobs_on_a_line(method):
    X, y = _blobs(90)
    Y = TSNE(1, perplexity=10, method=method, random_state=0, max_iter=300).fit_transform(
        scipy.sparse.csr_matrix(X))
    assert Y.shape == (90, 1) and np.all(np.isfinite(Y))
    assert metrics.knn_accuracy(Y, y, k=5) > 0.95


@pytest.mark.parametrize("kwargs, X, error, match", [
    (dict(metric="no-such-metric"), None, ValueError, "metric='no-such-metric'"),
    (dict(metric=3), None, ValueError, "metric=3"),
    (dict(metric="cosine", metric_params=[1]), None, ValueError, r"metric_params=\[1\]"),
    (dict(metric=lambda a, b: -1.0), None, ValueError,
     "metric=.*All distances should be positive.*-1.0"),
    (dict(metric="correlation"), np.ones((10, 3)), ValueError, "metric='correlation'.*NaN"),
    (dict(metric="precomputed", init="random"), np.full((10, 10), 1e200), ValueError,
     "X: the distances are too large to square"),
    (dict(metric="precomputed", init="random"), -np.ones((10, 10)), ValueError,
     "X should contain positive distances.*-1.0"),
    (dict(n_components=4, method="barnes_hut"), None, ValueError,
     "'n_components' should be inferior to 4.*n_components=4 with method='barnes_hut'"),
    (dict(perplexity=10), np.zeros((10, 2)), ValueError,
     r"perplexity \(10\) must be less than n_samples \(10\)"),
])
def test_bad_input_names_the_argument(kwargs, X, error, match):
    X = _blobs(10)[0] if X is None else X
    kwargs.setdefault("perplexity", 3)
    with pytest.raises(error, match=match):
        TSNE(**kwargs).fit(X)
