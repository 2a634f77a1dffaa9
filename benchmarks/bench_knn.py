"""Exact k-nearest neighbours and the sparse-P pipeline beyond 10,000 points.

    python benchmarks/bench_knn.py                  # N = 10,000, 70,000, 250,000; k = 90; 2 threads
    python benchmarks/bench_knn.py --sizes 70000 --methods tsne_ops,faiss
    python benchmarks/bench_knn.py --smoke --out /tmp/knn_smoke.json   # a few seconds; checks the script
    python benchmarks/bench_knn.py --table          # docs/performance.md's kNN table from --out

Data: N = 10,000 and 70,000 are MNIST (train + test, first N) reduced to 50
dimensions by PCA (fitted once on all 70,000 images); N = 250,000 is a
synthetic 50-dimensional Gaussian mixture. float32 throughout, k = 90 (3 x
perplexity 30, as t-SNE uses it).

Methods, each on the same array in its own subprocess (so peak memory is
that measurement's alone, read from ru_maxrss and reported beyond the
process's resident memory just before it, i.e. beyond imports and the input;
the peak mark is reset first, see start_memory):
  tsne_ops  tsne_ops.nearest_neighbors(x, k) (TensorFlow intra-op threads = --threads)
  sklearn   sklearn NearestNeighbors(algorithm='brute', n_jobs=--threads).kneighbors()
  faiss     faiss-cpu IndexFlatL2 (exact), k + 1 neighbours with the query itself dropped
            (an optional extra: pip install faiss-cpu; skipped with a message if missing)
  faiss_ivf the approximate search of tsne_ops.neighbors.nearest_neighbors(x, k, neighbors='approx'):
            faiss-cpu IndexIVFFlat, nlist = sqrt(N), nprobe = 20 (train, add and search timed)
Recall is measured against an exact float64 search for --recall-queries
random query points.

In the tsne_ops process, when the installed tsne_ops has them (checked with
getattr, so this script runs before and after they exist), it then times
tsne_ops.knn_joint_probabilities(indices, sq_distances, perplexity) and one
tsne_ops.tsne_gradient(P_sparse, Y, method='exact') on a random 2-D
embedding; at N = 70,000 its peak memory is the whole sparse pipeline's.

Prints one line per measurement and writes everything to --out (JSON).
Timings need a quiet machine: run nothing else meanwhile.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
METHODS = ("tsne_ops", "sklearn", "faiss", "faiss_ivf")


# ------------------------------------------------------------------ data ---

def mnist_pca(data_dir, dims, cache):
    """MNIST train + test (70,000 x 784) -> PCA to `dims`, float32, cached."""
    path = Path(cache) / f"mnist70000_pca{dims}.npy"
    if path.exists():
        return np.load(path)
    sys.path.insert(0, str(REPO))
    from sklearn.decomposition import PCA

    from tsne_ops import datasets

    xtr, _ = datasets.load_mnist(data_dir, split="train")
    xte, _ = datasets.load_mnist(data_dir, split="test")
    x = np.concatenate([xtr, xte])
    z = PCA(n_components=dims, random_state=0).fit_transform(x).astype(np.float32)
    np.save(path, z)
    return z


def mnist_labels(data_dir):
    """The labels of :func:`mnist_pca`'s rows (train then test), int64."""
    sys.path.insert(0, str(REPO))
    from tsne_ops import datasets

    return np.concatenate([datasets.load_mnist(data_dir, split=s)[1] for s in ("train", "test")])


def gaussian_mixture(n, dims, components=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(components, dims))
    labels = rng.integers(0, components, size=n)
    scales = rng.uniform(0.5, 1.5, size=components)
    x = centres[labels] + rng.normal(size=(n, dims)) * scales[labels, None]
    return x.astype(np.float32)


def exact_reference(x, queries, k, chunk=64):
    """Exact neighbour sets (self excluded) of x[queries], in float64."""
    x64 = x.astype(np.float64)
    norms = (x64**2).sum(1)
    out = np.empty((len(queries), k), np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s:s + chunk]
        d2 = norms[q, None] + norms[None, :] - 2.0 * x64[q] @ x64.T
        d2[np.arange(len(q)), q] = np.inf
        part = np.argpartition(d2, k, axis=1)[:, :k]
        out[s:s + chunk] = part
    return out


def recall(found, reference):
    hits = [len(np.intersect1d(f, r, assume_unique=False)) for f, r in zip(found, reference)]
    return float(np.sum(hits) / reference.size)


# ---------------------------------------------------------------- worker ---

def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    raise KeyError(field)


