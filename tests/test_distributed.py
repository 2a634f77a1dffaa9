"""ParametricTSNE under tf.distribute.MirroredStrategy on two logical CPUs, and
under MultiWorkerMirroredStrategy with two worker processes on localhost.

Logical devices must be configured before TensorFlow initialises, so the
training runs in a fresh subprocess; a second fresh process loads the saved
model and must reproduce its transform."""
import json
import subprocess
import sys

import numpy as np

TRAIN = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import tsne_ops
from tsne_ops import datasets, metrics
from tsne_ops.parametric import ParametricTSNE

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
X, y = datasets.load_digits(n=800)
snaps = []
model = ParametricTSNE(encoder="dense", batch_size=400, epochs=12, learning_rate=2e-3,
                       random_state=0, strategy=strategy,
                       callback=lambda e, l, Y: snaps.append(Y), callback_every=12)
model.fit(X)
Y = model.transform(X)
path = model.save(sys.argv[1])
var = model.model_.trainable_variables[0]
inner = getattr(var, "_value", var)  # the tf.Variable under the Keras one
devices = sorted({c.device for c in getattr(inner, "values", [inner])})
np.save(sys.argv[2], Y)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "variable_devices": devices,
    "history": model.history_,
    "acc_init": metrics.knn_accuracy(snaps[0], y, k=10),
    "acc": metrics.knn_accuracy(Y, y, k=10),
    "path": path,
}))
"""

LOAD = r"""
import sys, numpy as np
import tsne_ops
from tsne_ops import datasets
from tsne_ops.parametric import ParametricTSNE
X, _ = datasets.load_digits(n=800)
np.save(sys.argv[2], ParametricTSNE.load(sys.argv[1]).transform(X))
"""


def _python(code, *args):
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_mirrored_training_and_reload_in_fresh_process(tmp_path):
    out = _python(TRAIN, tmp_path / "mirrored", tmp_path / "y_train.npy")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert len(result["variable_devices"]) == 2  # mirrored on both logical CPUs
    history = result["history"]
    assert len(history) == 12 and np.all(np.isfinite(history)) and history[-1] < history[0]
    assert result["acc"] > 0.8 and result["acc"] > result["acc_init"] + 0.1
    _python(LOAD, result["path"], tmp_path / "y_load.npy")
    np.testing.assert_allclose(np.load(tmp_path / "y_load.npy"), np.load(tmp_path / "y_train.npy"),
                               rtol=1e-5, atol=1e-5)


# -- MultiWorkerMirroredStrategy: two worker processes on this machine --------

WORKER = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(2)
if sys.argv[2] == "mirrored":  # one process, two replicas: the reference
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tsne_ops
from tsne_ops import datasets, parametric
from tsne_ops.parametric import ParametricTSNE

mode, out = sys.argv[2], sys.argv[1]
strategy = {"worker": lambda: tf.distribute.MultiWorkerMirroredStrategy(),
            "mirrored": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            "one": lambda: tf.distribute.OneDeviceStrategy("/cpu:0")}[mode]()
X, _ = datasets.load_digits(n=400)
seeds = []
if mode == "worker":  # what a fit with random_state=None shuffles with
    seeds = [parametric._shared_seed(strategy), parametric._shared_seed(strategy)]
fit = lambda strategy: ParametricTSNE(encoder="dense", batch_size=50, epochs=2, random_state=0,
                                      strategy=strategy).fit(X)
model = fit(strategy)
np.save(out + ".npy", model.transform(X))
json.dump({"history": model.history_, "seeds": seeds, "path": model.save(out),
           "replicas": strategy.num_replicas_in_sync,
           # one worker, no strategy (Keras then shuffles each epoch differently)
           "plain_history": fit(None).history_ if mode == "one" else None},
          open(out + ".json", "w"))
"""

LOAD_EACH = r"""
import sys, numpy as np
import tsne_ops
from tsne_ops import datasets
from tsne_ops.parametric import ParametricTSNE
X, _ = datasets.load_digits(n=400)
for i, path in enumerate(sys.argv[2:]):
    np.save(f"{sys.argv[1]}/load{i}.npy", ParametricTSNE.load(path).transform(X))
"""


def _free_ports(n):
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_workers(tmp_path, n=2):
    import os

    workers = [f"localhost:{p}" for p in _free_ports(n)]
    procs = []
    for i in range(n):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"worker{i}"), "worker"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]
    return [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(n)]


def test_multi_worker_training_matches_one_worker_and_reloads(tmp_path):
    workers = _run_workers(tmp_path)
    ref = {}
    for mode in ("mirrored", "one"):
        _python(WORKER, tmp_path / mode, mode)
        ref[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    assert [w["replicas"] for w in workers] == [2, 2]
    assert ref["mirrored"]["replicas"] == 2 and ref["one"]["replicas"] == 1
    # worker 0's seed reaches both workers (a fit with random_state=None
    # shuffles alike everywhere), and two draws differ
    seeds = [w["seeds"] for w in workers]
    assert seeds[0] == seeds[1] and seeds[0][0] != seeds[0][1]
    # Two workers with a replica each train as one worker on the global
    # batch: same heads in disjoint shards, the loss that of the gathered
    # batch, gradients all-reduced. Shards that overlapped, or a loss over
    # each replica's share only (lower: Q normalised over fewer points),
    # would change the curve.
    history = workers[0]["history"]
    assert len(history) == 2 and history[1] < history[0]
    np.testing.assert_allclose(workers[1]["history"], history, rtol=1e-6)
    np.testing.assert_allclose(ref["one"]["history"], history, rtol=1e-4)
    np.testing.assert_allclose(ref["mirrored"]["history"], history, rtol=1e-4)
    # without a strategy Keras draws other shuffles: the same curve within noise
    np.testing.assert_allclose(ref["one"]["plain_history"], history, rtol=0.05)
    y = [np.load(tmp_path / f"worker{i}.npy") for i in range(2)]
    assert y[0].shape == (400, 2)  # transform gathers every worker's share, in order
    np.testing.assert_allclose(y[1], y[0], rtol=1e-5, atol=1e-5)
    scale = np.abs(y[0]).max()
    for mode in ("one", "mirrored"):
        np.testing.assert_allclose(np.load(tmp_path / f"{mode}.npy"), y[0], atol=1e-3 * scale)
    # each worker's saved model loads in a fresh single-worker process and
    # embeds as the worker did
    _python(LOAD_EACH, tmp_path, *(w["path"] for w in workers))
    for i in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"load{i}.npy"), y[i], rtol=1e-5, atol=1e-5)
