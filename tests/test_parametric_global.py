"""ParametricTSNE on a global P: the sampled pairs are P in expectation, and training on them works."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tsne_ops  # noqa: F401  (loads the ops)
from tsne_ops import datasets, metrics
from tsne_ops.affinities import sparse_joint_probabilities
from tsne_ops.parametric import ParametricTSNE
from tsne_ops.parametric_model import EdgeSampler, group_affinities


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 5)) * 6
    return (centres[rng.integers(0, 3, 60)] + rng.normal(size=(60, 5))).astype(np.float32)


def test_sampled_pairs_are_p_in_expectation(blobs):
    """Over uniform heads, each pair (i, j) weighted by p_i has expected weight
    p_ij / N: the mean of the sampled weight matrix, rescaled, is P."""
    n, draws = len(blobs), 4000
    sampler = EdgeSampler(blobs, perplexity=5.0)
    P = tf.sparse.to_dense(sparse_joint_probabilities(blobs, 5.0)).numpy().astype(np.float64)
    assert sampler.row_sums == pytest.approx(P.sum(axis=1))
    heads = np.tile(np.arange(n), draws)  # every head equally often, as in an epoch
    tails = sampler.tails(heads, seed=1).numpy()
    assert np.all(P[heads, tails] > 0)  # only neighbours in P are drawn
    acc = np.zeros((n, n))
    np.add.at(acc, (heads, tails), sampler.row_sums[heads])
    estimate = acc / draws  # E[weight on (i, j)] per pass over the heads = p_ij
    # within 5 standard errors of a multinomial count per entry
    se = np.sqrt(P / np.maximum(P.sum(axis=1, keepdims=True), 1e-300) / draws) * P.sum(axis=1,
                                                                                       keepdims=True)
    assert np.all(np.abs(estimate - P) <= 5 * se + 1e-12)
    assert abs(estimate.sum() - 1.0) < 0.02


def test_sampled_blocks_carry_the_head_weights_and_restricted_blocks_p(blobs):
    n = len(blobs)
    P = tf.sparse.to_dense(sparse_joint_probabilities(blobs, 5.0)).numpy()
    sampled = EdgeSampler(blobs, perplexity=5.0, tails_per_head=3)
    index, block = (t.numpy() for t in sampled.groups(np.arange(n), seed=0))
    assert index.shape == (n, 4) and block.shape == (n, 4, 4)
    assert np.all(index[:, 0] == np.arange(n))
    assert np.all(P[index[:, :1], index[:, 1:]] > 0)  # tails are neighbours of their head
    expected = np.zeros((n, 4, 4), np.float32)
    expected[:, 0, 1:] = expected[:, 1:, 0] = (sampled.row_sums / 3)[:, None]
    np.testing.assert_allclose(block, expected, rtol=1e-6)
    restricted = EdgeSampler(blobs, perplexity=5.0, tails_per_head=3, block="restricted")
    index, block = (t.numpy() for t in restricted.groups(np.arange(n), seed=0))
    np.testing.assert_allclose(block, P[index[:, :, None], index[:, None, :]], rtol=1e-6)
    with pytest.raises(ValueError, match="block must be 'sampled' or 'restricted'"):
        EdgeSampler(blobs, perplexity=5.0, block="all")


def test_a_dataset_batch_holds_groups_of_points_and_one_pass_of_heads(blobs):
    sampler = EdgeSampler(blobs, perplexity=5.0)
    batch = next(iter(sampler.dataset(16, seed=0)))
    assert batch["x"].shape == (16, 2, 5) and batch["p"].shape == (16, 2, 2)
    heads = np.concatenate([b["x"][:, 0].numpy() for b in sampler.dataset(10, seed=0)])
    assert len(heads) == 60 and len(np.unique(heads, axis=0)) == 60  # one pass, no repeats


def test_group_affinities_puts_the_blocks_on_the_diagonal():
    blocks = np.array([[[0, 1], [1, 0]], [[0, 3], [3, 0]]], np.float32)
    p = group_affinities(tf.constant(blocks)).numpy()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = 1 / 8
    expected[2, 3] = expected[3, 2] = 3 / 8
    np.testing.assert_allclose(p, expected)


def test_global_default_trains_and_batch_stays_an_option(tmp_path):
    X, y = datasets.load_digits(n=900)
    Xtr, ytr, Xte, yte = X[:700], y[:700], X[700:], y[700:]
    assert ParametricTSNE().training_schedule() == (125, 40)
    assert ParametricTSNE(affinities="batch").training_schedule() == (1000, 50)
    assert ParametricTSNE(batch_size=7, epochs=3).training_schedule() == (7, 3)
    # the dense layers and the rate's schedule of each default
    hidden = lambda m: [layer.units for layer in m.encoder_.layers  # noqa: E731
                        if layer.name.startswith("hidden")]
    short = ParametricTSNE(batch_size=100, epochs=1, random_state=0).fit(Xtr[:300])
    assert hidden(short) == [256, 256, 1024]
    rate = short.model_.optimizer.learning_rate
    assert isinstance(short.model_.optimizer._learning_rate,
                      keras.optimizers.schedules.CosineDecay) and float(rate) < 1e-3
    batch = ParametricTSNE(affinities="batch", batch_size=100, epochs=1, random_state=0).fit(Xtr[:300])
    assert hidden(batch) == [500, 500, 2000]
    assert float(batch.model_.optimizer.learning_rate) == pytest.approx(1e-3)
    flat = ParametricTSNE(batch_size=100, epochs=1, lr_schedule="constant").fit(Xtr[:300])
    assert float(flat.model_.optimizer.learning_rate) == pytest.approx(1e-3)
    model = ParametricTSNE(batch_size=175, epochs=12, learning_rate=2e-3, random_state=0)
    assert model.affinities == "global"
    Y = model.fit_transform(Xtr)
    assert model.model_.training_p == "global"
    assert (model.batch_size_, model.epochs_, len(model.history_)) == (175, 12, 12)
    assert model.history_[-1] < model.history_[0]
    assert metrics.knn_accuracy(Y, ytr, k=10) > 0.85
    assert metrics.train_test_knn_accuracy(Y, ytr, model.transform(Xte), yte, k=1) > 0.75
    same = ParametricTSNE.load(model.save(tmp_path / "global"))
    assert same.affinities == "global" and same.model_.training_p == "global"
    np.testing.assert_allclose(same.transform(Xte), model.transform(Xte), rtol=1e-5, atol=1e-6)
    # a sidecar written before the global P existed loads as affinities='batch'
    meta = json.load(open(tmp_path / "global.keras.json"))
    del meta["affinities"]
    json.dump(meta, open(tmp_path / "global.keras.json", "w"))
    assert ParametricTSNE.load(tmp_path / "global").affinities == "batch"
    batch = ParametricTSNE(affinities="batch", batch_size=350, epochs=2, random_state=0).fit(Xtr)
    assert batch.model_.training_p == "batch" and len(batch.history_) == 2


def test_verbose_shows_a_progress_bar_over_the_epochs_with_the_loss(capsys):
    X, _ = datasets.load_digits(n=300)
    ParametricTSNE(batch_size=100, epochs=3, verbose=1, random_state=0).fit(X)
    err = capsys.readouterr().err
    assert "ParametricTSNE" in err and "3/3" in err and "loss=" in err


def test_progress_bar_and_animation_of_clusters_forming(tmp_path, capsys):
    """Item 5 of issue 19 with the global P: the CLI's pairing of a progress bar
    (verbose=1) and an EmbeddingRecorder callback, and the GIF made from it."""
    from PIL import Image

    from tsne_ops import plotting

    X, y = datasets.load_digits(n=400)
    recorder = plotting.EmbeddingRecorder(max_frames=10)
    model = ParametricTSNE(batch_size=50, epochs=4, learning_rate=2e-3, verbose=1,
                           random_state=0, callback=recorder, callback_every=2,
                           callback_samples=300).fit(X)
    assert model.affinities == "global"
    err = capsys.readouterr().err
    assert "4/4" in err and "loss=" in err
    steps = [step for step, _, _ in recorder.frames]
    assert steps == [0, 2, 4]
    assert recorder.frames[0][1] is None and recorder.frames[-1][1] == pytest.approx(
        model.history_[-1])
    labels = y[model.callback_indices_]
    assert all(Y.shape == (300, 2) for _, _, Y in recorder.frames)
    # clusters form: the snapshots' 10-NN accuracy rises from the random encoder's
    acc = [metrics.knn_accuracy(Y, labels, k=10) for _, _, Y in recorder.frames]
    assert acc[-1] > acc[0] + 0.2, acc
    path = plotting.animate(recorder.frames, labels, tmp_path / "clusters.gif", unit="epoch",
                            hold_last=0)
    with Image.open(path) as im:  # one GIF frame per snapshot
        assert im.n_frames == len(recorder.frames)
