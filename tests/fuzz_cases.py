"""Hypothesis strategies for tests/test_fuzz.py: arguments that know whether they are valid.

Each strategy draws a small description (shape, dtype, a kind of values, a
numpy seed) and builds the argument from it, so that hypothesis shrinks the
description rather than thousands of floats, and a failure prints a case one
can paste. Every argument is classified from what was finally built (after
the cast to its dtype: 1e300 in float32 is inf, hence bad) against the
contract the docstrings and DESIGN.md state:

- ``OK``: within the contract; the call must succeed.
- ``EDGE``: within the contract but extreme (1e-30 or 1e300 scales, p that is
  not normalised or not symmetric); the call may succeed or refuse with an
  error that names the argument.
- ``BAD``: outside the contract; the call must refuse with an error that
  names the argument.
"""
import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

OK, EDGE, BAD = "ok", "edge", "bad"
_RANK = {OK: 0, EDGE: 1, BAD: 2}

REAL = ("float32", "float64")
OTHER_DTYPES = ("float16", "bfloat16", "int32", "int64", "uint8", "bool", "complex64",
                "complex128", "string")
# Legal values, and the values a user's data really has: duplicate rows (more
# than perplexity of them), binarised or small-integer images, constant
# features, data far from the origin.
OK_KINDS = ("normal", "duplicates", "identical_rows", "constant_columns", "integers",
            "binary", "offset")
EDGE_KINDS = ("tiny", "huge")
BAD_KINDS = ("nan", "inf", "-inf")


class Arg:
    """One argument: the value passed, its status, and how it was made."""

    def __init__(self, value, status, desc, dtype=None, array=None, kind=None):
        self.value = value
        self.kind = kind  # the kind of values drawn (see kinds()), for re-judging
        self.status = status
        self.desc = desc  # what a failure report prints: enough to rebuild it
        self.dtype = dtype  # the dtype TensorFlow will see (None: not an array)
        self.array = array  # float64 copy of a real numeric array

    def __repr__(self):
        return f"<{self.status}: {self.desc}>"


def worst(*statuses):
    return max(statuses, key=_RANK.__getitem__)


