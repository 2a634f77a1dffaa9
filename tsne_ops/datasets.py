"""Datasets for the examples, tests and the command line.

Every loader returns ``(X, y)``: ``X`` is a float32 array ``[n, n_features]``
of flattened images scaled to [0, 1], ``y`` an int64 array of class labels.
The image shape of each dataset is in :data:`IMAGE_SHAPES` (the conv encoder of
:class:`tsne_ops.ParametricTSNE` needs it) and the class names in
:data:`CLASS_NAMES`.

- ``digits``: scikit-learn's 1797 8x8 handwritten digits (bundled with
  scikit-learn, no files needed). Pixel values 0..16 are divided by 16.
- ``mnist`` and ``fashion-mnist``: read from a directory holding the standard
  gzip-compressed IDX files (``train-images-idx3-ubyte.gz`` and friends).
  Pixel values 0..255 are divided by 255.

The data directory is, in order: the ``data_dir`` argument, the environment
variable ``TSNE_OPS_DATA_DIR``, or ``../shared/data`` next to the repository
checkout when it exists. A dataset lives in ``<data_dir>/<name>``
(``mnist/``, ``fashion-mnist/``) or directly in ``data_dir``.
"""
import gzip
import os
import struct
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist", "fashion-mnist")

IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28), "fashion-mnist": (28, 28)}

CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


def default_data_dir():
    """The directory searched when no ``data_dir`` is given, or None.

    ``TSNE_OPS_DATA_DIR`` if set, else ``../shared/data`` relative to the
    repository root (the directory holding the ``tsne_ops`` package) if it
    exists.
    """
    env = os.environ.get("TSNE_OPS_DATA_DIR")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def _check_n(n):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got n={n!r}")
    return int(n)


def _take(x, y, n):
    n = _check_n(n)
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def load_digits(n=None):
    """scikit-learn's 8x8 digits: ``(X [1797, 64] float32 in [0, 1], y)``.

    ``n`` keeps the first ``n`` samples (all 1797 by default).
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return _take(x, y, n)


def _read_idx(path, magic, n=None):
    """Read a (possibly gzip-compressed) IDX file; the first ``n`` items."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(8)
        if len(header) < 8:
            raise ValueError(f"{path}: not an IDX file (truncated header)")
        got_magic, count = struct.unpack(">II", header)
        if got_magic != magic:
            raise ValueError(f"{path}: bad IDX magic number {got_magic}, expected {magic}")
        shape = (count,)
        if magic == _IMAGES_MAGIC:
            rows, cols = struct.unpack(">II", f.read(8))
            shape = (count, rows, cols)
        if n is not None:
            shape = (min(n, count),) + shape[1:]
        size = int(np.prod(shape))
        data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{path}: truncated, expected {size} bytes of data, got {len(data)}")
    return np.frombuffer(data, np.uint8).reshape(shape)


def _resolve_dir(name, data_dir):
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    if base is None:
        raise FileNotFoundError(
            f"no data directory for {name!r}: pass data_dir (--data-dir) or set TSNE_OPS_DATA_DIR")
    if not base.is_dir():
        raise FileNotFoundError(f"data directory not found: {base}")
    sub = base / name
    if sub.is_dir():
        return sub
    sub = base / name.replace("-", "_")
    return sub if sub.is_dir() else base


def _find_file(directory, filename):
    path = directory / filename
    if path.is_file():
        return path
    plain = directory / filename[:-3]  # also accept the decompressed file
    if plain.is_file():
        return plain
    raise FileNotFoundError(f"missing data file: {path}")


def _load_idx_dataset(name, data_dir, split, n):
    if split == "all":
        # The training images first, then the test images (MNIST: 60,000 + 10,000).
        n = _check_n(n)
        x, y = _load_idx_dataset(name, data_dir, "train", n)
        if n is None or len(x) < n:
            xt, yt = _load_idx_dataset(name, data_dir, "test", None if n is None else n - len(x))
            x, y = np.concatenate([x, xt]), np.concatenate([y, yt])
        return x, y
    if split not in _IDX_FILES:
        raise ValueError(f"split must be 'train', 'test' or 'all', got split={split!r}")
    n = _check_n(n)
    directory = _resolve_dir(name, data_dir)
    images_file, labels_file = _IDX_FILES[split]
    images = _read_idx(_find_file(directory, images_file), _IMAGES_MAGIC, n)
    labels = _read_idx(_find_file(directory, labels_file), _LABELS_MAGIC, n)
    if len(images) != len(labels):
        raise ValueError(f"{directory}: {len(images)} images but {len(labels)} labels")
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return x, labels.astype(np.int64)


def load_mnist(data_dir=None, split="train", n=None):
    """MNIST from the IDX .gz files: ``(X [n, 784] float32 in [0, 1], y)``.

    ``split`` is ``'train'`` (60,000), ``'test'`` (10,000) or ``'all'`` (the
    70,000 of both, training images first); ``n`` keeps the first ``n``
    examples of the split.
    """
    return _load_idx_dataset("mnist", data_dir, split, n)


def load_fashion_mnist(data_dir=None, split="train", n=None):
    """Fashion-MNIST from the IDX .gz files; same layout as :func:`load_mnist`."""
    return _load_idx_dataset("fashion-mnist", data_dir, split, n)


def load_dataset(name, data_dir=None, n=None, split="train"):
    """Load a dataset by name (one of :data:`DATASETS`) as ``(X, y)``.

    ``split``: ``'train'``, ``'test'`` or ``'all'`` (both, training first).
    ``digits`` has no test split (``'all'`` is the same as ``'train'``):
    ``split='test'`` raises ValueError.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "digits":
        if split not in ("train", "all"):
            raise ValueError(f"the digits dataset has only split='train', got split={split!r}")
        return load_digits(n=n)
    if name == "mnist":
        return load_mnist(data_dir, split=split, n=n)
    return load_fashion_mnist(data_dir, split=split, n=n)
