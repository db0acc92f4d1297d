"""Decoding a split in parallel: worker processes each decode a shard of rows and ``pwrite`` it into
the entry's ``images.npy``; the entry is then published atomically by ``entries.ensure``.

JPEG decoding and resizing hold the GIL for part of their time, so threads alone leave cores idle;
worker processes do not. They are forked (no interpreter start, no second ``import torch``) and only
decode with PIL and write with ``os.pwrite``, so nothing they inherit is used across the fork. Each
task is one shard of ``rows`` (row index, path, box) and returns only the small per-row results
(affine or error), so neither side ever holds the split's pixels. Where ``fork`` is unavailable
(macOS spawn default, Windows), or with ``BENCH_DECODE=threads``, threads do the same work.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np


def make_pool(workers: int) -> Executor:
    """Forked worker processes, or threads where fork is unavailable or ``BENCH_DECODE=threads``."""
    if (workers > 1 and os.environ.get("BENCH_DECODE", "").strip().lower() != "threads"
            and "fork" in multiprocessing.get_all_start_methods()):
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(data)).cast("B")
    while view:                                     # pwrite may write less than asked
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def decode_rows(npy_path: str, header_bytes: int, image_size: int, rows: list) -> list[tuple]:
    """Decode ``rows`` [(index, path, box)] into ``npy_path``; returns [(index, affine | None, error | None)]."""
    from bench.data.cache import decode_image

    row_bytes = image_size * image_size * 3
    out = []
    fd = os.open(npy_path, os.O_WRONLY)
    try:
        for index, path, box in rows:
            try:
                image, affine = decode_image(path, box, image_size)
                if image.shape != (image_size, image_size, 3) or image.dtype != np.uint8:
                    raise ValueError(f"decoded to {image.shape} {image.dtype}")
                _pwrite_all(fd, image, header_bytes + index * row_bytes)
                out.append((index, affine, None))
            except Exception as exc:                # corrupt, truncated, zero bytes, unreadable, missing
                out.append((index, None, " ".join(f"{type(exc).__name__}: {exc}".split())))
    finally:
        os.close(fd)
    return out
