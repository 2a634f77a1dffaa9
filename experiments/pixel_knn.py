"""k-NN accuracy in pixel space, raw and deskewed: the neighbourhoods t-SNE's P
is built from, before any embedding.

    python experiments/pixel_knn.py                       # MNIST, 10,000 train / 10,000 test
    python experiments/pixel_knn.py --dataset fashion-mnist

Fits scikit-learn's KNeighborsClassifier on the first --n training images
(raw, then deskewed with tsne_ops.preprocessing.deskew) and scores the --n-test
test images; prints one JSON line per setting and appends them to --out.
"""
import argparse
import json
import time
from pathlib import Path

from sklearn.neighbors import KNeighborsClassifier

from tsne_ops import datasets, preprocessing


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pixel_knn.jsonl"))
    a = ap.parse_args()
    X, y = datasets.load_dataset(a.dataset, a.data_dir, n=a.n, split="train")
    Xte, yte = datasets.load_dataset(a.dataset, a.data_dir, n=a.n_test, split="test")
    shape = datasets.IMAGE_SHAPES[a.dataset]
    t0 = time.time()
    Xd, Xted = preprocessing.deskew(X, shape), preprocessing.deskew(Xte, shape)
    deskew_s = time.time() - t0
    rows = []
    for name, (tr, te) in (("raw", (X, Xte)), ("deskewed", (Xd, Xted))):
        row = dict(dataset=a.dataset, n=len(X), n_test=len(Xte), pixels=name)
        for k in (1, 10):
            row[f"test_{k}nn"] = KNeighborsClassifier(k).fit(tr, y).score(te, yte)
        if name == "deskewed":
            row["deskew_s"] = round(deskew_s, 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
