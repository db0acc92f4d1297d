"""ADL (Choe & Shim, 2019): attention-based dropout inside the backbone, training only.

For a block output F: attention A = channel mean; importance map sigmoid(A); drop mask
1[A < γ · max A] (per sample: high-attention positions are dropped). One uniform draw u per layer
call (i.e. per batch) picks the drop mask when floor(u + drop_rate) = 1, i.e. u >= 1 − drop_rate,
else the importance map; F is multiplied by it. Identity in eval. This is the reference's rule
draw for draw (clovaai/wsolevaluation ``wsol/method/adl.py`` lines 50-53, vendored in the FER
code: ``torch.rand([])`` from the global generator, the sum in float32), so a reference run's
choices replay with the same seed and call order.

Inserted with forward hooks after torchvision's layer3[0], layer4[0] and layer4[-1]
(``positions``; the reference's ``_ADL_POSITION = [[], [], [], [0], [0, 2]]``). The FER code
inserts ADL modules into the ``nn.Sequential`` instead (``dlib/encoders/resnet.py`` line 56 and
``_make_layer``), which shifts the block indices after each ADL. Its ImageNet weights then load by
name with ``strict=False`` (``dlib/encoders/__init__.py`` lines 129-134): each block after an ADL
gets the next block's weights and the last blocks of layer3 and layer4 keep their random init. Its
GradCAM hook ``encoder.layer4.2.relu3`` (``dlib/configure/constants.py``, ``TRG_LAYERS``) lands on
bottleneck 1 instead of the last block. Hooks leave the backbone's modules and state dict
unchanged, so neither happens here.
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


def selects_drop_mask(draw: float, drop_rate: float) -> bool:
    """The reference's choice: floor(u + p) == 1 in float32 (u >= 1 − p), not u < p (same odds)."""
    return bool(torch.floor(torch.tensor(draw, dtype=torch.float32) + drop_rate) >= 1)


def adl(features: torch.Tensor, drop_rate: float, threshold: float, draw: float) -> torch.Tensor:
    attention = features.mean(1, keepdim=True)
    if selects_drop_mask(draw, drop_rate):
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
