"""The ``tsne-ops`` command line (also ``python -m tsne_ops``).

``tsne-ops run --case A|B|C|D|E`` embeds a dataset and writes, under
``--out``: the embedding (``.npy``), a scatter plot (``.png``), an animation
of the clusters forming (``.gif``) and the metrics (``.json``).
``tsne-ops compare`` does the same and also runs scikit-learn's ``TSNE`` on
the same data, adding its embedding, its metrics and a side-by-side figure.

Cases (README.md, "The five cases and the command line"): A plain t-SNE
(2-D); B dense encoder, 2-D; C conv encoder, 2-D; D dense encoder, 3-D; E conv
encoder, 3-D. Parametric cases
train on the training split and also embed held-out data (the test split of
MNIST and Fashion-MNIST, 20% of the digits held out), reporting the 1-NN
accuracy of a classifier fitted on the training embedding.

Defaults have one home, the estimators: an option left out is not passed, so
``TSNE`` (case A) or ``ParametricTSNE`` (B-E) uses its own default for it.
Imports are inside the functions so that ``tsne-ops --help`` does not load
TensorFlow (see the package docstring).
"""
import argparse
import json
import sys
import time
from pathlib import Path

CASES = {
    "A": dict(kind="tsne", n_components=2, encoder=None, title="t-SNE (tsne_ops)"),
    "B": dict(kind="parametric", n_components=2, encoder="dense", title="parametric t-SNE, dense, 2-D"),
    "C": dict(kind="parametric", n_components=2, encoder="conv", title="parametric t-SNE, conv, 2-D"),
    "D": dict(kind="parametric", n_components=3, encoder="dense", title="parametric t-SNE, dense, 3-D"),
    "E": dict(kind="parametric", n_components=3, encoder="conv", title="parametric t-SNE, conv, 3-D"),
}

# Largest N for which the metrics include the KL divergence of the whole
# embedding (it needs a few N x N float64 matrices).
_KL_MAX_SAMPLES = 5000


class CommandLineError(Exception):
    """A problem with the arguments found after parsing (exit code 2)."""


