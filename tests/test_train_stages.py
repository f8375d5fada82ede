"""Training stages as one extension point: the registry, a stage added from outside the trainer, and the
exact set of parameters each registered stage trains."""

import pytest
import torch

from plugtalk.errors import InputError
from plugtalk.train import Trainer
from plugtalk.train import stages as S
from plugtalk.train.bench import SyntheticPairs
from train_support import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:no VGG19 weights given")


def _owned(names, prefixes):
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def assert_trains_exactly(model, prefixes):
    """The parameters with requires_grad are exactly those under ``prefixes`` (and there are some)."""
    names = {n for n, _ in model.named_parameters()}
    expected = _owned(names, prefixes)
    assert expected, prefixes
    got = S.trainable_names(model)
    assert got == expected, (sorted(got - expected)[:5], sorted(expected - got)[:5])


@pytest.fixture
def stage1_model(tmp_path):
    Trainer(tiny_config(tmp_path / "s1", stage="stage1", steps=1), SyntheticPairs(4, 32)).fit()
    return tmp_path / "s1" / "model.safetensors"


def test_registry_lists_the_built_in_stages_and_refuses_unknown_or_duplicate_names():
    assert S.stage_names()[:4] == ["stage1", "stage2", "retrofit", "baseline"]
    with pytest.raises(InputError, match="registered stages: stage1, stage2"):
        S.get_stage("stage3")
    with pytest.raises(ValueError, match="already registered"):
        S.register_stage(S.get_stage("stage1"))
    with pytest.raises(InputError, match="stage must be one of"):
        tiny_config("out", stage="no-such-stage")


def test_each_video_stage_trains_exactly_its_parts(tmp_path, stage1_model):
    backbone = ["adapter.backbone"]
    cases = {"stage1": ({}, [*backbone, "emi"]), "baseline": ({}, backbone),
             "stage2": ({"checkpoint": str(stage1_model)}, ["edi"]),
             "retrofit": ({"checkpoint": str(stage1_model), "fresh_edi": True}, ["emi", "edi"])}
    for stage, (model, prefixes) in cases.items():
        built = S.build_model(tiny_config(tmp_path / stage, stage=stage, model=model))
        assert_trains_exactly(built, prefixes)


def test_a_stage_registered_from_outside_runs_through_the_unchanged_trainer(tmp_path):
    """A new stage is a Stage object: its own parts, losses and objective, no trainer change."""
    from plugtalk.retrofitting import Retrofitted

    seen = []

    def build(cfg, start):  # the backbone's generator only
        return S.train_only(Retrofitted(start.adapter, None, None, freeze_backbone=False), ("generator",))

    def objective(model, batch, trainer):  # render the source from itself, plus a stage-specific term
        out = model(batch["source"], batch["source"])
        seen.append(sorted(batch))
        return S.Objective(out.image, batch["source"], {"rec": (out.image - batch["source"]).abs().mean() * 0,
                                                        "dmem": out.image.float().pow(2).mean()})

    name = "test-generator-only"
    if name not in S.stage_names():
        S.register_stage(S.Stage(name=name, summary="test", build=build, losses=("rec", "dmem"), objective=objective))
    t = Trainer(tiny_config(tmp_path, stage=name, steps=2, loss={"adv": 0.0, "per": 0.0}), SyntheticPairs(8, 32))
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    logged = t.fit()
    assert set(k for k in logged if k.startswith("loss/")) == {"loss/rec", "loss/dmem", "loss/total"}
    assert logged["loss/rec"] == 0.0 and seen and seen[0] == ["driving", "source"]
    moved = {n for n, p in t.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("adapter.backbone.generator.") for n in moved)
    assert_trains_exactly(t.model, ["adapter.backbone.generator"])


# -- EDTalk's decoupling stages ----------------------------------------------------------------------------
EDTALK = {"backbone": "edtalk", "init": "random"}
MOUTH_POSE = ["adapter.backbone.motion_trunk", "adapter.backbone.mouth_head", "adapter.backbone.pose_head",
              "adapter.backbone.banks.mouth", "adapter.backbone.banks.pose"]


@pytest.fixture
def edtalk_start(tmp_path):
    """A retrofitted tiny EDTalk with EMI (bridge closed) and EDI, as the recipe's stage 2 leaves it."""
    model = S.build_model(tiny_config(tmp_path / "r", stage="stage1", model=EDTALK))
    from plugtalk.edi import EDI

    from train_support import TINY_EDI

    r = type(model)(model.adapter, model.emi, EDI.from_spec(model.spec, **TINY_EDI))
    return r.save_pretrained(tmp_path / "start.safetensors")