def _base_values(rng, kind, shape, dtype):
    """float64 values of `kind`; scales beyond the dtype become inf when cast."""
    x = rng.normal(size=shape)
    if len(shape) >= 2 and shape[-2] > 0:
        n = shape[-2]
        if kind == "duplicates":
            x = np.take(x, rng.integers(0, max(1, n // 3), n), axis=-2)
        elif kind == "identical_rows":
            x = np.repeat(np.take(x, [0], axis=-2), n, axis=-2)
        elif kind == "constant_columns" and shape[-1] > 0:
            cols = rng.random(shape[-1]) < 0.5
            x[..., cols] = 3.25
    if kind == "integers":
        x = rng.integers(0, 5, size=shape).astype(np.float64)
    elif kind == "binary":
        x = (rng.random(size=shape) < 0.3).astype(np.float64)
    elif kind == "offset":
        x = x + 1000.0
    elif kind == "tiny":
        x = x * (1e-300 if dtype == "float64" and rng.random() < 0.5 else 1e-30)
    elif kind == "huge":
        x = x * rng.choice([1e15, 1e19, 1e30, 1e150, 1e300])
    elif kind in BAD_KINDS and x.size:
        x.flat[rng.integers(0, x.size)] = float(kind)
    return x


def convert(x, dtype, container):
    """The float64 array `x` as `dtype` in a numpy array, a tf.Tensor or a tf.Variable."""
    with np.errstate(all="ignore"):
        if dtype == "bfloat16":
            return tf.cast(tf.constant(x, tf.float32), tf.bfloat16)
        if dtype == "string":
            return np.asarray(x).astype(str)
        if dtype == "bool":
            v = np.asarray(x) > 0
        elif dtype.startswith("complex"):
            v = (np.asarray(x) + 0.5j).astype(dtype)
        elif dtype.startswith(("int", "uint")):
            v = np.nan_to_num(np.asarray(x)).clip(-100, 100).astype(dtype)
        else:
            v = np.asarray(x).astype(dtype)
    if container == "tensor":
        return tf.constant(v)
    if container == "variable":
        return tf.Variable(v)
    return v


def as_float64(value):
    """float64 copy of a built real array (for the classification and references)."""
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float64)


@st.composite
def dtypes(draw, valid=0.85):
    if draw(st.floats(0, 1)) < valid:
        return draw(st.sampled_from(REAL))
    return draw(st.sampled_from(OTHER_DTYPES))


@st.composite
def kinds(draw):
    """OK kinds most of the time; scales at the edges and non-finite entries sometimes."""
    r = draw(st.integers(0, 19))
    if r < 14:
        return draw(st.sampled_from(OK_KINDS))
    if r < 17:
        return draw(st.sampled_from(EDGE_KINDS))
    return draw(st.sampled_from(BAD_KINDS))


@st.composite
def shapes(draw, inner, batch=None):
    """A shape: mostly rank 2 or 3 around `inner` (a tuple of sizes), sometimes rank 0, 1 or 4."""
    r = draw(st.integers(0, 19))
    if r == 0:
        return ()
    if r == 1:
        return inner[-1:]
    if r == 2:
        return (2,) + tuple(inner) + (1,)
    if r < 11 and batch is None:
        return tuple(inner)
    b = batch if batch is not None else draw(st.sampled_from([0, 1, 2, 3]))
    return (b,) + tuple(inner)


def hostile_form(draw, name, none=True):
    """Values that are not arrays at all (`none`: None among them)."""
    forms = ["ragged", "object", "dict", "string"] + (["none"] if none else [])
    form = draw(st.sampled_from(forms))
    value = {
        "ragged": [[1.0, 2.0], [3.0]],
        "none": None,
        "object": np.array([[1.0, None], [2.0, 3.0]], dtype=object),
        "dict": {"a": 1.0},
        "string": "points",
    }[form]
    return Arg(value, BAD, f"{name}: {form}")


def classify_real(name, arr, rank_ok, kind):
    """Status of a built real array: BAD if non-finite, EDGE if extreme, else OK."""
    if not np.all(np.isfinite(arr)) or not rank_ok:
        return BAD, f"{name} not finite or of the wrong shape"
    if kind in EDGE_KINDS:
        return EDGE, f"{name} {kind}"
    return OK, ""


@st.composite
def points(draw, name, n=None, dim=None, batch=None, dtype=None, valid=False, none=True):
    """Points ``[B, N, D]`` or ``[N, D]`` (or a wrong rank, dtype or value).

    ``valid``: a finite rank-2 array of OK values (the estimators' data).
    ``none``: None may be drawn as a bad value (not where it means "absent").
    """
    if not valid and draw(st.integers(0, 29)) == 0:
        return hostile_form(draw, name, none)
    n = n if n is not None else draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 12, 20]))
    dim = dim if dim is not None else draw(st.sampled_from([0, 1, 2, 3, 5, 17, 24]))
    shape = (n, dim) if valid else draw(shapes((n, dim), batch))
    dt = dtype or draw(dtypes())
    kind = draw(st.sampled_from(OK_KINDS) if valid else kinds())
    container = draw(st.sampled_from(["numpy", "numpy", "tensor", "variable"]))
    seed = draw(st.integers(0, 2**31 - 1))
    x = _base_values(np.random.default_rng(seed), kind, shape, dt)
    value = convert(x, dt, container)
    desc = f"{name}: {dt} {shape} {kind} seed={seed} as {container}"
    if dt not in REAL:
        return Arg(value, BAD, desc, dt)
    arr = as_float64(value)
    rank_ok = len(shape) in (2, 3) and shape[-1] >= 1
    status, _ = classify_real(name, arr, rank_ok, kind)
    return Arg(value, status, desc, dt, arr, kind)


