"""``plugtalk.retrofit``: wrap an adapter-backed animator with FixTalk's EMI and/or EDI.

The retrofitted forward pass (FixTalk main paper Eq. 1 and Sec. 4):

1. encode the source and every driving frame (one encoder pass per distinct tensor);
2. motion codes: ``z = EMI(pyramid, latent)`` for the source and each driver (without EMI, the
   backbone's plain motion input, i.e. the latent);
3. skips: the source pyramid, with the identity-carrying level replaced by ``EDI(f_id^s, z_s, z_d)``
   (training: with the driving map, giving ``L_dmem`` and ``L_align``; inference: recalled through
   the motion-source memory, no driving map).  With several drivers (EDTalk's mouth / pose /
   expression videos) ``z_d`` is their *combined* code (:meth:`Retrofitted.combined_code`), which also
   enters EMI's ``L_dis``;
4. motion through the backbone's own heads (:meth:`Adapter.motion`), then decode.

Every value on the way passes through a named hook point (``source.latent``, ``source.pyramid.2``,
``driving.motion_code``, ``skip.2``, ``latent``, ...) so the probe can read and patch it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .adapters.base import Adapter
from .backbones.base import Encoding, check_image
from .checks import check_dtype
from .weights.plugtalk_format import load_safetensors, save_safetensors
from .weights.configurable import build_from_file, load_state_dict_checked
from .edi import EDI
from .emi import EMI, distill_loss
from .errors import CheckpointError, InputError
from .hooks import TapSet

__all__ = ["retrofit", "Retrofitted", "RetrofitOutput", "SourceState", "DriverState", "load_retrofitted"]


class RetrofitOutput(NamedTuple):
    """Training-mode result: the image and the module losses (``dis``, ``distill``, ``dmem``, ``align`` as
    present; ``distill`` only while EMI's latent bridge is open, ``dis`` only once it starts closing)."""

    image: Tensor
    losses: dict[str, Tensor]


@dataclasses.dataclass
class SourceState:
    """An encoded source: image ``(B, 3, S, S)``, its (tapped) encoding and motion code ``z_s (B, D)``;
    ``free``: EMI's leak-free code (differs from ``code`` only while EMI's latent bridge is open)."""

    image: Tensor
    encoding: Encoding
    code: Tensor
    free: Tensor | None = None

    def expand(self, batch: int) -> "SourceState":
        """Broadcast a batch-1 source to ``batch`` (views, no copies)."""
        if self.code.shape[0] != 1:
            raise InputError(f"source batch {self.code.shape[0]} does not match driver batch {batch}")
        ex = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731
        return SourceState(ex(self.image), Encoding(ex(self.encoding.latent), tuple(map(ex, self.encoding.pyramid))),
                           ex(self.code), None if self.free is None else ex(self.free))


@dataclasses.dataclass
class DriverState:
    """Encoded drivers: per driver name, its (tapped) encoding, motion code and image; ``free``: EMI's
    leak-free codes (training only, while EMI's latent bridge is open)."""

    encodings: dict[str, Encoding]
    codes: dict[str, Tensor]
    images: dict[str, Tensor]
    free: dict[str, Tensor] = dataclasses.field(default_factory=dict)


class Retrofitted(nn.Module):
    """An animator with EMI and/or EDI plugged in (see the module docstring for the data flow).

    ``forward(source, driving=None, **drivers_and_controls)``:

    * ``source``: ``(B, 3, S, S)`` in [-1, 1];
    * ``driving``: ``(B, 3, S, S)`` frames driving every driver of the adapter that is not given
      separately (EDTalk: ``mouth=``, ``pose=``, ``expression=`` frames; LIA: ``start=`` for
      relative motion);
    * other keyword arguments go to the adapter (EDTalk: ``mouth_coefficients``, ``pose_coefficients``,
      ``expression_weights``).

    Returns the image ``(B, 3, S, S)`` in eval mode, and a :class:`RetrofitOutput` (image + losses)
    in training mode.  Inference never uses the driving frame's identity-level map.

    Attributes:
        adapter, emi, edi: the parts; ``taps``: the :class:`~plugtalk.hooks.TapSet` of hook points.
        frozen_backbone: the backbone's parameters do not require gradients and it stays in eval mode.
    """

    def __init__(self, adapter: Adapter, emi: EMI | None = None, edi: EDI | None = None,
                 freeze_backbone: bool = True):
        super().__init__()
        spec = adapter.feature_spec
        if emi is not None and not adapter.accepts_emi:
            raise InputError(f"{type(adapter).__name__}: EMI cannot be plugged into {adapter.backbone.name}: no driving "
                             "image enters this animator, so there is no driving motion code for EMI to compute; "
                             "use EDI alone (emi=None)")
        if emi is not None:
            emi.check_spec(spec)
        if edi is not None:
            edi.check_spec(spec)
        self.adapter, self.emi, self.edi = adapter, emi, edi
        self.spec = spec
        self.frozen_backbone = freeze_backbone
        if freeze_backbone:
            adapter.backbone.requires_grad_(False)
        n = len(spec.levels)
        names = ["source.latent", *(f"source.pyramid.{i}" for i in range(n)), "source.motion_code"]
        for d in adapter.drivers:
            names += [f"{d}.latent", *(f"{d}.pyramid.{i}" for i in range(n)), f"{d}.motion_code"]
        names += [*adapter.tap_names(), *(f"skip.{i}" for i in range(n)), "latent", "image"]
        self.taps = TapSet(names)

    # -- modes ----------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Retrofitted":
        super().train(mode)
        if self.frozen_backbone:
            self.adapter.backbone.eval()
        return self

    @property
    def backbone(self) -> nn.Module:
        return self.adapter.backbone

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- forward --------------------------------------------------------------------------------------
    def _motion_code(self, prefix: str, enc: Encoding, cache: dict | None = None) -> tuple[Tensor, Tensor]:
        """``(z, z_free)`` of one encoded frame, ``z`` through its hook point (``z_free is z`` unless EMI's
        latent bridge is open).  ``cache``: codes by encoding (tensor identities), so that one frame
        driving several drivers (EDTalk's banks) runs EMI once unless a hook changed one driver's inputs."""
        key = (id(enc.latent), *map(id, enc.pyramid))
        if cache is not None and key in cache:
            code, free = cache[key]
        elif self.emi is None:
            code = free = self.adapter.motion_input(enc)
        else:
            code, free = self.emi.codes(enc.pyramid, enc.latent)
        if cache is not None:
            cache[key] = (code, free)
        z = self.taps(f"{prefix}.motion_code", code)
        return z, (z if free is code else free)

    def _tapped(self, prefix: str, enc: Encoding) -> Encoding:
        latent = self.taps(f"{prefix}.latent", enc.latent)
        return Encoding(latent, tuple(self.taps(f"{prefix}.pyramid.{i}", f) for i, f in enumerate(enc.pyramid)))

    def split_inputs(self, driving: Tensor | None, inputs: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Split keyword inputs into driver frames and adapter controls (``driving`` fills the rest)."""
        a = self.adapter
        frames = {d: inputs.pop(d) for d in a.drivers if inputs.get(d) is not None}
        for d in a.drivers:
            inputs.pop(d, None)
        controls = {k: v for k, v in inputs.items() if v is not None}
        replaced = {a.control_replaces.get(k) for k in controls}
        if driving is not None:
            for d in a.driving_fills:
                if d not in frames and d not in replaced:
                    frames[d] = driving
        return frames, controls

    def forward(self, source: Tensor, driving: Tensor | None = None, *, start: Tensor | None = None,
                **inputs: Any) -> Tensor | RetrofitOutput:
        """Animate ``source``; see the class docstring.

        Args:
            start: optional first driving frame ``(B, 3, S, S)`` for *relative* motion: every driver's code
                becomes ``z_s + z_d - z_start``.  The LIA family's motion heads are affine and its
                dictionaries linear, so this is exactly LIA's relative mode (official vox/taichi demo).

        Source batch 1 with driver batch T renders T frames of the one source.

        Raises:
            InputError: bad shapes/sizes/ranges, batch mismatch, no driver, or unknown adapter options.
        """
        size = self.adapter.image_size
        check_image(source, "source", size)
        check_dtype(source, self, type(self).__name__, "source")
        frames, controls = self.split_inputs(driving, dict(inputs))
        batch = None
        for name, f in [*frames.items(), *([("start", start)] if start is not None else [])]:
            check_image(f, name, size, batch=batch if batch is not None else
                        (source.shape[0] if source.shape[0] > 1 else None))
            batch = f.shape[0]
        if not frames and not controls:
            raise InputError(f"{type(self.adapter).__name__}: give a driving frame ({', '.join(self.adapter.drivers)})")
        return self.reenact(source, frames, controls, start)

    def encode_source(self, source: Tensor) -> SourceState:
        """Encode the source once (latent, pyramid and its motion code ``z_s``), through the hook points."""
        enc = self._tapped("source", self.adapter.encode(source))
        return SourceState(source, enc, *self._motion_code("source", enc))

    def encode_drivers(self, frames: dict[str, Tensor]) -> DriverState:
        """Encode each distinct driving tensor once and compute every driver's motion code."""
        encoded: dict[int, Encoding] = {}
        codes: dict[tuple, tuple[Tensor, Tensor]] = {}
        state = DriverState({}, {}, dict(frames))
        for name, image in frames.items():
            if id(image) not in encoded:
                encoded[id(image)] = self.adapter.encode(image)
            state.encodings[name] = self._tapped(name, encoded[id(image)])
            state.codes[name], state.free[name] = self._motion_code(name, state.encodings[name], codes)
        return state

    def start_code(self, start: Tensor) -> Tensor:
        """Motion code of a relative-motion start frame (no hook points: it only shifts the codes)."""
        enc = self.adapter.encode(start)
        return self.emi(enc.pyramid, enc.latent) if self.emi is not None else self.adapter.motion_input(enc)

    @staticmethod
    def combined_code(codes: dict[str, Tensor], fallback: Tensor) -> Tensor:
        """The one driving code EDI's query and EMI's L_dis see: the mean of the codes of the distinct
        driving frames that reach the decoder (EDTalk: the mouth, pose and expression frames, a frame that
        drives several banks counted once - its code is one tensor; LIA/DPE: the one driver), ``fallback``
        (the source's code) when no frame drives (coefficients only).

        Why the mean: when one video drives every bank (training, and ``driving=``) it is exactly that
        video's code, so training and inference agree; every driver moves it (EDTalk's pose video reaches
        EDI, the case EDI exists for); and it stays on the scale of one code, to which EDI's mapping and the
        cosine of L_dis are tuned.  A sum of codes, or of offsets from the source, grows with the number of
        drivers, and each driver's code already holds that frame's whole motion (mouth, pose and
        expression), so summing offsets would count each motion once per driver.
        """
        # one frame's code is one tensor (or views of the same memory, e.g. a batch sliced per driver); an
        # exporter's fake tensors have no memory (and their shapes are symbolic): there the objects decide
        def key(z: Tensor):
            if torch.compiler.is_compiling():
                return id(z)
            return z.data_ptr(), tuple(z.shape), z.stride()

        values = list({key(z): z for z in codes.values()}.values())
        if not values:
            return fallback
        return values[0] if len(values) == 1 else torch.stack(values).mean(dim=0)

    def _driving_map(self, drivers: DriverState, k: int) -> Tensor:
        """EDI's training target ``f_k^d``: the identity-level map of the driving frame(s), averaged over the
        distinct driving tensors (one frame in training, where ``driving=`` fills every driver)."""
        maps: dict[int, Tensor] = {}
        for name, enc in drivers.encodings.items():
            maps.setdefault(id(drivers.images.get(name, enc)), enc.pyramid[k])
        values = list(maps.values())
        return values[0] if len(values) == 1 else torch.stack(values).mean(dim=0)

    def _emi_losses(self, source: SourceState, drivers: DriverState, z_s_free: Tensor, z_d_free: Tensor
                    ) -> dict[str, Tensor]:
        """EMI's training losses for the bridge's state: ``dis`` (Eq. 4, on the leak-free codes) once the gate
        is below 1, ``distill`` (leak-free codes onto the backbone's motion inputs) while it is above 0."""
        gate = self.emi.bridge_gate
        losses = {}
        if gate < 1.0:
            losses["dis"] = self.emi.disentangle_loss(z_s_free, z_d_free)
        if gate > 0.0:
            frees = [source.free if source.free is not None else source.code]
            targets = [self.adapter.motion_input(source.encoding)]
            for name, enc in drivers.encodings.items():
                frees.append(drivers.free.get(name, drivers.codes[name]))
                targets.append(self.adapter.motion_input(enc))
            losses["distill"] = distill_loss(torch.cat(frees), torch.cat(targets))
        return losses

    def render(self, source: SourceState, drivers: DriverState, controls: dict[str, Any] | None = None,
               start_code: Tensor | None = None, driving_code: Tensor | None = None) -> Tensor | RetrofitOutput:
        """Render from an encoded source and encoded drivers (source batch 1 broadcasts to the drivers').

        ``driving_code`` ``(B, D)``: the code EDI's query (and L_dis) use, given explicitly (an exported graph
        takes it as an input); default :meth:`combined_code` of the drivers' codes, shifted like them when
        ``start_code`` is given."""
        codes = dict(drivers.codes)
        # motion codes from non-image controls (GoHD: the coefficient window's embedding)
        from_controls, controls = self.adapter.control_codes(dict(controls or {}), self.taps)
        batch = next((c.shape[0] for c in [*codes.values(), *from_controls.values()]), source.code.shape[0])
        if source.code.shape[0] != batch:
            source = source.expand(batch)
        src, z_s = source.encoding, source.code
        z_d = self.combined_code({**codes, **from_controls}, z_s)
        if start_code is not None:  # relative motion: the mean commutes with the shift
            codes = {d: z_s + z - start_code for d, z in codes.items()}
            z_d = z_s + z_d - start_code
        if driving_code is not None:
            z_d = driving_code
        codes.update(from_controls)
        losses: dict[str, Tensor] = {}
        if self.emi is not None and self.training and codes:
            z_s_free = source.free if source.free is not None else z_s
            z_d_free = self.combined_code({d: drivers.free.get(d, z) for d, z in drivers.codes.items()}, z_s_free)
            losses.update(self._emi_losses(source, drivers, z_s_free, z_d_free))

        skips = list(src.pyramid)
        if self.edi is not None:
            k = self.spec.identity_level
            if self.training and self.edi.training and drivers.encodings:  # a frozen EDI (eval) runs as at inference
                out = self.edi.forward_train(skips[k], self._driving_map(drivers, k), z_s, z_d)
                losses.update(out.losses)
            else:
                out = self.edi.forward_inference(skips[k], z_s, z_d)
            skips[k] = out.fused
        skips = [self.taps(f"skip.{i}", f) for i, f in enumerate(skips)]

        if self.adapter.wants_images:
            controls["images"] = {"source": source.image, **drivers.images}
        if self.adapter.wants_encodings:
            controls["encodings"] = dict(drivers.encodings)
        motion = self.adapter.motion(src, z_s, codes, tap=self.taps, **controls)
        motion.latent = self.taps("latent", motion.latent)
        image = self.taps("image", self.adapter.decode(motion, skips))
        return RetrofitOutput(image, losses) if self.training else image

    def reenact(self, source: Tensor, frames: dict[str, Tensor], controls: dict[str, Any],
                start: Tensor | None = None) -> Tensor | RetrofitOutput:
        """:meth:`forward` without input validation: ``render(encode_source, encode_drivers)``."""
        return self.render(self.encode_source(source), self.encode_drivers(frames), controls,
                           None if start is None else self.start_code(start))

    # -- persistence ----------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None) -> Path:
        """One safetensors file: backbone, EMI and EDI weights, with all configs in its metadata."""
        backbone = self.adapter.backbone
        meta = {"kind": "retrofit", "backbone": backbone.name, "backbone_config": backbone.config_dict(),
                "adapter_options": self.adapter.options(),
                "emi_config": self.emi.config_dict() if self.emi is not None else None,
                "edi_config": self.edi.config_dict() if self.edi is not None else None,
                "frozen_backbone": self.frozen_backbone, **(extra_metadata or {})}
        tensors = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        for part in ("emi", "edi"):
            module = getattr(self, part)
            if module is not None:
                tensors.update({f"{part}.{k}": v for k, v in module.state_dict().items()})
        return save_safetensors(tensors, path, meta)


def _build_module(cls, value, spec, passthrough: bool):
    if value is None or value is False:
        return None
    if isinstance(value, cls):
        return value
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise TypeError(f"retrofit: {cls.__name__.lower()} must be an {cls.__name__}, a dict of config overrides, "
                        f"True or None; got {type(value).__name__}")
    module = cls.from_spec(spec, **value)
    return module.init_passthrough() if passthrough else module


def retrofit(adapter: Adapter | nn.Module, emi: EMI | dict | bool | None = True, edi: EDI | dict | bool | None = True,
             freeze_backbone: bool = True, init: str = "passthrough", **adapter_options: Any) -> Retrofitted:
    """Plug EMI and/or EDI into an animator.

    Args:
        adapter: an :class:`~plugtalk.adapters.Adapter`, or a plugtalk backbone (its adapter is made
            with ``adapter_options``, e.g. DPE's ``mode``, or ``identity_level``: the pyramid level EMI
            reads and EDI restores, e.g. the one ``plugtalk probe`` ranks first).
        emi, edi: a module, a dict of config overrides (built from the adapter's feature spec), ``True``
            (defaults) or ``None``/``False`` (leave it out).
        freeze_backbone: keep the (e.g. officially pretrained) backbone's weights fixed; only the
            modules train.  The backbone's weights are never modified by retrofitting.
        init: ``"passthrough"`` (modules built here start as the identity: ``z = latent`` - EMI's latent
            bridge open, see :mod:`plugtalk.emi` - and the fused map equals the source map, so the
            retrofitted model starts out reproducing the backbone until trained) or ``"random"`` (EMI's
            bridge closed from the start).

    Returns:
        A :class:`Retrofitted` model.
    """
    from .adapters import adapter_for

    if init not in ("passthrough", "random"):
        raise ValueError(f"retrofit: init must be 'passthrough' or 'random', got {init!r}")
    if not isinstance(adapter, Adapter):
        adapter = adapter_for(adapter, **adapter_options)
    elif adapter_options:
        raise TypeError("retrofit: adapter options are only accepted together with a backbone")
    spec = adapter.feature_spec
    passthrough = init == "passthrough"
    return Retrofitted(adapter, _build_module(EMI, emi, spec, passthrough), _build_module(EDI, edi, spec, passthrough),
                       freeze_backbone=freeze_backbone)


def load_retrofitted(path: str | os.PathLike, device: str | torch.device = "cpu") -> Retrofitted:
    """Rebuild a :class:`Retrofitted` from :meth:`Retrofitted.save_pretrained`'s file (eval mode).

    Raises:
        CheckpointError: unreadable file, not a retrofit file, or weights that do not fit.
    """
    from . import backbones
    from .adapters import adapter_for

    tensors, meta = load_safetensors(path, device)
    if meta.get("kind") != "retrofit":
        raise CheckpointError(f"{str(path)!r} is not a plugtalk retrofit file (kind={meta.get('kind')!r})")
    cls = backbones.get_backbone_class(meta["backbone"])
    origin = repr(str(path))

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    # each config is checked against the file's tensor shapes before its module is allocated
    backbone = build_from_file(cls, meta.get("backbone_config"), part("backbone."), origin)
    emi = build_from_file(EMI, meta["emi_config"], part("emi."), origin) if meta.get("emi_config") else None
    edi = build_from_file(EDI, meta["edi_config"], part("edi."), origin) if meta.get("edi_config") else None
    for prefix, module in (("backbone.", backbone), ("emi.", emi), ("edi.", edi)):
        part_ = part(prefix)
        if module is None:
            if part_:
                raise CheckpointError(f"{origin}: holds {prefix[:-1]} weights but no {prefix[:-1]} config")
            continue
        load_state_dict_checked(module, part_, origin)
    model = Retrofitted(adapter_for(backbone, **meta.get("adapter_options", {})), emi, edi,
                        freeze_backbone=meta.get("frozen_backbone", True))
    return model.to(device).eval()
