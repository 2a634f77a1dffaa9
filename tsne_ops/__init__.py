"""tsne_ops: t-SNE as TensorFlow custom ops (C++ and CUDA).

The names below are imported on first use (PEP 562), so ``import tsne_ops``
does not import TensorFlow: ``TSNE().fit(X)`` on a numpy array runs on the
kernels through the TensorFlow-free pybind11 module, and ``tsne-ops --help``
answers at once. The op library is still loaded and the ops' gradients
registered whenever TensorFlow is there, so that SavedModels and Keras models
that use the ops load in a fresh process: at ``import tsne_ops`` when
TensorFlow is already imported, otherwise the moment it is imported (a
post-import hook on ``tensorflow``, wrapt's, which TensorFlow depends on).

Ops (batched, float32/float64, CPU and GPU kernels):
  pairwise_squared_distance, perplexity_affinities, joint_probabilities,
  tsne_gradient, tsne_loss (dense or sparse P), nearest_neighbors,
  knn_joint_probabilities (sparse P).
Estimators:
  TSNE (plain t-SNE, a drop-in for sklearn.manifold.TSNE) and ParametricTSNE
  (dense or convolutional Keras encoders trained through tsne_loss).
Modules: datasets, metrics, plotting; the ``tsne-ops`` command line (cli).
"""
import importlib as _importlib
import sys as _sys
import warnings as _warnings

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

# Where each public name lives (the rest are in tsne_ops.ops).
_MODULES = {"datasets", "metrics", "plotting"}
_HOMES = {"TSNE": "tsne_ops.tsne", "ParametricTSNE": "tsne_ops.parametric",
          "fft_repulsion": "tsne_ops.repulsion", "barnes_hut_repulsion": "tsne_ops.repulsion"}


def __getattr__(name):
    if name not in __all__:
        raise AttributeError(f"module 'tsne_ops' has no attribute {name!r}")
    if name in _MODULES:
        value = _importlib.import_module(f"tsne_ops.{name}")
    else:
        value = getattr(_importlib.import_module(_HOMES.get(name, "tsne_ops.ops")), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


# -- TensorFlow's side, loaded whenever TensorFlow is imported -------------

def _imported(name):
    """True when module ``name`` is in sys.modules and has finished executing."""
    module = _sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


def _register_with(finished):
    """Load what SavedModels and Keras models need: the op library and the
    gradients (tsne_ops.ops) once TensorFlow has been imported, the Keras
    classes (tsne_ops.parametric) once Keras has too. ``finished`` is the
    module whose import just completed (its spec still says initialising).
    A failure is a warning here, not a failed ``import tensorflow``: the same
    error is raised again when a name of this package that needs the ops is
    used."""
    tf_ready = finished == "tensorflow" or _imported("tensorflow")
    keras_ready = finished == "keras" or _imported("keras")
    if not tf_ready:
        return
    try:
        _importlib.import_module("tsne_ops.ops")
        # Keras imported by one of this package's Keras modules: that import
        # finishes the registration itself (tsne_ops.parametric would find
        # the module half made).
        keras_modules = ("tsne_ops.parametric", "tsne_ops.parametric_model", "tsne_ops.encoders")
        if keras_ready and not any(
                name in _sys.modules and not _imported(name) for name in keras_modules):
            _importlib.import_module("tsne_ops.parametric")
    except Exception as err:  # noqa: BLE001 -- reported, and raised again on use
        _warnings.warn(f"tsne_ops: TensorFlow was imported, but the op library could not be "
                       f"registered with it: {type(err).__name__}: {err}", RuntimeWarning,
                       stacklevel=2)


def _install_hooks():
    try:
        import wrapt
    except ImportError:  # no wrapt, no TensorFlow (it depends on wrapt)
        return
    for name in ("tensorflow", "keras"):
        wrapt.register_post_import_hook(lambda module, name=name: _register_with(name), name)


_install_hooks()
