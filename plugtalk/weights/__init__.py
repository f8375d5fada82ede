"""Weights: plugtalk's own file format and everything that reads weights.

* :mod:`~plugtalk.weights.plugtalk_format` - safetensors with the module's typed config in the metadata;
* :mod:`~plugtalk.weights.configurable` - modules built from a dataclass config (``save_pretrained`` /
  ``from_pretrained``);
* :mod:`~plugtalk.weights.detect` - what a weights file is, by its content, and whether it is finite;
* :mod:`~plugtalk.weights.load` - any weights a user has (official ``.pt``, plugtalk file, ONNX folder,
  nothing) into a ready animator.

The embedded default model is :mod:`plugtalk.default_model`.
"""
