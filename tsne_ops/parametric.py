"""Parametric t-SNE: a network learns the map from data to embedding (cases B-E).

Plain t-SNE places each training point and cannot place a new one. Parametric
t-SNE (van der Maaten, 2009) trains an encoder network f so that the points
f(x_1), ..., f(x_n) of each minibatch minimise the t-SNE objective
KL(P || Q) of that minibatch; afterwards f embeds unseen points directly.

Per training step, on a minibatch X_b of ``batch_size`` points::

    P_b  = joint_probabilities(pairwise_squared_distance(X_b), perplexity)
    loss = tsne_loss(P_b, encoder(X_b), dof)

Both are this package's custom ops; the gradient of ``tsne_loss`` is the
registered fused kernel, and backpropagation carries it into the encoder's
weights. Large batches give a P closer to the one of the full data set, so
``batch_size`` of 1000-5000 works better than the usual deep-learning sizes.

Training is a Keras ``fit`` on a ``tf.data`` pipeline, so it runs under a
``tf.distribute`` strategy (each replica computes P and the loss on its own
share of the batch; gradients are summed across replicas as Keras does).
The fitted model saves to one ``.keras`` file and loads back in any process
that has imported ``tsne_ops``.
"""
import json
import math

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from tsne_ops import ops
from tsne_ops.affinities import exact_joint_probabilities
from tsne_ops.datasets import deskew as _deskew
from tsne_ops.tsne import (_bad, _is_int, _is_real, check_perplexity, usable_perplexity,
                           validate_input)

_ENCODERS = ("dense", "conv")
# encoder='conv': two stride-2 convolutions under van der Maaten's dense
# layers. On MNIST this beats both the dense network and the pooled CNN with
# one 256-unit layer (conv_encoder's defaults); see the README.
_CONV_DENSE_UNITS = (500, 500, 2000)


def input_standardization(X):
    """``(mean, scale)`` for :func:`standardize`: the per-feature mean of
    ``X`` [N, D] and one scale for all features, the root mean square of
    their standard deviations (1 for constant data).

    One scale, not one per feature, so that the encoder sees the data's
    geometry up to a similarity, the transformations under which P does not
    change: the network then trains the same on pixels in [0, 1] or uint8,
    on data in metres or micrometres, and on data far from the origin.
    """
    X = np.asarray(X, np.float64).reshape(len(X), -1)
    mean = X.mean(axis=0)
    scale = float(np.sqrt(np.mean(X.var(axis=0))))
    return mean, (scale if scale > 0 and math.isfinite(scale) else 1.0)


def standardize(h, input_mean, input_scale):
    """``(h - mean) / scale`` by two fixed (not trained) Keras layers.

    Not ``Normalization(mean, variance)`` alone: it clamps the standard
    deviation at 1e-7, which would leave data at a scale of 1e-12 as it is.
    The mean goes first, so that data far from the origin loses nothing to
    the scaling.
    """
    mean = np.asarray(input_mean, np.float64).ravel()
    h = keras.layers.Normalization(mean=mean, variance=np.ones_like(mean), name="center")(h)
    return keras.layers.Rescaling(1.0 / float(input_scale), name="rescale")(h)


def dense_encoder(input_dim, n_components, hidden=(500, 500, 2000), activation="relu",
                  input_dropout=0.0, name="dense_encoder", input_mean=None, input_scale=None):
    """van der Maaten's parametric t-SNE network: input_dim-500-500-2000-n_components.

    ReLU hidden layers trained from scratch (instead of the original sigmoid
    layers pretrained as RBMs), linear output. ``input_dropout`` in [0, 1)
    zeroes that fraction of the input features during training (a
    regulariser; off at ``transform`` time). ``input_mean`` and
    ``input_scale`` (from :func:`input_standardization`) put a fixed
    standardisation in front.
    """
    if not (_is_real(input_dropout) and 0.0 <= input_dropout < 1.0):
        raise _bad("input_dropout", input_dropout, "a number in [0, 1)")
    inputs = keras.Input(shape=(int(input_dim),), name="x")
    h = inputs
    if input_mean is not None:
        h = standardize(h, input_mean, input_scale)
    if input_dropout:
        h = keras.layers.Dropout(float(input_dropout), name="input_dropout")(h)
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(h)
    outputs = keras.layers.Dense(n_components, name="embedding")(h)
    return keras.Model(inputs, outputs, name=name)


