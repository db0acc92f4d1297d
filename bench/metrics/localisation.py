"""Localisation of a CAM on the AU regions: pointing game, relevance mass and relevance rank accuracy.

The AU map is the ground truth. It is soft (1 inside each AU ellipse, a ramp to 0 just outside),
and these metrics need a mask: the AU region is where the map is >= 0.5, which is exactly the
inside of the ellipses (``au.render`` puts the 0.5 level on their boundary). The cosine of CAM-COS
sees how much the two maps overlap overall; these say where the CAM's mass and peak actually are:
a CAM can have a high cosine and still peak off the face.

- **Pointing game** (Zhang et al., 2018): 1 when the CAM's maximum lies in an AU region, or within
  ``tolerance`` pixels of one (Euclidean; Zhang et al. allow 15 px at 224 px; ours defaults to 0,
  ``eval.pointing_tolerance``). When the maximum is shared by several pixels (plateaus, a flat map)
  the score is the fraction of them inside: the expected hit of a random pick, so a flat map scores
  the region's area, not 1 (Quantus counts a hit when any tied maximum is inside).
- **Relevance mass accuracy** (Arras et al., 2022; Quantus ``RelevanceMassAccuracy``): the CAM's
  mass inside the region ÷ its total mass.
- **Relevance rank accuracy** (Arras et al., 2022; Quantus ``RelevanceRankAccuracy``): with K the
  region's pixel count, the fraction of the K highest-ranked CAM pixels that lie in the region.
  Ties at the K-th value count in expectation over a random order (deterministic, no generator).

All higher is better; all take (B, H, W) CAMs min-max normalised at image resolution (non-negative)
and are batched on the device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REGION_LEVEL = 0.5       # AU map level of the ellipse boundary (au/render.py)
MAX_TOLERANCE = 1e-6     # pixels within this of the maximum share the peak


def au_region(au_maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) soft AU maps -> bool mask of the AU ellipses."""
    return au_maps >= REGION_LEVEL


def dilate(region: torch.Tensor, radius: float) -> torch.Tensor:
    """(B, H, W) bool mask grown by every pixel within Euclidean distance ``radius`` (pixel centres)."""
    r = int(math.floor(radius))
    if r <= 0:
        return region
    offsets = torch.arange(-r, r + 1, device=region.device, dtype=torch.float32)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).float()
    grown = F.conv2d(region.float()[:, None], disk[None, None], padding=r)[:, 0]
    return grown > 0.5


def pointing_game(cam: torch.Tensor, region: torch.Tensor, tolerance: float = 0.0) -> torch.Tensor:
    """(B,) fraction of the CAM's maximal pixels inside ``region`` grown by ``tolerance`` pixels
    (1 or 0 for a unique maximum)."""
    if tolerance < 0:
        raise ValueError(f"the pointing-game tolerance must be >= 0 pixels (got {tolerance})")
    flat, inside = cam.flatten(1).float(), dilate(region, tolerance).flatten(1)
    peak = flat >= flat.amax(1, keepdim=True) - MAX_TOLERANCE
    return (peak & inside).sum(1).float() / peak.sum(1).float()


def relevance_mass(cam: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) share of the CAM's total mass inside ``region``; 0 for an all-zero map."""
    flat, inside = cam.flatten(1).float(), region.flatten(1)
    total = flat.sum(1)
    return torch.where(total > 0, (flat * inside).sum(1) / total.clamp_min(1e-12), torch.zeros_like(total))


def relevance_rank(cam: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) fraction of the top-K CAM pixels inside ``region``, K = region size (NaN when K = 0)."""
    flat, inside = cam.flatten(1).float(), region.flatten(1)
    k = inside.sum(1)
    kth = flat.sort(1, descending=True).values.gather(1, (k - 1).clamp_min(0)[:, None])   # K-th largest
    above, at = flat > kth, flat == kth
    n_above = above.sum(1)
    hits_above = (above & inside).sum(1).float()
    # The K − n_above remaining picks fall among the tied pixels at random: expected hits in proportion.
    tied_hits = (at & inside).sum(1).float() / at.sum(1).clamp_min(1).float() * (k - n_above).float()
    score = (hits_above + tied_hits) / k.clamp_min(1).float()
    return torch.where(k > 0, score, torch.full_like(score, float("nan")))
