import numpy as np
import pytest

from face_data import gray_image, read_frames
from plugtalk.errors import InputError, NoFaceError
from plugtalk.face import DlibLandmarkDetector, LandmarkDetector, face_landmarks, find_largest_face
from plugtalk.face.landmarks import LEFT_EYE, MOUTH, NOSE, RIGHT_EYE


@pytest.fixture(scope="module")
def frame():
    return read_frames("faces/test/vox_driving2__driving2.mp4", n=1)[0]


def test_landmarks_lie_on_the_face_in_anatomical_order(frame):
    box = find_largest_face(frame)
    lm = face_landmarks(frame)
    assert lm.shape == (68, 2) and lm.dtype == np.float64
    assert (lm[:, 0] >= box.left - 0.2 * box.width).all() and (lm[:, 0] <= box.right + 0.2 * box.width).all()
    eyes_y = lm[list(LEFT_EYE + RIGHT_EYE), 1].mean()
    assert eyes_y < lm[list(NOSE), 1].mean() < lm[list(MOUTH), 1].mean()
    assert lm[list(LEFT_EYE), 0].mean() < lm[list(RIGHT_EYE), 0].mean()  # image-left eye first


def test_given_box_and_detected_box_agree(frame):
    det = DlibLandmarkDetector()
    assert isinstance(det, LandmarkDetector)
    np.testing.assert_array_equal(det.landmarks(frame, find_largest_face(frame)), det.landmarks(frame))


def test_no_face_raises_naming_the_input():
    with pytest.raises(NoFaceError, match="my_still"):
        face_landmarks(gray_image(), name="my_still")


def test_bad_input_is_rejected():
    with pytest.raises(InputError):
        face_landmarks(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError):
        face_landmarks(np.zeros((64, 64), np.uint8))
