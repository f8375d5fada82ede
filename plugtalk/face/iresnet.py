"""Improved ResNet ("IResNet") face-recognition backbone of ArcFace (insightface's ``arcface_torch``).

Architecture: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
(§3 / the "IR" blocks: BN-Conv-BN-PReLU-Conv-BN with the stride on the second conv, an
output block BN-Dropout-FC-BN), and Duta et al., "Improved Residual Networks" (2020).  The
parameter names follow ``arcface_torch``'s state dicts (``conv1``, ``bn1``, ``prelu``,
``layer{1-4}.{i}.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}``, ``bn2``, ``fc``, ``features``) so its
released weights load as they are.

Input: ``(B, 3, 112, 112)`` RGB, aligned with the 5-point ArcFace template, scaled to ``[-1, 1]``.
Output: ``(B, num_features)`` embedding (not normalised).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import CheckpointError

__all__ = ["IResNet", "IBasicBlock", "IRESNET_LAYERS", "iresnet", "iresnet_config_from_state_dict"]

#: Blocks per stage of the standard depths.
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
_BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    """Improved residual block: ``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN`` plus shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels, eps=_BN_EPS))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace's IResNet: a stem, four stride-2 stages of :class:`IBasicBlock`, and an embedding head.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 14, 3)`` for iresnet50 (see :data:`IRESNET_LAYERS`).
        widths: channels of the stem and of the four stages (``(64, 128, 256, 512)`` in ArcFace).
        num_features: embedding size (512 in ArcFace).
        input_size: side of the square input (112); the last stage is ``input_size / 16`` wide.
        dropout: dropout before the FC layer (0 in ArcFace's released models; inactive in eval mode).

    Forward: ``(B, 3, input_size, input_size)`` in ``[-1, 1]`` -> ``(B, num_features)``.
    """

    def __init__(self, layers: Sequence[int] = IRESNET_LAYERS["iresnet50"], widths: Sequence[int] = (64, 128, 256, 512),
                 num_features: int = 512, input_size: int = 112, dropout: float = 0.0, stem_width: int | None = None):
        super().__init__()
        if len(layers) != 4 or len(widths) != 4 or min(layers) < 1:
            raise ValueError(f"IResNet: need 4 stages with >= 1 block each, got layers={layers}, widths={widths}")
        if input_size % 16:
            raise ValueError(f"IResNet: input_size must be a multiple of 16, got {input_size}")
        stem = widths[0] if stem_width is None else stem_width
        self.config = dict(layers=tuple(layers), widths=tuple(widths), num_features=num_features,
                           input_size=input_size, dropout=dropout, stem_width=stem)
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=_BN_EPS)
        self.prelu = nn.PReLU(stem)
        c = stem
        for i, (n, w) in enumerate(zip(layers, widths), start=1):
            blocks = [IBasicBlock(c, w, stride=2)] + [IBasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c = w
        side = input_size // 16
        self.bn2 = nn.BatchNorm2d(c, eps=_BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=_BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet(name: str = "iresnet50", **kwargs) -> IResNet:
    """A standard-depth IResNet by name (``iresnet18/34/50/100/200``); ``kwargs`` go to :class:`IResNet`."""
    if name not in IRESNET_LAYERS:
        raise ValueError(f"unknown IResNet {name!r}; expected one of {sorted(IRESNET_LAYERS)}")
    return IResNet(IRESNET_LAYERS[name], **kwargs)


def iresnet_config_from_state_dict(state: Mapping[str, Tensor]) -> dict:
    """Read an IResNet's construction arguments (depth, widths, embedding size) off its state dict.

    Raises:
        CheckpointError: the keys are not those of an IResNet (names what is missing).
    """
    need = ("conv1.weight", "fc.weight", "features.running_mean")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"not an IResNet (arcface_torch) state dict: missing {missing}; "
                              f"first keys: {sorted(state)[:6]}")
    blocks: dict[int, set[int]] = {}
    for k in state:
        m = re.match(r"layer([1-4])\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if sorted(blocks) != [1, 2, 3, 4]:
        raise CheckpointError(f"not an IResNet state dict: stages found {sorted(blocks)}, expected layer1-4")
    layers = tuple(len(blocks[i]) for i in range(1, 5))
    widths = tuple(int(state[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5))
    num_features, fc_in = (int(s) for s in state["fc.weight"].shape)
    side2 = fc_in // widths[-1]
    side = int(round(side2 ** 0.5))
    if side * side * widths[-1] != fc_in:
        raise CheckpointError(f"IResNet fc input {fc_in} is not {widths[-1]} x side^2")
    return dict(layers=layers, widths=widths, num_features=num_features, input_size=side * 16,
                stem_width=int(state["conv1.weight"].shape[0]))
