"""CPU micro-benchmarks of the tsne_ops kernels through the TensorFlow ops.

Times each op (median of repeated calls after a warm-up) next to a baseline
measured in the same process, and reports for the t-SNE gradient the pair
interactions per second and the share of this CPU's measured FMA peak.

    python benchmarks/micro_cpu.py [--repeats 15] [--only gradient,distance,affinity,peak]

FMA peak: a small C++ loop (12 independent chains of 256-bit FMAs, compiled on
the fly with g++ -O2 -mavx2 -mfma, one std::thread per core) is timed and its
GFLOP/s (an FMA counts as 2 flops) is the measured peak for float32; float64
is half of it (4 lanes instead of 8). Without g++ the peak is left out.

Flop count per pair for the gradient (d = 2, dof = 1, no KL), stated for the
textbook per-ordered-pair formulation, FMA = 2 flops, the reciprocal = 1:
    2 (differences) + 3 (squared distance) + 1 (1 + r^2) + 1 (reciprocal)
    + 2 (p u, u^2) + 8 (attractive and repulsive FMAs, 2 dims) + 1 (Z)
  = 18 flops per ordered pair (i, j), N (N - 1) ordered pairs per call.
The kernel computes each unordered pair once, so it executes fewer flops than
this; the "share of peak" is therefore an effective figure.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FLOPS_PER_PAIR = 18

PEAK_SRC = r"""
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>
static double run(long iters) {
  __m256 a[12];
  for (int k = 0; k < 12; ++k) a[k] = _mm256_set1_ps(1.0f + k * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) a[k] = _mm256_fmadd_ps(a[k], m, c);
  }
  __m256 s = a[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, a[k]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}
