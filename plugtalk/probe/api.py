"""The probe's Python API.

* :func:`probe_module`: any ``nn.Module`` animator, taps given as :class:`~plugtalk.probe.taps.TapSpec` s
  (module path + call index + output index, read and written through forward hooks);
* :func:`probe_animator`: a plugtalk animator (LIA / EDTalk / DPE backbone, an adapter, or a
  :class:`~plugtalk.retrofitting.Retrofitted` model) by tap name (``latent``, ``pyramid.i``,
  ``motion_code``) with FixTalk's groups;
* :func:`probe_controlled`: an animator without a driving image (GoHD), taps swapped between a source's
  and a donor portrait's runs under one coefficient window (:mod:`plugtalk.probe.controlled`);
* :func:`run_probe`: a :class:`~plugtalk.probe.spec.ProbeSpec` (files, checkpoint, ...), as the CLI runs it.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InputError, NoFaceError
from ..io.images import to_tensor, to_uint8
from .patching import ForwardFn, count_images, default_forward, run_patching, site_keys
from .reach import inert_variants, unreachable_sites
from .results import ProbeImages, ProbeResult, VariantResult, baseline_scores, derive_scores, rank_variants
from .scoring import FaceScorer, Scorer
from .spec import NIQE_MIN_SIZE, SMALL_MODEL_SCORE_SIZE, ProbeSpec, check_probe_backbone
from .taps import (
    DIRECTIONS,
    TapInfo,
    TapSpec,
    Variant,
    animator_groups,
    animator_taps,
    build_variants,
    select_taps,
    unpaired_taps,
)

__all__ = [
    "ProbeWarning",
    "Progress",
    "as_animator",
    "describe_taps",
    "encoder_path",
    "load_animator",
    "probe_animator",
    "probe_controlled",
    "probe_module",
    "run_probe",
]

#: ``progress(phase, advance, total)``: phases ``"faces"``, ``"render"``, ``"score"``.
Progress = Callable[[str, int, int], None]


class ProbeWarning(UserWarning):
    """A pair was skipped, or the probe runs on random weights."""


def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    warnings.warn(text, ProbeWarning, stacklevel=3)


def _pixels(x: Tensor, what: str, messages: list[str]) -> np.ndarray:
    """Rendered ``(N, 3, H, W)`` -> uint8 for the scorer; non-finite pixels (a patch the model cannot
    digest) become 0 with a warning instead of stopping the probe."""
    if not torch.isfinite(x).all():
        _warn(messages, f"{what}: the animator produced NaN/inf pixels; they are scored as 0")
        x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return to_uint8(x)


def _check_images(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name}: expected a float tensor (B, 3, H, W) in [-1, 1], got {what}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or inf")
    return x


def _notify(progress: Progress | None, phase: str, advance: int, total: int) -> None:
    if progress is not None:
        progress(phase, advance, total)


# -- generic -------------------------------------------------------------------------------------------------

def probe_module(model: nn.Module, source: Tensor, driving: Tensor, taps: Sequence[TapSpec] | Mapping[str, TapSpec],
                 *, forward: ForwardFn | None = None, select: Sequence[str] | None = None,
                 groups: Mapping[str, Sequence[str]] | None = None, directions: Sequence[str] = DIRECTIONS,
                 kinds: Sequence[str] | None = None, scorer: Scorer | None = None, reuse: Sequence[str] = (),
                 batch_size: int | None = None, progress: Progress | None = None,
                 pairs: Sequence[Mapping[str, Any]] | None = None, keep_images: bool = True) -> ProbeResult:
    """Activation patching between the source and driving branch of any animator, scored.

    >>> taps = [TapSpec("block2", HookSite("enc.block2", call=0), HookSite("enc.block2", call=1))]
    >>> result = probe_module(model, source, driving, taps, forward=lambda m, s, d: m(s, d), reuse=["enc"])

    Args:
        model: the animator.
        source, driving: ``(B, 3, H, W)`` in [-1, 1]; row ``i`` of each forms pair ``i``.
        taps: the swappable values (:class:`TapSpec`).
        forward: ``forward(model, source, driving) -> (N, 3, H, W)`` in [-1, 1] (default ``model(s, d)``).
        select: tap names swapped one by one (default all); groups may use any tap.
        groups: group name -> tap names swapped together.
        directions: subset of ``("to_source", "to_driving")``.
        kinds: ``"self"`` / ``"cross"`` per pair (default all ``"cross"``).
        scorer: a :class:`~plugtalk.probe.scoring.Scorer` (default :class:`FaceScorer`: CSIM, LMD, NIQE, CPBD).
        reuse: module paths run once and replayed in the patched passes (e.g. the encoder); see
            :func:`~plugtalk.probe.patching.run_patching`.
        batch_size: images per forward pass (default: 1 on the CPU, 8 on accelerators).
        progress: ``progress(phase, advance, total)`` callback.
        pairs: per pair a JSON-ready description (paths, frames) kept in the result.
        keep_images: keep the images in ``result.images`` (for the grid).

    Returns:
        A :class:`ProbeResult`; variants in rank order (identity transfer on cross-reenactment), and in
        ``result.inert`` those that cannot change this model's output (:mod:`plugtalk.probe.reach`): they
        are not rendered, scored or ranked.

    Raises:
        InputError: bad tensors, unknown taps/groups/directions, taps that cannot be patched.
        NoFaceError: no pair has a usable face (each skipped pair also gives a :class:`ProbeWarning`).
    """
    t_start = time.perf_counter()
    source, driving, kinds, tap_map, pairs = _checked_inputs(source, driving, taps, kinds, pairs)
    chosen = select_taps(tap_map, select)
    groups = {g: tuple(m) for g, m in (groups or {}).items()}
    variants = all_variants = build_variants(list(chosen), groups, directions, known_taps=tap_map)
    used = {t for v in variants for t in v.taps}
    engine_taps = {k: t for k, t in tap_map.items() if k in used}
    scorer = scorer if scorer is not None else FaceScorer()
    messages: list[str] = []

    # faces of the inputs, once; pairs without a usable face are left out
    t0 = time.perf_counter()
    faces = _usable_pairs(scorer, source, driving, pairs, kinds, messages, progress)
    faces_s = time.perf_counter() - t0
    source, driving, pairs, kinds = faces.source, faces.driving, faces.pairs, faces.kinds

    # swaps that cannot change this model's output are not rendered (nor ranked)
    t0 = time.perf_counter()
    dead = unreachable_sites(model, source, driving, site_keys(engine_taps), forward or default_forward)
    inert = inert_variants(variants, engine_taps, dead)
    inert_s = time.perf_counter() - t0
    variants = [v for v in variants if v.key not in inert]

    # render
    n_usable = len(pairs)
    total_images = count_images(n_usable, variants)
    out = run_patching(model, source, driving, engine_taps, variants, forward=forward, reuse=reuse,
                       batch_size=batch_size,
                       progress=(lambda k: _notify(progress, "render", k, total_images)) if progress else None)

    t0 = time.perf_counter()
    scored = _score_outputs(out, variants, scorer, faces.refs, kinds, messages, progress)
    scoring_s = time.perf_counter() - t0

    info = scorer.describe()
    enc = info.get("identity_encoder", "")
    if "substitute" in enc:
        messages.append(f"CSIM uses {enc}; numbers are not comparable to papers' ArcFace CSIM")
    model_s = out.timing["capture_s"] + out.timing["patched_s"]
    timing = {"faces_s": faces_s, "inert_check_s": inert_s, "model_s": model_s, **out.timing,
              "scoring_s": scoring_s, "probe_s": time.perf_counter() - t_start, "pairs": n_usable,
              "variants": len(variants), "inert_variants": len(inert),
              "distinct_variants": scored.distinct, "images_rendered": out.images_rendered + n_usable,
              "forward_passes": out.forward_passes, "batch_size": out.batch_size,
              "seconds_per_image": model_s / max(1, out.images_rendered + n_usable),
              "device": str(source.device), "torch_threads": torch.get_num_threads()}
    images = None
    if keep_images:
        images = ProbeImages(faces.source_u8, faces.driving_u8, scored.baseline_u8,
                             {v.key: scored.images[v.patch_key] for v in variants})
    return ProbeResult(taps={k: out.taps[k] for k in engine_taps if k in out.taps}, groups=dict(groups),
                       unpaired_taps=[], pairs=pairs, skipped_pairs=faces.skipped, baseline=scored.baseline,
                       variants=scored.results, rank_by=scored.rank_by, scorer=info, timing=timing,
                       warnings=messages, images=images,
                       inert=[VariantResult.unranked(v, inert[v.key]) for v in all_variants if v.key in inert])


def _checked_inputs(source: Tensor, driving: Tensor, taps, kinds, pairs):
    """:func:`probe_module`'s inputs checked: ``(source, driving, kinds, {name: TapSpec}, pairs)``, each pair's
    description a new dict holding its ``kind``."""
    source, driving = _check_images(source, "source"), _check_images(driving, "driving")
    if source.shape != driving.shape:
        raise InputError(f"source {tuple(source.shape)} and driving {tuple(driving.shape)} must have the same shape")
    n = source.shape[0]
    kinds = list(kinds) if kinds is not None else ["cross"] * n
    if len(kinds) != n or any(k not in ("self", "cross") for k in kinds):
        raise InputError(f"kinds: expected {n} values from ('self', 'cross'), got {kinds}")
    tap_map = dict(taps) if isinstance(taps, Mapping) else {t.name: t for t in taps}
    if not isinstance(taps, Mapping) and len(tap_map) != len(taps):
        raise InputError("taps: duplicate tap names")
    if not tap_map:
        raise InputError("taps: none given")
    pairs = [dict(p) for p in pairs] if pairs is not None else [{"index": i} for i in range(n)]
    if len(pairs) != n:
        raise InputError(f"pairs: {len(pairs)} descriptions for {n} pairs")
    for p, k in zip(pairs, kinds):
        p["kind"] = k
    return source, driving, kinds, tap_map, pairs


@dataclasses.dataclass
class _UsablePairs:
    """The pairs whose faces the scorer can use: their images (``[-1, 1]`` tensors and uint8), descriptions,
    kinds and the scorer's references; ``skipped``: the others, each with its reason."""

    source: Tensor
    driving: Tensor
    source_u8: np.ndarray
    driving_u8: np.ndarray
    pairs: list[dict]
    kinds: list[str]
    refs: Any
    skipped: list[dict]


