"""iBUG-68 landmark conventions shared by rendering and augmentation."""
from __future__ import annotations

import torch

NUM_LANDMARKS = 68


def _mirror_permutation() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]                      # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                # brows
    pairs += [(31, 35), (32, 34)]                                # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]                      # inner lip
    perm = list(range(NUM_LANDMARKS))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


#: Index i of a horizontally flipped face is point MIRROR[i] of the original.
MIRROR: tuple[int, ...] = _mirror_permutation()


def flip_landmarks(landmarks: torch.Tensor, width: int) -> torch.Tensor:
    """Landmarks of the horizontally flipped image (pixel-centre coordinates, x' = W - 1 - x)."""
    flipped = landmarks[..., list(MIRROR), :].clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def inter_ocular_distance(landmarks: torch.Tensor) -> torch.Tensor:
    """Distance between the two eye centres, (B,). The face scale that AU regions are sized by."""
    left = landmarks[..., 36:42, :].mean(-2)
    right = landmarks[..., 42:48, :].mean(-2)
    return (left - right).norm(dim=-1)
