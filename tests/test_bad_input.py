"""Bad input through every command (issue 15): refused with one ``error:`` line and exit 2 before anything is
written, never a traceback, never a lost input file, no temporary files or empty folders left behind.

Models are tiny random ones (the checks are about the files, not the animation); the few runs that reach the
model stop after 2 frames.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import plugtalk.backbones as B
from plugtalk.cli import app
from plugtalk.demo import demo_driving_path, demo_source
from plugtalk.errors import CheckpointError
from plugtalk.io.paths import same_file
from plugtalk.io.video import VideoWriter
from plugtalk.weights.detect import sniff_format
from test_backbones import official_state_dict
from train_support import tiny_mapping

TINY = dict(size=64, channel_base=1024, channel_max=32, style_dim=64)
NOT_WEIGHTS = "not a PyTorch checkpoint or safetensors file"
runner = CliRunner()


def cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    return res, " ".join(res.output.split())  # unwrap rich's line breaks


def refused(res, text, expected):
    """Exit 2, one ``error:`` line naming ``expected``, no traceback."""
    assert res.exit_code == 2, text
    assert "error:" in text and expected in text, text
    assert "Traceback" not in text, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert sum(line.startswith("error:") for line in res.output.splitlines()) == 1, res.output


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A source portrait, a driving clip, a tiny plugtalk LIA file (also renamed ``.pt``), an official-layout
    EDTalk audio checkpoint, and broken weight files (text, random bytes, NaN, inf)."""
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(demo_source()).save(d / "face.png")
    (d / "clip.mp4").write_bytes(Path(demo_driving_path()).read_bytes())
    torch.manual_seed(0)
    lia = B.create("lia", **TINY).eval()
    lia.save_pretrained(d / "lia.safetensors")
    (d / "renamed.pt").write_bytes((d / "lia.safetensors").read_bytes())
    audio = B.create("edtalk-audio")
    official = official_state_dict(audio)
    torch.save({"audio2lip": official}, d / "Audio2Lip.pt")
    (d / "text.pt").write_text("this is not a checkpoint\n")
    (d / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    sd = lia.state_dict()
    sd["encoder.stem.conv.weight"][0, 0, 0, 0] = float("nan")
    bad = B.create("lia", **TINY)
    bad.load_state_dict(sd)
    bad.save_pretrained(d / "nan.safetensors")
    key = "audio_encoder.0.conv_block.0.weight"
    official[key] = official[key].clone()
    official[key][0] = float("inf")
    torch.save({"audio2lip": official}, d / "inf.pt")
    return d


@pytest.fixture
def work(files, tmp_path):
    """A private copy of the inputs (the tests check that none of them changes)."""
    for p in files.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    return tmp_path


ANIMATE = ("animate", "--no-progress", "--device", "cpu", "--frames", "2")


# -- outputs onto inputs (data loss) ----------------------------------------------------------------
def test_animate_refuses_to_write_onto_any_of_its_inputs(work):
    before = {p.name: digest(p) for p in work.iterdir()}
    (work / "link.mp4").symlink_to(work / "clip.mp4")
    os.link(work / "clip.mp4", work / "hard.mp4")
    cases = [
        (["-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "clip.mp4"], "is the --driving input"),
        (["-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "sub" / ".." / "clip.mp4"], "--driving"),
        (["-s", work / "face.png", "-d", work / "link.mp4", "-o", work / "clip.mp4"], "--driving"),
        (["-s", work / "face.png", "-d", work / "hard.mp4", "-o", work / "clip.mp4"], "--driving"),
        (["-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "--side-by-side",
          work / "clip.mp4"], "--side-by-side"),
        (["-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "--side-by-side",
          work / "o.mp4"], "--out and --side-by-side are the same file"),
    ]
    (work / "sub").mkdir()
    for args, expected in cases:
        res, text = cli(*ANIMATE, "-c", work / "lia.safetensors", *args)
        refused(res, text, expected)
    assert {n: digest(work / n) for n in before} == before
    assert not (work / "o.mp4").exists() and not partials(work)


def test_eval_json_must_be_a_json_name_and_not_an_input(work):
    before = digest(work / "clip.mp4")
    base = ("eval", "--pred", work / "clip.mp4", "--ref", work / "clip.mp4", "-m", "psnr", "--frames", "2",
            "--no-progress")
    refused(*cli(*base, "--json", work / "clip.mp4"), "is the --pred input")
    refused(*cli(*base, "--json", work / "out.txt"), "must end in .json")
    assert digest(work / "clip.mp4") == before and not (work / "out.txt").exists()
    res, text = cli(*base, "--json", work / "out.json")
    assert res.exit_code == 0, text
    assert '"psnr"' in (work / "out.json").read_text()


def test_convert_refuses_to_replace_its_input_and_wants_a_safetensors_name(work):
    before = digest(work / "Audio2Lip.pt")
    os.link(work / "Audio2Lip.pt", work / "hard.safetensors")
    refused(*cli("convert", "-b", "edtalk-audio", work / "Audio2Lip.pt", work / "Audio2Lip.pt"),
            "is the checkpoint input")
    refused(*cli("convert", "-b", "edtalk-audio", work / "Audio2Lip.pt", work / "hard.safetensors"),
            "is the checkpoint input")
    refused(*cli("convert", "-b", "edtalk-audio", work / "Audio2Lip.pt", work / "audio.pt"), ".safetensors")
    assert digest(work / "Audio2Lip.pt") == before and not (work / "audio.pt").exists()


def test_prepare_refuses_an_output_folder_that_holds_its_sources(work):
    vids = work / "vids"
    vids.mkdir()
    (vids / "p1__c1.mp4").write_bytes((work / "clip.mp4").read_bytes())
    before = digest(vids / "p1__c1.mp4")
    for src in (vids, vids / "p1__c1.mp4"):
        refused(*cli("prepare", src, "--out", vids, "--no-progress"), "holds the source video")
    assert digest(vids / "p1__c1.mp4") == before and sorted(p.name for p in vids.iterdir()) == ["p1__c1.mp4"]


@pytest.mark.parametrize("ident, expected", [
    ("../../victim", "path separator"),        # issue 19: this --id replaced the source video with its crop
    ("../escape", "path separator"),           # ... and this one wrote outside --out
    ("a\\b", "path separator"),
    ("..", "is not a name"),
    ("", "is not a name"),
    ("bad\x07id", "control character"),
    ("x" * 300, "file name too long"),
])
def test_prepare_id_must_be_one_path_component(work, ident, expected):
    (work / "victim__clip.mp4").write_bytes((work / "clip.mp4").read_bytes())
    before = {p.name: digest(p) for p in work.iterdir() if p.is_file()}
    refused(*cli("prepare", work / "victim__clip.mp4", "--out", work / "sub" / "prepv", "--id", ident,
                 "--no-progress"), expected)
    assert {p.name: digest(p) for p in work.iterdir() if p.is_file()} == before
    assert not (work / "sub").exists() and not (work.parent / "escape__clip.mp4").exists()


def test_prepare_video_never_writes_onto_its_source_or_outside_out(work):
    """The API guards every clip path itself: inside ``out_dir`` and none of the inputs (nor their wav)."""
    from plugtalk.data.prepare import prepare_video, prepare_videos
    from plugtalk.errors import InputError

    src = work / "p1__c1.mp4"
    src.write_bytes((work / "clip.mp4").read_bytes())
    before = digest(src)
    with pytest.raises(InputError, match="would replace the input"):
        prepare_video(src, work)                        # p1__c1 -> work/p1__c1.mp4 is the source itself
    with pytest.raises(InputError, match="would replace the input"):
        prepare_video(work / "clip.mp4", work / "out", protect=[work / "out" / "clip__clip.mp4"])
    with pytest.raises(InputError, match="path separator"):
        prepare_videos([src], work / "out", identity="../p1")
    assert digest(src) == before and not (work / "out").exists()


def test_path_guards():
    from plugtalk.errors import InputError
    from plugtalk.io.paths import check_inside, check_path_component

    assert check_path_component("M003_angry-3", "--id") == "M003_angry-3"
    for bad in ("a/b", "/abs", "..", ".", "nul\x00", "tab\t", "x" * 256):
        with pytest.raises(InputError):
            check_path_component(bad, "--id")
    with pytest.raises(InputError, match="file name too long"):
        check_path_component("x" * 250, "--id", reserve=10)
    root = Path("/tmp/plugtalk-guard")
    assert check_inside(root / "a.mp4", root, "--out") == root / "a.mp4"
    for bad in (root / ".." / "a.mp4", root.parent / "a.mp4", Path("/etc/passwd")):
        with pytest.raises(InputError, match="outside"):
            check_inside(bad, root, "--out")


# -- tracebacks that become one line ----------------------------------------------------------------
def test_convert_unknown_backbone(work):
    refused(*cli("convert", "-b", "foo", work / "Audio2Lip.pt", work / "o.safetensors"), "unknown backbone 'foo'")


def test_train_output_that_is_a_file(work):
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mapping(work / "run")))
    before = digest(work / "face.png")
    refused(*cli("train", "-c", cfg, "--data", work, "-o", work / "face.png"), "is a file, not a folder")
    assert digest(work / "face.png") == before


@pytest.mark.parametrize("bad", ["text.pt", "random.pt"])
def test_a_file_that_is_no_checkpoint_is_named_as_such(work, bad):
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "-b", "lia",
                 "-c", work / bad), NOT_WEIGHTS)
    refused(*cli("convert", "-b", "lia", work / bad, work / "o.safetensors"), NOT_WEIGHTS)
    assert not (work / "o.mp4").exists() and not (work / "o.safetensors").exists()


def test_weights_format_comes_from_the_content_not_the_name(work):
    assert sniff_format(work / "renamed.pt") == "safetensors"
    assert sniff_format(work / "Audio2Lip.pt") == "torch-zip"
    assert sniff_format(work / "text.pt") == sniff_format(work / "random.pt") == "unknown"
    # a plugtalk file named .pt animates (with or without a matching --backbone) ...
    for extra in ([], ["-b", "lia"]):
        res, text = cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4",
                        "-c", work / "renamed.pt", *extra)
        assert res.exit_code == 0, text
        assert "plugtalk backbone file renamed.pt" in text
    # ... and convert says it needs no conversion
    refused(*cli("convert", "-b", "lia", work / "renamed.pt", work / "o.safetensors"), "is a safetensors file")


