"""Fixture plugins with the mistakes the conformance suite and the registry must catch.

Conformance: ``TransposedCAM`` returns its map as (B, w, h-1), which the evaluator would quietly
resize; ``LabelPeekingCAM``'s forward reads ``labels`` although ``needs_labels`` is False, so it
trains differently under the harness (which passes ``labels=None``) than under a suite that
passes labels. Registration: no title, an inherited title, a ``Config`` that is not a dataclass,
and a name that clashes with the built-in ``cam``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods import Method, Output
from methods.cam import CAM, GapLinearNet


class TransposedCAM(CAM):
    name = "fx_transposed"
    title = "Transposed CAM (fixture)"

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[Output, torch.Tensor]:
        output, cam = super().explain(model, x, target)
        return output, cam.transpose(1, 2)[:, :, :-1]


class PeekingNet(GapLinearNet):
    """Adds a bonus to the true class when labels are given: accuracy that the harness never sees."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        output = super().forward(x)
        if labels is not None:
            output.logits = output.logits + 5.0 * F.one_hot(labels, output.logits.shape[1])
        return output


class LabelPeekingCAM(CAM):
    name = "fx_peeking"
    title = "Label-peeking CAM (fixture)"
    needs_labels = False

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return PeekingNet(backbone, num_classes)


class NoTitle(Method):
    name = "fx_notitle"


class InheritedTitle(CAM):
    name = "fx_inherited"


class PlainConfig(CAM):
    name = "fx_plainconfig"
    title = "Plain Config (fixture)"

    class Config:          # not a dataclass: make_config and the trial id need fields
        threshold = 0.5


class ClashingCAM(CAM):
    name = "cam"
    title = "Another CAM (fixture)"
