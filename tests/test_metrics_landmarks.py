import numpy as np
import pytest

from face_data import read_frames
from plugtalk.errors import InputError
from plugtalk.face import face_landmarks
from plugtalk.metrics import akd, landmark_distance, lmd


def shift_right(frames: np.ndarray, dx: int) -> np.ndarray:
    """Translate the content dx px to the right, repeating the left column (no wrap-around)."""
    out = np.empty_like(frames)
    out[:, :, dx:] = frames[:, :, :-dx]
    out[:, :, :dx] = frames[:, :, :1]
    return out


def landmarks_of(frames):
    return np.stack([face_landmarks(f) for f in frames])


def test_distance_definition_on_known_points():
    ref = np.random.default_rng(0).uniform(0, 256, (2, 68, 2))
    pred = ref + np.array([3.0, 4.0])
    np.testing.assert_allclose(landmark_distance(pred, ref), [5.0, 5.0])
    mouth_only = ref.copy()
    mouth_only[:, 48:] += np.array([0.0, 2.0])
    assert lmd(mouth_only, ref, (256, 256), "mouth") == pytest.approx(2.0)
    assert lmd(mouth_only, ref, (256, 256), "face") == pytest.approx(2.0 * 20 / 68)
    # pixels at 256 px: the same displacement on a 512 px frame counts half
    assert lmd(pred, ref, (512, 512)) == pytest.approx(2.5)
    assert akd(pred, ref) == pytest.approx(5.0)


def test_frames_without_face_are_skipped():
    ref = np.zeros((3, 68, 2))
    pred = ref + 1.0
    pred[1] = np.nan
    assert akd(pred, ref) == pytest.approx(np.sqrt(2))
    assert np.isnan(akd(np.full((1, 68, 2), np.nan), ref[:1]))
    with pytest.raises(InputError):
        landmark_distance(np.zeros((2, 5, 2)), np.zeros((2, 5, 2)))
    with pytest.raises(ValueError):
        lmd(ref, ref, (256, 256), "eyes")


@pytest.mark.slow
def test_real_frames_zero_when_identical_and_growing_with_shift():
    frames = read_frames("faces/test/vox_driving2__driving2.mp4", n=2, step=90)
    ref = landmarks_of(frames)
    assert lmd(ref, landmarks_of(frames), (256, 256)) == 0.0
    assert akd(ref, landmarks_of(frames)) == 0.0
    f, m, k = [], [], []
    for dx in (3, 8, 16):
        pred = landmarks_of(shift_right(frames, dx))
        f.append(lmd(pred, ref, (256, 256), "face"))
        m.append(lmd(pred, ref, (256, 256), "mouth"))
        k.append(akd(pred, ref))
    print("F-LMD for shifts 3/8/16 px:", np.round(f, 2), "M-LMD:", np.round(m, 2))
    assert f[0] < f[1] < f[2] and m[0] < m[1] < m[2] and k == f
    assert abs(f[2] - 16) < 3  # a translation moves every landmark by about the shift
