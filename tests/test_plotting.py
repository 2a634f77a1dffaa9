"""tsne_ops.plotting writes real images and animations."""
import numpy as np
import pytest
from PIL import Image

from tsne_ops import plotting


def _clusters(d, n=200, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 4
    return rng.randn(n, d) * 0.3 + np.eye(4, d)[y] * 5, y


@pytest.mark.parametrize("d", [2, 3])
def test_scatter_writes_png_with_class_labels(tmp_path, d):
    Y, y = _clusters(d)
    fig = plotting.scatter(Y, y, path=tmp_path / "s.png", title="t",
                           class_names=["a", "b", "c", "d"])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert texts == {"a", "b", "c", "d"}
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (600, 600)
        # Not blank: several distinct colours were drawn.
        assert len(im.convert("RGB").getcolors(1 << 20)) > 10


@pytest.mark.parametrize("d", [2, 3])
def test_animation_from_recorder(tmp_path, d):
    rec = plotting.EmbeddingRecorder(max_frames=6)
    Y, y = _clusters(d)
    for it in range(1, 11):
        assert rec(it, 1.0 / it, Y * it / 10) is False
    assert len(rec.frames) <= 6 and rec.frames[0][0] == 1 and rec.frames[-1][0] == 10
    path = plotting.animate(rec.frames, y, tmp_path / "a.gif", hold_last=2)
    with Image.open(path) as im:
        # Pillow merges identical frames (the held last one, in 2-D).
        assert im.format == "GIF" and im.n_frames >= len(rec.frames) >= 3


def test_compare_figure(tmp_path):
    Y, y = _clusters(2)
    m = {"kl_divergence": 0.5, "trustworthiness": 0.9, "knn_accuracy": 0.95, "knn_k": 10,
         "time_s": 1.0}
    fig = plotting.compare([Y, -Y], y, path=tmp_path / "c.png", titles=["ours", "sklearn"],
                           metrics=[m, m])
    assert len(fig.axes) == 2
    assert any("10-NN acc. 0.950" in t.get_text() for t in fig.axes[0].texts)
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_errors():
    Y, y = _clusters(2)
    with pytest.raises(ValueError, match="embedding must have shape"):
        plotting.scatter(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="labels must have shape"):
        plotting.scatter(Y, y[:-1])
    with pytest.raises(ValueError, match="frames is empty"):
        plotting.animate([], y, "x.gif")
    with pytest.raises(ValueError, match="2 entries"):
        plotting.compare([Y, Y], y, titles=["one"])
