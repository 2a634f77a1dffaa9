"""Quality measures for embeddings.

- :func:`kl_divergence`: the t-SNE objective KL(P || Q) of an embedding, with P
  computed from the data by the same ops the optimiser uses.
- :func:`trustworthiness`: scikit-learn's ``sklearn.manifold.trustworthiness``
  (how many of a point's embedding neighbours are also its data neighbours).
- :func:`knn_accuracy`: how well an embedding keeps classes apart; k-NN
  classification accuracy by leave-one-out (the default) or k-fold
  cross-validation with scikit-learn's ``KNeighborsClassifier``.
- :func:`train_test_knn_accuracy`: for parametric models, a k-NN classifier
  fitted on the training embedding and scored on the embedding of held-out data.
"""
import numpy as np


def _as_2d(name, a):
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n_samples, n_features], got shape {a.shape}")
    return a


def _check_labels(labels, n):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must be a 1-D array of length {n}, got shape {labels.shape}")
    return labels


def _check_k(k, n, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={k!r}")
    if k >= n:
        raise ValueError(f"{name} must be less than the number of samples ({n}), got {name}={k}")
    return int(k)


def kl_divergence(X, embedding, perplexity=30.0, dof=1.0):
    """KL(P || Q) of ``embedding`` for the data ``X``, computed in float64.

    P is the perplexity-calibrated joint distribution of ``X`` (as
    :class:`tsne_ops.TSNE` builds it) and Q the Student-t distribution with
    ``dof`` degrees of freedom over the embedding.
    """
    import tensorflow as tf

    from tsne_ops import ops
    from tsne_ops.affinities import exact_joint_probabilities

    X = _as_2d("X", X).astype(np.float64)
    Y = _as_2d("embedding", embedding).astype(np.float64)
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} samples but embedding has {len(Y)}")
    p = exact_joint_probabilities(X, perplexity)
    return float(ops.tsne_loss(p, tf.constant(Y), dof=dof))


