"""The ``plugtalk`` command line (typer).  Each command lives in its own module and registers here."""

from __future__ import annotations

import typer

from ._common import OneLineErrors

app = typer.Typer(name="plugtalk", cls=OneLineErrors, no_args_is_help=True, add_completion=False,
                  help="Retrofit GAN talking-head animators with FixTalk's EMI and EDI.",
                  pretty_exceptions_enable=False)



@app.callback()
def _root() -> None:
    """Retrofit GAN talking-head animators with FixTalk's EMI and EDI."""


from . import animate as _animate  # noqa: E402,F401  (each import registers its command)
from . import bench as _bench  # noqa: E402,F401
from . import benchmark as _benchmark  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import export as _export  # noqa: E402,F401
from . import prepare as _prepare  # noqa: E402,F401
from . import probe as _probe  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
from . import ui as _ui  # noqa: E402,F401


def main() -> None:
    """Run the CLI; a command whose optional packages are missing prints one ``error:`` line naming the
    extra to install (``pip install 'plugtalk[video]'``) and exits with 2."""
    from .._optional import missing_extra
    from ._common import tell

    try:
        app()
    except ImportError as e:
        extra = missing_extra(e)
        if extra is None:
            raise
        tell("error", extra)
        raise SystemExit(2) from None
