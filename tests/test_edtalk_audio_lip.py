"""EDTalk's Audio-to-Lip stage (``edtalk-audio-lip``): losses, SyncNet in its official format, what trains,
resume, and a short real run."""

from __future__ import annotations

import pytest
import torch

import plugtalk.backbones as B
from plugtalk import load_retrofitted
from plugtalk.data.audio_windows import AudioClip, AudioWindows, WindowDataset, load_audio_windows
from plugtalk.errors import CheckpointError, InputError
from plugtalk.train import stages as S
from plugtalk.train.stages.companion import frames_bank_reader
from plugtalk.train.stages.edtalk_audio_lip import mouth_errors, render_mouth
from plugtalk.train.syncnet import face_crops
from plugtalk.train.syncnet import AUDIO_BLOCKS, FACE_BLOCKS, SyncNet, load_syncnet, sync_loss
from plugtalk.train.trainer import Trainer

from train_support import companion_config

AUDIO = "companion.{}"


def official_syncnet_file(path, width: float = 0.125, seed: int = 0, prefix: str = "module.") -> SyncNet:
    """A random SyncNet saved as Wav2Lip / EDTalk save theirs: {"state_dict": {face_encoder.i.conv_block.j.*}}."""
    torch.manual_seed(seed)
    net = SyncNet(width).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so a wrong key mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    theirs = {}
    for k, v in net.state_dict().items():
        part, i, layer, name = k.split(".")
        official = {"face": "face_encoder", "audio": "audio_encoder"}[part]
        theirs[f"{prefix}{official}.{i}.conv_block.{0 if layer == 'conv' else 1}.{name}"] = v
    torch.save({"state_dict": theirs, "global_step": 1}, path)
    return net


def synthetic_windows(frames: bool = True, clips: int = 2, n: int = 12, size: int = 32) -> AudioWindows:
    g = torch.Generator().manual_seed(0)
    out = []
    for c in range(clips):
        out.append(AudioClip(f"c{c}", f"id{c}", torch.rand(n, 1, 80, 16, generator=g) * 8 - 4,
                             {"mouth": torch.randn(n, 20, generator=g) * 0.1, "pose": torch.randn(n, 6, generator=g) * 0.1,
                              "expression": torch.randn(n, 10, generator=g) * 0.1},
                             torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8) if frames else None))
    return AudioWindows(out, 5, holdout=0.25)


def test_syncnet_loads_official_format(tmp_path):
    path = tmp_path / "lipsync_expert.pth"
    ref = official_syncnet_file(path)
    net = load_syncnet(path)
    assert net.width == 0.125 and not any(p.requires_grad for p in net.parameters())
    mel, faces = torch.randn(2, 1, 80, 16), torch.randn(2, 15, 48, 96)
    for a, b in zip(net(mel, faces), ref(mel, faces)):
        assert torch.allclose(a, b, atol=1e-6)
    assert len(net.face) == len(FACE_BLOCKS) and len(net.audio) == len(AUDIO_BLOCKS)
    with pytest.raises(InputError, match="lipsync_expert.pth"):
        load_syncnet(tmp_path / "missing.pth")
    torch.save({"state_dict": {"face_encoder.0.conv_block.0.weight": torch.zeros(4, 15, 7, 7), "x": torch.zeros(1)}},
               tmp_path / "bad.pth")
    with pytest.raises(CheckpointError):
        load_syncnet(tmp_path / "bad.pth")


