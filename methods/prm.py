"""PRM (Zhou et al., 2018): class response maps with peak stimulation.

A 1x1 conv gives class response maps M (B, K, h, w). Peaks of M_c are local maxima in a
``window`` x ``window`` neighbourhood (-inf padding) that are >= the map's median; the class score
is the mean of M_c at its peaks, so gradients reach only the peaks. The peak mask is found without
gradient. CAM = M_c. (The FER reference's "PRM" was a max-pool blur averaged everywhere; this is
the paper's mechanism, as in ZhouYanzhao/PRM, branch pytorch.)

Against PRM's code (``install/functions/peak_stimulation.py``):
- ties: the reference marks a peak where ``max_pool2d``'s argmax index is the position itself
  (lines 18-25), and the argmax keeps the first maximum of each window in row-major order. On a
  plateau (ReLU zeros, saturated regions) a position therefore counts only if no earlier position
  of its window ties with it: a plateau that fits in a window gives one peak (its first position),
  not one per position. ``peak_mask`` applies this rule explicitly, so it does not depend on which
  index a pooling kernel keeps; ``tests/test_mechanism_prm.py`` checks it against max_pool2d's.
- the median filter is the reference's default ``filter_type='median'`` (``torch.median``, the lower
  middle value; ``install/modules/peak_response_mapping.py`` lines 40-44; filtering lines 28-30).
- gradient: autograd of the mean gives 1/|P_c| at each peak. The reference's custom backward
  returns ``peak_map * grad_output`` (line 47) without the 1/|P_c| that its forward's mean
  (lines 38-39) implies; we keep the true gradient.
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
    """(B, K, h, w) bool: positions that are the first maximum of their window (row-major order,
    -inf padding) and >= the map's median: PRM's ``max_pool2d`` index test, ties included."""
    with torch.no_grad():
        pad = window // 2
        h, w = maps.shape[-2:]
        padded = F.pad(maps, (pad, pad, pad, pad), value=float("-inf"))
        peaks = maps >= F.max_pool2d(padded, window, stride=1)
        for dy in range(-pad, 1):                      # the window positions before the centre
            for dx in range(-pad, pad + 1 if dy < 0 else 0):
                earlier = padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]
                peaks &= earlier != maps               # an equal value earlier in the window takes the peak
        median = maps.flatten(2).median(-1).values[..., None, None]
        return peaks & (maps >= median)


def peak_stimulation(maps: torch.Tensor, window: int = 3) -> torch.Tensor:
    """(B, K, h, w) -> (B, K): mean response at the peaks (there is always one: the first global max)."""
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
