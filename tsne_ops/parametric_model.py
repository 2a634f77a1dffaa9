"""The Keras side of parametric t-SNE: the model that trains an encoder on the
t-SNE loss (:class:`TSNEModel`), its callbacks, its optimiser schedule and the
training-time augmentations.

:class:`tsne_ops.ParametricTSNE` builds a :class:`TSNEModel` around one of the
encoders of :mod:`tsne_ops.encoders`; the model is defined here at module level
and registered with Keras so that saved ``.keras`` files load in any process
that imports ``tsne_ops``.
"""
import keras
import numpy as np
import tensorflow as tf

from tsne_ops import ops
from tsne_ops.affinities import exact_joint_probabilities, sparse_joint_probabilities


def multi_worker(strategy):
    """True when ``strategy``'s replicas span several processes (a
    ``MultiWorkerMirroredStrategy`` with a cluster in ``TF_CONFIG``): the
    test Keras itself makes before it reduces across workers."""
    in_multi_worker_mode = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode",
                                   None)
    return bool(in_multi_worker_mode is not None and in_multi_worker_mode())


def cosine_rate(learning_rate, steps):
    """A rate that decays from ``learning_rate`` to zero along a cosine over
    ``steps`` training steps (ParametricTSNE's ``lr_schedule='cosine'``)."""
    return keras.optimizers.schedules.CosineDecay(float(learning_rate),
                                                  decay_steps=max(1, int(steps)))


