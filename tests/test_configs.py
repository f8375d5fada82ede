"""The shipped training configs: each one builds (tiny channel widths, its own image size), the paper
config holds exactly the values FixTalk states, and README's table lists every difference between the
paper config and plugtalk's recommended one - no more, no fewer."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from plugtalk import EDI
from plugtalk.train import load_config, packaged_configs
from plugtalk.train.stages import build_model

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_CHANNELS = ["model.overrides.channel_base=1024", "model.overrides.channel_max=16",
                 "model.overrides.style_dim=64", "model.discriminator={channel_base: 1024, channel_max: 16}"]
#: Fields that follow the backbone's geometry (image size, channel widths), not a training choice.
GEOMETRY = {"pyramid_channels", "pyramid_sizes", "identity_level", "dim", "channels", "height", "width",
            "motion_dim"}
RECOMMENDED, PAPER = "fixtalk-edtalk256", "fixtalk-edtalk-paper"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def _resolved(name: str) -> dict:
    """Every setting of a shipped config as it takes effect: the tiny model built from it, its EMI / EDI
    configs (module defaults filled in), the identity level's size, and the other sections."""
    cfg = load_config(name, TINY_CHANNELS)
    model = build_model(cfg)
    values = _flat({k: v for k, v in cfg.to_dict().items() if k not in ("model", "output_dir")})
    spec = model.spec
    lv = spec.identity
    values.update({"model.backbone": cfg.model.backbone, "model.size": model.adapter.image_size,
                   "model.checkpoint": cfg.model.checkpoint, "model.init": cfg.model.init,
                   "model.identity_level": f"{lv.height}x{lv.width}", "stage": cfg.stage})
    emi = dataclasses.asdict(model.emi.config)
    values.update({f"model.emi.{k}": v for k, v in _flat(emi).items() if k not in GEOMETRY})
    values["model.emi.read_levels"] = tuple(spec.levels[i].height for i in model.emi.config.read_levels)
    edi = EDI.from_spec(spec, **(cfg.model.edi if isinstance(cfg.model.edi, dict) else {})).config
    values.update({f"model.edi.{k}": v for k, v in _flat(dataclasses.asdict(edi)).items() if k not in GEOMETRY})
    return values


@pytest.fixture(scope="module")
def resolved():
    return {name: _resolved(name) for name in (RECOMMENDED, PAPER)}


def test_every_shipped_config_builds_at_tiny_size():
    for name in packaged_configs():
        cfg = load_config(name, TINY_CHANNELS if name != "small-cpu" else [])
        model = build_model(cfg)
        assert model.trainable_parameters(), name
        assert model.adapter.image_size == cfg.model.overrides.get("size", 256), name


def test_the_paper_config_holds_the_papers_stated_values(resolved):
    p = resolved[PAPER]
    # suppl. 1.2: all loss weights 1, batch 16, fixed lr 2e-4; encoder + EMI + generator first, from scratch
    assert all(p[f"loss.{k}"] == 1.0 for k in ("rec", "per", "adv", "dis", "dmem", "align"))
    assert (p["data.batch_size"], p["optim.lr"], p["optim.schedule"]) == (16, 2e-4, "constant")
    assert (p["stage"], p["model.backbone"], p["model.checkpoint"], p["model.init"]) == ("stage1", "edtalk", None,
                                                                                       "random")
    # Sec. 5.1: 512 x 512; Sec. 4.2: f_4 is 512 x 32 x 32
    assert (p["model.size"], p["model.identity_level"]) == (512, "32x32")
    # Eq. 2: squared L2 between VGG19 features, one scale
    assert (p["loss.vgg_distance"], p["loss.vgg_scales"], p["loss.vgg_layer_weights"]) == ("squared_l2", (1.0,),
                                                                                          (1.0,) * 5)
    # Fig. 4b: f_1:5 pooled, f_4 only through P, every position of f_4 a token, no latent (no bridge)
    assert p["model.emi.inputs"] == "paper" and p["model.emi.level_set"] == "f1:5"
    assert p["model.emi.read_levels"] == (16, 32, 64, 128, 256)
    assert p["model.emi.extractor_grid"] is None and p["model.emi.latent_dim"] is None
    assert p["model.emi.bridge_gate"] == 0.0
    # Eq. 5-9: plain cosine softmax addressing, Eq. 6's recall in training, KL into both, the plain norm,
    # random slots, the full 32 x 32 map restored for the fusion
    edi = {k: p[f"model.edi.{k}"] for k in ("addressing", "temperature", "train_recall", "align_stop_gradient",
                                            "dmem_scale", "memory_init", "fusion_grid", "fusion_dim")}
    assert edi == dict(addressing="fixed", temperature=1.0, train_recall="driving", align_stop_gradient=False,
                       dmem_scale="paper", memory_init="random", fusion_grid=0, fusion_dim=0)
    # nothing the paper does not state: no augmentation, no R1, no clipping, no warm-up, no mixed precision
    assert (p["data.hflip"], p["loss.r1_gamma"], p["optim.grad_clip"], p["optim.warmup_steps"],
            p["precision"]) == (False, 0.0, None, 0, "fp32")


def _readme_difference_keys() -> set[str]:
    text = README.read_text()
    start = text.index("| setting (config key) | FixTalk")
    rows = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    keys = set()
    for row in rows:
        first = row.split("|")[1]
        keys |= set(re.findall(r"`([a-z_.]+)`", first))
    return keys


def test_readme_lists_every_difference_between_the_recommended_and_the_paper_config(resolved):
    a, b = resolved[RECOMMENDED], resolved[PAPER]
    differ = {k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>")}
    listed = _readme_difference_keys()
    assert differ == listed, (f"differences not in the README table: {sorted(differ - listed)}; "
                              f"README rows that are no difference: {sorted(listed - differ)}")


def test_a_config_rule_is_reported_in_its_own_words():
    """Rules checked by the config itself name their keys; pydantic's wrappers ("(top level): Value error,")
    stay out of the one-line error, type errors keep their dotted key."""
    from plugtalk.errors import InputError
    from train_support import tiny_config

    with pytest.raises(InputError) as e:
        tiny_config("out", optim={"lr": -1})
    assert str(e.value) == "config: optim.lr must be > 0 (got -1.0)"
    with pytest.raises(InputError, match=r"^config: optim\.lr: Input should be a valid number"):
        tiny_config("out", optim={"lr": "fast"})
