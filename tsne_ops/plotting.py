"""Figures of embeddings: scatter plots, animations, comparisons.

All functions draw on their own ``matplotlib.figure.Figure`` with the Agg
canvas, so they work without a display and never change the global pyplot
backend of the caller. Each returns the figure (or the path it wrote).

- :func:`scatter`: points coloured by class, each class's label drawn at the
  class centre; 2-D or 3-D from the embedding's shape.
- :class:`EmbeddingRecorder`: collects snapshots during training; pass it as
  ``callback`` to :class:`tsne_ops.TSNE` or :class:`tsne_ops.ParametricTSNE`.
- :func:`animate`: a GIF of the clusters forming, from recorded snapshots.
- :func:`compare`: two embeddings side by side with their metrics.
"""
import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_CMAP = "tab10"


def _new_figure(figsize, dpi=100):
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _check_embedding(embedding, labels=None):
    Y = np.asarray(embedding)
    if Y.ndim != 2 or Y.shape[1] not in (2, 3):
        raise ValueError(f"embedding must have shape [n, 2] or [n, 3], got {Y.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(Y),):
            raise ValueError(f"labels must have shape ({len(Y)},), got {labels.shape}")
    return Y, labels


def _colours(labels, classes):
    import matplotlib

    cmap = matplotlib.colormaps[_CMAP if len(classes) <= 10 else "tab20"]
    index = np.searchsorted(classes, labels)
    return cmap(index % cmap.N)


def _draw(ax, Y, labels, class_names=None, point_size=None, label_classes=True):
    """Scatter Y on ax (2-D or 3-D axes), coloured and labelled by class."""
    n = len(Y)
    s = point_size if point_size is not None else float(np.clip(3000.0 / max(n, 1), 1.0, 20.0))
    if labels is None:
        artists = [ax.scatter(*Y.T, s=s, c="tab:blue", linewidths=0, alpha=0.8)]
        return artists
    classes = np.unique(labels)
    artists = [ax.scatter(*Y.T, s=s, c=_colours(labels, classes), linewidths=0, alpha=0.8)]
    if label_classes:
        outline = [patheffects.withStroke(linewidth=3, foreground="white")]
        for c in classes:
            centre = np.median(Y[labels == c], axis=0)
            name = class_names[int(c)] if class_names is not None else str(c)
            kw = dict(fontsize=11, weight="bold", ha="center", va="center",
                      path_effects=outline)
            artists.append(ax.text(*centre, name, **kw))  # 3-D axes take (x, y, z, s)
    return artists


def _style(ax, three_d, title=None):
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if three_d:
        ax.set_zticks([])
    else:
        ax.set_aspect("equal", adjustable="datalim")


def scatter(embedding, labels=None, path=None, title=None, class_names=None,
            figsize=(6, 6), dpi=100, point_size=None):
    """Scatter plot of a 2-D or 3-D embedding coloured by ``labels``.

    Each class's name (``class_names[label]``, or the label) is drawn at the
    median of its points. Writes ``path`` if given; returns the figure.
    """
    Y, labels = _check_embedding(embedding, labels)
    fig = _new_figure(figsize, dpi)
    three_d = Y.shape[1] == 3
    ax = fig.add_subplot(projection="3d" if three_d else None)
    _draw(ax, Y, labels, class_names, point_size)
    _style(ax, three_d, title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


class EmbeddingRecorder:
    """Collects ``(iteration, kl, embedding)`` snapshots during training.

    Use it as the ``callback`` of :class:`tsne_ops.TSNE` or
    :class:`tsne_ops.ParametricTSNE`, then give ``recorder.frames`` to
    :func:`animate`. ``max_frames`` keeps memory and GIF size bounded: when it
    is exceeded, every other snapshot is dropped (the first and the latest
    are always kept). ``on_snapshot`` is called after each snapshot with the
    same arguments (for a progress bar, say).
    """

    def __init__(self, max_frames=60, on_snapshot=None):
        self.max_frames = int(max_frames)
        self.on_snapshot = on_snapshot
        self.frames = []

    def __call__(self, iteration, kl, embedding):
        self.frames.append((int(iteration), None if kl is None else float(kl),
                            np.array(embedding, copy=True)))
        if len(self.frames) > self.max_frames:
            self.frames = self.frames[:-1:2] + [self.frames[-1]]
        if self.on_snapshot is not None:
            self.on_snapshot(iteration, kl, embedding)
        return False


def _limits(Y, margin=0.05):
    lo, hi = np.percentile(Y, 0.5, axis=0), np.percentile(Y, 99.5, axis=0)
    pad = (hi - lo) * margin + 1e-12
    return lo - pad, hi + pad


def animate(frames, labels, path, title=None, class_names=None, fps=8, figsize=(4.5, 4.5),
            dpi=72, unit="iteration", rotate=True, hold_last=6):
    """Write a GIF of an embedding changing over training.

    ``frames`` is a list of ``(step, kl, embedding)`` (as recorded by
    :class:`EmbeddingRecorder`) or of bare embeddings. Each frame is rescaled
    to its own extent (early t-SNE embeddings are tiny). 3-D embeddings rotate
    slowly when ``rotate``. The last frame is held for ``hold_last`` extra
    frames. Returns ``path``.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter

    frames = [f if isinstance(f, tuple) else (i, None, f) for i, f in enumerate(frames)]
    if not frames:
        raise ValueError("frames is empty: nothing to animate")
    for _, _, Y in frames:
        _check_embedding(Y, labels)
    labels = None if labels is None else np.asarray(labels)
    three_d = frames[0][2].shape[1] == 3
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(projection="3d" if three_d else None)
    schedule = list(range(len(frames))) + [len(frames) - 1] * int(hold_last)

    def draw(k):
        step, kl, Y = frames[schedule[k]]
        ax.clear()
        _draw(ax, Y, labels, class_names, label_classes=labels is not None)
        lo, hi = _limits(Y)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        if three_d:
            ax.set_zlim(lo[2], hi[2])
            if rotate:
                ax.view_init(elev=25, azim=-60 + 3 * k)
        heading = f"{unit} {step}" + ("" if kl is None else f"   KL {kl:.3f}")
        _style(ax, three_d, heading if title is None else f"{title}\n{heading}")
        if not three_d:
            ax.set_aspect("auto")
        return []

    fig.tight_layout()
    anim = FuncAnimation(fig, draw, frames=len(schedule), blit=False)
    anim.save(str(path), writer=PillowWriter(fps=fps))
    return path


def _metrics_text(metrics):
    names = {"kl_divergence": "KL", "trustworthiness": "trust.", "knn_accuracy": "k-NN acc.",
             "time_s": "time (s)", "test_1nn_accuracy": "test 1-NN"}
    parts = []
    for key, label in names.items():
        if metrics.get(key) is not None:
            value = metrics[key]
            if key == "knn_accuracy" and "knn_k" in metrics:
                label = f"{metrics['knn_k']}-NN acc."
            parts.append(f"{label} {value:.3f}" if key != "time_s" else f"{label} {value:.1f}")
    return ", ".join(parts)


def compare(embeddings, labels, path=None, titles=None, metrics=None, class_names=None,
            figsize=None, dpi=100, suptitle=None):
    """Side-by-side scatter plots (e.g. tsne_ops against scikit-learn).

    ``embeddings`` is a list of arrays (all 2-D or all 3-D), ``titles`` and
    ``metrics`` (dicts as returned by :func:`tsne_ops.metrics.evaluate`,
    plus optional ``time_s``) lists of the same length; the metrics are
    printed under each panel. Writes ``path`` if given; returns the figure.
    """
    embeddings = [_check_embedding(Y, labels)[0] for Y in embeddings]
    k = len(embeddings)
    if k == 0:
        raise ValueError("embeddings is empty")
    titles = titles or [f"embedding {i + 1}" for i in range(k)]
    metrics = metrics or [None] * k
    if len(titles) != k or len(metrics) != k:
        raise ValueError(f"titles and metrics must have {k} entries each")
    fig = _new_figure(figsize or (5.5 * k, 6), dpi)
    for i, (Y, title, m) in enumerate(zip(embeddings, titles, metrics)):
        three_d = Y.shape[1] == 3
        ax = fig.add_subplot(1, k, i + 1, projection="3d" if three_d else None)
        _draw(ax, Y, None if labels is None else np.asarray(labels), class_names)
        _style(ax, three_d, title)
        if m:
            put_text = ax.text2D if three_d else ax.text
            put_text(0.5, -0.04, _metrics_text(m), transform=ax.transAxes, ha="center",
                     va="top", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