def conv_encoder(image_shape, n_components, filters=(32, 64), dense_units=256, strided=False,
                 name="conv_encoder", input_mean=None, input_scale=None):
    """A small CNN for flattened single-channel images of ``image_shape`` (H, W).

    Two blocks of 3x3 convolution + 2x2 max pooling ('same' padding, so 8x8
    digits work as well as 28x28 MNIST), a dense layer of ``dense_units``
    (or several: a tuple of widths), a linear output. The input is the
    flattened image [H*W], as for the dense encoder.
    ``strided=True`` replaces each convolution + pooling by one stride-2
    convolution (5x5 then 3x3), about 2.5 times cheaper on 28x28 images.
    ``input_mean`` and ``input_scale`` as for :func:`dense_encoder`.
    """
    h_, w_ = (int(s) for s in image_shape)
    inputs = keras.Input(shape=(h_ * w_,), name="x")
    h = inputs
    if input_mean is not None:
        h = standardize(h, input_mean, input_scale)
    h = keras.layers.Reshape((h_, w_, 1))(h)
    for i, f in enumerate(filters):
        if strided:
            h = keras.layers.Conv2D(f, 5 if i == 0 else 3, strides=2, padding="same",
                                    activation="relu", name=f"conv_{i}")(h)
        else:
            h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv_{i}")(h)
            h = keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}")(h)
    h = keras.layers.Flatten()(h)
    widths = (dense_units,) if _is_int(dense_units) else tuple(dense_units)
    for i, units in enumerate(widths):
        h = keras.layers.Dense(int(units), activation="relu",
                               name="hidden" if i == 0 else f"hidden_{i}")(h)
    outputs = keras.layers.Dense(n_components, name="embedding")(h)
    return keras.Model(inputs, outputs, name=name)


def cosine_adam(learning_rate, epochs, n_samples, batch_size):
    """Adam whose rate decays from ``learning_rate`` to zero along a cosine
    over the steps of ``epochs`` epochs of ``n_samples`` points in batches of
    ``batch_size`` (ParametricTSNE drops the last partial batch)."""
    steps = int(epochs) * max(1, int(n_samples) // min(int(batch_size), int(n_samples)))
    return keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(float(learning_rate), decay_steps=steps))


def random_shift(x, image_shape, max_shift, seed=None):
    """Each flattened image in ``x`` [B, H*W] moved by its own random offset of
    up to ``max_shift`` pixels in each direction, the uncovered border zero.

    Training augmentation for image data: the encoder sees shifted digits
    while P comes from the unshifted batch, so it learns to place a slightly
    displaced image where the original belongs (better on unseen images).
    """
    h, w = (int(v) for v in image_shape)
    s = int(max_shift)
    img = tf.reshape(x, [tf.shape(x)[0], h, w])
    img = tf.pad(img, [[0, 0], [s, s], [s, s]])
    n = tf.shape(img)[0]
    offsets = tf.random.uniform([n, 2], 0, 2 * s + 1, dtype=tf.int32, seed=seed)
    rows = offsets[:, :1] + tf.range(h)[None, :]
    cols = offsets[:, 1:] + tf.range(w)[None, :]
    img = tf.gather(img, rows, axis=1, batch_dims=1)
    img = tf.gather(img, cols, axis=2, batch_dims=1)
    return tf.reshape(img, tf.shape(x))


def neighbor_mixup(x, p, max_fraction, seed=None):
    """Each row of ``x`` [B, ...] moved a random fraction, uniform in
    [0, ``max_fraction``), of the way towards one of its neighbours in the
    batch, the neighbour drawn from the row's affinities in ``p`` [B, B].

    Training augmentation (a mixup restricted to neighbours): P stays that of
    the unmoved batch, so the encoder learns to place the points between a
    point and its neighbours where the point goes. Unseen points lie there,
    so this regularises the map where it is used (see the README's MNIST
    results).
    """
    logits = tf.math.log(tf.cast(p, tf.float32) + 1e-30)
    j = tf.random.categorical(logits, 1, seed=seed)[:, 0]
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    alpha = tf.random.uniform(shape, 0.0, float(max_fraction), dtype=x.dtype, seed=seed)
    return x + alpha * (tf.gather(x, j) - x)


