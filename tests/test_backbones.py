"""Backbone registry, official-checkpoint loading errors, plugtalk format round trip, input checks."""

import argparse
import pickle

import pytest
import torch
from typer.testing import CliRunner

import plugtalk.backbones as B
from conftest import TINY, tiny_backbone
from plugtalk.backbones.official import read_official_checkpoint
from plugtalk.cli import app
from plugtalk.errors import CheckpointError, ConversionError, InputError


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """Invert a backbone's official key map (test helper): our weights under the official names."""
    m = model.official_key_map(model.config)
    ours = model.state_dict()
    out = {off: ours[k].clone() for off, k in m.rename.items()}
    for off, parts in m.split.items():
        out[off] = torch.cat([ours[k] for k, *_ in parts], dim=parts[0][1])
    out.update({off: torch.zeros(1) for off in m.drop})
    out.update({off: v.clone() for off, v in m.buffers.items()})
    return out


@pytest.mark.parametrize("name", ["lia", "edtalk", "dpe", "edtalk-audio"])
def test_official_round_trip_and_namespace_checkpoint(tmp_path, name):
    model = tiny_backbone(name) if name != "edtalk-audio" else B.create(name)
    container = "audio2lip" if name == "edtalk-audio" else "gen"
    path = tmp_path / "official.pt"
    # training checkpoints of LIA/DPE also pickle the argparse.Namespace of their arguments
    torch.save({container: official_state_dict(model), "args": argparse.Namespace(size=32, lr=2e-3)}, path)
    overrides = TINY if name != "edtalk-audio" else {}
    loaded = B.load_official(name, path, **overrides)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_convert_cli_writes_plugtalk_file(tmp_path):
    model = B.create("edtalk-audio")  # official geometry, so the CLI's defaults apply
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": official_state_dict(model)}, path)
    out = tmp_path / "audio.safetensors"
    res = CliRunner().invoke(app, ["convert", "--backbone", "edtalk-audio", str(path), str(out)])
    assert res.exit_code == 0, res.output
    again = B.load(out)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


def test_wrong_backbone_names_what_the_file_looks_like(tmp_path):
    path = tmp_path / "edtalk.pt"
    torch.save({"gen": official_state_dict(tiny_backbone("edtalk"))}, path)
    with pytest.raises(ConversionError) as e:
        B.load_official("lia", path, **TINY)
    assert e.value.looks_like == "edtalk" and "looks like a 'edtalk'" in str(e.value)
    assert e.value.missing and e.value.unexpected
    assert "dec.direction.weight" in e.value.missing


def test_shape_mismatch_is_reported(tmp_path):
    path = tmp_path / "lia.pt"
    torch.save({"gen": official_state_dict(tiny_backbone("lia"))}, path)
    with pytest.raises(ConversionError, match="shape mismatch"):
        B.load_official("lia", path, **{**TINY, "channel_max": 16})


def test_unconsumed_official_key_is_an_error(tmp_path):
    sd = official_state_dict(tiny_backbone("lia"))
    sd["dec.some_new_layer.weight"] = torch.zeros(3)
    path = tmp_path / "lia.pt"
    torch.save({"gen": sd}, path)
    with pytest.raises(ConversionError, match="1 unexpected key"):
        B.load_official("lia", path, **TINY)


def test_corrupt_buffer_values_are_reported(tmp_path):
    sd = official_state_dict(tiny_backbone("lia"))
    key = next(k for k in sd if k.endswith("upsample.kernel"))
    sd[key] = sd[key] * 2
    path = tmp_path / "lia.pt"
    torch.save({"gen": sd}, path)
    with pytest.raises(ConversionError, match="unexpected values"):
        B.load_official("lia", path, **TINY)


def test_truncated_empty_and_missing_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"gen": official_state_dict(tiny_backbone("lia"))}, good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        B.load_official("lia", cut, **TINY)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        B.load_official("lia", empty, **TINY)
    with pytest.raises(CheckpointError, match="does not exist"):
        B.load_official("lia", tmp_path / "nope.pt", **TINY)


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_code_carrying_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"gen": {"x": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_official_checkpoint(path, "gen")
    assert "pickled code ran" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        read_official_checkpoint(plain, "gen")


def test_cli_reports_errors_with_exit_code(tmp_path):
    path = tmp_path / "edtalk.pt"
    torch.save({"gen": official_state_dict(tiny_backbone("edtalk"))}, path)
    res = CliRunner().invoke(app, ["convert", "--backbone", "dpe", str(path), str(tmp_path / "o.safetensors")])
    assert res.exit_code == 2 and "error:" in res.output
    assert not (tmp_path / "o.safetensors").exists()


def test_plugtalk_format_round_trip_and_kind_check(tmp_path):
    model = tiny_backbone("edtalk")
    path = model.save_pretrained(tmp_path / "m.safetensors")
    again = B.load(path)
    assert type(again) is type(model) and again.config == model.config
    s = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(s, driving=s), again(s, driving=s))
    with pytest.raises(CheckpointError, match="not a backbone 'lia'"):
        B.LIA.from_pretrained(path)
    junk = tmp_path / "x.safetensors"
    junk.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        B.load(junk)


def test_create_overrides_and_unknown_options():
    m = B.create("lia", **TINY)
    assert m.config.size == 32 and [f.shape[-1] for f in m.encode(torch.zeros(1, 3, 32, 32)).pyramid] == [8, 16, 32]
    with pytest.raises(ValueError, match="unknown option"):
        B.create("lia", sise=64)
    with pytest.raises(ValueError, match="unknown backbone"):
        B.create("fomm")
    with pytest.raises(ValueError, match="power of two"):
        B.create("lia", size=100)


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(1, 3, 32), "shape"), (torch.zeros(1, 4, 32, 32), "shape"),
    (torch.zeros(1, 3, 64, 64), "32x32"), (torch.full((1, 3, 32, 32), 128.0), r"\[-1, 1\]"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float"), (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
])
def test_input_checks(bad, match):
    m = tiny_backbone("lia")
    with pytest.raises(InputError, match=match):
        m(bad, torch.zeros(1, 3, 32, 32))


def test_edtalk_audio_shapes_and_errors():
    m = B.create("edtalk-audio").eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 5, 80, 16)).shape == (2, 5, 20)
    with pytest.raises(InputError, match="80, 16"):
        m(torch.zeros(2, 5, 80, 12))


def test_dpe_unknown_mode():
    with pytest.raises(InputError, match="mode"):
        tiny_backbone("dpe")(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), mode="gaze")