def start_memory():
    """Resets the peak-RSS mark (Linux: clear_refs 5) and returns the RSS now.

    Then peak_mib() - start_memory() is this measurement's own peak beyond
    what the process held before (imports, the input), even when importing
    TensorFlow peaked higher. Without clear_refs, the ru_maxrss peak so far.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mib("VmRSS")
    except OSError:
        return peak_mib()


def peak_mib():
    try:
        return _status_mib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker(spec):
    """One measurement in this process; returns a dict for the JSON."""
    method, k, threads = spec["method"], spec["k"], spec["threads"]
    out = {"method": method}
    if method == "tsne_ops":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        sys.path.insert(0, str(REPO))
        import tsne_ops

        tsne_ops.nearest_neighbors(np.zeros((4, 2), np.float32), 1)  # warm: kernel creation
        run = lambda x: tuple(t.numpy() for t in tsne_ops.nearest_neighbors(x, k))  # noqa: E731
    elif method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        def run(x):
            dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=threads).fit(x).kneighbors()
            return idx, dist

    elif method == "faiss":
        try:
            import faiss
        except ImportError:
            return {"method": method, "skipped": "faiss-cpu is not installed (pip install faiss-cpu)"}
        faiss.omp_set_num_threads(threads)

        def run(x):
            index = faiss.IndexFlatL2(x.shape[1])
            index.add(x)
            d2, idx = index.search(x, k + 1)
            # Drop the query itself (not always first when there are duplicates).
            is_self = idx == np.arange(len(x))[:, None]
            is_self[~is_self.any(1), -1] = True
            return idx[~is_self].reshape(len(x), k), d2[~is_self].reshape(len(x), k)

    elif method == "faiss_ivf":
        try:
            import faiss  # noqa: F401
        except ImportError:
            return {"method": method, "skipped": "faiss-cpu is not installed (pip install faiss-cpu)"}
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        sys.path.insert(0, str(REPO))
        from tsne_ops import neighbors

        def run(x):
            idx, d2 = neighbors.nearest_neighbors(x, k, neighbors="approx")
            return idx.numpy(), d2.numpy()

    else:
        raise ValueError(f"unknown method {method!r}")
    x = np.load(spec["data"])
    ref = np.load(spec["ref"])
    before = start_memory()
    t0 = time.perf_counter()
    idx, d2 = run(x)
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib_beyond_input"] = peak_mib() - before
    out["peak_mib"] = peak_mib()
    out["recall"] = recall(idx[ref["queries"]], ref["indices"])
    if method == "tsne_ops":
        out.update(sparse_pipeline(tsne_ops, idx, d2, spec, before))
    return out


def sparse_pipeline(tsne_ops, idx, d2, spec, before):
    """P from the kNN, then one exact-repulsion gradient, when they exist."""
    import tensorflow as tf

    res = {}
    knn_p = getattr(tsne_ops, "knn_joint_probabilities", None)
    if knn_p is None:
        res["knn_joint_probabilities"] = "not in this tsne_ops"
        return res
    t0 = time.perf_counter()
    p = knn_p(idx, d2, spec["perplexity"])
    if isinstance(p, tf.SparseTensor):
        _ = p.values.numpy()
    res["knn_joint_probabilities_seconds"] = time.perf_counter() - t0
    res["after_p_peak_mib_beyond_input"] = peak_mib() - before
    n = idx.shape[0]
    if n > spec["gradient_max_n"]:
        res["tsne_gradient"] = f"skipped above N = {spec['gradient_max_n']} (--gradient-max-n)"
        return res
    y = tf.constant(np.random.default_rng(0).normal(scale=1e-2, size=(n, 2)).astype(np.float32))
    try:
        t0 = time.perf_counter()
        grad, _ = tsne_ops.tsne_gradient(p, y, method="exact")
        _ = grad.numpy()
        res["sparse_exact_gradient_seconds"] = time.perf_counter() - t0
        res["pipeline_peak_mib_beyond_input"] = peak_mib() - before
    except (TypeError, ValueError, tf.errors.OpError) as e:  # older tsne_ops: no sparse P
        res["tsne_gradient"] = f"sparse P not supported: {type(e).__name__}: {str(e)[:200]}"
    return res


# ---------------------------------------------------------------- driver ---

def datasets_for(args, cache):
    if args.smoke:
        yield "gaussian_mixture", gaussian_mixture(3000, 50)
        yield "gaussian_mixture", gaussian_mixture(1200, 50, seed=1)
        return
    mnist = None
    for n in args.sizes:
        if n <= 70000:
            if mnist is None:
                mnist = mnist_pca(args.data_dir, args.dims, cache)
            yield "mnist_pca", np.ascontiguousarray(mnist[:n])
        else:
            yield "gaussian_mixture", gaussian_mixture(n, args.dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,70000,250000",
                    type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--k", type=int, default=90)
    ap.add_argument("--dims", type=int, default=50)
    ap.add_argument("--perplexity", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS), type=lambda s: s.split(","))
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--gradient-max-n", type=int, default=70000,
                    help="largest N for the exact-repulsion gradient (O(N^2) time)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per measurement")
    ap.add_argument("--data-dir", default="/work/shared/data/mnist")
    ap.add_argument("--cache-dir", default=None, help="where the PCA'd MNIST is cached (default: a temp dir)")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_knn.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny synthetic data, k = 10: checks the script")
    ap.add_argument("--table", action="store_true", help="print docs/performance.md's kNN table from --out and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        ap.error(f"--methods: unknown {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.smoke:
        args.k = 10
        args.perplexity = 3.0  # knn_joint_probabilities needs perplexity < k
    report = {
        "k": args.k, "threads": args.threads, "dims": args.dims, "perplexity": args.perplexity,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke, "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        Path(cache).mkdir(parents=True, exist_ok=True)
        for name, x in datasets_for(args, cache):
            n = len(x)
            data = Path(tmp) / f"x{n}.npy"
            np.save(data, x)
            queries = np.random.default_rng(0).choice(n, min(n, args.recall_queries), replace=False)
            ref = Path(tmp) / f"ref{n}.npz"
            np.savez(ref, queries=queries, indices=exact_reference(x, queries, args.k))
            for method in args.methods:
                spec = dict(method=method, k=args.k, threads=args.threads, data=str(data), ref=str(ref),
                            perplexity=args.perplexity, gradient_max_n=args.gradient_max_n)
                # The 1-minute load average around each measurement: well above
                # --threads (a shared machine), the times are inflated.
                row = {"dataset": name, "n": n, "dim": x.shape[1], "load_average_1min_before": os.getloadavg()[0]}
                try:
                    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                          capture_output=True, text=True, timeout=args.timeout)
                    if proc.returncode != 0:
                        row.update(method=method, error=proc.stderr.strip()[-1000:])
                    else:
                        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                except subprocess.TimeoutExpired:
                    row.update(method=method, error=f"timeout after {args.timeout} s")
                row["load_average_1min_after"] = os.getloadavg()[0]
                report["results"].append(row)
                print(json.dumps(row), flush=True)
    summarise(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


def summarise(report):
    """Speed-ups of tsne_ops over the others, per size (the issue's floors)."""
    by = {}
    for r in report["results"]:
        if "seconds" in r:
            by.setdefault(r["n"], {})[r["method"]] = r["seconds"]
    report["speedup_of_tsne_ops"] = {
        str(n): {m: t[m] / t["tsne_ops"] for m in t if m != "tsne_ops"} for n, t in by.items() if "tsne_ops" in t
    }
    print("speed-up of tsne_ops (other / tsne_ops):", json.dumps(report["speedup_of_tsne_ops"]))


def markdown_table(report):
    """The kNN table of docs/performance.md, from a result file of this script."""
    rows = {}
    for r in report["results"]:
        rows.setdefault(r["n"], {})[r["method"]] = r
    head = ("| N | tsne_ops `nearest_neighbors` | scikit-learn brute (its time / ours) | faiss `IndexFlatL2` (its time / ours) "
            "| faiss IVF approx (its time / ours, recall) | `knn_joint_probabilities` | one sparse exact-repulsion gradient "
            "| pipeline peak beyond input | 1-min load average (before, after ours) |")
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]

    def timing(m, ours, extra=""):
        if m is None:
            return "not run"
        if "seconds" not in m:
            return m.get("skipped") or "failed"
        ratio = f" ({m['seconds'] / ours:.2f}x{extra})" if ours else ""
        return f"{m['seconds']:.2f} s{ratio}"

    for n in sorted(rows):
        r = rows[n]
        t = r.get("tsne_ops", {})
        ours = t.get("seconds")
        ivf = r.get("faiss_ivf")
        rec = f", recall {ivf['recall']:.3f}" if ivf and "recall" in ivf else ""
        first = f"{ours:.2f} s, {t['peak_mib_beyond_input']:.0f} MiB" if ours else timing(t or None, None)
        load = (f"{t['load_average_1min_before']:.1f}, {t['load_average_1min_after']:.1f}"
                if "load_average_1min_before" in t else "not recorded")
        p = t.get("knn_joint_probabilities_seconds")
        g = t.get("sparse_exact_gradient_seconds")
        peak = t.get("pipeline_peak_mib_beyond_input")
        lines.append(f"| {n:,} | {first} | {timing(r.get('sklearn'), ours)} | {timing(r.get('faiss'), ours)} "
                     f"| {timing(ivf, ours, rec)} | {f'{p:.2f} s' if p is not None else '-'} "
                     f"| {f'{g:.2f} s' if g is not None else 'not run'} | {f'{peak:.0f} MiB' if peak is not None else '-'} "
                     f"| {load} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
