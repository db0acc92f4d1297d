"""Trial specs: one frozen, hashable description per grid cell; its content hash is its id.

A spec names the method that is *trained* and the methods *evaluated* on that model: post-hoc
extractors (``trains_like``) share the training run of the method they name unless ``share`` is
off. ``identity`` is the digest of everything the trial's numbers depend on (``bench.plan.identity``:
resolved config, each method's resolved Config and plugin version, the data fingerprint), so a
changed default, landmark file or data root gives a new id and old results are never reused.
``setting`` names the command-line configuration (profile + overrides) a run folder was filled with.
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
    identity: str = ""

    @property
    def id(self) -> str:
        """Content only: the cell and its identity. Two command lines that resolve to the same
        configuration share their trials, and a --set for one method leaves other methods' ids alone."""
        cell = {k: v for k, v in self.to_dict().items() if k not in ("profile", "overrides")}
        blob = json.dumps(cell, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def setting(self) -> str:
        """The configuration of the ``bench run`` command (profile + overrides), whatever the cell."""
        blob = json.dumps([self.profile, [list(kv) for kv in self.overrides]], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def shared(self) -> bool:
        """Whether other methods are evaluated on this trial's trained model."""
        return any(name != self.method for name in self.evaluate)

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
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}     # older records carry retired fields
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
                identity: Callable[[str, str, tuple[str, ...], bool, int], str], share: bool = True) -> list[TrialSpec]:
    """All cells; ``identity(dataset, trained, evaluated, au, seed)`` gives each cell's identity digest."""
    specs = []
    for dataset in datasets:
        for train, evaluated in group_methods(methods, share):
            for seed in seeds:
                for au in au_modes:
                    specs.append(TrialSpec(train, evaluated, dataset, au, seed, profile, overrides,
                                           identity(dataset, train, evaluated, au, seed)))
    return specs