def _int_at_least(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _number_between(low, high, closed):
    """argparse type: a float in [low, high] (closed) or (low, high)."""
    what = f"a number in [{low}, {high}]" if closed else f"a number in ({low}, {high})"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        inside = value is not None and (low <= value <= high if closed else low < value < high)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_open_fraction = _number_between(0, 1, closed=False)
_fraction = _number_between(0, 1, closed=True)


def build_parser():
    from tsne_ops.datasets import DATASETS

    parser = argparse.ArgumentParser(
        prog="tsne-ops",
        description="t-SNE on TensorFlow custom ops: embed a dataset, plot and score it.")
    sub = parser.add_subparsers(dest="command", metavar="{run,compare}")
    sub.required = True
    for name, help_text in (("run", "embed a dataset with one case"),
                            ("compare", "like run, plus scikit-learn's TSNE side by side")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--case", required=True, type=str.upper, choices=sorted(CASES),
                       help="A: t-SNE; B/C: dense/conv encoder 2-D; D/E: dense/conv encoder 3-D")
        p.add_argument("--dataset", default="digits", choices=DATASETS)
        p.add_argument("--data-dir", default=None,
                       help="directory with the IDX .gz files (default: $TSNE_OPS_DATA_DIR "
                            "or ../shared/data)")
        p.add_argument("--n", type=_positive_int, default=None,
                       help="number of (training) samples; default: all digits, 5000 MNIST "
                            "points for case A, 10000 for B-E (case A takes MNIST's training "
                            "images first, then the test images: --n 70000 is all of them)")
        p.add_argument("--n-test", type=_positive_int, default=None,
                       help="held-out samples for parametric cases (MNIST-like: default "
                            "10000 test images)")
        p.add_argument("--test-fraction", type=_open_fraction, default=0.2,
                       help="fraction of the digits held out for parametric cases (0.2)")
        p.add_argument("--out", default="out", help="output directory (default: out)")
        # default=None everywhere below: "not given", so the estimator's
        # own default applies (its signature is the one source).
        p.add_argument("--perplexity", type=_positive_float, default=None,
                       help="default: the estimator's perplexity")
        p.add_argument("--method", default=None, choices=("auto", "exact", "barnes_hut", "fft"),
                       help="case A: TSNE's method (default: TSNE's, 'auto': exact for small N, "
                            "the sparse kNN P with FFT (2-D) or Barnes-Hut (3-D) repulsion "
                            "beyond)")
        p.add_argument("--max-iter", type=_positive_int, default=None,
                       help="case A, and scikit-learn in compare: iterations (default: TSNE's "
                            "max_iter)")
        p.add_argument("--early-exaggeration-iter", type=int, default=None,
                       help="case A: iterations with early exaggeration (default: TSNE's "
                            "early_exaggeration_iter)")
        p.add_argument("--epochs", type=_positive_int, default=None,
                       help="cases B-E: training epochs (default: ParametricTSNE's epochs)")
        p.add_argument("--batch-size", type=_positive_int, default=None,
                       help="cases B-E: minibatch size (default: ParametricTSNE's batch_size)")
        p.add_argument("--learning-rate", type=_positive_float, default=None,
                       help="case A: the gradient step (default: TSNE's, 'auto'); B-E: "
                            "Adam's rate (default: ParametricTSNE's learning_rate)")
        p.add_argument("--early-exaggeration", type=float, default=None,
                       help="factor on attractive forces early on (default: the estimator's "
                            "early_exaggeration; ParametricTSNE's 1 means none)")
        p.add_argument("--early-exaggeration-epochs", type=_non_negative_int, default=None,
                       help="cases B-E: epochs with early exaggeration, when "
                            "--early-exaggeration is not 1 (default: ParametricTSNE's, a "
                            "quarter of the epochs)")
        p.add_argument("--shift-augmentation", type=_non_negative_int, default=None,
                       help="cases B-E on images: move each training image by up to this many "
                            "pixels per step, P from the unmoved images (default: "
                            "ParametricTSNE's, 0: off)")
        p.add_argument("--neighbor-mixup", type=_fraction, default=None,
                       help="cases B-E: move each training point up to this fraction of the way "
                            "towards a neighbour drawn from P, P from the unmoved points "
                            "(default: ParametricTSNE's, 0: off)")
        p.add_argument("--affinities", default=None, choices=("global", "batch"),
                       help="cases B-E: P once over the whole training set, batches sampled from "
                            "it ('global'), or P per minibatch ('batch') (default: "
                            "ParametricTSNE's affinities)")
        p.add_argument("--deskew", action="store_true",
                       help="deskew every image (for handwritten digits): case A embeds the "
                            "deskewed images, B-E train with ParametricTSNE(deskew=True); the "
                            "metrics and scikit-learn's run use the deskewed images too")
        p.add_argument("--dof", type=_positive_float, default=None,
                       help="degrees of freedom of the Student-t in Q (default: the "
                            "estimator's, max(d - 1, 1) as scikit-learn; below 1 gives heavier "
                            "tails, tighter clusters)")
        p.add_argument("--lr-schedule", default=None, choices=("constant", "cosine"),
                       help="cases B-E: Adam's rate constant or decayed to zero over the epochs "
                            "with a cosine (default: the estimator's, cosine with the global P, "
                            "constant with --affinities batch)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--frames", type=_positive_int, default=40,
                       help="most frames in the animation (default 40)")
        p.add_argument("--no-animation", action="store_true", help="skip the GIF")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
        if name == "compare":
            p.add_argument("--sklearn-method", choices=("auto", "exact", "barnes_hut"),
                           default="auto",
                           help="scikit-learn's method: auto = exact up to 2000 points")
    return parser


def _defaults(args):
    case = CASES[args.case]
    parametric = case["kind"] == "parametric"
    n = args.n
    if n is None and args.dataset != "digits":
        n = 10000 if parametric else 5000
    return case, parametric, n


def _load(args, parametric, n):
    import numpy as np

    from tsne_ops import datasets

    if args.dataset == "digits":
        X, y = datasets.load_digits(n=n)
        if not parametric:
            return X, y, None, None
        from sklearn.model_selection import train_test_split

        if len(X) < 10:
            raise CommandLineError(f"--n {len(X)} is too small for a train/test split")
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=args.test_fraction,
                                              random_state=args.seed, stratify=None)
        if args.n_test is not None:
            Xte, yte = Xte[:args.n_test], yte[:args.n_test]
        return Xtr, ytr, Xte, yte
    if not parametric:  # case A embeds the training images, then the test images
        X, y = datasets.load_dataset(args.dataset, args.data_dir, n=n, split="all")
        return X, y, None, None
    X, y = datasets.load_dataset(args.dataset, args.data_dir, n=n, split="train")
    Xte, yte = datasets.load_dataset(args.dataset, args.data_dir, n=args.n_test, split="test")
    return X, y, np.asarray(Xte), np.asarray(yte)


