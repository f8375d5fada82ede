"""ONNX export (plugtalk.deploy.onnx_export) and the onnxruntime animator (plugtalk.deploy.onnx_runtime).

Parity: onnxruntime vs torch eager on the same inputs, max abs error <= 1e-3 in [-1, 1] units, batch 1 and 4,
for every backbone retrofitted with EMI + EDI (random init, so the modules act) and plain.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="needs plugtalk[onnx] (onnxruntime)")
onnx = pytest.importorskip("onnx", reason="needs plugtalk[onnx] (onnx)")
pytest.importorskip("onnxscript", reason="needs plugtalk[onnx] (onnxscript)")

from typer.testing import CliRunner  # noqa: E402

from conftest import tiny_backbone  # noqa: E402
from plugtalk import retrofit  # noqa: E402
from plugtalk.cli import app  # noqa: E402
from plugtalk.deploy import MANIFEST  # noqa: E402
from plugtalk.deploy.onnx_export import export_onnx  # noqa: E402
from plugtalk.deploy.onnx_runtime import OnnxAnimator, open_session  # noqa: E402
from plugtalk.errors import InputError  # noqa: E402

SMALL_EMI = dict(width=16, num_heads=2, num_queries=4)
SMALL_EDI = dict(num_slots=8, decoder_channels=16, fusion_heads=2)
TOL = 1e-3
runner = CliRunner()

# (backbone, EMI+EDI?, adapter options): every backbone retrofitted, DPE in both modes, and one plain model
CASES = {
    "lia+both": ("lia", True, {}),
    "edtalk+both": ("edtalk", True, {}),
    "dpe-pose+both": ("dpe", True, {"mode": "pose"}),
    "dpe-expression": ("dpe", False, {"mode": "expression"}),
}


def build(name: str, both: bool, opts: dict):
    b = tiny_backbone(name)
    torch.manual_seed(1)
    if both:
        return retrofit(b, emi=SMALL_EMI, edi=SMALL_EDI, init="random", **opts).eval()
    return retrofit(b, emi=None, edi=None, **opts).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports made on first use, shared by the tests of this module."""
    cache = {}

    def get(case: str):
        if case not in cache:
            model = build(*CASES[case])
            folder = tmp_path_factory.mktemp("onnx") / case
            cache[case] = (model, export_onnx(model, folder), OnnxAnimator(folder, threads=1))
        return cache[case]

    return get


def images(batch: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.startswith(("dpe", "edtalk")) else c
                                  for c in CASES])
@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_matches_torch_eager(exported, case, batch):
    model, result, runtime = exported(case)
    assert result.max_abs_error <= TOL  # the export's own check on random inputs
    size = model.adapter.image_size
    source, driving = images(batch, size, 1), images(batch, size, 2)
    with torch.inference_mode():
        want = model(source, driving)
    got = runtime(source, driving)
    err = float((got - want).abs().max())
    assert got.shape == want.shape == (batch, 3, size, size)
    assert err <= TOL, f"{case} batch {batch}: max abs error {err:.2e}"
    # the graphs really depend on their inputs (a constant-folded graph would not)
    other = runtime(source, images(batch, size, 3))
    assert float((other - got).abs().max()) > 10 * TOL


def test_manifest_documents_graph_inputs(exported):
    model, result, runtime = exported("lia+both")
    m = json.loads((result.path / MANIFEST).read_text())
    levels = len(model.adapter.feature_spec.levels)
    assert m["graphs"]["render"]["inputs"] == ["latent", *(f"pyramid_{i}" for i in range(levels)), "code",
                                               "driving_code"]
    assert m["emi"] and m["edi"] and m["backbone"] == "lia"
    for graph in ("encode", "render"):
        g = onnx.load(str(result.path / f"{graph}.onnx")).graph
        names = [i.name for i in g.input]
        assert names == m["graphs"][graph]["inputs"]
        # dynamic batch axis on every input and output
        for v in [*g.input, *g.output]:
            assert v.type.tensor_type.shape.dim[0].dim_param, f"{graph}:{v.name} has a fixed batch axis"
        # the QR basis is folded: no QR / loop constructs remain
        assert not {n.op_type for n in g.node} & {"Loop", "If", "Scan"}


@pytest.mark.slow
def test_edtalk_controls_match_torch(exported):
    """EDTalk's mouth coefficients (audio) and expression weights as graph inputs, with frames on the pose bank."""
    model, _, runtime = exported("edtalk+both")
    size = model.adapter.image_size
    c = model.backbone.config
    source, pose = images(1, size, 4), images(3, size, 5)
    g = torch.Generator().manual_seed(6)
    mouth = torch.randn(3, c.mouth_dim, generator=g)
    weights = torch.randn(3, c.expression_dim, generator=g)
    with torch.inference_mode():
        want = model(source.expand(3, -1, -1, -1), pose=pose, mouth_coefficients=mouth, expression_weights=weights)
    got = runtime.render(runtime.encode_source(source), runtime.encode_drivers({"pose": pose}),
                         {"mouth_coefficients": mouth, "expression_weights": weights})
    assert float((got - want).abs().max()) <= TOL
    # coefficients change the output; without them the mouth bank follows the source's own motion
    with torch.inference_mode():
        plain = model(source.expand(3, -1, -1, -1), pose=pose)
    got_plain = runtime.render(runtime.encode_source(source), runtime.encode_drivers({"pose": pose}))
    assert float((got_plain - plain).abs().max()) <= TOL
    assert float((got_plain - got).abs().max()) > 10 * TOL


