import numpy as np
import pytest
import torch
from torch import nn

from face_data import gray_image, read_frames
from plugtalk.errors import InputError
from plugtalk.face import models
from plugtalk.metrics import ALL_METRICS, MetricSuite, TorchFeatures


@pytest.fixture(scope="module")
def suite():
    return MetricSuite()


@pytest.fixture(scope="module")
def frames():
    return read_frames("faces/test/vox_driving2__driving2.mp4", n=3, step=50)


@pytest.mark.slow
def test_identical_clip_scores_perfectly(suite, frames):
    r = suite.evaluate(frames, frames, source=frames[0])
    assert r["frames"] == 3 and r["face_frames_skipped"] == 0
    assert r["psnr"] == float("inf") and r["ssim"] == pytest.approx(1.0)
    assert r["f_lmd"] == 0.0 and r["m_lmd"] == 0.0 and r["akd"] == 0.0
    assert 0.9 < r["csim"] <= 1.0 + 1e-9
    assert np.isfinite(r["niqe"]) and 0.0 <= r["cpbd"] <= 1.0
    assert "substitute for ArcFace" in r["csim_encoder"]
    assert list(r)[:8] == ["psnr", "ssim", "csim", "f_lmd", "m_lmd", "akd", "niqe", "cpbd"]


@pytest.mark.slow
def test_frame_without_face_is_skipped_and_counted(suite, frames):
    pred = frames.copy()
    pred[1] = gray_image(frames.shape[1])
    r = suite.evaluate(pred, frames, source=frames[0], per_frame=True)
    assert r["skipped_frames"] == {"csim": 1, "landmarks": 1} and r["face_frames_skipped"] == 1
    assert np.isfinite([r["csim"], r["f_lmd"], r["m_lmd"], r["akd"]]).all()
    assert np.isnan(r["per_frame"]["csim"][1]) and np.isnan(r["per_frame"]["akd"][1])
    assert r["per_frame"]["f_lmd"][0] == 0.0
    # a source without a face: CSIM is NaN with a warning, the rest is still computed
    r = suite.evaluate(frames, frames, source=gray_image())
    assert np.isnan(r["csim"]) and r["skipped_frames"]["csim"] == 3 and r["warnings"]
    assert r["f_lmd"] == 0.0


@pytest.mark.slow
def test_models_are_loaded_once(frames):
    MetricSuite().evaluate(frames[:1], frames[:1])
    before = models.face_descriptor.cache_info().misses, models.shape_predictor_68.cache_info().misses
    s = MetricSuite()
    s.evaluate(frames[:1], frames[:1])
    s.evaluate(frames[:1], frames[:1])
    after = models.face_descriptor.cache_info().misses, models.shape_predictor_68.cache_info().misses
    assert before == after == (1, 1)


def test_without_reference_only_no_reference_metrics(suite, frames):
    r = suite.evaluate(frames[:1])
    assert set(r["not_computed"]) == {"psnr", "ssim", "csim", "f_lmd", "m_lmd", "akd"}
    assert np.isfinite(r["niqe"]) and np.isfinite(r["cpbd"])


def test_fid_with_a_pluggable_extractor(frames):
    torch.manual_seed(0)
    ext = TorchFeatures(nn.Sequential(nn.Conv2d(3, 4, 3, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 64, "tiny")
    s = MetricSuite(["psnr", "fid"], fid_extractor=ext)
    r = s.evaluate(frames, frames)
    assert r["fid"] == pytest.approx(0.0, abs=1e-6) and r["fid_features"] == "tiny"
    assert set(r).isdisjoint({"csim", "niqe"})


def test_bad_arguments(suite, frames):
    with pytest.raises(ValueError, match="unknown metrics"):
        MetricSuite(["psnr", "lpips"])
    with pytest.raises(ValueError, match="fid_extractor"):
        MetricSuite(["fid"])
    with pytest.raises(InputError, match="same shape"):
        suite.evaluate(frames, frames[:2])
    assert "fid" in ALL_METRICS


def test_frames_below_niqe_patch_size_skip_niqe_with_a_reason(suite):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    r = suite.evaluate(small, small)
    assert "niqe" not in r and "96x96" in r["not_computed"]["niqe"]
    assert r["psnr"] == float("inf") and 0.0 <= r["cpbd"] <= 1.0