def _usable_pairs(scorer, source, driving, pairs, kinds, messages: list[str], progress) -> _UsablePairs:
    """Find the faces of every pair once (:meth:`Scorer.prepare`); a pair without one is skipped with a
    :class:`ProbeWarning`.

    Raises:
        NoFaceError: no pair is usable.
    """
    n = source.shape[0]
    src_u8, drv_u8 = to_uint8(source), to_uint8(driving)
    labels = [(p.get("source_label", f"source[{i}]"), p.get("driving_label", f"driving[{i}]")) for i, p in enumerate(pairs)]
    refs = scorer.prepare(src_u8, drv_u8, labels)
    _notify(progress, "faces", n, n)
    usable = [i for i, prob in enumerate(refs.problems) if prob is None]
    skipped = []
    for i, prob in enumerate(refs.problems):
        if prob is not None:
            skipped.append({**pairs[i], "reason": prob})
            _warn(messages, f"skipped pair {pairs[i].get('index', i)} ({labels[i][0]} driven by {labels[i][1]}): "
                            f"{prob}")
    if not usable:
        raise NoFaceError("no usable source/driving pair: " + "; ".join(f"pair {i}: {p}" for i, p in enumerate(refs.problems)))
    idx = torch.as_tensor(usable, device=source.device)
    return _UsablePairs(source.index_select(0, idx), driving.index_select(0, idx), src_u8[usable], drv_u8[usable],
                        [pairs[i] for i in usable], [kinds[i] for i in usable], refs.select(usable), skipped)


