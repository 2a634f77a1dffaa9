"""tsne_ops: t-SNE as TensorFlow custom ops (C++ and CUDA).

Importing the package loads the compiled op library and registers the ops'
gradients, so SavedModels that use the ops load in a fresh process after
``import tsne_ops``. The one exception is the ``tsne-ops`` command line
(``python -m tsne_ops`` or the ``tsne-ops`` script): there the names below are
imported on first use, so that ``tsne-ops --help`` answers without importing
TensorFlow (the op modules load it as soon as anything runs).

Ops (batched, float32/float64, CPU and GPU kernels):
  pairwise_squared_distance, perplexity_affinities, joint_probabilities,
  tsne_gradient, tsne_loss (dense or sparse P), nearest_neighbors,
  knn_joint_probabilities (sparse P).
Estimators:
  TSNE (plain t-SNE, a drop-in for sklearn.manifold.TSNE) and ParametricTSNE
  (dense or convolutional Keras encoders trained through tsne_loss).
Modules: datasets, metrics, plotting; the ``tsne-ops`` command line (cli).
"""
import os as _os
import sys as _sys

from tsne_ops._version import __version__

__all__ = [
    "pairwise_squared_distance",
    "perplexity_affinities",
    "joint_probabilities",
    "tsne_gradient",
    "tsne_loss",
    "nearest_neighbors",
    "knn_joint_probabilities",
    "fft_repulsion",
    "barnes_hut_repulsion",
    "register_repulsion",
    "build_info",
    "TSNE",
    "ParametricTSNE",
    "datasets",
    "metrics",
    "plotting",
]


def _started_as_command_line():
    """True while ``python -m tsne_ops ...`` or the ``tsne-ops`` script imports
    the package (sys.argv[0] is "-m" only while runpy locates the -m module)."""
    argv0 = _sys.argv[0] if _sys.argv else ""
    if argv0 == "-m":
        orig = getattr(_sys, "orig_argv", [])
        after_m = orig[orig.index("-m") + 1:] if "-m" in orig else []
        return bool(after_m) and after_m[0].split(".")[0] == "tsne_ops"
    return _os.path.basename(argv0) == "tsne-ops"


if _started_as_command_line():
    # Where each public name lives, for the lazy lookup below (PEP 562).
    _MODULES = {"datasets", "metrics", "plotting"}
    _HOMES = {"TSNE": "tsne_ops.tsne", "ParametricTSNE": "tsne_ops.parametric",
              "fft_repulsion": "tsne_ops.repulsion", "barnes_hut_repulsion": "tsne_ops.repulsion"}

    def __getattr__(name):
        import importlib

        if name not in __all__:
            raise AttributeError(f"module 'tsne_ops' has no attribute {name!r}")
        if name in _MODULES:
            value = importlib.import_module(f"tsne_ops.{name}")
        else:
            value = getattr(importlib.import_module(_HOMES.get(name, "tsne_ops.ops")), name)
        globals()[name] = value
        return value
else:
    from tsne_ops.ops import (
        build_info,
        joint_probabilities,
        knn_joint_probabilities,
        nearest_neighbors,
        pairwise_squared_distance,
        perplexity_affinities,
        register_repulsion,
        tsne_gradient,
        tsne_loss,
    )
    from tsne_ops.repulsion import barnes_hut_repulsion, fft_repulsion
    from tsne_ops.tsne import TSNE
    from tsne_ops.parametric import ParametricTSNE
    from tsne_ops import datasets, metrics, plotting
