"""``plugtalk probe``: find the identity-carrying feature of an animator by activation patching."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from . import app
from ._common import console, err_console, parse_device, print_table, say, tell, user_errors

_DIRECTIONS = {"both": ["to_source", "to_driving"], "to-source": ["to_source"], "to-driving": ["to_driving"]}


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out


def _default_backbone() -> str | None:
    """The backbone of the embedded default model, if one is installed."""
    from ..weights.plugtalk_format import read_metadata
    from ..default_model import default_model_path

    path = default_model_path()
    if path is None:
        return None
    meta = read_metadata(path)
    return meta.get("backbone") or meta.get("name")


def _backbone_of_file(checkpoint) -> str:
    """The backbone a plugtalk file names in its metadata (as ``animate -c`` reads it).

    Raises:
        InputError: an official checkpoint (its backbone cannot be told from the file: give ``--backbone``).
        CheckpointError: not a weights file.
    """
    from ..weights.plugtalk_format import read_metadata
    from ..errors import InputError
    from ..weights.detect import NOT_WEIGHTS, require_weights_file, sniff_format

    fmt = sniff_format(require_weights_file(checkpoint))
    if fmt == "unknown":
        raise InputError(f"{str(checkpoint)!r} is {NOT_WEIGHTS}")
    if fmt != "safetensors":
        raise InputError(f"{str(checkpoint)!r} is an official checkpoint: give --backbone (lia, edtalk, dpe or gohd)")
    meta = read_metadata(checkpoint)
    name = meta.get("backbone") if meta.get("kind") == "retrofit" else meta.get("name")
    if not name:
        raise InputError(f"{str(checkpoint)!r} is not a plugtalk backbone or retrofit file: give --backbone")
    return name


def _spec_from_options(backbone, checkpoint, mode, pairs_dirs, source, driving, taps, groups, directions,
                       num_pairs, metrics, output_faces, seed, batch_size, device, score_size=None,
                       coefficients=None):
    from ..errors import InputError
    from ..probe import ProbeSpec, pairs_from_files, pairs_from_folder, usable_pairs_from_folder
    from ..shared_data import find_shared

    if backbone is None and checkpoint is not None:
        backbone = _backbone_of_file(checkpoint)
        say(f"backbone: {backbone} (from {checkpoint})")
    if mode is not None and backbone != "dpe":
        raise InputError(f"--mode is DPE's option (expression | pose); {backbone} has no motion modes: drop --mode")
    if backbone is None:
        backbone = _default_backbone()
        if backbone is None:
            raise InputError("give --backbone (lia, edtalk, dpe or gohd), or --spec report.json to repeat a run")
        say(f"backbone: {backbone} (the embedded default model)")
    if (source is None) != (driving is None):
        raise InputError("--source and --driving go together")
    if source is not None and pairs_dirs:
        raise InputError("give either --pairs DIR or --source IMG --driving VIDEO, not both")
    num_pairs = 4 if num_pairs is None else num_pairs
    notes: list[str] = []
    if source is not None:
        pairs = pairs_from_files(source, driving, num_pairs)
    else:
        if not pairs_dirs:
            root = find_shared()
            faces = root / "data" / "faces" if root is not None else None
            if faces is None or not faces.is_dir():
                raise InputError("no pairs: give --pairs DIR (videos named <identity>__<clip>.mp4) or "
                                 "--source IMG --driving VIDEO")
            pairs_dirs = [faces]
            say(f"pairs from the shared data: {faces}")
        metric_names = _split([metrics]) or []
        if "csim" in metric_names or "lmd" in metric_names:
            pairs, notes = usable_pairs_from_folder(pairs_dirs, num_pairs, seed)
        else:
            pairs, notes = pairs_from_folder(pairs_dirs, num_pairs, seed)
    if directions is not None and directions not in _DIRECTIONS:
        raise InputError(f"--directions must be one of {list(_DIRECTIONS)}, got {directions!r}")
    groups = _split(groups)
    if groups is not None and groups in (["none"], []):
        groups = []
    spec = ProbeSpec(backbone=backbone, pairs=pairs, checkpoint=str(checkpoint) if checkpoint else None,
                     backbone_options={"mode": mode} if mode else {}, taps=_split(taps), groups=groups,
                     directions=_DIRECTIONS[directions] if directions else None, metrics=_split([metrics]), output_faces=output_faces,
                     score_size=score_size, seed=seed, batch_size=batch_size, device=device,
                     coefficients=str(coefficients) if coefficients else None)
    return spec, notes


def _print_taps(backbone: str, checkpoint, mode, seed: int, device: str) -> None:
    from rich.table import Table

    from ..probe import describe_taps, load_animator

    model, _info = load_animator(backbone, checkpoint, options={"mode": mode} if mode else {}, seed=seed,
                                device=device)
    d = describe_taps(model)
    t = Table(title=f"{backbone} taps (identity level: {d['identity_level']})", title_justify="left")
    for col in ("tap", "source site", "driving site(s)", "shape"):
        t.add_column(col)
    for ti in d["taps"].values():
        t.add_row(ti.name, ti.source, "\n".join(ti.driving), "x".join(map(str, ti.shape)))
    console.print(t)
    say("groups: " + "; ".join(f"{g} = {', '.join(m)}" for g, m in d["groups"].items()))
    say("not swappable (no counterpart in the other branch): " + ", ".join(d["unpaired"]))


@app.command()
def probe(
    backbone: str | None = typer.Option(
        None, "--backbone", "-b", help="lia | edtalk | dpe | gohd (default: the embedded default model's)"),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c",
        help="official .pt, plugtalk backbone or retrofit .safetensors (default: the installed default model, "
             "else RANDOM weights with a warning)"),
    mode: str | None = typer.Option(None, "--mode", help="DPE only: expression | pose"),
    pairs: list[Path] | None = typer.Option(
        None, "--pairs", help="folder of <identity>__<clip> videos (repeatable; default: the shared data's faces/)"),
    source: Path | None = typer.Option(None, "--source", help="source image (or video: frame 0)"),
    driving: Path | None = typer.Option(
        None, "--driving", help="driving video (or image); gohd: the donor portrait(s) whose taps go into the source's run"),
    coefficients: Path | None = typer.Option(
        None, "--coefficients", help="gohd only: coefficient file whose middle window drives both runs of every pair "
                                     "(default: a neutral window)"),
    taps: list[str] | None = typer.Option(
        None, "--taps", "-t", help="taps to swap, comma-separated or repeated (default all; --list-taps shows them)"),
    groups: list[str] | None = typer.Option(
        None, "--groups", "-g", help="pyramid, identity, pyramid-but-identity (default all; 'none' for none)"),
    directions: str | None = typer.Option(
        None, "--directions", help="both | to-source | to-driving (default: both; gohd: to-source, the only one)"),
    num_pairs: int | None = typer.Option(
        None, "--num-pairs", "-n", help="pairs to probe (default 4: half self-, half cross-reenactment; "
                                        "with --driving: driving frames)"),
    metrics: str = typer.Option("csim,lmd,niqe,cpbd", "--metrics", help="subset of csim,lmd,niqe,cpbd"),
    output_faces: str = typer.Option(
        "detect", "--output-faces", help="detect: find the face in each output; driving: use the driving frame's box"),
    score_size: int | None = typer.Option(
        None, "--score-size", min=16, help="score images resized to N x N px (default: the model's size; 256 for "
                                           "models under NIQE's 96 px)"),
    seed: int = typer.Option(0, "--seed", help="pair sampling and random weights"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="images per forward pass (default: 1 on the CPU, 8 on GPUs)"),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, ...)"),
    spec: Path | None = typer.Option(None, "--spec", help="repeat a run from its report.json (or a spec JSON)"),
    list_taps: bool = typer.Option(False, "--list-taps", help="list the backbone's taps and groups, then exit"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output folder: report.json, grid.png, "
                                                                 "identity_shift.png"),
) -> None:
    """Swap each tap (feature-pyramid level, latent, motion code) between the source and the driving branch,
    re-render, and rank the taps by how much identity they carry (FixTalk, Sec. 3.2).  GoHD has no driving
    image: its taps (and the coefficient embedding) go from a donor portrait's run into the source's run,
    both driven by one coefficient window."""
    from ..errors import InputError
    from ..io.paths import check_outputs, removing_new_folders
    from ..probe import ProbeWarning, load_spec, ranking_table, run_probe, write_report

    with user_errors():
        parse_device(device)
        if list_taps:
            if backbone is None:
                raise InputError("--list-taps needs --backbone")
            _print_taps(backbone, checkpoint, mode, seed, device)
            return
        if out is None:
            raise InputError("give --out DIR (report.json, grid.png and identity_shift.png go there)")
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {str(out)!r} exists and is not a folder")
        if spec is not None:
            given = [name for name, v in (("--backbone", backbone), ("--checkpoint", checkpoint), ("--mode", mode),
                                          ("--pairs", pairs), ("--source", source), ("--driving", driving),
                                          ("--taps", taps), ("--groups", groups), ("--num-pairs", num_pairs),
                                          ("--score-size", score_size), ("--coefficients", coefficients))
                     if v]
            if given:
                raise InputError(f"--spec defines the whole run; drop {', '.join(given)}")
            run_spec = load_spec(spec)
            notes: list[str] = []
        else:
            run_spec, notes = _spec_from_options(backbone, checkpoint, mode, pairs, source, driving, taps, groups,
                                                 directions, num_pairs, metrics, output_faces, seed, batch_size,
                                                 device, score_size, coefficients)
        check_outputs({"--out": [out / "report.json", out / "grid.png", out / "identity_shift.png"]},
                      {"--checkpoint": checkpoint, "--spec": spec, "--source": source, "--driving": driving,
                       "--coefficients": coefficients})
        for n in notes:
            tell("note", n)
        with removing_new_folders(out):
            out.mkdir(parents=True, exist_ok=True)
            result = _run(run_spec, ProbeWarning, run_probe)
            print_table(ranking_table(result))
            files = write_report(result, out)
        tm = result.timing
        say(f"{tm['pairs']} pairs x {tm['distinct_variants']} variants: {tm['images_rendered']} images "
            f"rendered in {tm['model_s']:.1f} s ({tm['seconds_per_image']:.2f} s/image), scored in "
            f"{tm['scoring_s']:.1f} s; total {tm['total_s']:.1f} s")
        if result.inert:
            say(f"{len(result.inert)} inert swap(s) not rendered (they cannot change this model's output): "
                + ", ".join(r.variant.key for r in result.inert))
        say("wrote " + ", ".join(str(p) for p in files.values()))


def _run(run_spec, warning_class, run_probe):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    names = {"faces": "finding faces", "render": "rendering", "score": "scoring"}
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, advance: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(names.get(phase, phase), total=total)
            bar.update(tasks[phase], advance=advance, total=total)

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, warning_class):
                tell("warning", message, bar.console)
            else:
                previous(message, category, filename, lineno, file, line)

        with warnings.catch_warnings():
            warnings.simplefilter("always", warning_class)
            previous = warnings.showwarning
            warnings.showwarning = show
            return run_probe(run_spec, progress=progress)
