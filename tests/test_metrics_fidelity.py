import numpy as np
import pytest

from face_data import read_frames
from plugtalk.errors import InputError
from plugtalk.metrics import psnr, ssim


@pytest.fixture(scope="module")
def frames():
    return read_frames("faces/test/dpe_s__s.mp4", n=3)


def noisy(x, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)


def test_identical_images_are_perfect(frames):
    assert psnr(frames[0], frames[0]) == float("inf")
    assert ssim(frames[0], frames[0]) == pytest.approx(1.0)
    p = psnr(frames, frames)
    assert p.shape == (3,) and np.isinf(p).all()
    np.testing.assert_allclose(ssim(frames, frames), 1.0)


def test_both_degrade_with_noise(frames):
    p = [psnr(noisy(frames, s), frames).mean() for s in (2, 8, 24)]
    q = [ssim(noisy(frames, s), frames).mean() for s in (2, 8, 24)]
    assert p[0] > p[1] > p[2] and q[0] > q[1] > q[2]
    assert 35 < p[0] < 50 and q[2] < 0.9


def test_psnr_matches_its_definition(frames):
    a, b = frames[0], noisy(frames[0], 10)
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert psnr(b, a) == pytest.approx(10 * np.log10(255**2 / mse))


def test_shape_mismatch_and_dtype_are_rejected(frames):
    with pytest.raises(InputError, match="same shape"):
        psnr(frames[:2], frames)
    with pytest.raises(InputError):
        ssim(frames.astype(np.float32), frames)
