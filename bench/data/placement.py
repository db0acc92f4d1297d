"""Where a decoded split lives during training, and how batches reach the device without a sync.

On CUDA a split that fits ``DEVICE_DATA_BUDGET`` is copied to the GPU once (uint8) and batches are
gathered there; a larger split stays in pinned host memory and each batch is gathered, pinned and
copied asynchronously. On the CPU the arrays are used as they are (no copy).
"""
from __future__ import annotations

import torch

DEVICE_DATA_BUDGET = 2 * 2**30      # bytes of images kept on the GPU per split


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device`` asynchronously (pinned first on CUDA)."""
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def place(arrays, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images uint8 (N,H,W,3), labels (N,), landmarks (N,68,2)) on the device or pinned host."""
    tensors = (torch.from_numpy(arrays.images), torch.from_numpy(arrays.labels),
               torch.from_numpy(arrays.landmarks))
    if device.type != "cuda":
        return tensors
    if tensors[0].nbytes <= DEVICE_DATA_BUDGET:
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory() for t in tensors)


def gather(tensor: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor[index]`` on ``device``; ``index`` lives where ``tensor`` lives."""
    return to_device(tensor[index], device)
