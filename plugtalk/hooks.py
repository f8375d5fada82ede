"""Named hook points and forward-hook contexts (in the spirit of TransformerLens' ``HookPoint``).

Two ways to reach an intermediate value of an animator:

* plugtalk's own models route every value worth looking at through a :class:`HookPoint` (an
  identity module) held in a :class:`TapSet`, so ``taps.source.pyramid.2`` is both the tap's name and
  its module path;
* any other ``nn.Module`` is reached by submodule name with :func:`capture` / :func:`patch`, which
  install forward (pre-)hooks for the duration of a ``with`` block and remove them afterwards, even
  on error.  A module called several times in one forward pass (e.g. one encoder for the source and
  the driving frame) is addressed by *call index*.

These animators have data-dependent Python control flow, so hooks are used rather than FX tracing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Mapping

from torch import Tensor, nn

__all__ = ["HookPoint", "TapSet", "HookSite", "capture", "patch", "Capture", "resolve_module", "tap_sites"]


class HookPoint(nn.Identity):
    """Identity module marking a named value; forward hooks on it can read or replace the value."""

    def __init__(self, name: str = ""):
        super().__init__()
        self.tap_name = name

    def extra_repr(self) -> str:
        return repr(self.tap_name)


class TapSet(nn.Module):
    """A tree of :class:`HookPoint` modules addressed by dotted names.

    ``TapSet(["source.latent", "source.pyramid.0"])`` has submodules ``source.latent`` and
    ``source.pyramid.0``; ``taps("source.latent", x)`` passes ``x`` through that hook point.
    """

    def __init__(self, names: Iterable[str]):
        super().__init__()
        self._names: list[str] = []
        for name in names:
            self.add(name)

    def add(self, name: str) -> HookPoint:
        parts = name.split(".")
        node: nn.Module = self
        for p in parts[:-1]:
            child = node._modules.get(p)
            if child is None:
                child = nn.Module()
                node.add_module(p, child)
            node = child
        if parts[-1] in node._modules:
            raise ValueError(f"TapSet: duplicate tap {name!r}")
        hp = HookPoint(name)
        node.add_module(parts[-1], hp)
        self._names.append(name)
        return hp

    def names(self) -> list[str]:
        return list(self._names)

    def point(self, name: str) -> HookPoint:
        try:
            m = self.get_submodule(name)
        except AttributeError:
            m = None
        if not isinstance(m, HookPoint):
            raise KeyError(f"unknown tap {name!r}; taps: {', '.join(self._names)}")
        return m

    def forward(self, name: str, value: Tensor) -> Tensor:  # type: ignore[override]
        return self.point(name)(value)

    def watched(self, name: str) -> bool:
        """Whether a forward hook or pre-hook is registered on hook point ``name`` (someone reads or
        writes it: :func:`capture`, :func:`patch`, the probe).  Lets a caller compute a value that only
        exists to be looked at - e.g. EDTalk's source-branch FDM outputs - only when it is."""
        p = self.point(name)
        return bool(p._forward_hooks or p._forward_pre_hooks)


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error listing close module names."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        head = path.split(".")[0]
        near = [n for n in names if n.startswith(head)][:12] or names[:12]
        raise KeyError(f"no submodule {path!r} in {type(model).__name__}; e.g. {', '.join(near)}") from None


@dataclasses.dataclass(frozen=True)
class HookSite:
    """Where a value lives: the output (or an input) of a module at one call.

    Attributes:
        module: dotted submodule path.
        call: which call of the module in one forward pass (0 = first); ``None`` = every call.
        output: index (or index path, e.g. ``(1, 2)`` = ``output[1][2]``) into a tuple/list output;
            ``None``: the output itself.  For ``kind="input"``: the positional-argument index (default 0).
        kind: ``"output"`` (forward hook) or ``"input"`` (forward pre-hook: the value the module receives).
    """

    module: str
    call: int | None = 0
    output: int | tuple[int, ...] | None = None
    kind: str = "output"

    def __post_init__(self) -> None:
        if self.kind not in ("output", "input"):
            raise ValueError(f"HookSite.kind must be 'output' or 'input', got {self.kind!r}")

    def describe(self) -> str:
        where = "input" if self.kind == "input" else "output"
        idx = "".join(f"[{i}]" for i in _path(self.output))
        call = "every call" if self.call is None else f"call {self.call}"
        return f"{self.module} {where}{idx} ({call})"


