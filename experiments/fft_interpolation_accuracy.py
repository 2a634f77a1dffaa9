"""How fine the FFT repulsion's grid must be: error against the exact sums for
interpolation stencils and box widths (the search behind ``method='fft'``'s
2D defaults in tsne_ops/repulsion.py).

    python experiments/fft_interpolation_accuracy.py --cache-dir /tmp/approx_cache
    python experiments/fft_interpolation_accuracy.py --table

For N = 1,000 and 10,000 (the first N rows of MNIST train + test, PCA to 50,
as in benchmarks/bench_approx.py, whose embeddings it reuses) and each 2D
embedding below, the relative error (Frobenius norm over all points) of the
repulsion term ``R / Z`` against the exact sums (``barnes_hut_repulsion``
with ``angle=0``, float64):

* ``op``: ``tsne_ops.fft_repulsion`` in float32 (as ``TSNE`` runs it) with
  ``interpolation_points`` p and ``interval_width`` w: the package's stencil,
  the p nodes nearest each point;
* ``box``: the same grid with FIt-SNE's and openTSNE's stencil, the p nodes
  of the box a point falls in, written out here in numpy (float64), since
  the package no longer has it. ``box`` p = 3, w = 0.5 was this package's
  previous default and ``box`` p = 3, w = 1 is openTSNE's.

Embeddings: openTSNE's final embedding at its defaults (``opentsne-final``,
77 and 157 wide) and the synthetic clusters of bench_approx.py at standard
deviations 20 and 50 (125 and 330 wide), the widest cases of the accuracy
floor. Also the grid's FFT length for each. Appends one JSON line per
(N, embedding) to ``experiments/results/fft_interpolation_accuracy.jsonl``.
"""
import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "experiments" / "results" / "fft_interpolation_accuracy.jsonl"

OP_CONFIGS = [(3, 0.5), (3, 1.0), (4, 1.0), (5, 1.2), (5, 1.4), (5, 1.6), (6, 1.8), (7, 2.2)]
BOX_CONFIGS = [(3, 0.5), (3, 1.0), (5, 1.4)]


def box_stencil_repulsion(y, p, width, min_intervals=50):
    """R / Z by the box-based stencil (FIt-SNE's), numpy float64, with the
    package's grid rule (5-smooth box count, boxes at most ``width``)."""
    from tsne_ops import repulsion

    lo = y.min(0)
    extent = float((y.max(0) - lo).max())
    want = max(min_intervals, int(np.ceil(extent / width)))
    sizes = repulsion._SMOOTH_SIZES
    n_boxes = int(sizes[np.searchsorted(sizes, want)])
    h = extent / n_boxes
    m = n_boxes * p
    nodes = (np.arange(p) + 0.5) / p

    def weights(s):
        box = np.clip(np.floor(s), 0, n_boxes - 1).astype(int)
        t = s - box
        w = np.ones((len(s), p))
        for l in range(p):
            for k in range(p):
                if k != l:
                    w[:, l] *= (t - nodes[k]) / (nodes[l] - nodes[k])
        return box[:, None] * p + np.arange(p)[None], w

    ix, wx = weights((y[:, 0] - lo[0]) / h)
    iy, wy = weights((y[:, 1] - lo[1]) / h)
    wgt = wx[:, :, None] * wy[:, None, :]
    gx = np.broadcast_to(ix[:, :, None], wgt.shape)
    gy = np.broadcast_to(iy[:, None, :], wgt.shape)
    grid = np.zeros((m, m))
    np.add.at(grid, (gx, gy), wgt)
    length = 2 * m
    off = np.arange(length)
    off = np.where(off <= length // 2, off, off - length) * (h / p)
    ox, oy = off[:, None], off[None, :]
    base = 1.0 + ox ** 2 + oy ** 2
    g_hat = np.fft.rfft2(grid, (length, length))
    pots = [np.fft.irfft2(g_hat * np.fft.rfft2(k), (length, length))[:m, :m]
            for k in (1.0 / base, ox / base ** 2, oy / base ** 2)]
    phi = [(pot[gx, gy] * wgt).sum(axis=(1, 2)) for pot in pots]
    z = phi[0].sum() - len(y)
    return np.stack(phi[1:], axis=1) / z, length


def run(args):
    import tensorflow as tf

    from bench_approx import clusters, opentsne_snapshots
    from bench_knn import mnist_labels, mnist_pca
    from tsne_ops import repulsion

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    x_all, labels_all = mnist_pca(None, 50, cache), mnist_labels(None)
    for n in args.sizes:
        x, labels = x_all[:n], labels_all[:n]
        snaps = opentsne_snapshots(x, 2, args.threads, cache)
        embs = [("opentsne-final", snaps["opentsne-final"])]
        embs += [(f"clusters-sd{s:g}", clusters(labels, 2, s)) for s in (20, 50)]
        for name, y in embs:
            y = np.asarray(y, np.float64)
            r, z = repulsion.barnes_hut_repulsion(tf.constant(y), 1.0, angle=0.0)
            ref = (r / z).numpy()
            row = {"n": n, "embedding": name, "extent": float(np.ptp(y, axis=0).max()),
                   "op": [], "box": []}
            for p, w in OP_CONFIGS:
                r, z = repulsion.fft_repulsion(tf.constant(y.astype(np.float32)), 1.0,
                                               interpolation_points=p, interval_width=w)
                _, _, _, length = repulsion._fft_grid(tf.constant(y[None]), p, 50, w,
                                                      repulsion._FFT_MAX_NODES[2] // p)
                err = np.linalg.norm((r / z).numpy() - ref) / np.linalg.norm(ref)
                row["op"].append({"p": p, "width": w, "rel_err": float(err),
                                  "fft_length": int(length)})
            for p, w in BOX_CONFIGS:
                approx, length = box_stencil_repulsion(y, p, w)
                err = np.linalg.norm(approx - ref) / np.linalg.norm(ref)
                row["box"].append({"p": p, "width": w, "rel_err": float(err),
                                   "fft_length": int(length)})
            row["machine"] = platform.platform()
            row["command"] = " ".join(["python"] + sys.argv)
            print(json.dumps(row), flush=True)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")


def table():
    rows = [json.loads(line) for line in open(RESULTS)]
    cols = [("op", c["p"], c["width"]) for c in rows[0]["op"]] + [
        ("box", c["p"], c["width"]) for c in rows[0]["box"]]
    print("| N | embedding | extent | " + " | ".join(f"{k} p{p} w{w:g}" for k, p, w in cols)
          + " |")
    print("| --- " * (3 + len(cols)) + "|")
    for r in rows:
        errs = [c["rel_err"] for c in r["op"]] + [c["rel_err"] for c in r["box"]]
        print(f"| {r['n']} | {r['embedding']} | {r['extent']:.0f} | "
              + " | ".join(f"{e:.1e}" for e in errs) + " |")
    worst = {}
    for r in rows:
        for kind in ("op", "box"):
            for c in r[kind]:
                key = (kind, c["p"], c["width"])
                worst[key] = max(worst.get(key, 0.0), c["rel_err"])
    print("\nworst case: " + ", ".join(f"{k} p{p} w{w:g}: {e:.1e}"
                                      for (k, p, w), e in worst.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--cache-dir", default="/tmp/fft_accuracy_cache",
                    help="keeps the PCA'd MNIST and the openTSNE runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table", action="store_true", help="print the results file as a table")
    args = ap.parse_args()
    if args.table:
        table()
    else:
        run(args)


if __name__ == "__main__":
    main()
