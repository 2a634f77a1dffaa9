"""Per-iteration overhead of tsne_ops.TSNE's optimiser outside the gradient kernel.

Times GradientDescent.run (the tf.while_loop with gains and momentum) against
a tf.while_loop that calls only the tsne_gradient op, on digits (N=1797):

    python benchmarks/tsne_overhead.py [--iters 500] [--repeats 3]
"""
import argparse
import json
import time

import numpy as np
import tensorflow as tf

import tsne_ops
from tsne_ops import datasets
from tsne_ops.tsne import GradientDescent, initial_embedding


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    X, _ = datasets.load_digits()
    P = tsne_ops.joint_probabilities(tsne_ops.pairwise_squared_distance(X), 30.0)
    Y0 = initial_embedding(X, 2, "pca", 0) * 1e4  # a spread-out embedding, as mid-run
    opt = GradientDescent(P, Y0, 200.0, 1.0)

    @tf.function
    def kernel_only(p, y, n):
        def body(i, acc):
            g, _ = tsne_ops.tsne_gradient(p, y + acc * 0.0, compute_kl=False)
            return i + 1, acc + g[0, 0]
        return tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), tf.constant(0.0)))[1]

    y = tf.constant(Y0)
    n = tf.constant(a.iters)
    kernel_only(P, y, tf.constant(2))
    opt.run(2, 0.8, 1.0)
    t_kernel, t_opt = [], []
    for _ in range(a.repeats):
        t = time.perf_counter(); kernel_only(P, y, n).numpy(); t_kernel.append(time.perf_counter() - t)
        opt.Y.assign(tf.constant(Y0)); opt.reset()
        t = time.perf_counter(); opt.run(a.iters, 0.8, 1.0); t_opt.append(time.perf_counter() - t)
    k, o = min(t_kernel) / a.iters, min(t_opt) / a.iters
    print(json.dumps({"n": len(X), "iters": a.iters, "kernel_ms_per_iter": round(1e3 * k, 4),
                      "optimizer_ms_per_iter": round(1e3 * o, 4),
                      "overhead_fraction": round((o - k) / o, 4)}))


if __name__ == "__main__":
    main()
