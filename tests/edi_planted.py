"""The planted-detail task for EDI (issue 11): a detail that only the driving frame shows must be
recalled at inference from ``(f_pi^s, z_d - z_s)`` alone (FixTalk Sec. 4.2, Eq. 9).

``N`` identities, ``P`` poses.  A frame's identity-level map is ``a_k + b_p`` (identity and pose
vectors spread over the map, plus a fixed per-identity texture), plus - only at the extreme pose
``P - 1`` - an identity-specific detail ``d_k`` in one 3 x 3 patch, plus per-frame noise.  The motion
code of a frame is its pose's code ``e_p`` plus noise.  Sources never show the extreme pose, so the
detail is absent from every source.  Training pairs ``(k, p_s, p_d)`` leave out, per identity, a set
of pose combinations; evaluation uses exactly those held-out pairs (training identities, new
combinations, fresh noise).

:func:`train_planted` trains an :class:`~plugtalk.EDI` on it (L_dmem + L_align + an L1 rendering loss
of the fused map against the driving map, Adam) and :func:`evaluate_planted` measures, on the
held-out pairs, the recall gap of Eq. 9 (``Ω_ms M_d`` vs ``f_pi^d``), that of Eq. 6 (``Ω_d M_d``), the
addressing entropy (normalised) and slot usage of both memories.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from plugtalk import EDI, EDIConfig
from plugtalk.edi import address_entropy, memory_recall, recall_gap, slot_usage


@dataclasses.dataclass
class PlantedTask:
    identity: torch.Tensor    # (N, C, h, w): a_k + texture
    pose: torch.Tensor        # (P, C, h, w): b_p
    detail: torch.Tensor      # (N, C, h, w): d_k in one patch, zero elsewhere
    code: torch.Tensor        # (P, D): e_p
    train_pairs: torch.Tensor  # (n, 3): k, p_s, p_d
    held_out: torch.Tensor     # (m, 3)
    noise: float
    offset_noise: float = 0.0

    def clean(self, k: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Noise-free maps ``(B, C, h, w)``: all that a source and a motion code can predict."""
        extreme = (p == self.pose.shape[0] - 1).float()[:, None, None, None]
        return self.identity[k] + self.pose[p] + extreme * self.detail[k]

    def frames(self, k: torch.Tensor, p: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``(B, C, h, w)`` and motion codes ``(B, D)`` of identities ``k`` at poses ``p``."""
        maps = self.clean(k, p)
        maps = maps + self.noise * torch.randn(maps.shape, generator=g)
        maps = maps + self.offset_noise * torch.randn(len(k), maps.shape[1], 1, 1, generator=g)
        codes = self.code[p] + self.noise * torch.randn(len(p), self.code.shape[1], generator=g)
        return maps, codes

    def batch(self, pairs: torch.Tensor, g: torch.Generator):
        src, z_s = self.frames(pairs[:, 0], pairs[:, 1], g)
        drv, z_d = self.frames(pairs[:, 0], pairs[:, 2], g)
        return src, drv, z_s, z_d


def make_task(identities: int = 8, poses: int = 4, channels: int = 16, size: int = 8, motion_dim: int = 6,
              noise: float = 0.05, offset_noise: float = 0.0, pose_scale: float = 1.0, orthogonal_codes: bool = False,
              seed: int = 0) -> PlantedTask:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(identities, channels, 1, 1, generator=g)
    texture = 0.3 * torch.randn(identities, channels, size, size, generator=g)
    b = pose_scale * torch.randn(poses, channels, 1, 1, generator=g).expand(-1, -1, size, size)
    detail = torch.zeros(identities, channels, size, size)
    for k in range(identities):
        i, j = torch.randint(0, size - 2, (2,), generator=g).tolist()
        detail[k, :, i:i + 3, j:j + 3] = 3.0 * torch.randn(channels, 1, 1, generator=g)
    code = torch.randn(poses, motion_dim, generator=g)
    if orthogonal_codes:
        code = torch.linalg.qr(code.t())[0].t() * motion_dim ** 0.5
    pairs = torch.tensor([(k, ps, pd) for k in range(identities) for ps in range(poses - 1) for pd in range(poses)])
    held = (pairs[:, 0] + pairs[:, 1] + 2 * pairs[:, 2]) % 4 == 0   # each identity: 3 of its 12 combinations
    return PlantedTask(a + texture, b.contiguous(), detail, code, pairs[~held], pairs[held], noise, offset_noise)


def planted_config(**options) -> EDIConfig:
    values = dict(channels=16, height=8, width=8, motion_dim=6, num_slots=64, pool_grid=4, decoder_base=2,
                  decoder_channels=16, mapping_layers=1, fusion_heads=2, fusion_grid=4, fusion_dim=16)
    values.update(options)
    return EDIConfig(**values)


def train_planted(config: EDIConfig, task: PlantedTask, steps: int = 300, batch: int = 32, lr: float = 3e-3,
                  seed: int = 0, log_every: int = 0, align_weight: float = 1.0) -> tuple[EDI, list[dict]]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    edi = EDI(config).init_passthrough().train()
    opt = torch.optim.Adam(edi.parameters(), lr=lr, betas=(0.0, 0.99))
    history = []
    for step in range(steps):
        edi.set_progress(step / steps)
        pairs = task.train_pairs[torch.randint(0, len(task.train_pairs), (batch,), generator=g)]
        src, drv, z_s, z_d = task.batch(pairs, g)
        out = edi.forward_train(src, drv, z_s, z_d)
        loss = out.losses["dmem"] + align_weight * out.losses["align"] + F.l1_loss(out.fused, drv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            history.append({"step": step + 1, **{k: float(v) for k, v in edi.diagnostics.items()}})
    return edi.eval(), history


def patch(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> float:
    """Mean ``|x - target|`` inside the detail patch, over the ``rows`` (extreme-pose drivers)."""
    return float(((x - target).abs() * mask)[rows].sum() / mask[rows].sum().clamp_min(1))


@torch.no_grad()
def evaluate_planted(edi: EDI, task: PlantedTask, repeats: int = 4, seed: int = 123) -> dict[str, float]:
    """Held-out pairs: recall gaps (Eq. 9, Eq. 6, and the oracle: the noise-free driving token, the best any
    recall from the source side can do), entropies, slot usage, and the mean error inside the
    detail patch (extreme-pose drivers) of the inference-path fused map and of the plain source map."""
    g = torch.Generator().manual_seed(seed)
    pairs = task.held_out.repeat(repeats, 1)
    src, drv, z_s, z_d = task.batch(pairs, g)
    f_d, f_s = edi.compressor(drv), edi.compressor(src)
    a_d = edi.driving_logits(f_d).softmax(-1)
    a_ms = edi.motion_source_logits(f_s, z_s, z_d).softmax(-1)
    fused = edi.forward_inference(src, z_s, z_d).fused
    extreme = pairs[:, 2] == task.pose.shape[0] - 1
    mask = (task.detail[pairs[:, 0]] != 0).float()
    return {
        "recall_gap_ms": float(recall_gap(memory_recall(a_ms, edi.memory_d), f_d)),
        "recall_gap_d": float(recall_gap(memory_recall(a_d, edi.memory_d), f_d)),
        "recall_gap_oracle": float(recall_gap(edi.compressor(task.clean(pairs[:, 0], pairs[:, 2])), f_d)),
        "entropy_ms": float(address_entropy(a_ms)), "entropy_d": float(address_entropy(a_d)),
        "slot_usage_ms": float(slot_usage(a_ms)), "slot_usage_d": float(slot_usage(a_d)),
        "detail_error_fused": patch(fused, drv, mask, extreme), "detail_error_source": patch(src, drv, mask, extreme),
    }
