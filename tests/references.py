"""Independent numpy references for the ops (written from the definitions,
not from the kernels)."""
import numpy as np


def squared_distances(x, y=None):
    y = x if y is None else y
    return ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def row_entropy(p_row):
    nz = p_row[p_row > 0]
    return -(nz * np.log(nz)).sum()


def conditional_p(d_row, beta, i):
    """P(j|i) for one row at a given precision (diagonal excluded)."""
    mask = np.arange(d_row.size) != i
    e = np.zeros_like(d_row, dtype=np.float64)
    shifted = d_row[mask] - d_row[mask].min()
    e[mask] = np.exp(-beta * shifted)
    return e / e.sum()


def student_t(y, dof):
    """u = (1 + d2/a)^-1 and w = u^((a+1)/2) with a zero diagonal."""
    d2 = squared_distances(y)
    u = 1.0 / (1.0 + d2 / dof)
    w = u ** ((dof + 1.0) / 2.0)
    n = y.shape[-2]
    eye = np.eye(n, dtype=bool)
    u = np.where(eye, 0.0, u)
    w = np.where(eye, 0.0, w)
    return u, w


def tsne_gradient(p, y, exaggeration=1.0, dof=1.0):
    """The t-SNE gradient formula for one batch [n, n], [n, d] (float64)."""
    p = p.astype(np.float64)
    y = y.astype(np.float64)
    u, w = student_t(y, dof)
    q = w / w.sum()
    n = y.shape[0]
    pp = np.where(np.eye(n, dtype=bool), 0.0, p)
    coeff = (exaggeration * pp - q) * u
    diff = y[:, None, :] - y[None, :, :]
    return (2 * (dof + 1) / dof) * (coeff[:, :, None] * diff).sum(1)


def kl_divergence(p, y, dof=1.0):
    p = p.astype(np.float64)
    u, w = student_t(y.astype(np.float64), dof)
    q = w / w.sum()
    n = y.shape[0]
    mask = (~np.eye(n, dtype=bool)) & (p > 0)
    return float((p[mask] * np.log(p[mask] / q[mask])).sum())


def random_joint_p(rng, n, batch=None, dtype=np.float64):
    """A random symmetric P with zero diagonal summing to 1 per batch."""
    shape = (n, n) if batch is None else (batch, n, n)
    a = rng.random(shape)
    a = a + np.swapaxes(a, -1, -2)
    a = a * (1 - np.eye(n))
    a = a / a.sum(axis=(-1, -2), keepdims=True)
    return a.astype(dtype)


def nearest_neighbors(x, k, y=None, dtype=None):
    """Exact k nearest neighbours from the definition: float64 squared
    distances, the point itself excluded when ``y`` is None, rows ordered by
    (distance, index). With ``dtype``, the distances are rounded to it before
    ordering, as the kernels do (values that round to the same float32 then
    tie). Returns ``(indices, sq_distances)``, ``[..., n, k]``."""
    x = np.asarray(x, np.float64)
    d2 = squared_distances(x, None if y is None else np.asarray(y, np.float64))
    if dtype is not None:
        d2 = d2.astype(dtype).astype(np.float64)
    if y is None:
        n = x.shape[-2]
        d2[..., np.arange(n), np.arange(n)] = np.inf
    cols = np.broadcast_to(np.arange(d2.shape[-1]), d2.shape)
    order = np.lexsort((cols, d2), axis=-1)[..., :k]  # last key first: distance, then index
    return order, np.take_along_axis(d2, order, axis=-1)


def repulsion(y, dof=1.0, block=512):
    """The exact repulsion of one batch y [n, d] (float64), in row blocks so
    that n = 3000 needs no n x n x d array: (R [n, d], Z) with
    R_i = sum_{j != i} w_ij u_ij (y_i - y_j) and Z = sum_{i != j} w_ij."""
    y = np.asarray(y, np.float64)
    n = y.shape[0]
    rep = np.zeros_like(y)
    z = 0.0
    for i0 in range(0, n, block):
        diff = y[i0 : i0 + block, None, :] - y[None, :, :]
        base = 1.0 + (diff**2).sum(-1) / dof
        w = base ** (-(dof + 1.0) / 2.0)
        rows = np.arange(i0, min(n, i0 + block))
        w[rows - i0, rows] = 0.0  # j != i
        rep[i0 : i0 + block] = ((w / base)[:, :, None] * diff).sum(1)
        z += w.sum()
    return rep, z
