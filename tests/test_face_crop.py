"""plugtalk.face.crop: FOMM/LIA-style clip boxes, crops, paste-back and face tracks on real faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_support import shared_file, train_clip
from plugtalk.errors import InputError, NoFaceError
from plugtalk.face.crop import (CropBox, clip_crop_box, crop_and_resize, crop_portrait, face_size, paste_back,
                                portrait_box, split_face_track)
from plugtalk.face.detect import FaceBox, detect_faces
from plugtalk.io.images import load_image, save_image
from plugtalk.io.video import read_frames


def _on_canvas(img: np.ndarray, h: int, w: int, top: int, left: int) -> np.ndarray:
    """Place ``img`` on a larger textured canvas (an 'uncropped' frame with the face off-centre)."""
    rng = np.random.default_rng(0)
    canvas = (rng.integers(90, 140, (h, w, 3))).astype(np.uint8)
    canvas[top:top + img.shape[0], left:left + img.shape[1]] = img
    return canvas


def test_portrait_crop_centres_the_face_on_an_uncropped_image(tmp_path):
    face = load_image(shared_file("data", "stills", "edtalk_uncrop_face.png"))
    big = _on_canvas(face, 700, 900, top=380, left=90)  # face near the bottom-left
    save_image(tmp_path / "big.png", big)
    crop, box = crop_portrait(tmp_path / "big.png", size=256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    ref = detect_faces(face)[0]
    assert box.size == pytest.approx(2.0 * face_size(ref), abs=2)     # whole head: 2x the face
    assert box.padding(700, 900) == (0, 0, 0, 0)                     # room enough: no padding
    got = detect_faces(crop)
    assert got, "the cropped face must still be detectable"
    cx, cy = got[0].center
    s = 256 / 2.0  # face size in the crop
    assert cx == pytest.approx(128, abs=0.06 * 256)
    assert cy == pytest.approx(128 + 0.18 * s, abs=0.06 * 256)        # raised box: face a bit below centre
    assert face_size(got[0]) == pytest.approx(s, rel=0.15)


def test_portrait_that_is_already_tight_keeps_the_whole_frame():
    img = load_image(shared_file("data", "stills", "vox_macron.png"))
    box = portrait_box(img)
    s = face_size(detect_faces(img)[0])
    assert 1.3 * s < 256 < 2.0 * s  # the still is tighter than a 2x crop but not below 1.3x
    assert box.as_xyxy() == (0, 0, 256, 256)


def test_no_face_raises_naming_the_file(tmp_path):
    rng = np.random.default_rng(3)
    save_image(tmp_path / "wall.png", rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError, match="wall.png"):
        crop_portrait(tmp_path / "wall.png")
    with pytest.raises(NoFaceError, match="my array"):
        portrait_box(np.full((100, 100, 3), 128, np.uint8), name="my array")


def test_clip_box_follows_the_rules():
    # a face of size 100 moving 40 px to the right over the clip, in a 720x1280 frame
    boxes = [FaceBox(600 + x, 300, 700 + x, 400) for x in np.linspace(0, 40, 30)] + [None] * 5
    box = clip_crop_box(boxes, (720, 1280))
    assert box.size == 2.0 * 100 + 40                  # grown by the motion range
    assert box.left + box.size / 2 == pytest.approx(670, abs=1)  # middle of the centre range
    assert box.top + box.size / 2 == pytest.approx(350 - 18, abs=1)  # raised by 0.18 face sizes
    big_motion = [FaceBox(100 + x, 300, 200 + x, 400) for x in (0, 300)]
    assert clip_crop_box(big_motion, (720, 1280)).size == 240  # capped at 2.4x
    # tight frame: shrink to the frame but not below 1.3x; then pad
    tight = clip_crop_box([FaceBox(40, 40, 210, 210)], (256, 256))  # 2 x 170 > 256 > 1.3 x 170
    assert tight.as_xyxy() == (0, 0, 256, 256)
    tiny = clip_crop_box([FaceBox(0, 0, 250, 250)], (256, 256))
    assert tiny.size == round(1.3 * 250) and sum(tiny.padding(256, 256)) > 0
    # near a border: the box moves inside instead of padding
    corner = clip_crop_box([FaceBox(5, 5, 65, 65)], (480, 640))
    assert corner.padding(480, 640) == (0, 0, 0, 0) and corner.left == 0 and corner.top == 0
    with pytest.raises(NoFaceError, match="my clip"):
        clip_crop_box([None, None], (10, 10), name="my clip")


def test_crop_and_resize_pads_with_edge_pixels():
    frame = np.repeat((np.arange(100, dtype=np.uint8) * 2)[None, :, None], 3, axis=2)  # value = 2 x column
    frame = np.repeat(frame, 100, axis=0)
    out = crop_and_resize(frame, CropBox(-20, 0, 100), size=100)  # 20 columns outside on the left
    assert out.shape == (100, 100, 3)
    assert np.all(out[:, :20] == frame[:, :1])          # padding repeats the edge column
    np.testing.assert_array_equal(out[:, 20:], frame[:, :80])
    half = crop_and_resize(frame, CropBox(0, 0, 100), size=50)
    assert half.shape == (50, 50, 3) and abs(int(half[0, 25, 0]) - 101) <= 2  # resized, not cropped
    with pytest.raises(InputError, match="overlap"):
        crop_and_resize(frame, CropBox(200, 200, 10))


def test_paste_back_round_trip_and_feathering():
    clip = read_frames(train_clip("obama__uncrop_Obama_00"), max_frames=1)[0]
    big = _on_canvas(clip, 500, 600, top=100, left=200)
    box = CropBox(220, 110, 200)
    crop = crop_and_resize(big, box, 256)
    # pasting the unchanged crop back reproduces the frame (up to two resamplings)
    back = paste_back(big, crop, box, feather=0.1)
    assert back.shape == big.shape
    inner = (slice(130, 290), slice(240, 400))
    assert np.abs(back[inner].astype(int) - big[inner]).mean() < 4
    # outside the box: untouched
    np.testing.assert_array_equal(back[:110], big[:110])
    # an animated crop (here: all white) shows fully in the middle, softly at the edge
    white = np.full((256, 256, 3), 255, np.uint8)
    pasted = paste_back(big, white, box, feather=0.1)
    assert np.all(pasted[210, 320] == 255)
    edge = pasted[210, box.left + 2].astype(int)
    assert np.all(edge < 255) and np.all(edge >= big[210, box.left + 2])  # partly blended
    hard = paste_back(big, torch.ones(1, 3, 64, 64), box, feather=0)  # tensor in [-1, 1], hard edge
    assert np.all(hard[box.top:box.bottom, box.left:box.right] == 255)
    # a box extending past the frame is clipped
    out = paste_back(big, white, CropBox(-50, -50, 200), feather=0)
    assert np.all(out[:150, :150] == 255) and np.all(out[150:, 150:] == big[150:, 150:])


def test_split_face_track_interpolates_and_cuts():
    b = lambda x: FaceBox(x, 0, x + 100, 100)
    seq = [b(0), None, None, b(30), None, None, None, None, None, b(30), b(300), None]
    tracks = split_face_track(seq, max_gap=3, max_jump=0.5)
    assert [(t.start, t.end, t.detected) for t in tracks] == [(0, 4, 2), (9, 10, 1), (10, 11, 1)]
    assert tracks[0].boxes[1].left == pytest.approx(10) and tracks[0].boxes[2].left == pytest.approx(20)
    assert split_face_track([None, None], max_gap=5) == []
