"""WILDCAT (Durand et al., 2017): multi-map transfer, class-wise pooling, kmax/kmin spatial pooling.

Head: 1x1 conv to K·M maps (M "modalities" per class), mean over the M maps of each class -> class
maps z (B, K, h, w); score s_c = mean of the k+ highest values of z_c + α · mean of the k− lowest.
k < 1 is a fraction of the h·w regions, k >= 1 a count (as in wildcat.pytorch; the FER code reads
a float 1.0 as all regions, lines 50-51). CAM = z_c before spatial pooling.

Against the authors' code (interpretable-fer-aus ``dlib/poolings/wildcat.py``, the paper's FER
code; durandtibo/wildcat.pytorch ``wildcat/pooling.py``):
- the min term is real here. The FER code computes it with the non-in-place ``scores.add(...)``
  and discards the result (lines 95-99), so its WILDCAT is the top-k+ mean only: a bug we do not
  copy. wildcat.pytorch adds it in place (``output.add_``) and divides the sum by 2; we follow the
  paper (no /2, which only rescales the logits).
- ``dropout`` is the FER code's ``wc_dropout``: in training, ``nn.Dropout`` on the *sorted*
  region scores, before the k+/k− selection (lines 43, 89-91), so a dropped region leaves a zero
  in its rank instead of letting the next region move up. Identity in eval.
- a fraction k·n that rounds to 0 selects one region here. There the references drop the min term
  (k− = 0) or fail (k+ = 0: FER asserts, wildcat.pytorch divides by 0); it concerns only tiny maps
  (at most 5 regions for k− = 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


def wildcat_pool(maps: torch.Tensor, kmax: float, kmin: float, alpha: float,
                 dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    """(B, K, h, w) -> (B, K) scores; differentiable through the selected regions (sort).

    ``dropout`` (training only) zeroes sorted region scores, and scales the rest by 1/(1 − p),
    before the selection, as the reference's ``wc_dropout``.
    """
    flat = maps.flatten(2)
    n = flat.shape[-1]
    k_plus, k_minus = region_count(kmax, n), region_count(kmin, n)
    ordered = flat.sort(dim=-1, descending=True).values
    if dropout > 0:
        ordered = F.dropout(ordered, dropout, training=training)
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
        self.kmax, self.kmin, self.alpha, self.dropout = kmax, kmin, alpha, dropout
        self.transfer = nn.Conv2d(backbone.channels[backbone.last], num_classes * maps, kernel_size=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        features = self.backbone(x)
        f = features[self.backbone.last]
        B, _, h, w = f.shape
        class_maps = self.transfer(f).view(B, self.num_classes, self.maps, h, w).mean(2)
        logits = wildcat_pool(class_maps, self.kmax, self.kmin, self.alpha, self.dropout, self.training)
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
        dropout: float = 0.0   # on the sorted region scores, training only (reference wc_dropout)

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        c = self.config
        return WildcatNet(backbone, num_classes, c.maps, c.kmax, c.kmin, c.alpha, c.dropout)

