"""Encoders for :class:`tsne_ops.ParametricTSNE`: the networks that map data to
the embedding (cases B-E), and the fixed input standardisation in front of them.

* :func:`dense_encoder`: van der Maaten's (2009) fully connected network,
  D-500-500-2000-d;
* :func:`conv_encoder`: a small CNN over flattened single-channel images;
* :func:`input_standardization` and :func:`standardize`: one fixed
  ``(x - mean) / scale`` so that the networks train alike whatever the data's
  units and offset (P does not depend on them either).

Each returns a plain ``keras.Model`` whose input is the flattened sample.
"""
import math

import keras
import numpy as np

from tsne_ops._validation import _bad, _is_int, _is_real


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
