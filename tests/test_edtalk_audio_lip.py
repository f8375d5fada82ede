"""EDTalk's Audio-to-Lip training: losses, SyncNet in its official format, what trains, and a short real run."""

from __future__ import annotations

import pytest
import torch

import plugtalk.backbones as B
from plugtalk.data.audio_windows import AudioClip, AudioWindows, load_audio_windows
from plugtalk.errors import CheckpointError, InputError
from plugtalk.train.edtalk_audio_lip import (AudioLipSettings, audio_lip_losses, edtalk_bank_reader,
                                             mouth_errors, prepare_audio_lip_model, train_audio_lip)
from plugtalk.train.syncnet import AUDIO_BLOCKS, FACE_BLOCKS, SyncNet, load_syncnet, sync_loss

from conftest import tiny_backbone


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
    animator = tiny_backbone("edtalk")
    official_syncnet_file(tmp_path / "sync.pth")
    syncnet = load_syncnet(tmp_path / "sync.pth")
    data = synthetic_windows()
    model = B.create("edtalk-audio").train()
    s = AudioLipSettings(per=0)
    batch = data.batch(data.starts()[:2], frames=True)
    terms = audio_lip_losses(model(batch["mel"]), batch, s, animator=animator, syncnet=syncnet)
    assert set(terms) == {"coef", "smooth", "image", "mouth", "sync"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values())
    grads = torch.autograd.grad(terms["sync"], [model.to_mouth.weight, model.blocks[0].conv.weight])
    assert all(g.abs().sum() > 0 for g in grads)
    # the sync term depends on the rendered mouth: other coefficients give another value
    other = audio_lip_losses(model(batch["mel"]) + 0.5, batch, s, animator=animator, syncnet=syncnet)
    assert abs(float(other["sync"].detach()) - float(terms["sync"].detach())) > 1e-6
    assert not any(p.requires_grad for p in syncnet.parameters())


def test_sync_loss_is_minus_log_cosine():
    net = SyncNet(0.125).eval()
    mel, crops = torch.randn(3, 1, 80, 16), torch.randn(3, 5, 3, 96, 96)
    a, v = net(mel, crops[..., 48:, :].flatten(1, 2))
    want = -torch.log(torch.nn.functional.cosine_similarity(a, v).clamp(1e-7, 1)).mean()
    assert torch.allclose(sync_loss(net, mel, crops), want, atol=1e-5)


def test_without_syncnet_the_stage_stops_naming_the_file(tmp_path):
    animator, data = tiny_backbone("edtalk"), synthetic_windows()
    model = B.create("edtalk-audio")
    with pytest.raises(InputError, match=r"lipsync_expert\.pth.*sync=0"):
        train_audio_lip(model, animator, data, AudioLipSettings(steps=1, per=0))
    with pytest.warns(UserWarning, match="VGG19"):
        history = train_audio_lip(model, animator, data, AudioLipSettings(steps=1, sync=0, bn_windows=2),
                                  output=tmp_path)
    assert len(history) == 1 and set(history[0]) == {"coef", "smooth", "image", "mouth", "total"}
    assert B.load(tmp_path / "audio_lip.safetensors").name == "edtalk-audio"


def test_which_parameters_train(tmp_path):
    model = B.create("edtalk-audio")
    trainable = lambda m: {n for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    everything = {n for n, _ in model.named_parameters()}
    assert trainable(prepare_audio_lip_model(model, AudioLipSettings())) == everything
    assert trainable(prepare_audio_lip_model(model, AudioLipSettings(freeze_encoder=True))) == {
        "to_mouth.weight", "to_mouth.bias"}
    # the official start: Wav2Lip's audio encoder, frozen; only the linear map trains
    wav2lip = B.create("edtalk-audio")
    keys = B.EDTalkAudio.official_key_map(wav2lip.config).rename
    ours_to_theirs = {v: k for k, v in keys.items() if k.startswith("audio_encoder.")}
    torch.save({"state_dict": {"module." + ours_to_theirs[k]: v for k, v in wav2lip.state_dict().items()
                               if k in ours_to_theirs}}, tmp_path / "wav2lip.pth")
    fresh = prepare_audio_lip_model(B.create("edtalk-audio"), AudioLipSettings(wav2lip=str(tmp_path / "wav2lip.pth")))
    assert trainable(fresh) == {"to_mouth.weight", "to_mouth.bias"}
    assert torch.equal(fresh.blocks[5].conv.weight, wav2lip.blocks[5].conv.weight)
    with pytest.raises(InputError, match="does not exist"):
        prepare_audio_lip_model(model, AudioLipSettings(wav2lip=str(tmp_path / "none.pth")))


def test_settings_are_bounded():
    animator, data = tiny_backbone("edtalk"), synthetic_windows(frames=False)
    for bad in (dict(steps=0), dict(lr=5.0), dict(sync=-1), dict(face_box=(0.5, 0, 0.4, 1)), dict(window=7)):
        with pytest.raises(InputError):
            train_audio_lip(B.create("edtalk-audio"), animator, data, AudioLipSettings(**{"sync": 0, "per": 0, **bad}))


#: One clip with speech from each of six training identities of the shared data (first 4 s of each).
#: Steps of the short real-data training (about 0.4 s each on one CPU thread).
TRAIN_STEPS = 80
SPEECH_CLIPS = ("obama__obama_00", "edtalk_pose_source2__pose_source2_00", "latentsync_demo1__demo1_video",
                "mimictalk_german__German_20s_00", "real3dportrait_may__May_5s", "retalking_face1__face1")


@pytest.mark.slow
def test_short_training_predicts_heldout_mouth_coefficients(shared_data):
    """Held-out windows (the last 20 % of every clip, same identities): the trained audio model's mouth
    coefficients are closer to the frozen animator's than an untrained model's and than the training mean."""
    animator = tiny_backbone("edtalk")
    clips = [shared_data / "faces" / "train" / f"{name}.mp4" for name in SPEECH_CLIPS]
    data = load_audio_windows(clips, edtalk_bank_reader(animator), size=32, length=5, holdout=0.2, max_frames=100)
    assert len(data.clips) == len(SPEECH_CLIPS) and {c.mel.shape[1:] for c in data.clips} == {(1, 80, 16)}
    torch.manual_seed(0)
    model = B.create("edtalk-audio")
    untrained = mouth_errors(model, data)["model"]
    s = AudioLipSettings(steps=TRAIN_STEPS, sync=0, per=0, image=0, mouth=0, lr=3e-4, betas=(0.9, 0.999), bn_windows=64)
    train_audio_lip(model, animator, data, s)
    errors = mouth_errors(model, data)
    assert errors["model"] < untrained and errors["model"] < 0.9 * errors["mean"], (untrained, errors)