def _path(index: int | tuple[int, ...] | None) -> tuple[int, ...]:
    return () if index is None else ((index,) if isinstance(index, int) else tuple(index))


def _select(value: Any, index: int | tuple[int, ...] | None) -> Any:
    for i in _path(index):
        value = value[i]
    return value


def _replace(value: Any, index: int | tuple[int, ...] | None, new: Any) -> Any:
    path = _path(index)
    if not path:
        return new
    head, rest = path[0], path[1:]
    inner = _replace(value[head], rest, new)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple (e.g. Encoding)
        return value._replace(**{value._fields[head]: inner})
    items = list(value)
    items[head] = inner
    return tuple(items) if isinstance(value, tuple) else items


class Capture(dict):
    """``{site name: [value per matching call]}`` filled by :func:`capture`."""

    def one(self, name: str) -> Tensor:
        values = self[name]
        if len(values) != 1:
            raise ValueError(f"{name!r} was captured {len(values)} times; expected once")
        return values[0]


@contextlib.contextmanager
def _hooks(model: nn.Module, sites: Mapping[str, HookSite],
           on_value: Callable[[str, int, Any], Any | None]) -> Iterator[None]:
    handles = []
    calls: dict[str, int] = defaultdict(int)
    by_module: dict[tuple[str, str], list[tuple[str, HookSite]]] = defaultdict(list)
    for name, site in sites.items():
        by_module[(site.module, site.kind)].append((name, site))
    try:
        for (path, kind), entries in by_module.items():
            module = resolve_module(model, path)
            key = f"{path}:{kind}"

            if kind == "output":
                def hook(mod, args, output, _entries=entries, _key=key):
                    i = calls[_key]
                    calls[_key] += 1
                    for name, site in _entries:
                        if site.call is None or site.call == i:
                            new = on_value(name, i, _select(output, site.output))
                            if new is not None:
                                output = _replace(output, site.output, new)
                    return output
                handles.append(module.register_forward_hook(hook))
            else:
                def pre_hook(mod, args, _entries=entries, _key=key):
                    i = calls[_key]
                    calls[_key] += 1
                    args = tuple(args)
                    for name, site in _entries:
                        if site.call is None or site.call == i:
                            path = _path(site.output) or (0,)
                            new = on_value(name, i, _select(args, path))
                            if new is not None:
                                args = _replace(args, path, new)
                    return args
                handles.append(module.register_forward_pre_hook(pre_hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture(model: nn.Module, sites: Mapping[str, HookSite], detach: bool = True) -> Iterator[Capture]:
    """Record the values at ``sites`` during forward passes inside the block (``run_with_cache``).

    >>> with capture(model, {"enc": HookSite("encoder", call=None)}) as cache:
    ...     model(source, driving)
    >>> cache["enc"]   # one entry per call of model.encoder
    """
    cache = Capture({name: [] for name in sites})

    def record(name: str, i: int, value: Any) -> None:
        cache[name].append(value.detach() if detach and isinstance(value, Tensor) else value)
        return None

    with _hooks(model, sites, record):
        yield cache


@contextlib.contextmanager
def patch(model: nn.Module, sites: Mapping[str, HookSite],
          replacements: Mapping[str, Tensor | Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Replace the values at ``sites`` during forward passes inside the block (``run_with_hooks``).

    ``replacements[name]`` is a tensor (substituted as is; it must have the original's shape) or a
    function of the original value.  Hooks are removed on exit, also on error.

    Raises:
        ValueError: a replacement tensor whose shape differs from the value it replaces.
    """
    missing = set(replacements) - set(sites)
    if missing:
        raise KeyError(f"replacements for unknown sites: {sorted(missing)}")

    def swap(name: str, i: int, value: Any) -> Any | None:
        if name not in replacements:
            return None
        r = replacements[name]
        new = r(value) if callable(r) else r
        if isinstance(value, Tensor) and isinstance(new, Tensor) and new.shape != value.shape:
            raise ValueError(f"patch {name!r} at {sites[name].describe()}: replacement shape {tuple(new.shape)} "
                             f"!= original {tuple(value.shape)}")
        if isinstance(new, Tensor) and isinstance(value, Tensor):
            new = new.to(device=value.device, dtype=value.dtype)
        return new

    with _hooks(model, sites, swap):
        yield


def tap_sites(taps: TapSet, prefix: str = "") -> dict[str, HookSite]:
    """HookSites for every hook point of a TapSet (module path = ``prefix`` + tap name)."""
    return {n: HookSite(f"{prefix}{n}", call=None) for n in taps.names()}