def test_all_loss_terms_reach_the_audio_model(tmp_path):
    official_syncnet_file(tmp_path / "sync.pth")
    cfg = companion_config(tmp_path, "edtalk-audio-lip", loss={"syncnet_weights": str(tmp_path / "sync.pth"),
                                                               "stage_weights": {}},
                           audio={"init_at_mean": False})  # (a zero linear map would pass no gradient back)
    t = Trainer(cfg, WindowDataset(synthetic_windows(), frames=True))
    batch = next(iter(t._loader()))
    out = t.stage.objective(t.g_net, batch, t)
    assert set(out.losses) == {"coef", "smooth", "mouth", "sync"} and out.fake.shape == (10, 3, 32, 32)
    assert all(torch.isfinite(v) and v > 0 for v in out.losses.values())
    audio = t.model.companion
    grads = torch.autograd.grad(out.losses["sync"], [audio.to_mouth.weight, audio.blocks[0].conv.weight])
    assert all(g.abs().sum() > 0 for g in grads)
    # the sync term depends on the rendered mouth: other coefficients give another value
    syncnet, mid = t.stage_state["syncnet"], batch["mel"][:, 2]
    with torch.no_grad():
        pred = audio(batch["mel"])
        crops = [face_crops(render_mouth(t.model.animator, batch["identity_frame"], batch["frames"], p),
                            cfg.audio.face_box) for p in (pred, pred + 0.5)]
    assert abs(float(sync_loss(syncnet, mid, crops[0])) - float(sync_loss(syncnet, mid, crops[1]))) > 1e-6
    assert not any(p.requires_grad for p in syncnet.parameters())
    assert not any(p.requires_grad for p in t.model.animator.parameters())


def test_without_syncnet_the_stage_stops_naming_the_file(tmp_path):
    with pytest.raises(InputError, match=r"lipsync_expert\.pth.*stage_weights\.sync=0"):
        companion_config(tmp_path, "edtalk-audio-lip", loss={"stage_weights": {}})
    with pytest.warns(UserWarning, match="VGG19.*leaves the perceptual loss L_per out"):
        t = Trainer(companion_config(tmp_path, "edtalk-audio-lip", steps=1, loss={"per": 1.0},
                                     audio={"bn_windows": 2}), WindowDataset(synthetic_windows(), frames=True))
    logged = t.fit()
    assert {k for k in logged if k.startswith("loss/")} == {"loss/coef", "loss/smooth", "loss/rec", "loss/mouth",
                                                             "loss/total"}
    run = tmp_path / "run"
    assert B.load(run / "audio_lip.safetensors").name == "edtalk-audio"
    assert load_retrofitted(run / "model.safetensors").backbone.name == "edtalk"  # the frozen animator, for the next step


def test_which_parameters_train(tmp_path):
    everything = {AUDIO.format(n) for n, _ in B.create("edtalk-audio").named_parameters()}
    linear = {AUDIO.format("to_mouth.weight"), AUDIO.format("to_mouth.bias")}
    assert S.trainable_names(S.build_model(companion_config(tmp_path, "edtalk-audio-lip"))) == everything
    frozen = S.build_model(companion_config(tmp_path, "edtalk-audio-lip", audio={"freeze_encoder": True}))
    assert S.trainable_names(frozen) == linear
    # the official start: Wav2Lip's audio encoder, frozen; only the linear map trains
    wav2lip = B.create("edtalk-audio")
    keys = B.EDTalkAudio.official_key_map(wav2lip.config).rename
    ours_to_theirs = {v: k for k, v in keys.items() if k.startswith("audio_encoder.")}
    torch.save({"state_dict": {"module." + ours_to_theirs[k]: v for k, v in wav2lip.state_dict().items()
                               if k in ours_to_theirs}}, tmp_path / "wav2lip.pth")
    fresh = S.build_model(companion_config(tmp_path, "edtalk-audio-lip", audio={"wav2lip": str(tmp_path / "wav2lip.pth")}))
    assert S.trainable_names(fresh) == linear
    assert torch.equal(fresh.companion.blocks[5].conv.weight, wav2lip.blocks[5].conv.weight)
    with pytest.raises(InputError, match="does not exist"):
        S.build_model(companion_config(tmp_path, "edtalk-audio-lip", audio={"wav2lip": str(tmp_path / "none.pth")}))


def test_settings_are_bounded(tmp_path):
    for section, bad in (("optim", {"steps": 0}), ("audio", {"face_box": (0.5, 0, 0.4, 1)}),
                         ("audio", {"window": 0}), ("loss", {"stage_weights": {"sync": -1.0}}),
                         ("loss", {"stage_weights": {"sync": 1.0}, "syncnet_weights": "s.pth"}),  # + window 7
                         ("audio", {"max_clips": 0})):
        extra = {"audio": {"window": 7}} if bad.get("syncnet_weights") else {}
        with pytest.raises(InputError):
            companion_config(tmp_path, "edtalk-audio-lip", **{section: bad}, **extra)
    with pytest.raises(InputError, match="needs model.checkpoint"):
        from train_support import tiny_config

        tiny_config(tmp_path, "edtalk-audio-lip", model={"backbone": "edtalk"}, loss={"stage_weights": {"sync": 0}})


