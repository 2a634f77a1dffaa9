"""Locate and import the pybind11 kernel module ``_tsne_kernels`` without
importing TensorFlow.

Looked for, in order:
  1. $TSNE_OPS_KERNELS_DIR (a directory holding ``_tsne_kernels*.so``), which
     is how the GPU check points the tests at its own build;
  2. the ``tsne_ops`` package directory, where the normal build puts it.

``import tsne_ops`` is deliberately avoided: the package imports TensorFlow,
which the GPU verification machine does not have.
"""
import glob
import importlib
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(REPO, "tsne_ops")


def candidate_dirs():
    dirs = []
    env = os.environ.get("TSNE_OPS_KERNELS_DIR")
    if env:
        dirs.append(os.path.abspath(env))
    dirs.append(PACKAGE_DIR)
    return dirs


def find_dir():
    for d in candidate_dirs():
        if glob.glob(os.path.join(d, "_tsne_kernels*.so")) or glob.glob(
            os.path.join(d, "_tsne_kernels*.pyd")
        ):
            return d
    return None


def load():
    """The imported module, or None when no built module is found."""
    if "_tsne_kernels" in sys.modules:
        return sys.modules["_tsne_kernels"]
    d = find_dir()
    if d is None:
        return None
    # Put the directory first only for the import: the package directory also
    # holds tsne.py, metrics.py, ... which must not shadow other top-level
    # modules for the rest of the test session.
    sys.path.insert(0, d)
    try:
        return importlib.import_module("_tsne_kernels")
    finally:
        try:
            sys.path.remove(d)
        except ValueError:
            pass


def load_or_skip():
    mod = load()
    if mod is None:
        pytest.skip(
            "pybind11 module _tsne_kernels not built: looked in "
            + ", ".join(candidate_dirs())
            + " (build it with cmake, see docs/pybind_module.md, or set TSNE_OPS_KERNELS_DIR)",
            allow_module_level=True,
        )
    return mod


def assert_close(actual, expected, rtol, what=""):
    """Norm-relative comparison (robust where single entries cancel)."""
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(np.abs(expected).max(), 1e-300)
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: max error / max |ref| = {err:.3g} > {rtol:.1g}"
