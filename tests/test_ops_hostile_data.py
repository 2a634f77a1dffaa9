"""The ops on data like users have: duplicates beyond the perplexity,
all-identical rows, binarised and integer images, constant columns, a large
mean, very small and very large scales, in float32 and float64.

Every result must be finite and equal a float64 or scikit-learn reference:
  distances      within 1e-5 (float32) / 1e-12 (float64) of the largest
                 distance, against float64 on centred data;
  P(j|i)         rows that reach the perplexity: scikit-learn's
                 _binary_search_perplexity within atol 2e-5 + rtol 2e-3;
                 rows that cannot (more than `perplexity` points tied at the
                 smallest distance): their limit, uniform on the tied points,
                 within 1e-6; and the op's warning counts exactly those rows;
  joint P        the symmetrisation of that reference, rtol 2e-3, atol 1e-8;
  gradient       the numpy formula in float64, within 1e-4 (float32) / 1e-10
                 of the size of its terms (gradient_scale), on embeddings that
                 are spread,
                 collapsed to one point, far from the origin, tiny or huge;
  KL             within 1e-4 / 1e-10 relative, or nats where it is ~0.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.manifold._utils import _binary_search_perplexity

import hostile_data
import tsne_ops
from references import kl_divergence, student_t
from references import tsne_gradient as ref_gradient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 2.220446049250313e-16
DTYPES = [np.float32, np.float64]


def reference_conditional(d, perplexity):
    """scikit-learn on the rows that reach the perplexity, the tie limit on
    the others (where scikit-learn's beta, doubled 100 times without the
    shift by the row minimum, underflows a row whose ties are at d > 0)."""
    tied, limit = hostile_data.tied_rows(d, perplexity)
    ref = _binary_search_perplexity(np.asarray(d, dtype=np.float32), perplexity, 0)
    ref[tied] = limit[tied]
    return ref, tied


@pytest.fixture(scope="module", params=list(hostile_data.CASES))
def case(request):
    return request.param, hostile_data.make_case(request.param)


@pytest.mark.parametrize("dtype", DTYPES)
def test_distances(case, dtype):
    name, x = case
    x = x.astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    out = tsne_ops.pairwise_squared_distance(x).numpy()
    ref = hostile_data.centred_squared_distances(x)
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(out - ref) <= tol * ref.max()), name
    assert np.array_equal(out, out.T) and np.all(np.diag(out) == 0)
    half = x.shape[0] // 2
    cross = tsne_ops.pairwise_squared_distance(x[:half], x[half:]).numpy()
    assert np.all(np.abs(cross - ref[:half, half:]) <= tol * ref.max()), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_affinities(case, dtype):
    name, x = case
    d = tsne_ops.pairwise_squared_distance(x.astype(dtype)).numpy()
    ref, tied = reference_conditional(d, hostile_data.CASES[name])
    pc, beta = tsne_ops.perplexity_affinities(d, hostile_data.CASES[name])
    pc, beta = pc.numpy().astype(np.float64), beta.numpy()
    assert np.all(np.isfinite(pc)) and np.all(np.isfinite(beta)) and np.all(beta > 0), name
    np.testing.assert_allclose(pc.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pc[tied], ref[tied], atol=1e-6)
    np.testing.assert_allclose(pc[~tied], ref[~tied], atol=2e-5, rtol=2e-3)
    joint = tsne_ops.joint_probabilities(d, hostile_data.CASES[name]).numpy().astype(np.float64)
    n = d.shape[0]
    joint_ref = np.maximum((ref + ref.T) / (ref + ref.T).sum(), EPS)
    np.fill_diagonal(joint_ref, 0)
    assert np.all(np.isfinite(joint)) and np.array_equal(joint, joint.T)
    np.testing.assert_allclose(joint.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(joint, joint_ref, rtol=2e-3, atol=1e-8)
    assert joint.shape == (n, n)


EMBEDDINGS = ["spread", "collapsed", "offset_1e4", "scale_1e-6", "scale_1e6"]


def make_embedding(kind, n, d, rng):
    y = rng.normal(size=(n, d))
    if kind == "collapsed":  # every point in one place: q is uniform
        return np.full((n, d), 0.25)
    if kind == "offset_1e4":
        return y + 1e4
    if kind == "scale_1e-6":
        return y * 1e-6
    if kind == "scale_1e6":
        return y * 1e6
    return y * 3


def gradient_scale(p, y):
    """4 max_i sum_j (p_ij + q_ij) u_ij |y_i - y_j|: the size of the terms the
    gradient adds up, which is what its rounding error is proportional to
    (where P ~ Q the gradient itself cancels to almost nothing)."""
    p = p.astype(np.float64)
    y = y.astype(np.float64)
    u, w = student_t(y, 1.0)
    q = w / w.sum()
    diff = np.abs(y[:, None, :] - y[None, :, :])
    return max(4 * (((p + q) * u)[..., None] * diff).sum(1).max(), 1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", EMBEDDINGS)
def test_gradient_and_loss(case, dtype, kind):
    name, x = case
    rng = np.random.default_rng(len(name) * 31 + len(kind))
    p = tsne_ops.joint_probabilities(
        tsne_ops.pairwise_squared_distance(x.astype(dtype)), hostile_data.CASES[name]).numpy()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for d in (2, 3):
        y = make_embedding(kind, p.shape[0], d, rng).astype(dtype)
        ref = ref_gradient(p, y)
        ref_kl = kl_divergence(p, y)
        scale = gradient_scale(p, y)
        for compute_kl in (True, False):
            grad, kl = tsne_ops.tsne_gradient(p, y, compute_kl=compute_kl)
            grad = grad.numpy()
            assert np.all(np.isfinite(grad)), (name, kind, d)
            assert np.abs(grad - ref).max() <= tol * scale, (name, kind, d, compute_kl)
            if compute_kl:
                np.testing.assert_allclose(float(kl), ref_kl, rtol=tol, atol=tol)
        loss = float(tsne_ops.tsne_loss(p, y))
        np.testing.assert_allclose(loss, ref_kl, rtol=tol, atol=tol)


# Runs perplexity_affinities on every case in a process whose TensorFlow
# logs warnings (the suite silences them), marking each call on stderr.
COUNT_SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
import numpy as np
import tsne_ops
import hostile_data as h
for name in h.CASES:
    for dt in (np.float32, np.float64):
        d = tsne_ops.pairwise_squared_distance(h.make_case(name).astype(dt)).numpy()
        print("@@", name, np.dtype(dt).name, file=sys.stderr, flush=True)
        tsne_ops.perplexity_affinities(d, h.CASES[name])[0].numpy()
        np.save({out!r} + "/" + name + "_" + np.dtype(dt).name + ".npy", d)
print("@@ end", file=sys.stderr, flush=True)
"""


def test_unconverged_rows_are_counted(tmp_path):
    # The op reports rows that cannot reach the perplexity as a warning,
    # "K of M rows did not reach perplexity ..." (cc/tf_ops/affinity_ops.cc). It
    # must name exactly the tied rows: float32 used to count none of them.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = COUNT_SCRIPT.format(tests=os.path.join(REPO, "tests"), out=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sections = re.split(r"^@@ ", r.stderr, flags=re.M)[1:]
    assert sections[-1].startswith("end")
    seen = 0
    for sec in sections[:-1]:
        name, dt = sec.split()[:2]
        d = np.load(tmp_path / f"{name}_{dt}.npy")
        expected = int(hostile_data.tied_rows(d, hostile_data.CASES[name])[0].sum())
        m = re.search(r"tsne_ops: (\d+) of (\d+) rows did not reach perplexity", sec)
        got = int(m.group(1)) if m else 0
        assert got == expected, (name, dt, got, expected)
        if m:
            assert int(m.group(2)) == d.shape[0]
        seen += 1
    assert seen == 2 * len(hostile_data.CASES)
