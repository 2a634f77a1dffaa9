"""What a user waits for at small N: a fresh process that imports the library
and fits scikit-learn's digits, import included (issue 16).

    python benchmarks/bench_startup.py                 # 3 rounds (about 4 minutes)
    python benchmarks/bench_startup.py --repeats 5 --out /tmp/startup.json

Each run is a new Python process executing a three-line script (import the
library, load digits, fit); its wall time is measured from outside, from the
start of the interpreter to its exit, so the import (TensorFlow's 5-8 s, if a
library imports it) counts. The methods alternate within every round (round 1:
all methods, round 2: all methods, ...) so that a change of load on a shared
machine hits them alike; the median over rounds is reported.

Methods, each with its library's defaults on ``load_digits().data`` (1797 x
64, float64), random_state 0:

  tsne_ops       tsne_ops.TSNE()  (exact; runs without TensorFlow on a numpy X)
  opentsne-bh    openTSNE.TSNE(negative_gradient_method='bh', n_jobs=2)
  sklearn-exact  sklearn.manifold.TSNE(method='exact')
  sklearn-bh     sklearn.manifold.TSNE(method='barnes_hut', n_jobs=2)

Every embedding is scored against one common P (scikit-learn's exact
``_joint_probabilities``, perplexity 30, Z over all pairs: benchmarks/suite.py's
``reference_p`` and ``exact_kl``). The floor: tsne_ops has the smallest median
wall time, with a KL no higher than scikit-learn exact's. Writes
benchmarks/results/bench_startup.json.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import suite  # noqa: E402  (reference_p, exact_kl, machine_info: one home)

_PRELUDE = "import json, sys, time\n"
_EPILOGUE = ("import numpy as np\n"
             "np.save(sys.argv[1], np.asarray(Y, dtype=np.float64))\n"
             "json.dump({'tensorflow_imported': 'tensorflow' in sys.modules}, open(sys.argv[2], 'w'))\n")

SCRIPTS = {
    "tsne_ops": ("tsne_ops.TSNE() (exact, no TensorFlow on numpy input)",
                 "import tsne_ops\n"
                 "from sklearn.datasets import load_digits\n"
                 "Y = tsne_ops.TSNE(random_state=0).fit(load_digits().data).embedding_\n"),
    "opentsne-bh": ("openTSNE TSNE(negative_gradient_method='bh', n_jobs=2)",
                    "import openTSNE\n"
                    "from sklearn.datasets import load_digits\n"
                    "Y = openTSNE.TSNE(negative_gradient_method='bh', n_jobs=2, random_state=0)"
                    ".fit(load_digits().data)\n"),
    "sklearn-exact": ("scikit-learn TSNE(method='exact')",
                      "from sklearn.manifold import TSNE\n"
                      "from sklearn.datasets import load_digits\n"
                      "Y = TSNE(method='exact', random_state=0).fit_transform(load_digits().data)\n"),
    "sklearn-bh": ("scikit-learn TSNE(method='barnes_hut', n_jobs=2)",
                   "from sklearn.manifold import TSNE\n"
                   "from sklearn.datasets import load_digits\n"
                   "Y = TSNE(method='barnes_hut', n_jobs=2, random_state=0)"
                   ".fit_transform(load_digits().data)\n"),
}


def run_once(method, workdir, timeout):
    emb, info = Path(workdir) / f"{method}.npy", Path(workdir) / f"{method}.json"
    code = _PRELUDE + SCRIPTS[method][1] + _EPILOGUE
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(emb), str(info)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    import numpy as np
    return wall, load, np.load(emb), json.loads(info.read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="rounds (each runs every method once)")
    ap.add_argument("--methods", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS))
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_startup.json"))
    args = ap.parse_args(argv)

    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    P = suite.reference_p(digits.data)
    runs = {m: [] for m in args.methods}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(args.repeats):
            for m in args.methods:
                wall, load, Y, info = run_once(m, workdir, args.timeout)
                kl = float(suite.exact_kl(P, Y))
                runs[m].append({"wall_s": round(wall, 3), "kl_common_p": kl,
                                "load_1min": round(load, 2), **info})
                print(f"round {r + 1}/{args.repeats} {m:14s} {wall:7.2f} s  KL {kl:.4f}  "
                      f"load {load:.2f}", flush=True)
    rows = []
    for m in args.methods:
        walls = [x["wall_s"] for x in runs[m]]
        kls = [x["kl_common_p"] for x in runs[m]]
        rows.append({"method": m, "what": SCRIPTS[m][0], "median_wall_s": statistics.median(walls),
                     "min_wall_s": min(walls), "max_wall_s": max(walls),
                     "median_kl_common_p": statistics.median(kls),
                     "tensorflow_imported": any(x["tensorflow_imported"] for x in runs[m]),
                     "runs": runs[m]})
    by = {row["method"]: row for row in rows}
    floor = {}
    if "tsne_ops" in by:
        others = [row for row in rows if row["method"] != "tsne_ops"]
        floor["tsne_ops_fastest"] = all(by["tsne_ops"]["median_wall_s"] < row["median_wall_s"]
                                        for row in others)
        if "sklearn-exact" in by:
            floor["tsne_ops_kl_not_above_sklearn_exact"] = (
                by["tsne_ops"]["median_kl_common_p"] <= by["sklearn-exact"]["median_kl_common_p"])
        floor["tsne_ops_without_tensorflow"] = not by["tsne_ops"]["tensorflow_imported"]
        floor["met"] = all(floor.values())
    print()
    print("| method | median wall s (import included) | min | max | KL (common P) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['what']} | {row['median_wall_s']:.2f} | {row['min_wall_s']:.2f} | "
              f"{row['max_wall_s']:.2f} | {row['median_kl_common_p']:.4f} |")
    print("floor:", floor)
    out = {"command": "python benchmarks/bench_startup.py " + " ".join(argv or sys.argv[1:]),
           "machine": suite.machine_info(), "repeats": args.repeats, "rows": rows,
           "floor": floor,
           "note": "wall time of a fresh process: interpreter start, imports, loading digits, "
                   "the fit and saving the embedding; methods alternate within each round"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.out)
    return 0 if floor.get("met", True) else 1


if __name__ == "__main__":
    sys.exit(main())
