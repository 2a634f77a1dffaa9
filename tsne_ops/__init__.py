"""tsne_ops: t-SNE as TensorFlow custom ops (C++ and CUDA).

Importing the package loads the compiled op library and registers the ops'
gradients, so SavedModels that use the ops load in a fresh process after
``import tsne_ops``.

Ops (batched, float32/float64, CPU and GPU kernels):
  pairwise_squared_distance, perplexity_affinities, joint_probabilities,
  knn_joint_probabilities (sparse P), tsne_gradient and tsne_loss (dense or
  sparse P).
Estimators:
  TSNE (plain t-SNE, a drop-in for sklearn.manifold.TSNE) and ParametricTSNE
  (dense or convolutional Keras encoders trained through tsne_loss).
Modules: datasets, metrics, plotting; the ``tsne-ops`` command line (cli).
"""
from tsne_ops.ops import (
    build_info,
    joint_probabilities,
    knn_joint_probabilities,
    pairwise_squared_distance,
    perplexity_affinities,
    tsne_gradient,
    tsne_loss,
)
from tsne_ops.tsne import TSNE
from tsne_ops.parametric import ParametricTSNE
from tsne_ops import datasets, metrics, plotting

__version__ = "0.1.0"

__all__ = [
    "pairwise_squared_distance",
    "perplexity_affinities",
    "joint_probabilities",
    "tsne_gradient",
    "tsne_loss",
    "build_info",
    "TSNE",
    "ParametricTSNE",
    "datasets",
    "metrics",
    "plotting",
]
