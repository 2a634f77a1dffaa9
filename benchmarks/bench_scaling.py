"""Scaling to a million points: tsne_ops TSNE() against openTSNE FFT (issue 16).

    python benchmarks/bench_scaling.py                        # 100k, 250k, 500k, 1M (hours)
    python benchmarks/bench_scaling.py --sizes 100000,250000 --opentsne-max 250000
    python benchmarks/bench_scaling.py --sizes 2000,4000 --out /tmp/s.json --plot /tmp/s.png   # smoke test
    python benchmarks/bench_scaling.py --table benchmarks/results/bench_scaling.json          # markdown

Data: synthetic Gaussian mixtures in 50 dimensions, float32
(``bench_knn.gaussian_mixture``: 20 components, centres N(0, 4^2), scales
0.5-1.5, seed 0), one per size, saved once to a .npy.

Methods (``--methods``), each size and method in its own fresh interpreter
(benchmarks/fit_process.py), one after the other, with a ``--timeout``:

  tsne_ops       tsne_ops.TSNE()
  opentsne-fft   openTSNE.TSNE(negative_gradient_method='fft', n_jobs=2);
                 skipped above --opentsne-max points (default 250,000)

Each row: wall time of the fit from the array (import on its own), peak
resident memory of the process (VmHWM, imports included), the library's
own KL and the 1-minute load average at the start. A run killed by the
timeout is a row too. Floor (issue 16): 1,000,000 points finish with peak
memory under 12 GiB. Writes --out (JSON) and --plot (log-log time against N,
every method).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_knn import gaussian_mixture  # noqa: E402

METHODS = {
    "tsne_ops": ("tsne_ops", {}),
    "opentsne-fft": ("openTSNE", {"negative_gradient_method": "fft", "n_jobs": 2}),
}
LABELS = {"tsne_ops": "tsne_ops TSNE()", "opentsne-fft": "openTSNE FFT (n_jobs=2)"}
MEMORY_FLOOR_GIB = 12.0
FLOOR_N = 1_000_000


def floors(rows):
    out = []
    big = [r for r in rows if r["method"] == "tsne_ops" and r["n"] >= FLOOR_N]
    for r in big:
        ok = r["status"] == "ok"
        gib = r["peak_rss_mib"] / 1024.0 if ok else None
        out.append({"floor": f"tsne_ops finishes N = {r['n']:,} with peak memory under "
                             f"{MEMORY_FLOOR_GIB:g} GiB",
                    "met": bool(ok and gib < MEMORY_FLOOR_GIB),
                    "detail": f"{r['fit_s']:.0f} s, {gib:.2f} GiB" if ok else r["status"]})
    return out


def speedups(rows):
    by = {}
    for r in rows:
        if r["status"] == "ok":
            by.setdefault(r["n"], {})[r["method"]] = r["fit_s"]
    return {str(n): t["opentsne-fft"] / t["tsne_ops"] for n, t in by.items()
            if "tsne_ops" in t and "opentsne-fft" in t}


def _f(v, spec):
    return "" if v is None else format(v, spec)


def markdown_table(report):
    lines = ["| N | method | status | import s | fit s | peak RSS MiB | iters | KL (own) "
             "| openTSNE s / tsne_ops s | load |",
             "| ---: | --- | --- |" + " ---: |" * 7]
    sp = report.get("speedup_opentsne_over_tsne_ops", {})
    for r in report["rows"]:
        lines.append("| " + " | ".join([
            f"{r['n']:,}", LABELS[r["method"]], r["status"], _f(r.get("import_s"), ".1f"),
            _f(r.get("fit_s"), ".1f"), _f(r.get("peak_rss_mib"), ".0f"), _f(r.get("n_iter"), "d"),
            _f(r.get("kl_own"), ".4f"),
            _f(sp.get(str(r["n"])), ".2f") if r["method"] == "tsne_ops" else "",
            _f(r.get("load_1min_at_start"), ".2f")]) + " |")
    fl = [f"- {f['floor']}: **{'met' if f['met'] else 'NOT met'}**: {f['detail']}"
          for f in report["floors"]] or [f"- no tsne_ops run at N >= {FLOOR_N:,}: the memory floor is not judged"]
    return "\n".join(lines) + "\n\n" + "\n".join(fl)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(METHODS):
        pts = sorted((r["n"], r["fit_s"]) for r in report["rows"] if r["method"] == m and r["status"] == "ok")
        if pts:
            ax.plot(*zip(*pts), marker="os"[i % 2], color=f"C{i}", label=LABELS[m])
        cut = [r["n"] for r in report["rows"] if r["method"] == m and r["status"].startswith("timeout")]
        if cut:
            t = report["settings"]["timeout_s"]
            ax.plot(cut, [t] * len(cut), linestyle="none", marker="x", color=f"C{i}", markersize=9,
                    label=f"{LABELS[m]}: killed at the timeout")
    ns = sorted({r["n"] for r in report["rows"]})
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ns:
        ax.xaxis.set_major_locator(FixedLocator(ns))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlim(min(ns) / 1.3, max(ns) * 1.3)
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("N (points, 50-dimensional Gaussian mixture)")
    ax.set_ylabel("fit time from the array, s")
    ax.set_title(f"t-SNE time against N (machine load up to {report.get('max_load', 0):.1f})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,250000,500000,1000000",
                    type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--opentsne-max", type=int, default=250000,
                    help="largest N for openTSNE (default 250000)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run (default 3600)")
    ap.add_argument("--dims", type=int, default=50)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_scaling.json"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "scaling_time_vs_n.png"))
    ap.add_argument("--table", metavar="JSON", help="print the markdown table of a result file and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    bad = [n for n in args.sizes if n < 200]
    if bad:
        ap.error(f"--sizes: each N must be at least 200 (perplexity 30 needs 91 neighbours), got {bad}")
    from fit_process import fit_in_subprocess
    from suite import machine_info

    t_start = time.perf_counter()
    report = {"settings": {"sizes": args.sizes, "methods": args.methods, "opentsne_max": args.opentsne_max,
                           "timeout_s": args.timeout, "dims": args.dims,
                           "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:])},
              "machine": machine_info(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        for n in args.sizes:
            data = Path(tmp) / f"x{n}.npy"
            np.save(data, gaussian_mixture(n, args.dims))
            for m in args.methods:
                row = {"n": n, "method": m}
                if m == "opentsne-fft" and n > args.opentsne_max:
                    row["status"] = f"skipped: N > --opentsne-max {args.opentsne_max}"
                else:
                    lib, params = METHODS[m]
                    status, res = fit_in_subprocess(lib, params, data, Path(tmp) / "y.npy", args.timeout,
                                                    f"[{m} {n}]")
                    row.update(status=status, **(res or {}))
                report["rows"].append(row)
                print(f"[{m} {n}] {row['status']}" + (f": fit {row['fit_s']:.1f} s, peak "
                      f"{row['peak_rss_mib']:.0f} MiB" if row["status"] == "ok" else ""), flush=True)
            data.unlink()
    report["speedup_opentsne_over_tsne_ops"] = speedups(report["rows"])
    report["floors"] = floors(report["rows"])
    report["max_load"] = max([r.get("load_1min_at_start") or 0.0 for r in report["rows"]] or [0.0])
    report["settings"]["wall_s"] = time.perf_counter() - t_start
    report["settings"]["plot"] = args.plot
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    try:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(report, args.plot)
    except Exception as e:  # the JSON matters more than the plot
        print(f"plot failed: {e}", flush=True)
    print("\n" + markdown_table(report))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
