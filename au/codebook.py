"""Expression -> FACS action units, as in Fig. 2 of the paper.

Two named variants:
- ``paper``: Fig. 2 as printed (Disgust uses AU10, Upper Lip Raiser).
- ``reference``: what the released code trained with (Disgust uses AU5, Upper Lid Raiser,
  because of an index slip in its AU table). Use it to reproduce the released models.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

#: Canonical class order shared by every dataset (the reference's ORDERED_EMOTIONS).
CLASS_NAMES: tuple[str, ...] = (
    "Neutral", "Happiness", "Surprise", "Fear", "Anger", "Disgust", "Sadness",
)
NEUTRAL = 0

_PAPER: dict[str, tuple[int, ...]] = {
    "Neutral": (),
    "Happiness": (6, 12, 25),
    "Surprise": (1, 2, 5, 26, 27),
    "Fear": (1, 2, 4, 5, 20, 25, 26, 27),
    "Anger": (4, 5, 7, 10, 17, 23, 24, 25, 26),
    "Disgust": (9, 10, 16, 17, 25, 26),
    "Sadness": (1, 4, 6, 15, 17),
}
_REFERENCE = dict(_PAPER, Disgust=(9, 5, 16, 17, 25, 26))


@dataclass(frozen=True)
class Codebook:
    """Maps each class index (canonical order) to the FACS AU numbers it activates."""

    name: str
    aus_per_class: tuple[tuple[int, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.aus_per_class)

    def aus(self, class_name: str) -> tuple[int, ...]:
        return self.aus_per_class[CLASS_NAMES.index(class_name)]

    def used_aus(self) -> tuple[int, ...]:
        return tuple(sorted({au for aus in self.aus_per_class for au in aus}))

    def class_au_matrix(self, au_order: tuple[int, ...]) -> torch.Tensor:
        """(num_classes, len(au_order)) bool: which AU (in ``au_order``) each class uses."""
        m = torch.zeros(self.num_classes, len(au_order), dtype=torch.bool)
        for c, aus in enumerate(self.aus_per_class):
            for au in aus:
                m[c, au_order.index(au)] = True
        return m


def _build(name: str, table: dict[str, tuple[int, ...]]) -> Codebook:
    return Codebook(name, tuple(tuple(sorted(table[c])) for c in CLASS_NAMES))


CODEBOOKS: dict[str, Codebook] = {
    "paper": _build("paper", _PAPER),
    "reference": _build("reference", _REFERENCE),
}


def get_codebook(name: str) -> Codebook:
    try:
        return CODEBOOKS[name]
    except KeyError:
        raise ValueError(
            f"unknown AU codebook {name!r}; known: {', '.join(CODEBOOKS)} (set au.codebook)"
        ) from None
