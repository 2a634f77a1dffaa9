"""Accuracy of the approximate repulsions: FFT and Barnes-Hut against exact (issue 16).

    python benchmarks/bench_approx.py                          # N = 1,000 / 10,000 / 70,000
    python benchmarks/bench_approx.py --sizes 1000,10000 --cache-dir /tmp/approx_cache
    python benchmarks/bench_approx.py --smoke --out /tmp/approx_smoke.json   # a minute; checks the script
    python benchmarks/bench_approx.py --table benchmarks/results/bench_approx.json [--full]   # markdown

For each N (the first N rows of MNIST train + test, PCA to 50 dimensions,
float32) the sparse P is built once by tsne_ops' own ops (exact kNN, k = 90,
perplexity 30: ``affinities.sparse_joint_probabilities``). For each
embedding ``y`` of that N (below) and each method that supports its
dimension (``fft``: d = 1, 2; ``barnes_hut``: d = 2, 3), at the method's
default options:

* ``grad``: ``|g_m - g_exact| / |g_exact|`` (Frobenius norms over all points),
  ``g_m = tsne_gradient(P, y, method=m)`` in float32, as ``TSNE`` runs it, and
  ``g_exact`` from ``method='exact'`` (every pair, tiled) in float64. This is
  the issue's floor: at most ``--floor`` (1e-2).
* ``rep``: the same relative error of the repulsion term ``R / Z`` alone (the
  method's ``fft_repulsion`` / ``barnes_hut_repulsion`` in float32 against the
  exact term). The attraction is computed exactly by every method, and where
  it dominates the gradient (random or early embeddings) ``grad`` hides the
  approximation; ``rep`` does not. The exact term comes from two exact
  float64 gradients: ``g(e) = c (e A - R / Z)`` with ``e`` the exaggeration and
  ``c = 2 (dof + 1) / dof``, so ``R / Z = (g(2) - 2 g(1)) / c``; the script
  checks that identity against ``barnes_hut_repulsion(angle=0)`` (exact) first.
* ``Z``: the relative error of the normaliser Z that the method's KL uses,
  ``exp(KL_m - KL_exact) - 1`` (P sums to 1, so only log Z differs).
* ``|g| / |rep|``: ``|g_exact| / |c R / Z|``, how much of the repulsion the
  attraction cancels. Near convergence the gradient is a small difference of
  two large terms, so ``grad`` is about ``rep`` divided by this ratio: a
  relative gradient error there measures the conditioning as much as the
  approximation.

Yardstick rows ``openTSNE-fft`` (d = 1, 2) and ``openTSNE-bh`` (d = 2, 3):
openTSNE's own repulsion at its defaults on the same embedding (its
``_tsne.estimate_negative_gradient_*``; FFT boxes 1 unit wide, Barnes-Hut
monopoles at theta 0.5), combined with the exact attraction for ``grad``.
They show what the reference implementation's approximation gives on the
same cases; the floor is judged on tsne_ops' methods only.

Embeddings, each in d = 1, 2 and 3:

* ``pca-init``: the PCA initialisation t-SNE starts from
  (``tsne_ops.tsne.initial_embedding``, standard deviation 1e-4).
* ``pca-sd10``: the same scaled to standard deviation 10.
* ``opentsne-it50`` / ``opentsne-it250`` / ``opentsne-final``: a real t-SNE run
  (openTSNE 1.0 defaults, d = 1, 2 FFT, d = 3 Barnes-Hut, ``n_jobs=--threads``,
  random_state 0) after 50 iterations of early exaggeration, at its end (250)
  and after the 500 ordinary iterations that follow. Skipped above
  ``--opentsne-max-n`` (d = 2; default 70,000) and ``--opentsne-max-n-other``
  (d = 1, 3; default 10,000: each openTSNE run at 70,000 takes 5-30 minutes
  here, Barnes-Hut in 3D far more; 10,000 in 3D took 14 minutes on a busy machine).
  With ``--cache-dir`` the runs are kept there and reused.
* ``clusters-sdS``: synthetic clusters, one per MNIST digit (so P's neighbours
  mostly share a cluster), centres standard normal, within-cluster standard
  deviation a third of that, the whole scaled to standard deviation S, for S in
  ``--sds`` (default 1, 5, 20, 50: from a compact embedding to one wider than
  t-SNE's at 70,000 points).

Writes every row with the embedding's extent (widest side) to --out (JSON),
with the machine and the settings, and prints the table with pass/fail.
Accuracy does not depend on the load; the seconds columns are informational.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench_knn import mnist_labels, mnist_pca  # noqa: E402

METHOD_DIMS = {"fft": (1, 2), "barnes_hut": (2, 3)}
PERPLEXITY = 30.0
K = 90
DOF = 1.0


# ------------------------------------------------------------ embeddings ---

def clusters(labels, d, sd, seed=0):
    """One Gaussian cluster per label, overall standard deviation ``sd``."""
    rng = np.random.default_rng(seed + d)
    classes, inv = np.unique(labels, return_inverse=True)
    centres = rng.normal(size=(len(classes), d))
    y = centres[inv] + rng.normal(scale=1.0 / 3.0, size=(len(labels), d))
    y -= y.mean(axis=0)
    return y * (sd / y.std())


def opentsne_snapshots(x, d, threads, cache):
    """openTSNE's default run in d dimensions: the embedding after 50 and
    250 (the end of early exaggeration) and after all 750 iterations."""
    name = f"opentsne_n{len(x)}_d{d}.npz"
    if cache is not None and (Path(cache) / name).exists():
        z = np.load(Path(cache) / name)
        return {k: z[k] for k in z.files}
    import openTSNE

    t0 = time.perf_counter()
    tsne = openTSNE.TSNE(n_components=d, negative_gradient_method="bh" if d == 3 else "fft",
                         n_jobs=threads, random_state=0)
    emb = tsne.prepare_initial(x)
    out = {}
    for label, n_iter, exaggeration, momentum in (
            ("opentsne-it50", 50, tsne.early_exaggeration, tsne.initial_momentum),
            ("opentsne-it250", tsne.early_exaggeration_iter - 50, tsne.early_exaggeration,
             tsne.initial_momentum),
            ("opentsne-final", tsne.n_iter, tsne.exaggeration, tsne.final_momentum)):
        emb = emb.optimize(n_iter=n_iter, exaggeration=exaggeration, momentum=momentum,
                           inplace=True, propagate_exception=True)
        out[label] = np.array(emb, dtype=np.float64)
    print(f"  openTSNE N={len(x)} d={d}: {time.perf_counter() - t0:.0f} s", flush=True)
    if cache is not None:
        np.savez(Path(cache) / name, **out)
    return out


def embeddings(x, labels, d, args, cache):
    """[(name, y float64 [N, d], note)] for this N and d."""
    from tsne_ops.tsne import initial_embedding

    init = np.asarray(initial_embedding(x, d, "pca", 0), np.float64)
    out = [("pca-init", init, None), ("pca-sd10", init * (10.0 / init.std()), None)]
    limit = args.opentsne_max_n if d == 2 else args.opentsne_max_n_other
    if len(x) > limit:
        flag = "--opentsne-max-n" if d == 2 else "--opentsne-max-n-other"
        out.append(("opentsne-*", None, f"skipped: N > {flag} {limit}"))
    else:
        try:
            snaps = opentsne_snapshots(x, d, args.threads, cache)
            out += [(k, v, None) for k, v in snaps.items()]
        except ImportError:
            out.append(("opentsne-*", None, "skipped: openTSNE is not installed"))
    out += [(f"clusters-sd{s:g}", clusters(labels, d, s), None) for s in args.sds]
    return out


# ------------------------------------------------------------ measurement ---

def _cast(p, dtype):
    import tensorflow as tf

    return tf.SparseTensor(p.indices, tf.cast(p.values, dtype), p.dense_shape)


def exact_reference(tsne_ops, p64, y):
    """(gradient, KL, repulsion term R / Z) of the exact method in float64."""
    g1, kl = tsne_ops.tsne_gradient(p64, y, method="exact", dof=DOF)
    g2, _ = tsne_ops.tsne_gradient(p64, y, exaggeration=2.0, method="exact", dof=DOF,
                                   compute_kl=False)
    c = 2.0 * (DOF + 1.0) / DOF
    g1 = g1.numpy()
    return g1, float(kl), (g2.numpy() - 2.0 * g1) / c


def check_reference_identity(tsne_ops, p_small, x_small):
    """R / Z from two exact gradients equals barnes_hut_repulsion(angle=0)'s."""
    import tensorflow as tf

    y = np.random.default_rng(0).normal(scale=3.0, size=(len(x_small), 2))
    _, _, rep = exact_reference(tsne_ops, _cast(p_small, tf.float64), tf.constant(y))
    r, z = tsne_ops.barnes_hut_repulsion(tf.constant(y), dof=DOF, angle=0.0)
    direct = r.numpy() / float(z)
    err = np.linalg.norm(rep - direct) / np.linalg.norm(direct)
    theirs = opentsne_repulsion_terms(y).get("openTSNE-fft")
    if theirs is not None and not rel(theirs[0], direct) < 1e-2:
        raise SystemExit(f"openTSNE's FFT negative gradient is not -R / Z here (relative difference "
                         f"{rel(theirs[0], direct):.2e}): the yardstick rows would be wrong")
    if not err < 1e-9:
        raise SystemExit(f"the exact repulsion term from two gradients differs from "
                         f"barnes_hut_repulsion(angle=0) by {err:.2e}: the formula assumed here "
                         f"(g = c (e A - R / Z)) no longer holds")
    return float(err)


