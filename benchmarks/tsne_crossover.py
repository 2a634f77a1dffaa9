"""Where TSNE(method='auto') switches from the dense exact method to a sparse one.

    python benchmarks/tsne_crossover.py                       # the rule's measurement
    python benchmarks/tsne_crossover.py --sizes 2000 5000 --dims 2 --out /tmp/x.json
    python benchmarks/tsne_crossover.py --smoke --out /tmp/crossover_smoke.json

Whole default fits of ``tsne_ops.TSNE(method=m)`` (1000 iterations, 250 with
early exaggeration, PCA init, seed 0) on the first N points of MNIST (train +
test, PCA to 50 dimensions, float32), for every method that supports the
embedding dimension d: 'exact' (dense P), 'fft' (d <= 2), 'barnes_hut'
(d <= 3). All in one process, one after another, after a warm-up fit (so
tracing is not counted against the first method); the ratios between
methods at the same N are what the rule uses, since the machine may be shared.
Each result records the time, the fitted KL (``kl_divergence_``, over the P
the method used), the KL against the dense exact P (``metrics.kl_divergence``)
and the 10-NN accuracy.

The "rule" entry holds, per d, the smallest measured N at which the fastest
sparse method beat the dense exact one (null if none did), which
``tsne_ops.tsne._AUTO_EXACT_MAX_N`` is set from (the largest measured N below it).
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

METHOD_DIMS = {"exact": (1, 2, 3), "fft": (1, 2), "barnes_hut": (1, 2, 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=os.environ.get("TSNE_OPS_BENCH_CACHE", "/tmp/tsne_ops_bench"))
    ap.add_argument("--out", default=str(HERE / "results" / "tsne_crossover.json"))
    ap.add_argument("--smoke", action="store_true", help="N = 300, 100 iterations: checks the script")
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in --out (same max_iter) and run only the missing ones")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.max_iter = [300], 100

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from bench_knn import mnist_pca
    from tsne_ops import datasets, metrics
    from tsne_ops.tsne import TSNE

    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    X_all = mnist_pca(None, 50, args.cache_dir)
    y_all = np.concatenate([datasets.load_mnist(split="train")[1], datasets.load_mnist(split="test")[1]])
    TSNE(method="exact", max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X_all[:200])
    for m in ("fft", "barnes_hut"):
        TSNE(method=m, max_iter=60, early_exaggeration_iter=30, random_state=0).fit(X_all[:200])

    out = {"command": "python benchmarks/tsne_crossover.py " + " ".join(argv or sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                       "platform": platform.platform(),
                       "note": "shared machine: compare methods within one N, not across runs"},
           "max_iter": args.max_iter, "runs": [], "rule": {}}
    if args.resume and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        if old.get("max_iter") == args.max_iter:
            out["runs"] = old["runs"]
            out["command"] = old["command"] + " ; then " + out["command"]
    done = {(r["d"], r["n"], r["method"]) for r in out["runs"]}
    early = min(250, args.max_iter // 4) if args.smoke else 250
    for d in args.dims:
        for n in args.sizes:
            X, y = X_all[:n], y_all[:n]
            for method in ("exact", "fft", "barnes_hut"):
                if d not in METHOD_DIMS[method] or (d, n, method) in done:
                    continue
                model = TSNE(n_components=d, method=method, max_iter=args.max_iter,
                             early_exaggeration_iter=early, random_state=0)
                t0 = time.perf_counter()
                Y = model.fit_transform(X)
                seconds = time.perf_counter() - t0
                run = {"d": d, "n": n, "method": method, "time_s": round(seconds, 2),
                       "kl_fitted": round(model.kl_divergence_, 4),
                       "kl_dense_p": round(float(metrics.kl_divergence(X, Y, dof=max(d - 1, 1))), 4),
                       "knn10_accuracy": round(float(metrics.knn_accuracy(Y, y, k=10)), 4)}
                out["runs"].append(run)
                print(json.dumps(run), flush=True)
                Path(args.out).write_text(json.dumps(out, indent=2))
        times = {}
        for r in out["runs"]:
            if r["d"] == d and r["n"] in args.sizes:
                times.setdefault(r["n"], {})[r["method"]] = r["time_s"]
        first = None
        for n in sorted(times):
            sparse = [t for m, t in times[n].items() if m != "exact"]
            if sparse and min(sparse) < times[n]["exact"]:
                first = n
                break
        out["rule"][str(d)] = {"fastest_by_n": {str(n): min(t, key=t.get) for n, t in sorted(times.items())},
                               "sparse_faster_from_n": first,
                               "exact_faster_up_to_n": max([n for n in times if first is None or n < first],
                                                           default=None)}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out["rule"]))


if __name__ == "__main__":
    main()