def test_nan_or_inf_weights_are_refused_at_load_naming_file_and_tensor(work):
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4",
                 "-c", work / "nan.safetensors"), "'encoder.stem.conv.weight' holds 1 NaN value(s)")
    refused(*cli("convert", "-b", "edtalk-audio", work / "inf.pt", work / "o.safetensors"),
            "'audio_encoder.0.conv_block.0.weight' holds")
    res, text = cli("convert", "-b", "edtalk-audio", work / "inf.pt", work / "o.safetensors")
    assert "inf.pt" in text and "inf value" in text
    assert not (work / "o.mp4").exists() and not (work / "o.safetensors").exists()
    with pytest.raises(CheckpointError, match="nan.safetensors"):
        B.load(work / "nan.safetensors")


# -- weak spots -------------------------------------------------------------------------------------
def test_user_text_in_errors_is_printed_verbatim(work):
    refused(*cli(*ANIMATE, "-c", work / "lia.safetensors", "-s", work / "[draft]face.png", "-d", work / "clip.mp4",
                 "-o", work / "o.mp4"), "[draft]face.png")
    bad = work / "bad.yaml"
    bad.write_text("stage: [stage1\nmodel: {a: [b]\n")
    res, text = cli("train", "-c", bad)
    refused(res, text, "bad.yaml: not valid YAML")
    assert "(line 2, column" in text and len(res.output.strip().splitlines()) == 1, res.output


