"""The probe: patching engine (against hand computation), replay of the encoder, the planted identity
leak, spec/report round trips and error messages.  Tiny models and synthetic images; no real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_backbone
from torch import nn

from plugtalk.errors import InputError, NoFaceError
from plugtalk.face.detect import FaceBox
from plugtalk.hooks import HookSite
from plugtalk.probe import (
    FaceScorer,
    PairSpec,
    ProbeSpec,
    ProbeWarning,
    ReplayError,
    TapSpec,
    Variant,
    animator_groups,
    animator_taps,
    as_animator,
    load_spec,
    probe_animator,
    probe_module,
    run_patching,
    unpaired_taps,
    write_report,
)
from plugtalk.probe.results import ProbeResult

# -- test doubles -------------------------------------------------------------------------------------------


class MeanColourIdentity:
    """Identity = mean colour: an :class:`~plugtalk.face.IdentityEncoder` double that makes identity
    measurable on synthetic images (two images share an identity when their mean colours agree)."""

    name = "mean-colour"
    dim = 3
    is_arcface_substitute = True

    def embed(self, frames, *, boxes=None, on_missing="raise", name="frames"):
        f = np.asarray(frames, np.float64)
        f = f[None] if f.ndim == 3 else f
        e = f.mean(axis=(1, 2)) - 127.5
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def whole_image(image, name):
    return FaceBox(0, 0, image.shape[1], image.shape[0])


def colour_scorer():
    return FaceScorer(["csim"], identity_encoder=MeanColourIdentity(), face_detector=whole_image)


def images(n=3, size=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 1.6 - 0.8).to(dtype) for _ in range(2)]


# -- a toy animator with a planted leak ------------------------------------------------------------------------


class ToyEncoder(nn.Module):
    """Three "pyramid levels": mean colour (the identity), a 4x-pooled pattern (the motion), and a
    2x-pooled map the decoder never reads."""

    def __init__(self):
        super().__init__()
        self.colour = nn.AdaptiveAvgPool2d(1)
        self.pattern = nn.AvgPool2d(4)
        self.unused = nn.AvgPool2d(2)

    def forward(self, x):
        return self.colour(x), self.pattern(x), self.unused(x)


class ToyAnimator(nn.Module):
    """LIA-like: one encoder for both frames; the output is the driving frame's luminance pattern
    (motion) tinted with the *source's* mean colour (identity), so the colour level carries identity."""

    def __init__(self):
        super().__init__()
        self.encoder = ToyEncoder()

    def forward(self, source, driving):
        colour_s, _, _ = self.encoder(source)
        _, pattern_d, _ = self.encoder(driving)
        motion = F.interpolate(pattern_d.mean(1, keepdim=True), scale_factor=4)
        return (0.3 * (motion - motion.mean((2, 3), keepdim=True)) + colour_s).clamp(-1, 1)


def toy_pairs(size=32):
    """Pairs: 0 self (same tint), 1-2 cross (red source, blue driver)."""
    g = torch.Generator().manual_seed(3)
    pattern = lambda: torch.rand(3, 1, size, size, generator=g, dtype=torch.float64) * 0.6 - 0.3
    red = torch.tensor([0.6, -0.3, -0.3], dtype=torch.float64).view(1, 3, 1, 1)
    blue = torch.tensor([-0.3, -0.3, 0.6], dtype=torch.float64).view(1, 3, 1, 1)
    tint_d = torch.cat([red, blue, blue])
    return pattern() + red, pattern() + tint_d, ["self", "cross", "cross"]


def toy_taps(at_output: bool):
    """The encoder's levels as taps: by output index of the encoder (call 0 = source, 1 = driving), or
    as the outputs of its submodules."""
    names = ["colour", "pattern", "unused"]
    if at_output:
        return [TapSpec(n, HookSite("encoder", call=0, output=i), HookSite("encoder", call=1, output=i))
                for i, n in enumerate(names)]
    return [TapSpec(n, HookSite(f"encoder.{n}", call=0), HookSite(f"encoder.{n}", call=1)) for n in names]


