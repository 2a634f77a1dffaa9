"""One Barnes-Hut repulsion call, before and after a kernel change (issue 16, the 3D floor).

    python benchmarks/bench_barnes_hut.py --baseline /work/main/tsne_ops --cache-dir /tmp/bl_cache
    python benchmarks/bench_barnes_hut.py --smoke --out /tmp/bh_smoke.json   # seconds; checks the script

Times ``barnes_hut_repulsion(y, dof, angle=0.5)`` of the pybind11 module
``_tsne_kernels`` (the kernel the TensorFlow op runs too) from two builds: the
one next to this checkout (``after``) and the one in ``--baseline`` (a
``tsne_ops`` directory holding another build's ``_tsne_kernels*.so``,
``before``). Each (build, case) runs in its own fresh process with the same
thread count (``--threads``); the time is the fastest of ``--repeats`` calls
after one warm-up. Only ratios of times measured in one run mean anything.

Accuracy of each build's result, against exact sums in float64:

* ``r_rel_err``: ``|R - R_exact| / |R_exact|`` (Frobenius norm) over
  ``--rows`` random rows, ``R_exact`` summed here in numpy over every j != i.
  That is the relative error the tests bound (the issue's floor is 1e-2).
* ``z_rel_err``: ``Z / Z_exact - 1``, with ``Z_exact`` from the exact tiled
  repulsion of ``sparse_tsne_gradient``: on a ring P (p = 1 / (2 N) between
  i and i + 1) its KL is ``sum p log(p Z / w)``, and so is the KL of
  ``sparse_tsne_gradient_from_repulsion`` given this Z, so the two KLs differ
  by ``log(Z / Z_exact)``.

Embeddings (float64):

* ``mix3-N`` / ``mix2-N``: a Gaussian mixture of 10 clusters of different
  widths, scaled so that its widest side is ``--width`` (136: about what
  t-SNE gives MNIST 70,000 in 3D) times (N / 70,000)^(1/d).
* ``opentsne2-70000`` / ``opentsne3-10000``: openTSNE's final embeddings of
  MNIST (PCA 50), from ``--cache-dir`` (``opentsne_n70000_d2.npz``,
  ``opentsne_n10000_d3.npz`` as benchmarks/bench_approx.py writes them), when
  there.

Writes everything to --out (JSON) and prints a markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHILD = r"""
import glob, importlib.util, sys, time
import numpy as np
so = glob.glob(sys.argv[1] + "/_tsne_kernels*.so")[0]
spec = importlib.util.spec_from_file_location("_tsne_kernels", so)
tk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tk)
tk.set_num_threads(int(sys.argv[2]))
y = np.load(sys.argv[3])
dof, angle, repeats = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
tk.barnes_hut_repulsion(y, dof=dof, angle=angle)
times = []
for _ in range(repeats):
    t = time.perf_counter()
    r, z = tk.barnes_hut_repulsion(y, dof=dof, angle=angle)
    times.append(time.perf_counter() - t)
