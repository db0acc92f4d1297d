"""The ``synthetic`` dataset: procedural faces (bench/data/synthetic.py), generated per seed."""
from __future__ import annotations

import hashlib
from functools import lru_cache

from au.codebook import CLASS_NAMES
from bench.data.registry import Splits, register_dataset
from bench.data.synthetic import SyntheticOptions, generate


@lru_cache(maxsize=4)
def _splits(image_size: int, sizes: tuple[int, int, int], shortcut: float, seed: int) -> Splits:
    options = SyntheticOptions(image_size=image_size, shortcut=shortcut)
    arrays = {name: generate(name, n, seed, options) for name, n in zip(("train", "val", "test"), sizes)}
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        digest.update(arrays[name].images.tobytes())
        digest.update(arrays[name].labels.tobytes())
    return Splits(**arrays, class_names=CLASS_NAMES, fingerprint=digest.hexdigest()[:16])


@register_dataset("synthetic")
def synthetic(config, seed: int) -> Splits:
    sizes = (config.train_size, config.val_size, config.test_size)
    return _splits(config.image_size, sizes, config.shortcut, seed)