class _Progress:
    """A tqdm bar fed by the training callbacks, which also records frames."""

    def __init__(self, total, unit, quiet, max_frames):
        from tqdm import tqdm

        from tsne_ops.plotting import EmbeddingRecorder

        self.bar = tqdm(total=total, unit=unit, disable=quiet, file=sys.stderr,
                        dynamic_ncols=True, leave=False)
        self.recorder = EmbeddingRecorder(max_frames=max_frames)
        self.done = 0

    def __call__(self, step, kl, embedding):
        self.recorder(step, kl, embedding)
        self.bar.update(step - self.done)
        self.done = step
        if kl is not None:
            self.bar.set_postfix(kl=f"{kl:.4f}")
        return False

    def close(self):
        self.bar.close()


def _given(**options):
    """The options given on the command line; None means "not given", so the
    estimator's own default applies."""
    return {name: value for name, value in options.items() if value is not None}


def _model(args, case, parametric):
    """The case's estimator, unfitted, with the options the user gave."""
    common = _given(perplexity=args.perplexity, dof=args.dof,
                    learning_rate=args.learning_rate,
                    early_exaggeration=args.early_exaggeration)
    if not parametric:
        from tsne_ops.tsne import TSNE

        return TSNE(n_components=case["n_components"], random_state=args.seed, **common,
                    **_given(max_iter=args.max_iter, method=args.method,
                             early_exaggeration_iter=args.early_exaggeration_iter))
    from tsne_ops.parametric import ParametricTSNE

    model = ParametricTSNE(n_components=case["n_components"], encoder=case["encoder"],
                           random_state=args.seed, deskew=args.deskew, **common,
                           **_given(batch_size=args.batch_size, epochs=args.epochs,
                                    affinities=args.affinities,
                                    early_exaggeration_epochs=args.early_exaggeration_epochs,
                                    shift_augmentation=args.shift_augmentation,
                                    neighbor_mixup=args.neighbor_mixup,
                                    lr_schedule=args.lr_schedule))
    return model