def repulsion_term(tsne_ops, method, y32):
    fn = {"fft": tsne_ops.fft_repulsion, "barnes_hut": tsne_ops.barnes_hut_repulsion}[method]
    r, z = fn(y32, dof=DOF)
    return r.numpy().astype(np.float64) / float(z)


def opentsne_repulsion_terms(y):
    """openTSNE's own repulsion at its defaults on the same embedding, as a
    yardstick: {name: (R / Z, Z)}; FFT for d = 1, 2 (3 nodes, at least 50
    intervals, 1 interval per unit) and Barnes-Hut for d = 2, 3 (theta 0.5).
    Its negative gradient is -R / Z (checked in check_reference_identity)."""
    try:
        from openTSNE import _tsne
        from openTSNE.quad_tree import QuadTree
    except ImportError:
        return {}
    y = np.ascontiguousarray(y, np.float64)
    out = {}
    fft = dict(n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1, dof=DOF)
    if y.shape[1] in (1, 2):
        g = np.zeros_like(y)
        if y.shape[1] == 1:
            z = _tsne.estimate_negative_gradient_fft_1d(y.ravel(), g.ravel(), **fft)
        else:
            z = _tsne.estimate_negative_gradient_fft_2d(y, g, **fft)
        out["openTSNE-fft"] = (-g, float(z))
    if y.shape[1] in (2, 3):
        g = np.zeros_like(y)
        z = _tsne.estimate_negative_gradient_bh(QuadTree(y), y, g, 0.5, dof=DOF, num_threads=1,
                                                pairwise_normalization=True)
        out["openTSNE-bh"] = (-g, float(z))
    return out


