"""Property-based fuzzing of every op and both estimators (hypothesis).

The property: every call ends either in a finite result that keeps the op's
invariants (distances >= 0, exactly symmetric with a zero diagonal and close
to a float64 reference; P rows summing to 1; joint P symmetric and summing
to 1; gradients shaped like y and summing to zero over the points), or in an
``InvalidArgumentError`` / ``ValueError`` / ``TypeError`` (estimators:
``ValueError`` / ``TypeError``) whose message names the offending argument.
What is valid, extreme or invalid is decided by ``fuzz_cases``, from what was
built, against the documented contract; valid input must succeed.

Two ways to run it:

- The default suite runs a fixed (derandomised) subset of a few hundred
  examples in this process. A crash of the process (segfault, abort) ends the
  pytest run there: the long run is the one that survives crashes.
- ``python -m pytest tests/test_fuzz.py -m fuzz -s`` runs the long run: the
  same properties with random seeds and more examples, in worker
  subprocesses of about ``TSNE_FUZZ_BATCH_SECONDS`` each until
  ``TSNE_FUZZ_SECONDS`` (default 540) are spent. Each worker writes every case
  to a trace file before calling it, so a worker that dies is reported as a
  failure with the input that killed it, and the next worker carries on. It
  prints, and writes as JSON to ``TSNE_FUZZ_RECORD`` (default: the test's
  tmp_path), how many calls it made, per op, and what failed.
"""
import collections
import json
import os
import re
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fuzz_cases as fc
import tsne_ops
from fuzz_cases import BAD, EDGE, OK, REAL

PROFILE = os.environ.get("TSNE_FUZZ_PROFILE", "fast")
# Examples per property. The estimators are ~100x slower per call than the ops.
EXAMPLES = {
    "fast": {"op": 40, "tsne": 6, "parametric": 3},
    "long": {"op": 250, "tsne": 8, "parametric": 3},
}
TRACE = os.environ.get("TSNE_FUZZ_TRACE")  # set in a worker of the long run
CALLS = collections.Counter()
_trace_file = open(TRACE, "a", buffering=1) if TRACE else None


