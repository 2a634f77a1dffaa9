"""The tsne-ops command line: files written, metrics that match a
recomputation from the saved embeddings and clear stated floors, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.manifold import trustworthiness
from sklearn.model_selection import LeaveOneOut, cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier

from helpers import write_idx
from tsne_ops import cli, datasets, metrics


def _run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured


def _assert_metrics_of(reported, data, Y, perplexity, dof):
    """The metrics JSON holds the metrics of the saved embedding Y of `data`."""
    X, labels = data
    assert reported["n_samples"] == len(Y)
    # Digits are integer pixels, so data distances tie: scikit-learn ranks ties
    # in numpy's (unstable) sort order, tsne_ops the smaller index first
    # (tests/test_metrics.py checks that rule exactly). They differ by ~1e-5.
    assert reported["trustworthiness"] == pytest.approx(trustworthiness(X, Y, n_neighbors=5),
                                                        abs=1e-4)
    k = reported["knn_k"]
    assert reported["knn_accuracy"] == pytest.approx(
        cross_val_score(KNeighborsClassifier(k), Y, labels, cv=LeaveOneOut()).mean())
    assert reported["kl_divergence"] == pytest.approx(
        metrics.kl_divergence(X, Y, perplexity=perplexity, dof=dof), rel=1e-6)


def test_run_case_a_writes_everything(tmp_path, capsys):
    out = tmp_path / "out"
    code, cap = _run(["run", "--case", "A", "--n", "400", "--max-iter", "300", "--seed", "1",
                      "--dof", "0.8", "--frames", "8", "--out", str(out)], capsys)
    assert code == 0
    result = json.loads((out / "caseA_digits_metrics.json").read_text())
    assert result["n_train"] == 400 and result["n_iter"] == 299 and result["dof"] == 0.8
    Y = np.load(out / "caseA_digits_embedding.npy")
    assert Y.shape == (400, 2)
    _assert_metrics_of(result["tsne_ops"], datasets.load_digits(n=400), Y, perplexity=30.0, dof=0.8)
    # Floors for 400 digits after 300 iterations (seen: 0.99 and 0.996; a
    # random embedding scores about 0.1 and 0.5).
    assert result["tsne_ops"]["knn_accuracy"] > 0.95
    assert result["tsne_ops"]["trustworthiness"] > 0.97
    with Image.open(out / "caseA_digits.png") as im:
        assert im.format == "PNG"
    with Image.open(out / "caseA_digits.gif") as im:
        assert im.n_frames >= 5
    assert '"knn_accuracy"' in cap.out


def test_deskew_changes_what_case_a_embeds(tmp_path, capsys):
    runs = {}
    for flag in ([], ["--deskew"]):
        out = tmp_path / ("d" if flag else "r")
        code, _ = _run(["run", "--case", "A", "--n", "200", "--max-iter", "250", "--out",
                        str(out), "--no-animation", "--quiet"] + flag, capsys)
        assert code == 0
        result = json.loads((out / "caseA_digits_metrics.json").read_text())
        assert result["deskew"] is bool(flag)
        runs[bool(flag)] = (np.load(out / "caseA_digits_embedding.npy"), result)
    assert not np.allclose(runs[True][0], runs[False][0])
    assert runs[True][1]["tsne_ops"]["kl_divergence"] != runs[False][1]["tsne_ops"]["kl_divergence"]


def test_compare_case_d_parametric_3d(tmp_path, capsys):
    out = tmp_path / "o"
    code, _ = _run(["compare", "--case", "d", "--n", "300", "--epochs", "3", "--batch-size",
                    "120", "--lr-schedule", "constant", "--max-iter", "400", "--out", str(out),
                    "--quiet"], capsys)
    assert code == 0
    result = json.loads((out / "caseD_digits_metrics.json").read_text())
    assert result["n_train"] == 240 and result["n_test"] == 60
    assert result["sklearn"]["method"] == "exact" and result["dof"] == 2.0
    Y, Ysk, Yte = (np.load(out / f"caseD_digits_{what}.npy")
                   for what in ("embedding", "sklearn_embedding", "test_embedding"))
    assert Y.shape == Ysk.shape == (240, 3) and Yte.shape == (60, 3)
    # The CLI's split: scikit-learn's train_test_split, 20% held out, seed 0.
    X, labels = datasets.load_digits(n=300)
    Xtr, _, ytr, yte = train_test_split(X, labels, test_size=0.2, random_state=0)
    _assert_metrics_of(result["tsne_ops"], (Xtr, ytr), Y, perplexity=30.0, dof=2.0)
    _assert_metrics_of(result["sklearn"], (Xtr, ytr), Ysk, perplexity=30.0, dof=2.0)
    assert result["tsne_ops"]["test_1nn_accuracy"] == pytest.approx(
        KNeighborsClassifier(1).fit(Y, ytr).score(Yte, yte))
    # Floors: 10 classes (chance 0.1); 3 epochs of the dense encoder already
    # separate most digits (seen: held-out 1-NN 0.88, trustworthiness 0.95),
    # scikit-learn's 400 iterations more (10-NN 0.98).
    assert result["tsne_ops"]["test_1nn_accuracy"] > 0.7
    assert result["tsne_ops"]["trustworthiness"] > 0.9
    assert result["sklearn"]["knn_accuracy"] > 0.9
    for name in ("caseD_digits.png", "caseD_digits.gif", "caseD_digits_compare.png"):
        assert (out / name).stat().st_size > 1000


def test_mnist_from_a_data_dir(tmp_path, capsys):
    # A tiny IDX directory stands in for MNIST.
    rng = np.random.RandomState(0)
    labels = np.arange(80) % 4
    images = (rng.rand(80, 28, 28) * 60 + 40 * labels[:, None, None]).astype(np.uint8)
    write_idx(tmp_path / "data" / "mnist", "train", images, labels)
    write_idx(tmp_path / "data" / "mnist", "t10k", images[:20], labels[:20])
    code, _ = _run(["run", "--case", "B", "--dataset", "mnist", "--data-dir",
                    str(tmp_path / "data"), "--n", "80", "--epochs", "2", "--perplexity", "10",
                    "--shift-augmentation", "2", "--neighbor-mixup", "0.5", "--deskew",
                    "--dof", "0.5", "--lr-schedule", "cosine", "--early-exaggeration", "4", "--early-exaggeration-epochs", "1",
                    "--out", str(tmp_path / "o"), "--no-animation", "--quiet"], capsys)
    assert code == 0
    result = json.loads((tmp_path / "o" / "caseB_mnist_metrics.json").read_text())
    assert result["n_train"] == 80 and result["n_test"] == 20
    assert result["shift_augmentation"] == 2 and result["neighbor_mixup"] == 0.5
    assert result["deskew"] is True
    assert result["dof"] == 0.5 and result["lr_schedule"] == "cosine"
    assert result["early_exaggeration_epochs"] == 1
    assert not (tmp_path / "o" / "caseB_mnist.gif").exists()


def test_case_a_method_and_mnist_train_then_test(tmp_path, capsys):
    # --method reaches TSNE; with --n above the training images case A goes
    # on into the test images (as --n 70000 does on MNIST).

    rng = np.random.RandomState(0)
    labels = np.arange(100) % 4
    images = (rng.rand(100, 28, 28) * 60 + 40 * labels[:, None, None]).astype(np.uint8)
    write_idx(tmp_path / "data" / "mnist", "train", images[:80], labels[:80])
    write_idx(tmp_path / "data" / "mnist", "t10k", images[80:], labels[80:])
    code, _ = _run(["run", "--case", "A", "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
                    "--n", "100", "--perplexity", "10", "--method", "barnes_hut", "--max-iter", "100",
                    "--out", str(tmp_path / "o"), "--no-animation", "--quiet"], capsys)
    assert code == 0
    result = json.loads((tmp_path / "o" / "caseA_mnist_metrics.json").read_text())
    assert result["n_train"] == 100 and result["method"] == "barnes_hut"
    assert result["tsne_ops"]["knn_accuracy"] > 0.9


@pytest.mark.parametrize("argv, message", [
    (["run", "--case", "F"], "invalid choice: 'F'"),
    (["run"], "the following arguments are required: --case"),
    (["run", "--case", "A", "--n", "0"], "--n: must be a positive integer"),
    (["run", "--case", "A", "--perplexity", "-3"], "--perplexity: must be a positive number"),
    (["run", "--case", "A", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["run", "--case", "A", "--max-iter", "x"], "--max-iter: must be a positive integer"),
    (["run", "--case", "A", "--method", "tree"], "invalid choice: 'tree'"),
    (["run", "--case", "B", "--shift-augmentation", "-1"],
     "--shift-augmentation: must be an integer >= 0"),
    (["run", "--case", "B", "--neighbor-mixup", "2"], "--neighbor-mixup: must be a number in [0, 1]"),
    (["run", "--case", "A", "--dof", "0"], "--dof: must be a positive number, got '0'"),
    (["run", "--case", "B", "--lr-schedule", "step"], "invalid choice: 'step'"),
    (["run", "--case", "B", "--early-exaggeration-epochs", "-2"],
     "--early-exaggeration-epochs: must be an integer >= 0"),
    (["frobnicate"], "invalid choice"),
])
def test_argument_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["run", "--case", "A", "--n", "20", "--perplexity", "30"], "perplexity (30.0) must be less than"),
    (["run", "--case", "B", "--dataset", "mnist", "--data-dir", "/no/such/dir"],
     "data directory not found: /no/such/dir"),
    (["run", "--case", "C", "--n", "100", "--perplexity", "5", "--shift-augmentation", "8"],
     "shift_augmentation=8 must be less than the image size (8, 8)"),
])
def test_value_errors_are_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--out", str(tmp_path), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tsne-ops: error: ") and message in err
    assert err.count("\n") == 1


def test_python_dash_m_reports_missing_file(tmp_path):
    (tmp_path / "mnist").mkdir()
    proc = subprocess.run([sys.executable, "-m", "tsne_ops", "run", "--case", "A", "--dataset",
                           "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tsne-ops: error: missing data file:")
    assert "train-images-idx3-ubyte.gz" in last and "Traceback" not in proc.stderr
