"""Training recipes: registered sequences of stages, each starting from the previous stage's model.

``plugtalk train --recipe fixtalk-edtalk --data clips/ -o runs/x`` runs every step of the recipe into
``runs/x/<k>-<step>/`` (a normal training output folder each) and copies the last step's model to
``runs/x/model.safetensors``.  Each step's config is resolved as

1. the base config (``--config``, default the recipe's :attr:`Recipe.base`),
2. the step's own settings (the paper's batch size / learning rate of that stage, its ``stage``),
3. ``--set KEY=VALUE`` (every step) and ``--set STEP.KEY=VALUE`` (that step only, e.g.
   ``mouth-pose.optim.steps=500``),
4. ``output_dir = <out>/<k>-<step>`` and ``model.checkpoint`` = the previous step's ``model.safetensors``
   (the first step keeps the base config's checkpoint).

``--until STEP`` plans the steps up to and including ``STEP`` (e.g. ``--until mouth-pose`` on clips without
the emotion labels the expression step needs); the run's ``model.safetensors`` is then that step's model.

``--resume`` skips finished steps (their ``model.safetensors`` exists) and resumes the unfinished one at
its newest checkpoint (same step, optimizer and data position).  Under ``torchrun`` every process runs the
recipe with one process group.

Recipes:

* ``fixtalk-edtalk`` - FixTalk's order on EDTalk (FixTalk suppl. Sec. 1.2, EDTalk suppl. Sec. 1.3):
  ``pretrain`` (the plain EDTalk, LIA-style; skipped when the base config starts from a checkpoint such as
  ``EDTalk.pt``), ``stage1`` (encoder + EMI + generator), ``stage2`` (EDI), ``mouth-pose``
  (``edtalk-mouth-pose``, EMI and EDI frozen), ``expression`` (``edtalk-expression``), then EDTalk's audio
  models against the finished animator: ``audio-lip`` (``edtalk-audio-lip``) and ``audio-pose``
  (``edtalk-audio-pose``).  A companion step (:mod:`plugtalk.train.stages.companion`) passes the animator on
  unchanged; its model (``audio_lip.safetensors``, ``audio_pose.safetensors``) is copied next to the run's
  ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import InputError
from ..io.atomic import atomic_path
from .checkpointing import MODEL_FILE
from .config import TrainConfig, apply_overrides, config_from_mapping, expand_path, resolve_config_path

__all__ = ["RecipeStep", "Recipe", "register_recipe", "get_recipe", "recipe_names", "resolve_recipe",
           "run_recipe", "show_recipe", "PlannedStep"]


@dataclasses.dataclass(frozen=True)
class RecipeStep:
    """One step: ``stage`` with ``settings`` (nested config values) on top of the base config.

    ``skip_when_checkpoint``: leave the step out when the base config starts from ``model.checkpoint``
    (a pre-training step that a pretrained file replaces)."""

    name: str
    stage: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    skip_when_checkpoint: bool = False


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named sequence of :class:`RecipeStep` on a base config (a packaged config name or file)."""

    name: str
    summary: str
    base: str
    steps: tuple[RecipeStep, ...]


_RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Register ``recipe`` (its step names must be distinct).

    Raises:
        ValueError: the name is taken, or two steps share a name.
    """
    if recipe.name in _RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is already registered")
    names = [s.name for s in recipe.steps]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe {recipe.name!r}: step names must be distinct, got {names}")
    _RECIPES[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    return list(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """Raises: InputError naming the registered recipes."""
    try:
        return _RECIPES[name]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; recipes: {', '.join(_RECIPES)}") from None


@dataclasses.dataclass
class PlannedStep:
    """A recipe step with its resolved config (``config.output_dir`` is its folder)."""

    index: int
    step: RecipeStep
    config: TrainConfig

    @property
    def folder(self) -> Path:
        return Path(expand_path(self.config.output_dir))

    @property
    def done(self) -> bool:
        return (self.folder / MODEL_FILE).is_file()


def _merge(base: dict, extra: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, Mapping) and isinstance(out.get(k), (dict, type(None))) \
            else v
    return out


def _split_overrides(recipe: Recipe, overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    names = {s.name for s in recipe.steps}
    common, per_step = [], {n: [] for n in names}
    for item in overrides:
        head, _, rest = item.partition(".")
        if head in names and "=" in rest and rest.split("=", 1)[0]:
            per_step[head].append(rest)
        else:
            common.append(item)
    return common, per_step


def _steps_until(recipe: Recipe, until: str | None) -> tuple[RecipeStep, ...]:
    if until is None:
        return recipe.steps
    names = [s.name for s in recipe.steps]
    if until not in names:
        raise InputError(f"recipe {recipe.name!r} has no step {until!r}; its steps: {', '.join(names)}")
    return recipe.steps[:names.index(until) + 1]


def resolve_recipe(name: str, output: str | os.PathLike, overrides: list[str] | None = None,
                   base: str | os.PathLike | None = None, until: str | None = None) -> list[PlannedStep]:
    """The steps of recipe ``name`` with their resolved configs (see the module docstring).

    Args:
        until: plan only the steps up to and including this one (default: every step).

    Raises:
        InputError: unknown recipe or step, unreadable base config, or a step whose config is invalid (named).
    """
    recipe = get_recipe(name)
    steps = _steps_until(recipe, until)
    path = resolve_config_path(base or recipe.base)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of sections at the top level")
    common, per_step = _split_overrides(recipe, list(overrides or []))
    out = Path(expand_path(output))
    checkpoint = apply_overrides(values, common).get("model", {}).get("checkpoint")
    planned: list[PlannedStep] = []
    for step in steps:
        if step.skip_when_checkpoint and checkpoint:
            continue
        k = len(planned) + 1
        mapping = _merge(values, step.settings)
        mapping = apply_overrides(mapping, common + per_step[step.name])
        mapping["stage"] = step.stage
        mapping["output_dir"] = str(out / f"{k}-{step.name}")
        if planned:
            mapping.setdefault("model", {})
            mapping["model"] = {**mapping["model"], "checkpoint": str(planned[-1].folder / MODEL_FILE)}
        origin = f"recipe {name!r}, step {step.name!r}"
        planned.append(PlannedStep(k, step, config_from_mapping(mapping, origin=origin)))
    return planned


def show_recipe(planned: list[PlannedStep]) -> str:
    """YAML of every step: its stage (summary, losses, data, start) and resolved config."""
    from .stages import get_stage

    doc = [{"step": f"{p.index}-{p.step.name}", "stage": get_stage(p.config.stage).describe(),
            "config": p.config.to_dict()} for p in planned]
    return yaml.safe_dump(doc, sort_keys=False)


def run_recipe(planned: list[PlannedStep], output: str | os.PathLike, *, resume: bool = False, dist=None,
               log=print) -> Path:
    """Run the planned steps in order; returns ``<output>/model.safetensors`` (the last step's model).

    Every unfinished step's data is checked first (:func:`plugtalk.train.data.check_data`), so missing labels
    stop the run before its first step rather than at the step that needs them.

    Raises:
        InputError: ``output`` already holds steps of a run and ``resume`` is not set, a step's data cannot
            serve it (named, with ``--until`` as the way out), or a step's own errors.
    """
    from .data import check_data
    from .distributed import DistContext
    from .trainer import Trainer

    out = Path(expand_path(output))
    if out.exists() and not out.is_dir():
        raise InputError(f"output {str(out)!r} is a file, not a folder")
    started = [p for p in planned if p.folder.exists() and any(p.folder.iterdir())]
    if started and not resume:
        names = ", ".join(p.folder.name for p in started)
        raise InputError(f"{out} already holds recipe steps ({names}): use --resume "
                         "to continue that run, or choose another output folder")
    for p in planned:
        if not p.done:
            try:
                check_data(p.config)
            except InputError as e:
                before = [q.step.name for q in planned if q.index < p.index]
                hint = f" (to run the steps before it: --until {before[-1]})" if before else ""
                raise InputError(f"recipe step {p.index}-{p.step.name}: {e}{hint}") from None
    dist = dist or DistContext.setup(planned[0].config.device)
    try:
        for p in planned:
            if p.done:
                if dist.is_main:
                    log(f"recipe step {p.index}-{p.step.name}: done ({p.folder / MODEL_FILE})")
                continue
            if dist.is_main:
                log(f"recipe step {p.index}-{p.step.name}: stage {p.config.stage}")
            Trainer(p.config, resume=resume, dist=dist).fit()
        final = out / MODEL_FILE
        if dist.is_main:
            for source, name in _results(planned):
                with atomic_path(out / name) as tmp:
                    shutil.copyfile(source, tmp)
            log(f"recipe done: {final}")
        dist.barrier()
    finally:
        dist.close()
    return final


def _results(planned: list[PlannedStep]) -> list[tuple[Path, str]]:
    """``(file, name in the run folder)``: the last step's model and every companion step's model."""
    from .stages import get_stage

    out = [(planned[-1].folder / MODEL_FILE, MODEL_FILE)]
    for p in planned:
        companion = get_stage(p.config.stage).companion
        if companion is not None:
            out.append((p.folder / companion.file, companion.file))
    return out


register_recipe(Recipe(
    name="fixtalk-edtalk",
    summary="FixTalk's order on EDTalk: pretrain, stage1 (E + EMI + G), stage2 (EDI), EDTalk's mouth-pose and "
            "expression stages with EMI and EDI frozen, then its Audio-to-Lip and Audio-to-Pose models",
    base="fixtalk-edtalk256",
    steps=(
        RecipeStep("pretrain", "baseline", skip_when_checkpoint=True),
        RecipeStep("stage1", "stage1"),
        RecipeStep("stage2", "stage2"),
        RecipeStep("mouth-pose", "edtalk-mouth-pose", {"optim": {"lr": 2e-3}, "data": {"batch_size": 4}}),
        RecipeStep("expression", "edtalk-expression", {"optim": {"lr": 2e-3}, "data": {"batch_size": 10}}),
        # the official Audio-to-Lip script: 30 k iterations, batch 4, Adam lr 2e-3 x 0.8, betas (0, 0.99^0.8)
        RecipeStep("audio-lip", "edtalk-audio-lip", {"optim": {"lr": 2e-3 * 0.8, "betas": [0.0, 0.99 ** 0.8],
                                                               "grad_clip": 10.0, "steps": 30_000},
                                                     "data": {"batch_size": 4}}),
        # EDTalk gives no setting for the pose flow: plugtalk's
        RecipeStep("audio-pose", "edtalk-audio-pose", {"optim": {"lr": 1e-3, "betas": [0.9, 0.999], "grad_clip": 10.0},
                                                       "data": {"batch_size": 16}}),
    )))
