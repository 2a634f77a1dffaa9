"""All of MNIST: tsne_ops TSNE() against openTSNE, 2D and 3D (the floors of issue 16).

    python benchmarks/bench_large.py                     # N = 70,000: all four runs (about an hour)
    python benchmarks/bench_large.py --only tsne_ops-2d opentsne-2d
    python benchmarks/bench_large.py --n 5000 --out /tmp/large_5000.json   # smoke test, minutes
    python benchmarks/bench_large.py --table benchmarks/results/bench_large.json   # markdown from the JSON

Data: MNIST train + test (70,000 images, [0, 1]), PCA to 50 dimensions
(scikit-learn, random_state 0, fitted on all 70,000), float32, the first
``--n`` rows; saved once to a .npy that every run loads.

Runs (``--only``), each in its own fresh interpreter (benchmarks/fit_process.py),
one after the other, each library with its defaults (random_state 0):

  tsne_ops-2d   tsne_ops.TSNE()
  opentsne-2d   openTSNE.TSNE(n_jobs=2)            (FFT from 10,000 points on)
  tsne_ops-3d   tsne_ops.TSNE(n_components=3)
  opentsne-3d   openTSNE.TSNE(n_components=3, negative_gradient_method='bh', n_jobs=2)

Each reports the wall time of the full fit from the array (import timed on its
own), the peak resident memory of its process (VmHWM, imports included),
the 1-minute load average when it started, and its self-reported KL. Then one
evaluation process scores every embedding against ONE common P (tsne_ops'
exact kNN, k = 90, perplexity 30: ``affinities.sparse_joint_probabilities``)
with Z summed exactly over all pairs (``tsne_loss(P, Y, method='exact')``,
float64), the leave-one-out 10-NN accuracy (``metrics.knn_accuracy``) and
trustworthiness (k = 12, 5,000 random points).

Floors (issue 16), printed and saved with their ratios:
  2D: tsne_ops at least 2x faster than openTSNE (fit from the array); KL no higher
      than openTSNE's + 1%; 10-NN accuracy at least openTSNE's - 0.005; peak
      memory under 4 GiB.
  3D: tsne_ops faster than openTSNE Barnes-Hut; KL no higher.
Timings need a quiet machine: run nothing else meanwhile (the load column
shows whether that held).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_knn import mnist_labels, mnist_pca  # noqa: E402

RUNS = {
    "tsne_ops-2d": ("tsne_ops", {}),
    "opentsne-2d": ("openTSNE", {"n_jobs": 2}),
    "tsne_ops-3d": ("tsne_ops", {"n_components": 3}),
    "opentsne-3d": ("openTSNE", {"n_components": 3, "negative_gradient_method": "bh", "n_jobs": 2}),
}
PERPLEXITY = 30.0
K = 90
GIB = 1024.0


# ------------------------------------------------------------ evaluation ---

def evaluate(data_dir, names, threads, mnist_dir):
    """KL against one common P, 10-NN accuracy, trustworthiness: {name: dict}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    sys.path.insert(0, str(REPO))
    import tsne_ops
    from tsne_ops import metrics
    from tsne_ops.affinities import sparse_joint_probabilities

    d = Path(data_dir)
    x = np.load(d / "X.npy")
    labels = mnist_labels(mnist_dir)[:len(x)]
    t0 = time.perf_counter()
    p = sparse_joint_probabilities(x, PERPLEXITY, K)
    p = tf.SparseTensor(p.indices, tf.cast(p.values, tf.float64), p.dense_shape)
    out = {"_common_p": {"seconds": time.perf_counter() - t0, "nnz": int(p.values.shape[0]),
                         "k": K, "perplexity": PERPLEXITY}}
    for name in names:
        y = np.load(d / f"Y_{name}.npy")
        if not np.all(np.isfinite(y)):
            out[name] = {"error": "the embedding has NaN or Inf"}
            continue
        t0 = time.perf_counter()
        kl = float(tsne_ops.tsne_loss(p, tf.constant(y), method="exact"))
        out[name] = {
            "kl_common_p": kl,
            "knn10_accuracy": metrics.knn_accuracy(y, labels, k=10),
            "trustworthiness_12": metrics.trustworthiness(x, y, n_neighbors=12, max_samples=5000),
            "eval_s": time.perf_counter() - t0,
        }
    return out