int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  const long iters = 200000000L / 12;
  run(iters / 10);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    std::vector<double> sink(threads);
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { sink[t] = run(iters); });
    for (auto& t : ts) t.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gflops = threads * iters * 12.0 * 8 * 2 / s / 1e9;
    if (gflops > best) best = gflops;
    if (sink[0] == 12345) printf("x");
  }
  printf("%.3f\n", best);
}
"""

def fma_peak_gflops(threads):
    """Measured float32 FMA peak (GFLOP/s) over `threads` threads, or None."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "peak.cc"
        exe = Path(tmp) / "peak"
        src.write_text(PEAK_SRC)
        r = subprocess.run([cxx, "-O2", "-mavx2", "-mfma", "-pthread", str(src), "-o", str(exe)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        out = subprocess.run([str(exe), str(threads)], capture_output=True, text=True)
        try:
            return float(out.stdout.strip())
        except ValueError:
            return None

def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

def fmt_ms(s):
    return f"{s * 1e3:9.3f} ms"

def bench_gradient(repeats, peak):
    import numpy as np
    import tensorflow as tf

    import tsne_ops

    print("\n== tsne_gradient (fused op) vs TF composite ==")
    print(f"   flops/ordered pair assumed: {FLOPS_PER_PAIR} (d=2, dof=1, no KL; see docstring)")
    rng = np.random.default_rng(0)
    for n in (1797, 5000):
        x = rng.normal(size=(n, 10))
        p64 = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(x), 30.0)
        for dtype in (np.float32, np.float64):
            p = tf.constant(p64.numpy().astype(dtype))
            for d in (2, 3):
                y = tf.constant((rng.normal(size=(n, d)) * 5).astype(dtype))
                res = {}
                for kl in (False, True):
                    def fn(kl=kl):
                        g, _ = tsne_ops.tsne_gradient(p, y, compute_kl=kl)
                        g.numpy()
                    res[kl] = median_time(fn, repeats)
                for dof in (0.5,):
                    def fn_dof(dof=dof):
                        g, _ = tsne_ops.tsne_gradient(p, y, dof=dof, compute_kl=False)
                        g.numpy()
                    res["dof"] = median_time(fn_dof, repeats)
                pairs = n * (n - 1)
                gps = pairs / res[False] / 1e9
                line = (f"N={n:5d} d={d} {np.dtype(dtype).name:7s} grad {fmt_ms(res[False])} "
                        f"({gps:5.2f} Gpairs/s)  +KL {fmt_ms(res[True])} (x{res[True] / res[False]:.2f})"
                        f"  dof=0.5 {fmt_ms(res['dof'])}")
                if peak and d == 2:
                    pk = peak if dtype == np.float32 else peak / 2
                    line += f"  {100 * gps * FLOPS_PER_PAIR / pk:5.1f}% of {pk:.0f} GFLOP/s"
                print(line, flush=True)
        if n == 1797:
            # Composite baseline (dense N x N x d temporaries), float32 d=2.
            p32 = tf.constant(p64.numpy().astype(np.float32))
            y = tf.constant((rng.normal(size=(n, 2)) * 5).astype(np.float32))
            eye = tf.eye(n, dtype=tf.float32)

            @tf.function
            def composite(pp, yy):
                diff = yy[:, None, :] - yy[None, :, :]
                num = (1.0 - eye) / (1.0 + tf.reduce_sum(diff * diff, -1))
                q = num / tf.reduce_sum(num)
                return 4.0 * tf.reduce_sum(((pp - q) * num)[:, :, None] * diff, 1)

            t = median_time(lambda: composite(p32, y).numpy(), max(3, repeats // 3))
            print(f"N={n:5d} d=2 float32 TF composite grad {fmt_ms(t)} "
                  f"({n * (n - 1) / t / 1e9:5.2f} Gpairs/s)", flush=True)

def bench_gradient_loop(repeats, peak, iters=50):
    """The plain gradient inside a tf.while_loop (as TSNE runs it), so the time
    per call excludes Python and eager dispatch."""
    import numpy as np
    import tensorflow as tf

    import tsne_ops

    print(f"\n== tsne_gradient in a tf.while_loop of {iters} calls (float32, d=2, dof=1, no KL) ==")
    rng = np.random.default_rng(0)

    @tf.function
    def loop(p, y, n):
        def body(i, acc):
            g, _ = tsne_ops.tsne_gradient(p, y + acc * 0.0, compute_kl=False)
            return i + 1, acc + g[0, 0]
        return tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), tf.constant(0.0)))[1]

    for n in (1797, 5000):
        x = rng.normal(size=(n, 10)).astype(np.float32)
        p = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(x), 30.0)
        y = tf.constant((rng.normal(size=(n, 2)) * 5).astype(np.float32))
        count = tf.constant(iters)
        t = median_time(lambda: loop(p, y, count).numpy(), max(3, repeats // 3)) / iters
        gps = n * (n - 1) / t / 1e9
        line = f"N={n:5d} {fmt_ms(t)} per call ({gps:5.2f} Gpairs/s)"
        if peak:
            line += f"  {gps * FLOPS_PER_PAIR:6.1f} GFLOP/s = {100 * gps * FLOPS_PER_PAIR / peak:5.1f}% of {peak:.0f} GFLOP/s"
        # Bytes of P streamed per call, for the memory-bound view.
        line += f"  P read at {n * n * 4 / t / 1e9:5.1f} GB/s"
        print(line, flush=True)


def bench_distance(repeats):
    import numpy as np
    import tensorflow as tf

    import tsne_ops

    print("\n== pairwise_squared_distance vs TF composite |x|^2+|y|^2-2xy^T (tf.matmul) ==")
    rng = np.random.default_rng(0)

    @tf.function
    def composite_self(a):
        sq = tf.reduce_sum(a * a, 1)
        return tf.maximum(sq[:, None] + sq[None, :] - 2.0 * tf.matmul(a, a, transpose_b=True), 0.0)

    @tf.function
    def composite_cross(a, b):
        sa = tf.reduce_sum(a * a, 1)
        sb = tf.reduce_sum(b * b, 1)
        return tf.maximum(sa[:, None] + sb[None, :] - 2.0 * tf.matmul(a, b, transpose_b=True), 0.0)

    for n, m, dim, dtype in ((5000, None, 784, np.float32), (1797, None, 64, np.float32),
                             (5000, 2000, 784, np.float32), (2000, None, 784, np.float64)):
        x = tf.constant(rng.random((n, dim)).astype(dtype))
        reps = max(3, repeats // 3)
        if m is None:
            t_ops = median_time(lambda: tsne_ops.pairwise_squared_distance(x).numpy(), reps)
            t_tf = median_time(lambda: composite_self(x).numpy(), reps)
            what = f"self  N={n} D={dim}"
            flops = 2.0 * n * n * dim
        else:
            y = tf.constant(rng.random((m, dim)).astype(dtype))
            t_ops = median_time(lambda: tsne_ops.pairwise_squared_distance(x, y).numpy(), reps)
            t_tf = median_time(lambda: composite_cross(x, y).numpy(), reps)
            what = f"cross N={n} M={m} D={dim}"
            flops = 2.0 * n * m * dim
        print(f"{what:26s} {np.dtype(dtype).name:7s} tsne_ops {fmt_ms(t_ops)}  TF composite "
              f"{fmt_ms(t_tf)}  speed-up x{t_tf / t_ops:.2f}  "
              f"({flops / t_ops / 1e9:.0f} GFLOP/s as a full GEMM)", flush=True)

def bench_affinity(repeats):
    import numpy as np
    import tensorflow as tf

    import tsne_ops

    print("\n== perplexity_affinities / joint_probabilities (perplexity 30) ==")
    try:
        from sklearn.manifold._t_sne import _joint_probabilities
    except ImportError:
        _joint_probabilities = None
    rng = np.random.default_rng(0)
    for n, dtype in ((1797, np.float32), (1797, np.float64), (5000, np.float32)):
        try:
            from sklearn.datasets import load_digits

            base = load_digits().data.astype(np.float64) if n == 1797 else None
        except Exception:
            base = None
        if base is None:
            base = rng.normal(size=(n, 50))
        d2 = tsne_ops.pairwise_squared_distance(tf.constant(base.astype(dtype)))
        reps = max(3, repeats // 3)
        t_j = median_time(lambda: tsne_ops.joint_probabilities(d2, 30.0).numpy(), reps)
        t_c = median_time(lambda: tsne_ops.perplexity_affinities(d2, 30.0)[0].numpy(), reps)
        line = (f"N={n:5d} {np.dtype(dtype).name:7s} perplexity_affinities {fmt_ms(t_c)}  "
                f"joint_probabilities {fmt_ms(t_j)}")
        if _joint_probabilities is not None and dtype == np.float32:
            dn = d2.numpy()
            t_sk = median_time(lambda: _joint_probabilities(dn, 30.0, 0), max(1, reps // 3))
            line += f"  sklearn _joint_probabilities {fmt_ms(t_sk)}"
        print(line, flush=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--only", default="peak,gradient,distance,affinity",
                    help="comma-separated sections; 'loop' = only the in-graph gradient timing")
    args = ap.parse_args()
    only = set(args.only.split(","))
    import tensorflow as tf

    import tsne_ops

    cores = os.cpu_count()
    print(f"CPU cores {cores}, TensorFlow {tf.__version__}, tsne_ops build {tsne_ops.build_info()}")
    peak = None
    if "peak" in only or "gradient" in only or "loop" in only:
        peak = fma_peak_gflops(cores)
        one = fma_peak_gflops(1)
        if peak:
            print(f"measured float32 FMA peak (256-bit, g++ loop): {one:.1f} GFLOP/s on 1 core, "
                  f"{peak:.1f} GFLOP/s on {cores} cores; float64: half")
    if "gradient" in only:
        bench_gradient(args.repeats, peak)
        bench_gradient_loop(args.repeats, peak)
    if "loop" in only and "gradient" not in only:
        bench_gradient_loop(args.repeats, peak)
    if "distance" in only:
        bench_distance(args.repeats)
    if "affinity" in only:
        bench_affinity(args.repeats)

if __name__ == "__main__":
    sys.exit(main())
