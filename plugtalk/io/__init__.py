"""Input/output helpers: atomic writes (and, in their own modules, images, video and audio)."""

from .atomic import atomic_path, check_output_path

__all__ = ["atomic_path", "check_output_path"]
