"""ParametricTSNE under tf.distribute.MirroredStrategy on two logical CPUs.

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