def test_set_errors_name_the_override_not_the_packaged_file():
    res, text = cli("train", "-c", "small-cpu", "--set", "optim.stepz=5")
    refused(res, text, "--set optim.stepz=5: unknown key(s) ['optim.stepz']")
    assert "small-cpu.yaml" not in text
    # an error of the file itself still names the file, once
    res, text = cli("train", "-c", "small-cpu", "--set", "optim.steps=abc")
    refused(res, text, "--set optim.steps=abc")


def test_yaml_file_errors_name_the_file_once(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({"stage": "stage1", "optim": {"stepz": 3}}))
    res, text = cli("train", "-c", f, "--set", "optim.steps=5")
    refused(res, text, "unknown key(s) ['optim.stepz']")
    assert text.count("cfg.yaml") == 1


def test_cuda_without_a_gpu_says_so(work, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for cmd in ([*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4"],
                ["eval", "--pred", work / "clip.mp4", "--ref", work / "clip.mp4", "--no-progress"],
                ["demo", "-o", work / "demo", "--no-progress"]):
        res, text = cli(*cmd, "--device", "cuda")
        refused(res, text, "CUDA is not available")
        assert "safetensors" not in text
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mapping(work / "run", device="cuda")))
    refused(*cli("train", "-c", cfg), "CUDA is not available")
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "--device",
                 "tpu9"), "not a device name")
    assert not (work / "demo").exists()