@dataclasses.dataclass
class _Scored:
    baseline: dict
    baseline_u8: np.ndarray
    results: list
    rank_by: str
    images: dict            #: patch key -> uint8 images of that distinct output
    distinct: int           #: distinct outputs scored (variants with the same patch share one)


def _score_outputs(out, variants, scorer, refs, kinds, messages: list[str], progress) -> _Scored:
    """Score the unpatched output and each distinct patched output once; derive every variant's scores."""
    distinct: dict[tuple, Variant] = {}
    for v in variants:
        distinct.setdefault(v.patch_key, v)
    n_score = 1 + len(distinct)
    base_u8 = _pixels(out.baseline, "unpatched output", messages)
    baseline = baseline_scores(scorer.score(base_u8, refs), kinds)
    _notify(progress, "score", 1, n_score)
    raw: dict[tuple, tuple[dict, np.ndarray, np.ndarray]] = {}
    for key, v in distinct.items():
        img = out.outputs[v.key]
        u8 = _pixels(img, f"variant {v.key}", messages)
        change = (img - out.baseline).abs().flatten(1).mean(1).numpy()
        raw[key] = (scorer.score(u8, refs), change, u8)
        _notify(progress, "score", 1, n_score)
    results = [VariantResult(v, derive_scores(raw[v.patch_key][0], baseline, v, raw[v.patch_key][1], kinds))
               for v in variants]
    return _Scored(baseline, base_u8, results, rank_variants(results, kinds), {k: r[2] for k, r in raw.items()},
                   len(distinct))


