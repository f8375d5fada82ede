"""GoHD backbone: shapes, bad input, key map round trip, coefficient files, windows and gaze controls."""

import math

import numpy as np
import pytest
import torch
from scipy.io import savemat

from plugtalk.backbones.gohd import GAZE, GoHD, GoHDConfig
from plugtalk.backbones.gohd_coefficients import (coefficient_windows, frame_vectors, l2cs_gaze, parse_gaze,
                                                  read_face_coefficients, read_gaze, smooth_pose)
from plugtalk.backbones.official import convert_state_dict
from plugtalk.errors import ConversionError, InputError
from test_backbones import official_state_dict

TINY_GOHD = dict(size=32, channel_base=512, channel_max=32, style_dim=64, sft_levels=2)


def tiny_gohd(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return GoHD(GoHDConfig(**TINY_GOHD)).to(dtype).eval()


def windows(b=2, t=25, seed=1):
    return torch.randn(b, 72, t, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_intermediates():
    m = tiny_gohd()
    src = torch.rand(2, 3, 32, 32) * 2 - 1
    r = m(src, windows(t=27), return_intermediates=True)
    assert r.image.shape == (2, 3, 32, 32)
    assert torch.equal(r.image, r["rgb.2"])                        # the finest RGB is the image
    assert r["coefficients.first"].shape == (2, 64, 21) and r["coefficients.pool_in"].shape == (2, 64, 3)
    assert torch.allclose(r["coefficients.embedding"], r["coefficients.pool_in"].mean(-1))
    assert set(k for k in r.values if k.startswith("sft.")) == {f"sft.{j}.{p}" for j in (0, 1) for p in
                                                               ("warped", "blend", "scale", "shift", "out", "state")}
    # the official state update: w' + x (1 - blend), not the mask
    assert torch.allclose(r["latent"], r["source.latent"] + r["direction"])
    assert torch.allclose(m(src, windows(t=27)), r.image)


def test_gaze_channels_move_the_image_and_nothing_else_in_the_source_branch():
    m = tiny_gohd()
    src = torch.rand(1, 3, 32, 32) * 2 - 1
    w = windows(b=1, t=25)
    w2 = w.clone()
    w2[:, GAZE] += 0.3
    a, b = m(src, w, return_intermediates=True), m(src, w2, return_intermediates=True)
    assert torch.equal(a["source.latent"], b["source.latent"])
    assert not torch.allclose(a["alpha"], b["alpha"])
    assert (a.image - b.image).abs().max() > 1e-4


def test_official_defaults_need_25_frames():
    assert GoHDConfig().min_window == 25
    assert GoHDConfig(mapping_layers=2).min_window == 19
    with pytest.raises(ValueError, match="sft_levels"):
        GoHDConfig(sft_levels=7)
    assert GoHDConfig(size=32).sft_levels == 3


@pytest.mark.parametrize("coeffs, match", [
    (windows(t=24), r"\(B, 72, T>=25\)"),
    (torch.randn(2, 70, 27), r"expected shape \(B, 72, T>=25\)"),
    (torch.randn(2, 72), r"expected shape \(B, 72, T>=25\)"),
    (torch.full((2, 72, 27), float("nan")), "NaN"),
    (windows(b=3, t=27), "batch size 3"),
    (torch.zeros(2, 72, 27, dtype=torch.long), "float tensor"),
])
def test_bad_coefficients(coeffs, match):
    with pytest.raises(InputError, match=match):
        tiny_gohd()(torch.zeros(2, 3, 32, 32), coeffs)


def test_official_round_trip_and_other_backbones_refused():
    model = tiny_gohd()
    key_map = GoHD.official_key_map(model.config)
    sd = official_state_dict(model)
    assert any(k.startswith("enc.semantics_enc.") for k in sd) and any(k.startswith("dec.sft.1.") for k in sd)
    fresh = tiny_gohd(seed=1)
    fresh.load_state_dict(convert_state_dict(sd, key_map, fresh, "gohd"))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    from plugtalk.backbones.registry import guess_official_backbone

    # A LIA file has most of GoHD's keys but no mapping network / SFT and a 512-wide motion head.
    lia_like = {k: v for k, v in sd.items() if not k.startswith(("enc.semantics_enc.", "dec.sft."))}
    with pytest.raises(ConversionError, match="looks like a 'lia' checkpoint.*missing key.*dec.sft.0"):
        convert_state_dict(lia_like, key_map, fresh, "gohd", guess=guess_official_backbone)
    # An unconsumed key is an error, too.
    with pytest.raises(ConversionError, match="unexpected"):
        convert_state_dict({**sd, "dec.sft.9.scale2.weight": torch.zeros(1)}, key_map, fresh, "gohd")


# -- coefficient files ---------------------------------------------------------------------------------

def _full(t=5, seed=0):
    return np.random.default_rng(seed).normal(size=(t, 257)).astype(np.float32)


def test_read_full_layout_npy_mat_npz(tmp_path):
    a = _full()
    np.save(tmp_path / "c.npy", a)
    savemat(tmp_path / "c.mat", {"coeff": a})
    np.savez(tmp_path / "c.npz", coeff_3dmm=np.concatenate([a, np.zeros((5, 5), np.float32)], 1))
    for name in ("c.npy", "c.mat", "c.npz"):
        c = read_face_coefficients(tmp_path / name)
        assert torch.equal(c.expression, torch.from_numpy(a[:, 80:144]))
        assert torch.equal(c.pose, torch.from_numpy(np.concatenate([a[:, 224:227], a[:, 254:257]], 1)))


def test_read_compact_and_split_layouts(tmp_path):
    compact = _full(seed=1)[:, :73]
    savemat(tmp_path / "drv.mat", {"coeff_3dmm": compact})
    c = read_face_coefficients(tmp_path / "drv.mat")
    assert torch.equal(c.expression, torch.from_numpy(compact[:, :64]))
    assert torch.equal(c.pose, torch.from_numpy(compact[:, 64:70]))
    a = _full(seed=2)
    savemat(tmp_path / "d3d.mat", {"exp": a[:, :64], "angle": a[:, 64:67], "trans": a[:, 67:70], "id": a[:, :80]})
    c = read_face_coefficients(tmp_path / "d3d.mat")
    assert torch.equal(c.pose, torch.from_numpy(a[:, 64:70]))


@pytest.mark.parametrize("write, match", [
    (lambda p: np.save(p / "x.npy", np.zeros((5, 64), np.float32)), r"\(T, 257\)"),
    (lambda p: savemat(p / "x.mat", {"landmarks": np.zeros((5, 68))}), r"'coeff' or 'coeff_3dmm'"),
    (lambda p: np.save(p / "x.npy", np.full((3, 257), np.nan, np.float32)), "NaN"),
    (lambda p: (p / "x.txt").write_text("1 2 3"), r"\.npy, \.npz or \.mat"),
])
def test_coefficient_files_of_another_layout(tmp_path, write, match):
    write(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(InputError, match=match):
        read_face_coefficients(path)


def test_gaze_inputs(tmp_path):
    np.savetxt(tmp_path / "g.txt", np.array([[0.1, -0.2], [0.3, 0.0]]))
    assert torch.allclose(read_gaze(tmp_path / "g.txt"), torch.tensor([[0.1, -0.2], [0.3, 0.0]]))
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"\(T, 2\)"):
        read_gaze(tmp_path / "bad.npy")
    assert torch.equal(parse_gaze("0.2,0"), torch.tensor([0.2, 0.0]))
    with pytest.raises(InputError, match="YAW,PITCH"):
        parse_gaze("left")


def test_l2cs_expectation():
    onehot = torch.full((1, 90), -1e4)
    onehot[0, 45] = 0.0     # bin 45: 45 * 4 - 180 = 0 degrees
    uniform = torch.zeros(1, 90)   # mean bin 44.5 -> -2 degrees
    g = l2cs_gaze(onehot, uniform)
    assert torch.allclose(g, torch.tensor([[0.0, -2 * math.pi / 180]]), atol=1e-6)


def test_frame_vectors_scales_and_gaze_independence():
    t = 4
    exp, pose = torch.randn(t, 64), torch.randn(t, 6)
    f = frame_vectors(exp, pose)
    assert torch.allclose(f[:, :64], 1.5 * exp) and torch.allclose(f[:, 64:70], 1.2 * pose)
    assert torch.equal(f[:, 70:], torch.zeros(t, 2))
    g = frame_vectors(exp, pose, gaze=torch.tensor([0.2, 0.0]))
    assert torch.equal(g[:, :70], f[:, :70]) and torch.equal(g[:, 70], torch.full((t,), 0.2))
    with pytest.raises(InputError, match=r"\(4, 6\)"):
        frame_vectors(exp, torch.randn(t, 3))
    with pytest.raises(InputError, match=r"\(4, 2\)"):
        frame_vectors(exp, pose, gaze=torch.zeros(3, 2))


def test_windows_are_edge_clamped():
    frames = torch.arange(5, dtype=torch.float32)[:, None].expand(5, 72)
    w = coefficient_windows(frames)
    assert w.shape == (5, 72, 27)
    assert w[0, 0].tolist() == [0.0] * 14 + [1, 2, 3, 4] + [4.0] * 9
    assert torch.equal(w[:, 0, 13], torch.arange(5, dtype=torch.float32))   # the centre is the frame itself
    assert coefficient_windows(frames, indices=[2]).shape == (1, 72, 27)
    with pytest.raises(InputError, match="at least 25"):
        coefficient_windows(frames, radius=11)
    with pytest.raises(InputError, match=r"\(T, 72\)"):
        coefficient_windows(torch.zeros(5, 70))


def test_smooth_pose_is_the_recursive_five_tap_mean():
    p = torch.arange(7, dtype=torch.float64)[:, None].repeat(1, 6) ** 2
    s = smooth_pose(p)
    assert torch.equal(s[:2], p[:2]) and torch.equal(s[-2:], p[-2:])
    assert torch.allclose(s[2], p[:5].mean(0))
    assert torch.allclose(s[3], torch.cat([s[1:3], p[3:6]]).mean(0))   # uses the already smoothed frame 2
