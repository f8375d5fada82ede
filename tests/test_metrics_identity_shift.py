"""Identity shift toward the driver, CSIM(output, driving) - CSIM(source, driving): zero for a source driven by
itself, positive for an output that is a copy of the driver; through `plugtalk eval --driving` with a plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from data_support import shared_file
from plugtalk.cli import app
from plugtalk.io.images import load_image
from plugtalk.io.video import VideoWriter, read_frames
from plugtalk.metrics.identity_shift import identity_shift, identity_shift_from_embeddings


def _unit(rng, n, d=16):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_embeddings_source_driven_by_itself_is_zero_and_a_copy_of_the_driver_is_positive():
    rng = np.random.default_rng(0)
    src, drv = _unit(rng, 1), _unit(rng, 5)
    own = identity_shift_from_embeddings(np.repeat(src, 5, 0), src[0], np.repeat(src, 5, 0))
    np.testing.assert_allclose(own["shift"], 0.0, atol=1e-12)
    copy = identity_shift_from_embeddings(drv, src[0], drv)
    np.testing.assert_allclose(copy["csim_output_driving"], 1.0, atol=1e-12)
    np.testing.assert_allclose(copy["shift"], 1.0 - drv @ src[0], atol=1e-12)
    assert (copy["shift"] > 0).all()
    missing = drv.copy()
    missing[2] = np.nan  # no face in that output frame
    assert np.isnan(identity_shift_from_embeddings(missing, src[0], drv)["shift"][2])


@pytest.fixture(scope="module")
def faces():
    source = load_image(shared_file("data", "stills", "vox_monroe.png"))
    driving = read_frames(shared_file("data", "faces", "test", "vox_driving2__driving2.mp4"), max_frames=4)
    return source, driving


@pytest.mark.slow
def test_real_faces_copy_of_source_scores_zero_copy_of_driver_scores_positive(faces):
    source, driving = faces
    own = identity_shift(np.repeat(source[None], 2, 0), source, np.repeat(source[None], 2, 0))
    np.testing.assert_allclose(own["shift"], 0.0, atol=1e-9)
    copy = identity_shift(driving, source, driving)
    assert np.all(copy["shift"] > 0.02), copy["shift"]   # another person: dlib CSIM ~0.85-0.9, so 1 - that
    frozen = identity_shift(np.repeat(source[None], len(driving), 0), source, driving)
    np.testing.assert_allclose(frozen["shift"], 0.0, atol=1e-9)  # copying the source never moves toward the driver


@pytest.mark.slow
def test_eval_cli_driving_writes_per_frame_shift_and_plot(faces, tmp_path):
    source, driving = faces
    drv = tmp_path / "driving.mp4"
    with VideoWriter(drv, fps=25, lossless=True) as w:
        w.write(driving)
    src = tmp_path / "source.png"
    from plugtalk.io.images import save_image
    save_image(src, source)
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "--pred", str(drv), "--source", str(src), "--driving", str(drv),
                                   "--metrics", "csim,identity_shift", "--json", str(report), "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads(report.read_text())
    shift = out["per_frame"]["identity_shift"]
    assert len(shift) == len(driving) and all(s > 0.02 for s in shift)
    assert out["metrics"]["identity_shift"] == pytest.approx(np.mean(shift))
    assert out["per_frame"]["csim_output_driving"] == pytest.approx([1.0] * len(driving), abs=1e-9)
    assert (tmp_path / "r_identity_shift.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["eval", "--pred", str(drv), "--driving", str(drv), "--no-progress"])
    assert bad.exit_code == 2 and "--driving needs --source" in " ".join(bad.output.split())
