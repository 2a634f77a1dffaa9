"""Parametric t-SNE: a network learns the map from data to embedding (cases B-E).

Plain t-SNE places each training point and cannot place a new one. Parametric
t-SNE (van der Maaten, 2009) trains an encoder network f so that the points
f(x_1), ..., f(x_n) minimise the t-SNE objective KL(P || Q); afterwards f
embeds unseen points directly.

Where P comes from (``affinities``):

* ``'global'`` (default): P once over the whole training set, over each
  point's nearest neighbours (:func:`tsne_ops.affinities.sparse_joint_probabilities`).
  Each step takes ``batch_size`` points (heads), draws three neighbours
  (tails) per head from its row of P, and minimises ``tsne_loss`` of those
  4 B points with the sampled pairs as their P (:class:`~tsne_ops.parametric_model.EdgeSampler`):
  the attraction is the whole P's in expectation, the repulsion is estimated
  over the batch, as in negative-sampling neighbour embeddings.
* ``'batch'``: P of each minibatch X_b, as in the 2009 paper::

      P_b  = joint_probabilities(pairwise_squared_distance(X_b), perplexity)
      loss = tsne_loss(P_b, encoder(X_b), dof)

  A batch's P sees only the neighbourhoods inside the batch, so larger
  batches (1000-5000) work better.

Both use this package's custom ops; the gradient of ``tsne_loss`` is the
registered fused kernel, and backpropagation carries it into the encoder's
weights. Training is a Keras ``fit`` on a ``tf.data`` pipeline, so it runs
under a ``tf.distribute`` strategy, on one machine or several (each
replica embeds its share of the batch; with the global P the loss is that
of the gathered batch, so a step is one worker's on the whole batch). The
fitted model saves to one ``.keras`` file and loads back in any process that
has imported ``tsne_ops``.
The encoders are in :mod:`tsne_ops.encoders`, the Keras model and its
callbacks in :mod:`tsne_ops.parametric_model`.
"""
import json
import math

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from tsne_ops._validation import (_bad, _is_int, _is_real, check_perplexity, usable_perplexity,
                                  validate_input)
from tsne_ops.encoders import conv_encoder, dense_encoder, input_standardization
from tsne_ops.parametric_model import (EdgeSampler, EmbeddingSnapshots, EndEarlyExaggeration,
                                       EpochProgress, TSNEModel, cosine_rate, multi_worker)
from tsne_ops.preprocessing import deskew as _deskew

_ENCODERS = ("dense", "conv")
_AFFINITIES = ("global", "batch")
# affinities='global': neighbours drawn per head, and the defaults of
# batch_size (heads per step) and epochs chosen on a validation split of
# MNIST (benchmarks/results/parametric_global.jsonl, docs/parametric_global.md).
_TAILS_PER_HEAD = 3
# Per affinities: heads (or points) per step, epochs, the learning-rate
# schedule and the widths of the built-in encoders' dense layers. 'global':
# chosen on a validation split of all 60,000 MNIST training images
# (docs/parametric_global.md); 'batch': van der Maaten's 500-500-2000 layers
# and a constant rate (docs/parametric_mnist.md).
_DEFAULTS = {"global": dict(batch_size=125, epochs=40, lr_schedule="cosine",
                            dense_units=(256, 256, 1024)),
             "batch": dict(batch_size=1000, epochs=50, lr_schedule="constant",
                           dense_units=(500, 500, 2000))}
_LR_SCHEDULES = ("constant", "cosine")


def _shared_seed(strategy):
    """A random seed drawn by worker 0 and all-reduced to every worker."""
    local = tf.constant(float(np.random.randint(np.iinfo(np.int32).max)), tf.float64)

    def first_replicas_seed():
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, local, tf.zeros_like(local))

    @tf.function
    def all_reduced():
        return strategy.reduce("SUM", strategy.run(first_replicas_seed), axis=None)

    return int(all_reduced())


