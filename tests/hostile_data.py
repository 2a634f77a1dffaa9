"""Data like users have (duplicates, binary and integer values, a large
mean, extreme scales) and the float64 references the kernels must match on
it. numpy only: the GPU tests (no TensorFlow, no scikit-learn) use it too."""
import zlib

import numpy as np


def duplicates(rng, n_distinct=4, copies=10, dim=5):
    """n_distinct points, each repeated `copies` times: every row has
    copies - 1 points tied at distance 0."""
    return np.repeat(rng.normal(size=(n_distinct, dim)), copies, axis=0)


def binary_images(rng, n=120, dim=64, density=0.3):
    """0/1 pixels: squared distances are Hamming distances, so many points
    tie at each row's smallest distance."""
    return (rng.random((n, dim)) < density).astype(np.float64)


def integer_images(rng, n=120, dim=64, levels=17):
    """Pixel intensities 0..levels-1 (sklearn digits has 17, uint8 has 256)."""
    return rng.integers(0, levels, size=(n, dim)).astype(np.float64)


def offset(rng, n, dim, shift):
    """Unit-spread points around a mean of `shift` in every coordinate."""
    return rng.normal(size=(n, dim)) + shift


def centred_squared_distances(x, y=None):
    """float64 squared distances computed after removing the mean of x (and
    y): exact enough to judge float32 results on data far from the origin."""
    x = np.asarray(x, dtype=np.float64)
    y = x if y is None else np.asarray(y, dtype=np.float64)
    c = np.concatenate([x, y], axis=-2).mean(axis=-2, keepdims=True)
    xc, yc = x - c, y - c
    return ((xc[..., :, None, :] - yc[..., None, :, :]) ** 2).sum(-1)


def spread(x):
    """Mean squared distance to the mean: the scale distance errors are
    judged against (not |x|^2, which grows with the offset)."""
    x = np.asarray(x, dtype=np.float64)
    return float(((x - x.mean(axis=-2, keepdims=True)) ** 2).sum(-1).mean())


def tied_rows(d, perplexity):
    """The rows of a square distance matrix that cannot reach `perplexity`
    and their beta -> infinity limit.

    A row whose smallest off-diagonal distance is shared by m points has
    entropy > log(m) at every finite beta, and P(j|i) tends to 1/m on the m
    tied points. Returns (mask [n] of rows with m > perplexity, limit [n, n]
    of the uniform-on-ties rows, zero elsewhere)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[-1]
    off = np.where(np.eye(n, dtype=bool), np.inf, d)
    ties = off == off.min(axis=-1, keepdims=True)
    m = ties.sum(-1)
    return m > perplexity, ties / m[:, None]


# ---------------------------------------------- named cases of the op tests --

N = 300


def make_case(name):
    """The named case of the op tests (float64 [n, dim]); scikit-learn loads the digits."""
    from sklearn.datasets import load_digits  # not needed by the GPU tests

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    digits = load_digits().data[:N]  # 0..16
    if name == "duplicates":  # 15 copies of 20 points: 14 ties at 0 per row
        return duplicates(rng, N // 15, 15, dim=30)
    if name == "identical":
        return np.full((60, 10), 3.7)
    if name == "binarised_digits":
        return (digits > 7).astype(np.float64)
    if name == "binary_10_pixels":
        return integer_images(rng, N, 10, levels=2)
    if name == "integer_digits":
        return digits
    if name == "uint8_pixels":
        return (digits * 15.9375).astype(np.uint8).astype(np.float64)
    if name == "constant_columns":
        x = rng.normal(size=(N, 50))
        x[:, ::3] = 5.0
        return x
    if name == "offset_1e3":
        return offset(rng, N, 50, 1e3)
    if name == "offset_1e4":
        return offset(rng, N, 20, 1e4)
    if name == "scale_1e-6":
        return rng.normal(size=(N, 30)) * 1e-6
    if name == "scale_1e6":
        return rng.normal(size=(N, 30)) * 1e6
    raise KeyError(name)


# name -> perplexity. Ties beyond the perplexity: every row of "duplicates"
# and "identical"; some rows of the binary cases (a row's nearest neighbours
# at one Hamming distance), at the small perplexities such data gets.
CASES = {"duplicates": 10.0, "identical": 10.0, "binarised_digits": 2.5, "binary_10_pixels": 5.0,
         "integer_digits": 10.0, "uint8_pixels": 10.0, "constant_columns": 10.0,
         "offset_1e3": 10.0, "offset_1e4": 10.0, "scale_1e-6": 10.0, "scale_1e6": 10.0}
