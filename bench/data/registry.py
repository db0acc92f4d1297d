"""Dataset registry and the in-memory split container."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bench.data.synthetic import Arrays
from bench.errors import UserError


@dataclass
class Splits:
    train: Arrays
    val: Arrays
    test: Arrays
    class_names: tuple[str, ...]
    fingerprint: str                      # identifies the exact data (for provenance)
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable images per split

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Arrays:
        return getattr(self, name)


DATASETS: dict[str, Callable[..., Splits]] = {}


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