def test_failed_commands_leave_no_new_folders(work):
    (work / "bad.mp4").write_text("not a video")
    refused(*cli("probe", "-b", "lia", "-c", work / "text.pt", "--source", work / "face.png", "--driving",
                 work / "clip.mp4", "-o", work / "new" / "probe"), NOT_WEIGHTS)
    refused(*cli("prepare", work / "bad.mp4", "--out", work / "new" / "clips", "--no-progress"), "no usable video")
    refused(*cli("demo", "-b", "lia", "-c", work / "text.pt", "-o", work / "new" / "demo", "--no-progress",
                 "--device", "cpu"), NOT_WEIGHTS)
    assert not (work / "new").exists()
    # a folder that existed before stays, with what it held
    (work / "kept").mkdir()
    (work / "kept" / "note.txt").write_text("mine")
    refused(*cli("prepare", work / "bad.mp4", "--out", work / "kept", "--no-progress"), "no usable video")
    assert [p.name for p in (work / "kept").iterdir()] == ["note.txt"]


def test_train_warnings_are_one_line_each(work, monkeypatch):
    import plugtalk.train.losses as losses

    monkeypatch.setattr(losses, "_WARNED", False)
    cfg = tiny_mapping(work / "run", loss={"per": 1.0, "vgg_weights": None})
    (work / "empty").mkdir()
    cfg["data"]["folder"] = str(work / "empty")
    f = work / "train.yaml"
    f.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", "-c", str(f)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    warned = [line for line in lines if line.startswith("warning: no VGG19 weights given")]
    assert len(warned) == 1, res.output
    assert "UserWarning" not in res.output and "warnings.warn" not in res.output, res.output


