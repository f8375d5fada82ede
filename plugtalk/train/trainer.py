"""The training loop: FixTalk's recipe (suppl. Sec. 1.2) on one CPU or many GPUs.

Each step, on a batch of the stage's data (:mod:`plugtalk.train.stages`; e.g. self-reenactment pairs,
source and driving frame of one clip):

1. generator step: the stage's objective renders outputs and names their targets (default
   ``output = model(source, driving)`` against ``driving``, a :class:`~plugtalk.Retrofitted` in training
   mode, which also returns L_dis / L_dmem / L_align); the stage's losses among
   ``w_rec L_rec + w_per L_per + w_adv L_adv + w_dis L_dis + w_dmem L_dmem + w_align L_align``
   (+ ``g * w_distill L_distill`` while EMI's latent bridge is open, gate ``g`` from ``emi_bridge``)
   and the stage's own terms, against the targets; Adam on the parameters the stage trains; EDI's addressing diagnostics
   (entropy, slot usage, recall gaps: :attr:`plugtalk.EDI.diagnostics`) are logged as ``edi/*`` and
   EDI is told the fraction of training done (its scheduled training recall);
2. discriminator step: non-saturating loss on (target, output), optional lazy R1.

A companion stage (EDTalk's audio models, :mod:`plugtalk.train.stages.companion`) trains a separate model
beside the frozen animator through the same loop; its objective may render nothing (no L_rec / L_per /
L_adv, no discriminator), and what it writes is the companion's file next to the animator's.

Distributed: one process per device under ``torchrun`` (DistributedDataParallel, NCCL / gloo,
:class:`~plugtalk.train.distributed.ResumableSampler`); rank 0 logs and writes checkpoints.
bf16 autocast on CUDA.  A non-finite loss or gradient norm stops training before the optimizer
step (:class:`TrainingDiverged`), so no checkpoint ever holds its result.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..weights.plugtalk_format import load_safetensors
from ..weights.configurable import load_state_dict_checked
from ..errors import CheckpointError, InputError, PlugtalkError
from ..io.atomic import atomic_path
from .checkpointing import (DISCRIMINATOR_FILE, MODEL_FILE, capture_rng, latest_checkpoint,
                            load_state, remove_partials, restore_rng, save_checkpoint)
from .config import TrainConfig, expand_path
from .discriminator import Discriminator, DiscriminatorConfig
from .distributed import DistContext, ResumableSampler
from .losses import (PerceptualLoss, discriminator_loss, feature_matching_loss, generator_adversarial_loss,
                     r1_penalty, reconstruction_loss, warn_no_vgg)
from .monitor import TrainMonitor
from .data import build_dataset
from .stages import build_model, describe, get_stage, load_training_weights, loss_weight, set_train_mode

__all__ = ["Trainer", "TrainingDiverged", "build_dataset", "LOSS_NAMES"]

#: Generator loss terms and the config weight each is scaled by.
LOSS_NAMES = ("rec", "per", "adv", "dis", "distill", "dmem", "align")
_STATE_KIND = "plugtalk-train-state"
#: Settings a resumed run must share with the checkpoint it continues.
_RESUME_KEYS = ("stage", "model", "seed", "data.batch_size", "audio.window", "audio.holdout", "audio.companion")


class TrainingDiverged(PlugtalkError):
    """A loss or gradient norm became NaN/inf; training stopped before applying that step.

    Attributes:
        step: the step (1-based) whose update was refused.  what: the names of the bad values.
    """

    def __init__(self, message: str, step: int, what: list[str]):
        super().__init__(message)
        self.step, self.what = step, what


def _largest_divisor(n: int, at_most: int) -> int:
    return max(k for k in range(1, min(n, at_most) + 1) if n % k == 0)


def _get(cfg: dict, dotted: str) -> Any:
    for p in dotted.split("."):
        cfg = cfg.get(p, {}) if isinstance(cfg, dict) else {}
    return cfg


class Trainer:
    """One training run of ``config`` (see the module docstring).

    Args:
        config: the run's :class:`~plugtalk.train.config.TrainConfig`.
        dataset: items ``{"source": (3, S, S), "driving": (3, S, S)}`` float in [-1, 1]; default
            :func:`build_dataset` of ``config``.
        resume: continue from the newest complete checkpoint in ``config.output_dir`` (same step,
            optimizer/scheduler states, RNG states and data position); starts afresh when there is none.
        dist: the process-group context (default: from torchrun's environment).

    Raises:
        InputError: bad settings, a dataset too small for one batch, an ``output_dir`` that is a file, or
            one that already holds checkpoints without ``resume``.
    """

    def __init__(self, config: TrainConfig, dataset: Dataset | None = None, *, resume: bool = False,
                 dist: DistContext | None = None):
        self.cfg = config
        #: the registered stage of ``config.stage``: what trains, its losses, data and objective
        self.stage = get_stage(config.stage)
        self.output = Path(expand_path(config.output_dir))
        if self.output.exists() and not self.output.is_dir():
            raise InputError(f"output_dir {str(self.output)!r} is a file, not a folder: choose another output "
                             "folder (-o)")
        self.checkpoint_root = self.output / "checkpoints"
        self._place(dist)
        _seed_all(config.seed)  # identical initial weights on every rank
        self.model = build_model(config).to(self.device)
        emi = self.model.emi
        #: EMI starts with its latent bridge open and trains: ``emi_bridge`` closes the bridge step by step
        self.drives_bridge = (emi is not None and emi.bridge_gate > 0
                              and any(p.requires_grad for p in emi.parameters()))
        size = self.model.adapter.image_size
        self._build_loss_networks(size)
        self._build_data(dataset, size)
        #: what the stage's ``setup`` prepared (loss networks, a data-dependent start, ...), read by its objective
        self.stage_state = self.stage.setup(self) if self.stage.setup is not None else {}
        self._build_optimisers()
        self._wrap_distributed()
        self._start(resume)
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.output / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    # -- construction, in order ------------------------------------------------------------------------
    def _place(self, dist: DistContext | None) -> None:
        """The process group / device, and the autocast dtype (``precision``: bf16, or auto = bf16 on CUDA)."""
        cfg = self.cfg
        self.dist = dist or DistContext.setup(cfg.device)
        self.device = self.dist.device
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.amp_dtype: torch.dtype | None = torch.bfloat16 if bf16 else None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _build_loss_networks(self, size: int) -> None:
        """L_per's VGG19 (a user file), or feature matching on the discriminator without one (a stage without
        L_adv leaves L_per out instead); the discriminator when the stage's L_adv or feature matching needs it
        (optionally loaded from ``model.discriminator_checkpoint``)."""
        cfg, w, wanted = self.cfg, self.cfg.loss, self.stage.losses
        adversarial = "adv" in wanted
        perceptual = w.per > 0 and "per" in wanted
        self.perceptual = None
        if perceptual and w.vgg_weights:
            self.perceptual = PerceptualLoss(expand_path(w.vgg_weights), w.vgg_layer_weights, w.vgg_scales,
                                             w.vgg_distance)
            self.perceptual.to(self.device)
        self.feature_matching = perceptual and self.perceptual is None and adversarial
        if self.feature_matching:
            warn_no_vgg()
        elif perceptual and self.perceptual is None:
            warnings.warn(f"no VGG19 weights given (loss.vgg_weights): stage {self.stage.name!r} leaves the perceptual "
                          "loss L_per out (it has no discriminator to fall back on)", UserWarning, stacklevel=3)
        self.discriminator: Discriminator | None = None
        if adversarial and (w.adv > 0 or self.feature_matching):
            try:
                dcfg = DiscriminatorConfig.from_dict({"size": size, **cfg.model.discriminator})
            except (TypeError, ValueError) as e:
                raise InputError(f"model.discriminator: {e}") from None
            self.discriminator = Discriminator(dcfg).to(self.device)
            if cfg.model.discriminator_checkpoint:
                self._load_discriminator(expand_path(cfg.model.discriminator_checkpoint))

    def _build_data(self, dataset: Dataset | None, size: int) -> None:
        """The stage's dataset (or ``dataset``), split over the ranks by a resumable sampler."""
        cfg = self.cfg
        self.dataset = dataset if dataset is not None else build_dataset(cfg, size, self.model)
        world = self.dist.world_size
        if cfg.data.batch_size % world:
            raise InputError(f"data.batch_size={cfg.data.batch_size} must be divisible by the number of "
                             f"processes ({world})")
        self.local_batch = cfg.data.batch_size // world
        self.sampler = ResumableSampler(self.dataset, world, self.dist.rank, shuffle=True, seed=cfg.seed)
        self.batches_per_epoch = self.sampler.num_samples // self.local_batch
        if self.batches_per_epoch < 1:
            raise InputError(f"the dataset has {len(self.dataset)} pairs: too few for one batch of "
                             f"{cfg.data.batch_size} over {world} process(es) (raise data.repeats)")
        if self.discriminator is not None:  # stddev groups never straddle the fake/real halves of a D batch
            self.discriminator.stddev_group = _largest_divisor(self.local_batch, self.discriminator.config.stddev_group)
        if hasattr(self.dataset, "preload"):
            self.dataset.preload()

    def _build_optimisers(self) -> None:
        """Adam and the lr schedule for the trained generator parameters and for the discriminator."""
        opt = self.cfg.optim
        self.g_params = self.model.trainable_parameters()
        self.g_opt = torch.optim.Adam(self.g_params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
        self.g_sched = torch.optim.lr_scheduler.LambdaLR(self.g_opt, self._lr_factor)
        self.d_opt = self.d_sched = None
        if self.discriminator is not None:
            self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=opt.discriminator_lr or opt.lr,
                                          betas=tuple(opt.betas), weight_decay=opt.weight_decay)
            self.d_sched = torch.optim.lr_scheduler.LambdaLR(self.d_opt, self._lr_factor)

    def _wrap_distributed(self) -> None:
        """DDP wrappers under torchrun (the discriminator's generator-side use goes through the bare module)."""
        self.g_net: nn.Module = self.model
        self.d_net: nn.Module | None = self.discriminator
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_net = DistributedDataParallel(self.model, device_ids=ids,
                                                 find_unused_parameters=self.cfg.optim.find_unused_parameters)
            if self.discriminator is not None:
                self.d_net = DistributedDataParallel(self.discriminator, device_ids=ids)

    def _start(self, resume: bool) -> None:
        """Step 0, or the latest checkpoint with ``resume``; an output folder holding checkpoints without
        ``resume`` is refused.  Then the bridge gate and the per-rank random state for the steps."""
        self.step = 0
        self.last_batch: tuple[Tensor, Tensor, Tensor] | None = None
        self.epoch = 0
        self.batch_in_epoch = 0
        self.resumed_from: Path | None = None
        if resume:
            self._resume()
        elif latest_checkpoint(self.checkpoint_root) is not None:
            raise InputError(f"{str(self.output)!r} already holds checkpoints: resume with --resume, or choose "
                             "another output_dir")
        self._apply_bridge()
        _seed_all(self.cfg.seed * 1_000_003 + 7919 * self.dist.rank + 1, keep=self.resumed_from is not None)

    # -- schedule ---------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        opt = self.cfg.optim
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.schedule == "cosine":
            t = min(1.0, (step - opt.warmup_steps) / max(1, opt.steps - opt.warmup_steps))
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    def _apply_bridge(self) -> float:
        """Set EMI's bridge gate for the next step (``self.step``, 0-based); 0 at ``optim.steps``."""
        if not self.drives_bridge:
            return self.model.emi.bridge_gate if self.model.emi is not None else 0.0
        gate = self.cfg.emi_bridge.gate(self.step, self.cfg.optim.steps)
        self.model.emi.set_bridge_gate(gate)
        return gate

    def loss_weight(self, name: str) -> float:
        """Weight of generator loss ``name``: ``loss.stage_weights[name]``, else the stage's default, else
        ``loss.<name>`` (``distill``: the ``emi_bridge`` weight times the gate)."""
        if name == "distill":
            return self.cfg.emi_bridge.distill * (self.model.emi.bridge_gate if self.model.emi is not None else 0.0)
        return loss_weight(self.cfg, self.stage, name)

    # -- data -------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.local_batch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        # a private generator: making the loader must not consume the global torch RNG (resume equivalence)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch)
        w = self.cfg.data.workers
        return DataLoader(self.dataset, batch_size=self.local_batch, sampler=self.sampler, num_workers=w,
                          pin_memory=self.device.type == "cuda", drop_last=True, generator=g,
                          persistent_workers=False, prefetch_factor=2 if w else None)

    # -- EDI's schedule and diagnostics -----------------------------------------------------------------
    def _edi_schedule(self) -> None:
        """Tell EDI the fraction of training done (drives ``train_recall="scheduled"``)."""
        if self.model.edi is not None:
            self.model.edi.set_progress(self.step / max(1, self.cfg.optim.steps))

    def _edi_diagnostics(self) -> dict[str, Tensor]:
        """EDI's addressing diagnostics of this step as ``edi/<name>`` (entropy, slot usage, recall gaps;
        see :attr:`plugtalk.EDI.diagnostics`); empty without a training EDI."""
        edi = self.model.edi
        if edi is None or not edi.training:
            return {}
        return {f"edi/{k}": v.detach() for k, v in edi.diagnostics.items()}

    # -- one step ---------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _guard(self, values: dict[str, Tensor], kind: str = "loss") -> None:
        """Stop (on every rank) when a value is NaN/inf, naming the step and the value."""
        flags = torch.stack([(~torch.isfinite(v.detach().float())).any() for v in values.values()]).float()
        flags = self.dist.all_reduce_max(flags)
        if bool(flags.any()):
            bad = [k for k, f in zip(values, flags.tolist()) if f]
            bad = [k for k in bad if k != "total"] or bad  # a total is non-finite because of its terms
            shown = ", ".join(f"{k}={values[k].detach().float().item():.4g}" for k in bad)
            last = latest_checkpoint(self.checkpoint_root)
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1}: non-finite {kind} {', '.join(map(repr, bad))} "
                f"({shown} on rank {self.dist.rank}); stopped before the update, nothing was saved for this step "
                f"(last checkpoint: {last.name if last else 'none'})", self.step + 1, bad)

    def _clip(self, params: list[nn.Parameter], name: str) -> Tensor:
        max_norm = self.cfg.optim.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self._guard({f"gradient norm of the {name}": norm}, kind="value")
        return norm

    def train_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One generator + discriminator update on ``batch``; returns the (detached) logged values."""
        w = self.cfg.loss
        inputs = {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
        D = self.discriminator
        set_train_mode(self.g_net, self.model)
        self._edi_schedule()

        # generator
        if D is not None:
            D.requires_grad_(False)
        with self._autocast():
            objective = self.stage.objective(self.g_net, inputs, self)
            fake, target = objective.fake, objective.target
            wanted = self.stage.losses
            losses: dict[str, Tensor] = {}
            rendered = fake is not None
            if rendered and "rec" in wanted and "rec" not in objective.losses:
                losses["rec"] = reconstruction_loss(fake.float(), target)
            if rendered and self.perceptual is not None and "per" in wanted:
                losses["per"] = self.perceptual(fake, target)
            if rendered and D is not None:
                if self.feature_matching:
                    logits, fake_feats = D(fake, features=True)
                    with torch.no_grad():
                        _, real_feats = D(target, features=True)
                    if "per" in wanted:
                        losses["per"] = feature_matching_loss(fake_feats, real_feats)
                else:
                    logits = D(fake)
                if w.adv > 0 and "adv" in wanted:
                    losses["adv"] = generator_adversarial_loss(logits)
            losses.update({k: v.float() for k, v in objective.losses.items() if k in wanted})
        total = sum(self.loss_weight(k) * v for k, v in losses.items())
        self._guard({**losses, "total": total})
        self.g_opt.zero_grad(set_to_none=True)
        total.backward()
        logged = {f"loss/{k}": v.detach() for k, v in losses.items()}
        logged["loss/total"] = total.detach()
        if self.model.emi is not None:
            logged["emi/gate"] = torch.tensor(self.model.emi.bridge_gate, device=total.device)
        logged.update(self._edi_diagnostics())
        logged["grad_norm/generator"] = self._clip(self.g_params, "generator").detach()
        self.g_opt.step()
        self.g_sched.step()

        # discriminator
        if D is not None and fake is not None:
            D.requires_grad_(True)
            n = fake.shape[0]
            with self._autocast():
                logits = self.d_net(torch.cat([fake.detach(), target]))
                d_loss = discriminator_loss(logits[n:], logits[:n])
            self._guard({"discriminator": d_loss})
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self._clip(list(D.parameters()), "discriminator")
            self.d_opt.step()
            logged["loss/discriminator"] = d_loss.detach()
            if w.r1_gamma > 0 and (self.step + 1) % w.r1_every == 0:
                real = target.detach().requires_grad_(True)
                r1 = r1_penalty(self.d_net(real), real)  # fp32: a second derivative
                self._guard({"r1": r1})
                self.d_opt.zero_grad(set_to_none=True)
                (w.r1_gamma / 2 * w.r1_every * r1).backward()
                self.d_opt.step()
                logged["loss/r1"] = r1.detach()
            self.d_sched.step()
        if fake is not None:
            source = inputs.get("source")
            shown = source if source is not None and len(source) == len(fake) else target
            self.last_batch = (shown, target, fake.detach())
        return logged

    # -- the loop ---------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train until ``optim.steps``; returns the last logged scalars."""
        cfg = self.cfg
        total_steps = cfg.optim.steps
        monitor = TrainMonitor(self.output, total_steps, self.step, enabled=self.dist.is_main,
                               progress=cfg.log.progress)
        if self.dist.is_main:
            parts = ", ".join(f"{k} {t / 1e6:.2f}/{n / 1e6:.2f} M" for k, (t, n) in describe(self.model).items())
            monitor.message(f"stage {cfg.stage}: trainable/total parameters {parts}; {self.dist.world_size} "
                            f"process(es) on {self.device.type}, batch {self.local_batch} per process, "
                            f"{'bf16' if self.amp_dtype else 'fp32'}"
                            + (f"; resumed from {self.resumed_from.name}" if self.resumed_from else ""))
        sums: dict[str, Tensor] = {}
        count, tick, last = 0, time.perf_counter(), {}
        saved_at = self.step if self.resumed_from else -1
        try:
            while self.step < total_steps:
                for batch in self._loader():
                    logged = self.train_step(batch)
                    self.step += 1
                    self._apply_bridge()
                    self.batch_in_epoch += 1
                    rolled = self.batch_in_epoch >= self.batches_per_epoch
                    if rolled:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                    for k, v in logged.items():
                        sums[k] = sums.get(k, 0) + v.float()
                    count += 1
                    monitor.advance()
                    if self.step % cfg.log.every == 0 or self.step == total_steps:
                        last = self._log(monitor, sums, count, time.perf_counter() - tick)
                        sums, count, tick = {}, 0, time.perf_counter()
                    if cfg.log.image_every and self.step % cfg.log.image_every == 0 and self.last_batch:
                        monitor.images(self.step, *self.last_batch, rows=cfg.log.num_images)
                    if self.step % cfg.log.checkpoint_every == 0:
                        self.save_checkpoint()
                        saved_at = self.step
                    if rolled or self.step >= total_steps:
                        break
            if self.stage.finish is not None and self.step >= total_steps:
                self.stage.finish(self)
            if saved_at != self.step:
                self.save_checkpoint()
            if self.drives_bridge and self.step >= total_steps and self.model.emi.bridge_gate != 0.0:
                raise PlugtalkError(f"EMI's latent bridge is still open (gate {self.model.emi.bridge_gate}) at the "
                                    "end of training")  # unreachable: emi_bridge is validated to close by the end
            if self.dist.is_main:
                final = self.model.save_pretrained(self.output / MODEL_FILE, self._model_metadata())
                monitor.message(f"done: step {self.step}; model written to {final}")
            self.dist.barrier()
        finally:
            monitor.close()
        return last

    def _log(self, monitor: TrainMonitor, sums: dict[str, Tensor], count: int, seconds: float) -> dict[str, float]:
        keys = sorted(sums)
        vec = torch.stack([sums[k] / count for k in keys]) if keys else torch.zeros(0, device=self.device)
        vec = self.dist.all_reduce_mean(vec)
        values = {k: float(v) for k, v in zip(keys, vec.tolist())}
        values["lr/generator"] = self.g_opt.param_groups[0]["lr"]
        if self.d_opt is not None:
            values["lr/discriminator"] = self.d_opt.param_groups[0]["lr"]
        values["speed/images_per_s"] = count * self.cfg.data.batch_size / max(seconds, 1e-9)
        monitor.scalars(self.step, values)
        return values

    # -- checkpoints ------------------------------------------------------------------------------------
    def _model_metadata(self) -> dict[str, Any]:
        return {"training": {"stage": self.cfg.stage, "step": self.step}}

    def state_dict(self) -> dict[str, Any]:
        """Training state (without the weights), weights-only loadable."""
        return {
            "kind": _STATE_KIND, "format": 1, "step": self.step, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "world_size": self.dist.world_size,
            "local_batch": self.local_batch,
            "g_optimizer": self.g_opt.state_dict(), "g_scheduler": self.g_sched.state_dict(),
            "d_optimizer": self.d_opt.state_dict() if self.d_opt is not None else None,
            "d_scheduler": self.d_sched.state_dict() if self.d_sched is not None else None,
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` (rank 0; every rank contributes its RNG state)."""
        rng = self.dist.gather_objects(capture_rng())
        path = None
        if self.dist.is_main:
            state = {**self.state_dict(), "rng": rng}
            path = save_checkpoint(self.checkpoint_root, self.step, self.model, self.discriminator, state,
                                   keep_last=self.cfg.log.keep_last, model_metadata=self._model_metadata())
        self.dist.barrier()
        return path

    def _load_discriminator(self, path: str) -> None:
        tensors, meta = load_safetensors(path, self.device)
        if meta.get("kind") != Discriminator.kind:
            raise CheckpointError(f"{path!r} is not a discriminator file (kind={meta.get('kind')!r})")
        load_state_dict_checked(self.discriminator, tensors, repr(path))

    def _resume(self) -> None:
        if self.dist.is_main:
            remove_partials(self.checkpoint_root)
        self.dist.barrier()
        folder = latest_checkpoint(self.checkpoint_root)
        if folder is None:
            if self.dist.is_main:  # a warning on stderr (the CLI's ``warning:`` line), not a stdout line lost in logs
                warnings.warn(f"--resume: no checkpoint in {self.checkpoint_root}; starting from step 0", stacklevel=2)
            return
        state = load_state(folder)
        old, new = state["config"], self.cfg.to_dict()
        changed = [k for k in _RESUME_KEYS if _get(old, k) != _get(new, k)]
        if changed:
            raise InputError(f"cannot resume from {folder}: the config changed {changed} (only optimisation length, "
                             "logging and loss weights may change on resume)")
        if state["world_size"] != self.dist.world_size:
            raise InputError(f"cannot resume {folder} (written by {state['world_size']} process(es)) with "
                             f"{self.dist.world_size}: the data order and per-process batches would differ")
        load_training_weights(self.model, folder / MODEL_FILE, self.device)
        if self.discriminator is not None:
            self._load_discriminator(str(folder / DISCRIMINATOR_FILE))
        self.g_opt.load_state_dict(state["g_optimizer"])
        self.g_sched.load_state_dict(state["g_scheduler"])
        if self.d_opt is not None and state["d_optimizer"] is not None:
            self.d_opt.load_state_dict(state["d_optimizer"])
            self.d_sched.load_state_dict(state["d_scheduler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        restore_rng(state["rng"][self.dist.rank])
        self.resumed_from = folder


def _seed_all(seed: int, keep: bool = False) -> None:
    """Seed python, numpy and torch (``keep``: leave the restored states of a resumed run alone)."""
    if keep:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
