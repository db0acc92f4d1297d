"""ADL (Choe & Shim, 2019): attention-based dropout inside the backbone, training only.

For a block output F: attention A = channel mean; importance map sigmoid(A); drop mask
1[A < γ · max A] (per sample). One uniform draw per layer call (i.e. per batch) picks the drop
mask with probability ``drop_rate``, else the importance map; F is multiplied by it. Identity in
eval. Inserted with forward hooks after torchvision's layer3[0], layer4[0] and layer4[-1]
(``positions``), so the backbone's state dict, and pretrained weights, are unchanged.
The AU loss sees ``layer5`` = the output of layer4 *after* its last ADL at train time, as in the
reference code (at eval ADL is inactive, so ATT-COS sees the plain map). CAM as CAM.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.base import Method
from methods.cam import GapLinearNet
from methods.registry import register


def adl(features: torch.Tensor, drop_rate: float, threshold: float, draw: float) -> torch.Tensor:
    attention = features.mean(1, keepdim=True)
    if draw < drop_rate:
        peak = attention.flatten(1).amax(1)[:, None, None, None]
        return features * (attention < threshold * peak).to(features.dtype)
    return features * torch.sigmoid(attention)


class ADLNet(GapLinearNet):
    def __init__(self, backbone: nn.Module, num_classes: int, drop_rate: float, threshold: float,
                 positions: tuple[tuple[int, int], ...]):
        super().__init__(backbone, num_classes)
        self.drop_rate, self.threshold = drop_rate, threshold
        self._handles = []
        for stage, block in positions:
            module = backbone.stages[stage][block]
            self._handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return output
        draw = float(torch.rand(()))          # CPU draw from the seeded global RNG: no device sync
        return adl(output, self.drop_rate, self.threshold, draw)


@register
class ADL(Method):
    name = "adl"
    title = "ADL"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        drop_rate: float = 0.4   # P(drop mask) per batch (reference adl_drop_rate; original 0.75)
        threshold: float = 0.1   # γ (reference adl_drop_threshold; original 0.9)
        positions: tuple[tuple[int, int], ...] = ((2, 0), (3, 0), (3, -1))  # (stage, block): layer3[0], layer4[0], layer4[-1]

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        c = self.config
        return ADLNet(backbone, num_classes, c.drop_rate, c.threshold, tuple(tuple(p) for p in c.positions))