# ---------------------------------------------------------------- floors ---

def _ok(r):
    return r is not None and r.get("status") == "ok" and "kl_common_p" in r


def floors(runs):
    """[{floor, verdict, ...}] for the pairs that both ran."""
    out = []
    ours, peer = runs.get("tsne_ops-2d"), runs.get("opentsne-2d")
    if _ok(ours) and _ok(peer):
        speed = peer["fit_s"] / ours["fit_s"]
        kl_ratio = ours["kl_common_p"] / peer["kl_common_p"]
        acc_diff = ours["knn10_accuracy"] - peer["knn10_accuracy"]
        out += [
            {"floor": "2D: tsne_ops at least 2x faster than openTSNE (fit from the array)",
             "ratio": speed, "detail": f"openTSNE {peer['fit_s']:.1f} s / tsne_ops {ours['fit_s']:.1f} s "
             f"= {speed:.2f}x (with imports: {(peer['fit_s'] + peer['import_s']) / (ours['fit_s'] + ours['import_s']):.2f}x)",
             "met": speed >= 2.0},
            {"floor": "2D: KL (common P) no higher than openTSNE's + 1%", "ratio": kl_ratio,
             "detail": f"{ours['kl_common_p']:.4f} vs {peer['kl_common_p']:.4f} (ratio {kl_ratio:.4f})",
             "met": kl_ratio <= 1.01},
            {"floor": "2D: 10-NN accuracy at least openTSNE's - 0.005", "difference": acc_diff,
             "detail": f"{ours['knn10_accuracy']:.4f} vs {peer['knn10_accuracy']:.4f} ({acc_diff:+.4f})",
             "met": acc_diff >= -0.005},
        ]
    if ours is not None and ours.get("status") == "ok":
        gib = ours["peak_rss_mib"] / GIB
        out.append({"floor": "2D: tsne_ops peak memory under 4 GiB", "peak_gib": gib,
                    "detail": f"{gib:.2f} GiB (whole process, imports included)", "met": gib < 4.0})
    ours, peer = runs.get("tsne_ops-3d"), runs.get("opentsne-3d")
    if _ok(ours) and _ok(peer):
        speed = peer["fit_s"] / ours["fit_s"]
        out += [
            {"floor": "3D: tsne_ops faster than openTSNE Barnes-Hut", "ratio": speed,
             "detail": f"openTSNE {peer['fit_s']:.1f} s / tsne_ops {ours['fit_s']:.1f} s = {speed:.2f}x",
             "met": speed > 1.0},
            {"floor": "3D: KL (common P) no higher than openTSNE's",
             "ratio": ours["kl_common_p"] / peer["kl_common_p"],
             "detail": f"{ours['kl_common_p']:.4f} vs {peer['kl_common_p']:.4f}",
             "met": ours["kl_common_p"] <= peer["kl_common_p"]},
        ]
    return out


# ----------------------------------------------------------------- table ---

def _f(v, spec):
    return "" if v is None else format(v, spec)


def markdown_table(report):
    lines = ["| run | call | status | import s | fit s | fit + import s | peak RSS MiB | iters "
             "| KL (own) | KL (common P) | 10-NN acc. | trust. k=12 | load |",
             "| --- | --- | --- |" + " ---: |" * 10]
    for name, r in report["runs"].items():
        lib, params = RUNS[name]
        call = f"{lib}.TSNE({', '.join(f'{k}={v!r}' for k, v in params.items())})"
        ok = r.get("status") == "ok"
        lines.append("| " + " | ".join([
            name, f"`{call}`", r.get("status", ""),
            _f(r.get("import_s"), ".1f"), _f(r.get("fit_s"), ".1f"),
            _f(r["fit_s"] + r["import_s"], ".1f") if ok else "",
            _f(r.get("peak_rss_mib"), ".0f"), _f(r.get("n_iter"), "d"),
            _f(r.get("kl_own"), ".4f"), _f(r.get("kl_common_p"), ".4f"),
            _f(r.get("knn10_accuracy"), ".4f"), _f(r.get("trustworthiness_12"), ".4f"),
            _f(r.get("load_1min_at_start"), ".2f")]) + " |")
    return "\n".join(lines)


