"""Peak memory of a large-N fit, stage by stage (issue 16: 1,000,000 points under 12 GiB).

    python benchmarks/bench_memory.py                                   # 100,000 and 250,000
    python benchmarks/bench_memory.py --sizes 20000 --out /tmp/m.json   # smoke test
    python benchmarks/bench_memory.py --table benchmarks/results/bench_memory.json   # markdown

The data, the methods (``--methods``, bench_scaling.py's) and the fit are
bench_scaling.py's: a Gaussian mixture in 50 dimensions (float32), each size
fitted by ``tsne_ops.TSNE()`` in its own fresh interpreter
(benchmarks/fit_process.py, which reports the process's peak resident memory,
VmHWM, imports included). Here the child also runs with stage probes
(``fit_process.py --stages``, :func:`install_probes`): the fit's steps are
wrapped, and at the start and end of each the process's peak resident memory
since the previous mark is read (VmHWM) and reset (``/proc/self/clear_refs``),
so every interval between two marks gets its own peak, whatever allocator
(numpy's, TensorFlow's) holds the memory. Marks (tsne_ops):

  fit                     TSNE.fit_transform
  nearest neighbours      tsne_ops.neighbors.nearest_neighbors (exact op or faiss)
  affinities              tsne_ops.ops.knn_joint_probabilities (calibration and P + P^T)
  initialisation          tsne_ops.tsne.initial_embedding (PCA)
  optimiser set-up        tsne_ops.tsne.GradientDescent.__init__ (P's CSR view)
  optimisation            TSNE._optimize (the iterations)

Each row of the table is one interval: its peak (MiB), the resident memory at
its end, and its seconds. ``nnz`` (P's stored entries) is recorded so that the
per-entry cost can be extrapolated to larger N. Writes --out (JSON).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_knn import gaussian_mixture  # noqa: E402
from bench_scaling import FLOOR_N, LABELS, MEMORY_FLOOR_GIB, METHODS  # noqa: E402
from suite import _reset_peak, _status_kib, machine_info  # noqa: E402


class StageMeter:
    """Peak and current resident memory between consecutive marks.

    ``mark(name)`` closes the interval that started at the previous mark:
    it records VmHWM (the peak since the previous mark, which reset it),
    VmRSS and the seconds, then resets the peak for the next interval."""

    def __init__(self):
        if not _reset_peak():
            raise RuntimeError("cannot reset the peak resident memory (/proc/self/clear_refs): "
                               "stage peaks need Linux >= 4.0")
        self.rows = []
        self.notes = {}
        self._last, self._t = "start", time.perf_counter()

    def mark(self, name):
        now = time.perf_counter()
        self.rows.append({"from": self._last, "to": name,
                          "peak_mib": _status_kib("VmHWM") / 1024.0,
                          "rss_end_mib": _status_kib("VmRSS") / 1024.0,
                          "s": now - self._t})
        _reset_peak()
        self._last, self._t = name, time.perf_counter()


def _wrap(meter, owner, attr, stage, note=None):
    real = getattr(owner, attr)

    def probed(*args, **kwargs):
        meter.mark(f"{stage} start")
        out = real(*args, **kwargs)
        if note is not None:
            meter.notes.update(note(out))
        meter.mark(f"{stage} end")
        return out

    setattr(owner, attr, probed)


def install_probes(library):
    """Wraps the fit's steps of ``library`` with marks; returns the meter
    (None for a library without probes: then only the whole fit's peak)."""
    if library != "tsne_ops":
        return None
    from tsne_ops import neighbors, ops, tsne

    meter = StageMeter()
    _wrap(meter, neighbors, "nearest_neighbors", "nearest neighbours")
    _wrap(meter, ops, "knn_joint_probabilities", "affinities",
          note=lambda p: {"nnz": int(p.values.shape[0]), "p_dtype": p.dtype.name})
    _wrap(meter, tsne, "initial_embedding", "initialisation")
    _wrap(meter, tsne.GradientDescent, "__init__", "optimiser set-up")
    _wrap(meter, tsne.TSNE, "_optimize", "optimisation")
    _wrap(meter, tsne.TSNE, "fit_transform", "fit")
    return meter


def markdown_table(report):
    lines = []
    for r in report["rows"]:
        head = (f"**{r['n']:,} points**, {LABELS[r['method']]}: {r['status']}")
        if r["status"] != "ok":
            lines += [head, ""]
            continue
        nnz = r.get("stage_notes", {}).get("nnz")
        head += (f", fit {r['fit_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB (whole process), "
                 f"{r['rss_before_fit_mib']:.0f} MiB before the fit"
                 + (f"; P has {nnz:,} entries ({nnz / r['n']:.1f} a point)" if nnz else ""))
        lines += [head, "", "| interval | peak MiB | RSS at end MiB | s |", "| --- | ---: | ---: | ---: |"]
        for s in r.get("stages", []):
            lines.append(f"| {s['from']} -> {s['to']} | {s['peak_mib']:.0f} | {s['rss_end_mib']:.0f} "
                         f"| {s['s']:.1f} |")
        lines.append("")
    line = extrapolation(report)
    if line:
        lines.append(line)
    return "\n".join(lines)


def extrapolation(report, to_n=FLOOR_N):
    """The line through the whole-process peaks of the largest two tsne_ops
    sizes run, read at ``to_n`` points (memory grows linearly in N on the
    sparse path: every array is O(N k)); "" with fewer than two sizes."""
    pts = sorted((r["n"], r["peak_rss_mib"]) for r in report["rows"]
                 if r["method"] == "tsne_ops" and r["status"] == "ok")
    if len(pts) < 2 or pts[-1][0] >= to_n:
        return ""
    (n0, m0), (n1, m1) = pts[-2:]
    slope = (m1 - m0) / (n1 - n0)
    at = m1 + slope * (to_n - n1)
    return (f"Linear in N through {n0:,} and {n1:,} points: {slope * 1e5:.0f} MiB per 100,000 points, "
            f"so about {at / 1024:.1f} GiB at {to_n:,} points (an extrapolation; issue 16's floor is "
            f"{MEMORY_FLOOR_GIB:g} GiB).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,250000", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=["tsne_ops"])
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (default 3600)")
    ap.add_argument("--dims", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_memory.json"))
    ap.add_argument("--table", metavar="JSON", help="print the markdown table of a result file and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    bad = [n for n in args.sizes if n < 200]
    if bad:
        ap.error(f"--sizes: each N must be at least 200 (perplexity 30 needs 91 neighbours), got {bad}")
    from fit_process import fit_in_subprocess

    report = {"settings": {"sizes": args.sizes, "methods": args.methods, "timeout_s": args.timeout,
                           "dims": args.dims,
                           "command": "python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])},
              "machine": machine_info(), "rows": []}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"x{n}.npy"
            np.save(data, gaussian_mixture(n, args.dims))
            for m in args.methods:
                lib, params = METHODS[m]
                status, res = fit_in_subprocess(lib, params, data, Path(tmp) / "y.npy", args.timeout,
                                                f"[{m} {n}]", stages=True)
                report["rows"].append({"n": n, "method": m, "status": status, **(res or {})})
            data.unlink()
    report["settings"]["wall_s"] = time.perf_counter() - t_start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + markdown_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
