"""Fixtures-as-functions that several test modules share (test modules never
import one another): a sparse P over a random kNN graph, and tiny IDX files
that stand in for MNIST."""
import gzip
import struct

import numpy as np

import references
import tsne_ops


def sparse_p(rng, n, k, dtype, batch=None, perplexity=None, dim=3):
    """``knn_joint_probabilities`` over the exact kNN graph of random Gaussian
    points, ``[n, d]`` or ``batch`` of them; perplexity ``min(10, k - 1)``
    unless given."""
    parts = []
    for _ in range(batch or 1):
        x = rng.normal(size=(n, dim)).astype(dtype)
        d2 = references.squared_distances(x, x)
        np.fill_diagonal(d2, np.inf)
        idx = np.argsort(d2, axis=1, kind="stable")[:, :k].astype(np.int64)
        parts.append((idx, np.take_along_axis(d2, idx, 1).astype(dtype)))
    idx = np.stack([p[0] for p in parts]) if batch else parts[0][0]
    d2 = np.stack([p[1] for p in parts]) if batch else parts[0][1]
    if perplexity is None:
        perplexity = min(10.0, k - 1.0)
    return tsne_ops.knn_joint_probabilities(idx, d2, perplexity)


def write_idx(directory, prefix, images, labels):
    """MNIST's IDX files (gzip) for uint8 `images` [n, rows, cols] and `labels`."""
    directory.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())
    with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())
