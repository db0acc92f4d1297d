"""CutMix (Yun et al., 2019): a batch transform on a CAM model.

With probability ``prob`` per batch: λ ~ Beta(β, β), a box drawn as the references' ``rand_bbox``
(clovaai/wsolevaluation ``wsol/method/cutmix.py`` lines 42-57; the FER code's copy,
interpretable-fer-aus ``dlib/div_classifiers/parts/cutmix.py`` lines 60-75): an integer centre
uniform over the rows and over the columns, a side int(n·sqrt(1 − λ)) along each axis of n pixels,
the box spanning centre ± side // 2, clipped. (The references name size[2] "w", but they slice
dim 2 with those same numbers, wsolevaluation line 36 and FER line 27, so their box is consistent
on non-square images: no axis swap.)
The box is pasted from a random permutation of the batch into the images **and into every AU map**
(as fractions of the image, so maps of any size get the same box; the FER code pastes its AU map
with the same pixel box, lines 39-43), and a mixed sample's map stays valid only if both source
maps are valid. λ is recomputed from the clipped box area and the loss is
λ·CE(y_a) + (1 − λ)·CE(y_b). CAM as CAM.
The draws come from the trial's torch generator, not numpy's global RNG as in the references: the
same distribution, not the same draws.
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


def random_box(lam: float, u_y: float, u_x: float, size: tuple[int, int]) -> Box:
    """The references' box on an image of ``size`` = (H, W), from uniforms u in [0, 1)."""
    ratio = math.sqrt(1.0 - lam)

    def span(u: float, n: int) -> tuple[int, int]:
        centre = min(int(u * n), n - 1)          # np.random.randint(n)
        half = int(n * ratio) // 2
        return max(centre - half, 0), min(centre + half, n)

    (y1, y2), (x1, x2) = span(u_y, size[0]), span(u_x, size[1])
    return Box(y1 / size[0], y2 / size[0], x1 / size[1], x2 / size[1])


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
        return cutmix(batch, random_box(lam, u[2], u[3], tuple(batch.images.shape[-2:])), perm)

    def loss(self, output: Output, batch: Batch) -> torch.Tensor:
        mixed = batch.extras.get("cutmix")
        if mixed is None:
            return F.cross_entropy(output.logits, batch.labels)
        lam = mixed["lam"]
        return lam * F.cross_entropy(output.logits, batch.labels) + (1 - lam) * F.cross_entropy(
            output.logits, mixed["labels_b"])
