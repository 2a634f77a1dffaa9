"""Validation 1-NN along training for the global-P ParametricTSNE: the search behind its defaults.

    python experiments/parametric_global_curves.py --n 60000 --epochs 40 --hidden 256,256,1024 \
        --cosine --eval 8 --tag n40

The first ``--n`` MNIST training images; the last tenth is the validation
split, the encoder is trained on the rest and every ``--eval`` epochs a 1-NN
classifier fitted on the training embedding is scored on the validation
embedding. The test set is never loaded. The run is assembled from the
estimator's own pieces (``EdgeSampler``, ``TSNEModel`` and its train step,
``dense_encoder``, ``input_standardization``, Keras' cosine decay), not
through ``ParametricTSNE.fit``, because the estimator does not expose the
encoder between epochs. One JSON line per evaluation goes to ``--out``, with
every setting of the run. Seconds are wall time on the (shared) machine,
including P.
"""
import argparse
import json
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--n", type=int, default=60000)
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--heads", type=int, default=125, help="heads per step (batch_size)")
ap.add_argument("--tails", type=int, default=3, help="tails per head")
ap.add_argument("--hidden", default="500,500,2000", help="dense_encoder's hidden widths")
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--cosine", action="store_true", help="Adam's rate on a cosine decay to zero")
ap.add_argument("--dof", type=float, default=1.0)
ap.add_argument("--mix", type=float, default=0.0, help="neighbor_mixup")
ap.add_argument("--exag", type=float, default=1.0, help="early exaggeration")
ap.add_argument("--exag-epochs", type=int, default=0)
ap.add_argument("--perp", type=float, default=30.0)
ap.add_argument("--eval", type=int, default=2, help="evaluate every this many epochs")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--tag", default="")
ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "parametric_global_curves.jsonl"))
ap.add_argument("--table", action="store_true", help="print --out as a markdown table and exit")
a = ap.parse_args()
if a.table:
    print("| run | hidden | epochs | heads x tails | rate | other | epoch | s | val 1-NN | train 10-NN |\n|"
          + " --- |" * 10)
    for line in open(a.out):
        r = json.loads(line)
        other = ", ".join(f"{k}={r[k]}" for k, v0 in (("dof", 1.0), ("mix", 0.0), ("exag", 1.0))
                          if r[k] != v0) or "-"
        rate = f"{r['lr']:g}" + (" cosine" if r["cosine"] else "")
        print(f"| {r['tag']} | {r['hidden']} | {r['epochs']} | {r['heads']} x {r['tails']} | {rate} | {other} "
              f"| {r['epoch']} | {r['s']} | {r['val1nn']:.3f} | {r['train10nn']:.3f} |")
    raise SystemExit

import keras  # noqa: E402  (after argparse: --help without TensorFlow)
import numpy as np  # noqa: E402

from tsne_ops import datasets, metrics  # noqa: E402
from tsne_ops.encoders import dense_encoder, input_standardization  # noqa: E402
from tsne_ops.parametric_model import EdgeSampler, EndEarlyExaggeration, TSNEModel  # noqa: E402

keras.utils.set_random_seed(a.seed)
n_val = a.n // 10
X, y = datasets.load_dataset("mnist", None, n=a.n, split="train")
X = X.reshape(len(X), -1).astype(np.float32)
Xf, yf, Xv, yv = X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]
t0 = time.time()
data = EdgeSampler(Xf, a.perp, tails_per_head=a.tails).dataset(a.heads, seed=a.seed)
mean, scale = input_standardization(Xf)
encoder = dense_encoder(Xf.shape[1], 2, hidden=tuple(int(h) for h in a.hidden.split(",")),
                        input_mean=mean, input_scale=scale)
model = TSNEModel(encoder, perplexity=a.perp, dof=a.dof, early_exaggeration=a.exag,
                  neighbor_mixup=a.mix, training_p="global")
steps = a.epochs * (len(Xf) // a.heads)
rate = keras.optimizers.schedules.CosineDecay(a.lr, steps) if a.cosine else a.lr
model.compile(optimizer=keras.optimizers.Adam(rate), jit_compile=False)
settings = {k: v for k, v in vars(a).items() if k not in ("out", "eval")}


class Evaluate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % a.eval and epoch + 1 != a.epochs:
            return
        Yf = encoder.predict(Xf, batch_size=4096, verbose=0)
        Yv = encoder.predict(Xv, batch_size=4096, verbose=0)
        row = dict(settings, epoch=epoch + 1, s=round(time.time() - t0), loss=round(float(logs["loss"]), 4),
                   n_fit=len(Xf), n_val=n_val, val1nn=metrics.train_test_knn_accuracy(Yf, yf, Yv, yv, k=1),
                   train10nn=round(metrics.knn_accuracy(Yf, yf, k=10), 4), test_set_used=0)
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


callbacks = [Evaluate()] + ([EndEarlyExaggeration(a.exag_epochs)] if a.exag != 1.0 else [])
model.fit(data, epochs=a.epochs, verbose=0, callbacks=callbacks)