def test_an_interrupted_run_resumes_to_the_same_audio_model(tmp_path):
    data = WindowDataset(synthetic_windows(frames=False))
    mouth_only = {"rec": 0.0, "stage_weights": {"sync": 0.0, "mouth": 0.0}}
    straight = Trainer(companion_config(tmp_path / "a", "edtalk-audio-lip", steps=4, loss=mouth_only), data)
    straight.fit()
    part = Trainer(companion_config(tmp_path / "b", "edtalk-audio-lip", steps=2, loss=mouth_only,
                                    log={"checkpoint_every": 1}), data)
    part.fit()
    resumed = Trainer(companion_config(tmp_path / "b", "edtalk-audio-lip", steps=4, loss=mouth_only), data, resume=True)
    assert resumed.step == 2 and resumed.resumed_from is not None
    resumed.fit()
    a, b = B.load(tmp_path / "a" / "run" / "audio_lip.safetensors"), B.load(tmp_path / "b" / "run" / "audio_lip.safetensors")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_targets_are_the_animators_own_bank_coefficients(tmp_path):
    """The frames' labels are what the animator reads when the frame drives the bank (through EMI if any)."""
    model = S.build_model(companion_config(tmp_path, "edtalk-audio-lip"))
    frames = torch.rand(3, 3, 32, 32) * 2 - 1
    got = frames_bank_reader(model.animator, ("mouth", "pose"))(frames)
    backbone = model.animator.backbone
    with torch.no_grad():
        latent = backbone.encode(frames).latent
        for bank in ("mouth", "pose"):
            assert torch.allclose(got[bank], backbone.bank_coefficients(latent, bank)[1], atol=1e-5)


#: One clip with speech from each of six training identities of the shared data (first 4 s of each).
#: Steps of the short real-data training (about 0.4 s each on one CPU thread).
TRAIN_STEPS = 80
SPEECH_CLIPS = ("obama__obama_00", "edtalk_pose_source2__pose_source2_00", "latentsync_demo1__demo1_video",
                "mimictalk_german__German_20s_00", "real3dportrait_may__May_5s", "retalking_face1__face1")


@pytest.mark.slow
def test_short_training_predicts_heldout_mouth_coefficients(tmp_path, shared_data):
    """Held-out windows (the last 20 % of every clip, same identities): the trained audio model's mouth
    coefficients are closer to the frozen animator's than an untrained model's and than the training mean."""
    cfg = companion_config(tmp_path, "edtalk-audio-lip", steps=TRAIN_STEPS,
                           optim={"lr": 3e-4, "betas": (0.9, 0.999)}, data={"batch_size": 4},
                           loss={"rec": 0.0, "stage_weights": {"sync": 0.0, "mouth": 0.0}},
                           audio={"bn_windows": 64})
    t = Trainer(cfg, WindowDataset(synthetic_windows(frames=False)))  # the animator, built as the stage builds it
    clips = [shared_data / "faces" / "train" / f"{name}.mp4" for name in SPEECH_CLIPS]
    data = load_audio_windows(clips, frames_bank_reader(t.model.animator, ("mouth",)), size=32, length=5,
                              holdout=0.2, max_frames=100)
    assert len(data.clips) == len(SPEECH_CLIPS) and {c.mel.shape[1:] for c in data.clips} == {(1, 80, 16)}
    torch.manual_seed(0)
    untrained = mouth_errors(B.create("edtalk-audio"), data)["model"]
    t = Trainer(cfg, WindowDataset(data))
    t.fit()
    errors = mouth_errors(t.model.companion, data)
    assert errors["model"] < untrained and errors["model"] < 0.9 * errors["mean"], (untrained, errors)