def test_animate_with_onnx_runtime_streams_the_same_frames(exported, tmp_path):
    """The torch and onnx runtimes through the same animate() (relative motion, smoothing, batches)."""
    from plugtalk.animate import AnimateOptions, animate
    from plugtalk.io.video import VideoWriter, read_frames

    model, _, runtime = exported("lia+both")
    size = model.adapter.image_size
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    video = tmp_path / "drive.mp4"
    with VideoWriter(video, fps=25, lossless=True) as w:
        for i in range(7):
            w.write(np.roll(src, 2 * i, axis=1)[None])
    kw = dict(drivers={"driving": video}, options=AnimateOptions(crop_source=False, crop_driving=False, relative=True,
                                                                 smooth=3, batch_size=3, lossless=True))
    a = animate(model, src, tmp_path / "torch.mp4", **kw)
    b = animate(runtime, src, tmp_path / "onnx.mp4", **kw)
    assert a.frames == b.frames == 7 and b.relative and b.smooth == 3
    fa, fb = read_frames(a.path), read_frames(b.path)
    assert np.abs(fa.astype(int) - fb.astype(int)).max() <= 1


def test_onnxruntime_rejection_names_the_operator(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])
    node = helper.make_node("Warp5D", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match=r"operator Warp5D \(domain com\.example"):
        open_session(path)


def test_export_rejects_unsupported_opset_and_bad_folders(tmp_path):
    model = build("lia", False, {})
    with pytest.raises(InputError, match="unsupported opset 11"):
        export_onnx(model, tmp_path / "m", opset=11)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        export_onnx(model, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    with pytest.raises(InputError, match="not a plugtalk ONNX export"):
        OnnxAnimator(tmp_path / "full")


def test_cli_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["export", "--format", "tflite", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown export format 'tflite'" in r.output
    r = runner.invoke(app, ["export", "--opset", "7", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unsupported opset 7" in r.output
    r = runner.invoke(app, ["animate", "--runtime", "onnx", "-c", str(tmp_path), "-s", "a.png", "-d", "b.mp4",
                            "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code == 2 and "not a plugtalk ONNX export" in r.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_exports_the_embedded_default_model_and_animates_the_demo(tmp_path):
    from plugtalk.demo import demo_driving_path, demo_source
    from plugtalk.io.video import probe_video
    from plugtalk.default_model import default_model_path

    if default_model_path() is None:
        pytest.skip("this installation has no embedded default model")
    from PIL import Image

    folder = tmp_path / "default-onnx"
    r = runner.invoke(app, ["export", "--format", "onnx", "-o", str(folder)])
    assert r.exit_code == 0, r.output
    m = json.loads((folder / MANIFEST).read_text())
    assert m["source"] == "embedded default model" and m["check"]["max_abs_error"] <= TOL
    src = tmp_path / "astronaut.png"
    Image.fromarray(demo_source()).save(src)
    out = tmp_path / "out.mp4"
    r = runner.invoke(app, ["animate", "--runtime", "onnx", "-c", str(folder), "-s", str(src), "-d",
                            str(demo_driving_path()), "-o", str(out), "--frames", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "ONNX export" in r.output and probe_video(out).frame_count == 4


@pytest.mark.slow
def test_bench_onnx_times_both_runtimes_on_the_same_model():
    """The bench's mechanics (figures are printed by plugtalk bench, never asserted)."""
    from plugtalk.deploy.onnx_speed import bench_onnx

    r = bench_onnx("lia", "both", size=32, threads=1, rounds=2, iters=1, warmup=0)
    assert r.torch_ms > 0 and r.onnx_ms > 0 and r.speedup == pytest.approx(r.torch_ms / r.onnx_ms)
    assert r.max_abs_error <= TOL
    assert r.torch_top and r.onnx_top and all(0 < share <= 1 for _, share in r.onnx_top)
    assert len(r.row()) == 9


def test_a_folder_whose_graphs_do_not_match_the_manifest_is_refused_at_load(exported, tmp_path):
    """Issue 19.3: a render.onnx that is the encode graph failed only at the first frame (missing inputs);
    issue 19.4: a thread count above the cores is capped with a warning (1000 threads once hung the machine)."""
    import shutil

    from plugtalk.checks import available_cpus

    _, result, _ = exported("lia+both")
    mask = os.umask(0)
    os.umask(mask)
    assert result.path.stat().st_mode & 0o777 == 0o777 & ~mask  # an ordinary folder, not mkdtemp's private 0700
    swapped = tmp_path / "swapped"
    shutil.copytree(result.path, swapped)
    shutil.copy(swapped / "encode.onnx", swapped / "render.onnx")
    with pytest.raises(InputError, match=r"render.onnx' takes inputs \['image'\].*do not belong together"):
        OnnxAnimator(swapped, threads=1)
    r = runner.invoke(app, ["animate", "--runtime", "onnx", "-c", str(swapped), "--threads", "1000",
                            "-s", "a.png", "-d", "b.mp4", "-o", str(tmp_path / "o.mp4")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "do not belong together" in text, text
    assert f"warning: --threads 1000 is more than the {available_cpus()} CPU core(s) available" in text, text
