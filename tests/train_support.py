"""Tiny training settings shared by the training tests (and the subprocess worker)."""

from __future__ import annotations

import copy

from plugtalk.train import config_from_mapping

TINY_BACKBONE = dict(size=32, channel_base=512, channel_max=32, style_dim=64)
TINY_EMI = dict(width=16, num_heads=2, num_queries=4)
TINY_EDI = dict(num_slots=8, decoder_channels=16, fusion_heads=2)


def tiny_mapping(output_dir, stage: str = "stage1", steps: int = 4, **sections) -> dict:
    """A nested config dict for a 32 px LIA with small EMI/EDI/discriminator, batch 4, no workers."""
    m = {
        "stage": stage,
        "model": {"backbone": "lia", "overrides": dict(TINY_BACKBONE), "emi": dict(TINY_EMI), "edi": dict(TINY_EDI),
                  "init": "random", "discriminator": {"channel_base": 512, "channel_max": 32}},
        "data": {"batch_size": 4, "workers": 0},
        "optim": {"steps": steps, "lr": 1e-3},
        "log": {"every": 1, "image_every": 0, "checkpoint_every": 1000, "progress": False},
        "output_dir": str(output_dir),
        "seed": 0,
        "device": "cpu",
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            m.setdefault(name, {}).update(copy.deepcopy(values))
        else:
            m[name] = values
    return m


def tiny_config(output_dir, stage: str = "stage1", steps: int = 4, **sections):
    return config_from_mapping(tiny_mapping(output_dir, stage, steps, **sections))


def companion_config(tmp_path, stage: str, steps: int = 2, animator=None, **sections):
    """A config of a companion stage (``edtalk-audio-lip`` / ``-pose``) beside a tiny random EDTalk animator
    (or ``animator``) saved to ``tmp_path/animator.safetensors``: batch 2, no SyncNet or VGG19, ``sections`` on top."""
    import torch

    from plugtalk import backbones as B

    path = tmp_path / "animator.safetensors"
    if not path.is_file():
        tmp_path.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        (animator if animator is not None else B.create("edtalk", **TINY_BACKBONE)).save_pretrained(path)
    m = tiny_mapping(tmp_path / "run", stage, steps)
    m["model"] = {"backbone": "edtalk", "checkpoint": str(path)}
    m["data"]["batch_size"] = 2
    m["loss"] = {"stage_weights": {"sync": 0.0}, "per": 0.0}
    for name, values in sections.items():
        for k, v in values.items():
            m.setdefault(name, {})[k] = v
    return config_from_mapping(m)
