"""tsne_ops.affinities: the one home of "P from X" (dense and sparse)."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.manifold import _t_sne as sk_tsne
from sklearn.neighbors import NearestNeighbors

import tsne_ops
from tsne_ops import affinities


@pytest.fixture
def data():
    return np.random.default_rng(3).normal(size=(300, 8))


def test_exact_is_the_ops_composition_and_precomputed_agrees(data):
    p = affinities.exact_joint_probabilities(data, 20.0)
    d2 = tsne_ops.pairwise_squared_distance(data)
    np.testing.assert_array_equal(p, tsne_ops.joint_probabilities(d2, 20.0))
    np.testing.assert_array_equal(affinities.exact_joint_probabilities(d2, 20.0, precomputed=True), p)


def test_sparse_matches_scikit_learns_nn_path(data):
    # scikit-learn's method='barnes_hut' P: kNN with k = min(N - 1, 3 perplexity + 1).
    k = affinities.default_n_neighbors(len(data), 20.0)
    assert k == 61
    nn = NearestNeighbors(n_neighbors=k).fit(data)
    graph = nn.kneighbors_graph(mode="distance")
    graph.data **= 2
    ref = sk_tsne._joint_probabilities_nn(graph, 20.0, 0).toarray()
    p = affinities.sparse_joint_probabilities(data, 20.0)
    assert isinstance(p, tf.SparseTensor)
    np.testing.assert_allclose(tf.sparse.to_dense(p), ref, rtol=2e-3, atol=1e-12)


def test_sparse_with_every_neighbour_equals_exact(data):
    p = affinities.sparse_joint_probabilities(data, 20.0, n_neighbors=len(data) - 1)
    dense = affinities.exact_joint_probabilities(data, 20.0).numpy()
    # The dense op floors P at 2.2e-16 off the diagonal; the sparse one stores true values.
    np.testing.assert_allclose(tf.sparse.to_dense(p), dense, rtol=1e-6, atol=3e-16)


def test_default_n_neighbors_is_capped_by_n():
    assert affinities.default_n_neighbors(10, 30.0) == 9
