"""ACoL (Zhang et al., 2018): adversarial complementary learning with two heads.

Head A and head B (conv3x3-ReLU-conv3x3-ReLU-conv1x1 to K maps, GAP logits) sit on the last
backbone map F. B sees F erased where A's min-max-normalised map of the true class (detached) is
>= δ. Loss = CE(A) + CE(B); predictions use A (independent of the label). CAM = max of the two
normalised class maps. The erasing needs the label, at evaluation too, as ACoL defines
(``needs_labels``); without labels it falls back to A's prediction. The alignment loss sees the
unerased backbone map. This is the reference code's mechanism (interpretable-fer-aus
``dlib/div_classifiers/parts/acol.py``, ``AcolBase.forward`` lines 90-114 and ``_erase_attention``;
it asserts a label at evaluation too, line 95).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Batch, Method, Output
from methods.heads import minmax, pick
from methods.registry import register


def acol_branch(in_channels: int, hidden: int, num_classes: int) -> nn.Sequential:
    branch = nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
        nn.Conv2d(hidden, num_classes, 1),
    )
    for m in branch.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return branch


def erase_mask(maps_a: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 1, h, w) float mask: 0 where the normalised target map of head A is >= threshold."""
    attention = minmax(pick(maps_a.detach(), target))
    return (attention < threshold).to(maps_a.dtype)[:, None]


class AcolNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int, threshold: float):
        super().__init__()
        self.backbone = backbone
        channels = backbone.channels[backbone.last]
        self.head_a = acol_branch(channels, hidden, num_classes)
        self.head_b = acol_branch(channels, hidden, num_classes)
        self.threshold = threshold

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        features = self.backbone(x)
        f = features[self.backbone.last]
        maps_a = self.head_a(f)
        logits_a = maps_a.mean((2, 3))
        target = labels if labels is not None else logits_a.argmax(1)
        maps_b = self.head_b(f * erase_mask(maps_a, target, self.threshold))
        return Output(logits=logits_a, features=features, cams=None,
                      extras={"maps_a": maps_a, "maps_b": maps_b, "logits_b": maps_b.mean((2, 3))})

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        return torch.maximum(minmax(pick(output.extras["maps_a"], target)),
                             minmax(pick(output.extras["maps_b"], target)))


@register
class ACoL(Method):
    name = "acol"
    title = "ACoL"
    family = "cnn"
    needs_labels = True

    @dataclass(frozen=True)
    class Config:
        threshold: float = 0.1   # erasing δ (reference config acol_drop_threshold; original ACoL 0.6)
        hidden: int = 1024       # width of each head's 3x3 convs (original ACoL)

    @classmethod
    def conformance_options(cls) -> dict:
        return {**super().conformance_options(), "method": {"hidden": 32}}

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return AcolNet(backbone, num_classes, self.config.hidden, self.config.threshold)

    def loss(self, output: Output, batch: Batch) -> torch.Tensor:
        return (F.cross_entropy(output.logits, batch.labels)
                + F.cross_entropy(output.extras["logits_b"], batch.labels))