@st.composite
def square_distances(draw, name="sq_dist", dtype=None):
    """Squared distances ``[B, N, N]``: from points, or a random non-negative matrix, or broken."""
    if draw(st.integers(0, 29)) == 0:
        return hostile_form(draw, name)
    n = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 9, 16, 31]))
    m = n if draw(st.integers(0, 9)) else n + 1
    shape = draw(shapes((n, m)))
    dt = dtype or draw(dtypes())
    kind = draw(kinds())
    source = draw(st.sampled_from(["points", "points", "random", "negative"]))
    container = draw(st.sampled_from(["numpy", "numpy", "tensor"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 30))
    if source == "points" and n == m and len(shape) >= 2:
        pts = _base_values(rng, kind, shape[:-1] + (dim,), "float64")
        with np.errstate(all="ignore"):
            d = ((pts[..., :, None, :] - pts[..., None, :, :]) ** 2).sum(-1)
    else:
        d = np.abs(_base_values(rng, kind, shape, dt))
        if source == "negative" and d.size:
            d.flat[rng.integers(0, d.size)] = -rng.choice([1e-300, 1e-3, 1.0])
    value = convert(d, dt, container)
    desc = f"{name}: {dt} {shape} {kind}/{source} seed={seed} as {container}"
    if dt not in REAL:
        return Arg(value, BAD, desc, dt)
    arr = as_float64(value)
    rank_ok = len(shape) in (2, 3) and n == m and n >= 2
    status, _ = classify_real(name, arr, rank_ok, kind)
    if np.any(arr < 0):
        status = BAD
    return Arg(value, status, desc, dt, arr)


def joint_p(rng, shape):
    """A random valid P: symmetric, non-negative, zero diagonal, each batch sums to 1."""
    p = rng.random(shape)
    p = p + np.swapaxes(p, -1, -2)
    n = shape[-1]
    p = p * (1 - np.eye(n))
    s = p.sum(axis=(-1, -2), keepdims=True)
    return np.divide(p, s, out=np.zeros_like(p), where=s > 0)


@st.composite
def probabilities(draw, y, name="p"):
    """P matched to the embedding `y` (an Arg), mostly valid, sometimes broken."""
    if draw(st.integers(0, 29)) == 0:
        return hostile_form(draw, name)
    shape_y = np.shape(y.value) if y.dtype is not None else (4, 2)
    lead = tuple(shape_y[:-1]) if len(shape_y) >= 2 else (4,)
    n = lead[-1]
    r = draw(st.integers(0, 19))
    if r == 0:
        shape = lead + (n + 1,)  # not square
    elif r == 1:
        shape = (n + 1, n + 1) if len(lead) == 1 else (lead[0] + 1, n, n)  # wrong n or batch
    elif r == 2:
        shape = (1,) + lead + (n,)  # wrong rank
    else:
        shape = lead + (n,)
    dt = y.dtype if (y.dtype in REAL and draw(st.integers(0, 9))) else draw(dtypes())
    flaw = draw(st.sampled_from(["none"] * 8 + ["unnormalised", "zero", "asymmetric", "negative",
                                                  "nan", "inf", "tiny", "huge"]))
    container = draw(st.sampled_from(["numpy", "tensor"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    p = joint_p(rng, shape) if shape[-1] == shape[-2] else rng.random(shape)
    if flaw == "unnormalised":
        p = p * rng.choice([0.5, 7.0, 1e3])
    elif flaw == "zero":
        p = np.zeros(shape)
    elif flaw == "asymmetric":
        p = p * (1 + rng.random(shape))
    elif flaw == "negative" and p.size:
        p.flat[rng.integers(0, p.size)] = -0.1
    elif flaw in ("nan", "inf") and p.size:
        p.flat[rng.integers(0, p.size)] = float(flaw)
    elif flaw == "tiny":
        p = p * 1e-30
    elif flaw == "huge":
        p = p * rng.choice([1e30, 1e300])
    value = convert(p, dt, container)
    desc = f"{name}: {dt} {shape} {flaw} seed={seed} as {container}"
    if dt not in REAL:
        return Arg(value, BAD, desc, dt)
    arr = as_float64(value)
    if not np.all(np.isfinite(arr)) or len(shape) not in (2, 3) or shape != lead + (n,):
        status = BAD
    elif flaw == "none":
        status = OK
    else:
        status = EDGE  # the op documents p as a symmetric joint distribution but checks it lazily
    return Arg(value, status, desc, dt, arr)


@st.composite
def scalars(draw, name, dtype="float32", low=0.0, high=None):
    """A positive scalar argument: ok values in (low, high), edges, and wrong types or values.

    `high` is the exclusive upper bound (perplexity < n - 1); None: unbounded.
    """
    hi = 50.0 if high is None else high
    r = draw(st.integers(0, 19))
    if r < 10 and hi > low:
        v = draw(st.floats(low, hi, exclude_min=True, exclude_max=True, allow_subnormal=False))
        if v <= 1e-6:  # dof or exaggeration this small overflows; float32 cannot hold 1e-300
            return Arg(v, EDGE, f"{name}={v!r}")
        form = draw(st.sampled_from(["float", "numpy", "tensor", "int"]))
        if form == "int" and float(int(v)) == v and v > low:
            return Arg(int(v), OK, f"{name}={int(v)}")
        if form == "numpy":
            return Arg(np.float64(v), OK, f"{name}=np.float64({v!r})")
        if form == "tensor":
            return Arg(tf.constant(v, tf.float64), OK, f"{name}=tf.constant({v!r}, float64)")
        return Arg(v, OK, f"{name}={v!r}")
    if r < 13:
        v = draw(st.sampled_from([1e-300, 1e-45, 1e-30, 1e30, 1e300]))
        if high is not None and v >= high:
            return Arg(v, BAD, f"{name}={v!r}")
        return Arg(v, EDGE, f"{name}={v!r}")
    bad = draw(st.sampled_from([
        ("zero", 0.0), ("negative", -1.5), ("nan", float("nan")), ("inf", float("inf")),
        ("-inf", float("-inf")), ("bound", high), ("above", None if high is None else high * 3),
        ("str", "30"), ("none", None), ("bool", True), ("complex", 2 + 1j), ("list", [2.0]),
        ("vector", np.array([2.0, 3.0])), ("tensor_vector", tf.constant([2.0, 3.0])),
        ("tensor_string", tf.constant("2")), ("tensor_complex", tf.constant(2 + 0j)),
        ("tensor_bool", tf.constant(True)),
    ]))
    label, v = bad
    if label in ("bound", "above") and v is None:
        v = -1.0
    return Arg(v, BAD, f"{name}={label} {_safe_repr(v)}")


def _safe_repr(v):
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."
