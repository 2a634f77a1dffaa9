"""Preprocessing: optional, data-specific transformations applied before P.

t-SNE's P is computed from distances in the input space, so a transformation
that makes those distances follow what matters (here, a digit's shape rather
than its slant) changes what the embedding can show. Nothing here is applied by
default; :class:`tsne_ops.ParametricTSNE` (``deskew=True``) and the command
line (``--deskew``) apply it on request.
"""
import numpy as np


def deskew(X, image_shape, chunk=1024):
    """Deskew single-channel images: shear each one so that its ink has no
    row-column covariance, and move its centre of mass to the image centre.

    The standard normalisation for handwritten digits (LeCun et al.'s MNIST
    table lists it for k-NN): a slanted "1" and an upright one become alike,
    so pixel distances, and with them t-SNE's P, follow the digit's shape
    rather than its slant. Each image is resampled with bilinear
    interpolation, zero outside the frame (as ``scipy.ndimage.affine_transform``
    with ``order=1, mode='grid-constant'``).
    Images without ink (all zero) and ones whose ink lies on one row are
    only centred / left as they are.

    ``X``: [N, H*W], [N, H, W] or [N, H, W, 1] (non-negative intensities);
    ``image_shape``: (H, W); ``chunk``: images resampled at a time (memory).
    Returns float32 of the same shape as ``X``.
    """
    X = np.asarray(X)
    h, w = (int(v) for v in image_shape)
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != h * w:
        raise ValueError(f"deskew needs images of image_shape={(h, w)}, got X of shape {X.shape}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got chunk={chunk!r}")
    if X.size and not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"deskew needs a numeric array, got dtype {X.dtype}")
    if X.size and X.min() < 0:
        raise ValueError(f"deskew needs non-negative intensities, got a minimum of {X.min()!r}")
    flat = X.reshape(len(X), h * w).astype(np.float32)
    out = np.empty_like(flat)
    rows, cols = np.mgrid[:h, :w].astype(np.float64)
    rows, cols = rows.ravel(), cols.ravel()
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    padded = np.zeros((min(chunk, len(flat)) or 1, h + 2, w + 2), np.float32)
    for start in range(0, len(flat), chunk):
        img = flat[start:start + chunk].astype(np.float64)
        n = len(img)
        mass = img.sum(axis=1)
        safe = np.where(mass > 0, mass, 1.0)
        mr = np.where(mass > 0, img @ rows / safe, cr)
        mc = np.where(mass > 0, img @ cols / safe, cc)
        dr = rows[None, :] - mr[:, None]
        var_r = (img * dr ** 2).sum(axis=1)
        cov = (img * dr * (cols[None, :] - mc[:, None])).sum(axis=1)
        alpha = np.where(var_r > 0, cov / np.where(var_r > 0, var_r, 1.0), 0.0)
        # output pixel (r, c) samples the input at
        # (r - cr + mr, c - cc + mc + alpha (r - cr))
        src_r = rows[None, :] - cr + mr[:, None]
        src_c = cols[None, :] - cc + mc[:, None] + alpha[:, None] * (rows[None, :] - cr)
        # bilinear, in a frame padded by one zero pixel on each side
        src_r, src_c = src_r + 1.0, src_c + 1.0
        inside = (src_r > 0) & (src_r < h + 1) & (src_c > 0) & (src_c < w + 1)
        src_r = np.clip(src_r, 0.0, h + 1 - 1e-6)
        src_c = np.clip(src_c, 0.0, w + 1 - 1e-6)
        r0, c0 = np.floor(src_r).astype(np.intp), np.floor(src_c).astype(np.intp)
        fr, fc = src_r - r0, src_c - c0
        pad = padded[:n]
        pad[:, 1:h + 1, 1:w + 1] = img.reshape(n, h, w)
        pad = pad.reshape(n, -1)
        stride = w + 2

        def at(dr_, dc_):
            return np.take_along_axis(pad, (r0 + dr_) * stride + c0 + dc_, axis=1)

        val = ((1 - fr) * ((1 - fc) * at(0, 0) + fc * at(0, 1))
               + fr * ((1 - fc) * at(1, 0) + fc * at(1, 1)))
        out[start:start + n] = np.where(inside, val, 0.0)
    return out.reshape(X.shape)
