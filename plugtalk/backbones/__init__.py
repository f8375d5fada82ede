"""Backbones of the LIA family that load the official checkpoints exactly.

>>> import plugtalk.backbones as B
>>> B.list_backbones()
['dpe', 'edtalk', 'edtalk-audio', 'edtalk-pose-flow', 'gohd', 'lia']
>>> model = B.create("lia", size=64, channel_base=1024, channel_max=32)   # a tiny random LIA
"""

from .base import Backbone, BackboneConfig, Encoding, check_image
from .dpe import DPE, DPEConfig
from .edtalk import EDTalk, EDTalkConfig, MotionBanks
from .edtalk_audio import EDTalkAudio, EDTalkAudioConfig
from .edtalk_pose_flow import EDTalkPoseFlow, EDTalkPoseFlowConfig
from .gohd import GoHD, GoHDConfig
from .lia import LIA, LIAConfig
from .reenactment import Reenactment
from .registry import (BackboneEntry, animator_backbones, backbone_entry, convert, create, get_backbone_class,
                       list_backbones, load, load_official, register_backbone)
from .synthesis import FlowSynthesis, SynthesisOutput

_ADAPTERS = "plugtalk.adapters.backbones:"
register_backbone(LIA, "gen", signature=("dec.direction.weight", "enc.fc.0.weight"), adapter=_ADAPTERS + "LIAAdapter",
                  motion_mode="relative")
register_backbone(EDTalk, "gen", signature=("direction_lipnonlip.weight", "direction_exp.weight"),
                  adapter=_ADAPTERS + "EDTalkAdapter")
register_backbone(EDTalkAudio, "audio2lip", signature=("audio_encoder.0.conv_block.0.weight", "mapping.weight"),
                  animator=False)
register_backbone(EDTalkPoseFlow, "gen", animator=False)  # no official release: no signature, no converter
register_backbone(DPE, "gen", signature=("dec_pose.input.input", "mlp_pose.0.weight"), adapter=_ADAPTERS + "DPEAdapter",
                  adapter_options=("mode",))
register_backbone(GoHD, "gen_pose", adapter="plugtalk.adapters.gohd:GoHDAdapter",
                  signature=("dec.direction.weight", "enc.fc.0.weight", "enc.semantics_enc.first.0.weight"))

__all__ = [
    "Backbone", "BackboneConfig", "Encoding", "check_image", "Reenactment", "FlowSynthesis", "SynthesisOutput",
    "LIA", "LIAConfig", "EDTalk", "EDTalkConfig", "MotionBanks", "EDTalkAudio", "EDTalkAudioConfig", "EDTalkPoseFlow",
    "EDTalkPoseFlowConfig", "DPE",
    "DPEConfig", "create", "load_official", "load", "convert", "list_backbones", "get_backbone_class",
    "register_backbone", "BackboneEntry", "backbone_entry", "animator_backbones", "GoHD", "GoHDConfig",
]
