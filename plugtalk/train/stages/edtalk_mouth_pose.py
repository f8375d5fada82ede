"""``edtalk-mouth-pose``: EDTalk's mouth-pose decouple stage (EDTalk suppl. Sec. 1.3 and 3.3).

Trains the shared motion trunk, MLP^m and MLP^p (``mouth_head``, ``pose_head``) and the banks B^m and B^p;
the encoder E, the generator G, the expression parts and any EMI / EDI stay frozen.  One step renders,
for two clips A and B (:class:`plugtalk.data.decoupling.MouthSwapDataset`):

* self-reconstruction of A's and B's driving frames (L_self: L1, ``loss.rec``);
* cross-reconstruction with mouth replacement: A's frame rendered from the *mouth* of B's frame with A's
  mouth pasted in and the *pose* of A's frame with B's mouth pasted in (and the reverse), against the
  unmodified frame (L1, ``cross``);
* L_per and L_adv on all four renders (the official code's VGG and GAN terms);
* L_fea (``fea``): ``exp(-cos)`` between the mouth (pose) coefficients of the cross and the self renders;
* L_rec^m (``mouth``): L1 inside the mouth box of all four renders;
* L_sync^m (``sync``): SyncNet's ``-log cos(a, v)`` (:func:`plugtalk.train.syncnet.sync_loss`) on the
  face crops (``audio.face_box``, 96 x 96) of a self-reconstruction of 5 consecutive frames of A (mouth and
  pose driven by each frame) against the mel window of their middle frame; with ``loss.syncnet_weights``
  every clip needs sound.  The official mouth-pose trainer has no sync loss, so without the file it is
  off with a warning.

EDTalk: batch 4, lr 2e-3, all weights 1, on neutral-emotion video (HDTF).  The expression bank keeps the
source frame's own coefficients (the official network of this stage has no expression bank).
"""

from __future__ import annotations

import warnings

import torch

from . import Objective, Stage, Start, register_stage
from .edtalk_common import EDTALK_START, feature_constraint, frozen_modules_model, masked_l1, recorded

#: the backbone parts this stage trains (EDTalk's mouth-pose decouple module)
PARTS = ("motion_trunk", "mouth_head", "pose_head", "banks.mouth", "banks.pose")
#: consecutive frames SyncNet sees
SYNC_WINDOW = 5


def _build(cfg, start: Start):
    return frozen_modules_model(cfg, start, PARTS, "edtalk-mouth-pose")


def _setup(trainer) -> dict:
    from ..config import expand_path
    from ..syncnet import load_syncnet

    path = trainer.cfg.loss.syncnet_weights
    if path and trainer.loss_weight("sync") > 0:
        return {"syncnet": load_syncnet(expand_path(path), trainer.device)}
    warnings.warn("stage 'edtalk-mouth-pose': L_sync^m is off (no loss.syncnet_weights; the official mouth-pose "
                  "trainer has no sync loss either)", UserWarning, stacklevel=2)
    return {}


def _data_options(cfg) -> dict:
    """The sync window (and its clips' sound) is read only while L_sync^m is on."""
    from . import loss_weight

    on = bool(cfg.loss.syncnet_weights) and loss_weight(cfg, STAGE, "sync") > 0
    return {"sync_window": SYNC_WINDOW if on else 0, "fps": cfg.audio.fps}


def _objective(model, batch, trainer) -> Objective:
    sa, sb, a, b = batch["source"], batch["source_b"], batch["driving"], batch["driving_b"]
    ab, ba = batch["a_mouth_b"], batch["b_mouth_a"]  # ab: A's pose with B's mouth; ba: B's pose with A's mouth
    n = a.shape[0]
    source = torch.cat([sa, sb, sa, sb])
    mouth = torch.cat([a, b, ba, ab])   # cross A takes A's mouth from ba, cross B takes B's mouth from ab
    pose = torch.cat([a, b, ab, ba])    # cross A takes A's pose from ab, cross B takes B's pose from ba
    target = torch.cat([a, b, a, b])
    syncnet = trainer.stage_state.get("syncnet")
    if syncnet is not None:  # L_sync^m's self-reconstructions of A's window join the same (one DDP) forward
        window = batch["sync_frames"].flatten(0, 1)
        source = torch.cat([source, sa.repeat_interleave(batch["sync_frames"].shape[1], dim=0)])
        mouth, pose = torch.cat([mouth, window]), torch.cat([pose, window])
    with recorded(trainer.model, ("mouth.alpha", "pose.alpha")) as alpha:
        out = model(source, mouth=mouth, pose=pose)
    fake, synced = out.image[:4 * n], out.image[4 * n:]
    own_m, cross_m = alpha["mouth.alpha"][:2 * n], alpha["mouth.alpha"][2 * n:4 * n]
    own_p, cross_p = alpha["pose.alpha"][:2 * n], alpha["pose.alpha"][2 * n:4 * n]
    l1 = (fake.float() - target.float()).abs().flatten(1).mean(1)
    mask = batch["mouth_mask"].repeat(4, 1, 1, 1)
    losses = {"rec": l1[:2 * n].mean() * 2, "cross": l1[2 * n:].mean() * 2,
              "fea": feature_constraint(cross_m, own_m) + feature_constraint(cross_p, own_p),
              "mouth": masked_l1(fake, target, mask)}
    if syncnet is not None:
        from ..syncnet import face_crops, sync_loss

        windows = synced.reshape(*batch["sync_frames"].shape[:2], *synced.shape[1:])
        crops = face_crops(windows, trainer.cfg.audio.face_box)
        losses["sync"] = sync_loss(syncnet, batch["sync_mel"], crops)
    return Objective(fake, target, losses)


STAGE = register_stage(Stage(
    name="edtalk-mouth-pose",
    summary="EDTalk's mouth-pose decouple module (trunk, MLP^m, MLP^p, B^m, B^p); E, G, expression, EMI, EDI frozen",
    build=_build, losses=("rec", "cross", "per", "adv", "fea", "mouth", "sync"), data="mouth-swap",
    start=EDTALK_START, needs_checkpoint="a pretrained EDTalk: E and G are frozen", backbones=("edtalk",),
    weights={"cross": 1.0, "fea": 1.0, "mouth": 1.0, "sync": 1.0}, objective=_objective, setup=_setup,
    data_options=_data_options,
    paper={"batch_size": 4, "lr": 2e-3, "data": "neutral-emotion video (HDTF)"}))
