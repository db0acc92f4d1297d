"""A decoded split: labels and landmarks in memory, images left where they were decoded.

Images stay in the shared, read-only memory-mapped cache file; a split is a list of rows of that
file (``RowView``), so carving validation out of train, or skipping unreadable rows, copies no
pixels. The OS page cache then holds the images once per node however many trials read them.
Labels and landmarks are small (about 0.5 KB per image) and live in each process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class RowView:
    """``store[rows[i]]`` is image ``i``: array-like (shape, len, indexing), copies only what is indexed."""

    def __init__(self, store: np.ndarray, rows: np.ndarray):
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.store.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.store.dtype

    @property
    def ndim(self) -> int:
        return self.store.ndim

    @property
    def nbytes(self) -> int:
        return int(len(self.rows) * self.store[:1].nbytes)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        rows = self.rows[key]
        out = self.store[rows] if np.ndim(rows) == 0 else np.take(self.store, rows, axis=0)
        return out[(slice(None),) * (np.ndim(rows) > 0) + rest] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.take(self.store, self.rows, axis=0)
        return out if dtype is None else out.astype(dtype, copy=False)


@dataclass
class Arrays:
    """A split: images (N, H, W, 3) uint8 (an array or a ``RowView``), labels (N,) int64,
    landmarks (N, 68, 2) float32 (NaN rows: no landmarks), optional subjects (N,)."""

    images: np.ndarray | RowView
    labels: np.ndarray
    landmarks: np.ndarray
    subjects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def store(self) -> np.ndarray:
        """The array that holds the pixels (the whole cache file for a view)."""
        return self.images.store if isinstance(self.images, RowView) else self.images

    @property
    def rows(self) -> np.ndarray | None:
        """Row of each image in ``store``; None when ``store`` is the split itself."""
        return self.images.rows if isinstance(self.images, RowView) else None

    def take(self, index: np.ndarray) -> "Arrays":
        """The samples ``index`` as a view: no pixel is copied."""
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.rows is None else self.rows[index]
        return Arrays(images=RowView(self.store, rows), labels=self.labels[index], landmarks=self.landmarks[index],
                      subjects=None if self.subjects is None else self.subjects[index])
