"""Quick start: plain and parametric t-SNE on scikit-learn's digits.

    python examples/quickstart.py            # writes quickstart_*.png / .gif here
"""
from tsne_ops import TSNE, ParametricTSNE, datasets, metrics, plotting

X, y = datasets.load_digits()

# Case A: a drop-in replacement for sklearn.manifold.TSNE, with an animation.
recorder = plotting.EmbeddingRecorder(max_frames=40)
tsne = TSNE(n_components=2, perplexity=30, random_state=0, callback=recorder, callback_every=25)
Y = tsne.fit_transform(X)
print(f"t-SNE: KL {tsne.kl_divergence_:.3f}, 10-NN accuracy {metrics.knn_accuracy(Y, y):.3f}")
plotting.scatter(Y, y, path="quickstart_tsne.png", title="t-SNE of digits")
plotting.animate(recorder.frames, y, "quickstart_tsne.gif")

# Case C: a conv encoder that also embeds points it has not seen.
train, test = slice(0, 1400), slice(1400, None)
model = ParametricTSNE(n_components=2, encoder="conv", batch_size=700, epochs=100,
                       learning_rate=2e-3, random_state=0)
Ytr = model.fit_transform(X[train])
Yte = model.transform(X[test])
print(f"parametric: held-out 1-NN accuracy "
      f"{metrics.train_test_knn_accuracy(Ytr, y[train], Yte, y[test]):.3f}")
model.save("quickstart_model.keras")  # ParametricTSNE.load("quickstart_model.keras")
