"""What the probe swaps: taps (one intermediate value, seen in the source and in the driving branch),
groups of taps, and the patched variants built from them.

A :class:`TapSpec` names a value and says where it lives in each branch as :class:`~plugtalk.hooks.HookSite`
s, e.g. FixTalk's ``f_4``: ``TapSpec("pyramid.2", HookSite("taps.source.pyramid.2"),
HookSite("taps.driving.pyramid.2"))`` inside a :class:`~plugtalk.retrofitting.Retrofitted` animator,
or, in a model plugtalk has never seen, the same encoder module at two calls:
``TapSpec("enc.block3", HookSite("enc.block3", call=0), HookSite("enc.block3", call=1))``.

A :class:`Variant` is one patched forward pass: a set of taps and a direction,

* ``"to_source"`` (``d->s``): the source branch gets the driving branch's value (FixTalk main paper
  Sec. 3.2 / Fig. 3: ``f_4^d`` in place of ``f_4^s``);
* ``"to_driving"`` (``s->d``): the driving branch gets the source branch's value (FixTalk suppl.
  Sec. 2.7, case (4): the source's motion feature in place of the driver's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import InputError
from ..features import FeatureSpec
from ..hooks import HookSite

__all__ = [
    "DIRECTIONS",
    "DIRECTION_ARROWS",
    "TapInfo",
    "TapSpec",
    "Variant",
    "animator_groups",
    "animator_taps",
    "build_variants",
    "select_taps",
    "site_from_json",
    "site_to_json",
    "unpaired_taps",
]

#: Patch directions: the driving value into the source branch, and the reverse.
DIRECTIONS = ("to_source", "to_driving")
DIRECTION_ARROWS = {"to_source": "d->s", "to_driving": "s->d"}


def site_to_json(site: HookSite) -> dict[str, Any]:
    d = dataclasses.asdict(site)
    if isinstance(d["output"], tuple):
        d["output"] = list(d["output"])
    return d


def site_from_json(d: Mapping[str, Any]) -> HookSite:
    out = d.get("output")
    return HookSite(module=d["module"], call=d.get("call", 0), output=tuple(out) if isinstance(out, list) else out,
                    kind=d.get("kind", "output"))


@dataclasses.dataclass(frozen=True)
class TapSpec:
    """One swappable intermediate value.

    Attributes:
        name: the tap's name in reports (e.g. ``"pyramid.2"``, ``"motion_code"``).
        source: where the value of the source branch lives.
        driving: where the driving branch's value lives; several sites when one driving frame feeds
            several drivers (EDTalk's mouth / pose / expression): the first is the donor for
            ``to_source`` patches, and ``to_driving`` patches replace all of them.
    """

    name: str
    source: HookSite
    driving: HookSite | tuple[HookSite, ...]

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise InputError(f"TapSpec: invalid name {self.name!r} (non-empty, no ':')")
        if isinstance(self.driving, HookSite):
            object.__setattr__(self, "driving", (self.driving,))
        if not self.driving:
            raise InputError(f"TapSpec {self.name!r}: needs at least one driving site")
        sites = [self.source, *self.driving]
        if len(set(sites)) != len(sites):
            raise InputError(f"TapSpec {self.name!r}: the source and driving sites must differ "
                             f"(give the call index: e.g. call=0 for the source, call=1 for the driving frame)")

    @property
    def driving_sites(self) -> tuple[HookSite, ...]:
        return self.driving  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": site_to_json(self.source),
                "driving": [site_to_json(s) for s in self.driving_sites]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TapSpec:
        return cls(d["name"], site_from_json(d["source"]), tuple(site_from_json(s) for s in d["driving"]))


@dataclasses.dataclass(frozen=True)
class TapInfo:
    """A tap as found in a forward pass (like timm's ``FeatureInfo``): name, where it lives, shape.

    Attributes:
        name: tap name.
        source, driving: human-readable sites (module path, output index, call).
        shape: the value's shape without the batch dimension, e.g. ``(512, 32, 32)``.
        dtype: the value's dtype, e.g. ``"torch.float32"``.
    """

    name: str
    source: str
    driving: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "driving": list(self.driving), "shape": list(self.shape),
                "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One patched forward pass: ``taps`` swapped in ``direction``.

    Attributes:
        name: a tap name or a group name.
        direction: ``"to_source"`` or ``"to_driving"`` (see the module docstring).
        taps: the tap names swapped together.
        group: ``True`` for a group of taps.
    """

    name: str
    direction: str
    taps: tuple[str, ...]
    group: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise InputError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not self.taps:
            raise InputError(f"variant {self.name!r}: no taps")

    @property
    def key(self) -> str:
        """Unique name, e.g. ``"pyramid.2:d->s"``."""
        return f"{self.name}:{DIRECTION_ARROWS[self.direction]}"

    @property
    def patch_key(self) -> tuple[frozenset[str], str]:
        """Variants with equal patch keys produce the same output (computed once)."""
        return frozenset(self.taps), self.direction

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "direction": self.direction, "taps": list(self.taps),
                "group": self.group}


# -- animators with named hook points (plugtalk.retrofitting.Retrofitted) --------------------------------

def _driving_branch(model) -> tuple[str, ...]:
    """Drivers a single driving frame fills (LIA/DPE: ``driving``; EDTalk: mouth, pose, expression)."""
    a = model.adapter
    return tuple(d for d in a.driving_fills if d in a.drivers)


def animator_taps(model) -> dict[str, TapSpec]:
    """Taps of a :class:`~plugtalk.retrofitting.Retrofitted` animator, paired by name across branches.

    ``source.<x>`` pairs with ``<driver>.<x>`` for every driver the driving frame fills, giving
    ``latent``, ``pyramid.0`` .. ``pyramid.{n-1}`` (coarse to fine) and ``motion_code``; the adapter's
    :meth:`~plugtalk.adapters.Adapter.paired_taps` add more (EDTalk: ``fdm.mouth.alpha``,
    ``fdm.pose.alpha``, ``fdm.expression.alpha``, ``fdm.alpha``, ``fdm.direction``).  Hook-point module
    paths are ``taps.<hook point>`` (call 0: each hook point runs once per forward pass).
    """
    names = set(model.taps.names())
    drivers = _driving_branch(model)
    out: dict[str, TapSpec] = {}
    for n in model.taps.names():
        if not n.startswith("source."):
            continue
        x = n[len("source."):]
        partners = [f"{d}.{x}" for d in drivers if f"{d}.{x}" in names]
        if partners:
            out[x] = TapSpec(x, HookSite(f"taps.{n}", call=0), tuple(HookSite(f"taps.{p}", call=0) for p in partners))
    for x, (src, drv) in model.adapter.paired_taps().items():  # e.g. EDTalk's FDM outputs
        out[x] = TapSpec(x, HookSite(f"taps.{src}", call=0), tuple(HookSite(f"taps.{p}", call=0) for p in drv))
    return out


def unpaired_taps(model) -> list[str]:
    """Hook points of a Retrofitted animator that have no counterpart in the other branch (motion
    coefficients, directions, skips, decoder latent, image): they can be captured but not swapped."""
    taps = animator_taps(model)
    paired = {t.source.module.removeprefix("taps.") for t in taps.values()}
    paired |= {s.module.removeprefix("taps.") for t in taps.values() for s in t.driving_sites}
    return [n for n in model.taps.names() if n not in paired]


def animator_groups(spec: FeatureSpec) -> dict[str, tuple[str, ...]]:
    """FixTalk's groups (main paper Fig. 3 c-e) in the animator's tap names.

    ``pyramid``: every level (FixTalk's ``f_1:5``); ``identity``: the identity-carrying level alone
    (``f_4``, the 32x32 map at 256 px: ``feature_spec.identity_level``); ``pyramid-but-identity``:
    every other level (``f_1:5 / f_4``).
    """
    levels = tuple(f"pyramid.{i}" for i in range(len(spec.levels)))
    k = spec.identity_level
    groups = {"pyramid": levels, "identity": (levels[k],)}
    rest = levels[:k] + levels[k + 1:]
    if rest:
        groups["pyramid-but-identity"] = rest
    return groups


def select_taps(available: Mapping[str, TapSpec], names: Iterable[str] | None) -> dict[str, TapSpec]:
    """The taps named (all when ``names`` is None), in the order given.

    Raises:
        InputError: an unknown name (the message lists the valid ones).
    """
    if names is None:
        return dict(available)
    names = list(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown tap(s) {unknown}; valid taps: {', '.join(available)}")
    return {n: available[n] for n in dict.fromkeys(names)}


def build_variants(taps: Sequence[str], groups: Mapping[str, Sequence[str]], directions: Sequence[str],
                   known_taps: Iterable[str] | None = None) -> list[Variant]:
    """One variant per (tap, direction) and per (group, direction).

    Raises:
        InputError: an unknown direction, a group name that collides with a tap name, or a group
            member that is not a known tap.
    """
    known = set(known_taps if known_taps is not None else taps)
    dirs = list(dict.fromkeys(directions))
    bad = [d for d in dirs if d not in DIRECTIONS]
    if bad or not dirs:
        raise InputError(f"directions must be a non-empty subset of {DIRECTIONS}, got {list(directions)}")
    out = []
    for g, members in groups.items():
        if g in known:
            raise InputError(f"group name {g!r} is also a tap name; rename the group")
        missing = [m for m in members if m not in known]
        if missing or not members:
            raise InputError(f"group {g!r}: unknown tap(s) {missing or '(empty group)'}; valid taps: {', '.join(known)}")
    for d in dirs:
        out += [Variant(t, d, (t,)) for t in taps]
        out += [Variant(g, d, tuple(m), group=True) for g, m in groups.items()]
    return out
