"""A generic adapter for any encoder-decoder animator, reached through forward hooks by layer name.

For an animator ``model(source, driving) -> image`` that plugtalk does not know, name:

* the encoder and, per pyramid level, where its output lives (``HookSite``s within *one* encoder
  call, e.g. ``HookSite("enc.blocks.2")`` or ``HookSite("enc", output=(1, 2))``);
* where the latent lives, and the module whose *input* is the motion code EMI replaces
  (``HookSite("enc.fc", kind="input")``), with its call index in the full forward pass;
* which encoder call of the full forward pass encodes the source (``source_call``, default 0) and
  which the driving frame (``driving_call``; default: the first other call, if the encoder runs more
  than once).

``encode`` runs the encoder alone and reads the levels; ``decode`` runs the full forward pass with
every level of the skip pyramid and the source latent (as the retrofitted model holds them: EDI's
fused map, or a probe's patched value) written over the source call's outputs, the driving frame's
levels and latent (as the retrofitted model holds them: a probe's ``s->d`` swap) over the driving
call's, and the motion code written into the motion module's input.  So an animator that reads its
driving frame's features (not only its motion code) sees every swap.  The encoder therefore runs
again inside ``decode`` (a generic adapter cannot skip it); the backbone's own weights are untouched.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..backbones.base import Encoding
from ..errors import InputError
from ..features import FeatureSpec, LevelInfo
from ..hooks import HookSite, capture, patch, resolve_module
from .base import Adapter, Motion, Tap, identity_tap

__all__ = ["HookAdapter"]


def _site(value: str | HookSite, **defaults: Any) -> HookSite:
    return value if isinstance(value, HookSite) else HookSite(value, **defaults)


class HookAdapter(Adapter):
    """Adapter for an arbitrary ``nn.Module`` animator, given layer names.

    Args:
        model: the animator; ``forward(model, source, driving)`` must return the image.
        encoder: path of the encoder submodule (called once per image).
        pyramid: one site per pyramid level, coarse to fine, relative to a single encoder call.
        latent: site of the latent within a single encoder call.
        motion_input: site, in the full forward pass, of the value EMI's code replaces (usually the
            input of the motion head: ``HookSite("fc", kind="input")``).
        image_size: input resolution (square).
        forward: how to run the animator (default ``model(source, driving)``).
        encode: how to run the encoder alone on one image (default ``encoder_module(image)``).
        source_call: which call of ``encoder`` in the full forward pass encodes the source.
        driving_call: which call encodes the driving frame; ``"auto"`` (default): the first call other than
            ``source_call`` when the encoder runs more than once in a forward pass, else none; ``None``:
            the driving frame's features are never written (only its motion code reaches the animator).
        identity_level: index of the identity-carrying level (default: the level nearest 32 px at 256).

    Raises:
        KeyError: a layer name that does not exist (listing close names).
    """

    drivers = ("driving",)
    driving_fills = ("driving",)
    wants_images = True
    wants_encodings = True

    def __init__(self, model: nn.Module, *, encoder: str, pyramid: Sequence[str | HookSite],
                 latent: str | HookSite, motion_input: str | HookSite, image_size: int,
                 forward: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
                 encode: Callable[[nn.Module, Tensor], Any] | None = None,
                 source_call: int = 0, driving_call: int | str | None = "auto", identity_level: int | None = None):
        super().__init__(model)
        self.encoder_path = encoder
        resolve_module(model, encoder)
        self.pyramid_sites = [_site(p) for p in pyramid]
        self.latent_site = _site(latent)
        self.motion_site = _site(motion_input, kind="input")
        for s in [*self.pyramid_sites, self.latent_site, self.motion_site]:
            resolve_module(model, s.module)
        self._image_size = image_size
        self._forward = forward or (lambda m, s, d: m(s, d))
        self._encode = encode or (lambda m, x: resolve_module(m, encoder)(x))
        self.source_call = source_call
        if not (driving_call is None or driving_call == "auto" or (isinstance(driving_call, int) and driving_call >= 0
                                                                   and driving_call != source_call)):
            raise InputError(f"HookAdapter: driving_call must be 'auto', None or a call index other than "
                             f"source_call ({source_call}), got {driving_call!r}")
        self._driving_call = driving_call
        self._encoder_calls: int | None = None
        self._identity_level = identity_level
        self._spec: FeatureSpec | None = None

    @property
    def image_size(self) -> int:
        return self._image_size

    def _in_encoder(self, site: HookSite) -> bool:
        return site.module == self.encoder_path or site.module.startswith(self.encoder_path + ".")

    @property
    def driving_call(self) -> int | None:
        """The encoder call of the full forward pass that encodes the driving frame (``None``: no such call,
        or ``driving_call=None`` given)."""
        if self._driving_call != "auto":
            return self._driving_call
        self.feature_spec  # counts the encoder's calls
        others = [i for i in range(self._encoder_calls or 0) if i != self.source_call]
        return others[0] if others else None

    def _full_forward_sites(self, driving: bool = False) -> dict[str, HookSite]:
        """Pyramid and latent sites re-addressed to the source call of the full forward pass (and, with
        ``driving``, to the driving call: ``driving.pyramid.i``, ``driving.latent``)."""
        sites = {}
        levels = [*((f"pyramid.{i}", s) for i, s in enumerate(self.pyramid_sites)), ("latent", self.latent_site)]
        for name, s in levels:
            call = self.source_call if self._in_encoder(s) else s.call
            sites[name] = HookSite(s.module, call=call, output=s.output, kind=s.kind)
        call = self.driving_call if driving else None
        if call is not None:
            for name, s in levels:
                if self._in_encoder(s):  # a site outside the encoder has no driving counterpart
                    sites[f"driving.{name}"] = HookSite(s.module, call=call, output=s.output, kind=s.kind)
        sites["motion_input"] = self.motion_site
        return sites

    @property
    def feature_spec(self) -> FeatureSpec:
        if self._spec is None:
            p = next(self.backbone.parameters(), None)
            x = torch.zeros(1, 3, self._image_size, self._image_size,
                            device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else None)
            with torch.no_grad():
                enc = self.encode(x)
                sites = {"m": self.motion_site, "encoder": HookSite(self.encoder_path, call=None)}
                with capture(self.backbone, sites) as cache:
                    self._forward(self.backbone, x, x)
            self._encoder_calls = len(cache["encoder"])
            if not cache["m"]:
                raise InputError(f"HookAdapter: {self.motion_site.describe()} never ran in a forward pass")
            motion_dim = cache["m"][0].shape[-1]
            levels = tuple(LevelInfo(f"pyramid.{i}", f.shape[1], f.shape[2], f.shape[3], s.module)
                           for i, (f, s) in enumerate(zip(enc.pyramid, self.pyramid_sites)))
            if self._identity_level is None:
                target = 32 * self._image_size / 256
                ident = min(range(len(levels)), key=lambda i: (abs(levels[i].height - target), -levels[i].height))
            else:
                ident = self._identity_level
            self._spec = FeatureSpec(levels, enc.latent.shape[-1], motion_dim, ident)
        return self._spec

    def encode(self, image: Tensor) -> Encoding:
        sites = {f"p{i}": s for i, s in enumerate(self.pyramid_sites)} | {"latent": self.latent_site}
        with capture(self.backbone, sites, detach=False) as cache:
            self._encode(self.backbone, image)
        missing = [k for k, v in cache.items() if not v]
        if missing:
            raise InputError(f"HookAdapter: {[sites[k].describe() for k in missing]} did not run when encoding")
        return Encoding(cache["latent"][0].flatten(1), tuple(cache[f"p{i}"][0] for i in range(len(self.pyramid_sites))))

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               images: Mapping[str, Tensor] | None = None, encodings: Mapping[str, Encoding] | None = None,
               **controls: Any) -> Motion:
        """Records what :meth:`decode` needs: the images (to rerun the animator), the driving motion code and
        the driving frame's encoding; the decoder style is the source latent (as given, e.g. patched by the
        probe)."""
        self.check_controls(controls)
        if "driving" not in codes or not images or "driving" not in images:
            raise InputError("HookAdapter: a driving frame is required")
        condition = {"source_image": images["source"], "driving_image": images["driving"], "code": codes["driving"]}
        if encodings and "driving" in encodings:
            enc = encodings["driving"]
            condition["driving_latent"] = enc.latent
            condition.update({f"driving_pyramid_{i}": f for i, f in enumerate(enc.pyramid)})
        return Motion(source.latent, condition)

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        """Rerun the animator with the source call's latent and every pyramid level replaced by the given
        ones (``motion.latent``, ``pyramid``), the driving call's by the driving encoding :meth:`motion`
        recorded, and the motion module's input by the driving motion code.

        Every level is written, not only those that differ from the encoder's own output: a value the
        caller changed upstream (a probe's ``d->s`` swap of ``source.pyramid.i`` or ``source.latent``)
        cannot be told from the encoder's by identity, and writing an unchanged value changes nothing.
        The latent is written in the encoder's layout (``encode`` flattens it to ``(B, latent_dim)``).
        """
        cond = motion.condition
        sites = self._full_forward_sites(driving="driving_latent" in cond)
        replacements: dict[str, Any] = {"motion_input": cond["code"],
                                        "latent": lambda old, new=motion.latent: new.reshape(old.shape)}
        replacements.update({f"pyramid.{i}": level for i, level in enumerate(pyramid)})
        if "driving.latent" in sites:
            replacements["driving.latent"] = lambda old, new=cond["driving_latent"]: new.reshape(old.shape)
            replacements.update({f"driving.pyramid.{i}": cond[f"driving_pyramid_{i}"] for i in range(len(pyramid))
                                 if f"driving.pyramid.{i}" in sites})
        with patch(self.backbone, sites, replacements):
            return self._forward(self.backbone, cond["source_image"], cond["driving_image"])
