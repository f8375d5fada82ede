"""Writing a probe result: ``report.json``, ``grid.png`` (rows = variants, columns = pairs) and
``identity_shift.png`` (identity shift per tap), every file written atomically; and the ranked
table for the terminal (rich)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path, save_figure
from ..io.jsonfile import write_json as write_strict_json
from .results import ProbeResult

__all__ = ["REPORT_FILES", "ranking_table", "write_chart", "write_grid", "write_json", "write_report"]

REPORT_FILES = ("report.json", "grid.png", "identity_shift.png")


def _fmt(stat: dict[str, Any] | None, signed: bool = False, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
        return "-"
    m = f"{stat['mean']:+.{digits}f}" if signed else f"{stat['mean']:.{digits}f}"
    s = stat.get("std")
    if stat.get("n", 0) > 1 and s is not None and not math.isnan(s):
        m += f" ±{s:.{digits}f}"
    return m


def ranking_table(result: ProbeResult, limit: int | None = None):
    """A rich ``Table``: the unpatched baseline, then the variants in rank order.

    Columns are means over the ranking's pair kind (cross-reenactment when there are such pairs);
    identity transfer also shows the spread (sample std).  ``report.json`` has every value.
    """
    from rich import box
    from rich.table import Table

    kinds = set(result.kinds)
    main = "cross" if "cross" in kinds else "self"
    other = "self" if main == "cross" and "self" in kinds else None
    n_main = sum(k == main for k in result.kinds)
    t = Table(title=f"identity transfer ranking; columns: {main}-reenactment means over {n_main} pair(s)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    t.add_column("#", justify="right")
    t.add_column("tap", no_wrap=True)
    t.add_column("dir", no_wrap=True)
    for head in ("ID transfer", "ID shift", "CSIM src", "LMD", "NIQE", "CPBD", "pixel Δ"):
        t.add_column(head, justify="right")
    if other:
        t.add_column(f"ID tr. {other}", justify="right")
    b = result.baseline.summary.get(main, {})
    m = lambda st, signed=False, digits=3: _fmt(st and {**st, "n": 1}, signed, digits)
    t.add_row("", "unpatched", "", "", m(b.get("identity_shift"), True), m(b.get("csim_source")),
              m(b.get("lmd"), digits=2), m(b.get("niqe"), digits=2), m(b.get("cpbd")), "",
              *([""] if other else []), style="bold")
    for r in (result.variants if limit is None else result.variants[:limit]):
        s = r.scores.summary.get(main, {})
        row = [str(r.rank), r.variant.name + ("*" if r.variant.group else ""), r.variant.key.split(":")[-1],
               _fmt(s.get("identity_transfer"), True), m(s.get("identity_shift"), True), m(s.get("csim_source")),
               m(s.get("lmd"), digits=2), m(s.get("niqe_delta"), True, 2), m(s.get("cpbd_delta"), True),
               m(r.scores.summary.get("all", {}).get("pixel_change"))]
        if other:
            row.append(m(r.scores.summary.get(other, {}).get("identity_transfer"), True))
        t.add_row(*row)
    for r in result.inert:
        t.add_row("-", r.variant.name + ("*" if r.variant.group else ""), r.variant.key.split(":")[-1],
                  "inert", *[""] * (6 + bool(other)), style="dim")
    t.caption = ("* group.  NIQE/CPBD: absolute for 'unpatched', change against it for the taps.  "
                 "ID transfer: change of identity shift toward the donor branch."
                 + ("  inert: cannot change this model's output (never read), not ranked." if result.inert else ""))
    t.caption_justify = "left"
    return t


def write_json(result: ProbeResult, path: str | os.PathLike) -> Path:
    """``report.json`` (strict JSON: NaN written as null)."""
    return write_strict_json(path, result.to_json(), indent=1)


def _thumb(img: np.ndarray, size: int):
    from PIL import Image

    return Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS)


def write_grid(result: ProbeResult, path: str | os.PathLike, thumb: int = 128) -> Path:
    """``grid.png``: one column per pair; rows: source, driving (GoHD: donor), unpatched output, then one row of
    patched outputs per variant in rank order (label: rank, tap, direction, identity transfer)."""
    from PIL import Image, ImageDraw, ImageFont

    if result.images is None:
        raise InputError("write_grid: the result holds no images (run the probe with keep_images=True)")
    im = result.images
    n = im.sources.shape[0]
    label_w, head_h = 230, 22
    second = "donor" if "pairing" in (result.model or {}) else "driving"  # GoHD: a donor portrait, no driver
    rows: list[tuple[str, str, np.ndarray]] = [("source", "", im.sources), (second, "", im.drivings),
                                               ("unpatched", "", im.baseline)]
    main = "cross" if "cross" in result.kinds else "self"
    for r in result.variants:
        s = r.scores.summary.get(main, {}).get("identity_transfer")
        px = r.scores.summary.get("all", {}).get("pixel_change")
        sub = f"ID transfer {_fmt(s, True)}" if s and s.get("n") else f"pixel change {_fmt(px)}"
        rows.append((f"#{r.rank} {r.variant.name} {r.variant.key.split(':')[-1]}", sub, im.outputs[r.variant.key]))
    canvas = Image.new("RGB", (label_w + n * thumb, head_h + len(rows) * thumb), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for j, p in enumerate(result.pairs):
        draw.text((label_w + j * thumb + 4, 4), f"{j + 1}: {p['kind']}", fill="black", font=font)
    for i, (label, sub, imgs) in enumerate(rows):
        y = head_h + i * thumb
        draw.text((6, y + thumb // 2 - 14), label, fill="black", font=font)
        if sub:
            draw.text((6, y + thumb // 2 + 2), sub, fill=(90, 90, 90), font=font)
        for j in range(n):
            canvas.paste(_thumb(imgs[j], thumb), (label_w + j * thumb, y))
        draw.line([(0, y), (canvas.width, y)], fill=(200, 200, 200))
    p = Path(path)
    with atomic_path(p) as tmp:
        canvas.save(tmp, format="PNG")
    return p


def write_chart(result: ProbeResult, path: str | os.PathLike) -> Path:
    """``identity_shift.png``: per variant (in rank order) the identity shift
    ``CSIM(out, driving) - CSIM(out, source)`` of the patched outputs (mean ± sample std over pairs, cross-
    and self-reenactment), with the unpatched outputs' identity shift as dashed lines; and the pixel
    change against the unpatched output."""
    from .._optional import require
    require("matplotlib", "eval", "the probe's identity-shift plot")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    vs = result.variants
    labels = [r.variant.key for r in vs]
    y = np.arange(len(vs))
    has_id = any("identity_shift" in r.scores.per_pair for r in vs)
    fig, axes = plt.subplots(1, 2 if has_id else 1, figsize=(11 if has_id else 6, 1.4 + 0.32 * len(vs)),
                             squeeze=False, sharey=True)
    title = f"probe: {result.model.get('backbone') or result.model.get('adapter', 'animator')}"
    if result.model.get("random_weights"):
        title += " (RANDOM WEIGHTS)"
    if has_id:
        ax = axes[0, 0]
        kinds = [k for k in ("cross", "self") if k in result.kinds]
        h = 0.8 / max(1, len(kinds))
        colours = {"cross": "tab:blue", "self": "tab:orange"}
        for j, kind in enumerate(kinds):
            stats = [r.scores.summary.get(kind, {}).get("identity_shift", {}) for r in vs]
            m = np.array([s.get("mean", np.nan) for s in stats], float)
            e = np.array([s.get("std", np.nan) if s.get("n", 0) > 1 else 0.0 for s in stats], float)
            ax.barh(y + (j - (len(kinds) - 1) / 2) * h, np.nan_to_num(m), h, xerr=np.nan_to_num(e),
                    label=f"{kind}-reenactment", capsize=2, color=colours[kind])
            base = result.baseline.summary.get(kind, {}).get("identity_shift", {}).get("mean", np.nan)
            if np.isfinite(base):
                ax.axvline(base, color=colours[kind], ls="--", lw=1, label=f"unpatched ({kind})")
        ax.axvline(0, color="black", lw=0.8)
        if not any(r.scores.summary.get(k, {}).get("identity_shift", {}).get("n", 0) for r in vs for k in kinds):
            ax.text(0.5, 0.5, "no identity scores:\nno face found in the outputs", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
        ax.set_xlabel("identity shift = CSIM(out, driving) - CSIM(out, source)")
        ax.legend(loc="lower right", fontsize=7)
        ax.set_title(title, fontsize=10, loc="left")
    ax = axes[0, -1]
    px = [r.scores.summary.get("all", {}).get("pixel_change", {}) for r in vs]
    ax.barh(y, np.nan_to_num([s.get("mean", np.nan) for s in px]), 0.6, color="gray",
            xerr=np.nan_to_num([s.get("std", np.nan) if s.get("n", 0) > 1 else 0.0 for s in px]), capsize=2)
    ax.set_xlabel("pixel change vs unpatched (mean |Δ|, [-1, 1] units)")
    if not has_id:
        ax.set_title(title, fontsize=10, loc="left")
    axes[0, 0].set_yticks(y, labels, fontsize=8)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_report(result: ProbeResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write :data:`REPORT_FILES` into ``out_dir`` (created if missing); returns ``{file: path}``."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise InputError(f"output {str(d)!r} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    return {"report.json": write_json(result, d / "report.json"), "grid.png": write_grid(result, d / "grid.png"),
            "identity_shift.png": write_chart(result, d / "identity_shift.png")}