def _fit(args, case, parametric, X):
    """Fit the case's model; returns (model, embedding, frames, seconds)."""
    t0 = time.time()
    model = _model(args, case, parametric)
    if parametric:
        epochs = model.training_schedule()[1]
        progress = _Progress(epochs, "epoch", args.quiet, args.frames)
        every = max(1, epochs // args.frames)
    else:
        progress = _Progress(model.max_iter, "it", args.quiet, args.frames)
        every = max(1, model.max_iter // (2 * args.frames))
    model.set_params(callback=progress, callback_every=every)
    try:
        Y = model.fit_transform(X)
    finally:
        progress.close()
    return model, Y, progress.recorder.frames, time.time() - t0


def _metrics(X, Y, y, perplexity, dof, elapsed):
    from tsne_ops import metrics

    out = metrics.evaluate(X, Y, y, perplexity=min(perplexity, (len(X) - 2) * 0.99), dof=dof,
                           kl=len(X) <= _KL_MAX_SAMPLES)
    out["time_s"] = round(elapsed, 3)
    return out


def _run_sklearn(args, case, X, perplexity, max_iter):
    from sklearn.manifold import TSNE as SkTSNE

    method = args.sklearn_method
    if method == "auto":
        method = "exact" if len(X) <= 2000 else "barnes_hut"
    max_iter = max(max_iter, 250)  # scikit-learn's minimum
    t0 = time.time()
    model = SkTSNE(n_components=case["n_components"], perplexity=perplexity,
                   max_iter=max_iter, init="pca", random_state=args.seed, method=method)
    Y = model.fit_transform(X)
    return Y, time.time() - t0, method


def run(args, compare=False):
    import numpy as np

    from tsne_ops import datasets, metrics, plotting, preprocessing

    case, parametric, n = _defaults(args)
    X, y, Xte, yte = _load(args, parametric, n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"case{args.case}_{args.dataset}"
    names = datasets.CLASS_NAMES[args.dataset]

    # What the embedding is of: with --deskew, the deskewed images (B-E deskew
    # inside the model, so that transform does it for new points as well).
    X_seen = preprocessing.deskew(X, datasets.IMAGE_SHAPES[args.dataset]) if args.deskew else X
    model, Y, frames, elapsed = _fit(args, case, parametric, X if parametric else X_seen)
    sklearn_dof = float(max(case["n_components"] - 1, 1))
    dof = sklearn_dof if args.dof is None else args.dof
    result = {"case": args.case, "dataset": args.dataset, "what": case["title"],
              "n_train": int(len(X)), "perplexity": model.perplexity, "dof": dof,
              "seed": args.seed, "deskew": bool(args.deskew)}
    if parametric:
        result.update(epochs=model.epochs_, batch_size=model.batch_size_,
                      learning_rate=model.learning_rate,
                      early_exaggeration=model.early_exaggeration,
                      early_exaggeration_epochs=model.early_exaggeration_epochs_,
                      shift_augmentation=model.shift_augmentation,
                      neighbor_mixup=model.neighbor_mixup, lr_schedule=model.learning_rate_schedule(),
                      final_batch_kl=model.kl_divergence_)
    else:
        result.update(max_iter=model.max_iter, n_iter=model.n_iter_, method=model.method_,
                      early_exaggeration=model.early_exaggeration,
                      kl_divergence_optimizer=model.kl_divergence_)
    result["tsne_ops"] = _metrics(X_seen, Y, y, model.perplexity, dof, elapsed)
    files = {}
    files["embedding"] = out / f"{stem}_embedding.npy"
    np.save(files["embedding"], Y)
    if parametric and Xte is not None and len(Xte):
        Yte = model.transform(Xte)
        files["test_embedding"] = out / f"{stem}_test_embedding.npy"
        np.save(files["test_embedding"], Yte)
        result["n_test"] = int(len(Xte))
        result["tsne_ops"]["test_1nn_accuracy"] = metrics.train_test_knn_accuracy(Y, y, Yte, yte, k=1)
    title = f"{case['title']} on {args.dataset} (N={len(X)})"
    files["figure"] = out / f"{stem}.png"
    plotting.scatter(Y, y, path=files["figure"], title=title, class_names=names)
    if not args.no_animation and frames:
        files["animation"] = out / f"{stem}.gif"
        plotting.animate(frames, _frame_labels(y, model), files["animation"], class_names=names,
                         unit="epoch" if parametric else "iteration")
    if compare:
        # scikit-learn runs as many iterations as case A (B-E: TSNE's default).
        from tsne_ops.tsne import TSNE

        max_iter = args.max_iter or TSNE().max_iter
        Ysk, sk_time, method = _run_sklearn(args, case, X_seen, model.perplexity, max_iter)
        files["sklearn_embedding"] = out / f"{stem}_sklearn_embedding.npy"
        np.save(files["sklearn_embedding"], Ysk)
        result["sklearn"] = _metrics(X_seen, Ysk, y, model.perplexity, sklearn_dof, sk_time)
        result["sklearn"]["method"] = method
        files["comparison"] = out / f"{stem}_compare.png"
        plotting.compare([Y, Ysk], y, path=files["comparison"],
                         titles=[case["title"], f"scikit-learn TSNE ({method})"],
                         metrics=[result["tsne_ops"], result["sklearn"]], class_names=names,
                         suptitle=f"{args.dataset}, N={len(X)}")
    files["metrics"] = out / f"{stem}_metrics.json"
    result["files"] = {k: str(v) for k, v in files.items()}
    with open(files["metrics"], "w") as f:
        json.dump(result, f, indent=2)
    if not args.quiet:
        print(json.dumps(result, indent=2))
    return result


def _frame_labels(y, model):
    """Labels matching the recorded frames (parametric snapshots may be a subset)."""
    idx = getattr(model, "callback_indices_", None)
    return y if idx is None else y[idx]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args, compare=args.command == "compare")
    except (ValueError, FileNotFoundError, CommandLineError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except Exception as e:  # TensorFlow's InvalidArgumentError from the ops
        # Only an op can raise it, and then TensorFlow is loaded already.
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(e, tf.errors.InvalidArgumentError):
            parser.exit(2, f"{parser.prog}: error: {e.message.splitlines()[0]}\n")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
