"""Joint image + landmark augmentation on tensors, batched on the training device.

One random affine per sample (horizontal flip, small rotation, square random-resized crop) is
applied to the image with ``grid_sample`` and to the landmarks with the same matrix; flipped
samples also get the iBUG mirror permutation, so landmark i stays "the same" facial point.
Random draws come from a CPU ``torch.Generator`` (deterministic by seed); moving them to the
device is an async copy, not a sync.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from au.landmarks import MIRROR
from bench.data.placement import to_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@lru_cache(maxsize=8)
def _mean_std(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet statistics on ``device``, made once (a per-step host copy would sync)."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = _mean_std(x.device)
    return (x - mean) / std


def to_input(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W)."""
    x = normalise(images.permute(0, 3, 1, 2).float().div_(255))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def random_affine(batch: int, flip: float, rotation: float, crop_scale: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample maps from output to input normalised coordinates: (B, 2, 3), and flip flags (B,)."""
    u = torch.rand(batch, 5, generator=generator)
    flipped = u[:, 0] < flip
    angle = (u[:, 1] * 2 - 1) * math.radians(rotation)
    scale = torch.sqrt(crop_scale + (1 - crop_scale) * u[:, 2])      # side of the crop, area in [s, 1]
    shift = (u[:, 3:5] * 2 - 1) * (1 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    sx = torch.where(flipped, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * sx, -sin, shift[:, 0]], 1),
        torch.stack([sin * sx, cos, shift[:, 1]], 1),
    ], 1)
    return theta, flipped


def warp_landmarks(landmarks: torch.Tensor, theta: torch.Tensor, flipped: torch.Tensor,
                   size: tuple[int, int]) -> torch.Tensor:
    """Map landmarks (B, 68, 2) in input pixels to output pixels under ``theta`` (output->input)."""
    H, W = size
    dims = torch.tensor([W, H], device=landmarks.device, dtype=landmarks.dtype)
    p = (2 * landmarks + 1) / dims - 1                                 # to normalised coords
    A, t = theta[:, :, :2], theta[:, :, 2]
    q = torch.linalg.solve(A, (p - t[:, None, :]).transpose(1, 2)).transpose(1, 2)
    out = ((q + 1) * dims - 1) / 2
    mirrored = out[:, list(MIRROR), :]
    return torch.where(flipped[:, None, None], mirrored, out)


def augment(images: torch.Tensor, landmarks: torch.Tensor, generator: torch.Generator, *,
            flip: float, rotation: float, crop_scale: float, jitter: float,
            channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, H, W, 3) + landmarks -> augmented normalised images (B, 3, H, W) + landmarks."""
    B, H, W, _ = images.shape
    device = images.device
    theta, flipped = random_affine(B, flip, rotation, crop_scale, generator)
    gain = 1 + (torch.rand(B, 2, generator=generator) * 2 - 1) * jitter
    theta, flipped, gain = (to_device(t, device) for t in (theta, flipped, gain))
    x = images.permute(0, 3, 1, 2).float().div_(255)
    grid = F.affine_grid(theta, [B, 3, H, W], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * gain[:, 1, None, None, None] + mean * gain[:, 0, None, None, None]).clamp_(0, 1)
    x = normalise(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, warp_landmarks(landmarks, theta, flipped, (H, W))
