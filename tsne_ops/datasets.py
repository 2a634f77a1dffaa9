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


def deskew(X, image_shape, chunk=1024):
    """Deskew single-channel images: shear each one so that its ink has no
    row-column covariance, and move its centre of mass to the image centre.

    The standard normalisation for handwritten digits (LeCun et al.'s MNIST
    table lists it for k-NN): a slanted "1" and an upright one become alike,
    so pixel distances, and with them t-SNE's P, follow the digit's shape
    rather than its slant. Each image is resampled with bilinear
    interpolation, zero outside the frame (as ``scipy.ndimage.affine_transform``
    with ``order=1, mode='grid-constant'``).
    Images without ink (all zero) and ones whose ink lies on one row are
    only centred / left as they are.

    ``X``: [N, H*W], [N, H, W] or [N, H, W, 1] (non-negative intensities);
    ``image_shape``: (H, W); ``chunk``: images resampled at a time (memory).
    Returns float32 of the same shape as ``X``.
    """
    X = np.asarray(X)
    h, w = (int(v) for v in image_shape)
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != h * w:
        raise ValueError(f"deskew needs images of image_shape={(h, w)}, got X of shape {X.shape}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got chunk={chunk!r}")
    if X.size and not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"deskew needs a numeric array, got dtype {X.dtype}")
    if X.size and X.min() < 0:
        raise ValueError(f"deskew needs non-negative intensities, got a minimum of {X.min()!r}")
    flat = X.reshape(len(X), h * w).astype(np.float32)
    out = np.empty_like(flat)
    rows, cols = np.mgrid[:h, :w].astype(np.float64)
    rows, cols = rows.ravel(), cols.ravel()
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    padded = np.zeros((min(chunk, len(flat)) or 1, h + 2, w + 2), np.float32)
    for start in range(0, len(flat), chunk):
        img = flat[start:start + chunk].astype(np.float64)
        n = len(img)
        mass = img.sum(axis=1)
        safe = np.where(mass > 0, mass, 1.0)
        mr = np.where(mass > 0, img @ rows / safe, cr)
        mc = np.where(mass > 0, img @ cols / safe, cc)
        dr = rows[None, :] - mr[:, None]
        var_r = (img * dr ** 2).sum(axis=1)
        cov = (img * dr * (cols[None, :] - mc[:, None])).sum(axis=1)
        alpha = np.where(var_r > 0, cov / np.where(var_r > 0, var_r, 1.0), 0.0)
        # output pixel (r, c) samples the input at
        # (r - cr + mr, c - cc + mc + alpha (r - cr))
        src_r = rows[None, :] - cr + mr[:, None]
        src_c = cols[None, :] - cc + mc[:, None] + alpha[:, None] * (rows[None, :] - cr)
        # bilinear, in a frame padded by one zero pixel on each side
        src_r, src_c = src_r + 1.0, src_c + 1.0
        inside = (src_r > 0) & (src_r < h + 1) & (src_c > 0) & (src_c < w + 1)
        src_r = np.clip(src_r, 0.0, h + 1 - 1e-6)
        src_c = np.clip(src_c, 0.0, w + 1 - 1e-6)
        r0, c0 = np.floor(src_r).astype(np.intp), np.floor(src_c).astype(np.intp)
        fr, fc = src_r - r0, src_c - c0
        pad = padded[:n]
        pad[:, 1:h + 1, 1:w + 1] = img.reshape(n, h, w)
        pad = pad.reshape(n, -1)
        stride = w + 2

        def at(dr_, dc_):
            return np.take_along_axis(pad, (r0 + dr_) * stride + c0 + dc_, axis=1)

        val = ((1 - fr) * ((1 - fc) * at(0, 0) + fc * at(0, 1))
               + fr * ((1 - fc) * at(1, 0) + fc * at(1, 1)))
        out[start:start + n] = np.where(inside, val, 0.0)
    return out.reshape(X.shape)
