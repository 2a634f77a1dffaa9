"""Both estimators on data like users have, against scikit-learn on the same data.

Cases (400 digits, perplexity 10): duplicate rows beyond the perplexity (10
rows 16 times each, so each copy has 15 neighbours at distance 0), binarised
images (also as bool), integer images (uint8 pixels 0-255, also as float32
of those integers), a large constant offset (1e3, 1e4), very small and very
large scales (1e-12, 1e12); each in float32 and float64 (what the dataset
loaders and numpy give).

Each embedding must be finite and as good as scikit-learn's ``TSNE`` (its
default Barnes-Hut method, same perplexity and iterations) on the same data
in float64: leave-one-out 1-NN accuracy of the digit labels and
trustworthiness within a margin of scikit-learn's. Copies of one row must be
each other's nearest neighbours. ParametricTSNE trains 10 epochs, so its
margin is wider.

Known to fail until the kernel fixes of issue 17 are merged (not marked:
these tests are how the fixes are seen to work):
- TSNE float32 with duplicates: the float32 perplexity search gives NaN on
  rows with more ties than the perplexity (defect 1).
- TSNE float32 with offsets: float32 distances far from the origin lose the
  spread (defect 2), many become 0 and tie (then defect 1).
- ParametricTSNE with duplicates or offsets in every dtype: its batch P is
  always computed in float32 (the same two defects).
"""
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from tsne_ops import TSNE, ParametricTSNE, datasets, metrics

PERPLEXITY = 10.0
MAX_ITER = 500
N = 400
DUPLICATED = np.repeat(np.arange(10), 15)  # rows 0-9, 15 extra copies each


@pytest.fixture(scope="module")
def digits():
    X, y = datasets.load_digits(n=N)
    return X.astype(np.float64), y


def _duplicates(X, y):
    return np.vstack([X, X[DUPLICATED]]), np.concatenate([y, y[DUPLICATED]])


# name -> (X [N, 64] float64 in [0, 1], y) -> (X, y); the data in its own dtype
CASES = {
    "duplicates": _duplicates,
    "binarised": lambda X, y: (X > 0.5, y),
    "uint8_pixels": lambda X, y: (np.round(X * 255).astype(np.uint8), y),
    "offset_1e3": lambda X, y: (X + 1e3, y),
    "offset_1e4": lambda X, y: (X + 1e4, y),
    "scale_1e-12": lambda X, y: (X * 1e-12, y),
    "scale_1e12": lambda X, y: (X * 1e12, y),
}
# every case in float32 and float64; bool and uint8 also as they come
PARAMS = [(c, d) for c in CASES for d in ("float32", "float64")] + [
    ("binarised", "native"), ("uint8_pixels", "native")]


def _case(digits, name, dtype):
    X, y = CASES[name](*digits)
    return (X if dtype == "native" else X.astype(dtype)), y


_SKLEARN = {}


def _sklearn_quality(digits, name):
    """(1-NN accuracy, trustworthiness) of scikit-learn's TSNE, once per case."""
    if name not in _SKLEARN:
        from sklearn.manifold import TSNE as SkTSNE

        X, y = _case(digits, name, "float64")
        Y = SkTSNE(perplexity=PERPLEXITY, max_iter=MAX_ITER, random_state=0).fit_transform(X)
        _SKLEARN[name] = _quality(X, Y, y)
    return _SKLEARN[name]


def _quality(X, Y, y):
    return (metrics.knn_accuracy(Y, y, k=1),
            metrics.trustworthiness(np.asarray(X, np.float64), Y))


def _copies_together(Y):
    """Fraction of the 15 nearest neighbours of each duplicated row (and
    its copies) that are copies of that same row."""
    rows = np.concatenate([np.arange(10), N + np.arange(len(DUPLICATED))])
    group = np.concatenate([np.arange(10), DUPLICATED])
    owner = np.full(len(Y), -1)
    owner[rows] = group
    _, nn = NearestNeighbors(n_neighbors=16).fit(Y).kneighbors(Y[rows])
    return float(np.mean(owner[nn[:, 1:]] == group[:, None]))


def _check(digits, name, X, y, Y, acc_margin, trust_margin):
    assert Y.shape[0] == len(X) and np.all(np.isfinite(Y)), name
    acc, trust = _quality(X, Y, y)
    sk_acc, sk_trust = _sklearn_quality(digits, name)
    assert acc >= sk_acc - acc_margin, (name, acc, sk_acc)
    assert trust >= sk_trust - trust_margin, (name, trust, sk_trust)
    if name == "duplicates":
        # scikit-learn: 0.99
        assert _copies_together(Y) >= 0.9


@pytest.mark.parametrize("name, dtype", PARAMS)
def test_tsne_as_good_as_sklearn(digits, name, dtype):
    X, y = _case(digits, name, dtype)
    Y = TSNE(perplexity=PERPLEXITY, max_iter=MAX_ITER, random_state=0).fit_transform(X)
    # measured (float64): within 0.01 of scikit-learn on every case
    _check(digits, name, X, y, Y, acc_margin=0.02, trust_margin=0.01)


@pytest.mark.parametrize("name, dtype", PARAMS)
def test_parametric_as_good_as_sklearn(digits, name, dtype):
    X, y = _case(digits, name, dtype)
    # len(X) // 8 heads with three tails each: half the points per step
    model = ParametricTSNE(perplexity=PERPLEXITY, batch_size=len(X) // 8, epochs=10,
                           learning_rate=2e-3, lr_schedule="constant", random_state=0)
    Y = model.fit_transform(X)
    # (the rate constant, as when the margins were measured; the default
    # decays it along a cosine.) Measured with the per-batch P (batches of
    # len(X) // 2): 0.905-0.978 1-NN
    # after 10 epochs where scikit-learn has
    # 0.94-0.993 (binarised is the hardest for both)
    _check(digits, name, X, y, Y, acc_margin=0.06, trust_margin=0.04)
    if name == "duplicates":
        # the encoder is a function: identical rows, identical points
        np.testing.assert_allclose(Y[N:], Y[DUPLICATED], rtol=1e-5, atol=1e-4)
