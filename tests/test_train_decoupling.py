"""Planted test of EDTalk's mouth-pose stage: after a short CPU training on synthetic clips whose head pose and
mouth opening vary independently, the mouth and pose banks follow their own drivers only; the model before
the stage fails the same checks.  (The expression stage's planted check is not here yet: 150 steps moved the
brows by 0.3 of the drivers' 1.9 px brow-row difference, too little to separate from the untrained 0.13.)"""

import pytest
import torch

from decoupling_support import MOUTH_BOX, SKINS, face, head_x, mouth_open, write_clips
from plugtalk import load_retrofitted
from plugtalk.io.images import to_tensor
from plugtalk.train import Trainer
from train_support import tiny_config

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:no VGG19 weights given", "ignore:stage 'edtalk-mouth-pose'")]
LOSS = {"adv": 0.0, "per": 0.0}  # L1 + the stages' own terms: enough at 32 px, and fast


def _train(root, name, stage, steps, folder, checkpoint=None, mouth_box=None):
    model = {"backbone": "edtalk", **({"checkpoint": str(checkpoint)} if checkpoint else {})}
    data = {"folder": str(folder), "repeats": 50, "hflip": False}
    if mouth_box:
        data["mouth_box"] = list(mouth_box)
    cfg = tiny_config(root / name, stage=stage, steps=steps, model=model, data=data, optim={"lr": 3e-3},
                      loss=LOSS, log={"every": 50})
    Trainer(cfg).fit()
    return root / name / "model.safetensors"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """pre-training (the plain EDTalk, LIA-style, on clips with brows up and down), then the mouth-pose stage."""
    root = tmp_path_factory.mktemp("decoupling")
    neutral = write_clips(root / "neutral", identities=2, clips_per_identity=2, frames=24)
    emotional = write_clips(root / "emotional", identities=2, clips_per_identity=2, frames=24, seed=1, emotions=True)
    pre = _train(root, "pre", "baseline", 400, emotional)
    mp = _train(root, "mp", "edtalk-mouth-pose", 200, neutral, pre, MOUTH_BOX)
    return {k: load_retrofitted(v).eval() for k, v in (("pre", pre), ("mp", mp))}


def _render(model, source, **drivers):
    with torch.no_grad():
        out = model(to_tensor(source), **{k: to_tensor(v) for k, v in drivers.items()})
    return ((out[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


SOURCE = face(0.0, 0.3, skin=SKINS[1])
X, Y = face(-1, 0.0, 0.0, skin=SKINS[0]), face(1, 1.0, 1.0, skin=SKINS[0])  # differ in pose, mouth and brows
FIXED = face(0.2, 0.5, skin=SKINS[1])


def _mouth_pose_checks(model):
    """(mouth swap: mouth change, head shift), (pose swap: head shift, mouth change) between drivers X and Y
    (8 px of head shift and ~80 px^2 of mouth area apart)."""
    a, b = _render(model, SOURCE, mouth=X, pose=FIXED), _render(model, SOURCE, mouth=Y, pose=FIXED)
    c, d = _render(model, SOURCE, mouth=FIXED, pose=X), _render(model, SOURCE, mouth=FIXED, pose=Y)
    return ((abs(mouth_open(b) - mouth_open(a)), abs(head_x(b) - head_x(a))),
            (abs(head_x(d) - head_x(c)), abs(mouth_open(d) - mouth_open(c))))


def _decoupled(checks) -> bool:
    (m_mouth, m_head), (p_head, p_mouth) = checks
    return m_mouth >= 15 and m_head <= 1.5 and p_head >= 3 and p_mouth <= 15


def test_after_the_mouth_pose_stage_mouth_and_pose_drivers_act_apart(models):
    assert (mouth_open(Y) - mouth_open(X)) > 60 and head_x(Y) - head_x(X) == pytest.approx(8, abs=0.5)
    before, after = _mouth_pose_checks(models["pre"]), _mouth_pose_checks(models["mp"])
    assert _decoupled(after), after
    assert not _decoupled(before), before
