"""The ``synthetic`` dataset: procedural faces (bench/data/synthetic.py), generated per seed.

Generation is the "decode" of this dataset, so it happens once: the arrays are kept in the
process (several trials in one process) and in the dataset cache on disk (``$BENCH_CACHE``), keyed
by the options and by the generator's own source, so trials in other processes (Ray workers,
reruns) load them instead of drawing every face again.
"""
from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from au.codebook import CLASS_NAMES
from bench.data import synthetic as generator
from bench.data.cache import cache_root
from bench.data.registry import Splits, register_dataset
from bench.data.synthetic import Arrays, SyntheticOptions, generate
from bench.store import atomic_write

SPLITS = ("train", "val", "test")
_SOURCE_DIGEST = hashlib.sha256(Path(generator.__file__).read_bytes()).hexdigest()[:12]


def _cache_path(image_size: int, sizes: tuple[int, int, int], shortcut: float, seed: int) -> Path:
    key = f"{_SOURCE_DIGEST}-{image_size}-{'-'.join(map(str, sizes))}-{shortcut:g}-{seed}"
    return cache_root() / "synthetic" / f"{key}.npz"


def _load(path: Path) -> dict[str, Arrays] | None:
    try:
        with np.load(path) as z:
            return {s: Arrays(z[f"{s}.images"], z[f"{s}.labels"], z[f"{s}.landmarks"]) for s in SPLITS}
    except (OSError, ValueError, KeyError):          # absent or unreadable: generate again
        return None


def _save(path: Path, arrays: dict[str, Arrays]) -> None:
    payload = {f"{s}.{field}": getattr(arrays[s], field) for s in SPLITS for field in ("images", "labels", "landmarks")}
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    try:
        atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
    except OSError:                                  # a read-only cache only costs speed
        pass


@lru_cache(maxsize=4)
def _splits(image_size: int, sizes: tuple[int, int, int], shortcut: float, seed: int) -> Splits:
    path = _cache_path(image_size, sizes, shortcut, seed)
    arrays = _load(path)
    if arrays is None:
        options = SyntheticOptions(image_size=image_size, shortcut=shortcut)
        arrays = {name: generate(name, n, seed, options) for name, n in zip(SPLITS, sizes)}
        _save(path, arrays)
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(arrays[name].images.tobytes())
        digest.update(arrays[name].labels.tobytes())
    return Splits(**arrays, class_names=CLASS_NAMES, fingerprint=digest.hexdigest()[:16])


@register_dataset("synthetic")
def synthetic(config, seed: int) -> Splits:
    sizes = (config.train_size, config.val_size, config.test_size)
    return _splits(config.image_size, sizes, config.shortcut, seed)
