"""Parametric t-SNE on MNIST: train on the first N training images, embed the
10,000 test images, report the train-to-test 1-NN accuracy and the wall time.

    python benchmarks/mnist_parametric.py --encoder dense --n-components 2
    python benchmarks/mnist_parametric.py --encoder conv --n-components 2

Writes a JSON line to --out (default benchmarks/results/mnist_parametric.jsonl).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

import tsne_ops  # noqa: F401  (loads the ops)
from tsne_ops import datasets, metrics
from tsne_ops.parametric import ParametricTSNE


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--encoder", default="dense", choices=("dense", "conv"))
    ap.add_argument("--n-components", type=int, default=2)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--early-exaggeration", type=float, default=4.0)
    ap.add_argument("--early-exaggeration-epochs", type=int, default=None)
    ap.add_argument("--shift-augmentation", type=int, default=0)
    ap.add_argument("--neighbor-mixup", type=float, default=0.0)
    ap.add_argument("--dof", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mnist_parametric.jsonl"))
    ap.add_argument("--save-embeddings", default=None, help="prefix for .npy files")
    ap.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (2: a line per epoch)")
    a = ap.parse_args()

    X, y = datasets.load_dataset(a.dataset, a.data_dir, n=a.n, split="train")
    Xte, yte = datasets.load_dataset(a.dataset, a.data_dir, n=a.n_test, split="test")
    model = ParametricTSNE(a.n_components, encoder=a.encoder, batch_size=a.batch_size,
                           epochs=a.epochs, perplexity=a.perplexity,
                           learning_rate=a.learning_rate, random_state=a.seed,
                           early_exaggeration=a.early_exaggeration,
                           early_exaggeration_epochs=a.early_exaggeration_epochs,
                           shift_augmentation=a.shift_augmentation,
                           neighbor_mixup=a.neighbor_mixup, dof=a.dof,
                           verbose=a.verbose)
    t0 = time.time()
    model.fit(X)
    fit_s = time.time() - t0
    Ytr, Yte = model.transform(X), model.transform(Xte)
    result = dict(vars(a), fit_s=round(fit_s, 1), final_batch_kl=model.kl_divergence_,
                  test_1nn=metrics.train_test_knn_accuracy(Ytr, y, Yte, yte, k=1),
                  train_10nn_loo=metrics.knn_accuracy(Ytr, y, k=10))
    result.pop("out")
    print(json.dumps(result))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    if a.save_embeddings:
        np.save(a.save_embeddings + "_train.npy", Ytr)
        np.save(a.save_embeddings + "_test.npy", Yte)


if __name__ == "__main__":
    main()