def trustworthiness(X, embedding, n_neighbors=5, max_samples=None, random_state=0):
    """Trustworthiness in [0, 1] (Venna & Kaski; scikit-learn's definition):
    1 when every point's embedding neighbours are also its data neighbours.

    ``T(k) = 1 - 2 / (n k (2n - 3k - 1)) sum_i sum_{j in U_k(i)} (r(i, j) - k)``,
    with ``U_k(i)`` the ``k`` nearest neighbours of ``i`` in the embedding
    that are not among its ``k`` nearest in the data and ``r(i, j)`` the rank
    of ``j`` among ``i``'s data neighbours (ties: the smaller index first).

    Exact and without N x N matrices: the embedding's neighbours come from
    :func:`tsne_ops.nearest_neighbors`, the data ranks from blocks of rows of
    distances (O(N^2 D) time, about 128 MB of memory), so it runs on all of
    MNIST. ``max_samples`` scores a random subset of that many points instead.
    """
    import tensorflow as tf

    from tsne_ops import ops

    X = _as_2d("X", X)
    Y = _as_2d("embedding", embedding)
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} samples but embedding has {len(Y)}")
    if max_samples is not None and max_samples < len(X):
        idx = np.random.RandomState(random_state).choice(len(X), max_samples, replace=False)
        X, Y = X[idx], Y[idx]
    n = len(X)
    # As scikit-learn: n_neighbors < n_samples / 2 keeps the normaliser positive.
    k = _check_k(n_neighbors, (n + 1) // 2, "n_neighbors")
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    for name, a in (("X", X), ("embedding", Y)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, but contains NaN or Inf")
    embedding_nn = ops.nearest_neighbors(Y, k)[0].numpy()
    x_all = tf.constant(X)
    rows = max(1, min(n, (1 << 24) // n))
    penalty = 0
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = ops.pairwise_squared_distance(x_all[start:stop], x_all).numpy()
        local = np.arange(stop - start)
        d[local, start + local] = np.inf  # a point is not its own neighbour
        nn = embedding_nn[start:stop]
        d_nn = np.take_along_axis(d, nn, axis=1)
        for c in range(k):
            ref = d_nn[:, c:c + 1]
            closer = (d < ref).sum(axis=1)
            tied_before = ((d == ref) & (np.arange(n)[None] < nn[:, c:c + 1])).sum(axis=1)
            rank = 1 + closer + tied_before
            penalty += int(np.maximum(rank - k, 0).sum())
    return float(1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty)


def knn_accuracy(embedding, labels, k=10, cv="loo", random_state=0):
    """Accuracy of a k-NN classifier on the embedding.

    ``cv='loo'`` (default): leave-one-out, each point classified by the
    majority label of its ``k`` nearest other points (ties go to the smallest
    label, as in ``KNeighborsClassifier``). The neighbours come from the
    exact blocked :func:`tsne_ops.nearest_neighbors` (O(N k) memory, so this
    runs at N = 70,000 and beyond). ``cv=int``: stratified k-fold
    cross-validation of ``KNeighborsClassifier(k)``.
    """
    Y = _as_2d("embedding", embedding)
    labels = _check_labels(labels, len(Y))
    k = _check_k(k, len(Y))
    if cv == "loo":
        from tsne_ops import ops

        if Y.dtype not in (np.float32, np.float64):
            Y = Y.astype(np.float64)
        if not np.all(np.isfinite(Y)):
            raise ValueError("embedding must be finite, but contains NaN or Inf")
        # The point itself is excluded by index, so duplicates need no care.
        idx, _ = ops.nearest_neighbors(Y, k)
        neighbours = idx.numpy()
        classes, encoded = np.unique(labels, return_inverse=True)
        votes = encoded[neighbours]
        counts = np.zeros((len(Y), len(classes)), np.int64)
        np.add.at(counts, (np.arange(len(Y))[:, None], votes), 1)
        predicted = classes[np.argmax(counts, axis=1)]
        return float(np.mean(predicted == labels))
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be 'loo' or an integer >= 2, got cv={cv!r}")
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    return float(np.mean(cross_val_score(KNeighborsClassifier(n_neighbors=k), Y, labels, cv=folds)))


def train_test_knn_accuracy(train_embedding, train_labels, test_embedding, test_labels, k=1):
    """Accuracy on the test embedding of a k-NN classifier fitted on the training one."""
    from sklearn.neighbors import KNeighborsClassifier

    Ytr = _as_2d("train_embedding", train_embedding)
    Yte = _as_2d("test_embedding", test_embedding)
    if Ytr.shape[1] != Yte.shape[1]:
        raise ValueError(f"train_embedding has {Ytr.shape[1]} dimensions but test_embedding has {Yte.shape[1]}")
    ytr = _check_labels(train_labels, len(Ytr))
    yte = _check_labels(test_labels, len(Yte))
    k = _check_k(k, len(Ytr) + 1)
    clf = KNeighborsClassifier(n_neighbors=k).fit(Ytr, ytr)
    return float(clf.score(Yte, yte))


def evaluate(X, embedding, labels, perplexity=30.0, dof=1.0, k=10, n_neighbors=5,
             kl=True, max_samples=5000):
    """The usual report for an embedding of ``X``: a dict of floats.

    Keys: ``kl_divergence`` (when ``kl``), ``trustworthiness``,
    ``knn_accuracy`` (leave-one-out ``k``-NN) and ``n_samples``. Data larger
    than ``max_samples`` is subsampled for trustworthiness.
    """
    out = {"n_samples": int(len(embedding))}
    if kl:
        out["kl_divergence"] = kl_divergence(X, embedding, perplexity=perplexity, dof=dof)
    out["trustworthiness"] = trustworthiness(X, embedding, n_neighbors=n_neighbors,
                                             max_samples=max_samples)
    out[f"knn_accuracy"] = knn_accuracy(embedding, labels, k=k)
    out["knn_k"] = int(k)
    return out
