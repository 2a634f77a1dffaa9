"""The ops give bitwise-identical results with 1, 2 and 3 TensorFlow
intra-op threads (the kernels' determinism contract, common.h), at sizes that
span several of each kernel's tiles. TensorFlow fixes its thread count at
first use, so each count runs in its own process."""
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs every op on fixed data in float32 and float64 and saves the outputs.
SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
tf.config.threading.set_inter_op_parallelism_threads(1)
import tsne_ops

rng = np.random.default_rng(7)
x_raw = rng.normal(size=(2, 450, 40)) + 100.0  # 5 tiles of 96 + remainder; off-centre
y_raw = rng.normal(size=(2, 330, 40)) + 100.0
small = rng.normal(size=(2, 450, 5))           # the direct (dim <= 16) path
p_raw = rng.random((2, 450, 450))
p_raw = p_raw + np.swapaxes(p_raw, 1, 2)
p_raw /= p_raw.sum(axis=(1, 2), keepdims=True)
emb = rng.normal(size=(2, 450, 2)) * 3
emb3 = rng.normal(size=(2, 450, 3))
emb5 = rng.normal(size=(2, 450, 5))
g_raw = rng.normal(size=(2, 450, 450))
out = {}
for dt in (np.float32, np.float64):
    k = np.dtype(dt).name
    x, y, g = x_raw.astype(dt), y_raw.astype(dt), g_raw.astype(dt)
    out[k + "/dist_self"] = tsne_ops.pairwise_squared_distance(x).numpy()
    out[k + "/dist_cross"] = tsne_ops.pairwise_squared_distance(x, y).numpy()
    out[k + "/dist_small"] = tsne_ops.pairwise_squared_distance(small.astype(dt)).numpy()
    xt, yt = tf.constant(x), tf.constant(y)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([xt, yt])
        ls = tf.reduce_sum(g * tsne_ops.pairwise_squared_distance(xt))
        lc = tf.reduce_sum(g[:, :, :330] * tsne_ops.pairwise_squared_distance(xt, yt))
    out[k + "/dist_grad_self"] = tape.gradient(ls, xt).numpy()
    gx, gy = tape.gradient(lc, [xt, yt])
    out[k + "/dist_grad_cross_x"], out[k + "/dist_grad_cross_y"] = gx.numpy(), gy.numpy()
    d = tsne_ops.pairwise_squared_distance(small.astype(dt))
    pc, beta = tsne_ops.perplexity_affinities(d, 30.0)
    out[k + "/p_conditional"], out[k + "/beta"] = pc.numpy(), beta.numpy()
    out[k + "/joint"] = tsne_ops.joint_probabilities(d, 30.0).numpy()
    p = p_raw.astype(dt)
    for name, yy, kw in [("d2", emb, {}), ("d2_nokl", emb, dict(compute_kl=False)),
                         ("d2_dof", emb, dict(dof=0.7, exaggeration=12.0)),
                         ("d3", emb3, {}), ("d3_nokl", emb3, dict(compute_kl=False)),
                         ("d5", emb5, dict(dof=2.0))]:
        gr, kl = tsne_ops.tsne_gradient(p, yy.astype(dt), **kw)
        out[k + "/grad_" + name] = gr.numpy()
        if kl is not None:
            out[k + "/kl_" + name] = kl.numpy()
    yt = tf.constant(emb.astype(dt))
    with tf.GradientTape() as tape:
        tape.watch(yt)
        loss = tf.reduce_sum(tsne_ops.tsne_loss(p, yt))
    out[k + "/loss"] = loss.numpy()
    out[k + "/loss_grad"] = tape.gradient(loss, yt).numpy()
np.savez(sys.argv[2], **out)
"""


def _run(threads, path):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(threads), str(path)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("threads")
    return {t: _run(t, d / f"out{t}.npz") for t in (1, 2, 3)}


def test_every_op_is_bitwise_identical_for_1_2_3_threads(results):
    one = results[1]
    assert len(one) == 2 * 21
    for t in (2, 3):
        assert results[t].keys() == one.keys()
        for k in one:
            assert np.all(np.isfinite(one[k])), k
            np.testing.assert_array_equal(results[t][k], one[k], err_msg=f"{k}, {t} threads")
