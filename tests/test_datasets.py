"""tsne_ops.datasets: digits, IDX readers, data directory resolution, errors."""
import gzip
import struct

import numpy as np
import pytest

from helpers import write_idx
from tsne_ops import datasets


@pytest.fixture
def fake_data(tmp_path):
    rng = np.random.RandomState(0)
    train = rng.randint(0, 256, size=(12, 28, 28))
    test = rng.randint(0, 256, size=(5, 28, 28))
    write_idx(tmp_path / "mnist", "train", train, np.arange(12) % 10)
    write_idx(tmp_path / "mnist", "t10k", test, np.arange(5))
    write_idx(tmp_path / "fashion-mnist", "train", train[:4], np.array([9, 8, 7, 6]))
    return tmp_path, train, test


def test_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    X5, y5 = datasets.load_digits(n=5)
    np.testing.assert_array_equal(X5, X[:5])
    np.testing.assert_array_equal(y5, y[:5])


def test_idx_files_are_read_and_scaled(fake_data):
    root, train, test = fake_data
    X, y = datasets.load_mnist(root)
    assert X.shape == (12, 784) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(X, train.reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, np.arange(12) % 10)
    Xt, yt = datasets.load_dataset("mnist", root, split="test", n=3)
    np.testing.assert_allclose(Xt, test[:3].reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yt, [0, 1, 2])
    Xf, yf = datasets.load_fashion_mnist(root)
    assert Xf.shape == (4, 784) and list(yf) == [9, 8, 7, 6]


def test_split_all_is_train_then_test(fake_data):
    root, train, test = fake_data
    X, y = datasets.load_dataset("mnist", root, split="all")
    np.testing.assert_allclose(X, np.concatenate([train, test]).reshape(17, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, np.concatenate([np.arange(12) % 10, np.arange(5)]))
    X14, y14 = datasets.load_mnist(root, split="all", n=14)
    np.testing.assert_array_equal(X14, X[:14])
    np.testing.assert_array_equal(y14, y[:14])
    X5, _ = datasets.load_mnist(root, split="all", n=5)  # within the training images
    np.testing.assert_array_equal(X5, X[:5])
    Xd, _ = datasets.load_dataset("digits", split="all", n=7)
    np.testing.assert_array_equal(Xd, datasets.load_digits(n=7)[0])


def test_default_dir_from_environment(fake_data, monkeypatch):
    root, _, _ = fake_data
    monkeypatch.setenv("TSNE_OPS_DATA_DIR", str(root))
    assert datasets.default_data_dir() == root
    X, _ = datasets.load_dataset("mnist", n=2)
    assert X.shape == (2, 784)


def test_missing_file_names_it(fake_data):
    root, _, _ = fake_data
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        datasets.load_fashion_mnist(root, split="test")
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        datasets.load_mnist(root / "no_such_dir")


def test_bad_magic_is_reported(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 1234, 1, 28, 28) + bytes(784))
    with gzip.open(d / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 1) + bytes(1))
    with pytest.raises(ValueError, match="magic"):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize("call, match", [
    (lambda: datasets.load_dataset("cifar"), "dataset must be one of"),
    (lambda: datasets.load_dataset("digits", split="test"), "split"),
    (lambda: datasets.load_mnist(split="validation"), "split"),
    (lambda: datasets.load_digits(n=0), "n must be"),
    (lambda: datasets.load_digits(n=2.5), "n must be"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_real_mnist_when_present():
    # The shared checkout carries the real files (see shared/data/README.md).
    root = datasets.default_data_dir()
    if root is None or not (root / "mnist" / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("real MNIST files not available")
    X, y = datasets.load_mnist(split="test")
    assert X.shape == (10000, 784)
    assert list(np.bincount(y)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 0.1 < X.mean() < 0.2 and X.max() == 1.0
