"""The ``synthetic`` dataset: procedural faces (bench/data/synthetic.py), generated once per key.

Generation is the "decode" of this dataset: each split is drawn once, straight into a cache entry
(``<cache>/synthetic/<split>-<key>/images.npy``, see ``entries.py``) keyed by the generator's own
source, the options, the split size and the seed. Trials, in this process or others, map that
file read-only, so faces at paper-like sizes cost page cache (shared per node), not trial memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from au.codebook import CLASS_NAMES
from bench.data import entries
from bench.data import synthetic as generator
from bench.data.arrays import Arrays, RowView
from bench.data.cache import cache_root
from bench.data.npy import NpyWriter
from bench.data.registry import SPLITS, Splits, make_stats, register_dataset, register_counterfactuals
from bench.data.sanitise import digest, sanitise, without_landmarks
from bench.data.synthetic import SyntheticOptions, SyntheticSplit, generate

_SOURCE_DIGEST = hashlib.sha256(Path(generator.__file__).read_bytes()).hexdigest()[:12]
LANDMARK_SOURCE = "generator"


def entry_key(split: str, size: int, seed: int, options: SyntheticOptions) -> str:
    """Everything the faces of one split depend on."""
    blob = json.dumps({"source": _SOURCE_DIGEST, "split": split, "size": size, "seed": seed,
                       "options": dataclasses.asdict(options)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _build(split: str, size: int, seed: int, options: SyntheticOptions, key: str):
    def build(tmp: Path) -> dict:
        S = options.image_size
        with NpyWriter(tmp / "images.npy", (size, S, S, 3)) as out:
            faces = generate(split, size, seed, options, out=out)
        np.savez(tmp / "arrays.npz", labels=faces.labels, landmarks=faces.landmarks)
        return {"dataset": "synthetic", "split": split, "key": key, "image_size": S, "images": size, "kept": size,
                "seed": seed, "options": dataclasses.asdict(options), "source": _SOURCE_DIGEST}
    return build


def load_split(split: str, size: int, seed: int, options: SyntheticOptions) -> Arrays:
    """The split's faces from its cache entry (generated there first when absent), images memory-mapped."""
    key = entry_key(split, size, seed, options)
    entry = cache_root() / "synthetic" / f"{split}-{key}"
    for attempt in range(2):
        entries.ensure(entry, _build(split, size, seed, options, key))
        try:
            with np.load(entry / "arrays.npz") as z:
                labels, landmarks = z["labels"], z["landmarks"]
            images = np.load(entry / "images.npy", mmap_mode="r")
            break
        except (OSError, ValueError, KeyError):     # pruned or damaged between the check and the open
            if attempt:
                raise
            entries._discard(entry)
    entries.touch(entry)
    return Arrays(images=RowView(images, np.arange(len(images))), labels=labels, landmarks=landmarks)


def _splits(image_size: int, sizes: tuple[int, int, int], shortcut: float, seed: int) -> Splits:
    options = SyntheticOptions(image_size=image_size, shortcut=shortcut)
    arrays = {}
    for name, n in zip(SPLITS, sizes):
        split = load_split(name, n, seed, options)
        split.landmarks, _ = sanitise(split.landmarks, image_size)
        arrays[name] = split
    landmark_digest = digest(*(arrays[s].landmarks for s in SPLITS))
    fingerprint = hashlib.sha256(json.dumps({
        "dataset": "synthetic", "source": _SOURCE_DIGEST, "options": dataclasses.asdict(options),
        "sizes": sizes, "seed": seed, "landmarks": [LANDMARK_SOURCE, landmark_digest],
        "labels": digest(*(arrays[s].labels for s in SPLITS)),
    }, sort_keys=True).encode()).hexdigest()[:16]
    zero = {s: 0 for s in SPLITS}
    stats = make_stats("synthetic", None, LANDMARK_SOURCE, landmark_digest, arrays,
                       {s: without_landmarks(arrays[s].landmarks) for s in SPLITS}, {}, zero,
                       {s: [] for s in SPLITS})
    return Splits(**arrays, class_names=CLASS_NAMES, fingerprint=fingerprint, skipped=dict(zero), stats=stats)


@register_dataset("synthetic")
def synthetic(config, seed: int) -> Splits:
    sizes = (config.train_size, config.val_size, config.test_size)
    return _splits(config.image_size, sizes, config.shortcut, seed)


@register_counterfactuals("synthetic")
def counterfactual_splits(config, seed: int) -> dict[str, SyntheticSplit]:
    """The generated splits of the ``synthetic`` dataset for ``config`` (its ``data`` section) and ``seed``,
    as the interventions (``bench.metrics.interventions``) draw their faces again: split i of the
    dataset is face i of these."""
    options = SyntheticOptions(image_size=config.image_size, shortcut=config.shortcut)
    sizes = (config.train_size, config.val_size, config.test_size)
    return {name: SyntheticSplit(name, n, seed, options) for name, n in zip(SPLITS, sizes)}
