"""One t-SNE fit in a fresh interpreter, for bench_large.py and bench_scaling.py.

    python benchmarks/fit_process.py --library tsne_ops --params '{"n_components": 3}' \\
        --data X.npy --embedding Y.npy

The child loads the float32 array, then imports the library (timed on its
own: ``import_s``), then fits with the library's defaults plus ``--params``
and ``random_state=0`` (``fit_s``: the full run from the array to the
embedding: neighbours, affinities, initialisation, optimisation). It saves
the embedding (float64) and prints one ``@@RESULT {json}`` line with the
times, the peak resident memory of the whole process since it started
(``VmHWM``, imports included; ``ru_maxrss`` as well, which can carry the
parent's peak across exec), its
resident memory just before the fit, the library's self-reported KL, the
number of iterations, and the estimator's parameters and fitted scalars.

Libraries: ``tsne_ops`` (``tsne_ops.TSNE(**params).fit_transform(X)``) and
``openTSNE`` (``openTSNE.TSNE(**params).fit(X)``). The parent side is
:func:`fit_in_subprocess`. With ``--stages`` the fit's steps also get
memory marks (``bench_memory.install_probes``: each interval's own peak,
in ``stages``); ``peak_rss_mib`` is then the largest of those peaks.
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from suite import RESULT_TAG, run_streaming  # noqa: E402  (stdlib only: cheap)

LIBRARIES = ("tsne_ops", "openTSNE")


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def _plain(v):
    """v if it is a JSON scalar (numpy scalars converted), else None."""
    import numpy as np

    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, np.generic) and v.ndim == 0:
        return v.item()
    return None


def _fitted_scalars(est):
    """The estimator's scalar fitted attributes (scikit-learn's trailing ``_``)."""
    out = {}
    for k, v in vars(est).items():
        if k.endswith("_") and not k.startswith("_") and _plain(v) is not None:
            out[k] = _plain(v)
    return out


def child(library, params, data, embedding, stages=False):
    import numpy as np

    x = np.load(data)
    print(f"start: {library} {json.dumps(params)}, N={x.shape[0]}, D={x.shape[1]}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    res = {"library": library, "params": params, "load_1min_at_start": os.getloadavg()[0]}
    t0 = time.perf_counter()
    if library == "tsne_ops":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.path.insert(0, str(REPO))
        import tsne_ops
        from tsne_ops import TSNE

        res["version"] = tsne_ops.__version__
    elif library == "openTSNE":
        import openTSNE
        from openTSNE import TSNE

        res["version"] = openTSNE.__version__
    else:
        raise SystemExit(f"--library must be one of {LIBRARIES}, got {library!r}")
    res["import_s"] = time.perf_counter() - t0
    meter = None
    if stages:
        from bench_memory import install_probes

        peak_before = _status_mib("VmHWM")  # the probes reset VmHWM at every mark
        meter = install_probes(library)
    est = TSNE(**{"random_state": 0, **params})
    res["rss_before_fit_mib"] = _status_mib("VmRSS")
    t0 = time.perf_counter()
    if library == "tsne_ops":
        y = est.fit_transform(x)
        res["kl_own"] = _plain(getattr(est, "kl_divergence_", None))
        res["n_iter"] = _plain(getattr(est, "n_iter_", None))
        res["estimator_params"] = {k: _plain(v) for k, v in est.get_params().items()}
        res["fitted"] = _fitted_scalars(est)
    else:
        y = est.fit(x)
        res["kl_own"] = _plain(y.kl_divergence)
        res["n_iter"] = est.early_exaggeration_iter + est.n_iter
        res["estimator_params"] = {k: _plain(v) for k, v in vars(est).items()}
        method = est.negative_gradient_method
        if method == "auto":  # openTSNE 1.0's rule (tsne.py, prepare_initial)
            method = "bh" if len(x) < 10_000 else "fft"
        res["negative_gradient_method_used"] = method
    res["fit_s"] = time.perf_counter() - t0
    # The peak of this process's own memory since exec (VmHWM). getrusage's
    # ru_maxrss is recorded too, but Linux carries the parent's peak into it
    # across exec (the forked copy's high-water mark), so it can read the
    # parent's memory, not the fit's (measured: a light openTSNE child showed
    # its TensorFlow-importing parent's 1065 MiB).
    res["peak_rss_mib"] = _status_mib("VmHWM")
    if meter is not None:
        res["stages"], res["stage_notes"] = meter.rows, meter.notes
        res["peak_rss_mib"] = max([peak_before, res["peak_rss_mib"]]
                                  + [s["peak_mib"] for s in meter.rows])
    res["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    y = np.asarray(y, dtype=np.float64)
    res["finite"] = bool(np.all(np.isfinite(y)))
    np.save(embedding, y)
    print(f"done: fit {res['fit_s']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    print(RESULT_TAG + json.dumps(res), flush=True)


def fit_in_subprocess(library, params, data, embedding, timeout, prefix, stages=False):
    """Runs :func:`child` in a fresh interpreter; returns (status, result or None)."""
    cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--library", library,
           "--params", json.dumps(params), "--data", str(data), "--embedding", str(embedding)]
    if stages:
        cmd.append("--stages")
    return run_streaming(cmd, timeout, prefix)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", required=True, choices=LIBRARIES)
    ap.add_argument("--params", default="{}", type=json.loads, help="JSON keyword arguments of TSNE")
    ap.add_argument("--data", required=True, help="float32 [N, D] .npy")
    ap.add_argument("--embedding", required=True, help="where the [N, d] .npy goes")
    ap.add_argument("--stages", action="store_true",
                    help="memory marks at each step of the fit (bench_memory.py)")
    args = ap.parse_args()
    child(args.library, args.params, args.data, args.embedding, args.stages)


if __name__ == "__main__":
    main()