# -- plugtalk animators --------------------------------------------------------------------------------------

def as_animator(model: nn.Module, **adapter_options: Any):
    """A :class:`~plugtalk.retrofitting.Retrofitted` view of ``model`` (a Retrofitted model as is; an
    adapter or a plugtalk backbone wrapped without EMI/EDI, its weights and ``requires_grad`` untouched)."""
    from ..adapters import Adapter
    from ..backbones import Backbone
    from ..retrofitting import Retrofitted, retrofit

    if isinstance(model, Retrofitted):
        if adapter_options:
            raise InputError("adapter options only apply to a backbone, not to a Retrofitted model")
        return model
    if isinstance(model, (Adapter, Backbone)):
        return retrofit(model, emi=None, edi=None, freeze_backbone=False, **adapter_options)
    raise InputError(f"probe_animator needs a plugtalk backbone, adapter or Retrofitted model, got "
                     f"{type(model).__name__}; use probe_module for other nn.Modules")


def encoder_path(model) -> list[str]:
    """Module path of the animator's image encoder inside a Retrofitted model (replayed, not re-run)."""
    from ..adapters import HookAdapter

    a = model.adapter
    if isinstance(a, HookAdapter):
        return [f"adapter.backbone.{a.encoder_path}"]
    enc = getattr(a.backbone, "encoder", None)
    return ["adapter.backbone.encoder"] if isinstance(enc, nn.Module) else []


def probe_animator(animator: nn.Module, source: Tensor, driving: Tensor, *, taps: Sequence[str] | None = None,
                   groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                   directions: Sequence[str] = DIRECTIONS, kinds: Sequence[str] | None = None,
                   scorer: Scorer | None = None, batch_size: int | None = None, progress: Progress | None = None,
                   pairs: Sequence[Mapping[str, Any]] | None = None, keep_images: bool = True,
                   **adapter_options: Any) -> ProbeResult:
    """Probe a plugtalk animator by tap name.

    Args:
        animator: a LIA / EDTalk / DPE backbone, an :class:`~plugtalk.adapters.Adapter`, or a
            :class:`~plugtalk.retrofitting.Retrofitted` model (EMI/EDI included).
        source, driving: ``(B, 3, S, S)`` in [-1, 1], ``S`` the animator's size.
        taps: names from ``latent``, ``pyramid.0`` .. ``pyramid.{n-1}`` (coarse to fine),
            ``motion_code`` (default all).
        groups: names of FixTalk's groups (``pyramid``, ``identity``, ``pyramid-but-identity``;
            default all), or a dict of custom groups.
        adapter_options: for a bare backbone, e.g. DPE's ``mode="pose"``.
        Other arguments: see :func:`probe_module`.

    Raises:
        InputError: unknown tap or group names (the message lists the valid ones), bad images.
        NoFaceError: no usable pair.
    """
    model = as_animator(animator, **adapter_options)
    available = animator_taps(model)
    select_taps(available, taps)  # validate names early, listing the valid ones
    chosen_groups = _chosen_groups(model.spec, groups)
    result = probe_module(model, source, driving, available, forward=lambda m, s, d: m(s, d), select=taps,
                          groups=chosen_groups, directions=directions, kinds=kinds, scorer=scorer,
                          reuse=encoder_path(model), batch_size=batch_size, progress=progress, pairs=pairs,
                          keep_images=keep_images)
    result.unpaired_taps = unpaired_taps(model)
    spec = model.spec
    result.model = {"adapter": type(model.adapter).__name__, "backbone": getattr(model.backbone, "name", None),
                    "image_size": model.adapter.image_size, "emi": model.emi is not None, "edi": model.edi is not None,
                    "feature_spec": spec.to_dict(), "identity_level": f"pyramid.{spec.identity_level}"}
    return result


