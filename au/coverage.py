"""AU coverage: how many faces that should have an AU map actually get one.

A "w/ AU" trial whose faces have no usable landmarks trains exactly like "w/o AU" and would be
reported as an alignment result. Coverage is measured with the renderer itself (the same
validity the loss uses: a class with AUs, finite landmarks, a region inside the frame), at a
small output size and in chunks, so a whole training split is checked in seconds on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from au.codebook import Codebook
from au.render import class_region_mask, render_au_maps

COVERAGE_MAP_SIZE = (16, 16)
CHUNK = 4096


@dataclass(frozen=True)
class Coverage:
    valid: int        # faces with a valid AU map
    expected: int     # faces whose class has AUs in the codebook (Neutral and Contempt have none)

    @property
    def share(self) -> float | None:
        return self.valid / self.expected if self.expected else None


def au_coverage(landmarks: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                image_size: tuple[int, int], codebook: Codebook, edge: float = 0.35) -> Coverage:
    """Count the faces of a split (landmarks (N, 68, 2) in image pixels, NaN = none) that get a map."""
    landmarks = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    mask = class_region_mask(codebook, torch.device("cpu"))
    has_aus = (labels < mask.shape[0]) & mask[labels.clamp(0, mask.shape[0] - 1)].any(1)
    valid = 0
    for start in range(0, len(labels), CHUNK):
        sl = slice(start, start + CHUNK)
        _, ok = render_au_maps(landmarks[sl], labels[sl], image_size, COVERAGE_MAP_SIZE, codebook, edge)
        valid += int((ok & has_aus[sl]).sum())
    return Coverage(valid, int(has_aus.sum()))