@pytest.mark.parametrize("at_output", [True, False], ids=["encoder-outputs+replay", "submodules"])
def test_planted_identity_leak_ranks_first_and_unused_level_scores_zero(at_output):
    s, d, kinds = toy_pairs()
    model = ToyAnimator()
    res = probe_module(model, s, d, toy_taps(at_output), kinds=kinds, scorer=colour_scorer(),
                       reuse=["encoder"] if at_output else (), batch_size=4)
    top = res.variants[0]
    assert top.variant.key == "colour:d->s"
    transfer = top.scores.summary["cross"]["identity_transfer"]
    assert transfer["n"] == 2 and transfer["mean"] > 0.5  # mean colours red vs blue: cos -0.5 -> large shift
    assert res.baseline.summary["cross"]["csim_source"]["mean"] > 0.99  # unpatched: the source's colour
    assert top.scores.summary["cross"]["csim_driving"]["mean"] > 0.99   # patched: the driver's colour
    # self-reenactment: source and driver share the tint (their patterns differ a little), so swapping
    # the colour moves the identity a hundred times less
    assert abs(top.scores.summary["self"]["identity_transfer"]["mean"]) < 0.01 * transfer["mean"]
    # values the decoder never reads: inert, reported apart and not ranked
    assert {r.variant.key for r in res.inert} == {"unused:d->s", "unused:s->d", "colour:s->d", "pattern:d->s"}
    assert {r.variant.key for r in res.variants} == {"colour:d->s", "pattern:s->d"}
    motion = res.variant("pattern:s->d")  # the source's pattern now drives: pixels change, identity does not
    assert motion.scores.summary["all"]["pixel_change"]["mean"] > 1e-3
    assert abs(motion.scores.summary["cross"]["identity_transfer"]["mean"]) < 0.05


def test_toy_taps_by_output_index_and_by_submodule_agree():
    s, d, kinds = toy_pairs()
    a = probe_module(ToyAnimator(), s, d, toy_taps(True), kinds=kinds, scorer=colour_scorer(), reuse=["encoder"])
    b = probe_module(ToyAnimator(), s, d, toy_taps(False), kinds=kinds, scorer=colour_scorer())
    for r in a.variants:
        assert np.array_equal(r.scores.per_pair["pixel_change"], b.variant(r.variant.key).scores.per_pair["pixel_change"])
    assert [t.shape for t in a.taps.values()] == [(3, 1, 1), (3, 8, 8), (3, 16, 16)]
    assert a.taps["colour"].source == "encoder output[0] (call 0)"
    assert a.taps["colour"].driving == ("encoder output[0] (call 1)",)


# -- the engine against hand computation on plugtalk backbones -----------------------------------------------


def _render(model, s, d, taps, variants, **kw):
    r = as_animator(model)
    return run_patching(r, s, d, {k: v for k, v in animator_taps(r).items() if k in taps}, variants,
                        forward=lambda m, a, b: m(a, b), reuse=["adapter.backbone.encoder"], **kw)


def test_lia_patches_equal_hand_computed_renders():
    m = tiny_backbone("lia", torch.float64)
    s, d = images()
    k = as_animator(m).spec.identity_level
    variants = [Variant(f"pyramid.{k}", "to_source", (f"pyramid.{k}",)),
                Variant("motion_code", "to_driving", ("motion_code",)),
                Variant("all", "to_source", ("latent", "pyramid.0", "pyramid.1", "pyramid.2"), group=True)]
    out = _render(m, s, d, ["latent", "motion_code", "pyramid.0", "pyramid.1", "pyramid.2"], variants, batch_size=9)
    with torch.no_grad():
        es, ed = m.encode(s), m.encode(d)
        pyr = list(es.pyramid)
        pyr[k] = ed.pyramid[k]  # FixTalk: f_4^d in place of f_4^s
        want = m.decode(es.latent + m.direction(m.motion_coefficients(ed.latent)), pyr)
        assert (out.outputs[f"pyramid.{k}:d->s"] - want).abs().max() < 1e-9
        assert (out.baseline - m(s, d)).abs().max() < 1e-9
        # the source's own motion code drives: LIA(s, s); every source encoding swapped: LIA(d, d)
        assert (out.outputs["motion_code:s->d"] - m(s, s)).abs().max() < 1e-9
        assert (out.outputs["all:d->s"] - m(d, d)).abs().max() < 1e-9


