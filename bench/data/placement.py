"""How much of the device a trial's splits may take, and small transfer helpers.

A trial owns a share of its GPU (``--gpus-per-trial``: Ray packs several trials on one card and
does not isolate their memory), and a split is copied whole to the GPU only when it fits
``data.device_budget`` of that share (``feed.py``); otherwise it streams from the shared cache.
"""
from __future__ import annotations

import sys

import torch

from bench.data.feed import SplitFeed, feed


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device`` asynchronously (pinned first on CUDA)."""
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def trial_gpu_fraction() -> float:
    """This trial's share of its GPU: what Ray assigned to the running trial (``--gpus-per-trial``),
    or the whole card outside Ray. Ray is never imported here; only a running worker has it loaded."""
    ray = sys.modules.get("ray")
    try:
        if ray is None or not ray.is_initialized():
            return 1.0
        share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:                       # not inside a task or actor: the whole card
        return 1.0
    return share if 0.0 < share < 1.0 else 1.0


def device_budget_bytes(device: torch.device, share: float, gpu_fraction: float = 1.0) -> int:
    """Bytes of ``device`` a trial's splits may hold: the card's memory x the trial's fraction of
    the card x ``data.device_budget`` (``share``). Zero on the CPU (nothing to place)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    total = torch.cuda.get_device_properties(device).total_memory
    return int(total * float(gpu_fraction) * float(share))


def place(arrays, device: torch.device, device_budget: int = 0) -> tuple[SplitFeed, torch.Tensor, torch.Tensor]:
    """(feed, labels, landmarks): what ``evaluate``/``accuracy`` take as (images, labels, landmarks).

    The feed streams the split's images (or holds them on the device within ``device_budget``);
    labels and landmarks are the whole split on the host.
    """
    split = feed(arrays, device, device_budget)
    return split, split.labels, split.landmarks
