"""Training losses of FixTalk's recipe (suppl. Sec. 1.2): ``L_rec + L_per + L_adv`` here, with
``L_dis``, ``L_dmem`` and ``L_align`` coming from the retrofitted forward pass
(:class:`plugtalk.Retrofitted` in training mode).

* :func:`reconstruction_loss` - L1 between output and driving frame (self-reenactment).
* :class:`PerceptualLoss` - VGG19 loss between relu1_1 .. relu5_1 features of output and target,
  per-layer weights, summed over an image pyramid: LIA-style L1 over four scales (plugtalk's default),
  or FixTalk's Eq. 2, ``||Phi(I^d) - Phi(I^g)||_2^2`` (``distance="squared_l2"``).  The VGG19 weights
  are a file the user supplies (nothing is downloaded).
* :func:`feature_matching_loss` - L1 between discriminator features of output and target: the
  stand-in for the perceptual loss when no VGG19 weights are given (pix2pixHD, Wang et al. 2018).
* :func:`generator_adversarial_loss` / :func:`discriminator_loss` - non-saturating GAN loss
  (Goodfellow et al. 2014) with softplus, as in StyleGAN2 / LIA.
* :func:`r1_penalty` - R1 gradient penalty on real images (Mescheder et al. 2018).
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights.plugtalk_format import read_state_dict
from ..errors import CheckpointError

__all__ = ["PERCEPTUAL_DISTANCES", "reconstruction_loss", "PerceptualLoss", "VGG19Features", "feature_matching_loss",
           "generator_adversarial_loss", "discriminator_loss", "r1_penalty", "warn_no_vgg"]

#: torchvision ``vgg19().features`` index ranges ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Feature distances of :class:`PerceptualLoss`: LIA's L1 and FixTalk Eq. 2's squared L2.
PERCEPTUAL_DISTANCES = ("l1", "squared_l2")


def reconstruction_loss(output: Tensor, target: Tensor) -> Tensor:
    """``L_rec = mean |output - target|`` for ``(B, 3, H, W)`` images in [-1, 1]."""
    return F.l1_loss(output, target)


class VGG19Features(nn.Module):
    """torchvision's VGG19 ``features`` up to relu5_1, loaded from a user-supplied weights file.

    Args:
        weights: a torchvision ``vgg19`` state dict file (``.pth``/``.pt`` read with
            ``torch.load(weights_only=True)``, or ``.safetensors``), full (``features.*`` and
            ``classifier.*``) or features only (``features.N.*`` or ``N.*``).

    ``forward(x)``: ``(B, 3, H, W)`` in [-1, 1] (mapped to ImageNet normalisation inside) -> the five
    relu*_1 maps.

    Raises:
        CheckpointError: unreadable file, or weights that do not fit VGG19's convolutions.
    """

    def __init__(self, weights: str | os.PathLike):
        super().__init__()
        from torchvision.models import vgg19

        features = vgg19(weights=None).features[:VGG19_SLICES[-1][1]]
        state = read_state_dict(weights)
        state = {(k[len("features."):] if k.startswith("features.") else k): v for k, v in state.items()
                 if not k.startswith("classifier.")}
        # layers past relu5_1 (conv5_2 ...) are not used
        state = {k: v for k, v in state.items()
                 if not (k.split(".")[0].isdigit() and int(k.split(".")[0]) >= len(features))}
        own = features.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or bad:
            raise CheckpointError(f"{str(weights)!r} is not a torchvision VGG19 weights file: missing "
                                  f"{missing[:4]}, unexpected {unexpected[:4]}, wrong shape {bad[:4]}")
        features.load_state_dict(state)
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in VGG19_SLICES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)  # a fixed feature extractor

    def forward(self, x: Tensor) -> list[Tensor]:
        h = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out


class PerceptualLoss(nn.Module):
    """VGG19 perceptual loss: ``sum_scales sum_l w_l * dist(phi_l(down_s(output)), phi_l(down_s(target)))``.

    ``distance="l1"`` (default, LIA's loss): ``dist = mean |a - b|``.  ``distance="squared_l2"``: FixTalk's
    Eq. 2 (after Johnson et al. 2016, its ref. [28]), ``||Phi(I^d) - Phi(I^g)||_2^2`` normalised by the
    feature map's size, ``dist = mean (a - b)^2``; the paper names neither the layers nor a pyramid, so
    with ``scales=(1.0,)`` and unit layer weights it is the plain sum over relu1_1 .. relu5_1.

    Args:
        weights: VGG19 weights file (see :class:`VGG19Features`).
        layer_weights: ``w_l`` for relu1_1 .. relu5_1.
        scales: image-pyramid scales (anti-aliased bilinear down-sampling).
        distance: ``"l1"`` or ``"squared_l2"``.

    ``forward(output, target)``: ``(B, 3, H, W)`` in [-1, 1] -> scalar >= 0.  No gradient flows into the target.

    Raises:
        ValueError: wrong number of layer weights, a scale outside (0, 1], an unknown distance.
        CheckpointError: see :class:`VGG19Features`.
    """

    def __init__(self, weights: str | os.PathLike, layer_weights: Sequence[float] = (10.0,) * 5,
                 scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125), distance: str = "l1"):
        super().__init__()
        if len(layer_weights) != len(VGG19_SLICES):
            raise ValueError(f"PerceptualLoss: need {len(VGG19_SLICES)} layer weights, got {len(layer_weights)}")
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"PerceptualLoss: scales must lie in (0, 1], got {list(scales)}")
        if distance not in PERCEPTUAL_DISTANCES:
            raise ValueError(f"PerceptualLoss: distance must be one of {PERCEPTUAL_DISTANCES}, got {distance!r}")
        self.vgg = VGG19Features(weights)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.scales = tuple(float(s) for s in scales)
        self.distance = distance
        self._dist = F.l1_loss if distance == "l1" else F.mse_loss

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        total = output.new_zeros((), dtype=torch.float32)
        for s in self.scales:
            o, t = output, target.detach()
            if s != 1.0:
                o = F.interpolate(o, scale_factor=s, mode="bilinear", antialias=True, align_corners=False)
                t = F.interpolate(t, scale_factor=s, mode="bilinear", antialias=True, align_corners=False)
            fo = self.vgg(o)
            with torch.no_grad():
                ft = self.vgg(t)
            for w, a, b in zip(self.layer_weights, fo, ft):
                if w:
                    total = total + w * self._dist(a.float(), b.float())
        return total


def feature_matching_loss(fake_features: Sequence[Tensor], real_features: Sequence[Tensor]) -> Tensor:
    """Mean over layers of ``mean |D_l(output) - D_l(target)|`` (targets detached)."""
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError("feature_matching_loss: need the same, non-zero number of fake and real feature maps")
    terms = [F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_features, real_features)]
    return sum(terms) / len(terms)


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating ``L_adv = mean softplus(-D(output))``."""
    return F.softplus(-fake_logits.float()).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``mean softplus(-D(real)) + mean softplus(D(fake))``."""
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """``mean_b ||d D(x_b) / d x_b||^2`` over real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


_WARNED = False


def warn_no_vgg() -> None:
    """Warn once per process that the perceptual loss falls back to discriminator feature matching."""
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn("no VGG19 weights given (loss.vgg_weights): the perceptual loss L_per is replaced by "
                      "discriminator feature matching. For the paper's setting supply a torchvision vgg19 "
                      "weights file (nothing is downloaded).", UserWarning, stacklevel=2)