@keras.saving.register_keras_serializable(package="tsne_ops", name="TSNEModel")
class TSNEModel(keras.Model):
    """An encoder trained on the t-SNE loss of each minibatch.

    ``call`` is the encoder; ``train_step`` computes the batch's P with the
    ops (no gradient needed there) and minimises ``tsne_loss``. The custom
    ops have no XLA kernel, so the model never compiles with XLA. Defined at
    module level (and registered with Keras) so that the model, and a
    ParametricTSNE holding it, go through ``pickle``, joblib and
    ``keras.saving``.
    """

    def __init__(self, encoder, perplexity=30.0, dof=1.0, early_exaggeration=1.0,
                 shift_augmentation=0, image_shape=None, neighbor_mixup=0.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.neighbor_mixup = float(neighbor_mixup)
        self.shift_augmentation = int(shift_augmentation)
        self.image_shape = None if image_shape is None else tuple(int(v) for v in image_shape)
        if self.shift_augmentation and self.image_shape is None:
            raise ValueError("shift_augmentation needs image_shape")
        self.perplexity = float(perplexity)
        self.dof = float(dof)
        self.early_exaggeration = float(early_exaggeration)
        # 1 while exaggerating, 0 after (set by a callback); a variable so
        # that one traced train step serves both phases.
        self.exaggerating = keras.Variable(
            1.0 if self.early_exaggeration != 1.0 else 0.0, trainable=False,
            name="exaggerating")
        self.supports_jit = False
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.encoder(inputs, training=training)

    def affinities(self, x):
        x = tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
        return exact_joint_probabilities(x, self.perplexity)

    def kl(self, x, training=False):
        p = self.affinities(x)
        y = tf.cast(self(x, training=training), p.dtype)
        return ops.tsne_loss(p, y, dof=self.dof)

    def objective(self, p, y):
        """(objective, kl): what the train step differentiates, and the plain KL.

        The gradient of ``objective`` in ``y`` is the t-SNE gradient with the
        attraction multiplied by ``early_exaggeration`` while ``exaggerating``
        is 1, the plain gradient of the KL after; its value is the plain KL.
        """
        kl = ops.tsne_loss(p, y, dof=self.dof)
        if self.early_exaggeration == 1.0:
            return kl, kl

        def exaggerated_minus_plain():
            g_exag, _ = ops.tsne_gradient(p, y, exaggeration=self.early_exaggeration,
                                          dof=self.dof, compute_kl=False)
            g_plain, _ = ops.tsne_gradient(p, y, dof=self.dof, compute_kl=False)
            return g_exag - g_plain

        # Early exaggeration multiplies the attractive part of the gradient:
        # add (grad(alpha) - grad(1)) through y. tf.cond runs the two extra
        # O(B^2) kernels only while exaggerating, not on every step of the
        # fit (the branch not taken costs nothing).
        extra = tf.stop_gradient(tf.cond(
            tf.convert_to_tensor(self.exaggerating) > 0, exaggerated_minus_plain,
            lambda: tf.zeros_like(y)))
        surrogate = tf.reduce_sum(extra * y)
        return kl + surrogate - tf.stop_gradient(surrogate), kl

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        p = self.affinities(x)
        if self.neighbor_mixup:
            x = neighbor_mixup(tf.cast(x, tf.float32), p, self.neighbor_mixup)
        if self.shift_augmentation:
            x = random_shift(x, self.image_shape, self.shift_augmentation)
        with tf.GradientTape() as tape:
            y = tf.cast(self(x, training=True), p.dtype)
            objective, kl = self.objective(p, y)
            # Keras sums gradients over replicas: average them instead.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = objective / tf.cast(replicas, kl.dtype)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(kl)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        self.loss_tracker.update_state(self.kl(x))
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      perplexity=self.perplexity, dof=self.dof,
                      early_exaggeration=self.early_exaggeration,
                      shift_augmentation=self.shift_augmentation,
                      neighbor_mixup=self.neighbor_mixup,
                      image_shape=None if self.image_shape is None else list(self.image_shape))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


class EmbeddingSnapshots(keras.callbacks.Callback):
    """Calls ``fn(epoch, loss, embedding_of_x_monitor)`` every ``every`` epochs
    (and once before training, as epoch 0); ``fn`` returning True stops
    training."""

    def __init__(self, fn, every, x_monitor, batch_size):
        super().__init__()
        self.fn, self.every, self.x_monitor, self.batch_size = fn, every, x_monitor, batch_size

    def _embed(self):
        return self.model.encoder.predict(self.x_monitor, batch_size=self.batch_size, verbose=0)

    def on_train_begin(self, logs=None):
        self.fn(0, None, self._embed())

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            if self.fn(epoch + 1, (logs or {}).get("loss"), self._embed()) is True:
                self.model.stop_training = True


