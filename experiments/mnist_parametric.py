"""Parametric t-SNE on MNIST: train on the first N training images, embed the
10,000 test images, report the train-to-test 1-NN accuracy and the wall time.

    python experiments/mnist_parametric.py --encoder dense --n-components 2
    python experiments/mnist_parametric.py --encoder sconv --hidden 500,500,2000 --deskew

The conv encoders are built here and passed to ParametricTSNE as models:
--encoder conv is conv_encoder's default (3x3 convolutions with pooling, one
256-unit layer; the estimator's built-in encoder='conv' before it became the
strided one), --encoder sconv is conv_encoder(strided=True), and --hidden sets
the dense widths after the convolutions; the estimator's encoder='conv' is
--encoder sconv --hidden 500,500,2000. With --eval-every K the dense encoder
is built here too (dense_encoder, as the estimator builds it), and the test
1-NN accuracy is measured every K epochs through the estimator's callback;
the trajectory goes into the JSON line.
--deskew trains and embeds deskewed images (ParametricTSNE(deskew=True)).
--lr-schedule cosine passes Adam with a cosine decay of the learning rate to
zero over the run (ParametricTSNE takes any Keras optimizer).

Writes a JSON line to --out (default experiments/results/mnist_parametric.jsonl).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import tsne_ops  # noqa: F401  (loads the ops)
from tsne_ops import datasets, metrics, preprocessing
from tsne_ops.encoders import conv_encoder, dense_encoder
from tsne_ops.parametric import ParametricTSNE
from tsne_ops.parametric_model import cosine_adam


def table(path):
    """The runs in the JSONL file at ``path`` as a markdown table (docs/parametric_mnist.md's)."""
    lines = ["| encoder | d | dof | batch | epochs | lr | early exaggeration | neighbour mixup "
             "| seed | fit s | test 1-NN | train 10-NN |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r.get("dataset", "mnist") != "mnist" or r.get("n") != 10000:
            continue
        exag = r.get("early_exaggeration") or 1.0
        exag = "-" if exag == 1.0 else (f"{exag:g}" + (
            f" ({r['early_exaggeration_epochs']} epochs)"
            if r.get("early_exaggeration_epochs") is not None else ""))
        lr = f"{r['learning_rate']:g}" + (" cosine" if r.get("lr_schedule") == "cosine" else "")
        # None means the estimator's default, max(d - 1, 1)
        dof = r.get("dof") or max(r["n_components"] - 1, 1)
        lines.append(" | ".join([
            f"| {r['encoder']}" + (f" ({r['hidden']})" if r.get("hidden") else "")
            + (f" (input dropout {r['input_dropout']:g})" if r.get("input_dropout") else "")
            + (", deskewed" if r.get("deskew") else ""),
            str(r["n_components"]), f"{dof:g}", str(r["batch_size"]),
            str(r["epochs"]),
            lr, exag, f"{r['neighbor_mixup']:g}" if r.get("neighbor_mixup") else "-", str(r["seed"]),
            f"{r['fit_s']:.0f}", f"{r['test_1nn']:.3f}", f"{r['train_10nn_loo']:.3f} |"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", action="store_true",
                    help="print the runs in --out as a markdown table and exit")
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--encoder", default="dense", choices=("dense", "conv", "sconv"),
                    help="conv: conv_encoder's default (pooled) CNN, sconv: "
                         "conv_encoder(strided=True); both passed to the estimator as a model. "
                         "The estimator's own encoder='conv' is --encoder sconv --hidden "
                         "500,500,2000")
    ap.add_argument("--hidden", default=None,
                    help="dense encoder widths, e.g. 1000,1000,2000 (default: the estimator's "
                         "500,500,2000); for conv/sconv the widths of the dense layers after "
                         "the convolutions (default 256)")
    ap.add_argument("--input-dropout", type=float, default=0.0,
                    help="dense encoder: dropout on the input pixels during training")
    ap.add_argument("--n-components", type=int, default=2)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    ap.add_argument("--eval-every", type=int, default=0,
                    help="test 1-NN accuracy every K epochs (0: only at the end)")
    ap.add_argument("--early-exaggeration", type=float, default=4.0)
    ap.add_argument("--early-exaggeration-epochs", type=int, default=None)
    ap.add_argument("--shift-augmentation", type=int, default=0)
    ap.add_argument("--neighbor-mixup", type=float, default=0.0)
    ap.add_argument("--dof", type=float, default=None)
    ap.add_argument("--deskew", action="store_true",
                    help="ParametricTSNE(deskew=True): deskew train and test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mnist_parametric.jsonl"))
    ap.add_argument("--save-embeddings", default=None, help="prefix for .npy files")
    ap.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (2: a line per epoch)")
    a = ap.parse_args()
    if a.table:
        print(table(a.out))
        return

    X, y = datasets.load_dataset(a.dataset, a.data_dir, n=a.n, split="train")
    Xte, yte = datasets.load_dataset(a.dataset, a.data_dir, n=a.n_test, split="test")
    optimizer = ("adam" if a.lr_schedule == "constant"
                 else cosine_adam(a.learning_rate, a.epochs, len(X), a.batch_size))
    encoder, callback, trajectory = a.encoder, None, []
    if a.input_dropout and a.encoder != "dense":
        ap.error(f"--input-dropout applies to --encoder dense only, got --encoder {a.encoder}")
    if a.eval_every or a.encoder != "dense" or a.hidden or a.input_dropout:
        import keras
        keras.utils.set_random_seed(a.seed)
        Xf, Xtef = X.reshape(len(X), -1), Xte.reshape(len(Xte), -1)
        shape = datasets.IMAGE_SHAPES[a.dataset]
        if a.deskew:  # what the estimator feeds its encoder
            Xf, Xtef = preprocessing.deskew(Xf, shape), preprocessing.deskew(Xtef, shape)
        hidden = tuple(map(int, a.hidden.split(","))) if a.hidden else None
        encoder = (dense_encoder(Xf.shape[1], a.n_components, hidden=hidden or (500, 500, 2000),
                                 input_dropout=a.input_dropout) if a.encoder == "dense"
                   else conv_encoder(shape, a.n_components,
                                     dense_units=hidden or 256, strided=a.encoder == "sconv"))
    if a.eval_every:
        t_start = time.time()

        def callback(epoch, loss, _embedding):
            if epoch == 0 or (epoch % a.eval_every and epoch != a.epochs):
                return
            Ytr = encoder.predict(Xf, batch_size=5000, verbose=0)
            Yte = encoder.predict(Xtef, batch_size=5000, verbose=0)
            row = dict(epoch=epoch, loss=round(float(loss), 4),
                       test_1nn=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=1),
                       s=round(time.time() - t_start, 1))
            trajectory.append(row)
            print(json.dumps(row), flush=True)

    model = ParametricTSNE(a.n_components, encoder=encoder, affinities="batch", batch_size=a.batch_size,
                           epochs=a.epochs, perplexity=a.perplexity, optimizer=optimizer,
                           callback=callback, callback_every=1, callback_samples=2,
                           learning_rate=a.learning_rate, random_state=a.seed,
                           early_exaggeration=a.early_exaggeration,
                           early_exaggeration_epochs=a.early_exaggeration_epochs,
                           shift_augmentation=a.shift_augmentation,
                           neighbor_mixup=a.neighbor_mixup, dof=a.dof, deskew=a.deskew,
                           verbose=a.verbose)
    t0 = time.time()
    model.fit(X)
    fit_s = time.time() - t0
    Ytr, Yte = model.transform(X), model.transform(Xte)
    result = dict(vars(a), fit_s=round(fit_s, 1), final_batch_kl=model.kl_divergence_,
                  test_1nn=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=1),
                  train_10nn_loo=metrics.knn_accuracy(Ytr, y, k=10))
    result.pop("out")
    result.pop("table")
    if trajectory:
        result["trajectory"] = trajectory
    print(json.dumps(result))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    if a.save_embeddings:
        np.save(a.save_embeddings + "_train.npy", Ytr)
        np.save(a.save_embeddings + "_test.npy", Yte)


if __name__ == "__main__":
    main()