@pytest.mark.parametrize("name", ["lia", "edtalk", "dpe"])
def test_stacked_batches_equal_one_pass_per_variant(name):
    """Stacking variants, chunking pairs and replaying the encoder change nothing."""
    m = tiny_backbone(name, torch.float64)
    s, d = images(n=2)
    r = as_animator(m)
    names = [t for t in animator_taps(r) if not t.startswith("fdm.") or t == "fdm.direction"]  # EDTalk: one FDM tap
    variants = [Variant(t, dr, (t,)) for t in names for dr in ("to_source", "to_driving")]
    a = _render(m, s, d, names, variants, batch_size=1)
    b = _render(m, s, d, names, variants, batch_size=8)
    assert a.forward_passes == 2 * (1 + len(variants)) and b.forward_passes == 1 + -(-len(variants) // 4)
    for key in a.outputs:
        assert (a.outputs[key] - b.outputs[key]).abs().max() < 1e-9, key
    assert (a.baseline - b.baseline).abs().max() < 1e-9


def test_edtalk_reverse_patch_replaces_every_bank_driver():
    m = tiny_backbone("edtalk", torch.float64)
    s, d = images()
    taps = animator_taps(as_animator(m))
    assert [x.module for x in taps["latent"].driving_sites] == ["taps.mouth.latent", "taps.pose.latent",
                                                                "taps.expression.latent"]
    out = _render(m, s, d, ["latent"], [Variant("latent", "to_driving", ("latent",))])
    with torch.no_grad():
        assert (out.outputs["latent:s->d"] - m(s, driving=s)).abs().max() < 1e-9


def test_edtalk_fdm_outputs_are_swappable_taps():
    """EDTalk's FDM outputs (per-bank coefficients, the combined direction) pair with the source frame's
    own: s->d renders what the source's FDM output gives (FixTalk suppl. 2.7 case (4)); d->s writes into
    values the render never reads, so those swaps are inert."""
    m = tiny_backbone("edtalk", torch.float64)
    s, d = images(n=2)
    r = as_animator(m)
    taps = animator_taps(r)
    fdm = ["fdm.mouth.alpha", "fdm.pose.alpha", "fdm.expression.alpha", "fdm.alpha", "fdm.direction"]
    assert set(fdm) <= set(taps) and not set(fdm) & set(unpaired_taps(r))
    assert [x.module for x in taps["fdm.direction"].driving_sites] == ["taps.direction"]
    out = _render(m, s, d, fdm, [Variant(t, "to_driving", (t,)) for t in fdm])
    c = m.config
    with torch.no_grad():
        assert (out.outputs["fdm.alpha:s->d"] - m(s, driving=s)).abs().max() < 1e-9  # every bank the source's
        assert (out.outputs["fdm.mouth.alpha:s->d"] - m(s, mouth=s, pose=d, expression=d)).abs().max() < 1e-9
        assert (out.outputs["fdm.pose.alpha:s->d"] - m(s, mouth=d, pose=s, expression=d)).abs().max() < 1e-9
        # the direction alone: the latent moves by the source's direction, the expression condition stays
        alpha_s = torch.cat([m.bank_coefficients(m.encode(s).latent, b)[1] for b in ("mouth", "pose", "expression")], 1)
        alpha_d = torch.cat([m.bank_coefficients(m.encode(d).latent, b)[1] for b in ("mouth", "pose", "expression")], 1)
        q = m.banks.basis()
        enc = m.encode(s)
        by_hand = m.decode(enc.latent + m.banks(alpha_s, q), enc.pyramid, m.banks.expression_direction(alpha_d, q))
        assert (out.outputs["fdm.direction:s->d"] - by_hand).abs().max() < 1e-9
        assert (out.outputs["fdm.direction:s->d"] - out.baseline).abs().max() > 1e-4
    assert taps_shape(r, "fdm.mouth.alpha") == c.mouth_dim and taps_shape(r, "fdm.direction") == c.style_dim
    res = probe_animator(m, s, d, taps=fdm, groups=[], scorer=colour_scorer())
    assert {v.variant.key for v in res.inert} == {f"{t}:d->s" for t in fdm}
    assert {v.variant.key for v in res.variants} == {f"{t}:s->d" for t in fdm}


def taps_shape(model, name):
    from plugtalk.probe import describe_taps

    return describe_taps(model)["taps"][name].shape[-1]


def test_encoder_runs_once_per_image_not_per_tap():
    m = tiny_backbone("lia", torch.float64)
    s, d = images()
    runs = []
    h = m.encoder.stem.register_forward_hook(lambda mod, a, o: runs.append(o.shape[0]))
    try:
        names = list(animator_taps(as_animator(m)))
        _render(m, s, d, names, [Variant(t, "to_source", (t,)) for t in names], batch_size=6)
    finally:
        h.remove()
    assert runs == [3, 3]  # the capture pass: source and driving; the 3 patched passes replay it


def test_replay_refuses_a_patch_upstream_of_the_replayed_module():
    s, d, _ = toy_pairs()

    class Pre(nn.Module):
        """The images pass a hook-able identity before the animator's encoder."""

        def __init__(self):
            super().__init__()
            self.pre = nn.Identity()
            self.inner = ToyAnimator()

        def forward(self, a, b):
            return self.inner(self.pre(a), self.pre(b))

    img = {"img": TapSpec("img", HookSite("pre", call=0), HookSite("pre", call=1))}
    swap = [Variant("img", "to_source", ("img",))]
    with pytest.raises(ReplayError, match="upstream"):
        run_patching(Pre(), s, d, img, swap, reuse=["inner.encoder"])
    out = run_patching(Pre(), s, d, img, swap)  # without replay the encoder re-runs and sees the patch
    assert (out.outputs["img:d->s"] - Pre()(d, d)).abs().max() < 1e-12
    with pytest.raises(InputError, match="leave it out"):
        run_patching(ToyAnimator(), s, d, {t.name: t for t in toy_taps(False)},
                     [Variant("colour", "to_source", ("colour",))], reuse=["encoder"])


def test_unread_taps_of_a_plain_lia_are_marked_inert_and_not_ranked():
    """Plain LIA renders from the source pyramid and the driver's latent only: the driver's pyramid and
    the source's motion code are never read.  Those swaps are reported as inert (not rendered, not
    ranked); rendering them anyway changes no pixel, and every ranked swap changes the output."""
    m = tiny_backbone("lia")
    s, d = images(dtype=torch.float32)
    res = probe_animator(m, s, d, scorer=colour_scorer())
    dead = {"motion_code:d->s", *(f"pyramid.{i}:s->d" for i in range(3)), "pyramid:s->d", "identity:s->d",
            "pyramid-but-identity:s->d"}
    assert {r.variant.key for r in res.inert} == dead
    assert all(r.rank == 0 and "cannot change a pixel" in r.inert for r in res.inert)
    assert [r.rank for r in res.variants] == list(range(1, len(res.variants) + 1))
    for r in res.variants:
        assert r.inert is None and r.scores.summary["all"]["pixel_change"]["mean"] > 1e-4, r.variant.key
    model = as_animator(m)
    taps = animator_taps(model)
    out = run_patching(model, s, d, taps, [r.variant for r in res.inert], batch_size=1)
    for key, image in out.outputs.items():
        assert torch.equal(image, out.baseline), key
    report = res.to_json()
    assert {v["key"] for v in report["inert_variants"]} == dead and res.variant("motion_code:d->s").inert
    assert not any("inert" in v for v in report["variants"])


def test_a_reader_of_the_source_motion_code_makes_its_swap_real():
    """With EDI the source's motion code feeds EDI's query (z_d - z_s): the same swap is ranked."""
    from plugtalk import retrofit

    m = tiny_backbone("lia")
    r = retrofit(m, emi=None, edi=dict(num_slots=8, decoder_channels=16, fusion_heads=2), init="random").eval()
    s, d = images(n=2, dtype=torch.float32)
    res = probe_animator(r, s, d, taps=["motion_code"], groups=[], scorer=colour_scorer())
    assert [v.variant.key for v in res.variants] == ["motion_code:d->s", "motion_code:s->d"] or \
        {v.variant.key for v in res.variants} == {"motion_code:d->s", "motion_code:s->d"}
    assert not res.inert


# -- names, groups, errors -----------------------------------------------------------------------------------


def test_animator_taps_groups_and_unknown_names():
    r = as_animator(tiny_backbone("lia"))
    assert list(animator_taps(r)) == ["latent", "pyramid.0", "pyramid.1", "pyramid.2", "motion_code"]
    assert animator_groups(r.spec) == {"pyramid": ("pyramid.0", "pyramid.1", "pyramid.2"), "identity": ("pyramid.0",),
                                       "pyramid-but-identity": ("pyramid.1", "pyramid.2")}
    s, d = images(dtype=torch.float32)
    with pytest.raises(InputError, match=r"valid taps: latent, pyramid.0, .*motion_code"):
        probe_animator(r, s, d, taps=["pyramid.7"], scorer=colour_scorer())
    with pytest.raises(InputError, match="groups: pyramid, identity"):
        probe_animator(r, s, d, groups=["f4"], scorer=colour_scorer())
    with pytest.raises(InputError, match="probe_module"):
        as_animator(nn.Linear(2, 2))


def test_bad_inputs_raise_clear_errors():
    s, d, _kinds = toy_pairs()
    taps = toy_taps(False)
    with pytest.raises(InputError, match="same shape"):
        probe_module(ToyAnimator(), s, d[:2], taps, scorer=colour_scorer())
    with pytest.raises(InputError, match="NaN"):
        probe_module(ToyAnimator(), s * float("nan"), d, taps, scorer=colour_scorer())
    with pytest.raises(InputError, match="kinds"):
        probe_module(ToyAnimator(), s, d, taps, kinds=["self"], scorer=colour_scorer())
    with pytest.raises(InputError, match="direction"):
        probe_module(ToyAnimator(), s, d, taps, directions=["sideways"], scorer=colour_scorer())
    with pytest.raises(InputError, match="did not run"):
        probe_module(ToyAnimator(), s, d, [TapSpec("x", HookSite("encoder.colour", call=0),
                                                   HookSite("encoder.colour", call=5))], scorer=colour_scorer())
    with pytest.raises(InputError, match="is tuple, not a tensor"):
        probe_module(ToyAnimator(), s, d, [TapSpec("x", HookSite("encoder", call=0), HookSite("encoder", call=1))],
                     scorer=colour_scorer())
    with pytest.raises(InputError, match="must differ"):
        TapSpec("x", HookSite("encoder"), HookSite("encoder"))
    with pytest.raises(InputError, match="return images"):
        probe_module(ToyAnimator(), s, d, taps, forward=lambda m, a, b: m(a, b).mean(), scorer=colour_scorer())


class NoFaceIn:
    """Face detector double: no face in images whose mean is below ``threshold``."""

    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, image, name):
        if image.mean() < self.threshold:
            raise NoFaceError(f"{name}: no face found")
        return whole_image(image, name)


