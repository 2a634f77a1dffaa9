"""End-to-end t-SNE benchmark: tsne_ops against scikit-learn, openTSNE and a
plain-TensorFlow composite, in one run (issue 5).

    python benchmarks/suite.py                      # the full default suite
    python benchmarks/suite.py --sizes digits       # digits only
    python benchmarks/suite.py --quick              # smoke test (digits + 1000, 300 iterations)

Methods (``--methods``):

  tsne_ops       tsne_ops.TSNE: exact t-SNE, the custom ops (C++ kernels)
  sklearn-exact  sklearn.manifold.TSNE(method='exact')
  sklearn-bh     sklearn.manifold.TSNE(method='barnes_hut'), n_jobs=2
  opentsne-bh    openTSNE, negative_gradient_method='bh', n_jobs=2
  opentsne-fft   openTSNE, negative_gradient_method='fft', n_jobs=2
  tf-composite   exact t-SNE in stock TensorFlow ops with autodiff
                 (benchmarks/composite_tsne.py)

Data (``--sizes``): ``digits`` is scikit-learn's 1797 8x8 digits, the raw
64-dimensional pixel values 0..16 as float32 (no PCA: the full run from raw
data); an integer N is the first N MNIST training images scaled to [0, 1] and
reduced to 50 dimensions by PCA (scikit-learn, random_state=0), computed once
per size. Every method gets the same float32 array.

Settings: perplexity 30, early exaggeration 12 for 250 iterations, 1000
iterations in all (``--iters``), PCA initialisation, random_state 0. Each
method keeps its own remaining defaults (openTSNE: its learning rate N/12 and
momentum 0.8 in both phases; scikit-learn and tsne_ops may stop early by
scikit-learn's convergence checks, reported as ``iters``).

Each (method, size) runs in its own subprocess, one after the other, with a
timeout, and streams its progress lines. It reports:

* affinity / optimisation / total seconds. total is the wall time of the fit
  from the data array to the embedding (affinities, initialisation,
  optimisation), after the library is imported (import time is its own
  column). affinity is the time from the start of the fit until the method's
  own affinity function returns (scikit-learn: ``_joint_probabilities`` after
  the squared distances for exact, ``_joint_probabilities_nn`` after the kNN
  search for Barnes-Hut; tsne_ops: ``TSNE.joint_probabilities``), recorded by
  wrapping that function inside the same fit; optimisation = total - affinity.
  openTSNE: ``prepare_initial`` (affinities and PCA initialisation) and the
  two ``optimize`` phases are timed natively. The composite times its own
  affinity step.
* peak memory: the child's peak resident set size during the fit minus its
  resident size just before it (the high-water mark is reset after imports
  and data loading via /proc/self/clear_refs).
* KL (own): the method's self-reported final KL divergence; KL (exact P): the
  exact KL(P || Q) of every final embedding against one common P
  (scikit-learn's exact ``_joint_probabilities``, perplexity 30) in numpy;
  trustworthiness (k = 12) and 5-fold 10-NN accuracy of the embedding.
* load: the 1-minute load average when the child started; it still counts
  the suite's previous run (up to the core count), so only more than that
  means other work on the machine.

Outputs in ``--out`` (default benchmarks/results/suite): results.json (rows,
machine, settings), results.md (the table) and time_vs_n.png (log-log total
time against N).
"""
import argparse
import datetime
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

METHODS = ["tsne_ops", "sklearn-exact", "sklearn-bh", "opentsne-bh", "opentsne-fft",
           "tf-composite"]
METHOD_LABELS = {
    "tsne_ops": "tsne_ops TSNE (exact, custom ops)",
    "sklearn-exact": "scikit-learn exact",
    "sklearn-bh": "scikit-learn Barnes-Hut (n_jobs=2)",
    "opentsne-bh": "openTSNE BH (n_jobs=2)",
    "opentsne-fft": "openTSNE FFT (n_jobs=2)",
    "tf-composite": "TF composite (autodiff, N x N x d)",
}
PERPLEXITY = 30.0
EXAGGERATION = 12.0
EXAGGERATION_ITER = 250
SEED = 0
RESULT_TAG = "@@RESULT "


# ---------------------------------------------------------------------------
# memory helpers (Linux)