def exact_z(p_values, p_indices, y, kl):
    """Z over all pairs from the exact KL: KL = sum p log p - sum p log w + log Z."""
    i, j = p_indices[:, 0], p_indices[:, 1]
    w = 1.0 / (1.0 + np.sum((y[i] - y[j]) ** 2, axis=1) / DOF) ** ((DOF + 1.0) / 2.0)
    return math.exp(kl - float(np.sum(p_values * np.log(p_values))) + float(np.sum(p_values * np.log(w))))


def rel(a, b):
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a))


def measure(tsne_ops, p32, p64, y, methods, p_np):
    import tensorflow as tf

    y64 = tf.constant(y)
    y32 = tf.constant(y.astype(np.float32))
    t0 = time.perf_counter()
    g_ref, kl_ref, rep_ref = exact_reference(tsne_ops, p64, y64)
    exact_s = time.perf_counter() - t0
    c = 2.0 * (DOF + 1.0) / DOF
    ratio = float(np.linalg.norm(g_ref) / (c * np.linalg.norm(rep_ref)))
    rows = []
    for m in methods:
        t0 = time.perf_counter()
        g, kl = tsne_ops.tsne_gradient(p32, y32, method=m, dof=DOF)
        g = g.numpy().astype(np.float64)
        seconds = time.perf_counter() - t0
        rep = repulsion_term(tsne_ops, m, y32)
        rows.append({
            "method": m, "grad_rel_err": rel(g, g_ref), "rep_rel_err": rel(rep, rep_ref),
            "z_rel_err": float(math.expm1(float(kl) - kl_ref)), "grad_over_rep": ratio,
            "kl_exact": kl_ref,
            "kl_method": float(kl), "seconds": seconds, "exact_float64_seconds_2_calls": exact_s,
        })
    # openTSNE's repulsion with the exact attraction: g = c (A - R / Z) = g_exact - c (rep - rep_exact).
    theirs = opentsne_repulsion_terms(y)
    if theirs:
        z_ref = exact_z(*p_np, y, kl_ref)
    for name, (rep, z) in theirs.items():
        rows.append({
            "method": name, "grad_rel_err": float(c * np.linalg.norm(rep - rep_ref) / np.linalg.norm(g_ref)),
            "rep_rel_err": rel(rep, rep_ref), "z_rel_err": z / z_ref - 1.0, "grad_over_rep": ratio,
            "kl_exact": kl_ref, "yardstick": "openTSNE 1.0 defaults, its repulsion with the exact attraction",
        })
    return rows


