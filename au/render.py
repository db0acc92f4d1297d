"""Batched AU-map rendering on the device, at any output size, straight from landmarks.

Because maps are drawn from landmark coordinates, the 28x28 map for the loss and the full-size
map for the metrics come from the same geometry: nothing is ever resampled.

Soft edges: the reference blurs its 255-filled ellipses through a 28x28 round trip with a 3x3
box filter, a ramp about three 28-grid cells wide (~0.4 inter-ocular distances on a typical crop).
Here each ellipse gets a linear ramp of width ``edge``·s across its boundary (0.5 on the boundary,
1 inside, 0 outside; default 0.35 s), and regions combine by pixel-wise max. The ramp is measured
along the ray from the centre: a point at normalised radius rho lies (D − d) inside the boundary,
where d is its distance to the centre and D = d / rho the centre-to-boundary distance along that
ray (exact for circles). At the centre itself (rho = 0) D is taken as the smaller semi-axis, so a
region centred on a pixel centre reads 1 there.
"""
from __future__ import annotations

import torch

from au.codebook import Codebook
from au.landmarks import inter_ocular_distance
from au.regions import REGION_AUS, au_ellipses, region_au_matrix

_CLASS_REGION_CACHE: dict[tuple[str, torch.device], torch.Tensor] = {}


def class_region_mask(codebook: Codebook, device: torch.device) -> torch.Tensor:
    """(num_classes, NUM_REGIONS) bool: the regions each class draws."""
    key = (codebook.name, torch.device(device))
    if key not in _CLASS_REGION_CACHE:
        missing = set(codebook.used_aus()) - set(REGION_AUS)
        if missing:
            raise ValueError(f"codebook {codebook.name!r} uses AUs with no region: {sorted(missing)}")
        class_au = codebook.class_au_matrix(REGION_AUS).float()
        mask = (class_au @ region_au_matrix().float().T) > 0
        _CLASS_REGION_CACHE[key] = mask.to(device)
    return _CLASS_REGION_CACHE[key]


def render_au_maps(
    landmarks: torch.Tensor,
    labels: torch.Tensor,
    image_size: tuple[int, int],
    out_size: tuple[int, int],
    codebook: Codebook,
    edge: float = 0.35,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render class-specific AU maps.

    landmarks: (B, 68, 2) float, x (column) and y (row) in pixel-centre coordinates of an image
        of ``image_size`` = (H, W); NaN/inf marks a face without landmarks.
    labels: (B,) class indices in the canonical order.
    Returns maps (B, h, w) in [0, 1] and valid (B,) bool. A sample is invalid (and its map all
    zero) when its class has no AU (Neutral, or a class the codebook does not list, such as
    AffectNet's optional Contempt), its landmarks are not finite, or none of its regions reaches
    inside the frame.
    """
    device = landmarks.device
    finite = torch.isfinite(landmarks).flatten(1).all(1)
    lm = torch.where(finite[:, None, None], landmarks, torch.zeros_like(landmarks)).float()
    scale = inter_ocular_distance(lm).clamp_min(1e-3)
    ellipses = au_ellipses(lm, scale)                                   # (B, R, 4)
    mask = class_region_mask(codebook, device)
    known = labels < mask.shape[0]          # classes beyond the codebook (AffectNet's Contempt) have no AUs
    active = mask[labels.clamp_max(mask.shape[0] - 1)] & known[:, None]  # (B, R)

    maps = render_ellipses(ellipses, active, edge * scale, image_size, out_size)
    valid = finite & active.any(1) & (maps.flatten(1).amax(1) > 0)
    maps = maps * valid[:, None, None]
    return maps, valid


def render_ellipses(
    ellipses: torch.Tensor,
    active: torch.Tensor,
    ramp: torch.Tensor,
    image_size: tuple[int, int],
    out_size: tuple[int, int],
) -> torch.Tensor:
    """Soft axis-aligned ellipses combined by max, (B, h, w) in [0, 1].

    ellipses: (B, R, 4) as (cx, cy, semi_x, semi_y) in pixel-centre coordinates of an image of
        ``image_size`` = (H, W); active: (B, R) bool, which regions to draw; ramp: (B,) width of the
        soft edge in the same pixels. Output pixel centres are mapped into the input image, so any
        ``out_size`` samples the same geometry.
    """
    H, W = image_size
    h, w = out_size
    device = ellipses.device
    B = ellipses.shape[0]
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (H / h) - 0.5
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (W / w) - 0.5
    ramp = ramp.to(torch.float32)[:, None, None]                        # (B,1,1)

    maps = torch.zeros(B, h, w, device=device)
    for r in range(ellipses.shape[1]):
        cx, cy, ax, ay = (ellipses[:, r, k][:, None, None] for k in range(4))
        ax, ay = ax.clamp_min(1e-3), ay.clamp_min(1e-3)
        dx = xs[None, None, :] - cx                                      # (B,1,w)
        dy = ys[None, :, None] - cy                                      # (B,h,1)
        rho = torch.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
        dist = torch.sqrt(dx ** 2 + dy ** 2)
        # Centre-to-boundary distance along the ray through the pixel; the smaller semi-axis at the centre.
        reach = torch.where(rho > 0, dist / rho.clamp_min(1e-12), torch.minimum(ax, ay))
        value = (0.5 + (reach - dist) / ramp).clamp(0, 1) * active[:, r, None, None]
        maps = torch.maximum(maps, value)
    return maps
