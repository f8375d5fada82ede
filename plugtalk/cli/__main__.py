"""``python -m plugtalk.cli``: the same command line as the installed ``plugtalk`` script."""

from . import main

if __name__ == "__main__":
    main()
