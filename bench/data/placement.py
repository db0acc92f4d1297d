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


#: the share assumed when a trial's share cannot be read: the smallest that ``--gpus-per-trial``
#: normally gives (four trials per card), so the budget is never larger than the trial owns.
UNKNOWN_SHARE = 0.25


def trial_gpu_fraction() -> float:
    """This trial's share of its GPU: what Ray assigned to the running trial (``--gpus-per-trial``),
    or the whole card outside Ray. Ray is never imported here; only a running worker has it loaded.

    A share that cannot be read inside Ray is one warning line and ``UNKNOWN_SHARE``, never the
    whole card: a 0.25-GPU trial that believed it owned the card would take four times its memory.
    """
    ray = sys.modules.get("ray")
    try:
        if ray is None or not ray.is_initialized():
            return 1.0
        share = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        print(f"warning: this trial's GPU share could not be read ({reason}); assuming {UNKNOWN_SHARE:g} of "
              f"the card for data placement", file=sys.stderr, flush=True)
        return UNKNOWN_SHARE
    return share if 0.0 < share < 1.0 else 1.0


def device_budget_bytes(device: torch.device, share: float, gpu_fraction: float = 1.0,
                        reserved_bytes: int = 0) -> int:
    """Bytes of ``device`` a trial's splits may hold: ``data.device_budget`` (``share``) of what is
    left of the trial's part of the card (total memory x ``gpu_fraction``) once ``reserved_bytes``
    are taken: what the model and one measured step already hold (``torch.cuda.memory_reserved``
    after a dry step). Zero on the CPU (nothing to place) and when the model fills the share."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    total = torch.cuda.get_device_properties(device).total_memory
    free = total * float(gpu_fraction) - max(0, int(reserved_bytes))
    return max(0, int(free * float(share)))


def place(arrays, device: torch.device, device_budget: int = 0) -> tuple[SplitFeed, torch.Tensor, torch.Tensor]:
    """(feed, labels, landmarks): what ``evaluate``/``accuracy`` take as (images, labels, landmarks).

    The feed streams the split's images (or holds them on the device within ``device_budget``);
    labels and landmarks are the whole split on the host.
    """
    split = feed(arrays, device, device_budget)
    return split, split.labels, split.landmarks
