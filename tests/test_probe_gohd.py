"""The probe on GoHD (no driving image): source-branch taps and the coefficient embedding swapped from a donor
portrait's run into the source's run, against hand-computed renders; the command end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_gohd_adapter import TINY, tiny
from test_probe import colour_scorer
from typer.testing import CliRunner

from plugtalk.cli import app
from plugtalk.errors import InputError
from plugtalk.probe import ProbeSpec, TwoSourceRun, as_animator, controlled_taps, probe_controlled, run_patching
from plugtalk.probe.taps import Variant

TAPS = ["latent", "pyramid.0", "pyramid.1", "pyramid.2", "motion_code", "coefficients.embedding"]


def portraits(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, 32, 32, generator=g) * 1.6 - 0.8 for _ in range(2)]


def windows(n=1, seed=2):
    return torch.randn(n, 72, 27, generator=torch.Generator().manual_seed(seed))


def patched(model, src, donor, names, w, w_donor=None):
    r = as_animator(model)
    variants = [Variant(t, "to_source", (t,)) for t in names]
    out = run_patching(TwoSourceRun(r, w, w_donor), src, donor, controlled_taps(r), variants, batch_size=4,
                       reuse=["model.adapter.backbone.encoder"])
    return out, {t: out.outputs[f"{t}:d->s"] for t in names}


def test_every_tap_is_scored_and_one_window_makes_the_embedding_swap_a_no_op():
    src, donor = (x.double() for x in portraits())  # float64: batched renders equal unbatched ones to ~1e-15
    res = probe_controlled(tiny().double(), src, donor, kinds=["self", "cross", "cross"], scorer=colour_scorer(),
                           batch_size=4)
    keys = {r.variant.key for r in res.variants}
    # without EDI nothing reads the source's motion code: that swap is inert, reported apart
    assert keys == {f"{t}:d->s" for t in TAPS if t != "motion_code"} | {"pyramid:d->s", "identity:d->s",
                                                                         "pyramid-but-identity:d->s"}
    assert [r.variant.key for r in res.inert] == ["motion_code:d->s"]
    for r in res.variants:
        for metric in ("pixel_change", "identity_transfer", "csim_source", "csim_driving"):
            assert np.isfinite(r.scores.per_pair[metric]).all(), (r.variant.key, metric)
    emb = res.variant("coefficients.embedding:d->s").scores.summary["all"]
    assert emb["pixel_change"]["mean"] < 1e-9 and abs(emb["identity_transfer"]["mean"]) < 1e-9
    # the pyramid does reach the render: the source's features carry something the donor's do not
    assert res.variant("pyramid:d->s").scores.summary["all"]["pixel_change"]["mean"] > 1e-3
    assert "coefficients.embedding" not in res.unpaired_taps and "alpha" in res.unpaired_taps
    assert res.taps["coefficients.embedding"].shape == (TINY["style_dim"],)


def test_patches_equal_hand_computed_renders():
    m = tiny().double()  # float64: batched and unbatched convolutions agree to far below the tolerance
    src, donor = (x.double() for x in portraits(2))
    w, w_d = windows().double(), windows(seed=5).double()
    _, outs = patched(m, src, donor, ["pyramid.1", "latent"], w)
    with torch.no_grad():
        a, b = m.encode(src), m.encode(donor)
        h = m.embed(w.expand(2, -1, -1))
        level = list(a.pyramid)
        level[1] = b.pyramid[1]
        torch.testing.assert_close(outs["pyramid.1"], m.decode(m.motion(a.latent, h), level), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(outs["latent"], m.decode(m.motion(b.latent, h), a.pyramid), rtol=1e-9, atol=1e-9)
        # another window for the donor's run: its embedding is the only way the window reaches the render
        base, outs = patched(m, src, donor, ["coefficients.embedding"], w, w_d)
        torch.testing.assert_close(outs["coefficients.embedding"], m(src, w_d.expand(2, -1, -1)), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(base.baseline, m(src, w.expand(2, -1, -1)), rtol=1e-9, atol=1e-9)
    assert (outs["coefficients.embedding"] - base.baseline).abs().mean() > 1e-4


def test_gohd_spec_directions_and_bad_inputs():
    pair = [{"source": "a.png", "driving": "b.png"}]
    assert ProbeSpec(backbone="gohd", pairs=pair).directions == ["to_source"]
    assert ProbeSpec(backbone="lia", pairs=pair).directions == ["to_source", "to_driving"]
    with pytest.raises(InputError, match="reversed pair"):
        ProbeSpec(backbone="gohd", pairs=pair, directions=["to_driving"])
    with pytest.raises(InputError, match="lia is driven by driving frames"):
        ProbeSpec(backbone="lia", pairs=pair, coefficients="c.npy")
    src, donor = portraits(2)
    with pytest.raises(InputError, match="use probe_animator"):
        probe_controlled(tiny("lia"), src, donor, scorer=colour_scorer())
    with pytest.raises(InputError, match=r"T>=25"):
        probe_controlled(tiny(), src, donor, coefficients=torch.zeros(1, 72, 10), scorer=colour_scorer())
    with pytest.raises(InputError, match="3 windows for 2 pairs"):
        probe_controlled(tiny(), src, donor, coefficients=windows(3), scorer=colour_scorer())
    with pytest.raises(InputError, match="unknown tap"):
        probe_controlled(tiny(), src, donor, taps=["f4"], scorer=colour_scorer())


# -- the command --------------------------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(app, ["probe", *map(str, args)])


@pytest.fixture()
def gohd_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {"model": tiny().save_pretrained(tmp_path / "gohd.safetensors"), "coeffs": tmp_path / "coeffs.npy"}
    np.save(paths["coeffs"], rng.normal(scale=0.3, size=(30, 257)).astype(np.float32))
    for name in ("anna.png", "bob.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name)
        paths[name] = tmp_path / name
    return paths


def test_probe_command_on_a_tiny_gohd_writes_a_report(gohd_files, tmp_path):
    out = tmp_path / "out"
    args = ["--backbone", "gohd", "-c", gohd_files["model"], "--source", gohd_files["anna.png"], "--driving",
            gohd_files["bob.png"], "-n", 1, "--taps", "pyramid.0,coefficients.embedding", "--groups", "none",
            "--metrics", "cpbd", "--score-size", 32]
    res = run(*args, "--coefficients", gohd_files["coeffs"], "--out", out)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert [v["key"] for v in report["variants"]] in (["pyramid.0:d->s", "coefficients.embedding:d->s"],
                                                       ["coefficients.embedding:d->s", "pyramid.0:d->s"])
    assert report["spec"]["directions"] == ["to_source"] and report["spec"]["coefficients"] == str(gohd_files["coeffs"])
    assert report["model"]["coefficients"] == str(gohd_files["coeffs"])
    assert (out / "grid.png").is_file() and (out / "identity_shift.png").is_file()
    res = run(*args, "--directions", "to-driving", "--out", tmp_path / "o2")
    assert res.exit_code == 2 and "reversed pair" in res.output and not (tmp_path / "o2").exists()
    res = run("--backbone", "gohd", "-c", gohd_files["model"], "--list-taps")
    assert res.exit_code == 0 and "coefficients.e" in res.output and "(donor run)" in res.output, res.output


@pytest.mark.slow
def test_probe_command_on_gohd_with_real_faces(shared_data, tmp_path):
    """A self and a cross pair of real faces, the full-size GoHD (random weights), a neutral window."""
    out = tmp_path / "out"
    res = run("--backbone", "gohd", "--pairs", shared_data / "faces", "-n", 2, "--taps", "coefficients.embedding",
              "--groups", "identity", "--batch-size", 4, "--out", out)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert {p["kind"] for p in report["pairs"]} == {"self", "cross"} and report["skipped_pairs"] == []
    assert report["model"]["coefficients"].startswith("neutral") and report["spec"]["directions"] == ["to_source"]
    emb = next(v for v in report["variants"] if v["key"] == "coefficients.embedding:d->s")
    identity = next(v for v in report["variants"] if v["key"] == "identity:d->s")
    # one window for both runs: the swap moves nothing but float32 rounding (batched vs single renders)
    assert max(emb["per_pair"]["pixel_change"]) < 1e-4
    assert min(identity["per_pair"]["pixel_change"]) > 100 * max(emb["per_pair"]["pixel_change"])


def test_coefficient_file_window_is_read_by_the_adapters_own_control(tmp_path):
    """The probe's ``coefficients`` file goes through GoHD's ``coefficients`` control (as ``animate --control``
    reads it): the window of the middle frame, edge-clamped; a malformed file is an InputError."""
    from plugtalk.probe.controlled import window_from_file

    m = as_animator(tiny())
    seq = np.random.default_rng(0).normal(scale=0.3, size=(9, 257)).astype(np.float32)
    np.save(tmp_path / "c.npy", seq)
    w = window_from_file(m, str(tmp_path / "c.npy"))
    expected = m.adapter.coefficient_batch(m.adapter.read_coefficients(tmp_path / "c.npy"), torch.tensor([4]))
    assert w.shape == (1, 72, 27) and torch.equal(w, expected["coefficients"])
    assert not torch.equal(w, window_from_file(m, str(_shifted(tmp_path, seq))))  # the file's content drives it
    with pytest.raises(InputError):
        np.save(tmp_path / "bad.npy", np.zeros((6, 64), np.float32))
        window_from_file(m, str(tmp_path / "bad.npy"))


def _shifted(tmp_path, seq):
    np.save(tmp_path / "d.npy", seq[::-1] + 0.5)
    return tmp_path / "d.npy"
