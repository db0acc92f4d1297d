"""CutMix (Yun et al., 2019): a batch transform on a CAM model.

With probability ``prob`` per batch: λ ~ Beta(β, β), a box of side ratio sqrt(1 − λ) (height from
H, width from W: the references swap them) at a uniform centre, clipped; the box is pasted from a
random permutation of the batch into the images **and into every AU map**, and a mixed sample's
map stays valid only if both source maps are valid. λ is recomputed from the clipped box area and
the loss is λ·CE(y_a) + (1 − λ)·CE(y_b). CAM as CAM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Batch, Method, Output
from methods.cam import GapLinearNet
from methods.registry import register


@dataclass(frozen=True)
class Box:
    """Fractions of the image: rows [top, bottom), columns [left, right)."""

    top: float
    bottom: float
    left: float
    right: float

    def pixels(self, h: int, w: int) -> tuple[int, int, int, int]:
        return (int(round(self.top * h)), int(round(self.bottom * h)),
                int(round(self.left * w)), int(round(self.right * w)))

    def area(self, h: int, w: int) -> int:
        y1, y2, x1, x2 = self.pixels(h, w)
        return (y2 - y1) * (x2 - x1)


def random_box(lam: float, u_y: float, u_x: float) -> Box:
    ratio = math.sqrt(1.0 - lam)
    cy, cx = u_y, u_x
    return Box(max(cy - ratio / 2, 0.0), min(cy + ratio / 2, 1.0), max(cx - ratio / 2, 0.0), min(cx + ratio / 2, 1.0))


def paste(x: torch.Tensor, perm: torch.Tensor, box: Box) -> torch.Tensor:
    """Copy the box of x[perm] into x (last two dims are h, w)."""
    y1, y2, x1, x2 = box.pixels(*x.shape[-2:])
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
    return out


def cutmix(batch: Batch, box: Box, perm: torch.Tensor) -> Batch:
    H, W = batch.images.shape[-2:]
    lam = 1.0 - box.area(H, W) / (H * W)
    maps = {size: paste(m, perm, box) for size, m in batch.au_maps.items()}
    valid = batch.au_valid
    if valid is not None and box.area(H, W) > 0:
        valid = valid & valid[perm]
    extras = dict(batch.extras, cutmix={"labels_b": batch.labels[perm], "lam": lam})
    return batch.replace(images=paste(batch.images, perm, box), au_maps=maps, au_valid=valid, extras=extras)


@register
class CutMix(Method):
    name = "cutmix"
    title = "CutMix"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        beta: float = 1.0        # Beta(β, β) for λ (reference cutmix_beta)
        prob: float = 1.0        # P(mix a batch) (reference cutmix_prob)

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return GapLinearNet(backbone, num_classes)

    def mix(self, batch: Batch, generator: torch.Generator) -> Batch:
        u = torch.rand(4, generator=generator).tolist()       # CPU draws: no device sync
        if u[0] >= self.config.prob:
            return batch
        rng = np.random.default_rng(int(u[1] * 2**31))
        lam = float(rng.beta(self.config.beta, self.config.beta))
        perm = torch.randperm(batch.images.shape[0], generator=generator)
        device = batch.images.device
        perm = perm.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else perm
        return cutmix(batch, random_box(lam, u[2], u[3]), perm)

    def loss(self, output: Output, batch: Batch) -> torch.Tensor:
        mixed = batch.extras.get("cutmix")
        if mixed is None:
            return F.cross_entropy(output.logits, batch.labels)
        lam = mixed["lam"]
        return lam * F.cross_entropy(output.logits, batch.labels) + (1 - lam) * F.cross_entropy(
            output.logits, mixed["labels_b"])
