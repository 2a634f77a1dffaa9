"""The attraction op on P's CSR view against the COO op it replaces (issue 16).

The large-N fit calls the attraction once per iteration with the same P.
``SparseTsneGradientFromRepulsion`` (COO) checks and converts P's indices to
CSR in every call; ``CsrTsneGradientFromRepulsion`` takes the CSR built once
by ``SparseCsr`` and only checks it. Two measurements, one run:

1. ``op``: ms per call of each op at N = 70,000 (``np.random.default_rng(0)
   .normal(size=(70000, 50))`` float32, ``sparse_joint_probabilities`` at
   perplexity 30, k = 90), 2-D y, R and Z from one FFT pass; the calls
   alternate (COO, CSR, COO, ...), medians over ``--repeats``; the outputs
   must be bit-identical. Also the one-off ``SparseCsr`` conversion.
2. ``fit``: the end-to-end time of ``TSNE(method='fft', max_iter=300,
   random_state=0)`` on a 20,000-point Gaussian mixture (``bench_knn.
   gaussian_mixture``, 50-D), ``before`` = the checkout given by
   ``--baseline`` (main), ``after`` = this one, each fit in its own process
   (import excluded), alternating over ``--rounds``; the embeddings must be
   bit-identical. Also the optimiser's share: the ``GradientDescent.run``
   calls after the first (which traces the loop).

    PYTHONPATH=. python benchmarks/bench_csr.py [--only op fit] [--baseline /work/main] \\
        [--repeats 15] [--rounds 1] [--out benchmarks/results/bench_csr.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

TAG = "@@RESULT "

FIT_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
x = np.load(sys.argv[1])
import tsne_ops
from tsne_ops import tsne
# The optimiser's share: each GradientDescent.run call (the first one
# includes tracing the tf.while_loop).
runs, run = [], tsne.GradientDescent.run
def timed(self, *a, **k):
    t = time.perf_counter()
    out = run(self, *a, **k)
    runs.append(time.perf_counter() - t)
    return out
tsne.GradientDescent.run = timed
t = time.perf_counter()
est = tsne_ops.TSNE(method="fft", max_iter=int(sys.argv[2]), random_state=0)
emb = est.fit_transform(x)
fit_s = time.perf_counter() - t
print("@@RESULT " + json.dumps({
    "fit_s": fit_s, "run_calls_s": runs, "first_run_s": runs[0], "later_runs_s": sum(runs[1:]),
    "kl": float(est.kl_divergence_), "n_iter": int(est.n_iter_),
    "embedding_sha256": hashlib.sha256(np.ascontiguousarray(emb).tobytes()).hexdigest(),
    "package": tsne_ops.__file__}))
"""


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def bench_op(n, repeats):
    import tensorflow as tf

    from tsne_ops import ops
    from tsne_ops.affinities import sparse_joint_probabilities

    x = np.random.default_rng(0).normal(size=(n, 50)).astype(np.float32)
    t = time.perf_counter()
    p = sparse_joint_probabilities(x, 30.0)
    p_s = time.perf_counter() - t
    rng = np.random.default_rng(1)
    y = tf.constant((10.0 * rng.normal(size=(1, n, 2))).astype(np.float32))
    one = tf.constant(1.0, tf.float32)
    rep, z = ops._REPULSIONS["fft"].fn(y, one, **ops._REPULSIONS["fft"].options)
    pb = tf.sparse.expand_dims(p, 0)
    conv = []
    for _ in range(3):
        t = time.perf_counter()
        csr = ops._sparse_csr(p)
        conv.append(time.perf_counter() - t)

    def coo(kl):
        return ops._ops.tsne_sparse_tsne_gradient_from_repulsion(
            pb.indices, pb.values, pb.dense_shape, y, rep, z, one, one, compute_kl=kl)

    def csr_call(kl):
        return ops._ops.tsne_csr_tsne_gradient_from_repulsion(
            csr.row_ptr, csr.cols, csr.values, y, rep, z, one, one, compute_kl=kl)

    out = {"n": n, "nnz": int(p.values.shape[0]), "p_s": round(p_s, 2),
           "sparse_csr_once_ms": round(1e3 * statistics.median(conv), 2)}
    for kl in (False, True):
        a, b = coo(kl), csr_call(kl)  # warm-up, and the bits
        identical = (np.array_equal(a[0].numpy(), b[0].numpy())
                     and np.array_equal(a[1].numpy(), b[1].numpy()))
        times = {"coo": [], "csr": []}
        for _ in range(repeats):
            for name, f in (("coo", coo), ("csr", csr_call)):
                t = time.perf_counter()
                f(kl)
                times[name].append(time.perf_counter() - t)
        c, s = statistics.median(times["coo"]), statistics.median(times["csr"])
        out[f"compute_kl={kl}"] = {"coo_ms": round(1e3 * c, 2), "csr_ms": round(1e3 * s, 2),
                                   "coo_over_csr": round(c / s, 2),
                                   "bit_identical": bool(identical)}
    return out


def bench_fit(baseline, n, iters, rounds):
    from bench_knn import gaussian_mixture

    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "x.npy")
        np.save(data, gaussian_mixture(n, 50))
        for _ in range(rounds):
            for name, repo in (("before", baseline), ("after", str(REPO))):
                env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3")
                r = subprocess.run([sys.executable, "-c", FIT_CHILD, data, str(iters)], env=env,
                                   cwd=d, capture_output=True, text=True, check=True)
                line = [s for s in r.stdout.splitlines() if s.startswith(TAG)][-1]
                res = json.loads(line[len(TAG):])
                res["load_average"] = load_average()
                runs[name].append(res)
                print(name, json.dumps(res), flush=True)
    med = {k: {q: statistics.median(r[q] for r in v) for q in ("fit_s", "later_runs_s")}
           for k, v in runs.items()}
    hashes = {r["embedding_sha256"] for v in runs.values() for r in v}
    return {"n": n, "max_iter": iters, "rounds": rounds, "baseline": baseline, "runs": runs,
            "before_s": round(med["before"]["fit_s"], 2),
            "after_s": round(med["after"]["fit_s"], 2),
            "before_over_after": round(med["before"]["fit_s"] / med["after"]["fit_s"], 3),
            "optimizer_after_first_run_before_s": round(med["before"]["later_runs_s"], 2),
            "optimizer_after_first_run_after_s": round(med["after"]["later_runs_s"], 2),
            "optimizer_before_over_after": round(med["before"]["later_runs_s"]
                                                 / med["after"]["later_runs_s"], 3),
            "embeddings_bit_identical": len(hashes) == 1}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=("op", "fit"), default=["op", "fit"])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--baseline", default="/work/main")
    ap.add_argument("--fit-n", type=int, default=20000)
    ap.add_argument("--fit-iters", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/bench_csr.json"))
    a = ap.parse_args()
    report = {"command": " ".join(sys.argv), "cpus": os.cpu_count(),
              "load_average_start": load_average(),
              "note": "shared machine: other jobs ran alongside; compare the ratios"}
    if "op" in a.only:
        report["op"] = bench_op(a.n, a.repeats)
        report["load_average_after_op"] = load_average()
        print(json.dumps(report["op"]), flush=True)
    if "fit" in a.only:
        report["fit"] = bench_fit(a.baseline, a.fit_n, a.fit_iters, a.rounds)
    report["load_average_end"] = load_average()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "fit"}, indent=1))
    if "fit" in report:
        print(json.dumps({k: v for k, v in report["fit"].items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
