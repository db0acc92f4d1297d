"""Layer attention, the AU alignment loss and the cosine metric.

T_l = channel mean of F_l (no abs, no normalisation, as in the paper). The loss is
λ · mean over the chosen layers of [mean over valid samples of (1 − cos(T_l, A))], 0 when no
sample is valid; it is computed without any host sync so it can sit inside a compiled step.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

COS_EPS = 1e-8


def layer_attention(feature: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h, w): mean over channels."""
    return feature.mean(dim=1)


def map_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine between two (B, h, w) maps, flattened: (B,)."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=COS_EPS)


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid`` samples; 0 (not NaN) when none is valid. No sync."""
    weights = valid.to(values.dtype)
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / weights.sum().clamp_min(1.0)


def alignment_loss(
    features: Mapping[str, torch.Tensor],
    au_maps: Mapping[tuple[int, int], torch.Tensor],
    valid: torch.Tensor,
    layers: Sequence[str],
    weight: float,
) -> torch.Tensor:
    """λ · mean over ``layers`` of mean_{valid}(1 − cos(T_l, A)).

    ``au_maps`` holds the AU map rendered at each layer's spatial size (keyed by (h, w)).
    Invalid samples get neither loss nor gradient (``torch.where`` selects, it does not multiply).
    """
    terms = []
    for name in layers:
        att = layer_attention(features[name])
        target = au_maps[tuple(att.shape[-2:])]
        terms.append(masked_mean(1.0 - map_cosine(att, target), valid))
    return weight * torch.stack(terms).mean()
