import numpy as np
import pytest

from face_data import gray_image, read_frames
from plugtalk.errors import InputError, NoFaceError
from plugtalk.metrics import cosine_similarity, csim


def test_cosine_similarity_definition():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [np.nan, 0.0]])
    np.testing.assert_allclose(cosine_similarity(a, np.array([[2.0, 0.0]])), [1.0, np.sqrt(0.5), np.nan])
    with pytest.raises(InputError):
        cosine_similarity(np.ones((1, 3)), np.ones((1, 2)))


@pytest.mark.slow
def test_csim_against_a_source_image():
    a = read_frames("faces/test/vox_driving2__driving2.mp4", n=3, step=60)
    b = read_frames("faces/test/dpe_s__s.mp4", n=3, step=60)
    same, cross = csim(a, a[0]), csim(b, a[0])
    assert same[0] == pytest.approx(1.0) and (same.min() > cross.max())
    with pytest.raises(NoFaceError, match="reference"):
        csim(a, gray_image())
    with pytest.raises(InputError):
        csim(a, b[:2])
    mixed = a.copy()
    mixed[2] = gray_image()
    assert np.isnan(csim(mixed, a[0])[2])
