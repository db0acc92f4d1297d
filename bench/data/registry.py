"""Dataset registry and the split container every loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bench.data.arrays import Arrays
from bench.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass
class Splits:
    """Train, validation and test arrays plus what a result row needs to say about the data.

    ``fingerprint`` hashes everything a number depends on (dataset, resolved root, catalogue,
    labels, preprocessing, landmark source and the landmarks actually used, the validation carve).
    ``stats`` is the JSON-serialisable ``data`` section of each trial record; its ``placement``
    is filled by the trainer.
    """

    train: Arrays
    val: Arrays
    test: Arrays
    class_names: tuple[str, ...]
    fingerprint: str
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable images per decoded split
    stats: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Arrays:
        return getattr(self, name)


def make_stats(dataset: str, data_root: str | None, landmark_source: str, landmark_digest: str,
               splits: dict[str, Arrays], without: dict[str, int], dropped: dict[str, dict[str, int]],
               skipped: dict[str, int], skipped_paths: dict[str, list[str]]) -> dict:
    """The record's ``data`` section, with exactly the keys the store expects."""
    return {
        "dataset": dataset, "data_root": data_root, "landmark_source": landmark_source,
        "landmark_digest": landmark_digest,
        "counts": {s: int(len(splits[s])) for s in SPLITS},
        "without_landmarks": {s: int(without[s]) for s in SPLITS},
        "dropped_labels": {s: {str(k): int(v) for k, v in dropped.get(s, {}).items()}
                           for s in ("train", "test")},
        "skipped": {s: int(n) for s, n in skipped.items()},
        "skipped_paths": {s: [str(p) for p in paths] for s, paths in skipped_paths.items()},
        "placement": {},
    }


DATASETS: dict[str, Callable[..., Splits]] = {}
#: Datasets that can draw their faces again with AUs switched off (``bench.metrics.interventions``):
#: name -> fn(data config, seed) -> {split: generated split}.
COUNTERFACTUALS: dict[str, Callable] = {}


def register_counterfactuals(name: str):
    def wrap(fn):
        COUNTERFACTUALS[name] = fn
        return fn
    return wrap


def counterfactual_source(name: str) -> Callable | None:
    return COUNTERFACTUALS.get(name)


def register_dataset(name: str):
    def wrap(fn):
        DATASETS[name] = fn
        return fn
    return wrap


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, config, seed: int) -> Splits:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    return DATASETS[name](config, seed)
