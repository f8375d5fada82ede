"""``python -m plugtalk`` and the ``plugtalk`` command: the CLI, or one line naming ``plugtalk[cli]`` when
typer / rich are not installed (a core-only install)."""

from __future__ import annotations

import sys


def main() -> None:
    from ._optional import missing_extra

    try:
        from .cli import main as cli_main
    except ImportError as e:
        extra = missing_extra(e, "the plugtalk command")
        if extra is None:
            raise
        print(f"error: {extra}", file=sys.stderr)
        raise SystemExit(2) from None
    cli_main()


if __name__ == "__main__":
    main()
