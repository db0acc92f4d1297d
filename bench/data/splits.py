"""Hold-out splits carved from a labelled set: stratified, seeded, and subject-disjoint when possible.

Model selection must not look at the test split (the reference code did; ``train.select_on=test``
reproduces that and the row records it), so real datasets carve their validation split from
train. When subjects are known, a subject never appears on both sides: near-identical images of
one person would otherwise leak and inflate validation accuracy.
"""
from __future__ import annotations

import numpy as np


def carve(labels: np.ndarray, fraction: float, seed: int, subjects: np.ndarray | None = None,
          salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held), ``held`` ≈ ``fraction`` of each class; both sorted.

    Without subjects each class contributes ``round(fraction * n_class)`` samples (at least one
    when the class has two or more). With subjects, whole subjects are visited in a seeded order
    and taken when they bring the held-out class counts closer to their targets (L1).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0 or fraction <= 0:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED, salt])
    if subjects is None:
        held = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = int(round(fraction * len(idx)))
            if k == 0 and len(idx) >= 2:
                k = 1
            k = min(k, len(idx) - 1) if len(idx) > 1 else 0
            held.append(rng.permutation(idx)[:k])
        held_idx = np.sort(np.concatenate(held)) if held else np.arange(0)
    else:
        held_idx = _carve_subjects(labels, np.asarray(subjects).astype(str), fraction, rng)
    mask = np.zeros(n, dtype=bool)
    mask[held_idx] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _carve_subjects(labels: np.ndarray, subjects: np.ndarray, fraction: float,
                    rng: np.random.Generator) -> np.ndarray:
    names, subject_of = np.unique(subjects, return_inverse=True)
    classes, class_of = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(names), len(classes)))
    np.add.at(counts, (subject_of, class_of), 1)
    target = fraction * counts.sum(0)
    order = rng.permutation(len(names))          # the seed decides which subjects are tried first
    held = np.zeros(len(classes))
    distance = np.abs(held - target).sum()
    picked = []
    for s in order:
        if len(picked) == len(names) - 1:         # keep at least one subject on the other side
            break
        trial = np.abs(held + counts[s] - target).sum()
        if trial < distance:
            picked.append(int(s))
            held, distance = held + counts[s], trial
    return np.flatnonzero(np.isin(subject_of, list(picked)))
