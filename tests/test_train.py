"""Training: config validation, losses, discriminator, stages (what trains, what stays bit-identical),
the NaN guard and exact resume."""

import warnings

import pytest
import torch
from safetensors.torch import save_file

import plugtalk.backbones as B
import plugtalk.train.losses as losses_module
import plugtalk.train.trainer as trainer_module
from plugtalk import load_retrofitted
from plugtalk.errors import CheckpointError, InputError
from plugtalk.train import (Discriminator, DiscriminatorConfig, PerceptualLoss, Trainer, TrainingDiverged,
                            config_from_mapping, load_config, packaged_configs)
from plugtalk.train.bench import SyntheticPairs
from plugtalk.train.checkpointing import latest_checkpoint, list_checkpoints, load_state
from train_support import TINY_BACKBONE, tiny_config, tiny_mapping

pytestmark = pytest.mark.filterwarnings("ignore:no VGG19 weights given")


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- config ----------------------------------------------------------------------------------------------
def test_packaged_configs_load_with_the_recommended_setting():
    names = packaged_configs()
    assert {"fixtalk-edtalk256", "fixtalk-edtalk-paper", "small-cpu"} <= set(names)
    paper = load_config("fixtalk-edtalk256")
    assert (paper.model.backbone, paper.data.batch_size, paper.optim.lr) == ("edtalk", 16, 2e-4)
    assert all(getattr(paper.loss, k) == 1.0 for k in ("rec", "per", "adv", "dis", "dmem", "align"))
    assert paper.model.emi["inputs"] == "paper"  # FixTalk's EMI wiring, shown by --show-config
    assert paper.emi_bridge.gate(paper.optim.steps, paper.optim.steps) == 0.0  # the bridge closes by the end
    small = load_config("small-cpu", ["optim.steps=7", "loss.adv=0.5", "data.folder=/x"])
    assert (small.optim.steps, small.loss.adv, small.data.folder) == (7, 0.5, "/x")


@pytest.mark.parametrize("values,match", [
    ({"optim": {"lrr": 1}}, r"optim\.lrr"),
    ({"optimiser": {}}, r"unknown key.*optimiser"),
    ({"optim": {"lr": "fast"}}, r"optim.*lr"),
    ({"stage": "stage3"}, "stage"),
    ({"stage": "stage2"}, "model.checkpoint"),
    ({"data": {"batch_size": 0}}, "batch_size"),
])
def test_config_errors_name_the_key(values, match):
    with pytest.raises(InputError, match=match):
        config_from_mapping(values)


def test_config_file_with_unknown_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 1.0e-4\n  stepz: 3\n")
    with pytest.raises(InputError, match=r"c\.yaml.*optim\.stepz.*valid keys"):
        load_config(f)
    with pytest.raises(InputError, match="neither a file nor a packaged config"):
        load_config(tmp_path / "missing.yaml")


# -- discriminator and losses ----------------------------------------------------------------------------
def test_discriminator_shapes_and_stddev_groups_stay_within_halves():
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(size=32, channel_base=256, channel_max=16)).eval()
    a, b = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    logits, feats = d(torch.cat([a, b]), features=True)
    assert logits.shape == (8,) and [f.shape[-1] for f in feats] == [32, 16, 8, 4]
    # the fake half's logits do not depend on the real half (groups of 4 consecutive samples)
    assert torch.allclose(logits[:4], d(a), atol=1e-6)
    assert not torch.allclose(logits[4:], d(torch.cat([a, a]))[4:])
    with pytest.raises(InputError, match="32x32"):
        d(torch.zeros(2, 3, 64, 64))


def test_perceptual_loss_from_a_user_vgg19_file(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features[:30].state_dict().items()}
    save_file(state, str(tmp_path / "vgg19.safetensors"))
    loss = PerceptualLoss(tmp_path / "vgg19.safetensors", scales=(1.0, 0.5))
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x.detach(), x.detach()).item() == 0.0
    value = loss(x, y)
    assert value.item() > 0
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="VGG19"):
        PerceptualLoss(tmp_path / "bad.pth")


