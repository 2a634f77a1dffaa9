"""scikit-learn's optimiser against openTSNE's choices, on the sparse (large-N) path.

    python benchmarks/tsne_optimizer.py                      # N = 20,000, method 'fft'
    python benchmarks/tsne_optimizer.py --sizes 20000 70000
    python benchmarks/tsne_optimizer.py --smoke --out /tmp/opt_smoke.json

Two schedules of ``tsne_ops.TSNE(method=..., optimizer=...)`` on the first N
points of MNIST (train + test, PCA to 50 dimensions, float32), seed 0, PCA init:

  sklearn   scikit-learn's: momentum 0.5 then 0.8, learning rate max(N / 48, 50)
            in both phases, 250 + 750 = 1000 iterations;
  opentsne  openTSNE's: momentum 0.8 throughout, learning rate N / 48 during early
            exaggeration and N / 4 after (openTSNE's N / exaggeration, its gradient
            lacking this package's factor 4), each point's step clipped to 5,
            250 + 500 = 750 iterations.

Both fits run in this process one after the other, after a warm-up (the
machine may be shared: compare the two within one N). Each is scored by its
time, the KL of the final embedding against one common P (the exact kNN P,
k = 90, with Z summed exactly over all pairs: ``tsne_loss(P, Y, method='exact')``)
and the 10-NN accuracy. The "better" entry per N names the schedule with the
lower common KL if it was also faster, else "sklearn" (the default stays
scikit-learn's unless openTSNE's reaches a lower KL in less time).
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

SCHEDULES = {"sklearn": 1000, "opentsne": 750}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000])
    ap.add_argument("--method", default="fft", choices=("fft", "barnes_hut"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=os.environ.get("TSNE_OPS_BENCH_CACHE", "/tmp/tsne_ops_bench"))
    ap.add_argument("--out", default=str(HERE / "results" / "tsne_optimizer.json"))
    ap.add_argument("--smoke", action="store_true", help="N = 500, 200 / 150 iterations")
    args = ap.parse_args(argv)
    schedules = dict(SCHEDULES)
    if args.smoke:
        args.sizes = [500]
        schedules = {"sklearn": 200, "opentsne": 150}

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bench_knn import mnist_pca
    from tsne_ops import datasets, metrics, ops
    from tsne_ops.affinities import sparse_joint_probabilities
    from tsne_ops.tsne import TSNE

    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    X_all = mnist_pca(None, 50, args.cache_dir)
    y_all = np.concatenate([datasets.load_mnist(split="train")[1],
                            datasets.load_mnist(split="test")[1]])
    for opt in schedules:  # warm-up: tracing, op library
        TSNE(method=args.method, optimizer=opt, max_iter=60, early_exaggeration_iter=30,
             random_state=0).fit(X_all[:300])

    out = {"command": "python benchmarks/tsne_optimizer.py " + " ".join(argv or sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                       "platform": platform.platform(),
                       "note": "shared machine: compare the schedules within one N only"},
           "method": args.method, "runs": [], "better": {}}
    early = 250 if not args.smoke else 50
    for n in args.sizes:
        X, y = X_all[:n], y_all[:n]
        P = sparse_joint_probabilities(X, 30.0, n_neighbors=min(90, n - 1))
        res = {}
        for opt, iters in schedules.items():
            model = TSNE(method=args.method, optimizer=opt, max_iter=iters,
                         early_exaggeration_iter=early, random_state=0)
            t0 = time.perf_counter()
            Y = model.fit_transform(X)
            seconds = time.perf_counter() - t0
            kl_common = float(ops.tsne_loss(P, tf.constant(Y), dof=1.0, method="exact"))
            run = {"n": n, "optimizer": opt, "max_iter": iters, "n_iter": model.n_iter_ + 1,
                   "learning_rate_late": model.learning_rate_, "time_s": round(seconds, 2),
                   "kl_fitted": round(model.kl_divergence_, 4),
                   "kl_common_p": round(kl_common, 4),
                   "knn10_accuracy": round(float(metrics.knn_accuracy(Y, y, k=10)), 4)}
            res[opt] = run
            out["runs"].append(run)
            print(json.dumps(run), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=2))
        o, s = res["opentsne"], res["sklearn"]
        out["better"][str(n)] = ("opentsne" if o["kl_common_p"] < s["kl_common_p"]
                                 and o["time_s"] < s["time_s"] else "sklearn")
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out["better"]))


if __name__ == "__main__":
    main()
