"""Adapters: the small protocol a backbone meets to be retrofitted with EMI/EDI and probed.

Built-in adapters wrap plugtalk's LIA, EDTalk and DPE; :class:`HookAdapter` wraps any
encoder-decoder ``nn.Module`` given the names of its layers.
"""

from .backbones import DPEAdapter, EDTalkAdapter, LIAAdapter, adapter_for
from .base import Adapter, Motion, pyramid_spec
from .hooked import HookAdapter

__all__ = ["Adapter", "Motion", "pyramid_spec", "LIAAdapter", "EDTalkAdapter", "DPEAdapter", "adapter_for", "HookAdapter"]
