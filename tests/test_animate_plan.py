"""animate's validated plan and typed batch stream, without decoding any video."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import plugtalk.backbones as B
from plugtalk import retrofit
from plugtalk.animate import AnimateOptions, FrameBatch, plan_animation, stream_batches
from plugtalk.errors import InputError

TINY = dict(size=32, channel_base=512, channel_max=32, style_dim=64)


def model(name):
    torch.manual_seed(0)
    return retrofit(B.create(name, **TINY), emi=None, edi=None).eval()


def test_plan_takes_motion_mode_and_drivers_from_the_registry(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded while planning")
    lia = plan_animation(model("lia"), tmp_path / "o.mp4", drivers={"driving": video})
    edtalk = plan_animation(model("edtalk"), tmp_path / "o.mp4", drivers={"driving": video, "pose": video})
    assert lia.relative and not edtalk.relative          # LIA's demo: relative; EDTalk's: absolute
    assert lia.assignment == {"driving": "driving"}
    assert edtalk.assignment == {"mouth": "driving", "expression": "driving", "pose": "pose"}
    assert edtalk.describe_drivers()["pose"] == "v.mp4"


@pytest.mark.parametrize("name, request_, match", [
    ("lia", {}, "nothing drives the animation: give --driving"),
    ("gohd", {}, "nothing drives the animation: give coefficients"),
    ("lia", {"drivers": {"pose": "v.mp4", "driving": "v.mp4"}}, "--pose needs a model with a pose driver"),
    ("gohd", {"drivers": {"driving": "v.mp4"}}, "takes no driving video"),
    ("lia", {"controls": {"coefficients": "c.npy"}}, "LIA has no control 'coefficients'"),
    ("gohd", {"controls": {"gaze": "0,0"}}, "the gaze control goes with the coefficients control"),
    ("edtalk", {"controls": {"expression-weights": "1,2"}, "drivers": {"expression": "v.mp4"}}, r"\(10,\)"),
    ("edtalk", {"controls": {"audio": "a.wav"}}, "audio-to-mouth model"),
    ("lia", {"drivers": {"driving": "v.mp4"}, "options": AnimateOptions(smooth=4)}, "odd"),
    ("lia", {"drivers": {"driving": "v.mp4"}, "options": AnimateOptions(batch_size=0)}, "batch size"),
    ("lia", {"drivers": {"driving": "v.mp4"}, "options": AnimateOptions(fps=1e6)}, "fps"),
])
def test_plan_refuses_before_any_heavy_work(tmp_path, name, request_, match):
    with pytest.raises(InputError, match=match):
        plan_animation(model(name), tmp_path / "o.mp4", **request_)


def test_plan_reads_controls_through_the_adapter(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded while planning")
    plan = plan_animation(model("edtalk"), tmp_path / "o.mp4", drivers={"driving": video},
                          controls={"expression-weights": ",".join(["0.5"] * 10)})
    assert plan.assignment == {"mouth": "driving", "pose": "driving"}   # the weights replace the expression bank
    got = plan.controls(torch.arange(3))["expression_weights"]
    assert got.shape == (3, 10) and torch.all(got == 0.5)
    assert plan.describe_drivers()["expression"] == "expression weights"


def test_stream_without_video_counts_frames():
    batches = list(stream_batches({}, 4, 10))
    assert [b.n for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b.frames for b in batches]), torch.arange(10))


class _Clip:
    def __init__(self, n, size=8):
        self.frames = np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(size, 1).repeat(size, 2).repeat(3, 3)

    def batches(self, k):
        for s in range(0, len(self.frames), k):
            yield self.frames[s:s + k], None


def test_stream_keeps_videos_in_step_and_stops_at_the_shortest():
    batches = list(stream_batches({"driving": _Clip(7), "pose": _Clip(5)}, 3, None))
    assert [b.n for b in batches] == [3, 2]
    assert [int(b.crops["pose"][-1, 0, 0, 0]) for b in batches] == [2, 4]
    first, rest = batches[0].split(1)
    assert first.n == 1 and rest.n == 2 and int(rest.crops["driving"][0, 0, 0, 0]) == 1
    assert isinstance(first, FrameBatch) and torch.equal(rest.frames, torch.tensor([1, 2]))
