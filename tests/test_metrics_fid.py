import numpy as np
import pytest
import torch
from torch import nn

from face_data import read_frames
from plugtalk.errors import CheckpointError, InputError
from plugtalk.metrics import InceptionFeatures, TorchFeatures, fid, fid_from_features, frechet_distance


def tiny_features(seed=0) -> TorchFeatures:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return TorchFeatures(net, input_size=32, name="tiny-random")


def test_frechet_distance_of_1d_gaussians_is_closed_form():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) \
        == pytest.approx(4.0 + 1.0)
    s = np.diag([1.0, 4.0])
    assert frechet_distance(np.zeros(2), s, np.zeros(2), s) == pytest.approx(0.0, abs=1e-9)


def test_fid_is_zero_for_a_set_against_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    d = [fid_from_features(x, x + s) for s in (0.5, 1.0, 2.0)]
    assert d[0] < d[1] < d[2]
    assert d[1] == pytest.approx(6 * 1.0, rel=1e-6)  # a pure mean shift adds ||shift||^2


def test_fid_machinery_on_real_frames_with_a_tiny_random_network():
    frames = read_frames("faces/test/dpe_s__s.mp4", n=12, step=15)
    ext = tiny_features()
    f = ext.features(frames)
    assert f.shape == (12, 8) and f.dtype == np.float64
    assert fid(frames, frames, ext) == pytest.approx(0.0, abs=1e-6)
    brighter = [fid(frames, np.clip(frames.astype(int) + b, 0, 255).astype(np.uint8), ext) for b in (10, 40, 100)]
    assert 0 < brighter[0] < brighter[1] < brighter[2]
    with pytest.raises(InputError):
        fid(frames[:1], frames, ext)


@pytest.mark.slow
def test_inception_features_load_user_weights(tmp_path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    ref = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    path = tmp_path / "inception.pth"
    torch.save(ref.state_dict(), path)  # AuxLogits and fc are in the file and ignored
    ext = InceptionFeatures(path)
    imgs = np.random.default_rng(0).integers(0, 256, (2, 80, 80, 3), dtype=np.uint8)
    f = ext.features(imgs)
    assert f.shape == (2, 2048)
    x = torch.nn.functional.interpolate(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1,
                                        size=(299, 299), mode="bilinear", align_corners=False)
    ref.fc = nn.Identity()
    ref.transform_input = False
    with torch.no_grad():
        np.testing.assert_allclose(f, ref(x).double().numpy(), rtol=1e-4, atol=1e-5)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="inception_v3"):
        InceptionFeatures(bad)
