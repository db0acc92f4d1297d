"""Hide-and-Seek (Singh & Lee, 2017), a training-time batch transform on a CAM model.

Each image is cut into a grid x grid of patches and each patch is hidden with probability
``hide_prob`` (set to 0, the dataset mean after normalisation), so the classifier cannot rely on
the most discriminative part alone. With ``hide_au`` the AU maps are hidden in the same patches,
so the alignment loss does not pull attention to pixels the network cannot see. Evaluation sees
whole images; the CAM is CAM's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods import Batch, Method
from methods.cam import GapLinearNet


class HideAndSeek(Method):
    name = "has"
    title = "Hide-and-Seek"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        grid: int = 4             # patches per side (the paper's 16-px patches on 64-px CUB crops)
        hide_prob: float = 0.5    # P(hide a patch), the paper's choice
        hide_au: bool = True      # hide the AU maps in the same patches

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return GapLinearNet(backbone, num_classes)

    def mix(self, batch: Batch, generator: torch.Generator) -> Batch:
        g = self.config.grid
        keep = (torch.rand(batch.images.shape[0], 1, g, g, generator=generator) >= self.config.hide_prob).float()
        keep = keep.to(batch.images.device)

        def hide(x: torch.Tensor) -> torch.Tensor:     # x: (B, ..., h, w)
            mask = F.interpolate(keep, size=x.shape[-2:], mode="nearest")
            return x * (mask if x.dim() == 4 else mask[:, 0])

        if not self.config.hide_au:
            return batch.replace(images=hide(batch.images))
        maps = {size: hide(m) for size, m in batch.au_maps.items()}
        valid = batch.au_valid
        for m in maps.values():          # a map hidden entirely has nothing left to align with
            valid = None if valid is None else valid & (m.flatten(1).amax(1) > 0)
        return batch.replace(images=hide(batch.images), au_maps=maps, au_valid=valid)