def _settings(weight):
    # Shrinking an estimator case re-runs fits for minutes; its description
    # (a seed and a few parameters) is short enough unshrunk.
    phases = [p for p in Phase if weight == "op" or p != Phase.shrink]
    return settings(
        max_examples=EXAMPLES[PROFILE][weight],
        phases=phases,
        deadline=None,
        database=None,
        derandomize=PROFILE == "fast",
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


OP_ERRORS = (tf.errors.InvalidArgumentError, ValueError, TypeError)
ESTIMATOR_ERRORS = (ValueError, TypeError)


def _message(e):
    # Drop TensorFlow's "{{function_node ...}}" prefix and "[Op:...]" suffix,
    # which would otherwise let a lone letter such as "p" match by chance.
    text = e.message if isinstance(e, tf.errors.OpError) else str(e)
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    return re.sub(r"\[Op:[^\]]*\].*$", "", text, flags=re.S)


def _names(message, names):
    return [n for n in names
            if re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", message)]


def check_call(what, args, fn, invariants, errors=OP_ERRORS):
    """Calls ``fn()`` and asserts the property; ``args`` maps names to fuzz_cases.Arg."""
    CALLS[what] += 1
    if _trace_file:
        _trace_file.write(f"{what}\t{args}\n")
    status = fc.worst(*(a.status for a in args.values()))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn()
    except errors as e:
        message = _message(e)
        assert status != OK, f"{what}: valid input refused with {type(e).__name__}: {message}"
        # Bad input must be refused by name; an extreme argument may be the one
        # refused first (a 1e-300 dof before a NaN in p).
        named = (BAD, EDGE) if status == BAD else (EDGE,)
        blamed = [n for n, a in args.items() if a.status in named]
        assert _names(message, blamed), (
            f"{what}: {type(e).__name__} names none of {blamed}: {message!r}")
        return None
    except Exception as e:  # noqa: BLE001 -- any other type breaks the contract
        raise AssertionError(
            f"{what}: {type(e).__name__} instead of a named argument error: {_message(e)}") from e
    assert status != BAD, f"{what}: invalid input accepted: {args}"
    invariants(result)
    return result


def _np(t):
    return None if t is None else np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def _finite(name, a):
    assert np.all(np.isfinite(a)), f"{name} is not finite: {a}"


def _rtol(dtype):
    return {"float32": 1e-4, "float64": 1e-9}[dtype]


def _tiny(dtype):
    return 1e3 * np.finfo(dtype).tiny


def _batched(a):
    return a if a.ndim == 3 else a[None]


def _reference_distances(x, y):
    with np.errstate(all="ignore"):
        return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def _check_distances(out, x, y, dtype):
    _finite("distances", out)
    assert out.shape == x.shape[:-1] + (y.shape[-2],)
    assert np.all(out >= 0)
    ref = _batched(_reference_distances(x, y))
    out3 = _batched(out)
    # Accurate relative to the largest distance of the batch (the data's
    # spread), not to |x|^2: distances do not change under translation.
    scale = ref.max(axis=(1, 2), keepdims=True) if ref.size else 0.0
    err = np.abs(out3 - ref)
    assert np.all(err <= _rtol(dtype) * scale + _tiny(dtype)), (
        f"distances off by {err.max()} for a largest distance of {np.max(scale)}")


# ---------------------------------------------------------------- distances --

@_settings("op")
@given(x=fc.points("x"))
def test_fuzz_pairwise_squared_distance_self(x):
    def invariants(result):
        out, grad = result
        _check_distances(out, x.array, x.array, x.dtype)
        assert np.array_equal(out, np.swapaxes(out, -1, -2)), "not exactly symmetric"
        assert np.all(np.diagonal(_batched(out), axis1=1, axis2=2) == 0), "diagonal not zero"
        # d/dx_i sum_jk |x_j - x_k|^2 = 4 (n x_i - sum_j x_j)
        _finite("the distance gradient", grad)
        xb = _batched(x.array)
        ref = 4 * (xb.shape[1] * xb - xb.sum(axis=1, keepdims=True))
        # Each entry sums n terms of size up to 4 |x|: rounding scales with |x|.
        size = 4 * xb.shape[1] * np.abs(xb).max() if xb.size else 0.0
        tol = 1e2 * _rtol(x.dtype) * size + _tiny(x.dtype)
        assert np.all(np.abs(_batched(grad) - ref) <= tol), "distance gradient off"

    def run():
        if x.dtype not in REAL:
            return tsne_ops.pairwise_squared_distance(x.value), None
        xt = tf.convert_to_tensor(x.value)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            out = tsne_ops.pairwise_squared_distance(xt)
            total = tf.reduce_sum(out)
        return _np(out), _np(tape.gradient(total, xt))

    check_call("pairwise_squared_distance(x)", {"x": x}, run, invariants)


@st.composite
def _cross_args(draw):
    x = draw(fc.points("x"))
    shape = np.shape(x.value) if x.dtype else ()
    if len(shape) >= 2 and draw(st.integers(0, 5)):
        # Mostly compatible: same batch and dim, same dtype, another number of points.
        m = draw(st.sampled_from([0, 1, 3, 6]))
        batch = shape[0] if len(shape) == 3 else None
        y = draw(fc.points("y", n=m, dim=shape[-1], batch=batch,
                           dtype=x.dtype if draw(st.integers(0, 9)) else None, none=False))
    else:
        y = draw(fc.points("y", none=False))  # y=None is the self-distance call
    sx, sy = np.shape(x.value) if x.dtype else None, np.shape(y.value) if y.dtype else None
    if sx is not None and sy is not None and x.dtype in REAL and y.dtype in REAL:
        mismatched = (len(sx) != len(sy) or sx[-1:] != sy[-1:]
                      or (len(sx) == 3 and len(sy) == 3 and sx[0] != sy[0]))
        if mismatched:
            x.status = y.status = BAD
        elif y.dtype != x.dtype:
            y.status = BAD
    return x, y


@_settings("op")
@given(args=_cross_args())
def test_fuzz_pairwise_squared_distance_cross(args):
    x, y = args

    def invariants(out):
        _check_distances(_np(out), x.array, y.array, x.dtype)

    check_call("pairwise_squared_distance(x, y)", {"x": x, "y": y},
               lambda: tsne_ops.pairwise_squared_distance(x.value, y.value), invariants)


# --------------------------------------------------------------- affinities --

@st.composite
def _affinity_args(draw):
    d = draw(fc.square_distances())
    shape = np.shape(d.value) if d.dtype else ()
    n = shape[-1] if len(shape) in (2, 3) and shape[-1] == shape[-2] and shape[-1] >= 2 else None
    perplexity = draw(fc.scalars("perplexity", high=None if n is None else n - 1.0))
    return d, perplexity


def _row_sum_tol(dtype, n):
    return {"float32": 1e-5, "float64": 1e-11}[dtype] * max(n, 1)


@_settings("op")
@given(args=_affinity_args())
def test_fuzz_perplexity_affinities(args):
    d, perplexity = args

    def invariants(result):
        p, beta = _np(result[0]), _np(result[1])
        _finite("P(j|i)", p)
        _finite("beta", beta)
        assert p.shape == d.array.shape and beta.shape == d.array.shape[:-1]
        assert np.all(p >= 0)
        p3 = _batched(p)
        assert np.all(np.diagonal(p3, axis1=1, axis2=2) == 0)
        n = p3.shape[-1]
        assert np.all(np.abs(p3.sum(-1) - 1) <= _row_sum_tol(d.dtype, n)), "rows do not sum to 1"

    check_call("perplexity_affinities", {"sq_dist": d, "perplexity": perplexity},
               lambda: tsne_ops.perplexity_affinities(d.value, perplexity.value), invariants)


@_settings("op")
@given(args=_affinity_args())
def test_fuzz_joint_probabilities(args):
    d, perplexity = args

    def invariants(result):
        p = _np(result)
        _finite("P", p)
        assert p.shape == d.array.shape
        p3 = _batched(p)
        assert np.all(p3 >= 0)
        assert np.all(np.diagonal(p3, axis1=1, axis2=2) == 0)
        np.testing.assert_allclose(p3, np.swapaxes(p3, 1, 2), rtol=1e-6, atol=0)
        n = p3.shape[-1]
        total = p3.sum(axis=(1, 2))
        assert np.all(np.abs(total - 1) <= _row_sum_tol(d.dtype, n)), "P does not sum to 1"

    check_call("joint_probabilities", {"sq_dist": d, "perplexity": perplexity},
               lambda: tsne_ops.joint_probabilities(d.value, perplexity.value), invariants)


# ----------------------------------------------------------------- gradient --

@st.composite
def _gradient_args(draw):
    y = draw(fc.points("y", n=draw(st.sampled_from([0, 1, 2, 3, 5, 8, 13, 40]))))
    if y.dtype is not None and y.status != BAD:
        shape = np.shape(y.value)
        if shape[-2] < 2:
            y.status = BAD  # y needs at least 2 points
    p = draw(fc.probabilities(y))
    if p.dtype in REAL and y.dtype in REAL and p.dtype != y.dtype:
        y.status = BAD  # y must have the same dtype as p
    dt = p.dtype if p.dtype in REAL else "float32"
    exaggeration = draw(fc.scalars("exaggeration", dtype=dt))
    dof = draw(fc.scalars("dof", dtype=dt))
    if p.status == BAD and y.status != BAD and p.dtype in REAL and y.dtype in REAL:
        shape_p, shape_y = np.shape(p.value), np.shape(y.value)
        if len(shape_p) != len(shape_y):
            y.status = BAD  # "p and y must have the same rank" names both
    return p, y, exaggeration, dof


def _gradient_sum_ok(grad, dtype):
    """sum_i grad_i = 0: P and Q are symmetric, so the forces between i and j cancel."""
    g = _batched(grad)
    total = np.abs(g.sum(axis=1))
    return np.all(total <= 1e3 * _rtol(dtype) * (np.abs(g).sum(axis=1) + _tiny(dtype)))


@_settings("op")
@given(args=_gradient_args(), compute_kl=st.booleans())
def test_fuzz_tsne_gradient(args, compute_kl):
    p, y, exaggeration, dof = args

    def invariants(result):
        grad, kl = _np(result[0]), _np(result[1])
        _finite("grad", grad)
        assert grad.shape == y.array.shape
        if compute_kl:
            _finite("kl", kl)
            assert kl.shape == y.array.shape[:-2]
        else:
            assert kl is None
        if p.status == OK:
            assert _gradient_sum_ok(grad, y.dtype), "the gradient does not sum to zero"
            if compute_kl:
                assert np.all(kl >= -1e2 * _rtol(y.dtype)), f"KL(P || Q) < 0: {kl}"

    check_call(f"tsne_gradient(compute_kl={compute_kl})",
               {"p": p, "y": y, "exaggeration": exaggeration, "dof": dof},
               lambda: tsne_ops.tsne_gradient(p.value, y.value, exaggeration=exaggeration.value,
                                              dof=dof.value, compute_kl=compute_kl),
               invariants)


def _watched(arg, tape):
    if arg.dtype not in REAL:
        return arg.value
    t = tf.convert_to_tensor(arg.value)
    tape.watch(t)
    return t


@_settings("op")
@given(args=_gradient_args())
def test_fuzz_tsne_loss_and_its_gradient(args):
    p, y, _, dof = args

    def run():
        with tf.GradientTape(persistent=True) as tape:
            pt, yt = _watched(p, tape), _watched(y, tape)
            kl = tsne_ops.tsne_loss(pt, yt, dof=dof.value)
            total = tf.reduce_sum(kl)
        return _np(kl), _np(tape.gradient(total, yt)), _np(tape.gradient(total, pt)), pt, yt

    def invariants(result):
        kl, grad_y, grad_p, pt, yt = result
        _finite("kl", kl)
        assert kl.shape == y.array.shape[:-2]
        _finite("d kl / d y", grad_y)
        _finite("d kl / d p", grad_p)
        assert grad_y.shape == y.array.shape and grad_p.shape == p.array.shape
        if p.status == OK:
            assert np.all(kl >= -1e2 * _rtol(y.dtype)), f"KL(P || Q) < 0: {kl}"
            # P sums to 1: the loss's gradient is the fused t-SNE gradient.
            ref, _ = tsne_ops.tsne_gradient(pt, yt, dof=dof.value, compute_kl=False)
            ref = _np(ref)
            tol = 1e1 * _rtol(y.dtype) * np.abs(ref).max(initial=0) + _tiny(y.dtype)
            assert np.all(np.abs(grad_y - ref) <= tol), "tsne_loss gradient != tsne_gradient"

    check_call("tsne_loss+GradientTape", {"p": p, "y": y, "dof": dof}, run, invariants)


# --------------------------------------------------------------- estimators --

def _table_like(shape, images):
    """[N, D] with D >= 1, or (``images``: ParametricTSNE's built-in encoders)
    [N, H, W] or [N, H, W, 1] with no empty dimension."""
    if len(shape) == 2:
        return shape[-1] >= 1
    if images and (len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)):
        return all(s >= 1 for s in shape[1:])
    return False


def _estimator_x(draw, target, images=False):
    """X for an estimator: valid unless `target` is "X" (one broken argument at a time)."""
    if target == "X":
        x = draw(fc.points("X", n=draw(st.sampled_from([0, 1, 2, 3, 8])),
                           dim=draw(st.sampled_from([0, 1, 2, 5])),
                           dtype=draw(st.sampled_from(["float32", "float64", "int64", "uint8",
                                                       "float16", "bool", "complex128",
                                                       "string"]))))
    else:
        x = draw(fc.points("X", n=draw(st.sampled_from([5, 8, 14, 24, 40])),
                           dim=draw(st.sampled_from([1, 2, 5, 12])),
                           dtype=draw(st.sampled_from(["float32", "float64", "int64", "uint8"])),
                           valid=True))
    shape = np.shape(x.value) if x.dtype else ()
    # The estimators' contract is scikit-learn's: any real numeric 2-D array
    # with finite values; integers are data like any other.
    table = _table_like(shape, images)
    if x.dtype in ("int64", "uint8"):
        x.status = OK if table else BAD
    elif x.dtype in ("float16", "bool"):
        x.status = EDGE if table else BAD
    elif x.dtype in REAL:
        if not table:
            x.status = BAD
        elif len(shape) != 2 and x.array is not None:
            # points() judged the rank by the ops' rule ([N, D] or [B, N, D]);
            # judge an image-shaped X by its values alone.
            x.status, _ = fc.classify_real("X", x.array, True, x.kind)
    if x.status != BAD and len(shape) >= 2:
        n = shape[0]
        if n == 0:
            x.status = BAD
        elif n < 3:
            x.status = fc.worst(x.status, EDGE)  # scikit-learn accepts 2 samples, we need 3
    # ParametricTSNE also takes images [N, H, W]: the sample count is shape[0].
    return x, (shape[0] if len(shape) >= 2 else 10)


def _estimator_perplexity(draw, n, target):
    if target == "perplexity":
        perplexity = draw(fc.scalars("perplexity", high=max(n - 1.0, 0.5)))
    else:
        v = draw(st.floats(1.0, max(1.0, n - 1.5)))
        perplexity = fc.Arg(v, OK, f"perplexity={v!r}")
    v = perplexity.value
    if n < 4:
        # With so few samples the limits on perplexity (and on X) meet: the
        # error may name either.
        perplexity.status = fc.worst(perplexity.status, EDGE)
    if isinstance(v, (float, np.floating)) and max(n - 1.0, 0.5) <= v < n:
        perplexity.status = EDGE  # scikit-learn allows perplexity < n; we need < n - 1
    if tf.is_tensor(v):
        perplexity.status = EDGE  # a tensor is not a scikit-learn parameter value
    return perplexity


def _option(draw, name, target, ok, edge=(), bad=()):
    """A parameter: an OK value, or (when it is the `target`) an edge or bad one."""
    if target == name:
        choices = [(v, EDGE) for v in edge] + [(v, BAD) for v in bad]
    else:
        choices = [(v, OK) for v in ok]
    v, status = draw(st.sampled_from(choices))
    return fc.Arg(v, status, f"{name}={v!r}")


TSNE_PARAMS = ["n_components", "early_exaggeration", "learning_rate", "max_iter", "init", "dof",
               "dtype"]


@st.composite
def _tsne_args(draw):
    target = draw(st.sampled_from([None, None, "X", "perplexity"] + TSNE_PARAMS))
    x, n = _estimator_x(draw, target)
    params = {
        "perplexity": _estimator_perplexity(draw, n, target),
        "n_components": _option(draw, "n_components", target, [2, 3], edge=[1, 4],
                                bad=[0, -1, "2", 2.5, None]),
        "early_exaggeration": _option(draw, "early_exaggeration", target, [1.0, 4.0, 12.0],
                                      bad=[0.5, float("nan"), "big"]),
        "learning_rate": _option(draw, "learning_rate", target, ["auto", 10.0, 200.0],
                                 bad=[0.0, -1.0, "fast", float("inf")]),
        "max_iter": _option(draw, "max_iter", target, [1, 10, 60], bad=[0, -5, 2.5, "100"]),
        "init": _option(draw, "init", target, ["pca", "random"], bad=["spectral", 3]),
        "dof": _option(draw, "dof", target, [None, 1.0, 0.5, 3.0],
                       bad=[0.0, -1.0, float("nan"), "one"]),
        "dtype": _option(draw, "dtype", target, ["float32", "float64"], bad=["float16", "int32"]),
    }
    shape, k = np.shape(x.value) if x.dtype else (), params["n_components"]
    if (len(shape) == 2 and params["init"].value == "pca" and isinstance(k.value, int)
            and shape[1] < k.value):
        # PCA cannot give more components than features; scikit-learn's TSNE
        # refuses this too (naming n_components).
        k.status = fc.worst(k.status, EDGE)
    return x, params


@_settings("tsne")
@given(args=_tsne_args())
def test_fuzz_tsne_estimator(args):
    x, params = args

    def run():
        model = tsne_ops.TSNE(**{k: a.value for k, a in params.items()}, random_state=0)
        return model, model.fit_transform(x.value)

    def invariants(result):
        model, emb = result
        emb = np.asarray(emb)
        _finite("embedding", emb)
        assert emb.shape == (np.shape(x.value)[0], params["n_components"].value)
        _finite("kl_divergence_", model.kl_divergence_)

    check_call("TSNE.fit_transform", {"X": x, **params}, run, invariants,
               errors=ESTIMATOR_ERRORS)


PARAMETRIC_PARAMS = ["n_components", "batch_size", "dof", "learning_rate", "early_exaggeration"]


@st.composite
def _parametric_args(draw):
    target = draw(st.sampled_from([None, None, "X", "perplexity"] + PARAMETRIC_PARAMS))
    x, n = _estimator_x(draw, target, images=True)
    params = {
        "perplexity": _estimator_perplexity(draw, n, target),
        "n_components": _option(draw, "n_components", target, [2, 3], edge=[1], bad=[0, "2"]),
        "batch_size": _option(draw, "batch_size", target, [1000, max(n, 3)], bad=[2, 0, "all"]),
        "dof": _option(draw, "dof", target, [None, 1.0, 0.6], bad=[0.0, float("inf")]),
        "learning_rate": _option(draw, "learning_rate", target, [1e-3, 0.05], bad=[0.0, -1.0]),
        "early_exaggeration": _option(draw, "early_exaggeration", target, [1.0, 4.0], bad=[0.0]),
    }
    return x, params


@_settings("parametric")
@given(args=_parametric_args())
def test_fuzz_parametric_tsne_estimator(args):
    x, params = args

    def run():
        model = tsne_ops.ParametricTSNE(**{k: a.value for k, a in params.items()}, epochs=1,
                                        random_state=0)
        emb = model.fit_transform(x.value)
        return model, emb, model.transform(x.value)

    def invariants(result):
        _, emb, again = result
        shape = (np.shape(x.value)[0], params["n_components"].value)
        for what, e in (("fit_transform", emb), ("transform", again)):
            e = np.asarray(e)
            _finite(what, e)
            assert e.shape == shape, f"{what} has shape {e.shape}, expected {shape}"

    check_call("ParametricTSNE.fit_transform+transform", {"X": x, **params}, run, invariants,
               errors=ESTIMATOR_ERRORS)


PROPERTIES = [
    test_fuzz_pairwise_squared_distance_self,
    test_fuzz_pairwise_squared_distance_cross,
    test_fuzz_perplexity_affinities,
    test_fuzz_joint_probabilities,
    test_fuzz_tsne_gradient,
    test_fuzz_tsne_loss_and_its_gradient,
    test_fuzz_tsne_estimator,
    test_fuzz_parametric_tsne_estimator,
]


# ------------------------------------------- what the fuzz runs found, pinned --

_Invalid = tf.errors.InvalidArgumentError
_P6 = fc.joint_p(np.random.default_rng(0), (6, 6))
_D6 = np.ones((6, 6)) - np.eye(6)


@pytest.mark.parametrize("call, match", [
    # Finite points whose squared distance overflows: was a silent inf.
    (lambda: tsne_ops.pairwise_squared_distance(np.array([[0.0], [1e20]], np.float32)),
     r"squared distance between x\[0, 0\] and x\[0, 1\] overflows float32"),
    (lambda: tsne_ops.pairwise_squared_distance(np.array([[0.0]]), np.array([[1e155]])),
     r"between x\[0, 0\] and y\[0, 0\] overflows float64"),
    # Not arrays: were ValueErrors naming no argument.
    (lambda: tsne_ops.pairwise_squared_distance([[1.0, 2.0], [3.0]]), r"^x must be a float32"),
    (lambda: tsne_ops.tsne_gradient(_P6, None), r"^y must be a float32"),
    # Wrong types for scalars: were accepted (True, "2") or an UnimplementedError.
    (lambda: tsne_ops.joint_probabilities(_D6, True), r"perplexity must be a number, but is True"),
    (lambda: tsne_ops.joint_probabilities(_D6, "2"), r"perplexity must be a number, but is '2'"),
    (lambda: tsne_ops.tsne_gradient(_P6, np.ones((6, 2)), dof=tf.constant("1")),
     r"dof must be a real number, but has dtype string"),
    (lambda: tsne_ops.tsne_loss(_P6, np.ones((6, 2)), dof=tf.constant(1 + 2j)),
     r"dof must be a real number, but has dtype complex128"),
    # Values the dtype cannot hold: were quoted as "but is 0" / "but is inf".
    (lambda: tsne_ops.joint_probabilities(_D6, 1e-50),
     r"perplexity = 1e-50 is outside the range of float32"),
    (lambda: tsne_ops.tsne_loss(_P6.astype(np.float32), np.ones((6, 2), np.float32), dof=1e-45),
     r"dof = 1e-45 is outside the range of float32"),
    # NaN on p's diagonal (never read by the kernel): was accepted.
    (lambda: tsne_ops.tsne_loss(_P6 + np.diag([0, np.nan, 0, 0, 0, 0]), np.ones((6, 2))),
     r"p must be finite, but p\[0, 1, 1\] = nan"),
])
def test_found_by_fuzzing_refused_by_name(call, match):
    with pytest.raises(_Invalid, match=match):
        call()


def test_found_by_fuzzing_perplexity_just_below_n_minus_1():
    # 4.99999999 rounded to nearest float32 is 5 = n - 1, which was refused.
    p = tsne_ops.joint_probabilities(_D6, 4.99999999).numpy()
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1)