def _chosen_groups(spec, groups: Sequence[str] | Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    defaults = animator_groups(spec)
    if groups is None:
        return defaults
    if isinstance(groups, Mapping):
        return {g: tuple(m) for g, m in groups.items()}
    unknown = [g for g in groups if g not in defaults]
    if unknown:
        raise InputError(f"unknown group(s) {unknown}; groups: {', '.join(defaults)}")
    return {g: defaults[g] for g in dict.fromkeys(groups)}


def probe_controlled(animator: nn.Module, source: Tensor, donor: Tensor, *, coefficients: Tensor | None = None,
                     donor_coefficients: Tensor | None = None, taps: Sequence[str] | None = None,
                     groups: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                     directions: Sequence[str] = ("to_source",), kinds: Sequence[str] | None = None,
                     scorer: Scorer | None = None, batch_size: int | None = None, progress: Progress | None = None,
                     pairs: Sequence[Mapping[str, Any]] | None = None, keep_images: bool = True) -> ProbeResult:
    """Probe an animator driven by controls only (GoHD): each tap of the donor's run goes into the
    source's run, both runs driven by coefficient windows (see :mod:`plugtalk.probe.controlled`).

    Args:
        animator: a GoHD backbone, its adapter, or a Retrofitted GoHD (EDI included).
        source, donor: ``(B, 3, S, S)`` in [-1, 1]; row ``i`` of each is pair ``i`` (the scorer sees
            the donor as the "driving" frame: ``identity_transfer`` is CSIM to the donor minus CSIM to
            the source).
        coefficients: ``(1 or B, 72, T>=25)`` window of both runs (default: a neutral window, zeros).
        donor_coefficients: the donor run's window (default: ``coefficients``); with another window the
            ``coefficients.embedding`` swap measures identity carried by the motion code.
        taps: names from ``latent``, ``pyramid.0`` .. ``pyramid.{n-1}``, ``motion_code``,
            ``coefficients.embedding`` (default all).
        directions: ``("to_source",)`` only.
        Other arguments: see :func:`probe_animator`.

    Raises:
        InputError: an animator with a driving image (use :func:`probe_animator`), unknown taps, groups
            or directions, bad images or windows.
        NoFaceError: no usable pair.
    """
    from ..backbones.gohd import check_coefficients
    from .controlled import TwoSourceRun, check_directions, controlled_taps, controlled_unpaired, is_controlled, \
        neutral_window

    model = as_animator(animator)
    if not is_controlled(model):
        raise InputError(f"probe_controlled: {type(model.adapter).__name__} is driven by driving images; "
                         "use probe_animator")
    check_directions(directions)
    available = controlled_taps(model)
    select_taps(available, taps)
    w = neutral_window(model) if coefficients is None else coefficients
    min_window = model.backbone.config.min_window
    w = check_coefficients(w, min_window)
    w_d = w if donor_coefficients is None else check_coefficients(donor_coefficients, min_window,
                                                                name="donor_coefficients")
    for name, x in (("coefficients", w), ("donor_coefficients", w_d)):
        if x.shape[0] not in (1, source.shape[0]):
            raise InputError(f"{name}: {x.shape[0]} windows for {source.shape[0]} pairs (give 1 or one per pair)")
    run = TwoSourceRun(model, w, w_d)
    result = probe_module(run, source, donor, available, select=taps, groups=_chosen_groups(model.spec, groups),
                          directions=directions, kinds=kinds, scorer=scorer,
                          reuse=[f"model.{p}" for p in encoder_path(model)], batch_size=batch_size,
                          progress=progress, pairs=pairs, keep_images=keep_images)
    result.unpaired_taps = controlled_unpaired(model)
    spec = model.spec
    result.model = {"adapter": type(model.adapter).__name__, "backbone": getattr(model.backbone, "name", None),
                    "image_size": model.adapter.image_size, "emi": model.emi is not None, "edi": model.edi is not None,
                    "feature_spec": spec.to_dict(), "identity_level": f"pyramid.{spec.identity_level}",
                    "pairing": "source/donor runs under one coefficient window" if donor_coefficients is None
                    else "source/donor runs under their own coefficient windows"}
    return result


# -- from files ---------------------------------------------------------------------------------------------

def load_animator(backbone: str, checkpoint: str | os.PathLike | None = None, *,
                  options: Mapping[str, Any] | None = None, seed: int = 0,
                  device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the animator a probe spec names (eval mode, on ``device``) with
    :func:`plugtalk.weights.load.load_animator`: an official ``.pt``, a plugtalk backbone or retrofit file, or,
    with no checkpoint, the embedded default model, else random weights drawn with ``torch.manual_seed(seed)``.

    Returns:
        ``(Retrofitted model, description)``; ``description["random_weights"]`` tells whether the
        weights are random (the caller warns).

    Raises:
        InputError: unknown backbone or options.
        CheckpointError: unreadable checkpoint, or one of another backbone.
    """
    from ..weights.load import RandomWeightsWarning
    from ..weights.load import load_animator as load_weights

    from ..backbones import backbone_entry

    check_probe_backbone(backbone)
    options = dict(options or {})
    allowed = set(backbone_entry(backbone).adapter_options)
    if set(options) - allowed:
        raise InputError(f"{backbone}: takes no backbone options other than {sorted(allowed) or 'none'} "
                         f"(got {sorted(options)})")
    torch.manual_seed(seed)  # makes the random-weight fallback reproducible from the spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # run_probe reports it in the report too
        loaded = load_weights(checkpoint, backbone, mode=options.get("mode"), device=device)
    weights = loaded.source if not loaded.random_weights else f"random (torch.manual_seed({seed}))"
    info = {"backbone": backbone, "options": options, "checkpoint": None if checkpoint is None else str(checkpoint),
            "weights": weights, "random_weights": loaded.random_weights}
    return loaded.model, info


def run_probe(spec: ProbeSpec, *, scorer: Scorer | None = None, progress: Progress | None = None,
              keep_images: bool = True) -> ProbeResult:
    """Run a :class:`ProbeSpec`: load the animator and the pairs' frames, probe, and describe the run.

    Pairs whose files cannot be read, or without a detectable face, are skipped with a
    :class:`ProbeWarning` naming the file.

    Raises:
        InputError / CheckpointError: bad spec, checkpoint or tap/group names.
        NoFaceError: no pair is usable.
    """
    from .pairs import load_pair_frames

    t0 = time.perf_counter()
    messages: list[str] = []
    model, info = load_animator(spec.backbone, spec.checkpoint, options=spec.backbone_options, seed=spec.seed,
                                device=spec.device)
    if info["random_weights"]:
        _warn(messages, f"no checkpoint given and no default {spec.backbone} model installed: the {spec.backbone} "
                        f"backbone has RANDOM weights (seed {spec.seed}); the probe runs end to end, but its scores "
                        "say nothing about a trained animator")
    from .controlled import controlled_taps, is_controlled, window_from_file

    controlled = is_controlled(model)
    select_taps(controlled_taps(model) if controlled else animator_taps(model), spec.taps)  # before any frame
    window = None
    if controlled and spec.coefficients is not None:
        window = window_from_file(model, spec.coefficients)
    unknown = [g for g in (spec.groups or []) if g not in animator_groups(model.spec)]
    if unknown:
        raise InputError(f"unknown group(s) {unknown}; groups: {', '.join(animator_groups(model.spec))}")
    size = model.adapter.image_size
    loaded = load_pair_frames(spec.pairs, size)
    skipped = []
    for k, why in loaded.problems.items():
        skipped.append({**spec.pairs[k].to_json(), "reason": why})
        _warn(messages, f"skipped pair {k} ({spec.pairs[k].labels[0]} driven by {spec.pairs[k].labels[1]}): {why}")
    if not loaded.indices:
        raise InputError("no readable source/driving pair: " + "; ".join(s["reason"] for s in skipped))
    load_s = time.perf_counter() - t0
    p = next(model.parameters())
    src = to_tensor(loaded.sources, device=p.device, dtype=p.dtype)
    drv = to_tensor(loaded.drivings, device=p.device, dtype=p.dtype)
    pairs = []
    for k in loaded.indices:
        ps = spec.pairs[k]
        pairs.append({**ps.to_json(), "index": k, "source_label": ps.labels[0], "driving_label": ps.labels[1]})
    score_size = spec.score_size
    if score_size is None and size < NIQE_MIN_SIZE:
        score_size = SMALL_MODEL_SCORE_SIZE
        messages.append(f"the animator renders {size} px (under NIQE's {NIQE_MIN_SIZE} px): every image is scored "
                        f"resized to {score_size} px (Lanczos); set score_size to choose")
    scorer = scorer or FaceScorer(spec.metrics, output_faces=spec.output_faces, score_size=score_size)
    try:
        common = dict(taps=spec.taps, groups=spec.groups, directions=spec.directions,
                      kinds=[spec.pairs[k].kind for k in loaded.indices], scorer=scorer,
                      batch_size=spec.batch_size, progress=progress, pairs=pairs, keep_images=keep_images)
        if controlled:
            result = probe_controlled(model, src, drv, coefficients=window, **common)
        else:
            result = probe_animator(model, src, drv, **common)
    except NoFaceError as e:
        raise NoFaceError(f"{e}" + (f"; unreadable: {'; '.join(s['reason'] for s in skipped)}" if skipped else "")) from None
    result.spec = spec
    result.model = {**info, **result.model}
    if controlled:
        result.model["coefficients"] = spec.coefficients or "neutral window (zeros, 27 frames)"
    result.skipped_pairs = skipped + result.skipped_pairs
    result.warnings = messages + result.warnings
    result.timing = {"load_s": load_s, **result.timing, "total_s": time.perf_counter() - t0}
    return result


def describe_taps(animator: nn.Module, **adapter_options: Any) -> dict[str, Any]:
    """Taps, groups and unpaired hook points of a plugtalk animator, with shapes from one forward pass
    on a blank pair: ``{"taps": {name: TapInfo}, "groups": {...}, "unpaired": [...]}``."""
    from ..hooks import capture

    from .controlled import controlled_taps, controlled_unpaired, is_controlled, neutral_window

    model = as_animator(animator, **adapter_options)
    controlled = is_controlled(model)
    taps = controlled_taps(model, prefix="") if controlled else animator_taps(model)
    p = next(model.parameters())
    size = model.adapter.image_size
    x = torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype)
    sites = {t.name: t.source for t in taps.values()}
    was_training = model.training
    try:
        with torch.no_grad(), capture(model.eval(), sites) as cache:
            if controlled:
                model(x, coefficients=neutral_window(model))
            else:
                model(x, x)
    finally:
        model.train(was_training)
    infos = {}
    for t in taps.values():
        v = cache.one(t.name)
        infos[t.name] = TapInfo(t.name, t.source.describe(), tuple(s.describe() for s in t.driving_sites),
                                tuple(v.shape[1:]), str(v.dtype))
    unpaired = controlled_unpaired(model) if controlled else unpaired_taps(model)
    if controlled:  # as TwoSourceRun names the sites: the source's run is call 0, the donor's call 1
        infos = {k: dataclasses.replace(i, source=f"{i.source} (source run)",
                                        driving=tuple(f"{d} (donor run)" for d in i.driving)) for k, i in infos.items()}
    return {"taps": infos, "groups": animator_groups(model.spec), "unpaired": unpaired,
            "identity_level": f"pyramid.{model.spec.identity_level}"}