def test_edtalk_stages_train_exactly_edtalks_parts_with_emi_and_edi_frozen(tmp_path, edtalk_start):
    model = {**EDTALK, "checkpoint": str(edtalk_start)}
    mp = S.build_model(tiny_config(tmp_path / "mp", stage="edtalk-mouth-pose", model=model))
    assert_trains_exactly(mp, MOUTH_POSE)
    assert mp.emi is not None and mp.edi is not None
    ex = S.build_model(tiny_config(tmp_path / "ex", stage="edtalk-expression", model=model))
    levels = [f"adapter.backbone.generator.levels.{i}.expression" for i in range(len(ex.backbone.generator.levels))]
    assert_trains_exactly(ex, ["adapter.backbone.expression_head", "adapter.backbone.banks.expression", *levels])
    with pytest.raises(InputError, match="trains edtalk only"):
        tiny_config(tmp_path / "l", stage="edtalk-expression", model={"checkpoint": str(edtalk_start)})
    with pytest.raises(InputError, match="needs model.checkpoint"):
        tiny_config(tmp_path / "l", stage="edtalk-mouth-pose", model=EDTALK)


def test_fresh_parts_start_as_a_newly_built_backbone_has_them_and_the_rest_as_loaded(tmp_path, edtalk_start):
    """``model.fresh``: EDTalk's mouth-pose decouple module is new after a LIA-style pre-training."""
    from plugtalk import load_retrofitted

    loaded = load_retrofitted(edtalk_start).backbone.state_dict()
    fresh = ["mouth_head", "banks.mouth"]
    model = {**EDTALK, "checkpoint": str(edtalk_start), "fresh": fresh}
    built = [S.build_model(tiny_config(tmp_path / f"mp{i}", stage="edtalk-mouth-pose", model=model, seed=3))
             for i in range(2)]
    got = built[0].backbone.state_dict()
    renewed = {k for k in got if k == "banks.mouth" or k.startswith("mouth_head.")}
    assert renewed and "banks.pose" not in renewed
    for key, value in got.items():
        if key in renewed:
            assert torch.equal(value, built[1].backbone.state_dict()[key]), key  # seeded: the same twice
        else:
            assert torch.equal(value, loaded[key]), key
    changed = {k for k in renewed if not torch.equal(got[k], loaded[k])}
    assert {"banks.mouth", "mouth_head.0.weight"} <= changed, sorted(changed)  # (zero biases stay zero)
    before = torch.random.get_rng_state()
    S.refresh_parts(built[0].backbone, ["pose_head"], seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left as it was
    with pytest.raises(InputError, match="'mouth_hed' name no part of the edtalk backbone"):
        S.build_model(tiny_config(tmp_path / "bad", stage="edtalk-mouth-pose",
                                  model={**model, "fresh": ["mouth_hed"]}))


def test_mouth_swap_items_paste_the_other_clips_mouth_box(tmp_path):
    from decoupling_support import MOUTH_BOX, write_clips
    from plugtalk.data.decoupling import MouthSwapDataset

    ds = MouthSwapDataset(write_clips(tmp_path / "c", identities=2, clips_per_identity=1, frames=4), repeats=3,
                          mouth_box=MOUTH_BOX)
    for i in range(len(ds)):
        x = ds[i]
        m = x["mouth_mask"].bool().expand(3, -1, -1)
        assert x["identity"] != x["identity_b"]
        assert torch.equal(x["a_mouth_b"][~m], x["driving"][~m]) and torch.equal(x["a_mouth_b"][m], x["driving_b"][m])
        assert torch.equal(x["b_mouth_a"][~m], x["driving_b"][~m]) and torch.equal(x["b_mouth_a"][m], x["driving"][m])
    assert 0.1 < float(x["mouth_mask"].mean()) < 0.3
    with pytest.raises(InputError, match="mouth box"):
        MouthSwapDataset(tmp_path / "c", mouth_box=(0.8, 0.2, 0.1, 0.9))


def test_labels_come_from_the_manifest_then_labels_json_and_the_expression_stage_needs_them(tmp_path):
    import json

    from decoupling_support import write_clips
    from plugtalk.data.decoupling import EmotionPairsDataset
    from plugtalk.data.labels import clip_labels
    from plugtalk.train.data import build_dataset

    root = write_clips(tmp_path / "c", identities=1, clips_per_identity=2, frames=3, emotions=True)
    labels, where = clip_labels(root)
    assert where.name == "labels.json" and labels["id0__c1"] == {"emotion": "happy"}
    ds = EmotionPairsDataset(root, labels, repeats=2)
    assert ds.emotions == ["happy", "neutral"] and ds.neutral_of[1] == [0]  # the happy clip's source is neutral
    from plugtalk.data.manifest import ClipRecord, write_manifest

    write_manifest(root, [ClipRecord("id0__c0.mp4", "id0", "train", {"emotion": "angry"}, 3, 25.0, None, None,
                                     "raw.mp4", (0, 3), "mead")])
    labels, where = clip_labels(root)
    assert where.name == "manifest.jsonl" and labels == {"id0__c0": {"emotion": "angry"}}
    (root / "manifest.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="line 1"):
        clip_labels(root)
    (root / "manifest.jsonl").unlink()
    (root / "labels.json").unlink()
    cfg = tiny_config(tmp_path / "o", stage="edtalk-expression", model={**EDTALK, "checkpoint": "x.safetensors"},
                      data={"folder": str(root)})
    with pytest.raises(InputError, match="manifest.jsonl or labels.json"):
        build_dataset(cfg, 32)


def test_mouth_pose_step_without_syncnet_warns_and_with_one_trains_with_l_sync(tmp_path, edtalk_start):
    from decoupling_support import write_clips
    from test_edtalk_audio_lip import official_syncnet_file

    clips = write_clips(tmp_path / "c", identities=2, clips_per_identity=1, frames=6)
    model = {**EDTALK, "checkpoint": str(edtalk_start)}
    cfg = tiny_config(tmp_path / "mp", stage="edtalk-mouth-pose", steps=1, model=model,
                      data={"folder": str(clips), "repeats": 4, "batch_size": 2})
    with pytest.warns(UserWarning, match="L_sync.m is off"):
        t = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    logged = t.fit()
    assert {"loss/rec", "loss/cross", "loss/fea", "loss/mouth", "loss/per", "loss/adv"} <= set(logged)
    assert "loss/sync" not in logged
    assert "loss/dis" not in logged and "loss/dmem" not in logged  # the frozen EMI / EDI's losses are not used
    moved = {n for n, p in t.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and S.trainable_names(t.model) >= moved
    # with SyncNet (official format) L_sync^m trains on 5-frame windows of clips with sound
    official_syncnet_file(tmp_path / "lipsync_expert.pth")
    sync = {"syncnet_weights": str(tmp_path / "lipsync_expert.pth")}
    cfg = tiny_config(tmp_path / "mp2", stage="edtalk-mouth-pose", steps=1, model=model, loss=sync,
                      data={"folder": str(clips), "repeats": 4, "batch_size": 2})
    with pytest.raises(InputError, match="has no sound"):
        Trainer(cfg)
    from plugtalk.train.data import check_data

    with pytest.raises(InputError, match="no .wav of the same name"):  # the recipe's preflight says so first
        check_data(cfg)
    clips = write_clips(tmp_path / "s", identities=2, clips_per_identity=1, frames=6, audio=True)
    cfg = tiny_config(tmp_path / "mp3", stage="edtalk-mouth-pose", steps=1, model=model, loss=sync,
                      data={"folder": str(clips), "repeats": 4, "batch_size": 2})
    t = Trainer(cfg)
    batch = next(iter(t._loader()))
    assert batch["sync_frames"].shape == (2, 5, 3, 32, 32) and batch["sync_mel"].shape == (2, 1, 80, 16)
    out = t.stage.objective(t.g_net, batch, t)
    assert out.fake.shape[0] == 8 and torch.isfinite(out.losses["sync"]) and out.losses["sync"] > 0
    head = t.model.backbone.mouth_head
    grads = torch.autograd.grad(out.losses["sync"], [p for p in head.parameters()], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # L_sync^m reaches the mouth module
    assert "loss/sync" in t.fit()


def test_bench_times_every_stage_on_its_own_synthetic_data(capsys):
    from plugtalk.train.bench import main

    tiny = ["--set", "model.backbone=edtalk", "--set",
            "model.overrides={size: 32, channel_base: 512, channel_max: 32, style_dim: 64}",
            "--set", "data.batch_size=2",
            "--set", "model.emi={width: 16, num_heads: 2, num_queries: 4}",
            "--set", "model.edi={num_slots: 8, decoder_channels: 16, fusion_heads: 2}"]
    stages = ["stage2", "edtalk-mouth-pose", "edtalk-audio-lip", "edtalk-audio-pose"]
    main([*(x for s in stages for x in ("--stage", s)), "--steps", "1", "--warmup", "0", *tiny,
          "--set", "loss.stage_weights={sync: 0}"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0].split("[")[1] for line in lines] == stages
    assert all(float(line.split(": ")[1].split(" ")[0]) > 0 for line in lines)