def test_squared_l2_perceptual_loss_is_fixtalk_eq2(tmp_path):
    """distance='squared_l2': sum over relu1_1..relu5_1 of mean (phi(x) - phi(y))^2 (Eq. 2), not LIA's L1."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features[:30].state_dict().items()}
    save_file(state, str(tmp_path / "vgg19.safetensors"))
    eq2 = PerceptualLoss(tmp_path / "vgg19.safetensors", layer_weights=(1.0,) * 5, scales=(1.0,),
                         distance="squared_l2")
    lia = PerceptualLoss(tmp_path / "vgg19.safetensors", layer_weights=(1.0,) * 5, scales=(1.0,))
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        fx, fy = eq2.vgg(x), eq2.vgg(y)
        by_hand = sum(((a - b) ** 2).mean() for a, b in zip(fx, fy))
        l1 = sum((a - b).abs().mean() for a, b in zip(fx, fy))
        assert eq2(x, y).item() == pytest.approx(by_hand.item(), rel=1e-5)
        assert lia(x, y).item() == pytest.approx(l1.item(), rel=1e-5)
        assert abs(by_hand.item() - l1.item()) > 1e-3 * l1.item()
    with pytest.raises(ValueError, match="distance"):
        PerceptualLoss(tmp_path / "vgg19.safetensors", distance="l2")
    assert config_from_mapping({"loss": {"vgg_distance": "squared_l2"}}).loss.vgg_distance == "squared_l2"
    assert config_from_mapping({}).loss.vgg_distance == "l1"
    with pytest.raises(InputError, match="vgg_distance"):
        config_from_mapping({"loss": {"vgg_distance": "l2"}})


def test_without_vgg_weights_feature_matching_replaces_perceptual_loss_and_warns_once(tmp_path, monkeypatch):
    monkeypatch.setattr(losses_module, "_WARNED", False)
    with pytest.warns(UserWarning, match="feature matching"):
        t = Trainer(tiny_config(tmp_path / "a"), SyntheticPairs(8, 32))
    assert t.feature_matching and t.discriminator is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(tiny_config(tmp_path / "b"), SyntheticPairs(8, 32))
    logged = t.train_step(next(iter(t._loader())))
    assert {"loss/rec", "loss/per", "loss/adv", "loss/dis", "loss/discriminator"} <= set(logged)


# -- stages ----------------------------------------------------------------------------------------------
def _pretrained_backbone(tmp_path):
    torch.manual_seed(3)
    path = tmp_path / "backbone.safetensors"
    B.create("lia", **TINY_BACKBONE).save_pretrained(path)
    return path


def test_retrofit_stage_leaves_every_backbone_weight_bit_identical(tmp_path):
    ckpt = _pretrained_backbone(tmp_path)
    t = Trainer(tiny_config(tmp_path / "run", stage="retrofit", steps=3, model={"checkpoint": str(ckpt)},
                            loss={"r1_gamma": 1.0, "r1_every": 2}), SyntheticPairs(16, 32))
    backbone0, emi0, edi0 = weights(t.model.adapter.backbone), weights(t.model.emi), weights(t.model.edi)
    assert backbone0.keys() == weights(B.load(ckpt)).keys()
    t.fit()
    after = load_retrofitted(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(backbone0[k], v) for k, v in weights(after.adapter.backbone).items())
    assert all(torch.equal(backbone0[k], v) for k, v in weights(t.model.adapter.backbone).items())
    assert any(not torch.equal(emi0[k], v) for k, v in weights(after.emi).items())
    assert any(not torch.equal(edi0[k], v) for k, v in weights(after.edi).items())
    assert not t.model.adapter.backbone.training, "a frozen backbone stays in eval mode while training"


def test_emi_bridge_schedule_closes_the_latent_path_by_the_end_of_training(tmp_path):
    """Retrofit from pass-through: the gate follows emi_bridge per step (logged), the first step renders the
    backbone exactly, and the saved model carries gate 0: its EMI reads no latent and no raw identity level."""
    import json

    from plugtalk.hooks import HookSite, patch

    ckpt = _pretrained_backbone(tmp_path)
    cfg = tiny_config(tmp_path / "run", stage="retrofit", steps=10, emi_bridge={"warmup": 0.2, "ramp": 0.5},
                      model={"checkpoint": str(ckpt), "init": "passthrough"})
    t = Trainer(cfg, SyntheticPairs(16, 32))
    assert t.drives_bridge and t.model.emi.bridge_gate == 1.0 and t.model.emi.config.inputs == "paper"
    s, d = SyntheticPairs(2, 32)[0]["source"][None], SyntheticPairs(2, 32)[0]["driving"][None]
    with torch.no_grad():
        assert torch.equal(t.model.eval()(s, d), load_retrofitted_backbone(ckpt)(s, d))
    t.fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    gates = [r["emi/gate"] for r in rows if "emi/gate" in r]
    assert gates == pytest.approx([1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0])
    assert [("loss/distill" in r, "loss/dis" in r) for r in rows][:4] == [(True, False)] * 3 + [(True, True)]
    assert "loss/distill" not in rows[-1] and "loss/dis" in rows[-1]
    after = load_retrofitted(tmp_path / "run" / "model.safetensors")
    emi = after.emi
    assert emi.bridge_gate == 0.0
    enc = after.adapter.encode(torch.cat([s, d]))
    k = emi.config.identity_level
    with torch.no_grad():
        z = emi(enc.pyramid, enc.latent)
        assert torch.equal(emi(enc.pyramid, enc.latent * -3 + 1), z)
        moved = list(enc.pyramid)
        moved[k] = moved[k] * 5 + 1
        tokens = enc.pyramid[k].flatten(2).transpose(1, 2)  # P's input held at the original map
        with patch(emi, {"t": HookSite("token_proj", kind="input")}, {"t": tokens}):
            assert torch.equal(emi(moved, enc.latent), z)
        assert not torch.equal(emi(moved, enc.latent), z)  # ... through P it still reads the identity level


def test_stage2_refuses_an_emi_whose_bridge_is_still_open(tmp_path):
    from plugtalk import retrofit
    from plugtalk.train.stages import build_model
    from train_support import TINY_EMI

    r = retrofit(B.create("lia", **TINY_BACKBONE), emi=TINY_EMI, edi=None)
    r.emi.set_bridge_gate(0.5)  # e.g. an intermediate stage-1 checkpoint
    path = r.save_pretrained(tmp_path / "mid.safetensors")
    with pytest.raises(InputError, match="bridge gate 0.5"):
        build_model(tiny_config(tmp_path / "s2", stage="stage2", model={"checkpoint": str(path)}))
    r.emi.set_bridge_gate(0.0)
    path = r.save_pretrained(tmp_path / "done.safetensors")
    model = build_model(tiny_config(tmp_path / "s2", stage="stage2", model={"checkpoint": str(path)}))
    assert model.emi.bridge_gate == 0


def load_retrofitted_backbone(path):
    from plugtalk import retrofit

    return retrofit(B.load(path), emi=None, edi=None).eval()


def test_stage1_then_stage2_train_the_right_parts(tmp_path):
    s1 = Trainer(tiny_config(tmp_path / "s1", stage="stage1", steps=2), SyntheticPairs(8, 32))
    assert s1.model.edi is None and s1.model.emi is not None
    b0 = weights(s1.model.adapter.backbone)
    s1.fit()
    assert any(not torch.equal(b0[k], v) for k, v in weights(s1.model.adapter.backbone).items())
    s2 = Trainer(tiny_config(tmp_path / "s2", stage="stage2", steps=2,
                             model={"checkpoint": str(tmp_path / "s1" / "model.safetensors")}), SyntheticPairs(8, 32))
    b1, e1, d1 = weights(s2.model.adapter.backbone), weights(s2.model.emi), weights(s2.model.edi)
    assert all(torch.equal(b1[k], v) for k, v in weights(s1.model.adapter.backbone).items())
    s2.fit()
    assert all(torch.equal(b1[k], v) for k, v in weights(s2.model.adapter.backbone).items())
    assert all(torch.equal(e1[k], v) for k, v in weights(s2.model.emi).items())
    assert any(not torch.equal(d1[k], v) for k, v in weights(s2.model.edi).items())
    assert not s2.model.emi.training


def test_model_adapter_identity_level_applies_on_top_of_a_checkpoint(tmp_path):
    """EDI on a baseline checkpoint at the level the probe found; a stage-1 EMI built for another level is refused."""
    Trainer(tiny_config(tmp_path / "b", stage="baseline", steps=1), SyntheticPairs(8, 32)).fit()
    Trainer(tiny_config(tmp_path / "s1", stage="stage1", steps=1), SyntheticPairs(8, 32)).fit()
    default = load_retrofitted(tmp_path / "s1" / "model.safetensors").spec.identity_level
    level = default + 1
    s2 = Trainer(tiny_config(tmp_path / "s2", stage="stage2", steps=1,
                             model={"checkpoint": str(tmp_path / "b" / "model.safetensors"), "emi": False,
                                    "adapter": {"identity_level": level}}), SyntheticPairs(8, 32))
    assert s2.model.spec.identity_level == level and s2.model.edi.config.channels == s2.model.spec.identity.channels
    s2.fit()
    assert load_retrofitted(tmp_path / "s2" / "model.safetensors").spec.identity_level == level
    with pytest.raises(InputError, match="identity level"):
        Trainer(tiny_config(tmp_path / "s2b", stage="stage2", steps=1,
                            model={"checkpoint": str(tmp_path / "s1" / "model.safetensors"),
                                   "adapter": {"identity_level": level}}), SyntheticPairs(8, 32))


def test_baseline_stage_has_no_modules_and_trains_the_backbone(tmp_path):
    t = Trainer(tiny_config(tmp_path, stage="baseline", steps=2), SyntheticPairs(8, 32))
    assert t.model.emi is None and t.model.edi is None
    logged = t.train_step(next(iter(t._loader())))
    assert not {"loss/dis", "loss/dmem", "loss/align"} & set(logged)


def test_retrofit_stage_needs_a_checkpoint_and_output_dir_is_not_overwritten(tmp_path):
    with pytest.raises(InputError, match="model.checkpoint"):
        tiny_config(tmp_path, stage="retrofit")
    Trainer(tiny_config(tmp_path, steps=1), SyntheticPairs(8, 32)).fit()
    with pytest.raises(InputError, match="--resume"):
        Trainer(tiny_config(tmp_path, steps=2), SyntheticPairs(8, 32))
    with pytest.raises(InputError, match="too few"):
        Trainer(tiny_config(tmp_path / "x"), SyntheticPairs(3, 32))


# -- NaN guard -------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_step_and_loss_named_and_no_checkpoint_of_it(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = trainer_module.reconstruction_loss

    def poisoned(output, target):
        calls["n"] += 1
        value = real(output, target)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(trainer_module, "reconstruction_loss", poisoned)
    t = Trainer(tiny_config(tmp_path, steps=10, log={"checkpoint_every": 1}), SyntheticPairs(16, 32))
    with pytest.raises(TrainingDiverged, match=r"step 3: non-finite loss 'rec'.*last checkpoint: step-00000002") as e:
        t.fit()
    assert e.value.step == 3 and e.value.what == ["rec"]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [1, 2]
    assert not (tmp_path / "model.safetensors").exists()
    assert all(torch.isfinite(v).all() for v in weights(t.model).values() if v.is_floating_point()), \
        "the poisoned step was not applied"
    load_retrofitted(latest_checkpoint(tmp_path / "checkpoints") / "model.safetensors")


# -- resume ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [2, 3], ids=["mid-epoch", "epoch-boundary"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, split):
    data = SyntheticPairs(12, 32)  # 3 batches per epoch: 5 steps cross an epoch boundary
    extra = dict(loss={"r1_gamma": 1.0, "r1_every": 2}, log={"checkpoint_every": 100})
    straight = Trainer(tiny_config(tmp_path / "a", steps=5, **extra), data)
    straight.fit()
    Trainer(tiny_config(tmp_path / "b", steps=split, **extra), data).fit()
    resumed = Trainer(tiny_config(tmp_path / "b", steps=5, **extra), data, resume=True)
    assert resumed.step == split
    resumed.fit()
    for a, b in ((straight.model, resumed.model), (straight.discriminator, resumed.discriminator)):
        wa, wb = weights(a), weights(b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = load_state(tmp_path / "a" / "checkpoints" / "step-00000005")
    sb = load_state(tmp_path / "b" / "checkpoints" / "step-00000005")
    assert (sa["epoch"], sa["batch_in_epoch"]) == (sb["epoch"], sb["batch_in_epoch"]) == (1, 2)
    for k, v in sa["g_optimizer"]["state"].items():
        assert torch.equal(v["exp_avg"], sb["g_optimizer"]["state"][k]["exp_avg"])
    assert torch.equal(sa["rng"][0]["torch"], sb["rng"][0]["torch"])


def test_resume_refuses_a_changed_model(tmp_path):
    Trainer(tiny_config(tmp_path, steps=1), SyntheticPairs(8, 32)).fit()
    changed = tiny_mapping(tmp_path, steps=2)
    changed["model"]["emi"]["num_queries"] = 2
    with pytest.raises(InputError, match="config changed.*model"):
        Trainer(config_from_mapping(changed), SyntheticPairs(8, 32), resume=True)


@pytest.mark.parametrize("backbone,adapter", [("edtalk", {}), ("dpe", {"mode": "pose"})])
def test_other_backbones_train_one_step(tmp_path, backbone, adapter):
    t = Trainer(tiny_config(tmp_path, steps=1, model={"backbone": backbone, "adapter": adapter}), SyntheticPairs(4, 32))
    logged = t.train_step(next(iter(t._loader())))
    assert all(torch.isfinite(v) for v in logged.values())


@pytest.mark.parametrize("stage", ["stage1", "retrofit"])
def test_bf16_autocast_step_is_finite(tmp_path, stage):
    """The precision CUDA runs use (bf16 autocast), exercised on CPU; retrofit runs EMI and EDI."""
    model = {"checkpoint": str(_pretrained_backbone(tmp_path))} if stage == "retrofit" else {}
    t = Trainer(tiny_config(tmp_path / "run", stage=stage, steps=1, precision="bf16", model=model,
                            loss={"r1_gamma": 1.0, "r1_every": 1}), SyntheticPairs(4, 32))
    assert t.amp_dtype == torch.bfloat16
    logged = t.train_step(next(iter(t._loader())))
    assert all(torch.isfinite(v) for v in logged.values())
    assert ("loss/dmem" in logged) == (stage == "retrofit")
    assert all(p.dtype == torch.float32 for p in t.model.parameters()), "weights stay fp32 under autocast"


@pytest.mark.slow
def test_retrofit_from_an_official_lia_checkpoint_keeps_it_bit_identical(tmp_path):
    """The official-format path: a LIA ``torch.save`` checkpoint (parity-fixture weights), one step at 256 px."""
    from parity_support import load_manifest, write_official_checkpoint

    official = write_official_checkpoint(load_manifest("lia"), "generator", tmp_path / "lia.pt", "gen")
    cfg = tiny_config(tmp_path / "run", stage="retrofit", steps=1,
                      model={"overrides": {}, "checkpoint": str(official), "discriminator": {"channel_max": 16}},
                      data={"batch_size": 2})
    reference = weights(B.load_official("lia", official))
    t = Trainer(cfg, SyntheticPairs(2, 256))
    t.fit()
    assert all(torch.equal(reference[k], v) for k, v in weights(t.model.adapter.backbone).items())
    assert load_retrofitted(tmp_path / "run" / "model.safetensors").backbone.config.size == 256


# -- EDI's schedule and diagnostics (issue 11) ---------------------------------------------------------------
def test_edi_diagnostics_are_logged_per_step_and_the_recall_schedule_follows_the_steps(tmp_path):
    import json
    import math

    from train_support import TINY_EDI

    ckpt = _pretrained_backbone(tmp_path)
    t = Trainer(tiny_config(tmp_path / "run", stage="retrofit", steps=4,
                            model={"checkpoint": str(ckpt), "emi": False,
                                   "edi": {**TINY_EDI, "train_recall": "scheduled", "schedule_ramp": [0.0, 0.5]}}),
                SyntheticPairs(16, 32))
    t.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in ("edi/entropy_d", "edi/entropy_ms", "edi/slot_usage_d", "edi/slot_usage_ms", "edi/recall_gap_ms",
                "edi/recall_gap_d"):
        assert all(key in r and math.isfinite(r[key]) for r in rows), key
    assert all(0 <= r["edi/entropy_d"] <= 1 and 0 <= r["edi/slot_usage_ms"] <= TINY_EDI["num_slots"] for r in rows)
    assert [r["edi/recall_mix"] for r in rows] == [0.0, 0.5, 1.0, 1.0]   # progress = step / optim.steps


def test_packaged_configs_spell_out_the_edi_defaults():
    from plugtalk import EDIConfig

    paper = load_config("fixtalk-edtalk256").model.edi
    defaults = EDIConfig()
    assert isinstance(paper, dict)
    assert all(getattr(defaults, k) == (tuple(v) if isinstance(v, list) else v) for k, v in paper.items()), paper
    assert {"addressing", "temperature", "train_recall", "align_stop_gradient", "dmem_scale", "fusion_grid",
            "fusion_dim"} <= set(paper)