np.savez(sys.argv[7], r=r, z=z, times=np.array(times), isa=tk.cpu_isa())
"""


def load_kernels(directory):
    import glob
    import importlib.util

    so = glob.glob(str(Path(directory) / "_tsne_kernels*.so"))
    if not so:
        raise SystemExit(f"no _tsne_kernels*.so in {directory}")
    spec = importlib.util.spec_from_file_location("_tsne_kernels", so[0])
    tk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tk)
    return tk


def mixture(n, d, width, seed=0):
    rng = np.random.default_rng(seed + d)
    labels = rng.integers(0, 10, n)
    centres = rng.normal(size=(10, d)) * 4
    y = centres[labels] + rng.normal(size=(n, d)) * (0.4 + 0.1 * labels[:, None])
    y -= y.min(axis=0)
    return y * (width / y.max())


def cases(args):
    out = []
    for n in args.sizes:
        for d in args.dims:
            out.append((f"mix{d}-{n}", mixture(n, d, args.width * (n / 70000) ** (1 / d))))
    if args.cache_dir:
        for name, file, n in (("opentsne2-70000", "opentsne_n70000_d2.npz", 70000),
                              ("opentsne3-10000", "opentsne_n10000_d3.npz", 10000)):
            path = Path(args.cache_dir) / file
            if path.exists() and n <= max(args.sizes):
                out.append((name, np.load(path)["opentsne-final"].astype(np.float64)))
    return out


def exact_rows(y, rows, dof):
    """R_i = sum_{j != i} w_ij u_ij (y_i - y_j) for i in rows, float64."""
    r = np.empty((len(rows), y.shape[1]))
    for a in range(0, len(rows), 64):
        rr = rows[a:a + 64]
        diff = y[rr, None, :] - y[None, :, :]
        u = 1.0 / (1.0 + (diff ** 2).sum(-1) / dof)
        w = u ** ((dof + 1.0) / 2.0)
        w[np.arange(len(rr)), rr] = 0.0
        r[a:a + 64] = ((w * u)[..., None] * diff).sum(1)
    return r


def ring_p(n):
    """Canonical COO of a symmetric ring P (i ~ i + 1 mod n), p = 1 / (2 n)."""
    i = np.arange(n)
    rows = np.concatenate([i, i])
    cols = np.concatenate([(i + 1) % n, (i - 1) % n])
    order = np.lexsort((cols, rows))
    idx = np.stack([rows[order], cols[order]], 1).astype(np.int64)
    return idx, np.full(2 * n, 0.5 / n)


def ring_kl(tk, y, dof, r=None, z=None):
    """KL of the ring P: with the exact repulsion, or with (r, z) given."""
    idx, pv = ring_p(len(y))
    if r is None:
        return float(tk.sparse_tsne_gradient(idx, pv, y, dof=dof)[1])
    return float(tk.sparse_tsne_gradient_from_repulsion(idx, pv, y, r, np.asarray(z), dof=dof)[1])


def run_child(build_dir, y_path, args, dof, out_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", CHILD, str(build_dir), str(args.threads), str(y_path),
                    str(dof), str(args.angle), str(args.repeats), str(out_path)],
                   env=env, check=True)
    with np.load(out_path) as f:
        return f["r"], float(f["z"]), f["times"].tolist(), str(f["isa"])


def markdown(report):
    lines = ["| case | N | d | dof | before s | after s | speed-up | R err before | R err after "
             "| Z err before | Z err after |", "|" + "---|" * 11]
    for r in report["rows"]:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['case']} | {r['n']} | {r['d']} | {r['dof']:g} | {b['time_s']:.3f} | "
                     f"{a['time_s']:.3f} | {b['time_s'] / a['time_s']:.1f}x | {b['r_rel_err']:.1e} | "
                     f"{a['r_rel_err']:.1e} | {b['z_rel_err']:+.1e} | {a['z_rel_err']:+.1e} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=False, default="/work/main/tsne_ops",
                    help="tsne_ops directory of the 'before' build")
    ap.add_argument("--after", default=str(REPO / "tsne_ops"), help="tsne_ops directory of the 'after' build")
    ap.add_argument("--sizes", default="1000,10000,70000", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--dims", default="2,3", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--dofs", default="1", type=lambda s: [float(v) for v in s.split(",")],
                    help="degrees of freedom (timed at the largest N only when not 1)")
    ap.add_argument("--width", type=float, default=136.0)
    ap.add_argument("--angle", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_barnes_hut.json"))
    ap.add_argument("--smoke", action="store_true", help="N = 2000, one repeat")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.repeats, args.rows = [2000], 1, 200
    sys.path.insert(0, str(HERE))
    from suite import machine_info

    tk = load_kernels(args.after)
    report = {"settings": {k: v for k, v in vars(args).items()},
              "command": "python benchmarks/bench_barnes_hut.py " + " ".join(sys.argv[1:]),
              "machine": machine_info(), "rows": []}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, y in cases(args):
            n, d = y.shape
            y_path = Path(tmp) / "y.npy"
            np.save(y_path, y)
            rows = np.random.default_rng(1).choice(n, min(args.rows, n), replace=False)
            for dof in args.dofs:
                if dof != 1.0 and n != max(args.sizes):
                    continue
                r_exact = exact_rows(y, rows, dof)
                kl_exact = ring_kl(tk, y, dof)
                row = {"case": name, "n": n, "d": d, "dof": dof,
                       "extent": float(np.ptp(y, axis=0).max())}
                for label, build in (("before", args.baseline), ("after", args.after)):
                    r, z, times, isa = run_child(build, y_path, args, dof, Path(tmp) / "out.npz")
                    row[label] = {
                        "time_s": min(times), "times_s": times, "isa": isa,
                        "r_rel_err": float(np.linalg.norm(r[rows] - r_exact) / np.linalg.norm(r_exact)),
                        "z_rel_err": float(np.expm1(ring_kl(tk, y, dof, r, z) - kl_exact))}
                report["rows"].append(row)
                b, a = row["before"], row["after"]
                print(f"{name:16s} dof {dof:g}: before {b['time_s']:.3f} s  after {a['time_s']:.3f} s "
                      f"({b['time_s'] / a['time_s']:.1f}x)  R err {b['r_rel_err']:.1e} -> "
                      f"{a['r_rel_err']:.1e}  Z err {b['z_rel_err']:+.1e} -> {a['z_rel_err']:+.1e}",
                      flush=True)
    report["wall_s"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + markdown(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