def test_same_file_is_resolution_and_inode_aware(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    os.link(a, tmp_path / "h.txt")
    (tmp_path / "s.txt").symlink_to(a)
    assert same_file(a, tmp_path / "h.txt") and same_file(a, tmp_path / "s.txt")
    assert same_file(a, tmp_path / "d" / ".." / "a.txt")  # not existing on the way: resolved
    assert same_file(tmp_path / "new.txt", tmp_path / "." / "new.txt")
    assert not same_file(a, tmp_path / "b.txt")


# -- SIGTERM mid-write ------------------------------------------------------------------------------
def _long_video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with VideoWriter(path, fps=25) as w:
        for i in range(frames):
            w.write(np.roll(base, i, axis=1))
    return path


@pytest.mark.slow  # a subprocess: ~10-25 s, mostly importing torch and starting up
def test_sigterm_during_animate_leaves_no_partial_file(files, tmp_path):
    """``timeout`` / ``kill`` (SIGTERM) in the middle of writing: exit 143, no hidden ``.partial`` file, no
    output - as for Ctrl-C."""
    video = _long_video(tmp_path / "long.mp4", 400)
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    code = "import sys; from plugtalk.cli import main; sys.argv[0] = 'plugtalk'; main()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, "animate", "-s", str(files / "face.png"), "-d", str(video),
                             "-o", str(out), "--no-crop", "--driving-cropped", "-c", str(files / "lia.safetensors"),
                             "--device", "cpu", "--no-progress", "--batch-size", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not partials(out.parent) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partials(out.parent), "the run ended before writing began: " + proc.communicate()[0].decode()[-2000:]
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + signal.SIGTERM, proc.stdout.read().decode()[-2000:]
    assert not partials(out.parent) and not out.exists()


def test_python_dash_m_plugtalk_cli_is_the_plugtalk_command():
    """``python -m plugtalk.cli`` works where the console script is not on PATH, and errors the same way."""
    res = subprocess.run([sys.executable, "-m", "plugtalk.cli", "train", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--resume" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "plugtalk.cli", "no-such-command"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "no-such-command" in bad.stderr


# -- OS errors: one line naming the path, nothing partial left (issue 19.2) ---------------------------
@pytest.fixture
def mounts(tmp_path):
    """``full/``: a 1 MB tmpfs filled to the last byte; ``ro/``: a read-only tmpfs.  Needs root (else skipped);
    both are unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = []
    try:
        for name, opts in (("full", "size=1m"), ("ro", "size=1m,ro")):
            (tmp_path / name).mkdir()
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(tmp_path / name)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
            made.append(tmp_path / name)
        with open(tmp_path / "full" / "filler", "wb") as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        yield tmp_path / "full", tmp_path / "ro"
    finally:
        for m in reversed(made):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_disk_full_is_one_line_naming_the_output_and_leaves_nothing(work, mounts):
    full, _ = mounts
    src = ("-s", work / "face.png", "-d", work / "clip.mp4", "-c", work / "lia.safetensors")
    for args, out in [
        ([*ANIMATE, *src, "-o", full / "o.mp4"], full / "o.mp4"),
        (["eval", "--pred", work / "clip.mp4", "--ref", work / "clip.mp4", "-m", "psnr", "--frames", "2",
          "--no-progress", "--json", full / "e.json"], full / "e.json"),
        (["convert", "-b", "edtalk-audio", work / "Audio2Lip.pt", full / "a.safetensors"], full / "a.safetensors"),
    ]:
        res, text = cli(*args)
        refused(res, text, f"{str(out)!r}: no space left on device")
        assert ".partial" not in text, text
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", ["probe", "train", "prepare", "export", "demo", "animate", "convert", "ui"])
def test_read_only_file_system_is_one_line_naming_the_output(work, mounts, command):
    _, ro = mounts
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mapping(ro / "run")))
    args, out = {
        "probe": (["probe", "-b", "lia", "-c", work / "lia.safetensors", "--source", work / "face.png", "--driving",
                   work / "clip.mp4", "-o", ro / "probe"], ro / "probe"),
        "train": (["train", "-c", cfg, "--data", work], ro / "run"),
        "prepare": (["prepare", work / "clip.mp4", "--out", ro / "clips", "--no-progress"], ro / "clips"),
        "export": (["export", "-c", work / "lia.safetensors", "-o", ro / "exp", "--no-check"], ro / "exp"),
        "demo": (["demo", "-c", work / "lia.safetensors", "-o", ro / "demo", "--frames", "2", "--no-progress",
                  "--device", "cpu"], ro / "demo"),
        "animate": ([*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-c", work / "lia.safetensors",
                     "-o", ro / "o.mp4"], ro),
        "convert": (["convert", "-b", "edtalk-audio", work / "Audio2Lip.pt", ro / "a.safetensors"], ro),
        "ui": (["ui", "--workdir", ro / "work"], ro / "work"),
    }[command]
    res, text = cli(*args)
    refused(res, text, str(out))
    assert "read-only file system" in text or "is not writable" in text, text
    assert list(ro.iterdir()) == []


def test_names_over_the_file_system_limit_are_one_line(work):
    long = "x" * 300
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-c", work / "lia.safetensors",
                 "-o", work / f"{long}.mp4"), "file name too long")
    cfg = work / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mapping(work / long)))
    refused(*cli("train", "-c", cfg, "--data", work), "file name too long")
    assert not partials(work)


def test_os_error_message_names_the_path_in_words():
    import errno

    from plugtalk.io.oserrors import as_os_error, os_error_message

    assert os_error_message(OSError(errno.ENOSPC, "x", "out/o.mp4")) == (
        "'out/o.mp4': no space left on device (nothing was kept; free some space or write elsewhere)")
    assert os_error_message(OSError(errno.EROFS, "x", "a", None, "b")).startswith("'a' -> 'b': read-only file system")
    assert "file name too long" in os_error_message(OSError(errno.ENAMETOOLONG, "x", "y" * 400))
    assert len(os_error_message(OSError(errno.ENAMETOOLONG, "x", "y" * 400))) < 200

    class SafetensorError(Exception):
        pass

    e = as_os_error(SafetensorError("Error while serializing: I/O error: No space left (os error 28)"), "m.st")
    assert e.errno == errno.ENOSPC and e.filename == "m.st"
    assert as_os_error(ValueError("no os error here"), "m.st") is None


# -- usage errors of the command line: one line too (issue 19, weak messages) --------------------------
@pytest.mark.parametrize("args, expected", [
    (["animate", "-s", "a.png", "-o", "o.mp4", "--batch-size", "0"], "'--batch-size'"),
    (["eval", "--pred", "p.mp4", "--resize", "15"], "'--resize'"),
    (["bench", "-v", "foo"], "unknown variant(s) ['foo']"),
    (["ui", "--max-frames", "0"], "'--max-frames'"),
    (["animate", "-o", "o.mp4"], "Missing option '--source'"),
    (["animate", "--no-such-flag"], "--no-such-flag"),
    (["no-such-command"], "No such command 'no-such-command'"),
])
def test_usage_errors_are_one_error_line_not_a_panel(args, expected):
    res, text = cli(*args)
    refused(res, text, expected)
    assert "╭" not in res.output and "Usage:" not in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


# -- silent wrong results and unbounded values (issue 19.3-19.5) -------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--batch", "0"], "--batch 0: batch sizes must be from 1"),
    (["--size", "7"], "--size 7: the image size must be a power of two"),
    (["--size", "65"], "--size 65"),
    (["--size", "100000"], "--size 100000"),
    (["--threads", "-1"], "--threads must be a whole number >= 0"),
    (["--no-model", "--no-e2e"], "leave nothing to time"),
])
def test_bench_values_are_bounded(args, expected):
    refused(*cli("bench", "-b", "lia", "-v", "base", *args), expected)


def test_thread_counts_are_capped_at_the_cores_with_a_warning(monkeypatch):
    import plugtalk.checks as checks
    from plugtalk.errors import InputError

    monkeypatch.setattr(checks, "available_cpus", lambda: 2)
    with pytest.warns(UserWarning, match="--threads 1000 is more than the 2 CPU core"):
        assert checks.bounded_threads(1000, "--threads") == 2
    assert checks.bounded_threads(2) == 2 and checks.bounded_threads(0) == 0 and checks.bounded_threads(None) is None
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="whole number"):
            checks.bounded_threads(bad)


def test_animate_fps_is_bounded(work):
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-c", work / "lia.safetensors",
                 "-o", work / "o.mp4", "--fps", "100000"), "up to 240 frames/s")
    assert not (work / "o.mp4").exists()
    from plugtalk.errors import InputError

    with pytest.raises(InputError, match="up to 240"):
        VideoWriter(work / "o.mp4", fps=100000)


def test_eval_never_writes_into_a_folder_it_scores(work):
    frames = work / "frames"
    frames.mkdir()
    for i in range(2):
        Image.fromarray(demo_source()[:64, :64]).save(frames / f"{i:03d}.png")
    for out in (frames / "x.json", frames / "sub" / "x.json"):
        refused(*cli("eval", "--pred", frames, "--source", work / "face.png", "--driving", work / "clip.mp4",
                     "-m", "csim", "--json", out, "--no-progress"), "lies inside the --pred folder")
    assert sorted(p.name for p in frames.iterdir()) == ["000.png", "001.png"]


def test_eval_that_computes_nothing_is_refused_and_nan_is_warned(work):
    refused(*cli("eval", "--pred", work / "clip.mp4", "-m", "psnr,ssim", "--frames", "2", "--no-progress"),
            "no metric could be computed (psnr: needs reference frames")
    gray = work / "gray"
    gray.mkdir()
    for i in range(2):
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(gray / f"{i}.png")
    res, text = cli("eval", "--pred", gray, "--source", work / "face.png", "-m", "csim", "--no-progress")
    assert res.exit_code == 0, text
    assert "warning: csim is NaN: no frame could be scored" in text, text


def test_eval_driving_adds_the_identity_shift_to_explicit_metrics():
    from plugtalk.evaluate import EvalSettings, build_suite

    suite, _ = build_suite(EvalSettings(metrics=["psnr"], identity_shift=True))
    assert list(suite.metrics) == ["psnr", "identity_shift"]
    suite, _ = build_suite(EvalSettings(metrics=["psnr"]))
    assert list(suite.metrics) == ["psnr"]


def test_train_resume_without_a_checkpoint_warns(tmp_path):
    from plugtalk.train import Trainer
    from plugtalk.train.bench import SyntheticPairs
    from train_support import tiny_config

    with pytest.warns(UserWarning, match="--resume: no checkpoint in .*starting from step 0"):
        t = Trainer(tiny_config(tmp_path / "run"), SyntheticPairs(8, 32), resume=True)
    t.dist.close()


@pytest.mark.parametrize("args, expected", [
    (["--port", "-1"], "'--port'"),
    (["--port", "70000"], "'--port'"),
    (["--host", "999.1.1.1"], "--host '999.1.1.1' is not an address"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_ui_settings_are_checked_before_serving(args, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    refused(*cli("ui", *args), expected)


def test_ui_workdir_file_and_temporary_folders(work, monkeypatch):
    import tempfile

    pytest.importorskip("gradio")
    import plugtalk.ui as ui

    refused(*cli("ui", "--workdir", work / "face.png"), "--workdir")
    res, text = cli("ui", "--workdir", work / "face.png")
    assert "is a file, not a folder" in text and "Errno" not in text
    seen = []

    def fail(host, port, cfg, **kw):
        seen.append(cfg.workdir)
        assert cfg.workdir.is_dir()
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(ui, "launch", fail)
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    refused(*cli("ui"), "address already in use")
    assert seen and seen[0].name.startswith("plugtalk-ui-") and not seen[0].exists()


def test_demo_checks_every_model_before_writing(work):
    gohd = work / "gohd.safetensors"
    B.create("gohd", size=32, channel_base=512, channel_max=32, style_dim=64).save_pretrained(gohd)
    for args, expected in [(["--compare-with", work / "text.pt"], NOT_WEIGHTS),
                           (["--compare-with", gohd], "plugtalk animate --coefficients"),
                           (["-c", gohd], "plugtalk animate --coefficients")]:
        out = work / "d5"
        refused(*cli("demo", "-c", work / "lia.safetensors", *args, "-o", out, "--frames", "2", "--no-progress",
                     "--device", "cpu"), expected)
        assert not out.exists()


def _with_metadata(src: Path, dst: Path, **changes) -> Path:
    """A copy of plugtalk file ``src`` whose metadata has ``changes`` (``config_update`` merges into the config)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["plugtalk"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"].update(changes.pop("config_update", {}))
    meta.update(changes)
    save_file(tensors, str(dst), metadata={"plugtalk": json.dumps(meta)})
    return dst


def test_a_config_is_checked_against_the_tensor_shapes_before_building(work):
    """Issue 19.4: an 870 KB file claiming channel_base=1e8, size=8192 allocated 22 GB and was OOM-killed."""
    huge = _with_metadata(work / "lia.safetensors", work / "huge.safetensors",
                          config_update={"channel_base": 100_000_000, "size": 8192})
    with pytest.raises(CheckpointError, match="weights do not fit the LIA.* its config describes"):
        B.load(huge)
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "-c", huge),
            "weights do not fit")
    # issue 19.3: metadata naming one backbone and holding another's config
    other = _with_metadata(work / "lia.safetensors", work / "other.safetensors", name="edtalk")
    with pytest.raises(CheckpointError, match="its config does not describe a EDTalk"):
        B.load(other)
    assert not (work / "o.mp4").exists()


@pytest.mark.parametrize("override, expected", [
    ("optim.lr=.nan", "optim.lr must be a finite number (got nan)"),
    ("loss.rec=.inf", "loss.rec must be a finite number (got inf)"),
    ("optim.lr=!!python/object/apply:os.system [echo]", "not a plain YAML value (could not determine a constructor"),
])
def test_set_values_are_checked(override, expected):
    refused(*cli("train", "-c", "small-cpu", "--set", override, "--show-config"), expected)


def test_prepare_size_is_bounded(work):
    refused(*cli("prepare", work / "clip.mp4", "--out", work / "p", "--size", "100000", "--no-progress"),
            "size must be from 16 to 2048 px")
    assert not (work / "p").exists()


def test_float64_inputs_get_a_dtype_message_like_uint8():
    from conftest import tiny_backbone
    from train_support import TINY_EDI as SMALL_EDI, TINY_EMI as SMALL_EMI
    from plugtalk import retrofit
    from plugtalk.errors import InputError

    model = retrofit(tiny_backbone("lia"), emi=SMALL_EMI, edi=SMALL_EDI, init="random").eval()
    size = model.adapter.image_size
    x = torch.zeros(1, 3, size, size, dtype=torch.float64)
    with pytest.raises(InputError, match="source is float64 but the weights are float32: convert"):
        model(x, x)
    with torch.no_grad():
        enc = model.adapter.encode(x.float())
    with pytest.raises(InputError, match="EMI: pyramid level 0 is float64 but the weights are float32"):
        model.emi([f.double() for f in enc.pyramid], enc.latent.double())
    model.double()(x, x)  # a float64 model takes float64 input


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pickled code ran",))


def test_weak_messages_about_weights_files(work):
    # a folder is a folder, not "does not exist"; an ONNX export folder is sent to --runtime onnx
    refused(*cli(*ANIMATE, "-s", work / "face.png", "-d", work / "clip.mp4", "-o", work / "o.mp4", "-c", work),
            "is a folder, not a weights file")
    with pytest.raises(CheckpointError, match="is a folder, not a weights file"):
        B.load(work)
    onnx = work / "exported"
    onnx.mkdir()
    (onnx / "plugtalk-onnx.json").write_text("{}")
    refused(*cli("export", "-c", onnx, "-o", work / "again"), "is an ONNX export folder")
    # a valid official checkpoint given to load(): load_official
    with pytest.raises(CheckpointError, match=r"official torch checkpoint.*load_official"):
        B.load(work / "Audio2Lip.pt")
    # a code-carrying pickle: said plainly, without torch's advice to load it anyway or colour codes
    evil = work / "evil.pt"
    torch.save({"audio2lip": {"x": torch.zeros(1)}, "payload": _Payload()}, evil)
    res, text = cli("convert", "-b", "edtalk-audio", evil, work / "o.safetensors")
    refused(res, text, "loading it would run code stored in the file")
    assert "it needs" in text and "weights_only=False" not in text and "\x1b" not in res.output, text
    assert not (work / "o.safetensors").exists() and not (work / "again").exists()


def test_weak_messages_about_arrays_images_and_audio(work, monkeypatch):
    import soundfile as sf

    from plugtalk.errors import InputError
    from plugtalk.io.arrays import load_npy
    from plugtalk.io.audio import read_audio
    from plugtalk.io.images import load_image

    (work / "text.npy").write_text("0.1, 0.2\n")
    with pytest.raises(InputError, match="'text.npy' is a text file, not a NumPy .npy array"):
        load_npy(work / "text.npy", "expression weights")
    np.save(work / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="holds Python objects"):
        load_npy(work / "objects.npy", "expression weights")
    np.save(work / "ok.npy", np.arange(3.0))
    assert load_npy(work / "ok.npy", "w").tolist() == [0.0, 1.0, 2.0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 = 4096 px: over twice the limit
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(work / "big.png")
    with pytest.raises(InputError, match="'big.png' is too large to read: over 1,000 pixels"):
        load_image(work / "big.png")
    sf.write(str(work / "slow.wav"), np.zeros(80, np.float32), 8, subtype="PCM_16")
    with pytest.raises(InputError, match="sample rate of 8 Hz; plugtalk reads 1000 Hz"):
        read_audio(work / "slow.wav")


def test_probe_reads_the_backbone_from_the_file_and_export_names_gohd(work):
    # probe -c FILE without -b reads the backbone from the file, as animate does; --mode is DPE's alone
    res, text = cli("probe", "-c", work / "lia.safetensors", "--mode", "pose", "--source", work / "face.png",
                    "--driving", work / "clip.mp4", "-o", work / "pr")
    refused(res, text, "--mode is DPE's option")
    assert "backbone: lia (from" in text and not (work / "pr").exists()
    refused(*cli("probe", "-c", work / "Audio2Lip.pt", "--source", work / "face.png", "--driving",
                 work / "clip.mp4", "-o", work / "pr"), "is an official checkpoint: give --backbone")
    gohd = work / "gohd.safetensors"
    B.create("gohd", size=32, channel_base=512, channel_max=32, style_dim=64).save_pretrained(gohd)
    refused(*cli("export", "-c", gohd, "-o", work / "gx", "--no-check"), "cannot be exported to ONNX")
    assert not (work / "gx").exists()