# ----------------------------------------------------------------- table ---

def verdict(row, floor):
    return "pass" if row["grad_rel_err"] <= floor else "FAIL"


def markdown_table(report):
    floor = report["settings"]["floor"]
    lines = ["| N | d | embedding | extent | method | grad rel. err. | repulsion-term rel. err. "
             f"| Z rel. err. | \\|g\\| / \\|rep\\| | grad <= {floor:g} |",
             "| ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['d']} | {r['embedding']} | | | {r['skipped']} | | | | |")
            continue
        lines.append(f"| {r['n']:,} | {r['d']} | {r['embedding']} | {r['extent']:.3g} | {r['method']} "
                     f"| {r['grad_rel_err']:.2e} | {r['rep_rel_err']:.2e} | {r['z_rel_err']:+.1e} "
                     f"| {r['grad_over_rep']:.3f} | {verdict(r, floor)} |")
    return "\n".join(lines)


def compact_table(report):
    """One row per (N, d, method): the worst case of each error over the embeddings."""
    floor = report["settings"]["floor"]
    groups = {}
    for r in report["rows"]:
        if "method" in r:
            groups.setdefault((r["n"], r["d"], r["method"]), []).append(r)
    lines = [f"| N | d | method | embeddings | grad <= {floor:g} | worst grad rel. err. (embedding, "
             "\\|g\\| / \\|rep\\|) | worst repulsion-term rel. err. (embedding) | worst \\|Z rel. err.\\| |",
             "| ---: | ---: | --- | ---: | ---: | --- | --- | ---: |"]
    for (n, d, m), rows in groups.items():
        g = max(rows, key=lambda r: r["grad_rel_err"])
        rep = max(rows, key=lambda r: r["rep_rel_err"])
        z = max(abs(r["z_rel_err"]) for r in rows)
        passed = sum(r["grad_rel_err"] <= floor for r in rows)
        lines.append(f"| {n:,} | {d} | {m} | {len(rows)} | {passed} of {len(rows)} "
                     f"| {g['grad_rel_err']:.2e} ({g['embedding']}, {g['grad_over_rep']:.3f}) "
                     f"| {rep['rep_rel_err']:.2e} ({rep['embedding']}) | {z:.1e} |")
    return "\n".join(lines)


def summary(report):
    floor = report["settings"]["floor"]
    ok = [r for r in report["rows"] if "method" in r]
    out = {}
    for m in METHOD_DIMS:
        mine = [r for r in ok if r["method"] == m]
        if not mine:
            continue
        worst = max(mine, key=lambda r: r["grad_rel_err"])
        worst_rep = max(mine, key=lambda r: r["rep_rel_err"])
        out[m] = {
            "cases": len(mine), "failed": sum(r["grad_rel_err"] > floor for r in mine),
            "max_grad_rel_err": worst["grad_rel_err"],
            "max_grad_rel_err_at": f"N={worst['n']} d={worst['d']} {worst['embedding']}",
            "max_rep_rel_err": worst_rep["rep_rel_err"],
            "max_rep_rel_err_at": f"N={worst_rep['n']} d={worst_rep['d']} {worst_rep['embedding']}",
            "rep_cases_above_floor": sum(r["rep_rel_err"] > floor for r in mine),
            "failed_where_grad_over_rep_below_0.1": sum(
                r["grad_rel_err"] > floor and r["grad_over_rep"] < 0.1 for r in mine),
        }
    return out


def summary_lines(report):
    floor = report["settings"]["floor"]
    lines = []
    for m, s in report["summary"].items():
        lines.append(
            f"- {m}: gradient relative error <= {floor:g} in {s['cases'] - s['failed']} of "
            f"{s['cases']} cases: **{'pass' if s['failed'] == 0 else 'FAIL'}** (worst "
            f"{s['max_grad_rel_err']:.2e}, {s['max_grad_rel_err_at']}); repulsion term alone: "
            f"worst {s['max_rep_rel_err']:.2e} ({s['max_rep_rel_err_at']}), "
            f"{s['rep_cases_above_floor']} case(s) above {floor:g}; of the gradient failures, "
            f"{s['failed_where_grad_over_rep_below_0.1']} where |g| / |rep| < 0.1")
    return lines


