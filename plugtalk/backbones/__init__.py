"""Backbones of the LIA family that load the official checkpoints exactly.

>>> import plugtalk.backbones as B
>>> B.list_backbones()
['dpe', 'edtalk', 'edtalk-audio', 'lia']
>>> model = B.create("lia", size=64, channel_base=1024, channel_max=32)   # a tiny random LIA
"""

from .base import Backbone, BackboneConfig, Encoding, check_image
from .dpe import DPE, DPEConfig
from .edtalk import EDTalk, EDTalkConfig, MotionBanks
from .edtalk_audio import EDTalkAudio, EDTalkAudioConfig
from .lia import LIA, LIAConfig
from .reenactment import Reenactment
from .registry import convert, create, get_backbone_class, list_backbones, load, load_official, register_backbone
from .synthesis import FlowSynthesis, SynthesisOutput

register_backbone(LIA, "gen")
register_backbone(EDTalk, "gen")
register_backbone(EDTalkAudio, "audio2lip")
register_backbone(DPE, "gen")

__all__ = [
    "Backbone", "BackboneConfig", "Encoding", "check_image", "Reenactment", "FlowSynthesis", "SynthesisOutput",
    "LIA", "LIAConfig", "EDTalk", "EDTalkConfig", "MotionBanks", "EDTalkAudio", "EDTalkAudioConfig", "DPE",
    "DPEConfig", "create", "load_official", "load", "convert", "list_backbones", "get_backbone_class",
    "register_backbone",
]
