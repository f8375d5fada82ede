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

    def objective(model, batch, stage):  # render the source from itself, plus a stage-specific term
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
