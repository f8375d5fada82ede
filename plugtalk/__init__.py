"""plugtalk: FixTalk's EMI and EDI as plug-and-play modules for GAN talking-head animators."""

__version__ = "0.1.0"

# EMI/EDI pull in torch and timm; load them on first use so that ``import plugtalk`` (and the CLI) stays fast.
_LAZY = {"EMI": "emi", "EMIConfig": "emi", "EDI": "edi", "EDIConfig": "edi", "EDIOutput": "edi",
         "retrofit": "retrofitting", "Retrofitted": "retrofitting", "load_retrofitted": "retrofitting",
         "RetrofitOutput": "retrofitting"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
