"""Write a large ``.npy`` row by row with ``pwrite``: building a cache never maps or holds the array.

A writable memory map would keep every written page in the builder's resident set until the
kernel writes it back; ``os.pwrite`` hands the bytes to the page cache and forgets them, so the
builder's memory does not grow with the dataset. Rows may be written from several threads.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class NpyWriter:
    """``writer[i] = row`` writes row ``i`` of a (N, ...) array of ``dtype`` into ``path``."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype=np.uint8):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        with open(self.path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            self.offset = fh.tell()
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        os.truncate(self.path, self.offset + self.row_bytes * self.shape[0])   # sparse until written
        self.fd = os.open(self.path, os.O_WRONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, index: int, row: np.ndarray) -> None:
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} outside 0..{self.shape[0] - 1}")
        data = np.ascontiguousarray(row, dtype=self.dtype)
        if data.shape != self.shape[1:]:
            raise ValueError(f"row of shape {data.shape}, expected {self.shape[1:]}")
        view, offset = memoryview(data).cast("B"), self.offset + index * self.row_bytes
        while view:                                   # pwrite may write less than asked
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
