import pickle

import numpy as np
import pytest
import torch

from face_data import gray_image, identity_of, read_frames
from plugtalk.weights.plugtalk_format import save_safetensors
from plugtalk.errors import CheckpointError, NoFaceError
from plugtalk.face import ARCFACE_TEMPLATE_112, ArcFaceEncoder, DlibIdentityEncoder, IdentityEncoder
from plugtalk.face.identity import arcface_align
from plugtalk.face.iresnet import IRESNET_LAYERS, IResNet, iresnet, iresnet_config_from_state_dict


@pytest.fixture(scope="module")
def frames():
    return read_frames("faces/test/vox_driving2__driving2.mp4", n=3, step=60)


def tiny_iresnet(seed=0) -> IResNet:
    torch.manual_seed(seed)
    net = IResNet(layers=(1, 2, 1, 1), widths=(8, 8, 16, 16), num_features=12)
    for m in net.modules():  # non-trivial BN statistics so eval mode differs from identity
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_dlib_encoder_unit_rows_and_flags(frames):
    enc = DlibIdentityEncoder()
    assert isinstance(enc, IdentityEncoder) and enc.is_arcface_substitute and enc.dim == 128
    e = enc.embed(frames)
    assert e.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-9)
    assert enc.embed(list(frames)).shape == (3, 128)  # a list works too
    assert enc.embed(frames[0]).shape == (1, 128)      # one image is a batch of one


def test_missing_face_raise_or_nan(frames):
    enc = DlibIdentityEncoder()
    batch = np.stack([frames[0], gray_image(frames.shape[1])])
    with pytest.raises(NoFaceError, match=r"frames\[1\]"):
        enc.embed(batch)
    e = enc.embed(batch, on_missing="nan")
    assert np.isfinite(e[0]).all() and np.isnan(e[1]).all()
    with pytest.raises(ValueError):
        enc.embed(batch, on_missing="skip")


@pytest.mark.slow
def test_dlib_csim_same_identity_above_cross_identity():
    clips = ["faces/test/vox_driving2__driving2.mp4", "faces/test/dpe_s__s.mp4", "faces/train/obama__obama_00.mp4",
             "faces/train/vox_driving1__driving1_00.mp4", "faces/train/edtalk_pose_source2__pose_source2_00.mp4"]
    enc = DlibIdentityEncoder()
    emb = {c: enc.embed(read_frames(c, n=3, step=70)) for c in clips}
    same, cross = [], []
    for i, a in enumerate(clips):
        ea = emb[a]
        same += list((ea @ ea.T)[np.triu_indices(len(ea), 1)])
        for b in clips[i + 1:]:
            assert identity_of(a) != identity_of(b)
            cross += list((ea @ emb[b].T).ravel())
    same, cross = np.array(same), np.array(cross)
    print(f"dlib CSIM same-identity mean {same.mean():.4f} (min {same.min():.4f}); "
          f"cross-identity mean {cross.mean():.4f} (max {cross.max():.4f})")
    assert same.mean() > cross.mean() + 0.05
    assert np.median(same) > np.percentile(cross, 90)


def test_arcface_template_alignment_moves_points_onto_the_template():
    # draw 5 dots where a known similarity transform sends the template, align, find the dots again
    rng = np.random.default_rng(0)
    angle, scale, t = 0.3, 1.7, np.array([40.0, 25.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = ARCFACE_TEMPLATE_112 @ rot.T + t
    img = (rng.integers(0, 40, (256, 256, 3))).astype(np.uint8)
    for k, (x, y) in enumerate(pts):
        img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    crop = arcface_align(img, pts)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[int(round(y)), int(round(x))].min() > 150


def test_iresnet_standard_depths_have_arcface_shapes():
    with torch.device("meta"):
        for name in ("iresnet50", "iresnet100"):
            net = iresnet(name)
            sd = net.state_dict()
            assert sd["fc.weight"].shape == (512, 512 * 7 * 7)
            assert sd["conv1.weight"].shape == (64, 3, 3, 3)
            n_last = IRESNET_LAYERS[name][2] - 1
            assert f"layer3.{n_last}.conv2.weight" in sd and f"layer3.{n_last + 1}.conv2.weight" not in sd
            assert "layer1.0.downsample.1.running_var" in sd and "layer1.1.downsample.0.weight" not in sd
            cfg = iresnet_config_from_state_dict(sd)
            assert cfg["layers"] == IRESNET_LAYERS[name] and cfg["input_size"] == 112 and cfg["num_features"] == 512


def test_iresnet_forward_shape_and_batch_independence():
    net = tiny_iresnet()
    x = torch.rand(3, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        y = net(x)
        y1 = net(x[1:2])
    assert y.shape == (3, 12)
    torch.testing.assert_close(y[1:2], y1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_arcface_encoder_loads_user_weights(tmp_path, frames, suffix):
    net = tiny_iresnet()
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        save_safetensors(net.state_dict(), path)
    enc = ArcFaceEncoder(path)
    assert not enc.is_arcface_substitute and enc.dim == 12 and isinstance(enc, IdentityEncoder)
    e = enc.embed(frames)
    assert e.shape == (3, 12)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    direct = ArcFaceEncoder(network=tiny_iresnet()).embed(frames)
    np.testing.assert_allclose(e, direct, atol=1e-6)
    other = ArcFaceEncoder(network=tiny_iresnet(seed=1)).embed(frames)
    assert not np.allclose(e, other, atol=1e-3)
    assert np.isnan(enc.embed(gray_image(), on_missing="nan")).all()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arcface_encoder_refuses_bad_files(tmp_path, capsys):
    not_iresnet = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, not_iresnet)
    with pytest.raises(CheckpointError, match="IResNet"):
        ArcFaceEncoder(not_iresnet)

    class Evil:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError):
        ArcFaceEncoder(evil)
    assert "pickled code ran" not in capsys.readouterr().out
    with pytest.raises(CheckpointError):
        ArcFaceEncoder(tmp_path / "missing.pth")
    with pytest.raises(ValueError):
        ArcFaceEncoder()
