"""Training-recipe experiments for parametric t-SNE on MNIST (issue 4's floor).

Trains a 2-D encoder on the first --n MNIST training images and, every
--eval-every epochs, prints one JSON line: mean minibatch KL, the 1-NN and
10-NN accuracy of the 10,000 test images against the training embedding, and
the leave-one-out 10-NN accuracy of the training embedding. One run shows the
whole trajectory, so overfitting (train rising, test flat) is visible.

It has its own small training loop (the same step as TSNEModel.train_step:
P of the clean batch with the ops, tsne_loss, early exaggeration through
tsne_gradient) so that it can try things the estimator does not offer:
dropout, batch normalisation, decoupled weight decay, input noise, and P
taken from one exact P of the whole training set (--pmode global).

    python benchmarks/mnist_sweep.py --epochs 300 --tag baseline
    python benchmarks/mnist_sweep.py --epochs 300 --shift 1 --tag shift1

Lines go to stdout and, with a final summary, to --out (JSONL).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np


def build_encoder(keras, a):
    inp = keras.Input((784,))
    h = inp
    if a.encoder == "dense":
        if a.in_dropout:
            h = keras.layers.Dropout(a.in_dropout)(h)
        for units in (500, 500, 2000):
            h = keras.layers.Dense(units, activation=None if a.bn else "relu")(h)
            if a.bn:
                h = keras.layers.BatchNormalization()(h)
                h = keras.layers.Activation("relu")(h)
            if a.dropout:
                h = keras.layers.Dropout(a.dropout)(h)
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
    ap.add_argument("--encoder", default="dense", choices=("dense", "conv"))
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
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian input noise (std)")
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
    encoder = build_encoder(keras, a)
    opt = keras.optimizers.AdamW(a.lr, weight_decay=a.wd) if a.wd else keras.optimizers.Adam(a.lr)
    if a.pmode == "global":
        p_all = ops.joint_probabilities(ops.pairwise_squared_distance(tf.constant(X)), a.perp)

    @tf.function(jit_compile=False)
    def step(xb, idx, exaggerating):
        if a.pmode == "global":
            sub = tf.gather(tf.gather(p_all, idx, axis=0), idx, axis=1)
            p = sub / tf.reduce_sum(sub)
        else:
            p = ops.joint_probabilities(ops.pairwise_squared_distance(xb), a.perp)
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
        Ytr = encoder.predict(X, batch_size=5000, verbose=0)
        Yte = encoder.predict(Xte, batch_size=5000, verbose=0)
        return dict(test1=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=1),
                    test10=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=10),
                    train10=metrics.knn_accuracy(Ytr, y, k=10))

    rng = np.random.RandomState(a.seed)
    Xt = tf.constant(X)
    t0 = time.time()
    trajectory = []
    for epoch in range(a.epochs):
        perm = rng.permutation(len(X))
        exaggerating = tf.constant(1.0 if epoch < a.exag_epochs else 0.0)
        kls = []
        for b in range(len(X) // a.batch):
            idx = perm[b * a.batch:(b + 1) * a.batch]
            kls.append(float(step(tf.gather(Xt, idx), tf.constant(idx, tf.int32), exaggerating)))
        if (epoch + 1) % a.eval_every == 0 or epoch == a.epochs - 1:
            row = dict(epoch=epoch + 1, kl=round(float(np.mean(kls)), 4), **evaluate(),
                       s=round(time.time() - t0, 1))
            trajectory.append(row)
            print(json.dumps(row), flush=True)
    summary = dict(vars(a), final=trajectory[-1], trajectory=trajectory)
    summary.pop("out")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
