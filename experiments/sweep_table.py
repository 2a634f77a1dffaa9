"""The runs of the retired recipe sweep (results/mnist_sweep.jsonl) as a table.

    python experiments/sweep_table.py [--jsonl experiments/results/mnist_sweep.jsonl]

The sweep script (benchmarks/mnist_sweep.py, last at commit cbf78fe) trained
the 2-D encoder on 10,000 MNIST training images with its own copy of the
training step; it is retired because experiments now go through the
library's ParametricTSNE (experiments/mnist_parametric.py). Its JSONL stays as
the record of those runs, and this prints it, one row per run: the settings
that differ between runs and the test 1-NN accuracy (10,000 test images
embedded by the encoder) at epochs 100, 200 and 400 where the run reached them.
"""
import argparse
import json
from pathlib import Path

EPOCHS = (100, 200, 400)


def _setting(run):
    """The run's settings that are not the sweep's defaults, as short text."""
    parts = [run.get("encoder", "dense")]
    for key, default in (("dof", 1.0), ("nbr_mix", 0.0), ("perp", 30.0), ("batch", 5000),
                         ("lr", 0.002), ("exag", 4.0), ("exag_epochs", 50), ("shift", 0),
                         ("noise", 0.0), ("in_dropout", 0.0), ("dropout", 0.0), ("wd", 0.0),
                         ("pmode", "batch"), ("hidden", "500,500,2000"),
                         ("act", "relu"), ("ae_epochs", 0), ("distill_epochs", 0),
                         ("ft_epochs", 0)):
        value = run.get(key, default)
        if value not in (default, None, False):
            parts.append(f"{key}={value}")
    for flag in ("cosine", "deskew", "bn", "ema", "mix_p", "pca"):
        if run.get(flag):
            parts.append(flag)
    return " ".join(parts)


def table(path):
    lines = ["| tag | settings | epochs run | " + " | ".join(f"test 1-NN @{e}" for e in EPOCHS)
             + " | final test 1-NN | final train 10-NN | stopped early |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in EPOCHS)
             + " | ---: | ---: | --- |"]
    for line in Path(path).read_text().splitlines():
        run = json.loads(line)
        at = {p["epoch"]: p["test1"] for p in run["trajectory"] if "epoch" in p}
        final = run["final"]
        ran = final.get("epoch", final.get("ft_epoch"))
        if "ft_epoch" in final:
            ran = f"{run['epochs']} + {final['ft_epoch']} full-batch"
        cells = [f"{at[e]:.3f}" if e in at else "-" for e in EPOCHS]
        lines.append(f"| {run.get('tag', '')} | {_setting(run)} | {ran} | " + " | ".join(cells)
                     + f" | {final['test1']:.3f} | {final['train10']:.3f} | "
                     + ("yes" if run.get("stopped_early") else "no") + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsonl", default=str(Path(__file__).parent / "results" / "mnist_sweep.jsonl"))
    print(table(ap.parse_args().jsonl))


if __name__ == "__main__":
    main()