def floor_lines(report):
    if not report["floors"]:
        return ["- no floor could be judged: a pair of runs is missing"]
    return [f"- {f['floor']}: **{'met' if f['met'] else 'NOT met'}**: {f['detail']}"
            for f in report["floors"]]


def report_text(report):
    s = report["settings"]
    head = (f"N = {s['n']:,}; machine: {report['machine'].get('cpu_model', '?')}, "
            f"{report['machine'].get('cpus_usable', '?')} cores; tsne_ops commit "
            f"{report['machine'].get('git_commit', '?')}; max 1-minute load at a run's start "
            f"{max([r.get('load_1min_at_start') or 0 for r in report['runs'].values()] or [0]):.2f}")
    return head + "\n\n" + markdown_table(report) + "\n\n" + "\n".join(floor_lines(report))


# ------------------------------------------------------------------ main ---

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=70000, help="first N rows of MNIST train + test (default 70000)")
    ap.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS), help="runs to make")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (default 3600)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the evaluation process")
    ap.add_argument("--data-dir", default=None, help="MNIST directory (default: tsne_ops.datasets')")
    ap.add_argument("--cache-dir", default=None, help="keeps the PCA'd MNIST (default: a temp dir)")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_large.json"))
    ap.add_argument("--table", metavar="JSON", help="print the table and floors of a result file and exit")
    ap.add_argument("--evaluate", help=argparse.SUPPRESS)
    ap.add_argument("--names", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        print(report_text(json.loads(Path(args.table).read_text())))
        return
    if args.evaluate:
        from suite import RESULT_TAG

        print(RESULT_TAG + json.dumps(evaluate(args.evaluate, args.names, args.threads, args.data_dir)),
              flush=True)
        return
    if not K < args.n <= 70000:
        ap.error(f"--n must be in ({K}, 70000], got {args.n}")
    from fit_process import fit_in_subprocess
    from suite import machine_info, run_streaming

    t_start = time.perf_counter()
    report = {"settings": {"n": args.n, "only": args.only, "timeout_s": args.timeout, "k": K,
                           "perplexity": PERPLEXITY,
                           "command": "python benchmarks/bench_large.py " + " ".join(sys.argv[1:])},
              "machine": machine_info(), "runs": {}, "floors": []}
    with tempfile.TemporaryDirectory(prefix="bench_large_") as tmp:
        cache = Path(args.cache_dir or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        x = np.ascontiguousarray(mnist_pca(args.data_dir, 50, cache)[:args.n])
        np.save(Path(tmp) / "X.npy", x)
        print(f"data: {x.shape} {x.dtype}", flush=True)
        for name in args.only:
            lib, params = RUNS[name]
            status, res = fit_in_subprocess(lib, params, Path(tmp) / "X.npy", Path(tmp) / f"Y_{name}.npy",
                                            args.timeout, f"[{name}]")
            report["runs"][name] = {"status": status, **(res or {})}
            print(f"[{name}] {status}" + (f": fit {res['fit_s']:.1f} s" if res else ""), flush=True)
        done = [n for n, r in report["runs"].items() if r["status"] == "ok"]
        if done:
            cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--evaluate", tmp,
                   "--threads", str(args.threads), "--names", *done]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            status, ev = run_streaming(cmd, args.timeout, "[evaluate]")
            report["evaluation_status"] = status
            for name, metrics in (ev or {}).items():
                if name in report["runs"]:
                    report["runs"][name].update(metrics)
            report["common_p"] = (ev or {}).get("_common_p")
    report["floors"] = floors(report["runs"])
    report["settings"]["wall_s"] = time.perf_counter() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + report_text(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
