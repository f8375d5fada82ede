"""``python -m plugtalk.train ARGS`` = ``plugtalk train ARGS`` (handy under ``torchrun -m``)."""

import sys

from plugtalk.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="plugtalk")
