"""Run the five cases (A-E) through `tsne-ops compare` and tabulate them.

    python benchmarks/cases_table.py                    # digits, all cases
    python benchmarks/cases_table.py --dataset mnist --n 5000 --cases A B C
    python benchmarks/cases_table.py --parametric-extra '--epochs 150 --early-exaggeration 4'

Each case's files (embeddings, figures, animations, metrics JSON) go to
--out/<dataset>/; the table goes to --out/cases_<dataset>.json and .md.
Options not given take the estimators' defaults (as in `tsne-ops`); --extra
goes to every case, --parametric-extra only to B-E (the training options of
ParametricTSNE, which case A would read differently or refuse).
Parametric cases (B-E) train on the training split and report the 1-NN
accuracy of held-out points (digits: a 20% split; MNIST-like: the test set).
"""
import argparse
import json
import platform
import time
from pathlib import Path

from tsne_ops import cli

COLUMNS = [
    ("case", "case"), ("what", "what"), ("n_train", "N"),
    (("tsne_ops", "kl_divergence"), "KL"),
    (("tsne_ops", "trustworthiness"), "trust."),
    (("tsne_ops", "knn_accuracy"), "10-NN (LOO)"),
    (("tsne_ops", "test_1nn_accuracy"), "test 1-NN"),
    (("tsne_ops", "time_s"), "time (s)"),
    (("sklearn", "kl_divergence"), "sklearn KL"),
    (("sklearn", "knn_accuracy"), "sklearn 10-NN"),
    (("sklearn", "time_s"), "sklearn time (s)"),
]


def _get(result, key):
    if isinstance(key, tuple):
        return result.get(key[0], {}).get(key[1])
    return result.get(key)


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--cases", nargs="+", default=list("ABCDE"))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--extra", default="", help="extra tsne-ops options for every case, "
                                                "e.g. '--perplexity 20'")
    ap.add_argument("--parametric-extra", default="",
                    help="extra tsne-ops options for cases B-E only, e.g. '--learning-rate 2e-3'")
    ap.add_argument("--sklearn-cases", nargs="*", default=None,
                    help="cases that also run scikit-learn's TSNE (`tsne-ops compare`); "
                         "default: all. Its result does not depend on the case's encoder, so "
                         "on MNIST `--sklearn-cases A` saves a long Barnes-Hut run per case")
    ap.add_argument("--reuse", nargs="*", default=[],
                    help="cases not run again: their metrics JSON from an earlier run in "
                         "--out/<dataset>/ goes into the table as it is")
    a = ap.parse_args()
    out = Path(a.out)
    rows = []
    t0 = time.time()
    for case in a.cases:
        stem = f"case{case}_{a.dataset}"
        if case in a.reuse:
            rows.append(json.loads((out / a.dataset / f"{stem}_metrics.json").read_text()))
            continue
        command = "compare" if a.sklearn_cases is None or case in a.sklearn_cases else "run"
        argv = [command, "--case", case, "--dataset", a.dataset,
                "--out", str(out / a.dataset), "--quiet"] + a.extra.split()
        if case != "A":
            argv += a.parametric_extra.split()
        if a.n:
            argv += ["--n", str(a.n)]
        cli.main(argv)
        rows.append(json.loads((out / a.dataset / f"{stem}_metrics.json").read_text()))
        print(f"case {case} done ({time.time() - t0:.0f}s)", flush=True)
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} CPUs"
    (out / f"cases_{a.dataset}.json").write_text(json.dumps({"machine": machine, "cases": rows}, indent=2))
    lines = [f"Dataset: {a.dataset}; machine: {machine}; command: "
             f"`python benchmarks/cases_table.py --dataset {a.dataset}"
             + (f" --n {a.n}" if a.n else "") + (f" --extra '{a.extra}'" if a.extra else "")
             + (f" --parametric-extra '{a.parametric_extra}'" if a.parametric_extra else "")
             + (f" --sklearn-cases {' '.join(a.sklearn_cases)}" if a.sklearn_cases is not None
                else "") + (f" --reuse {' '.join(a.reuse)}" if a.reuse else "") + "`",
             "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(_get(r, k)) for k, _ in COLUMNS) + " |")
    md = "\n".join(lines) + "\n"
    (out / f"cases_{a.dataset}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
