"""Trial specs: one frozen, hashable description per grid cell; its content hash is its id.

A spec names the method that is *trained* and the methods *evaluated* on that model: post-hoc
extractors (``trains_like``) share the training run of the method they name unless ``share`` is
off. The resolved configuration's digest is part of the content, so changing the profile or an
override gives new ids (old results are never silently reused for a different config).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from methods import get_method


@dataclass(frozen=True)
class TrialSpec:
    method: str                        # the method whose model is trained
    evaluate: tuple[str, ...]          # the methods evaluated on it (one result row each)
    dataset: str
    au: bool                           # AU alignment on/off
    seed: int
    profile: str
    overrides: tuple[tuple[str, Any], ...] = ()
    config_digest: str = ""

    @property
    def id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        methods = "+".join(self.evaluate)
        return f"{methods} {self.dataset} {'w/ AU' if self.au else 'w/o AU'} seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["evaluate"] = list(self.evaluate)
        d["overrides"] = [list(kv) for kv in self.overrides]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        d = dict(d)
        d["evaluate"] = tuple(d["evaluate"])
        d["overrides"] = tuple(tuple(kv) for kv in d.get("overrides", ()))
        return cls(**d)


def group_methods(methods: Iterable[str], share: bool = True) -> list[tuple[str, tuple[str, ...]]]:
    """[(trained method, evaluated methods)]: extractors join the run of the method they train like."""
    groups: dict[str, list[str]] = {}
    for name in methods:
        cls = get_method(name)
        train = cls.train_group() if share else name
        groups.setdefault(train, []).append(name)
    return [(train, tuple(evals)) for train, evals in groups.items()]


def expand_grid(methods: list[str], datasets: list[str], au_modes: list[bool], seeds: list[int],
                profile: str, overrides: tuple[tuple[str, Any], ...],
                config_digest: str | Callable[[str, str], str], share: bool = True) -> list[TrialSpec]:
    """All cells. ``config_digest`` is one digest, or ``(dataset, trained method) -> digest`` when
    the profile has per-dataset or per-method tables."""
    specs = []
    for dataset in datasets:
        for train, evaluated in group_methods(methods, share):
            digest = config_digest(dataset, train) if callable(config_digest) else config_digest
            for seed in seeds:
                for au in au_modes:
                    specs.append(TrialSpec(train, evaluated, dataset, au, seed, profile, overrides, digest))
    return specs
