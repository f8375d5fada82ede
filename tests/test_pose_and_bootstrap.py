"""Head pose from 68 landmarks (known rotations recovered; a mirrored real face has the opposite yaw), the
expression distance, and the pair bootstrap (a known distribution gives the known interval; seeded)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_support import shared_file
from plugtalk.errors import InputError
from plugtalk.face.pose import MEAN_FACE_3D, MIRROR, expression_distance, head_pose, pose_difference
from plugtalk.metrics.bootstrap import bootstrap_ci, paired_difference


def _image_points(yaw, pitch, roll, scale=80.0, offset=(128.0, 128.0)):
    rot = Rotation.from_euler("ZXY", [roll, pitch, yaw], degrees=True).as_matrix()
    cam = MEAN_FACE_3D @ rot.T
    return scale * np.stack([cam[:, 0], -cam[:, 1]], axis=1) + np.asarray(offset)


@pytest.mark.parametrize("angles", [(20.0, 0.0, 0.0), (0.0, -15.0, 0.0), (-30.0, 10.0, 8.0)])
def test_head_pose_recovers_a_known_rotation_and_its_sign_conventions(angles):
    pts = _image_points(*angles)
    p = head_pose(pts)
    assert (p.yaw, p.pitch, p.roll) == pytest.approx(angles, abs=1e-3)
    assert p.scale == pytest.approx(80.0, rel=1e-4)
    if angles[0] > 0:
        assert pts[30, 0] > pts[27, 0]  # yaw > 0: the nose tip points to the image's right


def test_mean_face_is_mirror_symmetric():
    np.testing.assert_allclose(MEAN_FACE_3D[MIRROR] * [-1, 1, 1], MEAN_FACE_3D, atol=1e-12)


@pytest.mark.slow
def test_a_horizontally_flipped_real_face_has_the_opposite_yaw():
    from plugtalk.face.landmarks import face_landmarks
    from plugtalk.io.images import load_image

    img = load_image(shared_file("data", "stills", "liveportrait_d12_image_musk.png"))  # a photo turned ~20 deg
    a = head_pose(face_landmarks(img))
    b = head_pose(face_landmarks(np.ascontiguousarray(img[:, ::-1])))
    assert abs(a.yaw) > 8 and abs(b.yaw) > 8
    assert np.sign(a.yaw) == -np.sign(b.yaw)
    assert a.yaw + b.yaw == pytest.approx(0, abs=4)       # the detector's landmarks are not exactly mirrored
    assert a.pitch == pytest.approx(b.pitch, abs=4)
    assert pose_difference(a, b) == pytest.approx(abs(a.yaw - b.yaw), abs=6)


def test_pose_difference_and_expression_distance():
    a, b = head_pose(_image_points(0, 0, 0)), head_pose(_image_points(25, 0, 0))
    assert pose_difference(a, a) == pytest.approx(0, abs=1e-4)
    assert pose_difference(a, b) == pytest.approx(25, abs=1e-3)
    neutral = _image_points(0, 0, 0)
    moved = neutral * 1.7 + 13.0  # a similarity: same expression
    assert expression_distance(neutral, moved) == pytest.approx(0, abs=1e-9)
    open_mouth = neutral.copy()
    open_mouth[55:60, 1] += 20  # lower lip down by 1/4 of the eye distance (80 px)
    open_mouth[65:68, 1] += 20
    # 8 of the 42 expression points moved by 20 px = 0.25 eye distances; the stable points did not move
    assert expression_distance(neutral, open_mouth) == pytest.approx(0.25 * 8 / 42, rel=1e-9)
    with pytest.raises(InputError, match="NaN"):
        expression_distance(neutral, np.full((68, 2), np.nan))


def test_bootstrap_of_normal_samples_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=400)
    ci = bootstrap_ci(x, n_resamples=20000, seed=5)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert ci.resolved and ci.n == 400


def test_bootstrap_is_seeded_and_skips_non_finite_values():
    x = np.r_[np.random.default_rng(2).normal(0.0, 1.0, 50), np.nan, np.inf]
    a, b, c = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=4)
    assert a == b and a.n == 50
    assert (a.low, a.high) != (c.low, c.high)
    assert bootstrap_ci([np.nan]).n == 0 and bootstrap_ci([2.0]).low == 2.0


def test_paired_difference_uses_the_shared_pairs_and_removes_their_common_spread():
    rng = np.random.default_rng(0)
    pair_level = rng.normal(0.0, 5.0, 60)          # large between-pair spread shared by both models
    base = {i: pair_level[i] for i in range(60)}
    var = {i: pair_level[i] + 0.3 + rng.normal(0, 0.1) for i in range(60)}
    var[99] = 100.0                                  # a pair the baseline did not score: left out
    d = paired_difference(var, base, seed=0)
    assert d.n == 60 and d.resolved and d.low > 0.2 and d.high < 0.4
    unpaired = bootstrap_ci(np.array(list(var.values())[:60]) - np.array(list(base.values()))[::-1], seed=0)
    assert not unpaired.resolved  # the same effect without pairing drowns in the pair spread