def test_found_by_fuzzing_loss_gradient_in_p_finite_for_huge_y():
    # float32 y at 1e19: the loss was finite, its gradient in p an error
    # about the squared distances of "x" (the p-gradient's own distance call).
    p = tf.constant(_P6, tf.float32)
    y = tf.constant(np.random.default_rng(1).normal(size=(6, 2)) * 1e19, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(p)
        kl = tsne_ops.tsne_loss(p, y)
    assert np.isfinite(kl.numpy()) and np.isfinite(tape.gradient(kl, p).numpy()).all()


def test_found_by_fuzzing_loss_gradient_in_p_finite_for_tiny_dof():
    # float32 y at a scale of 1e4 with dof = 1e-30: the loss and its gradient
    # in y were finite, its gradient in p had inf (d2 / dof overflowed).
    rng = np.random.default_rng(0)
    p = tf.constant(_P6, tf.float32)
    y = tf.constant(rng.normal(size=(6, 2)) * 1e4, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(p)
        kl = tsne_ops.tsne_loss(p, y, dof=1e-30)
    grad_p = tape.gradient(kl, p).numpy()
    assert np.isfinite(kl.numpy()) and np.isfinite(grad_p).all()
    # Off the diagonal it is log(p / q) + 1 with q computed in float64.
    yd = y.numpy().astype(np.float64)
    d2 = ((yd[:, None] - yd[None]) ** 2).sum(-1)
    log_w = -0.5 * (1e-30 + 1) * (np.log(np.where(d2 > 0, d2, 1)) - np.log(1e-30))
    off = ~np.eye(6, dtype=bool)
    log_q = log_w - np.log(np.exp(log_w - log_w[off].max())[off].sum()) - log_w[off].max()
    ref = np.log(_P6[off]) - log_q[off] + 1
    np.testing.assert_allclose(grad_p[off], ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------- long run --

def _describe(e):
    """The error and hypothesis's failing case, for each of several distinct failures."""
    if isinstance(e, BaseExceptionGroup):
        return "\n".join(_describe(sub) for sub in e.exceptions)[-6000:]
    text = "".join(traceback.format_exception_only(type(e), e))
    return text[:3000]


def _worker(seconds, report):
    """One batch of the long run: every property in turn, new seeds each round."""
    deadline = time.monotonic() + seconds
    failures, rounds = [], 0
    while time.monotonic() < deadline:
        for prop in PROPERTIES:
            if time.monotonic() >= deadline:
                break
            try:
                prop()
            except BaseException as e:  # noqa: BLE001 -- record and go on with the others
                if isinstance(e, KeyboardInterrupt):
                    raise
                failures.append({"property": prop.__name__, "error": _describe(e)})
        rounds += 1
    with open(report, "w") as f:
        json.dump({"calls": dict(CALLS), "failures": failures, "rounds": rounds}, f)


@pytest.mark.fuzz
def test_long_fuzz_run(tmp_path):
    budget = float(os.environ.get("TSNE_FUZZ_SECONDS", 540))
    batch = float(os.environ.get("TSNE_FUZZ_BATCH_SECONDS", 180))
    record = os.environ.get("TSNE_FUZZ_RECORD") or str(tmp_path / "fuzz_long_run.json")
    env = dict(os.environ, TSNE_FUZZ_PROFILE="long", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")])
    end = time.monotonic() + budget
    calls, failures, crashes, workers = collections.Counter(), [], [], 0
    while end - time.monotonic() > 30:
        seconds = min(batch, end - time.monotonic() - 20)
        trace, report = tmp_path / f"trace{workers}.txt", tmp_path / f"report{workers}.json"
        env["TSNE_FUZZ_TRACE"] = str(trace)
        try:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                   str(seconds), str(report)], env=env, capture_output=True,
                                  text=True, timeout=seconds + 300)
            code, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
        except subprocess.TimeoutExpired as e:
            code, tail = "timeout", str(e)[-2000:]
        workers += 1
        lines = trace.read_text().splitlines() if trace.exists() else []
        if report.exists() and code == 0:
            result = json.loads(report.read_text())
            calls.update(result["calls"])
            failures += result["failures"]
        else:
            # The process died: every traced case but the last one returned.
            for line in lines:
                calls[line.split("\t", 1)[0]] += 1
            crashes.append({"returncode": code, "last_case": lines[-1] if lines else None,
                            "output_tail": tail})
    summary = {"seconds": budget, "workers": workers, "total_calls": sum(calls.values()),
               "calls": dict(calls), "crashes": crashes, "failures": failures}
    with open(record, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nlong fuzz run: {summary['total_calls']} calls in {workers} workers, "
          f"{len(crashes)} crashes, {len(failures)} property failures; record: {record}")
    for name, count in sorted(calls.items()):
        print(f"  {count:7d}  {name}")
    for f in crashes + failures:
        print(json.dumps(f, indent=1)[:3000])
    assert not crashes, f"{len(crashes)} worker processes died; see {record}"
    assert not failures, f"{len(failures)} property failures; see {record}"


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker(float(sys.argv[2]), sys.argv[3])
