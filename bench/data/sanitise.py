"""Landmarks are checked once, at load: a face whose 68 points cannot be a face gets none (NaN).

Datasets mark "no face" in many ways: NaN, all zeros, all -1, points off the image. Each would
otherwise render a bogus AU map and count as valid. A face is rejected when its points are not
all finite, when most of them lie outside the decoded frame (beyond a small margin), or when they
are degenerate (zero spread in x or y, which covers all-equal, all-0 and all--1 rows, or eyes that
coincide). Downstream code then sees NaN rows only, and every count of faces without landmarks
includes the rejected ones.
"""
from __future__ import annotations

import hashlib

import numpy as np

MARGIN = 0.1            # points may lie this share of the frame outside it (crops cut chins and brows)
MIN_INSIDE = 0.5        # fewer points than this share inside (with the margin): mostly outside
MIN_SPREAD = 1e-3       # std of x or of y below this share of the frame: degenerate
MIN_EYE_DISTANCE = 0.02  # inter-ocular distance below this share of the frame: degenerate


CHUNK = 1024            # rows checked at a time: temporaries stay small however large the split


def invalid_rows(points: np.ndarray, size: int) -> np.ndarray:
    """(N,) True where the (N, 68, 2) landmarks in a ``size`` x ``size`` frame are not a usable face."""
    out = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), CHUNK):
        out[start:start + CHUNK] = _invalid(np.asarray(points[start:start + CHUNK], dtype=np.float64), size)
    return out


def _invalid(points: np.ndarray, size: int) -> np.ndarray:
    finite = np.isfinite(points).all(axis=(1, 2))
    p = np.where(np.isfinite(points), points, 0.0)
    margin = MARGIN * size
    inside = ((p >= -margin) & (p <= size - 1 + margin)).all(axis=2).mean(axis=1)
    spread = p.std(axis=1).min(axis=1)
    eyes = np.linalg.norm(p[:, 36:42].mean(axis=1) - p[:, 42:48].mean(axis=1), axis=1)
    usable = finite & (inside >= MIN_INSIDE) & (spread > MIN_SPREAD * size) & (eyes > MIN_EYE_DISTANCE * size)
    return ~usable


def sanitise(points: np.ndarray, size: int, inplace: bool = False) -> tuple[np.ndarray, int]:
    """(float32 landmarks with every unusable row NaN, number of rows rejected that had numbers).

    Rows that were entirely NaN already (no face found) are not counted as rejected. ``inplace``
    cleans a float32 array itself instead of a copy.
    """
    clean = points if inplace and points.dtype == np.float32 else np.array(points, dtype=np.float32)
    bad = invalid_rows(clean, size)
    absent = np.isnan(clean).all(axis=(1, 2)) if len(clean) else np.zeros(0, dtype=bool)
    clean[bad] = np.nan                      # one canonical NaN everywhere: digests do not depend on payloads
    return clean, int((bad & ~absent).sum())


def without_landmarks(points: np.ndarray) -> int:
    """Faces with no usable landmarks (after ``sanitise``: NaN rows)."""
    return int((~np.isfinite(points).all(axis=(1, 2))).sum()) if len(points) else 0


def digest(*arrays: np.ndarray) -> str:
    """Content hash of arrays (shapes and bytes), for fingerprints."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.size == 0 else memoryview(a).cast("B"))
    return h.hexdigest()[:16]