class EndEarlyExaggeration(keras.callbacks.Callback):
    """Switches early exaggeration off after ``n_epochs`` epochs."""

    def __init__(self, n_epochs):
        super().__init__()
        self.n_epochs = n_epochs

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.n_epochs:
            self.model.exaggerating.assign(0.0)


class ParametricTSNE(TransformerMixin, BaseEstimator):
    """Parametric t-SNE with a Keras encoder, trained through the t-SNE ops.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding, >= 1 (2 or 3 for plots).
    perplexity : float, default=30.0
        Perplexity of each minibatch's P; must be less than the per-replica
        batch size (ValueError otherwise), and a value no row can reach
        (batch size - 1 or more) is lowered to 0.99 (batch size - 1) with a
        UserWarning (``perplexity_``).
    encoder : 'dense', 'conv' or keras.Model, default='dense'
        'dense': van der Maaten's D-500-500-2000-d network. 'conv': a CNN
        over images of ``image_shape``, two stride-2 convolutions (32 5x5,
        64 3x3) under the same 500-500-2000 dense layers
        (``conv_encoder(image_shape, d, strided=True,
        dense_units=(500, 500, 2000))``). A Keras model is used as given
        (input: the rows of X as passed to fit; output: [batch, n_components]).
    image_shape : (int, int) or None
        For ``encoder='conv'``: None takes it from 3-D/4-D input ([N, H, W] or
        [N, H, W, 1]) or from a square number of features (64 -> 8x8).
        Also the image shape for ``shift_augmentation`` and ``deskew``.
    batch_size : int, default=1000
        Points per step; P is computed over each batch (larger is better).
    epochs : int, default=50
    optimizer : str or keras optimizer, default='adam'
    learning_rate : float, default=1e-3
        Used when ``optimizer`` is a string.
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
        over to unseen images (MNIST: see the README). 0: off.
    neighbor_mixup : float, default=0.0
        Each training step moves every point a random fraction (uniform up
        to this value, in [0, 1]) of the way towards a neighbour drawn from
        its row of the batch's P, while P stays that of the unmoved points:
        a mixup between neighbours that makes the encoder smoother where
        unseen points fall (MNIST: see the README). 0: off.
    deskew : bool, default=False
        For images of handwritten characters: deskew every image (shear
        away its slant, centre its ink; :func:`tsne_ops.datasets.deskew`)
        before anything else, in ``fit`` (so P is computed from the
        deskewed images too), ``transform`` and ``score``. Needs the image
        shape as for ``encoder='conv'`` and single-channel images with
        non-negative intensities. On MNIST it lifts the held-out 1-NN
        accuracy by about 0.04 (see the README).
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
        Passed to Keras ``fit``.
    callback : callable or None
        ``callback(epoch, loss, embedding)`` every ``callback_every`` epochs
        and once before training (epoch 0) with the embedding of up to
        ``callback_samples`` training points; returning True stops training.
    callback_every : int, default=1
    callback_samples : int, default=2000
    strategy : tf.distribute.Strategy or None
        Builds and trains the model under this strategy (e.g.
        ``tf.distribute.MirroredStrategy()``); None uses the current one.

    Attributes
    ----------
    model_ : keras.Model
        The trained model (a ``TSNEModel``: encoder plus training step).
    encoder_ : keras.Model
    embedding_ : ndarray
        Embedding of the training data (after ``fit_transform``/``fit``).
    history_ : list of float
        Mean training loss (minibatch KL) per epoch.
    kl_divergence_ : float
        Last epoch's mean minibatch KL.
    perplexity_ : float
        The perplexity used for each batch's P.
    n_features_in_ : int
        Features per sample seen in fit (H * W for images).
    early_exaggeration_epochs_ : int
        Epochs trained with early exaggeration (0 when ``early_exaggeration``
        is 1).
    deskew_shape_ : (int, int) or None
        The image shape used for ``deskew`` (None when it is off).
    """

    def __init__(self, n_components=2, *, perplexity=30.0, encoder="dense", image_shape=None,
                 batch_size=1000, epochs=50, optimizer="adam", learning_rate=1e-3, dof=None,
                 early_exaggeration=1.0, early_exaggeration_epochs=None, shift_augmentation=0,
                 neighbor_mixup=0.0, deskew=False, standardize=True, random_state=None, verbose=0,
                 callback=None, callback_every=1, callback_samples=2000, strategy=None):
        self.n_components = n_components
        self.perplexity = perplexity
        self.encoder = encoder
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.epochs = epochs
        self.optimizer = optimizer
        self.learning_rate = learning_rate
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
        if isinstance(self.encoder, str):
            if self.encoder not in _ENCODERS:
                raise _bad("encoder", self.encoder, "'dense', 'conv' or a keras.Model")
        elif not isinstance(self.encoder, keras.Model):
            raise _bad("encoder", type(self.encoder).__name__, "'dense', 'conv' or a keras.Model")
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) else None
            if shape is None or len(shape) != 2 or not all(_is_int(s) and s > 0 for s in shape):
                raise _bad("image_shape", self.image_shape, "a pair of positive integers (H, W) or None")
        if not _is_int(self.batch_size) or self.batch_size < 3:
            raise _bad("batch_size", self.batch_size, "an integer >= 3")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise _bad("epochs", self.epochs, "an integer >= 1")
        if not isinstance(self.optimizer, (str, keras.optimizers.Optimizer)):
            raise _bad("optimizer", self.optimizer, "a Keras optimizer or its name")
        if not _is_real(self.learning_rate) or not self.learning_rate > 0:
            raise _bad("learning_rate", self.learning_rate, "a number > 0")
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

    def _build_encoder(self, X):
        n_features = X.shape[1]
        mean, scale = input_standardization(X) if self.standardize else (None, None)
        if self.encoder == "dense":
            return dense_encoder(n_features, self.n_components, input_mean=mean,
                                 input_scale=scale)
        if self.encoder == "conv":
            self.image_shape_ = self._resolve_image_shape(n_features)
            return conv_encoder(self.image_shape_, self.n_components, strided=True,
                                dense_units=_CONV_DENSE_UNITS, input_mean=mean,
                                input_scale=scale)
        encoder = self.encoder
        out = encoder.output_shape if hasattr(encoder, "output_shape") else None
        if out is not None and out[-1] != self.n_components:
            raise ValueError(f"encoder outputs {out[-1]} dimensions but n_components="
                             f"{self.n_components}")
        return encoder

    def _make_optimizer(self):
        if isinstance(self.optimizer, str):
            try:
                return keras.optimizers.get({"class_name": self.optimizer,
                                             "config": {"learning_rate": float(self.learning_rate)}})
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
        batch = min(self.batch_size, n - n % replicas)
        per_replica = batch // replicas
        perplexity = usable_perplexity(
            self.perplexity, per_replica,
            what=f"the per-replica batch size (batch_size={self.batch_size}, {n} samples, "
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
                              image_shape=shift_shape, name="parametric_tsne")
            model.compile(optimizer=self._make_optimizer(), jit_compile=False)

        data = (tf.data.Dataset.from_tensor_slices(X)
                .shuffle(n, seed=seed, reshuffle_each_iteration=True)
                .batch(batch, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))
        callbacks = []
        self.early_exaggeration_epochs_ = 0
        if self.early_exaggeration != 1.0:
            self.early_exaggeration_epochs_ = min(self.epochs, (
                self.epochs // 4 if self.early_exaggeration_epochs is None
                else int(self.early_exaggeration_epochs)))
            callbacks.append(EndEarlyExaggeration(self.early_exaggeration_epochs_))
        if self.callback is not None:
            # A fixed subset, the same in every snapshot (callback_indices_).
            idx = np.arange(n) if n <= self.callback_samples else np.sort(
                np.random.RandomState(0).choice(n, self.callback_samples, replace=False))
            self.callback_indices_ = idx
            monitor = X[idx]
            callbacks.append(EmbeddingSnapshots(self.callback, self.callback_every, monitor, batch))
        history = model.fit(data, epochs=self.epochs, verbose=self.verbose, callbacks=callbacks,
                            shuffle=False)  # tf.data shuffles
        self.model_ = model
        self.encoder_ = model.encoder
        self.history_ = [float(v) for v in history.history.get("loss", [])]
        self.kl_divergence_ = self.history_[-1] if self.history_ else float("nan")
        self.batch_size_ = batch
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
        # files written before standardisation existed have encoders without it
        params.setdefault("standardize", False)
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
