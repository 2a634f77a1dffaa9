"""Training-recipe experiments for parametric t-SNE on MNIST (issue 4's floor).

Trains a 2-D encoder on the first --n MNIST training images and, every
--eval-every epochs, prints one JSON line: mean minibatch KL, the 1-NN and
10-NN accuracy of the 10,000 test images against the training embedding, and
the leave-one-out 10-NN accuracy of the training embedding. One run shows the
whole trajectory, so overfitting (train rising, test flat) is visible.

It has its own small training loop (the same step as TSNEModel.train_step:
P of the clean batch with the ops, tsne_loss, early exaggeration through
tsne_gradient) so that it can try things the estimator does not offer:
dropout, batch normalisation, decoupled weight decay, input noise, PCA
input, other widths and activations, a weight average, a strided CNN, and P
taken from one exact P of the whole training set (--pmode global),
deskewed images (--deskew, tsne_ops.datasets.deskew),
denoising-autoencoder pretraining of the dense layers (--ae-epochs) and a
full-batch fine-tuning phase at the end (--ft-epochs).
--nbr-mix is the estimator's neighbor_mixup.

    python benchmarks/mnist_sweep.py --epochs 300 --tag baseline
    python benchmarks/mnist_sweep.py --epochs 300 --shift 1 --tag shift1
    python benchmarks/mnist_sweep.py --epochs 400 --nbr-mix 0.5 --eval-every 50 --tag nbrmix05_400

Lines go to stdout and, with a final summary, to --out (JSONL).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np


def build_encoder(keras, a, n_in):
    inp = keras.Input((n_in,))
    h = inp
    if a.encoder == "dense":
        if a.in_dropout:
            h = keras.layers.Dropout(a.in_dropout)(h)
        for units in map(int, a.hidden.split(",")):
            h = keras.layers.Dense(units, activation=None if a.bn else a.act)(h)
            if a.bn:
                h = keras.layers.BatchNormalization()(h)
                h = keras.layers.Activation(a.act)(h)
            if a.dropout:
                h = keras.layers.Dropout(a.dropout)(h)
    elif a.encoder == "sconv":  # strided: no pooling, cheaper than the dense net
        h = keras.layers.Reshape((28, 28, 1))(h)
        h = keras.layers.Conv2D(32, 5, strides=2, padding="same", activation="relu")(h)
        h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(256, activation="relu")(h)
    else:
        h = keras.layers.Reshape((28, 28, 1))(h)
        for filters in (32, 64):
            h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
            h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Flatten()(h)
        if a.dropout:
            h = keras.layers.Dropout(a.dropout)(h)
        h = keras.layers.Dense(256, activation="relu")(h)
    return keras.Model(inp, keras.layers.Dense(2)(h))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="dense", choices=("dense", "conv", "sconv"))
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--exag", type=float, default=4.0)
    ap.add_argument("--exag-epochs", type=int, default=50)
    ap.add_argument("--perp", type=float, default=30.0)
    ap.add_argument("--dof", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--in-dropout", type=float, default=0.0)
    ap.add_argument("--bn", action="store_true")
    ap.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay (0: Adam)")
    ap.add_argument("--shift", type=int, default=0, help="random shift augmentation (pixels)")
    ap.add_argument("--nbr-mix", type=float, default=0.0,
                    help="move each input up to this fraction towards a P-sampled neighbour")
    ap.add_argument("--mix-p", action="store_true",
                    help="with --nbr-mix: mix the rows and columns of P the same way as the points")
    ap.add_argument("--distill-epochs", type=int, default=0,
                    help="first regress the encoder on exact t-SNE of the training set "
                         "(tsne_ops.TSNE, same perplexity and dof) for this many epochs "
                         "(MSE, batch 500, with --nbr-mix applied to the inputs), then "
                         "train through the t-SNE loss for --epochs")
    ap.add_argument("--ae-epochs", type=int, default=0,
                    help="first pretrain the dense hidden layers as a denoising autoencoder "
                         "(mirror decoder, masking noise --ae-mask, cross-entropy) for this "
                         "many epochs")
    ap.add_argument("--ae-mask", type=float, default=0.2)
    ap.add_argument("--ft-epochs", type=int, default=0,
                    help="after --epochs, this many full-batch epochs (P of all --n images) "
                         "with a fresh Adam at --ft-lr")
    ap.add_argument("--ft-lr", type=float, default=5e-4)
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian input noise (std)")
    ap.add_argument("--deskew", action="store_true",
                    help="deskew every image (train and test) before anything else")
    ap.add_argument("--pca", type=int, default=0,
                    help="encoder input: the first K principal components of the training set")
    ap.add_argument("--hidden", default="500,500,2000", help="dense layer widths")
    ap.add_argument("--act", default="relu", help="dense activation")
    ap.add_argument("--cosine", action="store_true",
                    help="cosine decay of the learning rate to 0 over the run")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="evaluate an exponential moving average of the weights (decay)")
    ap.add_argument("--pmode", default="batch", choices=("batch", "global"))
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mnist_sweep.jsonl"))
    a = ap.parse_args()

    import keras
    import tensorflow as tf

    from tsne_ops import datasets, metrics, ops
    from tsne_ops.parametric import random_shift

    keras.utils.set_random_seed(a.seed)
    X, y = datasets.load_dataset("mnist", None, n=a.n, split="train")
    Xte, yte = datasets.load_dataset("mnist", None, n=10000, split="test")
    X = X.reshape(len(X), -1).astype(np.float32)
    Xte = Xte.reshape(len(Xte), -1).astype(np.float32)
    if a.deskew:
        shape = datasets.IMAGE_SHAPES["mnist"]
        X, Xte = datasets.deskew(X, shape), datasets.deskew(Xte, shape)
    Xp = X  # P is computed from the pixels
    if a.pca:
        from sklearn.decomposition import PCA
        pca = PCA(a.pca, random_state=a.seed).fit(X)
        X, Xte = pca.transform(X).astype(np.float32), pca.transform(Xte).astype(np.float32)
    encoder = build_encoder(keras, a, X.shape[1])
    kw = dict(use_ema=True, ema_momentum=a.ema) if a.ema else {}
    lr = (keras.optimizers.schedules.CosineDecay(a.lr, a.epochs * (len(X) // a.batch))
          if a.cosine else a.lr)
    opt = (keras.optimizers.AdamW(lr, weight_decay=a.wd, **kw) if a.wd
           else keras.optimizers.Adam(lr, **kw))
    if a.pmode == "global":
        p_all = ops.joint_probabilities(ops.pairwise_squared_distance(tf.constant(X)), a.perp)

    full = a.batch >= len(X)

    @tf.function(jit_compile=False)
    def step(xb, xpb, idx, exaggerating):
        if a.pmode == "global" and full:
            p = p_all  # the whole set in its own order: nothing to gather
        elif a.pmode == "global":
            sub = tf.gather(tf.gather(p_all, idx, axis=0), idx, axis=1)
            p = sub / tf.reduce_sum(sub)
        else:
            p = ops.joint_probabilities(ops.pairwise_squared_distance(xpb), a.perp)
        if a.nbr_mix:
            # move each point part of the way towards one of its neighbours,
            # drawn from its row of P: the encoder must map the in-between
            # point where the point itself goes
            j = tf.random.categorical(tf.math.log(p + 1e-12), 1)[:, 0]
            alpha = tf.random.uniform([tf.shape(xb)[0], 1], 0.0, a.nbr_mix)
            xb = xb + alpha * (tf.gather(xb, j) - xb)
            if a.mix_p:
                # P of the moved batch: P' = M P M^T with M the mixing matrix
                # (row i: 1 - alpha_i at i, alpha_i at j_i), renormalised
                mp = (1.0 - alpha) * p + alpha * tf.gather(p, j)
                mp = (1.0 - tf.transpose(alpha)) * mp + tf.transpose(alpha) * tf.gather(mp, j, axis=1)
                mp = tf.linalg.set_diag(mp, tf.zeros_like(mp[:, 0]))
                p = mp / tf.reduce_sum(mp)
        if a.shift:
            xb = random_shift(xb, (28, 28), a.shift)
        if a.noise:
            xb = xb + tf.random.normal(tf.shape(xb), stddev=a.noise)
        with tf.GradientTape() as tape:
            yb = encoder(xb, training=True)
            kl = ops.tsne_loss(p, yb, dof=a.dof)
            g_ex, _ = ops.tsne_gradient(p, yb, exaggeration=a.exag, dof=a.dof, compute_kl=False)
            g_pl, _ = ops.tsne_gradient(p, yb, dof=a.dof, compute_kl=False)
            extra = tf.stop_gradient(exaggerating * (g_ex - g_pl))
            objective = kl + tf.reduce_sum(extra * yb) - tf.stop_gradient(tf.reduce_sum(extra * yb))
        grads = tape.gradient(objective, encoder.trainable_variables)
        opt.apply(grads, encoder.trainable_variables)
        return kl

    def evaluate():
        if a.ema:
            saved = [v.numpy() for v in encoder.trainable_variables]
            opt.finalize_variable_values(encoder.trainable_variables)
        Ytr = encoder.predict(X, batch_size=5000, verbose=0)
        Yte = encoder.predict(Xte, batch_size=5000, verbose=0)
        if a.ema:
            for v, w in zip(encoder.trainable_variables, saved):
                v.assign(w)
        return dict(test1=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=1),
                    test10=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=10),
                    train10=metrics.knn_accuracy(Ytr, y, k=10))

    def record(**row):
        """One checkpoint: the given fields, the evaluation, the time so far."""
        row = dict(row, **evaluate(), s=round(time.time() - t0, 1))
        trajectory.append(row)
        print(json.dumps(row), flush=True)

    rng = np.random.RandomState(a.seed)
    Xt, Xpt = tf.constant(X), tf.constant(Xp)
    t0 = time.time()
    trajectory = []
    if a.distill_epochs:
        from sklearn.neighbors import NearestNeighbors

        from tsne_ops import TSNE
        Yt = TSNE(perplexity=a.perp, dof=a.dof, random_state=a.seed).fit_transform(Xp)
        Yt = tf.constant(Yt.astype(np.float32))
        # neighbours for the mixup partners: 10 nearest in pixel space
        nbrs = NearestNeighbors(n_neighbors=11).fit(Xp).kneighbors(Xp, return_distance=False)[:, 1:]
        nbrs = tf.constant(nbrs)
        dopt = keras.optimizers.Adam(a.lr)

        @tf.function(jit_compile=False)
        def dstep(idx):
            xb, tb = tf.gather(Xt, idx), tf.gather(Yt, idx)
            if a.nbr_mix:
                pick = tf.random.uniform([tf.shape(idx)[0]], 0, 10, dtype=tf.int32)
                j = tf.gather(tf.gather(nbrs, idx), pick, batch_dims=1)
                alpha = tf.random.uniform([tf.shape(idx)[0], 1], 0.0, a.nbr_mix)
                xb = xb + alpha * (tf.gather(Xt, j) - xb)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(encoder(xb, training=True) - tb))
            dopt.apply(tape.gradient(loss, encoder.trainable_variables),
                       encoder.trainable_variables)
            return loss

        for epoch in range(a.distill_epochs):
            perm = rng.permutation(len(X))
            losses = [float(dstep(tf.constant(perm[b:b + 500], tf.int32)))
                      for b in range(0, len(X) - 499, 500)]
            if (epoch + 1) % max(1, a.distill_epochs // 4) == 0:
                record(distill_epoch=epoch + 1, mse=round(float(np.mean(losses)), 3))
    if a.ae_epochs:
        # the encoder's hidden stack (all but the 2-D output layer) under a
        # mirror decoder, trained to rebuild the pixels from masked input
        h = encoder.layers[-2].output
        for units in reversed([int(u) for u in a.hidden.split(",")][:-1]):
            h = keras.layers.Dense(units, activation=a.act)(h)
        recon = keras.layers.Dense(X.shape[1], activation="sigmoid")(h)
        ae = keras.Model(encoder.input, recon)
        ae.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
        noisy = tf.data.Dataset.from_tensor_slices(X).shuffle(len(X), seed=a.seed).batch(256)
        noisy = noisy.map(lambda xb: (
            xb * tf.cast(tf.random.uniform(tf.shape(xb)) >= a.ae_mask, xb.dtype), xb))
        for epoch in range(a.ae_epochs):
            hist = ae.fit(noisy, epochs=1, verbose=0)
            if (epoch + 1) % max(1, a.ae_epochs // 4) == 0:
                record(ae_epoch=epoch + 1, bce=round(hist.history["loss"][-1], 4))
    for epoch in range(a.epochs):
        perm = np.arange(len(X)) if full else rng.permutation(len(X))
        exaggerating = tf.constant(1.0 if epoch < a.exag_epochs else 0.0)
        kls = []
        for b in range(len(X) // a.batch):
            idx = perm[b * a.batch:(b + 1) * a.batch]
            kls.append(float(step(tf.gather(Xt, idx), tf.gather(Xpt, idx),
                                   tf.constant(idx, tf.int32), exaggerating)))
        if (epoch + 1) % a.eval_every == 0 or epoch == a.epochs - 1:
            record(epoch=epoch + 1, kl=round(float(np.mean(kls)), 4))
    if a.ft_epochs:
        opt = keras.optimizers.Adam(a.ft_lr)  # `step` closes over `opt`: trace it afresh
        step = tf.function(step.python_function, jit_compile=False)
        idx = np.arange(len(X))
        for epoch in range(a.ft_epochs):
            kl = float(step(Xt, Xpt, tf.constant(idx, tf.int32), tf.constant(0.0)))
            if (epoch + 1) % max(1, a.ft_epochs // 4) == 0:
                record(ft_epoch=epoch + 1, kl=round(kl, 4))
    summary = dict(vars(a), final=trajectory[-1], trajectory=trajectory)
    summary.pop("out")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
