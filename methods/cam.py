"""CAM (Zhou et al., 2016): GAP + linear head; the class map is the FC-weighted sum of features.

M_c(x, y) = Σ_k w_{c,k} F_k(x, y) on the backbone's last map (no ReLU, bias excluded), so the
logit of class c equals the spatial mean of M_c plus the bias: the property the tests check.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.base import Method, Output
from methods.registry import register


class GapLinearNet(nn.Module):
    """Backbone -> global average pooling of its last map -> linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, head_layer: str | None = None):
        super().__init__()
        self.backbone = backbone
        self.head_layer = head_layer or backbone.last
        self.fc = nn.Linear(backbone.channels[self.head_layer], num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        features = self.backbone(x)
        logits = self.fc(features[self.head_layer].mean(dim=(2, 3)))
        return Output(logits=logits, features=features)

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        """(B, h, w): the CAM of ``target`` for each sample, one batched einsum."""
        weights = self.fc.weight[target]                                   # (B, C)
        return torch.einsum("bchw,bc->bhw", output.features[self.head_layer], weights)


@register
class CAM(Method):
    name = "cam"
    title = "CAM"
    family = "cnn"

    @dataclass(frozen=True)
    class Config:
        """CAM has no hyperparameters of its own (the paper's WGAP head)."""

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return GapLinearNet(backbone, num_classes)
