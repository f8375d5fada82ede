import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from face_data import clip_path, gray_image, read_frames
from plugtalk.errors import InputError
from plugtalk.metrics import cpbd, niqe
from plugtalk.metrics.cpbd import edge_widths
from plugtalk.metrics.niqe import matlab_imresize_half, niqe_features, pristine_model

CLIPS = ["faces/test/vox_driving2__driving2.mp4", "faces/test/dpe_s__s.mp4", "faces/train/obama__obama_00.mp4",
         "faces/test/edtalk_mouth_source__mouth_source.mp4"]


def blur(x, sigma):
    return np.clip(np.rint(gaussian_filter(x.astype(float), (0, sigma, sigma, 0)[-x.ndim:])), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sharp():
    return np.concatenate([read_frames(c, n=2, step=80) for c in CLIPS])


def test_pristine_model_ships_with_the_package():
    from importlib import resources

    assets = resources.files("plugtalk").joinpath("assets")
    assert assets.joinpath("niqe_pris_params.npz").is_file()
    assert "Mittal" in assets.joinpath("NIQE_PARAMS_NOTICE.md").read_text()
    m = pristine_model()
    assert m["mu"].shape == (36,) and m["cov"].shape == (36, 36) and m["window"].shape == (7, 7)
    np.testing.assert_allclose(m["cov"], m["cov"].T)
    assert m["window"].sum() == pytest.approx(1.0)


def test_half_resize_reproduces_linear_ramps_and_constants():
    # cubic convolution interpolates linear functions exactly: output j sits at input 2j + 0.5
    ramp = np.tile(np.arange(64, dtype=float) * 3.0 + 7.0, (16, 1))
    half = matlab_imresize_half(ramp)
    assert half.shape == (8, 32)
    np.testing.assert_allclose(half[:, 2:-2], np.tile((2 * np.arange(32) + 0.5) * 3.0 + 7.0, (8, 1))[:, 2:-2])
    np.testing.assert_allclose(matlab_imresize_half(np.full((10, 14), 5.0)), 5.0)
    assert matlab_imresize_half(np.zeros((9, 7))).shape == (5, 4)


def test_niqe_features_shape():
    f = niqe_features(np.random.default_rng(0).uniform(0, 255, (200, 300)))
    assert f.shape == (2 * 3, 36) and np.isfinite(f).all()


@pytest.mark.slow
def test_niqe_ranks_sharp_frames_above_blurred(sharp):
    s, b = niqe(sharp), niqe(blur(sharp, 1.5))
    print(f"NIQE sharp mean {s.mean():.3f}, blurred (sigma 1.5) mean {b.mean():.3f}")
    assert (s < b).all()


def test_niqe_on_a_still():
    from PIL import Image

    img = np.asarray(Image.open(clip_path("stills/skimage_astronaut.png")).convert("RGB"))
    assert niqe(img) < niqe(blur(img, 2.0))


def test_niqe_undefined_or_invalid_inputs():
    assert np.isnan(niqe(gray_image()))
    with pytest.raises(InputError, match="96x96"):
        niqe(np.zeros((64, 200, 3), np.uint8))


def ramp_image(width: int, lo=20.0, hi=220.0, size=128) -> np.ndarray:
    row = np.full(size, lo)
    row[60 + width:] = hi
    row[60:60 + width] = np.linspace(lo, hi, width + 2)[1:-1]
    return np.repeat(np.tile(row, (size, 1))[..., None], 3, axis=2).astype(np.uint8)


def test_edge_width_of_a_ramp_is_its_extent():
    w = edge_widths(ramp_image(6)[..., 0].astype(float))
    assert (w > 0).any()
    np.testing.assert_array_equal(np.unique(w[w > 0]), [7.0])  # from the last low to the first high pixel


def test_cpbd_of_synthetic_edges():
    assert cpbd(ramp_image(1)) == 1.0   # width 2 <= w_JNB = 3: every edge sharp
    assert cpbd(ramp_image(10)) == 0.0  # width 11 > 3: every edge blurred
    assert np.isnan(cpbd(gray_image()))


@pytest.mark.slow
def test_cpbd_ranks_sharp_frames_above_blurred(sharp):
    s, b = cpbd(sharp), cpbd(blur(sharp, 1.0))
    print(f"CPBD sharp mean {s.mean():.3f}, blurred (sigma 1.0) mean {b.mean():.3f}; "
          f"python-cpbd edges: sharp {cpbd(sharp, edges='python-cpbd').mean():.3f}")
    assert (s > b).all()
    assert (cpbd(sharp, edges="python-cpbd") > cpbd(blur(sharp, 1.0), edges="python-cpbd")).all()