def _is_chief(strategy):
    """False on the workers of a multi-worker strategy other than the chief
    (the ``chief`` task, or worker 0 when the cluster has none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not multi_worker(strategy):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0)


class ParametricTSNE(TransformerMixin, BaseEstimator):
    """Parametric t-SNE with a Keras encoder, trained through the t-SNE ops.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding, >= 1 (2 or 3 for plots).
    perplexity : float, default=30.0
        Perplexity of P. With ``affinities='global'`` it must be less than the
        number of training points; with ``affinities='batch'``, less than the
        per-replica batch size. A value no row can reach (that number - 1 or
        more) is lowered to 0.99 of it with a UserWarning (``perplexity_``).
    affinities : 'global' or 'batch', default='global'
        'global': P is computed once over the whole training set, over each
        point's ``3 * perplexity`` nearest neighbours
        (:func:`tsne_ops.affinities.sparse_joint_probabilities`); each step
        takes ``batch_size`` points as heads, draws three neighbours (tails)
        per head from its row of P and trains on the t-SNE loss of those
        ``4 * batch_size`` points with the sampled pairs as their P
        (:class:`tsne_ops.parametric_model.EdgeSampler`: the attraction is
        that of the whole P in expectation, the repulsion is estimated over
        the batch). 'batch': P is computed over each minibatch's points, as
        in van der Maaten (2009); it sees only the neighbourhoods inside a
        batch.
    encoder : 'dense', 'conv' or keras.Model, default='dense'
        'dense': a D-256-256-1024-d ReLU network with ``affinities='global'``
        (a third of the arithmetic of van der Maaten's D-500-500-2000-d, and
        better after as many epochs on MNIST: docs/parametric_global.md), that
        500-500-2000 network with ``affinities='batch'``. 'conv': a CNN over
        images of ``image_shape``, two stride-2 convolutions (32 5x5, 64 3x3)
        under the same dense layers (``conv_encoder(image_shape, d,
        strided=True, dense_units=...)``). A Keras model is used as given
        (input: the rows of X as passed to fit; output: [batch, n_components]).
    image_shape : (int, int) or None
        For ``encoder='conv'``: None takes it from 3-D/4-D input ([N, H, W] or
        [N, H, W, 1]) or from a square number of features (64 -> 8x8).
        Also the image shape for ``shift_augmentation`` and ``deskew``.
    batch_size : int or None, default=None
        Points per step; with ``affinities='global'`` heads per step (four
        times as many points go through the encoder). None: 125 for
        ``'global'``, 1000 for ``'batch'`` (``batch_size_``).
    epochs : int or None, default=None
        Passes over the training points (as heads with ``'global'``). None: 40
        for ``'global'``, 50 for ``'batch'`` (``epochs_``).
    optimizer : str or keras optimizer, default='adam'
    learning_rate : float, default=1e-3
        Used when ``optimizer`` is a string.
    lr_schedule : 'constant', 'cosine' or None, default=None
        Used when ``optimizer`` is a string: the rate stays ``learning_rate``,
        or decays from it to zero along a cosine over the steps of the fit.
        None: 'cosine' for ``'global'``, 'constant' for ``'batch'``.
    dof : float or None, default=None
        Student-t degrees of freedom; None is max(n_components - 1, 1).
    early_exaggeration : float, default=1.0
        Factor on the attractive forces during the first
        ``early_exaggeration_epochs`` epochs, as in plain t-SNE (1: off). The
        loss reported stays the plain KL.
    early_exaggeration_epochs : int or None, default=None
        None: a quarter of ``epochs``.
    shift_augmentation : int, default=0
        For image data: each training step moves every image by a random
        offset of up to this many pixels (per axis) before the encoder sees
        it, while P is computed from the unmoved images. The encoder then
        places displaced images where the originals belong, which carries
        over to unseen images (MNIST: docs/parametric_mnist.md). 0: off.
    neighbor_mixup : float, default=0.0
        Each training step moves every point a random fraction (uniform up
        to this value, in [0, 1]) of the way towards a neighbour drawn from
        its row of the batch's P, while P stays that of the unmoved points:
        a mixup between neighbours that makes the encoder smoother where
        unseen points fall (MNIST: docs/parametric_mnist.md). 0: off.
    deskew : bool, default=False
        For images of handwritten characters: deskew every image (shear
        away its slant, centre its ink; :func:`tsne_ops.preprocessing.deskew`)
        before anything else, in ``fit`` (so P is computed from the
        deskewed images too), ``transform`` and ``score``. Needs the image
        shape as for ``encoder='conv'`` and single-channel images with
        non-negative intensities. On MNIST it lifts the held-out 1-NN
        accuracy by about 0.04 (docs/parametric_mnist.md).
    standardize : bool, default=True
        The built-in encoders start with a fixed standardisation, (x - mean)
        / scale with the training data's per-feature mean and one scale for
        all features (:func:`input_standardization`), so that they train
        alike whatever the units, the offset or the dtype of the data (uint8
        pixels, data far from the origin), as P itself does not depend on
        them. Applied after ``deskew``. A Keras model given as ``encoder`` is
        used as given.
    random_state : int, RandomState or None
        Seeds Keras (weights, shuffling) with ``keras.utils.set_random_seed``
        (a RandomState gives the seed: one draw per fit).
    verbose : int, default=0
        0: silent; 1: a progress bar over the epochs with the loss (tqdm, on
        stderr); 2 or more: passed to Keras ``fit`` (a line per epoch).
    callback : callable or None
        ``callback(epoch, loss, embedding)`` every ``callback_every`` epochs
        and once before training (epoch 0) with the embedding of up to
        ``callback_samples`` training points; returning True stops training.
    callback_every : int, default=1
    callback_samples : int, default=2000
    strategy : tf.distribute.Strategy or None
        Builds and trains the model under this strategy (e.g.
        ``tf.distribute.MirroredStrategy()``, or
        ``tf.distribute.MultiWorkerMirroredStrategy()`` with ``TF_CONFIG``
        set on each machine and the same script and data on every worker);
        None uses the current one. ``batch_size`` is the global batch: each
        replica embeds its share and, with ``affinities='global'``, the loss
        is that of the gathered global batch (a step as one worker's). Under
        several workers all shuffle alike (``random_state``, or worker 0's
        seed), ``transform`` and ``score`` must run on every worker, and the
        progress bar shows on the chief only (docs/parametric_global.md).

    Attributes
    ----------
    model_ : keras.Model
        The trained model (a ``TSNEModel``: encoder plus training step).
    encoder_ : keras.Model
    embedding_ : ndarray
        Embedding of the training data (after ``fit_transform``/``fit``).
    history_ : list of float
        Mean training loss per epoch: the KL of each step's P and Q (with
        ``affinities='global'``, the P of the sampled pairs, so its value is
        not the KL of the whole training set; it falls as training works).
    kl_divergence_ : float
        Last epoch's mean training loss.
    perplexity_ : float
        The perplexity of P (the global one, or each batch's).
    n_features_in_ : int
        Features per sample seen in fit (H * W for images).
    early_exaggeration_epochs_ : int
        Epochs trained with early exaggeration (0 when ``early_exaggeration``
        is 1).
    deskew_shape_ : (int, int) or None
        The image shape used for ``deskew`` (None when it is off).
    """

    def __init__(self, n_components=2, *, perplexity=30.0, affinities="global", encoder="dense",
                 image_shape=None,
                 batch_size=None, epochs=None, optimizer="adam", learning_rate=1e-3,
                 lr_schedule=None, dof=None,
                 early_exaggeration=1.0, early_exaggeration_epochs=None, shift_augmentation=0,
                 neighbor_mixup=0.0, deskew=False, standardize=True, random_state=None, verbose=0,
                 callback=None, callback_every=1, callback_samples=2000, strategy=None):
        self.n_components = n_components
        self.perplexity = perplexity
        self.affinities = affinities
        self.encoder = encoder
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.epochs = epochs
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.dof = dof
        self.early_exaggeration = early_exaggeration
        self.early_exaggeration_epochs = early_exaggeration_epochs
        self.shift_augmentation = shift_augmentation
        self.neighbor_mixup = neighbor_mixup
        self.deskew = deskew
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.callback_every = callback_every
        self.callback_samples = callback_samples
        self.strategy = strategy

    # -- validation ---------------------------------------------------------

    def _validate_params(self):
        if not _is_int(self.n_components) or self.n_components < 1:
            raise _bad("n_components", self.n_components, "an integer >= 1")
        check_perplexity(self.perplexity)
        if not isinstance(self.affinities, str) or self.affinities not in _AFFINITIES:
            raise _bad("affinities", self.affinities, "'global' or 'batch'")
        if isinstance(self.encoder, str):
            if self.encoder not in _ENCODERS:
                raise _bad("encoder", self.encoder, "'dense', 'conv' or a keras.Model")
        elif not isinstance(self.encoder, keras.Model):
            raise _bad("encoder", type(self.encoder).__name__, "'dense', 'conv' or a keras.Model")
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) else None
            if shape is None or len(shape) != 2 or not all(_is_int(s) and s > 0 for s in shape):
                raise _bad("image_shape", self.image_shape, "a pair of positive integers (H, W) or None")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 3):
            raise _bad("batch_size", self.batch_size, "an integer >= 3 or None")
        if self.epochs is not None and (not _is_int(self.epochs) or self.epochs < 1):
            raise _bad("epochs", self.epochs, "an integer >= 1 or None")
        if not isinstance(self.optimizer, (str, keras.optimizers.Optimizer)):
            raise _bad("optimizer", self.optimizer, "a Keras optimizer or its name")
        if not _is_real(self.learning_rate) or not self.learning_rate > 0:
            raise _bad("learning_rate", self.learning_rate, "a number > 0")
        if self.lr_schedule is not None and (not isinstance(self.lr_schedule, str)
                                             or self.lr_schedule not in _LR_SCHEDULES):
            raise _bad("lr_schedule", self.lr_schedule, "'constant', 'cosine' or None")
        if self.dof is not None and (not _is_real(self.dof) or not self.dof > 0
                                     or not math.isfinite(self.dof)):
            raise _bad("dof", self.dof, "a finite number > 0 or None")
        if not _is_real(self.early_exaggeration) or not self.early_exaggeration >= 1 \
                or not math.isfinite(self.early_exaggeration):
            raise _bad("early_exaggeration", self.early_exaggeration, "a finite number >= 1")
        if self.early_exaggeration_epochs is not None and (
                not _is_int(self.early_exaggeration_epochs) or self.early_exaggeration_epochs < 0):
            raise _bad("early_exaggeration_epochs", self.early_exaggeration_epochs,
                       "an integer >= 0 or None")
        if not _is_int(self.shift_augmentation) or self.shift_augmentation < 0:
            raise _bad("shift_augmentation", self.shift_augmentation, "an integer >= 0")
        if not _is_real(self.neighbor_mixup) or not 0 <= self.neighbor_mixup <= 1:
            raise _bad("neighbor_mixup", self.neighbor_mixup, "a number in [0, 1]")
        if not isinstance(self.deskew, (bool, np.bool_)):
            raise _bad("deskew", self.deskew, "True or False")
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise _bad("standardize", self.standardize, "True or False")
        if self.random_state is not None and not _is_int(self.random_state) \
                and not isinstance(self.random_state, np.random.RandomState):
            raise _bad("random_state", self.random_state, "an integer, a RandomState or None")
        if not _is_int(self.verbose) or self.verbose < 0:
            raise _bad("verbose", self.verbose, "an integer >= 0")
        if self.callback is not None and not callable(self.callback):
            raise _bad("callback", self.callback, "callable or None")
        if not _is_int(self.callback_every) or self.callback_every < 1:
            raise _bad("callback_every", self.callback_every, "an integer >= 1")
        if not _is_int(self.callback_samples) or self.callback_samples < 1:
            raise _bad("callback_samples", self.callback_samples, "an integer >= 1")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The encoder computes in float32 whatever comes in.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _prepare_x(self, X, fitting):
        """Validated float32 input: flattened [N, D] for the built-in encoders.

        scikit-learn's validation (its messages for sparse, complex, object,
        empty, one-sample and non-finite input; ``n_features_in_``, checked
        against the fitted value when not ``fitting``). Image-shaped input
        ([N, H, W], [N, H, W, 1], or any rank for a custom encoder) counts
        H * W * ... features.
        """
        kwargs = dict(accept_sparse=False, dtype=[np.float32, np.float64],
                      ensure_min_samples=2 if fitting else 1)
        # DataFrames and sparse matrices have ndim; lists and other
        # array-likes go through np.asarray (as check_array does).
        if (X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim) == 2:
            X = validate_input(validate_data, self, X, reset=fitting, **kwargs)
        else:
            X = validate_input(check_array, None, X, allow_nd=True, input_name="X", **kwargs)
            if X.ndim < 2 or 0 in X.shape[1:]:
                # check_array counts features only for 2-D input; a Dense
                # layer over zero features aborts inside oneDNN.
                raise ValueError(f"X: Found array with 0 feature(s) (shape={X.shape}) while "
                                 f"a minimum of 1 is required by {type(self).__name__}.")
            validate_data(self, X.reshape(len(X), -1), reset=fitting, skip_check_array=True)
        builtin = isinstance(self.encoder, str)
        if builtin:
            if X.ndim == 4 and X.shape[-1] == 1:
                X = X[..., 0]
            if X.ndim not in (2, 3):
                raise ValueError(f"X must have shape [N, D], [N, H, W] or [N, H, W, 1], got {X.shape}")
        if fitting:
            self._image_shape = X.shape[1:3] if (X.ndim == 3 or (X.ndim == 4 and X.shape[-1] == 1)) \
                else None
        X = X.reshape(len(X), -1) if builtin else X
        return X.astype(np.float32, copy=False)

    def _resolve_image_shape(self, n_features, what="encoder='conv'"):
        shape = self.image_shape if self.image_shape is not None else self._image_shape
        if shape is None:
            side = int(round(math.sqrt(n_features)))
            if side * side != n_features:
                raise ValueError(f"{what} needs image_shape for {n_features} features "
                                 f"(not a square number)")
            shape = (side, side)
        shape = tuple(int(s) for s in shape)
        if shape[0] * shape[1] != n_features:
            raise ValueError(f"image_shape={shape} does not match {n_features} features per sample")
        return shape

    def _defaults(self):
        return _DEFAULTS.get(self.affinities, _DEFAULTS["global"])

    def _build_encoder(self, X):
        n_features = X.shape[1]
        mean, scale = input_standardization(X) if self.standardize else (None, None)
        units = self._defaults()["dense_units"]
        if self.encoder == "dense":
            return dense_encoder(n_features, self.n_components, hidden=units, input_mean=mean,
                                 input_scale=scale)
        if self.encoder == "conv":
            self.image_shape_ = self._resolve_image_shape(n_features)
            return conv_encoder(self.image_shape_, self.n_components, strided=True,
                                dense_units=units, input_mean=mean, input_scale=scale)
        encoder = self.encoder
        out = encoder.output_shape if hasattr(encoder, "output_shape") else None
        if out is not None and out[-1] != self.n_components:
            raise ValueError(f"encoder outputs {out[-1]} dimensions but n_components="
                             f"{self.n_components}")
        return encoder

    def training_schedule(self):
        """``(batch_size, epochs)`` as ``fit`` uses them: the given values, or the
        defaults of the ``affinities`` (for a learning-rate schedule:
        ``cosine_adam(rate, epochs, n_samples, batch_size)``)."""
        defaults = self._defaults()
        return (defaults["batch_size"] if self.batch_size is None else int(self.batch_size),
                defaults["epochs"] if self.epochs is None else int(self.epochs))

    def learning_rate_schedule(self):
        """``lr_schedule`` as ``fit`` uses it: the given one, or the default
        of the ``affinities`` ('cosine' for 'global', 'constant' for 'batch')."""
        return self.lr_schedule or self._defaults()["lr_schedule"]

    def _make_optimizer(self, steps):
        """The optimizer of a fit of ``steps`` training steps: ``optimizer`` as
        given, or the named one at ``learning_rate`` on ``lr_schedule``."""
        if isinstance(self.optimizer, str):
            rate = float(self.learning_rate)
            if self.learning_rate_schedule() == "cosine":
                rate = cosine_rate(rate, steps)
            try:
                return keras.optimizers.get({"class_name": self.optimizer,
                                             "config": {"learning_rate": rate}})
            except ValueError:
                raise ValueError(f"optimizer must be a Keras optimizer or its name, "
                                 f"got optimizer={self.optimizer!r}") from None
        return self.optimizer

    # -- fitting ------------------------------------------------------------

    def fit(self, X, y=None):
        """Train the encoder on ``X``; returns self. ``y`` is ignored."""
        # Validation sets n_features_in_ (and feature_names_in_) first thing:
        # a refit that fails keeps those of the model that is still fitted.
        kept = {k: self.__dict__[k] for k in ("n_features_in_", "feature_names_in_", "_image_shape")
                if k in self.__dict__}
        try:
            return self._fit(X)
        except BaseException:
            for k in ("n_features_in_", "feature_names_in_", "_image_shape"):
                self.__dict__.pop(k, None)
            self.__dict__.update(kept)
            raise

    def _fit(self, X):
        self._validate_params()
        X = self._prepare_x(X, fitting=True)
        deskew_shape = (self._resolve_image_shape(int(np.prod(X.shape[1:])), what="deskew")
                        if self.deskew else None)
        if deskew_shape is not None:
            X = _deskew(X, deskew_shape)
        n = len(X)
        strategy = self.strategy or tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync
        batch_size, epochs = self.training_schedule()
        batch = min(batch_size, n - n % replicas)
        per_replica = batch // replicas
        if self.affinities == "global":
            perplexity = usable_perplexity(self.perplexity, n)
        else:
            perplexity = usable_perplexity(
                self.perplexity, per_replica,
                what=f"the per-replica batch size (batch_size={batch_size}, {n} samples, "
                     f"{replicas} replicas)")
        dof = float(self.dof) if self.dof is not None else float(max(self.n_components - 1, 1))
        # An int seeds as given; a RandomState gives one (as scikit-learn's
        # estimators draw from it).
        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        seed = None if seed is None else int(seed)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        elif multi_worker(strategy):
            # Every worker must shuffle the heads alike, so that the shards
            # of a global batch are disjoint: worker 0 draws the seed.
            seed = _shared_seed(strategy)

        shift_shape = None
        if self.shift_augmentation:
            shift_shape = self._resolve_image_shape(int(np.prod(X.shape[1:])),
                                                   what="shift_augmentation")
            if min(shift_shape) <= self.shift_augmentation:
                raise ValueError(f"shift_augmentation={self.shift_augmentation!r} must be less "
                                 f"than the image size {shift_shape}")
        with strategy.scope():
            encoder = self._build_encoder(X)
            model = TSNEModel(encoder, perplexity=perplexity, dof=dof,
                              early_exaggeration=float(self.early_exaggeration),
                              shift_augmentation=int(self.shift_augmentation),
                              neighbor_mixup=float(self.neighbor_mixup),
                              image_shape=shift_shape, training_p=self.affinities,
                              name="parametric_tsne")
            model.compile(optimizer=self._make_optimizer(epochs * max(1, n // batch)),
                          jit_compile=False)

        if self.affinities == "global":
            # _sampler_options: EdgeSampler's other settings, for the
            # experiments that chose these (benchmarks/parametric_global.py)
            options = dict(tails_per_head=_TAILS_PER_HEAD, **getattr(self, "_sampler_options", {}))
            data = EdgeSampler(X, perplexity, **options).dataset(batch, seed=seed)
        else:
            data = (tf.data.Dataset.from_tensor_slices(X)
                    .shuffle(n, seed=seed, reshuffle_each_iteration=True)
                    .batch(batch, drop_remainder=True)
                    .prefetch(tf.data.AUTOTUNE))
        # Under a multi-worker strategy every worker builds the same pipeline
        # (same P, same seeded shuffle) and keeps its replicas' shares of each
        # global batch: shard by data, as there are no files to shard by.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = data.with_options(options)
        callbacks = []
        self.early_exaggeration_epochs_ = 0
        if self.early_exaggeration != 1.0:
            self.early_exaggeration_epochs_ = min(epochs, (
                epochs // 4 if self.early_exaggeration_epochs is None
                else int(self.early_exaggeration_epochs)))
            callbacks.append(EndEarlyExaggeration(self.early_exaggeration_epochs_))
        if self.callback is not None:
            # A fixed subset, the same in every snapshot (callback_indices_).
            idx = np.arange(n) if n <= self.callback_samples else np.sort(
                np.random.RandomState(0).choice(n, self.callback_samples, replace=False))
            self.callback_indices_ = idx
            monitor = X[idx]
            callbacks.append(EmbeddingSnapshots(self.callback, self.callback_every, monitor, batch))
        if self.verbose == 1 and _is_chief(strategy):
            callbacks.append(EpochProgress(epochs))
        history = model.fit(data, epochs=epochs, verbose=0 if self.verbose == 1 else self.verbose,
                            callbacks=callbacks,
                            shuffle=False)  # tf.data shuffles
        self.model_ = model
        self.encoder_ = model.encoder
        self.history_ = [float(v) for v in history.history.get("loss", [])]
        self.kl_divergence_ = self.history_[-1] if self.history_ else float("nan")
        self.batch_size_ = batch
        self.epochs_ = epochs
        self.perplexity_ = perplexity
        self.dof_ = dof
        self.deskew_shape_ = deskew_shape
        return self

    def _deskewed(self, X):
        return X if self.deskew_shape_ is None else _deskew(X, self.deskew_shape_)

    def _check_fitted(self):
        # sklearn.exceptions.NotFittedError (a ValueError and AttributeError)
        check_is_fitted(self, "model_", msg="This %(name)s is not fitted yet: call fit or load "
                                            "first")

    def transform(self, X, batch_size=4096):
        """Embed (new) points with the trained encoder: [N, n_components] float32."""
        self._check_fitted()
        X = self._deskewed(self._prepare_x(X, fitting=False))
        return np.asarray(self.encoder_.predict(X, batch_size=batch_size, verbose=0),
                          dtype=np.float32)

    def fit_transform(self, X, y=None):
        """Train on ``X`` and return its embedding (also in ``embedding_``)."""
        self.fit(X)
        self.embedding_ = self.transform(X)
        return self.embedding_

    def score(self, X, y=None, batch_size=None):
        """Minus the mean t-SNE KL of ``X`` in batches of ``batch_size``.

        Greater is better, as for every scikit-learn score (so model
        selection such as ``GridSearchCV`` maximises it): a perfect map
        scores 0, a poor one a large negative number. Each batch's P is
        computed over that batch with the fitted perplexity; ``y`` is
        ignored. ``batch_size`` defaults to the training batch size.
        """
        self._check_fitted()
        X = self._deskewed(self._prepare_x(X, fitting=False))
        bs = batch_size or self.batch_size_
        data = tf.data.Dataset.from_tensor_slices(X).batch(bs, drop_remainder=len(X) >= bs)
        return -float(self.model_.evaluate(data, verbose=0))

    # -- persistence --------------------------------------------------------

    def save(self, path):
        """Save the fitted model to ``path`` (a ``.keras`` file; the suffix is
        added if missing). Load with :meth:`ParametricTSNE.load` in any
        process that imports ``tsne_ops``."""
        self._check_fitted()
        path = str(path)
        if not path.endswith(".keras"):
            path += ".keras"
        meta = {k: v for k, v in self.get_params().items()
                if k not in ("encoder", "optimizer", "callback", "strategy")}
        meta["encoder"] = self.encoder if isinstance(self.encoder, str) else "custom"
        meta["optimizer"] = self.optimizer if isinstance(self.optimizer, str) else "custom"
        meta["image_shape"] = list(self.image_shape) if self.image_shape is not None else None
        meta["n_features_in_"] = int(self.n_features_in_)
        meta["history_"] = self.history_
        meta["batch_size_"] = int(self.batch_size_)
        meta["epochs_"] = int(self.epochs_)
        meta["early_exaggeration_epochs_"] = int(self.early_exaggeration_epochs_)
        meta["deskew"] = bool(self.deskew)
        meta["standardize"] = bool(self.standardize)
        meta["deskew_shape_"] = None if self.deskew_shape_ is None else list(self.deskew_shape_)
        keras.saving.save_model(self.model_, path)
        # The estimator's settings ride along in a small sidecar file.
        with open(path + ".json", "w") as f:
            # numpy scalars (epochs=np.int64(300)) as plain numbers
            json.dump(meta, f, indent=1, default=lambda v: v.item() if hasattr(v, "item") else str(v))
        return path

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`."""
        path = str(path)
        if not path.endswith(".keras"):
            path += ".keras"
        model = keras.saving.load_model(path, compile=False)
        try:
            with open(path + ".json") as f:
                meta = json.load(f)
        except FileNotFoundError:
            meta = {"n_components": int(model.encoder.output_shape[-1]),
                    "perplexity": model.perplexity}
        names = cls._get_param_names()
        params = {k: v for k, v in meta.items() if k in names and k != "encoder"}
        # files written before standardisation existed have encoders without it,
        # and before the global P they trained on each batch's P
        params.setdefault("standardize", False)
        params.setdefault("affinities", "batch")
        if meta.get("optimizer") == "custom":
            params.pop("optimizer", None)
        if params.get("image_shape") is not None:
            params["image_shape"] = tuple(params["image_shape"])
        encoder = meta.get("encoder", "custom")
        self = cls(**params, encoder=encoder if encoder in _ENCODERS else model.encoder)
        self.model_ = model
        self.encoder_ = model.encoder
        self.history_ = meta.get("history_", [])
        self.kl_divergence_ = self.history_[-1] if self.history_ else float("nan")
        self.batch_size_ = meta.get("batch_size_", self.batch_size)
        self.epochs_ = meta.get("epochs_", self.epochs)
        self.early_exaggeration_epochs_ = meta.get("early_exaggeration_epochs_")
        shape = meta.get("deskew_shape_")
        self.deskew_shape_ = None if shape is None else tuple(shape)
        self.dof_ = model.dof
        self.perplexity_ = model.perplexity
        # Features per sample as validation counts them (H * W * ... for
        # image input); files written before that counted rows of images
        # as features, so the encoder's input shape decides when it is known.
        shape = model.encoder.input_shape[1:]
        self.n_features_in_ = (int(np.prod(shape)) if all(s is not None for s in shape)
                               else meta.get("n_features_in_"))
        return self