# ------------------------------------------------------------------ main ---

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,70000", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--dims", default="1,2,3", type=lambda s: [int(v) for v in s.split(",")],
                    help="embedding dimensions (default 1,2,3)")
    ap.add_argument("--sds", default="1,5,20,50", type=lambda s: [float(v) for v in s.split(",")],
                    help="standard deviations of the synthetic cluster embeddings")
    ap.add_argument("--opentsne-max-n", type=int, default=70000,
                    help="largest N for the real openTSNE embeddings in d = 2")
    ap.add_argument("--opentsne-max-n-other", type=int, default=10000,
                    help="largest N for the real openTSNE embeddings in d = 1 and 3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--floor", type=float, default=1e-2)
    ap.add_argument("--data-dir", default=None, help="MNIST directory (default: tsne_ops.datasets')")
    ap.add_argument("--cache-dir", default=None,
                    help="keeps the PCA'd MNIST and the openTSNE runs (default: a temp dir)")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_approx.json"))
    ap.add_argument("--smoke", action="store_true",
                    help="N = 500, 1000, sds 1 and 50: checks the script in about a minute")
    ap.add_argument("--table", metavar="JSON",
                    help="print the markdown table of a result file (worst case per N, d, method) and exit")
    ap.add_argument("--full", action="store_true", help="with --table: every row")
    args = ap.parse_args()
    if args.table:
        report = json.loads(Path(args.table).read_text())
        table = markdown_table(report) if args.full else compact_table(report)
        print(table + "\n\n" + "\n".join(summary_lines(report)))
        return
    if args.smoke:
        args.sizes, args.sds = [500, 1000], [1.0, 50.0]
    for n in args.sizes:
        if not K < n <= 70000:
            ap.error(f"--sizes: each N must be in ({K}, 70000] (MNIST train + test), got {n}")
    bad = [d for d in args.dims if d not in (1, 2, 3)]
    if bad:
        ap.error(f"--dims: 1, 2 or 3, got {bad}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tempfile

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tsne_ops
    from suite import machine_info
    from tsne_ops.affinities import sparse_joint_probabilities

    t_start = time.perf_counter()
    report = {"settings": {"sizes": args.sizes, "dims": args.dims, "sds": args.sds, "k": K,
                           "perplexity": PERPLEXITY, "dof": DOF, "threads": args.threads,
                           "floor": args.floor, "opentsne_max_n": args.opentsne_max_n,
                           "opentsne_max_n_other": args.opentsne_max_n_other, "smoke": args.smoke,
                           "command": "python benchmarks/bench_approx.py " + " ".join(sys.argv[1:])},
              "machine": machine_info(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir or tmp)
        cache.mkdir(parents=True, exist_ok=True)
        mnist = mnist_pca(args.data_dir, 50, cache)
        labels_all = mnist_labels(args.data_dir)
        report["settings"]["reference_identity_error"] = check_reference_identity(
            tsne_ops, sparse_joint_probabilities(mnist[:300], PERPLEXITY, K), mnist[:300])
        for n in args.sizes:
            x = np.ascontiguousarray(mnist[:n])
            labels = labels_all[:n]
            p32 = sparse_joint_probabilities(x, PERPLEXITY, K)
            p64 = _cast(p32, tf.float64)
            p_np = (p64.values.numpy(), p64.indices.numpy())
            for d in args.dims:
                methods = [m for m, dims in METHOD_DIMS.items() if d in dims]
                for name, y, note in embeddings(x, labels, d, args, cache):
                    base = {"n": n, "d": d, "embedding": name}
                    if y is None:
                        report["rows"].append({**base, "skipped": note})
                        print(json.dumps(report["rows"][-1]), flush=True)
                        continue
                    base["extent"] = float(np.ptp(y, axis=0).max())
                    base["sd"] = float(y.std())
                    for row in measure(tsne_ops, p32, p64, y, methods, p_np):
                        report["rows"].append({**base, **row})
                        r = report["rows"][-1]
                        print(f"N={n} d={d} {name:16s} extent {r['extent']:9.3g} {r['method']:10s} "
                              f"grad {r['grad_rel_err']:.2e}  rep {r['rep_rel_err']:.2e}  "
                              f"Z {r['z_rel_err']:+.1e}  |g|/|rep| {r['grad_over_rep']:.3f}  "
                              f"{verdict(r, args.floor)}", flush=True)
    report["summary"] = summary(report)
    report["settings"]["wall_s"] = time.perf_counter() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + markdown_table(report) + "\n\n" + "\n".join(summary_lines(report)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
