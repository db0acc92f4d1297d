"""WILDCAT (Durand et al., 2017): multi-map transfer, class-wise pooling, kmax/kmin spatial pooling.

Head: 1x1 conv to K·M maps (M "modalities" per class), mean over the M maps of each class -> class
maps z (B, K, h, w); score s_c = mean of the k+ highest values of z_c + α · mean of the k− lowest.
The min term is real here: the reference's non-in-place ``add`` silently dropped it. We follow the
paper (no /2; the WILDCAT code's /2 only rescales logits). k < 1 is a fraction of the h·w regions,
k >= 1 a count. CAM = z_c before spatial pooling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from methods.base import Method, Output
from methods.heads import pick
from methods.registry import register


def region_count(k: float, n: int) -> int:
    if k <= 0:
        return 0
    if k < 1:
        return max(1, int(round(k * n)))
    return min(int(k), n)


def wildcat_pool(maps: torch.Tensor, kmax: float, kmin: float, alpha: float) -> torch.Tensor:
    """(B, K, h, w) -> (B, K) scores; differentiable through the selected regions (sort)."""
    flat = maps.flatten(2)
    n = flat.shape[-1]
    k_plus, k_minus = region_count(kmax, n), region_count(kmin, n)
    ordered = flat.sort(dim=-1, descending=True).values
    score = ordered[..., :k_plus].mean(-1)
    if k_minus > 0 and alpha != 0:
        score = score + alpha * ordered[..., n - k_minus:].mean(-1)
    return score


class WildcatNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, maps: int, kmax: float, kmin: float,
                 alpha: float, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.num_classes, self.maps = num_classes, maps
        self.kmax, self.kmin, self.alpha = kmax, kmin, alpha
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.transfer = nn.Conv2d(backbone.channels[backbone.last], num_classes * maps, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        features = self.backbone(x)
        f = self.dropout(features[self.backbone.last])
        B, _, h, w = f.shape
        class_maps = self.transfer(f).view(B, self.num_classes, self.maps, h, w).mean(2)
        logits = wildcat_pool(class_maps, self.kmax, self.kmin, self.alpha)
        return Output(logits=logits, features=features, cams=class_maps)

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        return pick(output.cams, target)


@register
class Wildcat(Method):
    name = "wildcat"
    title = "WILDCAT"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        maps: int = 5          # M modalities per class (reference config wc_modalities)
        kmax: float = 0.5      # top regions, fraction of h·w (reference wc_kmax)
        kmin: float = 0.1      # bottom regions (reference wc_kmin)
        alpha: float = 0.6     # weight of the min term (reference wc_alpha)
        dropout: float = 0.0   # before the transfer layer (reference wc_dropout)

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        c = self.config
        return WildcatNet(backbone, num_classes, c.maps, c.kmax, c.kmin, c.alpha, c.dropout)

