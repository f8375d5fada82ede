"""plugtalk.io.images: reading every image mode as 8-bit RGB, atomic saving, tensor conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from data_support import shared_file
from plugtalk.errors import InputError
from plugtalk.io.images import load_image, save_image, to_tensor, to_uint8


def test_real_portrait_reads_as_rgb_uint8():
    img = load_image(shared_file("data", "stills", "vox_macron.png"))
    assert img.dtype == np.uint8 and img.shape == (256, 256, 3)
    assert img.std() > 10  # a real picture, not a blank


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (40, 50, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], g)


def test_rgba_is_composited_on_the_background(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200                      # red everywhere
    rgba[:20, :, 3] = 255                   # top half opaque
    rgba[20:, :, 3] = 0                     # bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(img[-1, -1], [255, 255, 255])
    black = load_image(tmp_path / "a.png", background=(0, 0, 0))
    np.testing.assert_array_equal(black[-1, -1], [0, 0, 0])


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (40, 40), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    p.paste(0, (0, 0, 40, 10))  # index 0 (transparent) on the top rows
    p.save(tmp_path / "p.png", transparency=0)
    img = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(img[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(img[-1, -1], [10, 20, 30])


def test_16_bit_png_is_scaled_not_truncated(tmp_path):
    g16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really stored as 16 bit
    img = load_image(tmp_path / "g16.png")
    expected = np.round(g16 / 257.0).astype(np.uint8)
    assert np.abs(img[..., 0].astype(int) - expected).max() <= 1
    assert img.max() == 255 and img.min() == 0


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :40] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "o.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "o.jpg")
    assert img.shape == (80, 40, 3)
    assert img[:20].mean() > 200 and img[-20:].mean() < 50  # the white half is now on top


def test_tiny_image_refused_with_configurable_minimum(tmp_path):
    Image.new("RGB", (20, 100)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="tiny.png.*20x100"):
        load_image(tmp_path / "tiny.png")
    assert load_image(tmp_path / "tiny.png", min_side=16).shape == (100, 20, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_files_raise_input_error_naming_the_file(tmp_path, content):
    p = tmp_path / "bad.png"
    if content is None:  # a real PNG cut in half
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    else:
        p.write_bytes(content)
    with pytest.raises(InputError, match="bad.png"):
        load_image(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


def test_save_image_round_trip_and_atomicity(tmp_path):
    img = np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    save_image(tmp_path / "x.png", img)
    np.testing.assert_array_equal(load_image(tmp_path / "x.png"), img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no temporary left behind
    with pytest.raises(InputError, match="does not exist"):
        save_image(tmp_path / "missing" / "y.png", img)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(InputError, match="suffix"):
        save_image(tmp_path / "y.notanimage", img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_save_image_accepts_a_tensor(tmp_path):
    t = torch.zeros(1, 3, 8, 8)
    t[:, 0] = 1.0
    save_image(tmp_path / "t.png", t)
    np.testing.assert_array_equal(Image.open(tmp_path / "t.png").getpixel((0, 0)), (255, 128, 128))


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.just(3))))
def test_to_tensor_to_uint8_round_trip(batch):
    t = to_tensor(batch)
    assert t.shape == (batch.shape[0], 3, batch.shape[1], batch.shape[2]) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(to_uint8(t), batch)


def test_to_tensor_shapes_and_errors():
    img = np.full((4, 5, 3), 255, np.uint8)
    t = to_tensor(img, dtype=torch.float64)
    assert t.shape == (1, 3, 4, 5) and t.dtype == torch.float64 and torch.all(t == 1)
    assert to_tensor([img, img]).shape == (2, 3, 4, 5)
    assert to_uint8(t[0]).shape == (4, 5, 3)
    with pytest.raises(InputError, match="uint8"):
        to_tensor(img.astype(np.float32))
    with pytest.raises(InputError, match="differ"):
        to_tensor([img, img[:2]])
    with pytest.raises(InputError, match="NaN"):
        to_uint8(torch.full((3, 2, 2), float("nan")))
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        to_uint8(torch.zeros(4, 2, 2))
    np.testing.assert_array_equal(to_uint8(torch.full((3, 1, 1), 5.0)), [[[255, 255, 255]]])  # clipped


def test_atomic_outputs_get_normal_permissions(tmp_path):
    """Files written through atomic_path are readable like any new file (mkstemp alone gives 0o600)."""
    import os

    save_image(tmp_path / "p.png", np.zeros((40, 40, 3), np.uint8))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(tmp_path / "p.png", 0o640)
    save_image(tmp_path / "p.png", np.ones((40, 40, 3), np.uint8))  # overwrite keeps the mode
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o640
    # safetensors' writer replaces the temporary file with a 0o600 one of its own
    from plugtalk.weights.plugtalk_format import save_safetensors

    save_safetensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors", {})
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_resize_square_matches_pil_lanczos_and_checks_input():
    from plugtalk.io.images import resize_square

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 52, 3), dtype=np.uint8)
    out = resize_square(frames, 64)
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(frames[1]).resize((64, 64), Image.LANCZOS))
    assert np.array_equal(out[1], expected)
    same = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert resize_square(same, 64) is same
    assert resize_square(np.zeros((0, 8, 8, 3), np.uint8), 16).shape == (0, 16, 16, 3)
    with pytest.raises(InputError, match="uint8"):
        resize_square(frames.astype(np.float32), 64)
    with pytest.raises(InputError, match="size"):
        resize_square(frames, 0)
