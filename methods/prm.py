"""PRM (Zhou et al., 2018): class response maps with peak stimulation.

A 1x1 conv gives class response maps M (B, K, h, w). Peaks of M_c are local maxima in a
``window`` x ``window`` neighbourhood that are >= the map's median; the class score is the mean of
M_c at its peaks, so gradients reach only the peaks. The peak mask is found without gradient.
(The reference's "PRM" was a max-pool blur averaged everywhere; this is the paper's mechanism.)
CAM = M_c.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Method, Output
from methods.heads import pick
from methods.registry import register


def peak_mask(maps: torch.Tensor, window: int = 3) -> torch.Tensor:
    """(B, K, h, w) bool: local maxima (window x window, -inf padding) that are >= the median."""
    with torch.no_grad():
        pad = window // 2
        padded = F.pad(maps, (pad, pad, pad, pad), value=float("-inf"))
        local_max = F.max_pool2d(padded, window, stride=1)
        median = maps.flatten(2).median(-1).values[..., None, None]
        return (maps >= local_max) & (maps >= median)


def peak_stimulation(maps: torch.Tensor, window: int = 3) -> torch.Tensor:
    """(B, K, h, w) -> (B, K): mean response at the peaks (there is always one: the global max)."""
    mask = peak_mask(maps, window).to(maps.dtype)
    return (maps * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)


class PRMNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, window: int):
        super().__init__()
        self.backbone = backbone
        self.window = window
        self.response = nn.Conv2d(backbone.channels[backbone.last], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        features = self.backbone(x)
        maps = self.response(features[self.backbone.last])
        return Output(logits=peak_stimulation(maps, self.window), features=features, cams=maps)

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        return pick(output.cams, target)


@register
class PRM(Method):
    name = "prm"
    title = "PRM"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        window: int = 3          # peak window (PRM code win_size; reference prm_ks)

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return PRMNet(backbone, num_classes, self.config.window)
