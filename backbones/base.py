"""The backbone contract: ``forward(x) -> {name: (B, C, h, w)}`` plus static metadata."""
from __future__ import annotations

import torch
from torch import nn


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for but could not be loaded (offline, missing file...)."""


class Backbone(nn.Module):
    """Base class: subclasses fill ``channels`` (name -> C) and implement ``forward``.

    ``layer_names`` is the order of the maps; ``last`` is the deepest map, on which
    classification heads sit.
    """

    channels: dict[str, int]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self.channels)

    @property
    def last(self) -> str:
        return self.layer_names[-1]

    def layer_module(self, name: str) -> nn.Module:
        """The module whose output is the named map (for hooks: post-hoc CAMs, ADL)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
