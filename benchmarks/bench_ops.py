"""Benchmark the fused kernels against the alternatives, in one run.

* tsne_gradient (custom op, with and without KL) against
  (a) the same math as a composite of stock TensorFlow ops in the style of the
      original write-up (broadcast N x N x d differences, N x N temporaries), and
  (b) scikit-learn's exact ``_kl_divergence`` (numpy, condensed P),
  for N in {1000, 2000, 5000}, d = 2, float32;
* pairwise_squared_distance against the composite |x|^2 + |y|^2 - 2 x y^T
  (tf.matmul) for N = 5000, D = 784, float32.

Each (method, size) runs in its own subprocess, so its peak memory is its own:
the peak resident set size during the calls minus the resident size just
before the first one (which includes tracing a tf.function, a few MiB) (Linux /proc/self/clear_refs resets the high-water mark). Times are
medians over repeated calls after one warm-up call.

    python benchmarks/bench_ops.py [--repeats 7] [--out benchmarks/results/bench_ops.json]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GRADIENT_METHODS = ["tsne_ops (grad+KL)", "tsne_ops (grad only)", "TF composite", "scikit-learn"]
DISTANCE_METHODS = ["tsne_ops", "TF composite"]


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _measure(fn, repeats):
    # Peak memory counts from before the first call: TensorFlow's allocator
    # keeps the composite's temporaries for reuse after it.
    _reset_peak()
    before = _rss_kib("VmRSS")
    fn()  # warm-up (tracing, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    peak = _rss_kib("VmHWM")
    return {"median_s": statistics.median(times), "min_s": min(times),
            "peak_extra_mib": max(0, peak - before) / 1024.0, "repeats": repeats}


def run_one(kind, method, n, repeats):
    """Runs inside a subprocess: times one method at one size."""
    import numpy as np
    import tensorflow as tf

    import tsne_ops

    rng = np.random.default_rng(0)
    if kind == "gradient":
        x = rng.normal(size=(n, 10)).astype(np.float32)
        p = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(x), 30.0)
        y = tf.constant(rng.normal(size=(n, 2)).astype(np.float32) * 5)
        if method.startswith("tsne_ops"):
            kl = "KL" in method

            def fn():
                g, k = tsne_ops.tsne_gradient(p, y, compute_kl=kl)
                g.numpy()
        elif method == "TF composite":
            eye = tf.eye(n, dtype=tf.float32)

            @tf.function
            def composite(pp, yy):
                diff = yy[:, None, :] - yy[None, :, :]  # N x N x d
                num = (1.0 - eye) / (1.0 + tf.reduce_sum(diff * diff, -1))
                q = num / tf.reduce_sum(num)
                grad = 4.0 * tf.reduce_sum(((pp - q) * num)[:, :, None] * diff, 1)
                eps = 1e-12
                kl = tf.reduce_sum(pp * tf.math.log(tf.maximum(pp, eps) / tf.maximum(q, eps)))
                return grad, kl

            def fn():
                g, _ = composite(p, y)
                g.numpy()
        else:
            from scipy.spatial.distance import squareform
            from sklearn.manifold._t_sne import _kl_divergence

            p_condensed = squareform(p.numpy(), checks=False).astype(np.float32)
            params = y.numpy().ravel()

            def fn():
                _kl_divergence(params, p_condensed, 1.0, n, 2)
        return _measure(fn, repeats)
    if kind == "distance":
        dim = 784
        x = tf.constant(rng.random((n, dim), dtype=np.float32))
        if method == "tsne_ops":
            def fn():
                tsne_ops.pairwise_squared_distance(x).numpy()
        else:
            @tf.function
            def composite(a):
                sq = tf.reduce_sum(a * a, 1)
                return tf.maximum(sq[:, None] + sq[None, :] - 2.0 * tf.matmul(a, a, transpose_b=True), 0.0)

            def fn():
                composite(x).numpy()
        return _measure(fn, repeats)
    raise ValueError(kind)


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    import tsne_ops

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "tsne_ops_build": tsne_ops.build_info(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    ap.add_argument("--distance-n", type=int, default=5000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_ops.json"))
    ap.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        kind, method, n, repeats = args._child
        print(json.dumps(run_one(kind, method, int(n), int(repeats))))
        return

    def child(kind, method, n):
        r = subprocess.run([sys.executable, __file__, "--_child", kind, method, str(n), str(args.repeats)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
        return json.loads(r.stdout.strip().splitlines()[-1])

    results = {"machine": machine(), "gradient": [], "distance": []}
    for n in args.sizes:
        for method in GRADIENT_METHODS:
            r = child("gradient", method, n)
            r.update(method=method, n=n, d=2, dtype="float32")
            results["gradient"].append(r)
            print(f"gradient N={n:5d} {method:22s} {_fmt(r)}", flush=True)
    for method in DISTANCE_METHODS:
        r = child("distance", method, args.distance_n)
        r.update(method=method, n=args.distance_n, dim=784, dtype="float32")
        results["distance"].append(r)
        print(f"distance N={args.distance_n} D=784 {method:14s} {_fmt(r)}", flush=True)

    print()
    print(markdown_table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


def _fmt(r):
    if "error" in r:
        return "ERROR " + r["error"]
    return f"median {r['median_s'] * 1e3:9.2f} ms  peak +{r['peak_extra_mib']:8.1f} MiB"


def markdown_table(results):
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; TensorFlow {m['tensorflow']}; {m['date']}", "",
             "| op | N | method | median ms/call | speed-up of tsne_ops (same KL work) | peak extra MiB |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    by = {(r["n"], r["method"]): r for r in results["gradient"]}
    for r in results["gradient"]:
        ours = by.get((r["n"], "tsne_ops (grad+KL)"), {})
        ratio = ""
        if "median_s" in r and "median_s" in ours and r["method"] != "tsne_ops (grad only)":
            ratio = f"{r['median_s'] / ours['median_s']:.1f}x"
        lines.append(_row("tsne_gradient d=2", r, ratio))
    dist = {r["method"]: r for r in results["distance"]}
    for r in results["distance"]:
        ratio = ""
        if "median_s" in r and "median_s" in dist.get("tsne_ops", {}):
            ratio = f"{r['median_s'] / dist['tsne_ops']['median_s']:.1f}x"
        lines.append(_row("pairwise_squared_distance D=784", r, ratio))
    return "\n".join(lines)


def _row(op, r, ratio):
    if "error" in r:
        return f"| {op} | {r['n']} | {r['method']} | error: {r['error']} | | |"
    return (f"| {op} | {r['n']} | {r['method']} | {r['median_s'] * 1e3:.2f} | {ratio} | "
            f"{r['peak_extra_mib']:.1f} |")


if __name__ == "__main__":
    main()