def _status_kib(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------
# child: one method on one data set

def _log(msg):
    print(msg, flush=True)


def _run_tsne_ops(X, iters, marks):
    t = time.perf_counter()
    import tsne_ops
    TSNE = getattr(tsne_ops, "TSNE", None)
    source = "tsne_ops.TSNE"
    if TSNE is None:  # not exported (yet): the estimator module itself
        from tsne_ops.tsne import TSNE
        source = "tsne_ops.tsne.TSNE"
    marks["import_s"] = time.perf_counter() - t
    marks["note"] = source
    est = TSNE(n_components=2, perplexity=PERPLEXITY, early_exaggeration=EXAGGERATION,
               learning_rate="auto", max_iter=iters, init="pca", random_state=SEED, verbose=1)
    own = est.joint_probabilities

    def timed_joint_probabilities(*a, **k):
        out = own(*a, **k)  # eager: the kernels have run when this returns
        marks["affinity_end"] = time.perf_counter()
        return out

    est.joint_probabilities = timed_joint_probabilities
    _start(marks)
    Y = est.fit_transform(X)
    _stop(marks)
    return Y, est.kl_divergence_, est.n_iter_ + 1


def _run_sklearn(X, iters, marks, method):
    t = time.perf_counter()
    import sklearn.manifold._t_sne as sk
    marks["import_s"] = time.perf_counter() - t
    name = "_joint_probabilities" if method == "exact" else "_joint_probabilities_nn"
    own = getattr(sk, name)

    def timed(*a, **k):
        out = own(*a, **k)
        marks["affinity_end"] = time.perf_counter()
        return out

    setattr(sk, name, timed)  # looked up as a module global inside TSNE._fit
    est = sk.TSNE(n_components=2, perplexity=PERPLEXITY, early_exaggeration=EXAGGERATION,
                  learning_rate="auto", max_iter=iters, init="pca", random_state=SEED,
                  method=method, n_jobs=2, verbose=1)
    _start(marks)
    Y = est.fit_transform(X)
    _stop(marks)
    return Y, est.kl_divergence_, est.n_iter_ + 1


def _run_opentsne(X, iters, marks, gradient):
    t = time.perf_counter()
    import openTSNE
    marks["import_s"] = time.perf_counter() - t
    marks["note"] = f"openTSNE {openTSNE.__version__}"
    tsne = openTSNE.TSNE(n_components=2, perplexity=PERPLEXITY, early_exaggeration=EXAGGERATION,
                         early_exaggeration_iter=EXAGGERATION_ITER,
                         n_iter=iters - EXAGGERATION_ITER, initialization="pca",
                         negative_gradient_method=gradient, n_jobs=2, random_state=SEED,
                         verbose=False, callbacks=_OpenTSNEProgress(),
                         callbacks_every_iters=250)
    _start(marks)
    # openTSNE.TSNE.fit, step by step so that the affinity step is timed natively.
    emb = tsne.prepare_initial(X)
    marks["affinity_end"] = time.perf_counter()
    emb = emb.optimize(n_iter=tsne.early_exaggeration_iter, exaggeration=tsne.early_exaggeration,
                       momentum=tsne.initial_momentum, inplace=True, propagate_exception=True)
    emb = emb.optimize(n_iter=tsne.n_iter, exaggeration=tsne.exaggeration,
                       momentum=tsne.final_momentum, inplace=True, propagate_exception=True)
    _stop(marks)
    import numpy as np
    return np.asarray(emb), float(emb.kl_divergence), iters


class _OpenTSNEProgress:
    def __init__(self):
        self.t0 = time.perf_counter()
        self.done = 0

    def __call__(self, iteration, error, embedding):
        self.done += 250
        _log(f"iterations {self.done}: KL {error:.4f} ({time.perf_counter() - self.t0:.1f}s)")
        return False


def _run_composite(X, iters, marks):
    t = time.perf_counter()
    import tensorflow  # noqa: F401
    sys.path.insert(0, str(HERE))
    import composite_tsne
    marks["import_s"] = time.perf_counter() - t
    est = composite_tsne.CompositeTSNE(perplexity=PERPLEXITY, early_exaggeration=EXAGGERATION,
                                       max_iter=iters, random_state=SEED, log=_log)
    _start(marks)
    Y = est.fit_transform(X)
    _stop(marks)
    marks["affinity_end"] = marks["t_start"] + est.affinity_time_
    return Y, est.kl_divergence_, est.n_iter_ + 1


def _start(marks):
    marks["peak_reset"] = _reset_peak()
    marks["rss_before_kib"] = _status_kib("VmRSS")
    marks["t_start"] = time.perf_counter()


def _stop(marks):
    marks["t_end"] = time.perf_counter()
    marks["hwm_kib"] = _status_kib("VmHWM")


def child_main(args):
    import numpy as np

    data = Path(args.data)
    X = np.load(data / "X.npy")
    marks = {}
    method = args.child
    _log(f"start: {method}, N={X.shape[0]}, D={X.shape[1]}, {args.iters} iterations, "
         f"load {os.getloadavg()[0]:.2f}")
    if method == "tsne_ops":
        Y, kl, n_iter = _run_tsne_ops(X, args.iters, marks)
    elif method == "sklearn-exact":
        Y, kl, n_iter = _run_sklearn(X, args.iters, marks, "exact")
    elif method == "sklearn-bh":
        Y, kl, n_iter = _run_sklearn(X, args.iters, marks, "barnes_hut")
    elif method == "opentsne-bh":
        Y, kl, n_iter = _run_opentsne(X, args.iters, marks, "bh")
    elif method == "opentsne-fft":
        Y, kl, n_iter = _run_opentsne(X, args.iters, marks, "fft")
    elif method == "tf-composite":
        Y, kl, n_iter = _run_composite(X, args.iters, marks)
    else:
        raise SystemExit(f"unknown method {method}")
    np.save(data / f"Y_{method}.npy", np.asarray(Y, dtype=np.float64))
    total = marks["t_end"] - marks["t_start"]
    aff = marks.get("affinity_end")
    aff = None if aff is None else aff - marks["t_start"]
    peak = None
    if marks.get("hwm_kib") is not None and marks.get("rss_before_kib") is not None:
        peak = max(marks["hwm_kib"] - marks["rss_before_kib"], 0) / 1024.0
    res = {
        "total_s": total,
        "affinity_s": aff,
        "optimisation_s": None if aff is None else total - aff,
        "import_s": marks.get("import_s"),
        "peak_mib": peak if marks.get("peak_reset") else None,
        "peak_rss_mib": None if marks.get("hwm_kib") is None else marks["hwm_kib"] / 1024.0,
        "kl_own": float(kl),
        "n_iter": int(n_iter),
        "note": marks.get("note"),
    }
    _log(f"done: total {total:.2f}s, KL {kl:.4f}")
    print(RESULT_TAG + json.dumps(res), flush=True)


# ---------------------------------------------------------------------------
# parent

def machine_info():
    import numpy
    import sklearn

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    # Versions without importing the heavy libraries into the parent.
    from importlib import metadata
    for dist in ("tensorflow", "tensorflow-cpu", "openTSNE", "tsne_ops", "tsne-ops"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        bi = json.loads((ROOT / "tsne_ops" / "_build_info.json").read_text())
        info["tsne_ops_build"] = bi
    except (OSError, ValueError):
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
            text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cc", "tsne_ops", "CMakeLists.txt", "setup.py"],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
        info["tsne_ops_uncommitted_changes"] = [ln[3:] for ln in dirty if ln.strip()]
    except (OSError, subprocess.CalledProcessError):
        pass
    so = ROOT / "tsne_ops" / "_tsne_ops.so"
    if so.exists():
        info["op_library_mtime"] = datetime.datetime.fromtimestamp(
            so.stat().st_mtime).astimezone().isoformat(timespec="seconds")
    return info


def _have(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def load_data(size):
    """(name, X float32, y) for 'digits' or an MNIST size."""
    import numpy as np

    if size == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        return "digits", d.data.astype(np.float32), d.target.astype(np.int64)
    n = int(size)
    sys.path.insert(0, str(ROOT))
    try:
        from tsne_ops.datasets import load_mnist  # plain numpy, no op library needed
        x, y = load_mnist(n=n)
    except ImportError:
        import gzip
        base = Path(os.environ.get("TSNE_OPS_DATA_DIR", ROOT.parent / "shared" / "data")) / "mnist"
        x = np.frombuffer(gzip.open(base / "train-images-idx3-ubyte.gz").read(), np.uint8,
                          offset=16).reshape(-1, 784)[:n].astype(np.float32) / 255.0
        y = np.frombuffer(gzip.open(base / "train-labels-idx1-ubyte.gz").read(), np.uint8,
                          offset=8)[:n].astype(np.int64)
    if len(x) < n:
        raise ValueError(f"MNIST has only {len(x)} training images, asked for {n}")
    from sklearn.decomposition import PCA
    x50 = PCA(n_components=50, random_state=SEED).fit_transform(x).astype(np.float32)
    return "mnist", np.ascontiguousarray(x50), y


def reference_p(X):
    """scikit-learn's exact P (perplexity 30) as a square float32 array."""
    import numpy as np
    from scipy.spatial.distance import squareform
    from sklearn.manifold._t_sne import _joint_probabilities
    from sklearn.metrics import pairwise_distances

    d2 = pairwise_distances(X, squared=True)
    P = _joint_probabilities(d2, PERPLEXITY, 0)
    del d2
    return squareform(P).astype(np.float32)


def exact_kl(P, Y, chunk=1024):
    """KL(P || Q) of embedding Y (Student-t, dof 1), in float64 row chunks."""
    import numpy as np

    Y = np.asarray(Y, np.float64)
    n = len(Y)
    sq = np.sum(Y * Y, axis=1)
    z = 0.0
    p_log_num = 0.0
    p_log_p = 0.0
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        d2 = np.maximum(sq[s:e, None] + sq[None, :] - 2.0 * Y[s:e] @ Y.T, 0.0)
        num = 1.0 / (1.0 + d2)
        num[np.arange(e - s), np.arange(s, e)] = 0.0
        z += num.sum()
        p = P[s:e].astype(np.float64)
        mask = p > 0
        p_log_num += np.sum(p[mask] * np.log(num[mask]))
        p_log_p += np.sum(p[mask] * np.log(p[mask]))
    p_sum = float(P.sum(dtype=np.float64))
    return p_log_p - p_log_num + p_sum * np.log(z)


def quality(X, y, Y, P):
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return {
        "kl_exact": float(exact_kl(P, Y)),
        "trustworthiness": float(trustworthiness(X, Y, n_neighbors=12)),
        "knn10_accuracy": float(cross_val_score(KNeighborsClassifier(10), Y, y, cv=5).mean()),
    }


def run_child(method, data_dir, iters, timeout, prefix):
    """Run one method in a subprocess; returns (status, result dict or None)."""
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--child", method,
           "--data", str(data_dir), "--iters", str(iters)]
    return run_streaming(cmd, timeout, prefix)


def run_streaming(cmd, timeout, prefix):
    """Run a child that prints ``RESULT_TAG + json`` in its own session,
    streaming its other lines with ``prefix``, killed (with its process
    group) after ``timeout`` seconds; returns (status, result dict or None)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env, start_new_session=True, bufsize=1)
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    result, tail, timed_out = None, [], False
    deadline = t0 + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.perf_counter(), 0.01))
        except queue.Empty:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        if line is None:
            break
        line = line.rstrip("\n")
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            continue
        if not line.strip() or _noise(line):
            continue
        tail.append(line)
        tail = tail[-20:]
        print(f"  {prefix} {line}", flush=True)
    proc.wait()
    wall = time.perf_counter() - t0
    if timed_out:
        return f"timeout: killed after {timeout:.0f} s", None
    if result is None:
        err = next((ln for ln in reversed(tail) if "Error" in ln or "error" in ln),
                   tail[-1] if tail else f"exit code {proc.returncode}")
        return f"error: {err.strip()[:200]}", None
    result["child_wall_s"] = wall
    return "ok", result


def _noise(line):
    return any(s in line for s in ("oneDNN custom operations", "cudart_stub.cc",
                                   "absl::InitializeLog", "Could not find cuda",
                                   "cpu_feature_guard", "TF_ENABLE_ONEDNN_OPTS",
                                   "rebuild TensorFlow"))


def plan(methods, sizes, args):
    """[(size, method, skip reason or None)] in run order."""
    have_opentsne = _have("openTSNE")
    out = []
    for size in sizes:
        n = 1797 if size == "digits" else int(size)
        for m in methods:
            reason = None
            if m.startswith("opentsne") and not have_opentsne:
                reason = "not installed (pip install openTSNE, or the bench extra)"
            elif m == "sklearn-exact" and n > args.max_n_exact:
                reason = f"skipped: N > --max-n-exact {args.max_n_exact}"
            elif m == "tf-composite" and n > args.max_n_composite:
                reason = f"skipped: N > --max-n-composite {args.max_n_composite}"
            elif m == "tsne_ops" and n > args.max_n_tsne_ops:
                reason = f"skipped: N > --max-n-tsne-ops {args.max_n_tsne_ops}"
            out.append((size, n, m, reason))
    return out


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def markdown_table(rows):
    head = ("| data | N | method | status | affinity s | optimisation s | total s | import s "
            "| peak MiB | iters | KL (own) | KL (exact P) | trust. k=12 | 10-NN acc. | load |")
    lines = [head, "| --- | ---: | --- | --- |" + " ---: |" * 11]
    for r in rows:
        ok = r["status"] == "ok"
        lines.append("| " + " | ".join([
            r["data"], str(r["n"]), METHOD_LABELS.get(r["method"], r["method"]),
            r["status"],
            _fmt(r.get("affinity_s"), ".2f") if ok else "",
            _fmt(r.get("optimisation_s"), ".2f") if ok else "",
            f"**{r['total_s']:.2f}**" if ok and r.get("fastest") else
            (_fmt(r.get("total_s"), ".2f") if ok else ""),
            _fmt(r.get("import_s"), ".1f") if ok else "",
            _fmt(r.get("peak_mib"), ".0f") if ok else "",
            str(r.get("n_iter", "")) if ok else "",
            _fmt(r.get("kl_own"), ".4f") if ok else "",
            _fmt(r.get("kl_exact"), ".4f") if ok else "",
            _fmt(r.get("trustworthiness"), ".4f") if ok else "",
            _fmt(r.get("knn10_accuracy"), ".4f") if ok else "",
            _fmt(r.get("load_1min"), ".2f"),
        ]) + " |")
    return "\n".join(lines)


def mark_fastest(rows):
    by_size = {}
    for r in rows:
        if r["status"] == "ok":
            by_size.setdefault((r["data"], r["n"]), []).append(r)
    for group in by_size.values():
        best = min(group, key=lambda r: r["total_s"])
        best["fastest"] = True


def floors(rows, iters):
    """The digits floors of the issue, evaluated on this run's rows."""
    dig = {r["method"]: r for r in rows if r["data"] == "digits"}
    ours = dig.get("tsne_ops")
    if not ours or ours["status"] != "ok":
        return ["- digits floor: tsne_ops has no result in this run"
                + (f" ({ours['status']})" if ours else "")]
    out = []
    peers = [r for m, r in dig.items() if m != "tsne_ops" and r["status"] == "ok"]
    missing = [f"{m} ({r['status']})" for m, r in dig.items()
               if m != "tsne_ops" and r["status"] != "ok"]
    slower = [r for r in peers if r["total_s"] <= ours["total_s"]]
    verdict = "met" if not slower and peers else "NOT met"
    out.append(f"- digits, fastest of the suite ({iters} iterations, fit from raw data): "
               f"**{verdict}**: tsne_ops {ours['total_s']:.2f} s; "
               + ", ".join(f"{r['method']} {r['total_s']:.2f} s" for r in peers)
               + (f"; not compared: {', '.join(missing)}" if missing else ""))
    def with_import(r):
        return r["total_s"] + (r.get("import_s") or 0.0)

    slower_i = [r for r in peers if with_import(r) <= with_import(ours)]
    out.append(f"- the same, counting each library's import time too: "
               f"**{'met' if not slower_i and peers else 'NOT met'}**: tsne_ops "
               f"{with_import(ours):.2f} s; "
               + ", ".join(f"{r['method']} {with_import(r):.2f} s" for r in peers))
    ex = dig.get("sklearn-exact")
    if ex and ex["status"] == "ok":
        ok_own = ours["kl_own"] <= ex["kl_own"]
        ok_exact = ours["kl_exact"] <= ex["kl_exact"]
        out.append(f"- digits, final KL no higher than scikit-learn exact's: "
                   f"**{'met' if ok_own and ok_exact else 'NOT met'}**: self-reported "
                   f"{ours['kl_own']:.4f} vs {ex['kl_own']:.4f}; against the common exact P "
                   f"{ours['kl_exact']:.4f} vs {ex['kl_exact']:.4f}")
    else:
        out.append("- digits KL floor: no scikit-learn exact result in this run")
    return out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    markers = dict(zip(METHODS, "osD^v*"))
    for i, m in enumerate(METHODS):
        mine = [r for r in rows if r["method"] == m and r["status"] == "ok"]
        if not mine:
            continue
        color = f"C{i}"
        mn = sorted((r["n"], r["total_s"]) for r in mine if r["data"] == "mnist")
        if mn:
            ax.plot([a for a, _ in mn], [b for _, b in mn], marker=markers[m], color=color,
                    markersize=10 if markers[m] == "*" else 7, label=METHOD_LABELS[m])
        dg = [(r["n"], r["total_s"]) for r in mine if r["data"] == "digits"]
        if dg:
            ax.plot([a for a, _ in dg], [b for _, b in dg], linestyle="none",
                    marker=markers[m], markerfacecolor="none", markersize=13 if markers[m] == "*" else 10,
                    color=color,
                    label=None if mn else METHOD_LABELS[m])
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, ScalarFormatter
    all_ns = sorted({r["n"] for r in rows if r["status"] == "ok"})
    # Tick the MNIST sizes (digits' 1797 would collide with 2000).
    ticks = sorted({r["n"] for r in rows if r["status"] == "ok" and r["data"] == "mnist"}) or all_ns
    if all_ns:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlim(min(all_ns) / 1.25, max(all_ns) * 1.25)
    from matplotlib.ticker import LogLocator
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("N (points); digits: N = 1797")
    ax.set_ylabel("total fit time, s (affinities + optimisation)")
    ax.set_title("t-SNE wall time: filled = MNIST (PCA-50), hollow = digits (raw 64-d)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=None,
                   help="'digits' and/or MNIST sizes (default: digits 1000 2000 5000 10000)")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="methods to run (default: all)")
    p.add_argument("--iters", type=int, default=None,
                   help="total iterations including 250 of early exaggeration (default 1000)")
    p.add_argument("--max-n-exact", type=int, default=2000,
                   help="largest N for scikit-learn exact (default 2000)")
    p.add_argument("--max-n-composite", type=int, default=2000,
                   help="largest N for the TF composite (default 2000)")
    p.add_argument("--max-n-tsne-ops", type=int, default=10**9,
                   help="largest N for tsne_ops (default: no cap)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="seconds per (method, size) run before it is killed (default 900)")
    p.add_argument("--out", default=str(HERE / "results" / "suite"),
                   help="output directory (default benchmarks/results/suite)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: digits and 1000, 300 iterations, unless given")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        return child_main(args)

    sizes = args.sizes or (["digits", "1000"] if args.quick else
                           ["digits", "1000", "2000", "5000", "10000"])
    for s in sizes:
        if s != "digits" and not (s.isdigit() and int(s) > 3 * PERPLEXITY + 1):
            p.error(f"--sizes: 'digits' or an integer > {3 * PERPLEXITY + 1:.0f}, got {s!r}")
    iters = args.iters or (300 if args.quick else 1000)
    if iters <= EXAGGERATION_ITER:
        p.error(f"--iters must be > {EXAGGERATION_ITER} (scikit-learn's fixed exaggeration phase)")
    methods = args.methods or METHODS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    info = machine_info()
    print(f"machine: {info.get('cpu_model', '?')}, {info['cpus_usable']} usable cores, "
          f"{info.get('memory_gib', '?')} GiB; TF {info.get('tensorflow', '?')}, "
          f"scikit-learn {info['scikit-learn']}, openTSNE {info.get('openTSNE', 'not installed')}",
          flush=True)
    todo = plan(methods, sizes, args)
    rows = []
    t_suite = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tsne_suite_") as tmp:
        for size in sizes:
            import numpy as np
            t = time.perf_counter()
            name, X, y = load_data(size)
            d = Path(tmp) / str(size)
            d.mkdir()
            np.save(d / "X.npy", X)
            print(f"\n== {name} N={len(X)} D={X.shape[1]} (data ready in "
                  f"{time.perf_counter() - t:.1f}s) ==", flush=True)
            size_rows = []
            for s2, n, m, reason in todo:
                if s2 != size:
                    continue
                row = {"data": name, "n": n, "dim": int(X.shape[1]), "method": m,
                       "label": METHOD_LABELS[m], "iters_requested": iters}
                if reason:
                    row["status"] = reason
                    print(f"  [{m}] {reason}", flush=True)
                else:
                    row["load_1min"] = os.getloadavg()[0]
                    status, res = run_child(m, d, iters, args.timeout, f"[{m} {n}]")
                    row["status"] = status
                    if res:
                        row.update(res)
                    print(f"  [{m}] {status}" + (f": total {res['total_s']:.2f}s" if res else ""),
                          flush=True)
                size_rows.append(row)
            ok = [r for r in size_rows if r["status"] == "ok"]
            if ok:
                t = time.perf_counter()
                P = reference_p(X)
                for r in ok:
                    Y = np.load(d / f"Y_{r['method']}.npy")
                    r.update(quality(X, y, Y, P))
                del P
                print(f"  metrics in {time.perf_counter() - t:.1f}s", flush=True)
            rows.extend(size_rows)
            for f in d.glob("*.npy"):
                f.unlink()
            _write(out, rows, info, args, iters, sizes, methods, t_suite)
    table, fl = _write(out, rows, info, args, iters, sizes, methods, t_suite)
    print("\n" + table + ("\n\n" + "\n".join(fl) if fl else ""))
    print(f"\nwrote {out}/results.json, results.md, time_vs_n.png "
          f"({time.perf_counter() - t_suite:.0f}s in all)")


def _write(out, rows, info, args, iters, sizes, methods, t_suite):
    mark_fastest(rows)
    table = markdown_table(rows)
    fl = floors(rows, iters) if any(r["data"] == "digits" for r in rows) else []
    settings = {
        "sizes": sizes, "methods": methods, "iters": iters, "perplexity": PERPLEXITY,
        "early_exaggeration": EXAGGERATION, "early_exaggeration_iter": EXAGGERATION_ITER,
        "random_state": SEED, "max_n_exact": args.max_n_exact,
        "max_n_composite": args.max_n_composite, "max_n_tsne_ops": args.max_n_tsne_ops,
        "timeout_s": args.timeout, "quick": args.quick,
        "command": "python benchmarks/suite.py " + " ".join(sys.argv[1:]),
        "suite_wall_s": time.perf_counter() - t_suite,
    }
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "settings": settings, "rows": rows, "floors": fl}, indent=2) + "\n")
    md = [f"# t-SNE benchmark suite ({info['date']})", "",
          f"Machine: {info.get('cpu_model', '?')}, {info['cpus_usable']} usable cores, "
          f"{info.get('memory_gib', '?')} GiB RAM; Python {info['python']}, TensorFlow "
          f"{info.get('tensorflow', '?')}, scikit-learn {info['scikit-learn']}, openTSNE "
          f"{info.get('openTSNE', 'not installed')}, numpy {info['numpy']}; tsne_ops commit "
          f"{info.get('git_commit', '?')}"
          + (f" with uncommitted changes to {', '.join(info['tsne_ops_uncommitted_changes'])}"
             if info.get("tsne_ops_uncommitted_changes") else "") + ".", "",
          f"Command: `{settings['command']}`; {iters} iterations (250 with early exaggeration "
          f"12), perplexity 30, PCA init, random_state 0. Times in seconds; total = fit from "
          f"the data array to the embedding (imports excluded, own column); bold = fastest "
          f"at that size.", ""]
    loads = [r["load_1min"] for r in rows if r.get("load_1min") is not None]
    cores = info.get("cpus_usable") or info.get("cpu_count") or 1
    # The load is read as each child starts, so it still counts the previous
    # child of this suite (up to `cores`); only more than that means other work.
    if loads and max(loads) > cores + 0.5:
        md += [f"**Busy machine**: the 1-minute load average reached {max(loads):.1f} on "
               f"{cores} cores during this run (column `load`), so other processes competed "
               f"for the CPU. Multithreaded methods suffer most (threads wait on each "
               f"other); these times are not representative of a quiet machine.", ""]
    md += [table, ""]
    if fl:
        md += ["Floors (issue 5):", ""] + fl + [""]
    (out / "results.md").write_text("\n".join(md))
    try:
        plot(rows, out / "time_vs_n.png")
    except Exception as e:  # the table and JSON matter more than the plot
        print(f"plot failed: {e}", flush=True)
    return table, fl


if __name__ == "__main__":
    main()
