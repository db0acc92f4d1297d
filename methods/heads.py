"""Small pieces shared by several method heads."""
from __future__ import annotations

import torch


def minmax(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-map min-max normalisation over the last two dimensions."""
    flat = maps.flatten(-2)
    low = flat.amin(-1)[..., None, None]
    high = flat.amax(-1)[..., None, None]
    return (maps - low) / (high - low).clamp_min(eps)


def pick(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) class maps -> (B, h, w) map of each sample's target class (batched, no loop)."""
    return maps[torch.arange(maps.shape[0], device=maps.device), target]