def test_pairs_without_faces_are_skipped_with_a_warning_and_none_left_fails():
    s, d, kinds = toy_pairs()
    s[1] = -0.9  # a dark source: "no face"
    scorer = FaceScorer(["csim"], identity_encoder=MeanColourIdentity(), face_detector=NoFaceIn(40))
    pairs = [{"source_label": f"src{i}.png", "driving_label": f"drv{i}.mp4#3"} for i in range(3)]
    with pytest.warns(ProbeWarning, match=r"src1\.png"):
        res = probe_module(ToyAnimator(), s, d, toy_taps(False), kinds=kinds, scorer=scorer, pairs=pairs)
    assert len(res.pairs) == 2 and res.skipped_pairs[0]["source_label"] == "src1.png"
    assert "no face found in the source (src1.png)" in res.skipped_pairs[0]["reason"]
    with pytest.warns(ProbeWarning), pytest.raises(NoFaceError, match="no usable source/driving pair"):
        probe_module(ToyAnimator(), s * 0 - 0.9, d, toy_taps(False), kinds=kinds, scorer=scorer)


# -- spec and report -------------------------------------------------------------------------------------------


def test_spec_round_trips_through_json_and_rejects_unknown_fields(tmp_path):
    spec = ProbeSpec("dpe", [PairSpec("a.mp4", "b.mp4", 3, 40, "cross"), PairSpec("a.mp4", "a.mp4", 1, 90, "self")],
                     backbone_options={"mode": "pose"}, taps=["pyramid.2"], groups=[], seed=7)
    again = ProbeSpec.from_json(json.loads(spec.dumps()))
    assert again == spec
    report = {"plugtalk_probe_report": 1, "spec": spec.to_json(), "variants": []}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert load_spec(tmp_path / "report.json") == spec
    with pytest.raises(InputError, match="unknown field"):
        ProbeSpec.from_json({**spec.to_json(), "tapz": []})
    with pytest.raises(InputError, match="backbone"):
        ProbeSpec("stylegan", spec.pairs)
    with pytest.raises(InputError, match="kind"):
        PairSpec("a", "b", kind="same")
    with pytest.raises(InputError, match="metrics"):
        ProbeSpec("lia", spec.pairs, metrics=["fid"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")


def test_report_files_are_written(tmp_path):
    s, d, kinds = toy_pairs()
    res = probe_module(ToyAnimator(), s, d, toy_taps(False), kinds=kinds, scorer=colour_scorer(),
                       groups={"both": ["colour", "pattern"]})
    assert isinstance(res, ProbeResult)
    files = write_report(res, tmp_path / "out")
    data = json.loads(files["report.json"].read_text())  # strict JSON (NaN -> null)
    assert data["rank_by"].startswith("identity_transfer (cross")
    assert next(v["key"] for v in data["variants"]) == "colour:d->s"
    assert data["baseline"]["summary"]["cross"]["csim_source"]["n"] == 2
    assert {v["key"] for v in data["variants"]} >= {"both:d->s", "both:s->d"}
    from PIL import Image

    with Image.open(files["grid.png"]) as g:
        rows = 3 + len(res.variants)
        assert g.size == (230 + 3 * 128, 22 + rows * 128)
    with Image.open(files["identity_shift.png"]) as c:
        assert c.size[0] > 300


def test_retrofitted_models_are_probed_and_loaded_from_files(tmp_path):
    """With EMI the driver's pyramid feeds the motion code, so swapping it matters; load_animator reads
    retrofit and backbone files and refuses another backbone's file."""
    from plugtalk import retrofit
    from plugtalk.errors import CheckpointError
    from plugtalk.probe import load_animator

    m = tiny_backbone("lia")
    r = retrofit(m, emi=dict(width=16, num_heads=2, num_queries=4), edi=dict(num_slots=8, decoder_channels=16,
                                                                              fusion_heads=2), init="random").eval()
    s, d = images(n=2, dtype=torch.float32)
    res = probe_animator(r, s, d, taps=["pyramid.0", "pyramid.2"], groups=[], directions=["to_driving"],
                         scorer=colour_scorer())
    assert all(v.scores.summary["all"]["pixel_change"]["mean"] > 1e-4 for v in res.variants)
    assert res.model["emi"] and res.model["edi"]
    path = r.save_pretrained(tmp_path / "r.safetensors")
    loaded, info = load_animator("lia", path)
    assert "retrofit file" in info["weights"] and not info["random_weights"]
    with torch.no_grad():
        assert torch.equal(loaded(s, d), r(s, d))
    back, info = load_animator("lia", m.save_pretrained(tmp_path / "b.safetensors"))
    assert "backbone file" in info["weights"] and back.emi is None
    with pytest.raises(CheckpointError, match="not dpe"):
        load_animator("dpe", path)
    with pytest.raises(InputError, match="no backbone options other than"):
        load_animator("lia", None, options={"mode": "pose"})


def test_hook_adapter_probe_equals_builtin_lia_adapter_probe():
    """A LIA reached only through forward hooks gives the built-in adapter's report: every swap takes
    effect, the source-branch (d->s) ones included (they rewrite the rerun animator's source encoding)."""
    from plugtalk.adapters import HookAdapter, LIAAdapter
    from plugtalk.retrofitting import retrofit

    m = tiny_backbone("lia", torch.float64)
    hooked = HookAdapter(m, encoder="encoder", pyramid=[HookSite("encoder", output=(1, i)) for i in range(3)],
                         latent=HookSite("encoder", output=0), motion_input=HookSite("motion_mlp", kind="input"),
                         image_size=32)
    s, d = images(n=3)
    kinds = ["self", "cross", "cross"]
    reports = [probe_animator(retrofit(a, emi=None, edi=None, freeze_backbone=False), s, d, kinds=kinds,
                              scorer=colour_scorer(), batch_size=4) for a in (LIAAdapter(m), hooked)]
    builtin, via_hooks = reports
    assert [v.variant.key for v in builtin.variants] == [v.variant.key for v in via_hooks.variants]
    swaps_to_source = 0
    for a, b in zip(builtin.variants, via_hooks.variants):
        for metric, values in a.scores.per_pair.items():
            np.testing.assert_allclose(b.scores.per_pair[metric], values, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{a.variant.key} {metric}")
        if a.variant.direction == "to_source" and a.scores.summary["all"]["pixel_change"]["mean"] > 1e-3:
            swaps_to_source += 1
    assert swaps_to_source >= 3  # latent, pyramid levels and groups: the swaps the old decode lost
    for metric, values in builtin.baseline.per_pair.items():
        np.testing.assert_allclose(via_hooks.baseline.per_pair[metric], values, rtol=1e-6, atol=1e-9)


def _leaky_forward(m, s, d):
    """A generic animator that reads its driving frame's features: LIA plus the driving frame's coarsest
    level, upsampled, added to the image (a planted path for the driver's appearance)."""
    src, drv = m.encoder(s), m.encoder(d)                                   # encoder calls 0 and 1
    out = m.decode(m.motion(src.latent, drv.latent), src.pyramid)
    return out + 0.5 * F.interpolate(drv.pyramid[0].mean(1, keepdim=True), size=out.shape[-2:])


def _leaky_adapter(m, **options):
    from plugtalk.adapters import HookAdapter

    return HookAdapter(m, encoder="encoder", pyramid=[HookSite("encoder", output=(1, i)) for i in range(3)],
                       latent=HookSite("encoder", output=0), motion_input=HookSite("motion_mlp", kind="input"),
                       image_size=32, forward=_leaky_forward, **options)


def test_hook_adapter_writes_driving_features_into_an_animator_that_reads_them():
    """A driving-branch value written at the retrofitted model's hook point reaches a generic animator that
    reads driving features (the driving encoder call is rewritten too), so the probe's s->d swap of that
    level is real; with driving_call=None it would be lost, and the probe says so (inert)."""
    from plugtalk.hooks import patch
    from plugtalk.retrofitting import retrofit

    m = tiny_backbone("lia", torch.float64)
    s, d = images(n=2)
    adapter = _leaky_adapter(m)
    assert adapter.driving_call == 1 and _leaky_adapter(m, driving_call=None).driving_call is None
    r = retrofit(adapter, emi=None, edi=None, freeze_backbone=False).eval()
    with torch.no_grad():
        assert (r(s, d) - _leaky_forward(m, s, d)).abs().max() < 1e-12  # unpatched: the animator itself
        donor = m.encoder(s).pyramid[0]
        with patch(r, {"x": HookSite("taps.driving.pyramid.0")}, {"x": donor}):
            swapped = r(s, d)
        src, drv = m.encoder(s), m.encoder(d)
        by_hand = m.decode(m.motion(src.latent, drv.latent), src.pyramid) + \
            0.5 * F.interpolate(donor.mean(1, keepdim=True), size=(32, 32))
        assert (swapped - by_hand).abs().max() < 1e-12 and (swapped - r(s, d)).abs().max() > 1e-3
    res = probe_animator(r, s, d, taps=["pyramid.0", "pyramid.1"], groups=[], directions=["to_driving"],
                         scorer=colour_scorer())
    assert [v.variant.key for v in res.variants] == ["pyramid.0:s->d"]
    assert [v.variant.key for v in res.inert] == ["pyramid.1:s->d"]  # the animator reads only level 0
    blind = retrofit(_leaky_adapter(m, driving_call=None), emi=None, edi=None, freeze_backbone=False).eval()
    res = probe_animator(blind, s, d, taps=["pyramid.0"], groups=[], directions=["to_driving"], scorer=colour_scorer())
    assert not res.variants and [v.variant.key for v in res.inert] == ["pyramid.0:s->d"]
    with pytest.raises(InputError, match="driving_call"):
        _leaky_adapter(m, driving_call=0)
