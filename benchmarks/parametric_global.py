"""ParametricTSNE on MNIST-like data: validation 1-NN to choose, test 1-NN once to report.

    python benchmarks/parametric_global.py --n-train 10000 --config affinities=global \
        --config affinities=batch --out benchmarks/results/parametric_global.jsonl

Protocol (issue 19). The first ``--n-train`` images of the training split are
the training set. Each ``--config`` (``key=value`` pairs, comma-separated, passed
to ``ParametricTSNE``, and ``_tails_per_head``, ``_block`` to its
``EdgeSampler``; everything else at its defaults apart from
``--n-components`` and ``--encoder``) is fitted once:

* with ``--n-val V > 0`` (default: a tenth of the training set), on the
  training set minus its last V images; the score is the validation 1-NN (a
  1-NN classifier fitted on the embedding of the fitted images, applied to the
  embedding of the V held-out ones). This is what settings are chosen on. The
  test set is not touched unless ``--test`` is given;
* with ``--n-val 0``, on the whole training set (the issue's protocol); the test
  set is then embedded once with ``transform`` and scored the same way.

``--nonparametric`` instead fits plain ``tsne_ops.TSNE()`` (its defaults) on
the training and test images together and scores the test images' 1-NN
against the training images' within that one embedding: the reference a
parametric map is compared with (issue 19's Fashion-MNIST floor).

Each fit appends one JSON line to ``--out`` with the configuration, the fit
time (seconds on this machine, which may be shared: compare ratios within a
run only), the validation and/or test 1-NN and ``test_set_used`` (how many
times this configuration saw the test set: 0 or 1).
"""
import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path



def parse_config(text):
    """``'affinities=batch,epochs=20'`` -> ``{'affinities': 'batch', 'epochs': 20}``."""
    config = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            config[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            config[key.strip()] = value.strip()
    return config


def table(path):
    """The runs in the JSONL file at ``path`` as a markdown table (docs/parametric_global.md's)."""
    head = ("| data | n fit | n val | encoder | d | configuration | fit s | val 1-NN | test 1-NN "
            "| train 10-NN |\n|" + " --- |" * 10)
    lines = [head]
    for line in open(path):
        r = json.loads(line)
        config = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults"
        fmt = lambda key: f"{r[key]:.3f}" if key in r else "-"  # noqa: E731
        lines.append(f"| {r['dataset']} | {r['n_fit']} | {r['n_val']} | {r['encoder']} | "
                     f"{r['n_components']} | {config} | {r['fit_s']:.0f} | {fmt('val_1nn')} | "
                     f"{fmt('test_1nn')} | {fmt('train_10nn_loo')} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=None, help="default: n_train // 10; 0: fit all, test")
    ap.add_argument("--test", action="store_true", help="with --n-val > 0: also score the test set")
    ap.add_argument("--encoder", default="dense", choices=["dense", "conv"])
    ap.add_argument("--n-components", type=int, default=2)
    ap.add_argument("--config", action="append", default=None,
                    help="ParametricTSNE arguments, e.g. affinities=batch,epochs=20 (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "parametric_global.jsonl"))
    ap.add_argument("--table", action="store_true", help="print --out as a markdown table and exit")
    ap.add_argument("--nonparametric", action="store_true",
                    help="fit tsne_ops.TSNE() on train + test together instead; test 1-NN within it")
    a = ap.parse_args()
    if a.table:
        print(table(a.out))
        return
    from tsne_ops import datasets, metrics  # TensorFlow loads here, not for --table
    from tsne_ops.parametric import ParametricTSNE

    n_val = a.n_train // 10 if a.n_val is None else a.n_val
    X, y = datasets.load_dataset(a.dataset, a.data_dir, n=a.n_train, split="train")
    if not 0 <= n_val < len(X) - 2:
        ap.error(f"--n-val must be in [0, {len(X) - 2}), got {n_val}")
    Xfit, yfit = (X[:len(X) - n_val], y[:len(y) - n_val]) if n_val else (X, y)
    use_test = n_val == 0 or a.test or a.nonparametric
    if use_test:
        Xte, yte = datasets.load_dataset(a.dataset, a.data_dir, split="test")
    if a.nonparametric:
        return nonparametric(a, Xfit, yfit, Xte, yte)
    for text in a.config or [""]:
        config = parse_config(text)
        model = ParametricTSNE(a.n_components, encoder=a.encoder, random_state=a.seed,
                               verbose=a.verbose, **{k: v for k, v in config.items()
                                                     if not k.startswith("_")})
        # keys with a leading underscore set EdgeSampler's options (tails_per_head, block)
        model._sampler_options = {k[1:]: v for k, v in config.items() if k.startswith("_")}
        t0 = time.time()
        model.fit(Xfit)
        fit_s = time.time() - t0
        Yfit = model.transform(Xfit)
        row = dict(dataset=a.dataset, n_train=a.n_train, n_fit=len(Xfit), n_val=n_val,
                   encoder=a.encoder, n_components=a.n_components, seed=a.seed, config=config,
                   fit_s=round(fit_s, 1), epochs_=model.epochs_, batch_size_=model.batch_size_,
                   final_loss=model.kl_divergence_,
                   train_10nn_loo=metrics.knn_accuracy(Yfit, yfit, k=10))
        if n_val:
            row["val_1nn"] = metrics.train_test_knn_accuracy(Yfit, yfit, model.transform(X[-n_val:]),
                                                             y[-n_val:], k=1)
        if use_test:
            row["test_1nn"] = metrics.train_test_knn_accuracy(Yfit, yfit, model.transform(Xte), yte, k=1)
        row["test_set_used"] = int(use_test)
        write_row(a.out, row, t0)


def write_row(out, row, t0):
    """Append ``row``, with the machine, the commit and the start time, to the JSONL file ``out``."""
    row["machine"] = dict(platform=platform.platform(), cpus=os.cpu_count(),
                          note="shared machine: compare fit_s within a run only")
    row["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True, cwd=Path(__file__).parent).stdout.strip()
    row["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    print(json.dumps(row), flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def nonparametric(a, Xfit, yfit, Xte, yte):
    """Plain t-SNE of the training and test images together; test 1-NN against the training images."""
    import numpy as np

    from tsne_ops import TSNE, metrics

    X = np.concatenate([Xfit.reshape(len(Xfit), -1), Xte.reshape(len(Xte), -1)]).astype(np.float32)
    t0 = time.time()
    model = TSNE(a.n_components, random_state=a.seed)
    Y = model.fit_transform(X)
    fit_s = time.time() - t0
    n = len(Xfit)
    row = dict(dataset=a.dataset, n_train=a.n_train, n_fit=len(X), n_val=0, encoder="none (TSNE)",
               n_components=a.n_components, seed=a.seed, config={"nonparametric": True},
               fit_s=round(fit_s, 1), method_=model.method_, final_loss=float(model.kl_divergence_),
               train_10nn_loo=metrics.knn_accuracy(Y[:n], yfit, k=10),
               test_1nn=metrics.train_test_knn_accuracy(Y[:n], yfit, Y[n:], yte, k=1), test_set_used=1)
    write_row(a.out, row, t0)


if __name__ == "__main__":
    main()
