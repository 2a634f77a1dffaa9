"""tsne_ops.preprocessing.deskew: slanted strokes come out upright and centred."""
import numpy as np
import pytest

from tsne_ops import preprocessing


def _slanted_bar(h=28, w=28, slope=0.4, row_shift=3):
    """A slanted stroke off-centre: column = 14 + slope * (row - 14)."""
    img = np.zeros((h, w))
    for r in range(6, 22):
        c = 14 + slope * (r - 14)
        img[r + row_shift, int(np.floor(c))] = 1 - (c - np.floor(c))
        img[r + row_shift, int(np.floor(c)) + 1] = c - np.floor(c)
    return img


def _moments(img):
    r, c = np.mgrid[:img.shape[0], :img.shape[1]]
    m = img.sum()
    mr, mc = (r * img).sum() / m, (c * img).sum() / m
    return mr, mc, ((r - mr) * (c - mc) * img).sum() / m


def test_deskew_uprights_and_centres_a_slanted_stroke():
    img = _slanted_bar()
    mr, mc, cov = _moments(img)
    assert cov > 1.0 and mr > 15.0  # slanted, below the centre
    out = preprocessing.deskew(img.reshape(1, -1), (28, 28))
    assert out.shape == (1, 784) and out.dtype == np.float32
    mr, mc, cov = _moments(out.reshape(28, 28))
    assert abs(cov) < 0.05 and abs(mr - 13.5) < 0.1 and abs(mc - 13.5) < 0.1
    assert abs(out.sum() - img.sum()) < 0.05 * img.sum()  # no ink lost
    # image-shaped input keeps its shape; an empty image stays empty
    both = np.stack([img, np.zeros((28, 28))])[..., None]
    out = preprocessing.deskew(both, (28, 28))
    assert out.shape == (2, 28, 28, 1) and not out[1].any()


def test_deskew_matches_scipy_affine_transform():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.RandomState(0)
    imgs = np.stack([_slanted_bar(slope=s, row_shift=k) for s, k in
                     ((0.4, 3), (-0.7, -2), (0.0, 0), (1.2, 4))]) + 0.05 * rng.rand(4, 28, 28)
    out = preprocessing.deskew(imgs, (28, 28), chunk=3)  # two chunks
    for img, got in zip(imgs, out):
        mr, mc, cov = _moments(img)
        alpha = cov / (((np.mgrid[:28, :28][0] - mr) ** 2 * img).sum() / img.sum())
        shear = np.array([[1.0, 0.0], [alpha, 1.0]])
        want = ndimage.affine_transform(img, shear, offset=np.array([mr, mc]) - shear @ [13.5, 13.5],
                                        order=1, mode="grid-constant")
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_deskew_rejects_a_wrong_image_shape():
    with pytest.raises(ValueError, match=r"image_shape=\(8, 8\)"):
        preprocessing.deskew(np.zeros((3, 60)), (8, 8))


def test_deskew_edge_cases_and_bad_arguments():
    row = np.zeros((28, 28))
    row[5, 3:20] = 1.0  # ink on one row: no shear, only centring
    out = preprocessing.deskew(row[None], (28, 28))[0]
    mr, mc, cov = _moments(out)
    assert abs(mr - 13.5) < 1e-6 and abs(mc - 13.5) < 1e-6 and abs(out.sum() - 17) < 1e-4
    assert preprocessing.deskew(np.zeros((0, 784)), (28, 28)).shape == (0, 784)
    for chunk in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
            preprocessing.deskew(row[None], (28, 28), chunk=chunk)
    with pytest.raises(ValueError, match="non-negative intensities"):
        preprocessing.deskew(row[None] - 0.5, (28, 28))
