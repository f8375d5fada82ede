"""Dataset recipes for ``plugtalk prepare --dataset NAME``: each reader is its own module and registers once."""

from .base import Recipe, VideoJob, name_part, recipe, recipe_names, register
from . import folder as _folder  # noqa: F401  (each import registers its recipe)
from . import mead as _mead  # noqa: F401
from . import hdtf as _hdtf  # noqa: F401
from . import vfhq as _vfhq  # noqa: F401

__all__ = ["Recipe", "VideoJob", "name_part", "recipe", "recipe_names", "register"]