def cosine_adam(learning_rate, epochs, n_samples, batch_size):
    """Adam on :func:`cosine_rate` over the steps of ``epochs`` epochs of
    ``n_samples`` points in batches of ``batch_size`` (ParametricTSNE drops
    the last partial batch)."""
    steps = int(epochs) * max(1, int(n_samples) // min(int(batch_size), int(n_samples)))
    return keras.optimizers.Adam(cosine_rate(learning_rate, steps))


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
    so this regularises the map where it is used (docs/parametric_mnist.md).
    """
    logits = tf.math.log(tf.cast(p, tf.float32) + 1e-30)
    j = tf.random.categorical(logits, 1, seed=seed)[:, 0]
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    alpha = tf.random.uniform(shape, 0.0, float(max_fraction), dtype=x.dtype, seed=seed)
    return x + alpha * (tf.gather(x, j) - x)


class EdgeSampler:
    """Training batches drawn from a global sparse P: parametric t-SNE on the
    whole training set's neighbourhoods.

    P is computed once over all ``N`` training points
    (:func:`tsne_ops.affinities.sparse_joint_probabilities`). A batch is made
    of *groups*: a *head* ``i`` (every point once per pass, in a shuffled
    order) and ``tails_per_head`` *tails* drawn independently from its row of
    P with probability ``p_ij / p_i`` (``p_i`` the row sum). Each group carries
    its own block of affinities, so that a ``tf.distribute`` strategy can split
    a batch across replicas group by group:

    * ``block='sampled'``: the sampled pairs only, ``(i, j)`` with weight
      ``p_i / tails_per_head``. Over the uniform heads the pair ``(i, j)`` then
      has expected weight ``p_ij / N``: the attraction of a batch is, in
      expectation, that of the whole P (up to the constant, which the
      normalisation removes);
    * ``block='restricted'``: P itself restricted to the group's points (the
      sampled pairs, and the pairs of tails that are neighbours of each other).
      Not exact in expectation, but each point sees several of its neighbours
      per step.

    The repulsion is that of the batch's points: the normalisation of Q
    estimated over the batch (negative sampling with in-batch negatives, as
    parametric UMAP and the contrastive neighbour embeddings of Damrich, Boehm
    et al., ICLR 2023), consistent as the batch grows. :meth:`dataset` yields
    ``{"x": [G, 1 + m, ...], "p": [G, 1 + m, 1 + m]}``; :func:`group_affinities`
    turns the blocks into the batch's P.
    """

    def __init__(self, X, perplexity, n_neighbors=None, tails_per_head=1, block="sampled"):
        if block not in ("sampled", "restricted"):
            raise ValueError(f"block must be 'sampled' or 'restricted', got block={block!r}")
        X = np.asarray(X, np.float32)
        self.n = len(X)
        self.tails_per_head = int(tails_per_head)
        self.block = block
        p = sparse_joint_probabilities(X.reshape(self.n, -1), float(perplexity),
                                       n_neighbors=n_neighbors)
        rows = p.indices[:, 0].numpy()
        cols = p.indices[:, 1].numpy()
        values = p.values.numpy().astype(np.float64)
        # canonical row-major order: row i's entries are
        # [row_start[i], row_start[i + 1]) in the flat arrays
        row_start = np.searchsorted(rows, np.arange(self.n + 1))
        cumulative = np.cumsum(values)
        self.row_sums = np.bincount(rows, weights=values, minlength=self.n)
        self.nnz = len(values)
        self._x = tf.constant(X)
        self._cols = tf.constant(cols)
        self._keys = tf.constant(rows * self.n + cols)  # sorted: row-major order
        self._values = tf.constant(values.astype(np.float32))
        self._cumulative = tf.constant(cumulative)
        self._first = tf.constant(row_start[:-1].astype(np.int64))
        self._last = tf.constant((row_start[1:] - 1).astype(np.int64))
        self._offset = tf.constant(cumulative[row_start[:-1]] - values[row_start[:-1]]
                                   if self.nnz else np.zeros(self.n))
        self._row_sums = tf.constant(self.row_sums)

    def tails(self, heads, seed=None):
        """One neighbour per head (any shape of heads), drawn from its row of P
        by inverse CDF.

        With a ``seed`` the draw is a function of the seed and the heads (a
        stateless generator keyed by them), so that it does not depend on the
        order in which ``tf.data`` runs its parallel map calls: a fit with a
        ``random_state`` is reproducible.
        """
        heads = tf.cast(heads, tf.int64)
        if seed is None:
            u = tf.random.uniform(tf.shape(heads), dtype=tf.float64)
        else:
            key = tf.reduce_sum(tf.math.floormod(
                tf.reshape(heads, [-1]) * 40503 + tf.range(tf.size(heads, tf.int64)) * 7919 + 1,
                2147483647))
            u = tf.random.stateless_uniform(tf.shape(heads), seed=tf.stack(
                [tf.constant(int(seed), tf.int64), key]), dtype=tf.float64)
        target = tf.gather(self._offset, heads) + u * tf.gather(self._row_sums, heads)
        flat = tf.searchsorted(self._cumulative, tf.reshape(target, [-1]), side="right",
                               out_type=tf.int64)
        pos = tf.clip_by_value(tf.reshape(flat, tf.shape(heads)), tf.gather(self._first, heads),
                               tf.gather(self._last, heads))
        return tf.gather(self._cols, pos)

    def lookup(self, rows, cols):
        """P[rows, cols] (same shapes), 0 where P stores no entry."""
        keys = tf.reshape(rows * self.n + cols, [-1])
        pos = tf.minimum(tf.searchsorted(self._keys, keys, out_type=tf.int64),
                         max(self.nnz - 1, 0))
        found = tf.gather(self._keys, pos) == keys
        return tf.reshape(tf.where(found, tf.gather(self._values, pos), 0.0), tf.shape(rows))

    def groups(self, heads, seed=None):
        """``(index [G, 1 + m], block [G, 1 + m, 1 + m])`` for heads [G]."""
        heads = tf.cast(heads, tf.int64)
        m = self.tails_per_head
        tails = self.tails(tf.tile(heads[:, None], [1, m]), seed=seed)
        index = tf.concat([heads[:, None], tails], 1)
        if self.block == "restricted":
            block = self.lookup(index[:, :, None] + 0 * index[:, None, :],
                                index[:, None, :] + 0 * index[:, :, None])
        else:
            w = tf.cast(tf.gather(self._row_sums, heads), tf.float32) / m
            row = tf.concat([tf.zeros_like(w)[:, None], tf.tile(w[:, None], [1, m])], 1)
            first = tf.one_hot(0, m + 1, dtype=tf.float32)
            block = row[:, None, :] * first[None, :, None] + row[:, :, None] * first[None, None, :]
        return index, block

    def dataset(self, batch_size, seed=None):
        """Batches of ``batch_size`` groups, one pass over the heads per epoch."""
        def batch(heads):
            index, block = self.groups(heads, seed=seed)
            return {"x": tf.gather(self._x, index), "p": block}

        return (tf.data.Dataset.range(self.n)
                .shuffle(self.n, seed=seed, reshuffle_each_iteration=True)
                .batch(int(batch_size), drop_remainder=True)
                .map(batch, num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))


def group_affinities(blocks):
    """The P of a batch of groups: ``blocks`` [G, g, g] on the diagonal of a
    [G g, G g] matrix (groups laid out one after another, as
    ``reshape(x, [G g, ...])`` lays out their points), divided by its sum."""
    blocks = tf.cast(blocks, tf.float32)
    shape = tf.shape(blocks, out_type=tf.int64)
    n_groups, g = shape[0], shape[1]
    grid = tf.stack(tf.meshgrid(tf.range(g), tf.range(g), indexing="ij"), -1)  # [g, g, 2]
    offsets = (tf.range(n_groups) * g)[:, None, None, None]
    indices = tf.reshape(grid[None] + offsets, [-1, 2])
    p = tf.scatter_nd(indices, tf.reshape(blocks, [-1]), [n_groups * g, n_groups * g])
    return p / tf.reduce_sum(p)


def _all_gather(replica, x):
    """``x`` [n_r, ...] of every replica, concatenated in replica order, by
    all-reduce sums (``ReplicaContext.all_gather`` fails inside a Keras train
    step under a multi-worker strategy); differentiable, and the replicas'
    ``n_r`` may differ."""
    r = replica.num_replicas_in_sync
    n = tf.shape(x, out_type=tf.int32)[0]
    counts = tf.cast(replica.all_reduce("sum", tf.one_hot(replica.replica_id_in_sync_group, r)
                                        * tf.cast(n, tf.float32)), tf.int32)
    start = tf.reduce_sum(counts[:replica.replica_id_in_sync_group])
    total = tf.reduce_sum(counts)
    placed = tf.pad(x, tf.concat([[[start, total - start - n]],
                                  tf.zeros([tf.rank(x) - 1, 2], tf.int32)], 0))
    return replica.all_reduce("sum", placed)


@keras.saving.register_keras_serializable(package="tsne_ops", name="TSNEModel")
class TSNEModel(keras.Model):
    """An encoder trained on the t-SNE loss of each minibatch.

    ``call`` is the encoder; ``train_step`` minimises ``tsne_loss`` of a
    batch. With ``training_p='batch'`` the batch is a set of points and its P
    is computed over them with the ops (no gradient needed there); with
    ``training_p='global'`` the batch is a dict of sampled pairs from
    :class:`EdgeSampler` and its P is :func:`group_affinities`. The custom
    ops have no XLA kernel, so the model never compiles with XLA. Defined at
    module level (and registered with Keras) so that the model, and a
    ParametricTSNE holding it, go through ``pickle``, joblib and
    ``keras.saving``.
    """

    def __init__(self, encoder, perplexity=30.0, dof=1.0, early_exaggeration=1.0,
                 shift_augmentation=0, image_shape=None, neighbor_mixup=0.0, training_p="batch",
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        if training_p not in ("batch", "global"):
            raise ValueError(f"training_p must be 'batch' or 'global', got {training_p!r}")
        self.training_p = training_p
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
        if isinstance(inputs, dict):  # a batch of groups (Keras builds on one)
            inputs = self._points(inputs["x"])
        return self.encoder(inputs, training=training)

    @staticmethod
    def _points(groups):
        shape = tf.shape(groups)
        return tf.reshape(groups, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))

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
        replica = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # With the global P and several replicas, each replica embeds its
        # share of the batch and the loss is that of the whole (global)
        # batch: its embedding and blocks gathered from every replica.
        gather = isinstance(data, dict) and replicas > 1 and replica is not None
        if isinstance(data, dict):  # groups sampled from the global P
            x = self._points(tf.cast(data["x"], tf.float32))
            p = group_affinities(data["p"])
        else:
            x = data[0] if isinstance(data, (tuple, list)) else data
            p = self.affinities(x)
        if self.neighbor_mixup:
            x = neighbor_mixup(tf.cast(x, tf.float32), p, self.neighbor_mixup)
        if self.shift_augmentation:
            x = random_shift(x, self.image_shape, self.shift_augmentation)
        if gather:
            p = group_affinities(_all_gather(replica, tf.cast(data["p"], tf.float32)))
        with tf.GradientTape() as tape:
            y = tf.cast(self(x, training=True), p.dtype)
            if gather:  # differentiable: the gradient reaches each replica's share
                y = _all_gather(replica, y)
            objective, kl = self.objective(p, y)
            # Keras sums gradients over replicas: average them instead.
            scaled = objective / tf.cast(replicas, kl.dtype)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(kl)
        return self._logs()

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        self.loss_tracker.update_state(self.kl(x))
        return self._logs()

    def _logs(self):
        loss = self.loss_tracker.result()
        if multi_worker(tf.distribute.get_strategy()):
            # Keras averages a multi-worker run's metrics with
            # strategy.reduce(..., axis=0), which needs an axis: one value
            # per replica, averaged into the scalar over all replicas.
            loss = tf.reshape(loss, [1])
        return {"loss": loss}

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 builds the model from the first batch, which under a
        # strategy it first averages across replicas with one
        # ``strategy.reduce`` of the whole batch; a multi-worker strategy's
        # all-reduce takes one tensor, not the dict of a batch of groups.
        # Only the batch's shapes matter here: build from this worker's first
        # replica's share instead (no collective).
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is not None and iterator is not None and data_batch is None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v), next(it))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      perplexity=self.perplexity, dof=self.dof,
                      early_exaggeration=self.early_exaggeration,
                      shift_augmentation=self.shift_augmentation,
                      neighbor_mixup=self.neighbor_mixup, training_p=self.training_p,
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


class EpochProgress(keras.callbacks.Callback):
    """A tqdm progress bar over the epochs of ``fit``, the last epoch's loss
    beside it (``ParametricTSNE(verbose=1)``)."""

    def __init__(self, epochs, file=None):
        super().__init__()
        self.epochs, self.file, self.bar = int(epochs), file, None

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.epochs, unit="epoch", desc="ParametricTSNE", file=self.file)

    def on_epoch_end(self, epoch, logs=None):
        if "loss" in (logs or {}):
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()
